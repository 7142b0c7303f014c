//! What a run came to, read off its records: how far it went, at what cost and speed, and its
//! final validation loss (a row of the report's table).

use serde::Serialize;

use crate::Run;

/// A run's totals and outcome.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Summary {
    /// Optimizer steps done.
    pub steps: u64,
    /// Steps the run was set to take.
    pub total_steps: u64,
    /// Tokens trained on.
    pub tokens: u64,
    /// Training FLOPs.
    pub flops: f64,
    /// Seconds of training.
    pub seconds: f64,
    /// Training tokens per second over the whole run.
    pub tokens_per_s: Option<f64>,
    /// Mean model FLOPs utilisation of the records that have one (runs given a peak FLOP/s).
    pub mfu: Option<f64>,
    /// The last validation loss.
    pub val_loss: Option<f64>,
    /// Its perplexity.
    pub val_ppl: Option<f64>,
    /// Steps at which the update was skipped (non-finite or overflowing gradients).
    pub skipped: usize,
}

impl Summary {
    /// The summary of `run` (whose records are never empty).
    pub fn of(run: &Run) -> Self {
        let last = run.records.last().cloned().unwrap_or_default();
        let mfus: Vec<f64> = run.records.iter().filter_map(|r| r.mfu).collect();
        let val = run.final_validation();
        Self {
            steps: last.step,
            total_steps: last.total_steps,
            tokens: last.tokens,
            flops: last.flops,
            seconds: last.elapsed_s,
            tokens_per_s: (last.elapsed_s > 0.0).then(|| last.tokens as f64 / last.elapsed_s),
            mfu: (!mfus.is_empty()).then(|| mfus.iter().sum::<f64>() / mfus.len() as f64),
            val_loss: val.and_then(|r| r.val_loss),
            val_ppl: val.and_then(|r| r.val_ppl),
            skipped: run.records.iter().filter(|r| r.skipped).count(),
        }
    }

    /// Whether the run took every step it was set to.
    pub fn finished(&self) -> bool {
        self.steps >= self.total_steps
    }
}
