//! The training loop: open the run, then per step: step, record, read back and log (with an
//! evaluation when due), checkpoint when due, stop when due; then finish. AdamW with warmup +
//! cosine, global-norm clipping, gradient accumulation, self-guided training (alpha per
//! optimizer step, fixedstep / fixedflop with replay, reduce_flop), the FLOP ledger,
//! checkpoints and exact resume.
//!
//! The run folder holds `config.json` ([`TrainConfig`]), `metrics.jsonl`, `loss.svg` and
//! `checkpoints/step-*/`. Library code never prints: progress goes to an [`Observer`].
//! Opening a run is [`crate::run::open`], its parts per step [`crate::run::session`], when to
//! evaluate, checkpoint and stop [`crate::run::cadence`]; the step primitives live in
//! [`crate::step`], the settings in [`crate::config`].

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use burn::tensor::backend::AutodiffBackend;

use crate::distributed::cluster::Cluster;
use crate::error::TrainError;
use crate::run::session::Run;

pub use crate::config::{Budget, TrainConfig};
pub use crate::run::memory::MemoryLimit;
pub use crate::run::report::{Event, Observer, Quiet, Summary};
pub use crate::run::run_dir::{check_run_model, read_run_config};
pub use crate::step::faults::{FaultHook, FaultPlan};
pub use crate::step::loss::head_cross_entropy;
pub use crate::step::primitives::{apply_update, micro_step, step_seed, Compute, Update};

/// Where a run starts.
// Built once per run: the size of the settings does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq)]
pub enum Start {
    /// A new run with these settings (a folder holding another run is refused unless
    /// [`RunOptions::force`]).
    Fresh(TrainConfig),
    /// Continue the run in the folder from its newest checkpoint, with these settings: the
    /// ones saved in its `config.json`, read by [`Start::resume`] (read once: a front end
    /// takes the device count from them and checks the model with
    /// [`crate::run::run_dir::check_run_model`]).
    Resume(Box<TrainConfig>),
}

impl Start {
    /// Resuming the run in folder `out`: its saved settings.
    pub fn resume(out: &Path) -> Result<Start, TrainError> {
        Ok(Start::Resume(Box::new(read_run_config(out)?)))
    }
}

/// How to treat the output folder.
#[derive(Clone, Debug, Default)]
pub struct RunOptions {
    /// Replace a run already in the folder.
    pub force: bool,
    /// Stop (with a checkpoint) after this many seconds of this session.
    pub time_limit_s: Option<f64>,
    /// Stop (with a checkpoint) once this many steps are done; `--resume` continues.
    pub stop_at_step: Option<u64>,
    /// Stop (with a checkpoint) after the step in progress once this flag is set (the CLI sets
    /// it on SIGINT / SIGTERM); `--resume` continues.
    pub stop: Option<&'static AtomicBool>,
    /// A resumed run's data folder when it is no longer where the run recorded it (checked to be
    /// the same data); `None`: the recorded one.
    pub data: Option<PathBuf>,
    /// Overrides the run's `skip_nonfinite` for this session (e.g. to resume past a fault).
    pub skip_nonfinite: Option<u64>,
    /// Memory the run may use: a run whose estimate
    /// ([`transformer::accounting::training_memory`]) exceeds it is refused before it starts.
    pub memory: Option<MemoryLimit>,
    /// Faults to inject into the steps (tests of what a run does when a step goes wrong; see
    /// [`FaultPlan`]).
    pub faults: Option<Arc<dyn FaultHook>>,
}

/// Trains (or resumes) the run in `out` on `device`, reporting to `observer`.
pub fn train<B: AutodiffBackend>(
    start: Start,
    out: &Path,
    options: RunOptions,
    device: &B::Device,
    observer: &mut dyn Observer,
) -> Result<Summary, TrainError> {
    train_on::<B>(start, out, options, std::slice::from_ref(device), observer)
}

/// Trains (or resumes) the run in `out` data-parallel over `devices` (one replica each; see
/// [`crate::distributed::parallel`]), reporting to `observer`. The run's `devices` setting must match.
pub fn train_on<B: AutodiffBackend>(
    start: Start,
    out: &Path,
    options: RunOptions,
    devices: &[B::Device],
    observer: &mut dyn Observer,
) -> Result<Summary, TrainError> {
    train_nodes::<B>(start, out, options, devices, &Cluster::single(), observer)
}

/// [`train_on`] as node `cluster.rank` of `cluster.nodes` (see [`crate::distributed::cluster`]): every node
/// runs this with the same settings and its own `devices`, and evaluates when the run does;
/// node 0 alone logs and writes the checkpoints into `out` (a folder every node can read, for
/// `--resume`). The run's `nodes` and `devices` settings must match.
/// [`train_on`] as node `cluster.rank` of `cluster.nodes` (see [`crate::distributed::cluster`]): every node
/// runs this with the same settings and its own `devices`, and evaluates when the run does;
/// node 0 alone logs and writes the checkpoints into `out` (a folder every node can read, for
/// `--resume`). The run's `nodes` and `devices` settings must match.
pub fn train_nodes<B: AutodiffBackend>(
    start: Start,
    out: &Path,
    options: RunOptions,
    devices: &[B::Device],
    cluster: &Cluster,
    observer: &mut dyn Observer,
) -> Result<Summary, TrainError> {
    let mut run = Run::<B>::open(start, out, &options, devices, cluster, observer)?;
    for step in run.steps() {
        let loss_scale = run.loss_scale();
        let done = run.step(step)?;
        observer.event(Event::Issued(run.state.step));
        let due = run.cadence.after(run.state.step, run.now(), done.stop);
        // The loss and gradient norm stay on the device until the records are read back.
        run.record(done, loss_scale, due)?;
        if run.read_due(due) {
            run.log(due.eval, observer)?;
        }
        if due.checkpoint {
            run.checkpoint(observer)?;
        }
        if due.stop {
            run.stop(due.interrupted);
            break;
        }
    }
    let summary = run.finish()?;
    observer.event(Event::Finished(&summary));
    Ok(summary)
}
