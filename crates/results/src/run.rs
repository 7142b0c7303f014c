//! A training run read back from its folder: the settings in `config.json` and every record of
//! `metrics.jsonl`, with what the results commands label and group it by.

use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_json::Value;
use storage::{run::RunDir, StepRecord};
use structured_linear::Structure;
use transformer::accounting::params;
use transformer::TransformerConfig;

use crate::ResultsError;

/// One run: its settings and records.
#[derive(Clone, Debug)]
pub struct Run {
    /// The run folder.
    pub dir: PathBuf,
    /// The model's name in the zoo (or the run's own).
    pub model_name: String,
    /// The model.
    pub model: TransformerConfig,
    /// Parameters of the model (guides included).
    pub params: u64,
    /// Whether the run trains with self-guided training.
    pub self_guided: bool,
    /// The tokenizer's vocabulary size and file hash, where the run recorded its data.
    pub tokenizer: Option<(usize, Option<u64>)>,
    /// `config.json` as written.
    pub config: Value,
    /// Every record of `metrics.jsonl`, in order.
    pub records: Vec<StepRecord>,
}

#[derive(Deserialize)]
struct ConfigView {
    model_name: String,
    model: TransformerConfig,
    #[serde(default)]
    sgt: Option<Value>,
    #[serde(default)]
    data_record: Option<DataView>,
}

#[derive(Deserialize)]
struct DataView {
    vocab_size: usize,
    #[serde(default)]
    tokenizer_fnv1a: Option<u64>,
}

impl Run {
    /// Reads the run in `dir`: its `config.json` and `metrics.jsonl` (every line a record).
    pub fn load(dir: &Path) -> Result<Self, ResultsError> {
        let layout = RunDir::new(dir);
        let not_a_run = |problem: String| ResultsError::NotARun {
            path: dir.to_path_buf(),
            problem,
        };
        if !dir.is_dir() {
            return Err(not_a_run("no such folder".into()));
        }
        let text = std::fs::read_to_string(layout.config())
            .map_err(|e| not_a_run(format!("config.json: {e}")))?;
        let config: Value =
            serde_json::from_str(&text).map_err(|e| not_a_run(format!("config.json: {e}")))?;
        let view =
            ConfigView::deserialize(&config).map_err(|e| not_a_run(format!("config.json: {e}")))?;
        let records = read_metrics(&layout.metrics())?;
        Ok(Self {
            dir: dir.to_path_buf(),
            params: params(&view.model).total,
            self_guided: view.model.self_guided || view.sgt.is_some_and(|s| !s.is_null()),
            tokenizer: view.data_record.map(|d| (d.vocab_size, d.tokenizer_fnv1a)),
            model_name: view.model_name,
            model: view.model,
            config,
            records,
        })
    }

    /// The folder's own name (how runs are told apart in messages).
    pub fn name(&self) -> String {
        self.dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| self.dir.display().to_string())
    }

    /// `model · 1.2M params · lowrank r32 FFN · self-guided`.
    pub fn label(&self) -> String {
        let mut label = format!(
            "{} · {} params · {}",
            self.model_name,
            compact(self.params as f64),
            self.structure()
        );
        if self.self_guided {
            label += " · self-guided";
        }
        label
    }

    /// The layers' structure with its sizes: `dense`, `lowrank r32 FFN`, `... + lowrank r64
    /// attention`.
    pub fn structure(&self) -> String {
        let ffn = &self.model.ffn;
        let mut s = if ffn.fc1 == Structure::Dense && ffn.fc2 == Structure::Dense {
            "dense".to_string()
        } else if ffn.fc1 == ffn.fc2 {
            format!("{} FFN", sized(&ffn.fc1))
        } else {
            format!("{}/{} FFN", sized(&ffn.fc1), sized(&ffn.fc2))
        };
        let q = &self.model.attention.q;
        if *q != Structure::Dense {
            s += &format!(" + {} attention", sized(q));
        }
        s
    }

    /// The family a scaling fit groups the run in: its FFN structure's kinds and the share of
    /// the dense weights its structured FFN layers keep (to 5%), not its sizes (width, depth,
    /// a first layer kept dense), and whether it is self-guided.
    pub fn family(&self) -> String {
        let ffn = &self.model.ffn;
        let mut family = match structured_ffn_share(&self.model) {
            None => "dense".to_string(),
            Some(share) => {
                let kinds = if ffn.fc1.name() == ffn.fc2.name() {
                    ffn.fc1.name().to_string()
                } else {
                    format!("{}/{}", ffn.fc1.name(), ffn.fc2.name())
                };
                format!("{kinds} {:.0}%", (share * 20.0).round() * 5.0)
            }
        };
        if self.model.attention.q != Structure::Dense {
            family += &format!(" + {} attention", self.model.attention.q.name());
        }
        if self.self_guided {
            family += " + self-guided";
        }
        family
    }

    /// The last record with a validation loss.
    pub fn final_validation(&self) -> Option<&StepRecord> {
        self.records.iter().rev().find(|r| r.val_loss.is_some())
    }
}

/// Every line of `metrics.jsonl` as a record; a missing file or a line that is not one is an
/// error naming it.
pub fn read_metrics(path: &Path) -> Result<Vec<StepRecord>, ResultsError> {
    let text = std::fs::read_to_string(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => ResultsError::NoPoints(format!(
            "{}: no such file (the run has logged no step)",
            path.display()
        )),
        _ => ResultsError::io(path, e),
    })?;
    let mut records = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let record =
            serde_json::from_str::<StepRecord>(line).map_err(|e| ResultsError::BadMetrics {
                path: path.to_path_buf(),
                line: i + 1,
                problem: e.to_string(),
            })?;
        records.push(record);
    }
    if records.is_empty() {
        return Err(ResultsError::NoPoints(format!(
            "{}: no records yet",
            path.display()
        )));
    }
    Ok(records)
}

/// The weights of the model's structured FFN layers over those of the same layers dense; none
/// when every FFN layer is dense.
fn structured_ffn_share(model: &TransformerConfig) -> Option<f64> {
    let (mut kept, mut dense) = (0u64, 0u64);
    for layer in 0..model.n_layers {
        for place in model.places().into_iter().filter(|p| !p.is_attention()) {
            let linear = model.linear(layer, place);
            if linear.structure != Structure::Dense {
                kept += linear.weight_params();
                dense += (linear.d_in * linear.d_out) as u64;
            }
        }
    }
    (dense > 0).then(|| kept as f64 / dense as f64)
}

fn sized(s: &Structure) -> String {
    match s {
        Structure::Dense => "dense".into(),
        Structure::LowRank { rank } => format!("lowrank r{rank}"),
        Structure::BlockDense { n_blocks, rank } => format!("blockdense b{n_blocks} r{rank}"),
        Structure::BlockShuffle { n_blocks } => format!("blockshuffle b{n_blocks}"),
    }
}

/// `1.2M`, `350k`, `3.1G`.
pub fn compact(x: f64) -> String {
    match x.abs() {
        a if a >= 1e9 => format!("{:.2}G", x / 1e9),
        a if a >= 1e6 => format!("{:.2}M", x / 1e6),
        a if a >= 1e3 => format!("{:.1}k", x / 1e3),
        _ => format!("{x:.0}"),
    }
}
