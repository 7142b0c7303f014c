//! A run's settings: the training budget, the recipe, self-guided training, logging and
//! checkpoint cadence (saved as the run folder's `config.json`), and the plan and learning-rate
//! schedule they imply.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use transformer::TransformerConfig;

use crate::error::TrainError;
use crate::step::optim::AdamWConfig;
use crate::step::precision::Precision;
use crate::step::schedule::{AlphaShape, LrSchedule, Plan, SgtConfig};

/// How long to train.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Budget {
    /// Optimizer steps (before fixedflop's extra steps).
    Steps(u64),
    /// Tokens: `floor(tokens / (global batch * seq_len))` steps, as the reference counts.
    Tokens(u64),
}

/// The value of every setting a run may leave out: the reference recipe (docs/reference.md §4)
/// scaled to a small global batch. [`TrainConfig::new`] and the command line's flags both take
/// their defaults from here.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Defaults {
    pub batch_size: usize,
    pub lr: f64,
    pub warmup_frac: f64,
    pub min_lr_ratio: f64,
    pub adamw: AdamWConfig,
    pub clip: f64,
    /// Self-guided training's ratio and alpha shape, when it is on.
    pub sgt_ratio: f64,
    pub sgt_shape: AlphaShape,
    pub eval_every: u64,
    pub eval_batches: usize,
    pub log_every: u64,
    pub checkpoint_every: u64,
    pub keep: usize,
    pub seed: u64,
    pub precision: Precision,
    pub devices: usize,
    pub skip_nonfinite: u64,
}

/// See [`Defaults`].
pub const DEFAULTS: Defaults = Defaults {
    batch_size: 8,
    lr: 6e-4,
    warmup_frac: 0.1,
    min_lr_ratio: 0.1,
    adamw: AdamWConfig::RECIPE,
    clip: 1.0,
    sgt_ratio: 0.5,
    sgt_shape: AlphaShape::Cosine,
    eval_every: 0,
    eval_batches: 0,
    log_every: 1,
    checkpoint_every: 0,
    keep: 2,
    seed: 0,
    precision: Precision::F32,
    devices: 1,
    skip_nonfinite: 0,
};

/// Everything a run needs; saved as the run folder's `config.json`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TrainConfig {
    /// Zoo name or file the model came from (for reports).
    pub model_name: String,
    /// The model.
    pub model: TransformerConfig,
    /// Prepared data folder (`strata data prepare`).
    pub data: PathBuf,
    /// Tokens per training sequence (at most the model's `max_seq_len`).
    pub seq_len: usize,
    /// Sequences per micro-batch.
    pub batch_size: usize,
    /// Micro-batches per optimizer step (global batch = `batch_size * grad_accum`).
    pub grad_accum: usize,
    /// Training length.
    pub budget: Budget,
    /// Peak learning rate.
    pub lr: f64,
    /// Fraction of the steps spent warming up linearly (0.1).
    pub warmup_frac: f64,
    /// Cosine floor as a fraction of `lr` (0.1).
    pub min_lr_ratio: f64,
    /// AdamW.
    pub adamw: AdamWConfig,
    /// Clip the global gradient norm to this (1.0; 0 turns clipping off).
    pub clip: f64,
    /// Self-guided training, if any.
    pub sgt: Option<SgtConfig>,
    /// Evaluate every this many steps (and at the end); 0: only at the end.
    pub eval_every: u64,
    /// Validation batches of `batch_size * devices` sequences per evaluation (0: the whole
    /// validation split).
    pub eval_batches: usize,
    /// Write a metrics record every this many steps (evaluation steps always).
    pub log_every: u64,
    /// Checkpoint every this many steps (and at the end); 0: only at the end.
    pub checkpoint_every: u64,
    /// Checkpoints kept.
    pub keep: usize,
    /// Seed of everything (init, data order, dropout, reduce_flop).
    pub seed: u64,
    /// Peak FLOP/s of the device, for MFU.
    pub peak_flops: Option<f64>,
    /// Arithmetic of the forward and backward passes (weights stay f32).
    #[serde(default)]
    pub precision: Precision,
    /// Data-parallel replicas, one per device; each takes `batch_size` sequences per
    /// micro-batch, so the global batch is `batch_size * grad_accum * devices`.
    #[serde(default = "one")]
    pub devices: usize,
    /// Nodes (machines or processes) of a multi-node run, each with `devices` replicas: the
    /// global batch is `batch_size * grad_accum * devices * nodes` (see [`crate::distributed::cluster`]).
    #[serde(default = "one")]
    pub nodes: usize,
    /// Steps whose loss or gradients are not finite that may be skipped (no update; the run
    /// goes on) before the run stops with an error; 0 stops at the first. With a non-zero
    /// allowance each step's gradient norm is read back before its update (one small transfer
    /// per step). f16's loss-scaler skips do not count.
    #[serde(default)]
    pub skip_nonfinite: u64,
    /// Start from the weights of this checkpoint (an imported or converted model, or another
    /// run's) instead of a random initialisation, with a fresh optimizer; `model` must be its
    /// model. Its guides are used with `sgt` and dropped without; a checkpoint without guides
    /// gets fresh ones (its structured layers merged) under `sgt`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub init: Option<PathBuf>,
}

