//! Tests of the results crate on synthetic run folders: runs read back (and refused when their
//! files are missing or corrupt), charts drawn, power laws recovered from runs made with known
//! parameters, and degenerate families refused.

mod charts;
mod fits;
mod report;
mod runs;

use std::fs;
use std::path::{Path, PathBuf};

use storage::StepRecord;
use transformer::zoo::Zoo;
use transformer::TransformerConfig;

/// A model of the built-in zoo.
pub(crate) fn zoo_model(name: &str) -> TransformerConfig {
    Zoo::builtin().unwrap().get(name).unwrap().config.clone()
}

/// A scratch folder for one test.
pub(crate) fn scratch(name: &str) -> test_support::Scratch {
    test_support::Scratch::new(&format!("results-{name}"))
}

/// What a synthetic run is made of.
pub(crate) struct FakeRun {
    pub model_name: String,
    pub model: TransformerConfig,
    pub self_guided: bool,
    pub tokenizer_fnv1a: u64,
    pub records: Vec<StepRecord>,
}

impl FakeRun {
    /// `steps` records of a run of `model` whose loss falls from 8 towards `final_val` (the
    /// validation loss of its last record, at `flops` FLOPs); every fourth step and the last
    /// evaluate. A self-guided run has alpha falling to 0 at half-way.
    pub fn new(model: &str, flops: f64, final_val: f64, steps: u64) -> Self {
        let records = (1..=steps)
            .map(|step| {
                let t = step as f64 / steps as f64;
                let loss = final_val + (8.0 - final_val) * (1.0 - t).powi(2);
                let eval = step % 4 == 0 || step == steps;
                let val = (eval).then_some(loss + 0.01 * (1.0 - t));
                StepRecord {
                    step,
                    total_steps: steps,
                    tokens: step * 4096,
                    loss,
                    lr: 1e-3,
                    flops: flops * t,
                    elapsed_s: step as f64 * 0.5,
                    tokens_per_s: 8192.0,
                    val_loss: val,
                    val_ppl: val.map(f64::exp),
                    ..StepRecord::default()
                }
            })
            .collect();
        Self {
            model_name: model.into(),
            model: zoo_model(model),
            self_guided: false,
            tokenizer_fnv1a: 0xfeed,
            records,
        }
    }

    /// The same run trained with self-guided training (alpha 1 falling to 0 at half-way).
    pub fn guided(mut self) -> Self {
        self.self_guided = true;
        let n = self.records.len() as f64;
        for (i, r) in self.records.iter_mut().enumerate() {
            r.alpha = (1.0 - 2.0 * (i + 1) as f64 / n).max(0.0);
        }
        self
    }

    /// Writes the run as `parent/name` (`config.json`, `metrics.jsonl`) and returns its path.
    pub fn write(&self, parent: &Path, name: &str) -> PathBuf {
        let dir = parent.join(name);
        fs::create_dir_all(&dir).unwrap();
        let sgt = self
            .self_guided
            .then(|| serde_json::json!({"guide_steps": 100, "reduce_flop": false}));
        let config = serde_json::json!({
            "model_name": self.model_name,
            "model": self.model,
            "sgt": sgt,
            "seq_len": 64,
            "batch_size": 8,
            "data_record": {
                "vocab_size": self.model.vocab_size,
                "train_tokens": 100000,
                "validation_tokens": 10000,
                "tokenizer_fnv1a": self.tokenizer_fnv1a,
                "manifest_fnv1a": 1,
            },
        });
        fs::write(
            dir.join("config.json"),
            serde_json::to_string_pretty(&config).unwrap(),
        )
        .unwrap();
        let lines: Vec<String> = self
            .records
            .iter()
            .map(|r| serde_json::to_string(r).unwrap())
            .collect();
        fs::write(dir.join("metrics.jsonl"), lines.join("\n") + "\n").unwrap();
        dir
    }
}
