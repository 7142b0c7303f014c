//! One line of a run's `metrics.jsonl`: the record the trainer writes after each logged step,
//! and reads back by `strata plot`, `report` and `fit`.

use serde::{Deserialize, Serialize};

/// One logged optimizer step; on evaluation steps `val_loss` and `val_ppl` are set.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
pub struct StepRecord {
    /// Optimizer steps done (1-based: the first step logs `step: 1`).
    pub step: u64,
    /// Steps the run will take.
    pub total_steps: u64,
    /// Tokens trained on so far.
    pub tokens: u64,
    /// Mean token loss of this step's global batch (`null` when a skipped step's loss was not
    /// finite).
    #[serde(deserialize_with = "nan_if_null")]
    pub loss: f64,
    /// Learning rate of this step.
    pub lr: f64,
    /// Self-guided mixing weight of this step (0 without guides).
    pub alpha: f64,
    /// Guided layers evaluated in this step's last micro-batch (reduce_flop draws).
    pub guides_used: usize,
    /// Global gradient norm before clipping (`null` when an f16 step overflowed).
    #[serde(deserialize_with = "nan_if_null")]
    pub grad_norm: f64,
    /// Whether the update was skipped: f16 gradients overflowed (the loss scale was halved), or
    /// the loss or gradients were not finite and `--skip-nonfinite` allowed a skip.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub skipped: bool,
    /// f16's loss scale during this step.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub loss_scale: Option<f64>,
    /// Cumulative training FLOPs.
    pub flops: f64,
    /// Seconds of training so far.
    pub elapsed_s: f64,
    /// Training tokens per second since the previous record.
    pub tokens_per_s: f64,
    /// Model FLOPs utilisation since the previous record, given a peak FLOP/s.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mfu: Option<f64>,
    /// Validation loss (evaluation steps).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub val_loss: Option<f64>,
    /// Validation perplexity, `exp(val_loss)` (evaluation steps).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub val_ppl: Option<f64>,
}

impl StepRecord {
    /// Whether the update was skipped for a non-finite loss or gradients under
    /// `--skip-nonfinite` (an f16 overflow skip has a loss scale).
    pub fn skipped_nonfinite(&self) -> bool {
        self.skipped && self.loss_scale.is_none()
    }
}

/// Reads a number written by serde_json, where non-finite numbers become `null`.
fn nan_if_null<'de, D: serde::Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    Ok(Option::<f64>::deserialize(d)?.unwrap_or(f64::NAN))
}