fn one() -> usize {
    1
}

impl TrainConfig {
    /// The reference recipe (docs/reference.md §4) for `model`, scaled to a small global batch: AdamW
    /// (0.9, 0.999, eps 1e-8, decay 0.1), 10% warmup, cosine to 0.1 x lr, clip 1.0.
    pub fn new(model_name: &str, model: TransformerConfig, data: PathBuf, budget: Budget) -> Self {
        let d = DEFAULTS;
        Self {
            model_name: model_name.into(),
            seq_len: model.max_seq_len,
            model,
            data,
            batch_size: d.batch_size,
            grad_accum: 1,
            budget,
            lr: d.lr,
            warmup_frac: d.warmup_frac,
            min_lr_ratio: d.min_lr_ratio,
            adamw: d.adamw,
            clip: d.clip,
            sgt: None,
            eval_every: d.eval_every,
            eval_batches: d.eval_batches,
            log_every: d.log_every,
            checkpoint_every: d.checkpoint_every,
            keep: d.keep,
            seed: d.seed,
            peak_flops: None,
            precision: d.precision,
            devices: d.devices,
            nodes: 1,
            skip_nonfinite: d.skip_nonfinite,
            init: None,
        }
    }

    /// Sequences per optimizer step, over all devices of all nodes.
    pub fn global_batch(&self) -> usize {
        self.batch_size * self.grad_accum * self.devices * self.nodes
    }

    /// Steps the budget asks for, before fixedflop's extra steps.
    pub fn base_steps(&self) -> u64 {
        match self.budget {
            Budget::Steps(n) => n,
            Budget::Tokens(t) => t / (self.global_batch() * self.seq_len) as u64,
        }
    }

    /// The step plan.
    pub fn plan(&self) -> Result<Plan, TrainError> {
        Plan::new(self.base_steps(), self.sgt.as_ref())
    }

    /// The learning-rate schedule over the plan's steps.
    pub fn lr_schedule(&self, plan: &Plan) -> LrSchedule {
        LrSchedule {
            peak: self.lr,
            // The reference's int(): floor.
            warmup: (self.warmup_frac * plan.total_steps as f64).floor() as u64,
            total: plan.total_steps,
            min_ratio: self.min_lr_ratio,
        }
    }

    /// Checks the settings against each other and the model.
    pub fn validate(&self) -> Result<(), TrainError> {
        let bad =
            |setting: &'static str, problem: String| Err(TrainError::Setting { setting, problem });
        if self.seq_len == 0 || self.seq_len > self.model.max_seq_len {
            return bad(
                "seq_len",
                format!(
                    "{} must lie in 1..={} (the model's max_seq_len)",
                    self.seq_len, self.model.max_seq_len
                ),
            );
        }
        for (setting, v) in [
            ("batch_size", self.batch_size),
            ("grad_accum", self.grad_accum),
            ("devices", self.devices),
            ("nodes", self.nodes),
            ("keep", self.keep),
        ] {
            if v == 0 {
                return bad(setting, "must be at least 1".into());
            }
        }
        match self.budget {
            Budget::Steps(0) => return bad("budget", "the step budget must be at least 1".into()),
            Budget::Tokens(t) if t < (self.global_batch() * self.seq_len) as u64 => {
                return bad(
                    "budget",
                    format!(
                        "{t} tokens is less than one step ({} sequences x {} tokens)",
                        self.global_batch(),
                        self.seq_len
                    ),
                )
            }
            _ => {}
        }
        if !(self.lr > 0.0 && self.lr.is_finite()) {
            return bad("lr", format!("{} must be positive", self.lr));
        }
        if !(0.0..1.0).contains(&self.warmup_frac) {
            return bad(
                "warmup_frac",
                format!("{} must lie in [0, 1)", self.warmup_frac),
            );
        }
        if !(0.0..=1.0).contains(&self.min_lr_ratio) {
            return bad(
                "min_lr_ratio",
                format!("{} must lie in [0, 1]", self.min_lr_ratio),
            );
        }
        if self.clip.is_nan() || self.clip < 0.0 {
            return bad("clip", format!("{} must be >= 0", self.clip));
        }
        if self.log_every == 0 {
            return bad("log_every", "must be at least 1".into());
        }
        self.model.validate()?;
        self.plan()?;
        Ok(())
    }
}
