//! A run's settings: the training budget, the recipe, self-guided training, logging and
//! checkpoint cadence (saved as the run folder's `config.json`), and the plan and learning-rate
//! schedule they imply.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use transformer::TransformerConfig;

use crate::error::TrainError;
use crate::step::optim::AdamWConfig;
use crate::step::schedule::{AlphaShape, LrSchedule, Plan, SgtConfig};
use corpus::DataRecord;
use transformer::Precision;

/// How long to train.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Budget {
    /// Optimizer steps (before fixedflop's extra steps).
    Steps(u64),
    /// Tokens: `floor(tokens / (global batch * seq_len))` steps, as the reference counts.
    Tokens(u64),
}

/// The recipe: every run setting that has a default (the reference recipe, docs/reference.md §4,
/// scaled to a small global batch). [`DEFAULTS`] holds each default once; [`TrainConfig::new`]
/// takes them from there and [`TrainConfig::with_recipe`] from a recipe given. With the `clap`
/// feature this struct is a command line's flags (`--batch-size`, `--lr`, `--warmup`, ...), each
/// defaulting to [`DEFAULTS`], so a front end copies no setting by hand.
#[derive(Clone, Copy, Debug, PartialEq)]
#[cfg_attr(feature = "clap", derive(clap::Args))]
pub struct Recipe {
    /// Sequences per micro-batch.
    #[cfg_attr(feature = "clap", arg(long, default_value_t = DEFAULTS.batch_size))]
    pub batch_size: usize,
    /// Peak learning rate.
    #[cfg_attr(
        feature = "clap",
        arg(long, default_value_t = DEFAULTS.lr, allow_negative_numbers = true)
    )]
    pub lr: f64,
    /// Warmup as a fraction of the steps (linear).
    #[cfg_attr(feature = "clap", arg(long = "warmup", default_value_t = DEFAULTS.warmup_frac))]
    pub warmup_frac: f64,
    /// Cosine floor as a fraction of the peak learning rate.
    #[cfg_attr(feature = "clap", arg(long, default_value_t = DEFAULTS.min_lr_ratio))]
    pub min_lr_ratio: f64,
    #[cfg_attr(feature = "clap", command(flatten))]
    pub adamw: AdamWConfig,
    /// Clip the global gradient norm to this (0: off).
    #[cfg_attr(feature = "clap", arg(long, default_value_t = DEFAULTS.clip))]
    pub clip: f64,
    /// Self-guided training's ratio: the guided fraction (fixedstep) or the added fraction
    /// (fixedflop) of the steps.
    #[cfg_attr(feature = "clap", arg(long, default_value_t = DEFAULTS.sgt_ratio))]
    pub sgt_ratio: f64,
    /// Self-guided training's decay of alpha.
    #[cfg_attr(
        feature = "clap",
        arg(long = "sgt-schedule", value_enum, default_value_t = DEFAULTS.sgt_shape)
    )]
    pub sgt_shape: AlphaShape,
    /// Evaluate every N steps (and at the end; 0: only at the end).
    #[cfg_attr(feature = "clap", arg(long, default_value_t = DEFAULTS.eval_every))]
    pub eval_every: u64,
    /// Validation batches per evaluation (0: the whole validation split).
    #[cfg_attr(feature = "clap", arg(long, default_value_t = DEFAULTS.eval_batches))]
    pub eval_batches: usize,
    /// Write a metrics record every N steps.
    #[cfg_attr(feature = "clap", arg(long, default_value_t = DEFAULTS.log_every))]
    pub log_every: u64,
    /// Checkpoint every N steps (and at the end; 0: only at the end).
    #[cfg_attr(feature = "clap", arg(long, default_value_t = DEFAULTS.checkpoint_every))]
    pub checkpoint_every: u64,
    /// Checkpoints kept.
    #[cfg_attr(feature = "clap", arg(long, default_value_t = DEFAULTS.keep))]
    pub keep: usize,
    /// Seed of everything (init, data order, dropout, reduce_flop).
    #[cfg_attr(feature = "clap", arg(long, default_value_t = DEFAULTS.seed))]
    pub seed: u64,
    /// Forward/backward arithmetic; weights, optimizer state and checkpoints stay f32.
    #[cfg_attr(feature = "clap", arg(long, value_enum, default_value_t = DEFAULTS.precision))]
    pub precision: Precision,
    /// Data-parallel replicas (a front end's default may depend on a resumed run's).
    #[cfg_attr(feature = "clap", arg(skip = DEFAULTS.devices))]
    pub devices: usize,
    /// Non-finite steps that may be skipped (a front end's default may depend on resuming).
    #[cfg_attr(feature = "clap", arg(skip = DEFAULTS.skip_nonfinite))]
    pub skip_nonfinite: u64,
}

/// See [`Recipe`].
pub const DEFAULTS: Recipe = Recipe {
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

impl Default for Recipe {
    fn default() -> Self {
        DEFAULTS
    }
}

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
    /// What `data` held when the run started ([`DataRecord`], written by the run itself): a
    /// resumed run given another folder (a moved copy) checks it against this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_record: Option<DataRecord>,
}

fn one() -> usize {
    1
}

impl TrainConfig {
    /// The reference recipe ([`DEFAULTS`]) for `model`: AdamW (0.9, 0.999, eps 1e-8, decay
    /// 0.1), 10% warmup, cosine to 0.1 x lr, clip 1.0; sequences of the model's `max_seq_len`.
    pub fn new(model_name: &str, model: TransformerConfig, data: PathBuf, budget: Budget) -> Self {
        Self::with_recipe(model_name, model, data, budget, &DEFAULTS)
    }

    /// `recipe` for `model` (one micro-batch per step, no self-guided training, sequences of the
    /// model's `max_seq_len`: change the fields for more).
    pub fn with_recipe(
        model_name: &str,
        model: TransformerConfig,
        data: PathBuf,
        budget: Budget,
        recipe: &Recipe,
    ) -> Self {
        let r = *recipe;
        Self {
            model_name: model_name.into(),
            seq_len: model.max_seq_len,
            model,
            data,
            batch_size: r.batch_size,
            grad_accum: 1,
            budget,
            lr: r.lr,
            warmup_frac: r.warmup_frac,
            min_lr_ratio: r.min_lr_ratio,
            adamw: r.adamw,
            clip: r.clip,
            sgt: None,
            eval_every: r.eval_every,
            eval_batches: r.eval_batches,
            log_every: r.log_every,
            checkpoint_every: r.checkpoint_every,
            keep: r.keep,
            seed: r.seed,
            peak_flops: None,
            precision: r.precision,
            devices: r.devices,
            nodes: 1,
            skip_nonfinite: r.skip_nonfinite,
            init: None,
            data_record: None,
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
