//! Validation: the mean token loss of a model over a split's windows, in order.

use burn::tensor::backend::Backend;
use burn::tensor::{ElementConversion, Tensor};
use serde::{Deserialize, Serialize};
use transformer::Transformer;

use crate::data::loader::WindowLoader;
use crate::error::TrainError;
use crate::step::loss::cross_entropy;
use crate::step::primitives::{batch_tensors, check_ids};

/// Validation result.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq)]
pub struct EvalResult {
    /// Mean token loss (nats).
    pub val_loss: f64,
    /// `exp(val_loss)`.
    pub ppl: f64,
    /// Tokens scored.
    pub tokens: u64,
}

/// Scores the windows of `loader` in order (no shuffling): `max_batches` batches of
/// `batch_size`, or all windows when `max_batches` is 0.
pub fn evaluate<B: Backend>(
    model: &Transformer<B>,
    loader: &WindowLoader,
    batch_size: usize,
    max_batches: usize,
    device: &B::Device,
) -> Result<EvalResult, TrainError> {
    let n = match max_batches {
        0 => loader.windows(),
        m => loader.windows().min(m * batch_size),
    };
    // The token-weighted sum stays on the device; one read at the end.
    let (mut sum, mut tokens) = (None::<Tensor<B, 1>>, 0u64);
    for start in (0..n).step_by(batch_size.max(1)) {
        let windows: Vec<Vec<u32>> = (start..(start + batch_size).min(n))
            .map(|w| loader.window(w))
            .collect();
        check_ids(&windows, model.config().vocab_size)?;
        let (input, target) = batch_tensors::<B>(&windows, device);
        let count = (windows.len() * (windows[0].len() - 1)) as u64;
        let loss = cross_entropy(model.forward(input)?, target).mul_scalar(count as f64);
        sum = Some(match sum {
            Some(s) => s + loss,
            None => loss,
        });
        tokens += count;
    }
    let sum: f64 = sum.map_or(0.0, |s| s.into_scalar().elem());
    let val_loss = sum / tokens.max(1) as f64;
    Ok(EvalResult {
        val_loss,
        ppl: val_loss.exp(),
        tokens,
    })
}
