//! One optimizer step of a model replica, and data-parallel training over several local devices
//! with burn's collective operations (`burn::collective`, no all-reduce of our own).
//!
//! Every device holds a replica: the same weights (forked from the first device's model, so the
//! parameter ids match) and its own AdamW state. Each micro-batch of `batch_size * devices`
//! sequences is split in device order; every replica computes the gradients of its share, the
//! gradients are averaged in one flat buffer ([`crate::distributed::flat`], one all-reduce per step), and
//! every replica applies the same update, so the replicas stay equal without broadcasting
//! weights. The loss and the FLOPs of the step are summed over the peers the same way. The
//! first device also evaluates, logs and writes checkpoints; the others run on threads of
//! their own ([`crate::distributed::peers`]) and follow the step numbers it sends them.
//!
//! With one device there is no collective at all: [`Replica::step`] is the whole step.
//!
//! Over several nodes ([`crate::distributed::cluster`]) the same holds with global ranks: replica `d` of node
//! `n` is rank `n * devices + d` of `nodes * devices`, the collective reaches the other nodes
//! through burn's global level, and every wait on them is watched. The step's first all-reduce
//! also carries each node's wish to stop (a signal, a time limit), so all nodes stop after the
//! same step.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;

use burn::collective::{self, PeerId, ReduceOperation};
use burn::optim::{GradientsAccumulator, GradientsParams};
use burn::tensor::backend::{AutodiffBackend, Backend, Device, DeviceId, DeviceOps};
use burn::tensor::{ElementConversion, Tensor, TensorPrimitive};
use rand::rngs::StdRng;
use rand::SeedableRng;
use transformer::Transformer;

use crate::config::TrainConfig;
use crate::distributed::cluster::{arm, collective_error, Watchdog};
use crate::error::{panic_message, TrainError};
use crate::step::faults::FaultHook;
use crate::step::optim::AdamW;
use crate::step::precision::LossScaler;
use crate::step::primitives::{apply_update, cursor_at, micro_step, step_seed, Compute};
use crate::step::schedule::{LrSchedule, Plan};
use corpus::WindowLoader;

/// What a step needs besides the replica; the same on every device.
#[derive(Clone, Debug)]
pub(crate) struct StepContext {
    pub config: TrainConfig,
    pub plan: Plan,
    pub lr: LrSchedule,
    /// FLOPs per token of everything but the linear layers (scores, head).
    pub fixed_per_token: u64,
    /// Faults to inject (tests of what a run does when a step goes wrong).
    pub faults: Option<Arc<dyn FaultHook>>,
}

/// What a step did (summed over all devices). The loss and the gradient norm stay on the
/// device until the caller reads them (at its logging points).
#[derive(Clone, Debug)]
pub(crate) struct StepOutcome<B: Backend> {
    /// Mean token loss of the global batch, `[1]`.
    pub loss: Tensor<B, 1>,
    /// Training FLOPs of the step.
    pub flops: f64,
    /// Guided layers evaluated in the first device's last micro-batch.
    pub guides_used: usize,
    /// Global gradient norm before clipping, `[1]` (not finite when an f16 step overflowed).
    pub grad_norm: Tensor<B, 1>,
    /// Whether the update was applied (f16 steps whose gradients overflow, and with
    /// `--skip-nonfinite` steps whose gradients are not finite, are skipped).
    pub applied: bool,
    /// Whether any replica asked to stop after this step (always this replica's own wish
    /// when it is alone).
    pub stop: bool,
}

/// A model replica and its optimizer, loader and loss scale.
pub(crate) struct Replica<B: AutodiffBackend> {
    pub model: Transformer<B>,
    pub optim: AdamW<B::InnerBackend>,
    pub loader: WindowLoader,
    pub device: B::Device,
    /// Global rank: position among all devices of all nodes (0 evaluates, logs and
    /// checkpoints).
    pub rank: usize,
    /// Number of devices over all nodes.
    pub peers: usize,
    /// f16's dynamic loss scale.
    pub scaler: Option<LossScaler>,
    /// Watches the waits on other nodes (multi-node runs).
    pub watch: Option<Watchdog>,
}

impl<B: AutodiffBackend> Replica<B> {
    /// A failed all-reduce of step `step` (0-based; none: before the first): between nodes,
    /// another node is gone.
    fn all_reduce_failed(&self, step: Option<u64>, e: collective::CollectiveError) -> TrainError {
        match self.watch {
            Some(_) => TrainError::NodeLost {
                when: step.map_or("before the first step".into(), |s| {
                    format!("in step {}", s + 1)
                }),
                problem: crate::distributed::cluster::describe(&e),
            },
            None => collective_error(e),
        }
    }
}

/// One replica's share of a step, before the all-reduce.
struct Local<B: Backend> {
    /// Whether any replica asked to stop after this step.
    stop: bool,
    grads: GradientsParams,
    /// Sum of the micro-batches' mean losses, `[1]`.
    loss_sum: Tensor<B, 1>,
    flops: f64,
    guides_used: usize,
}

