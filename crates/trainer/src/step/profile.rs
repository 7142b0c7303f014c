//! A training step timed by phase, for `strata bench train --profile`: building the batch, the
//! forward pass with the loss, the backward pass, the global gradient norm with the clipping
//! factor, and the AdamW update. The device is synchronised after each phase, so on an eager
//! backend (the CPU ones) each time is that phase's own; on a GPU the synchronisations remove
//! the overlap a normal step has. The phases are the ones [`crate::step::primitives::micro_step`] and
//! [`crate::step::primitives::apply_update`] run, in the same order. After each phase's
//! synchronisation a probe is told the phase's name, so a caller can read counters of its own
//! at the same boundaries (the CUDA stand-in's launches, for example).

use std::time::Instant;

use burn::module::Module;
use burn::optim::GradientsParams;
use burn::tensor::backend::AutodiffBackend;
use serde::Serialize;
use transformer::Transformer;

use crate::error::TrainError;
use crate::step::optim::{clip_scale, global_grad_norm, AdamW};
use crate::step::primitives::{loss_of, Compute};
use transformer::loss::{batch_tensors, check_ids};

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

/// The phases' names, in order, as the probe of [`profiled_step`] is told them.
pub const PHASES: [&str; 5] = ["data", "forward", "backward", "clip", "adamw"];

/// How a profiled step updates the model.
#[derive(Clone, Copy, Debug)]
pub struct StepSettings {
    /// Learning rate.
    pub lr: f64,
    /// Global gradient-norm clipping threshold (none when <= 0).
    pub clip: f64,
    /// Arithmetic and loss scaling.
    pub compute: Compute,
}

/// One optimizer step on `windows` (one micro-batch), timed by phase; `probe` is called with
/// each phase's name (one of [`PHASES`]) once that phase is done and the device synchronised.
pub fn profiled_step<B: AutodiffBackend>(
    model: Transformer<B>,
    optim: &mut AdamW<B::InnerBackend>,
    windows: &[Vec<u32>],
    settings: StepSettings,
    device: &B::Device,
    probe: &mut dyn FnMut(&'static str),
) -> Result<(Transformer<B>, PhaseTimes), TrainError> {
    let StepSettings { lr, clip, compute } = settings;
    let sync = || B::sync(device).map_err(|e| TrainError::Readback(format!("{e:?}")));
    let mut times = PhaseTimes::default();
    let mut clock = Instant::now();
    let mut lap = |slot: &mut f64, phase: &'static str| {
        *slot = clock.elapsed().as_secs_f64();
        probe(phase);
        clock = Instant::now();
    };
    check_ids(windows, model.config().vocab_size)?;
    let (input, target) = batch_tensors::<B>(windows, device);
    sync()?;
    lap(&mut times.data, "data");
    let loss = loss_of(&model, input, target, compute)?;
    sync()?;
    lap(&mut times.forward, "forward");
    let grads = loss.mul_scalar(compute.loss_scale).backward();
    let grads = GradientsParams::from_grads(grads, &model);
    sync()?;
    lap(&mut times.backward, "backward");
    let device_inner = model.devices()[0].clone();
    let scaled_norm = global_grad_norm(&model, &grads, &device_inner);
    let factor = clip_scale(scaled_norm, clip, compute.loss_scale);
    sync()?;
    lap(&mut times.clip, "clip");
    let model = optim.step(model, &grads, lr, factor);
    sync()?;
    lap(&mut times.adamw, "adamw");
    Ok((model, times))
}
