//! One optimizer step's primitives, shared by the loop and the data-parallel replicas: batches
//! and their id check, the loss, a micro-batch's forward and backward, the clipped AdamW
//! update, and the per-step seeds and data cursor.

use burn::module::Module;
use burn::optim::GradientsParams;
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::{ElementConversion, Int, Tensor};
use transformer::Transformer;

use crate::error::TrainError;
use crate::step::loss::head_cross_entropy;
use crate::step::optim::{clip_scale, global_grad_norm, AdamW};
use corpus::Cursor;
use transformer::loss::{batch_tensors, check_ids};
use transformer::Precision;

/// How a micro-batch is computed.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Compute {
    /// Arithmetic of the passes.
    pub precision: Precision,
    /// Factor the loss is multiplied by before the backward pass (f16 loss scaling; 1 otherwise).
    pub loss_scale: f64,
    /// Read the gradient norm back before the update and skip an update whose norm is not
    /// finite (`--skip-nonfinite`; f16 steps always do).
    pub skip_nonfinite: bool,
}

impl Compute {
    /// f32, no scaling.
    pub const F32: Compute = Compute {
        precision: Precision::F32,
        loss_scale: 1.0,
        skip_nonfinite: false,
    };
}

/// Forward and backward of one micro-batch of windows: its mean token loss (unscaled, `[1]`,
/// left on the device: it may be non-finite, the caller decides when it reads it), and the
/// gradients of the (f32) parameters of `model` scaled by `loss_scale / accum` (burn's
/// accumulator sums, so `accum` micro-batches average). In half precision the passes run on
/// [`Precision::apply`]'s copy of the model.
pub fn micro_step<B: AutodiffBackend>(
    model: &Transformer<B>,
    windows: &[Vec<u32>],
    accum: usize,
    compute: Compute,
    device: &B::Device,
) -> Result<(Tensor<B::InnerBackend, 1>, GradientsParams), TrainError> {
    check_ids(windows, model.config().vocab_size)?;
    let (input, target) = batch_tensors::<B>(windows, device);
    let loss = loss_of(model, input, target, compute)?;
    let value = loss.clone().inner();
    let grads = loss
        .mul_scalar(compute.loss_scale / accum as f64)
        .backward();
    Ok((value, GradientsParams::from_grads(grads, model)))
}

/// The forward pass of `model` in `compute`'s precision and its mean token loss, `[1]`, tracked
/// for the backward pass.
pub(crate) fn loss_of<B: AutodiffBackend>(
    model: &Transformer<B>,
    input: Tensor<B, 2, Int>,
    target: Tensor<B, 2, Int>,
    compute: Compute,
) -> Result<Tensor<B, 1>, TrainError> {
    let model = compute.precision.apply(model.clone());
    let hidden = model.hidden(input)?;
    let (weight, bias) = model.output_head();
    Ok(head_cross_entropy(
        hidden,
        weight,
        bias,
        target.flatten(0, 1),
    ))
}

/// What [`apply_update`] did.
#[derive(Clone, Debug)]
pub struct Update<B: Backend> {
    /// The global gradient norm before clipping (of the unscaled loss), `[1]`, on the device.
    pub norm: Tensor<B, 1>,
    /// Whether the update was applied. Only a scaled (f16) step, or one that may skip
    /// (`Compute::skip_nonfinite`), reads the norm back to decide (as PyTorch's `GradScaler`
    /// does) and skips its update when the norm is not finite; every other step is applied
    /// without reading anything back, and a non-finite norm shows when the caller reads it.
    pub applied: bool,
}

/// Clips `grads` (of a loss multiplied by `compute.loss_scale`) by their global norm to `clip`
/// (0: no clipping) and applies one AdamW update with learning rate `lr`, the norm and the
/// clipping factor computed on the device. Returns the model and what was done.
pub fn apply_update<B: AutodiffBackend>(
    model: Transformer<B>,
    optim: &mut AdamW<B::InnerBackend>,
    grads: &GradientsParams,
    lr: f64,
    clip: f64,
    compute: Compute,
) -> (Transformer<B>, Update<B::InnerBackend>) {
    let device = model.devices()[0].clone();
    let scaled_norm = global_grad_norm(&model, grads, &device);
    let norm = scaled_norm.clone().div_scalar(compute.loss_scale);
    if compute.precision.scaled() || compute.skip_nonfinite {
        let value: f64 = norm.clone().into_scalar().elem();
        if !value.is_finite() {
            return (
                model,
                Update {
                    norm,
                    applied: false,
                },
            );
        }
    }
    let factor = clip_scale(scaled_norm, clip, compute.loss_scale);
    let model = optim.step(model, grads, lr, factor);
    (
        model,
        Update {
            norm,
            applied: true,
        },
    )
}

/// The generator seed of step `step` in a run seeded `seed` (splitmix64 of both).
pub fn step_seed(seed: u64, step: u64) -> u64 {
    let mut z = seed ^ step.wrapping_add(1).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The cursor at which `windows_done` windows have been drawn.
pub(crate) fn cursor_at(windows_done: u64, windows_per_epoch: usize) -> Cursor {
    let n = windows_per_epoch as u64;
    Cursor {
        epoch: windows_done / n,
        index: windows_done % n,
    }
}