impl<B: AutodiffBackend> Replica<B> {
    /// Runs optimizer step `step` (0-based): alpha or guide dropping, the step's data, the
    /// micro-batches, the gradient all-reduce across devices, the update.
    ///
    /// With several devices, when one replica's share fails every replica stops at that step
    /// ([`Replica::local_over_peers`]): the failing one returns its error, the others
    /// [`TrainError::PeerFailed`].
    pub fn step(
        mut self,
        step: u64,
        ctx: &StepContext,
        stop: bool,
    ) -> Result<(Self, StepOutcome<B::InnerBackend>), TrainError> {
        let config = &ctx.config;
        let mut compute = Compute {
            precision: config.precision,
            loss_scale: self.scaler.map_or(1.0, |s| s.scale),
            skip_nonfinite: config.skip_nonfinite > 0,
        };
        // A NaN loss scale makes every gradient of this step NaN (the loss stays finite).
        if ctx
            .faults
            .as_ref()
            .is_some_and(|f| f.poison_gradients(step))
        {
            compute.loss_scale = f64::NAN;
        }
        let local = if self.peers > 1 {
            self.local_over_peers(step, ctx, compute, stop)?
        } else {
            Local {
                stop,
                ..self.local(step, ctx, compute)?
            }
        };
        let loss = local.loss_sum.div_scalar(config.grad_accum as f64);
        let update;
        (self.model, update) = apply_update(
            self.model,
            &mut self.optim,
            &local.grads,
            ctx.lr.at(step),
            config.clip,
            compute,
        );
        if let Some(scaler) = &mut self.scaler {
            scaler.update(update.applied);
        }
        let outcome = StepOutcome {
            loss,
            flops: local.flops,
            guides_used: local.guides_used,
            grad_norm: update.norm,
            applied: update.applied,
            stop: local.stop,
        };
        Ok((self, outcome))
    }

    /// [`Replica::local`] with several devices: a failure (an error, or a panic such as running
    /// out of device memory) is caught and flagged in the step's first all-reduce, together
    /// with the loss, the FLOPs and the wish to stop after this step (`stop`); then the
    /// gradients are averaged. Every replica sees the flag, so all stop at this step instead
    /// of one waiting for the others forever.
    fn local_over_peers(
        &mut self,
        step: u64,
        ctx: &StepContext,
        compute: Compute,
        stop: bool,
    ) -> Result<Local<B::InnerBackend>, TrainError> {
        let local = catch_unwind(AssertUnwindSafe(|| self.local(step, ctx, compute)))
            .unwrap_or_else(|panic| {
                Err(TrainError::DeviceFailed {
                    rank: self.rank,
                    step: step + 1,
                    problem: panic_message(panic.as_ref()),
                })
            });
        // The failure flag is read anyway, so the loss travels with it.
        let (loss_sum, flops) = local.as_ref().map_or((0.0, 0.0), |l| {
            (l.loss_sum.clone().into_scalar().elem::<f64>(), l.flops)
        });
        let [failed, loss_sum, gflops, stops] = self.sum_over_peers(
            [
                f64::from(u8::from(local.is_err())),
                loss_sum / self.peers as f64,
                flops * 1e-9,
                f64::from(u8::from(stop)),
            ],
            Some(step),
        )?;
        if failed > 0.0 {
            return Err(local
                .err()
                .unwrap_or(TrainError::PeerFailed { step: step + 1 }));
        }
        let mut local = local?;
        let _armed = arm(&self.watch, || {
            format!("step {}'s gradient all-reduce", step + 1)
        });
        local.grads = crate::distributed::flat::all_reduce_mean(
            &self.model,
            local.grads,
            PeerId::from(self.rank),
        )
        .map_err(|e| self.all_reduce_failed(Some(step), e))?;
        local.loss_sum = Tensor::from_floats([loss_sum as f32], &self.device);
        local.flops = gflops * 1e9;
        local.stop = stops > 0.0;
        Ok(local)
    }

