//! A training step timed by phase, for `strata bench train --profile`: building the batch, the
//! forward pass with the loss, the backward pass, the global gradient norm with the clipping
//! factor, and the AdamW update. The device is synchronised after each phase, so on an eager
//! backend (the CPU ones) each time is that phase's own; on a GPU the synchronisations remove
//! the overlap a normal step has. The phases are the ones [`crate::step::primitives::micro_step`] and
//! [`crate::step::primitives::apply_update`] run, in the same order.

use std::time::Instant;

use burn::module::Module;
use burn::optim::GradientsParams;
use burn::tensor::backend::AutodiffBackend;
use serde::Serialize;
use transformer::Transformer;

use crate::error::TrainError;
use crate::step::optim::{clip_scale, global_grad_norm, AdamW};
use crate::step::primitives::{batch_tensors, check_ids, loss_of, Compute};

/// Seconds spent in each phase of one step.
#[derive(Serialize, Clone, Copy, Debug, Default, PartialEq)]
pub struct PhaseTimes {
    /// Token ids to device tensors.
    pub data: f64,
    /// The forward pass and the loss.
    pub forward: f64,
    /// The backward pass, gradients collected by parameter.
    pub backward: f64,
    /// The global gradient norm and the clipping factor.
    pub clip: f64,
    /// The AdamW update of every parameter.
    pub adamw: f64,
}

/// One optimizer step on `windows` (one micro-batch), timed by phase.
pub fn profiled_step<B: AutodiffBackend>(
    model: Transformer<B>,
    optim: &mut AdamW<B::InnerBackend>,
    windows: &[Vec<u32>],
    lr: f64,
    clip: f64,
    compute: Compute,
    device: &B::Device,
) -> Result<(Transformer<B>, PhaseTimes), TrainError> {
    let sync = || B::sync(device).map_err(|e| TrainError::Readback(format!("{e:?}")));
    let mut times = PhaseTimes::default();
    let mut clock = Instant::now();
    let mut lap = |slot: &mut f64| {
        *slot = clock.elapsed().as_secs_f64();
        clock = Instant::now();
    };
    check_ids(windows, model.config().vocab_size)?;
    let (input, target) = batch_tensors::<B>(windows, device);
    sync()?;
    lap(&mut times.data);
    let loss = loss_of(&model, input, target, compute)?;
    sync()?;
    lap(&mut times.forward);
    let grads = loss.mul_scalar(compute.loss_scale).backward();
    let grads = GradientsParams::from_grads(grads, &model);
    sync()?;
    lap(&mut times.backward);
    let device_inner = model.devices()[0].clone();
    let scaled_norm = global_grad_norm(&model, &grads, &device_inner);
    let factor = clip_scale(scaled_norm, clip, compute.loss_scale);
    sync()?;
    lap(&mut times.clip);
    let model = optim.step(model, &grads, lr, factor);
    sync()?;
    lap(&mut times.adamw);
    Ok((model, times))
}
