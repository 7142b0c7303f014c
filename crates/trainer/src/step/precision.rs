//! Mixed precision: forward and backward passes in bf16 or f16, while the weights the optimizer
//! updates, its moments and the checkpoints stay f32 ("master weights").
//!
//! Each micro-batch runs on a copy of the model whose parameters are the f32 weights cast to the
//! compute type *inside* the autodiff graph (`transformer::Precision::apply`, [`cast_params`]). The cast's backward casts the
//! gradients back, so they arrive at the f32 weights in f32 and accumulate there. Attention
//! scores are normalised in f32 (the transformer does it for half inputs) and the loss is taken
//! in f32 ([`transformer::loss::cross_entropy`], [`crate::step::loss::head_cross_entropy`]).
//!
//! f16 has a narrow exponent range, so its gradients go through dynamic loss scaling
//! ([`LossScaler`], PyTorch's `GradScaler` defaults): the loss is multiplied by the scale before
//! the backward pass and the gradients divided by it; a step whose gradients overflow is skipped
//! and the scale halved; the scale doubles after 2000 clean steps. bf16 has f32's range and needs
//! no scaling.

use serde::{Deserialize, Serialize};
#[cfg(doc)]
use transformer::precision::cast_params;

/// Dynamic loss scale for f16 training (PyTorch `GradScaler`'s defaults: start at 2^16, halve on
/// overflow, double after 2000 clean steps). Saved in checkpoints so resuming continues with the
/// same scale.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct LossScaler {
    /// Factor the loss is multiplied by before the backward pass.
    pub scale: f64,
    /// Clean (applied) steps since the scale last changed.
    pub clean_steps: u64,
}

impl Default for LossScaler {
    fn default() -> Self {
        Self {
            scale: 65536.0,
            clean_steps: 0,
        }
    }
}

impl From<storage::LossScale> for LossScaler {
    fn from(saved: storage::LossScale) -> Self {
        Self {
            scale: saved.scale,
            clean_steps: saved.clean_steps,
        }
    }
}

impl From<LossScaler> for storage::LossScale {
    fn from(scaler: LossScaler) -> Self {
        Self {
            scale: scaler.scale,
            clean_steps: scaler.clean_steps,
        }
    }
}

impl LossScaler {
    /// Clean steps after which the scale doubles.
    pub const GROWTH_INTERVAL: u64 = 2000;

    /// Records a step's outcome: `finite` gradients were applied, otherwise the step was skipped.
    pub fn update(&mut self, finite: bool) {
        if finite {
            self.clean_steps += 1;
            if self.clean_steps == Self::GROWTH_INTERVAL {
                self.scale *= 2.0;
                self.clean_steps = 0;
            }
        } else {
            self.scale *= 0.5;
            self.clean_steps = 0;
        }
    }
}
