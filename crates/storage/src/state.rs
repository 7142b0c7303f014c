//! Where a run stands after an optimizer step (`state.json` of a checkpoint) and the records it
//! holds: the data position and f16's loss scale.

use serde::{Deserialize, Serialize};

/// Where a run stands after an optimizer step.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(deny_unknown_fields)]
pub struct TrainState {
    /// Optimizer steps done.
    pub step: u64,
    /// Tokens trained on (replayed ones included).
    pub tokens: u64,
    /// Training FLOPs spent, by the paper's formula with guides as evaluated.
    pub flops: f64,
    /// Wall-clock seconds of training so far (across resumes).
    pub elapsed_s: f64,
    /// Data position of the next step.
    pub cursor: Cursor,
    /// The run's seed; with `step` it determines every later random draw.
    pub seed: u64,
    /// Alpha of the last step (0 outside the guided phase).
    pub alpha: f64,
    /// Whether the model still has its guides.
    pub guides: bool,
    /// Latest validation loss, if any.
    pub val_loss: Option<f64>,
    /// f16's dynamic loss scale (absent for f32 and bf16).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub loss_scale: Option<LossScale>,
    /// Steps skipped so far because their loss or gradients were not finite
    /// (`skip_nonfinite`).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub nonfinite_skips: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// Where a data loader stands: the next window is `order(epoch)[index]`.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Cursor {
    /// Completed passes over the data.
    pub epoch: u64,
    /// Windows already drawn in this epoch.
    pub index: u64,
}

/// A dynamic loss scale as saved (the trainer's `LossScaler` is built from it).
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct LossScale {
    /// Factor the loss is multiplied by before the backward pass.
    pub scale: f64,
    /// Clean (applied) steps since the scale last changed.
    pub clean_steps: u64,
}