    /// This replica's share of step `step`: the schedule's alpha or guide dropping, the step's
    /// data, the micro-batches' passes and their accumulated gradients.
    fn local(
        &mut self,
        step: u64,
        ctx: &StepContext,
        compute: Compute,
    ) -> Result<Local<B::InnerBackend>, TrainError> {
        let config = &ctx.config;
        if ctx.plan.guided(step) {
            self.model.set_alpha(ctx.plan.alpha(step))?;
        } else if self.model.has_guides() {
            self.model.drop_guides();
            self.optim.retain_params(&self.model);
        }
        if ctx
            .faults
            .as_ref()
            .is_some_and(|f| f.replica_panics(self.rank, step))
        {
            panic!("injected failure");
        }
        let windows = self.loader.windows();
        let data_step = ctx.plan.data_step(step);
        self.loader
            .seek(cursor_at(data_step * config.global_batch() as u64, windows))?;
        // Dropout: rank 0 draws exactly what a single-device run draws, other ranks their own.
        let salt = (self.rank as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        B::seed(&self.device, step_seed(config.seed ^ salt, step));
        // reduce_flop's guide draws: the same on every replica (one draw per micro-batch of the
        // global batch, as a single device makes), so all replicas hold the same gradient set
        // and the all-reduce pairs matching tensors.
        let mut rng = StdRng::seed_from_u64(step_seed(config.seed ^ 0x5347_5400, step));
        let micro_tokens = (config.batch_size * config.seq_len) as u64;
        let mut accumulator = GradientsAccumulator::<Transformer<B>>::new();
        let (mut loss_sum, mut flops, mut guides_used) = (None, 0.0, 0);
        for _ in 0..config.grad_accum {
            if self.model.has_guides() {
                guides_used = self.model.resample_guides(&mut rng);
            }
            flops += 3.0
                * (ctx.fixed_per_token * micro_tokens + self.model.linear_flops(micro_tokens))
                    as f64;
            let all = self.loader.next_batch(config.batch_size * self.peers);
            let mine = &all[self.rank * config.batch_size..(self.rank + 1) * config.batch_size];
            let (loss, grads) =
                micro_step(&self.model, mine, config.grad_accum, compute, &self.device)?;
            loss_sum = Some(match loss_sum {
                Some(sum) => sum + loss,
                None => loss,
            });
            accumulator.accumulate(&self.model, grads);
        }
        Ok(Local {
            stop: false,
            grads: accumulator.grads(),
            loss_sum: loss_sum.expect("grad_accum >= 1 (validated)"),
            flops,
            guides_used,
        })
    }

    /// Checks that every replica holds the same `fingerprint` (of the settings and the step
    /// to start at): its 8 bytes and their squares are summed over the peers, which gives
    /// `peers` times this replica's values (exactly, in f32) only when all are equal.
    pub(crate) fn check_agreement(&self, fingerprint: u64) -> Result<(), TrainError> {
        let bytes = fingerprint.to_le_bytes().map(f64::from);
        let mut values = [0.0; 16];
        for (i, b) in bytes.iter().enumerate() {
            (values[i], values[8 + i]) = (*b, b * b);
        }
        let sums = self.sum_over_peers(values, None)?;
        let n = self.peers as f64;
        if (0..16).any(|i| sums[i] != n * values[i]) {
            return Err(TrainError::NodesDisagree);
        }
        Ok(())
    }

    /// Sums numbers over the peers (burn's all-reduce on a small tensor) at the start of step
    /// `step` (0-based; none: before the first).
    pub(crate) fn sum_over_peers<const N: usize>(
        &self,
        values: [f64; N],
        step: Option<u64>,
    ) -> Result<[f64; N], TrainError> {
        // The ring between nodes cuts the tensor in one slice per node: pad it.
        let mut padded = values.map(|v| v as f32).to_vec();
        padded.resize(N.max(self.peers), 0.0);
        let t = Tensor::<B::InnerBackend, 1>::from_floats(padded.as_slice(), &self.device);
        let _armed = arm(&self.watch, || match step {
            Some(s) => format!("the start of step {}'s all-reduce", s + 1),
            None => "checking the nodes agree".into(),
        });
        let summed = collective::all_reduce::<B::InnerBackend>(
            PeerId::from(self.rank),
            t.into_primitive().tensor(),
            ReduceOperation::Sum,
        )
        .map_err(|e| self.all_reduce_failed(step, e))?;
        let out = Tensor::<B::InnerBackend, 1>::from_primitive(TensorPrimitive::Float(summed))
            .into_data()
            .convert::<f64>()
            .to_vec::<f64>()
            .map_err(|e| TrainError::Collective(format!("{e:?}")))?;
        Ok(std::array::from_fn(|i| out[i]))
    }
}

/// `n` devices of backend `B` for data-parallel training: device indices 0..n of the default
/// device's kind. With `share`, a backend with fewer devices (the CPU) runs all replicas on its
/// default device (the replicas then share its cores, one thread each).
pub fn local_devices<B: Backend>(n: usize, share: bool) -> Result<Vec<B::Device>, TrainError> {
    let first = B::Device::default();
    let id = first.id();
    let available = B::device_count(id.type_id);
    if n == 0 {
        return Err(TrainError::Setting {
            setting: "devices",
            problem: "must be at least 1".into(),
        });
    }
    if n <= available {
        return Ok((0..n)
            .map(|i| {
                B::Device::from_id(DeviceId {
                    type_id: id.type_id,
                    index_id: i as u16,
                })
            })
            .collect());
    }
    if share {
        return Ok(vec![first; n]);
    }
    Err(TrainError::TooFewDevices {
        asked: n,
        available,
    })
}
