//! The language-model loss of token windows: a batch of windows as input and target ids, the
//! mean token cross-entropy of the logits, and a model's validation loss over batches of windows
//! (what `strata eval` and a training run's evaluations report).

use burn::tensor::backend::Backend;
use burn::tensor::{DType, ElementConversion, Int, Tensor, TensorData};
use serde::{Deserialize, Serialize};

use crate::{ModelError, Transformer};

/// Mean cross-entropy (nats per token) of `logits` against `targets`; half-precision logits
/// are converted to f32 first.
///
/// # Shapes
/// - logits: `[batch, seq, vocab]`, targets: `[batch, seq]` -> `[1]`
pub fn cross_entropy<B: Backend>(logits: Tensor<B, 3>, targets: Tensor<B, 2, Int>) -> Tensor<B, 1> {
    let [b, t, v] = logits.dims();
    let logits = to_f32(logits);
    // mean(logsumexp(x) - x[target]), with the row maximum as a constant shift (logsumexp does
    // not depend on it): the backward pass reuses the saved exponentials instead of taking the
    // exponential of the log-probabilities again, as log_softmax's backward does.
    let x = logits.reshape([b * t, v]);
    let max = x.clone().detach().max_dim(1);
    let lse = (x.clone() - max.clone()).exp().sum_dim(1).log() + max;
    let picked = x.gather(1, targets.reshape([b * t, 1]));
    (lse - picked).mean()
}

/// `x` in f32 when it is a half type (f16, bf16); otherwise unchanged.
pub fn to_f32<B: Backend, const D: usize>(x: Tensor<B, D>) -> Tensor<B, D> {
    match x.dtype() {
        DType::F16 | DType::BF16 => x.cast(DType::F32),
        _ => x,
    }
}

/// Refuses windows holding a token id the model's embedding cannot index (a data file that
/// changed after it was checked): an error naming the id, never an out-of-bounds lookup. One
/// pass over host memory per batch.
pub fn check_ids(windows: &[Vec<u32>], vocab_size: usize) -> Result<(), ModelError> {
    match windows
        .iter()
        .flatten()
        .find(|&&id| id as usize >= vocab_size)
    {
        Some(&id) => Err(ModelError::TokenOutOfRange { id, vocab_size }),
        None => Ok(()),
    }
}

/// Inputs (first `seq_len` tokens) and targets (last `seq_len`) of windows of `seq_len + 1`.
pub fn batch_tensors<B: Backend>(
    windows: &[Vec<u32>],
    device: &B::Device,
) -> (Tensor<B, 2, Int>, Tensor<B, 2, Int>) {
    let t = windows[0].len() - 1;
    let mut input = Vec::with_capacity(windows.len() * t);
    let mut target = Vec::with_capacity(windows.len() * t);
    for w in windows {
        input.extend(w[..t].iter().map(|&x| x as i64));
        target.extend(w[1..].iter().map(|&x| x as i64));
    }
    let shape = [windows.len(), t];
    (
        Tensor::from_data(TensorData::new(input, shape), device),
        Tensor::from_data(TensorData::new(target, shape), device),
    )
}

/// A validation result.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq)]
pub struct EvalResult {
    /// Mean token loss (nats).
    pub val_loss: f64,
    /// `exp(val_loss)`.
    pub ppl: f64,
    /// Tokens scored.
    pub tokens: u64,
}

/// The token-weighted mean loss of `model` over `batches` of windows of `seq_len + 1` tokens
/// (e.g. a data loader's windows in order). The sum stays on the device: one read at the end.
pub fn evaluate<B: Backend>(
    model: &Transformer<B>,
    batches: impl IntoIterator<Item = Vec<Vec<u32>>>,
    device: &B::Device,
) -> Result<EvalResult, ModelError> {
    let (mut sum, mut tokens) = (None::<Tensor<B, 1>>, 0u64);
    for windows in batches {
        if windows.is_empty() {
            continue;
        }
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
