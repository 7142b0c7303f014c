//! The trainer's error: a training, evaluation or checkpoint request that cannot be carried out.

use std::path::{Path, PathBuf};

use corpus::DataError;
use thiserror::Error;

/// A training, evaluation or checkpoint request that cannot be carried out.
#[derive(Error, Debug)]
pub enum TrainError {
    /// Reading or preparing data failed.
    #[error(transparent)]
    Data(#[from] DataError),
    /// A checkpoint, tokenizer or other file of the `storage` crate that cannot be used.
    #[error(transparent)]
    Storage(#[from] storage::StorageError),
    /// The model refused its configuration or input.
    #[error(transparent)]
    Model(#[from] transformer::ModelError),
    /// A checkpoint that cannot be used; `problem` says why.
    #[error("checkpoint {}: {problem}", path.display())]
    Checkpoint {
        /// The checkpoint folder or file.
        path: PathBuf,
        /// What is wrong.
        problem: String,
    },
    /// A run setting with a value it cannot take (`setting` names it as the run config does).
    #[error("{setting}: {problem}")]
    Setting {
        /// The setting (`seq_len`, `budget`, `sgt.ratio`, ...).
        setting: &'static str,
        /// What is wrong, with the value.
        problem: String,
    },
    /// More devices asked for than the backend has.
    #[error("{asked} devices asked for, but this backend sees {available}")]
    TooFewDevices {
        /// Devices asked for.
        asked: usize,
        /// Devices the backend has.
        available: usize,
    },
    /// A fresh run asked for a folder that holds another run.
    #[error("{} holds another run; pass `resume` to continue it or `force` to replace it", dir.display())]
    RunExists {
        /// The run folder.
        dir: PathBuf,
    },
    /// A resumed run given a data folder that is not the data it trained on.
    #[error("`data` {} is not the data the run trained on ({difference}); the run's was {}", given.display(), run.display())]
    OtherData {
        /// The folder given.
        given: PathBuf,
        /// The folder the run recorded.
        run: PathBuf,
        /// What differs.
        difference: String,
    },
    /// A resumed run whose recorded data folder is gone.
    #[error("the run's data folder {} {problem}; give its new place with `data`", dir.display())]
    RunDataGone {
        /// The recorded folder.
        dir: PathBuf,
        /// "does not exist" or "has no manifest.json".
        problem: &'static str,
    },
    /// `--resume` found nothing to continue.
    #[error("nothing to resume: {} {why}", dir.display())]
    NothingToResume {
        /// The run folder.
        dir: PathBuf,
        /// What is missing: "holds no run", "has no checkpoint yet", "is complete (N steps)".
        why: String,
    },
    /// A run's `config.json` that cannot be read as one.
    #[error("{}: not a strata run config: {problem}", path.display())]
    BadRunConfig {
        /// The file.
        path: PathBuf,
        /// The parse error.
        problem: String,
    },
    /// `--resume` with a model other than the run's.
    #[error("{} holds a run of a different model ({run_model}), not {asked}", dir.display())]
    OtherModel {
        /// The run folder.
        dir: PathBuf,
        /// The run's model.
        run_model: String,
        /// The model asked for.
        asked: String,
    },
    /// A run set for another number of devices.
    #[error("the run is set for {run} device(s) but {given} were given; pass `devices` {run}")]
    DeviceCount {
        /// The run's device count.
        run: usize,
        /// The devices given.
        given: usize,
    },
    /// A run set for another number of nodes.
    #[error("the run is set for {run} node(s) but {given} were given; pass `nodes` {run}")]
    NodeCount {
        /// The run's node count.
        run: usize,
        /// The nodes given.
        given: usize,
    },
    /// Another node of a multi-node run is gone (its process died, or the network failed).
    #[error("lost contact with the other nodes {when} ({problem}); the last checkpoint is intact: restart every node with `resume`")]
    NodeLost {
        /// "in step N", "before the first step".
        when: String,
        /// What the transport said.
        problem: String,
    },
    /// Nodes of one run started with different settings, or at different steps.
    #[error("the nodes disagree on the run's settings or on the step to start at: run the same command on every node (`resume` on all of them, with a run folder every node reads)")]
    NodesDisagree,
    /// A loss or gradient norm that is not finite.
    #[error("the {what} became {value} at step {step}; the last checkpoint is kept (lower the learning rate, or let `skip_nonfinite` N skip such steps)")]
    NonFinite {
        /// "loss" or "gradients".
        what: &'static str,
        /// The value read.
        value: f64,
        /// The 1-based step.
        step: u64,
    },
    /// A run whose estimated memory exceeds what the machine or the GPU has.
    #[error("this run needs about {need} of memory ({detail}); {place} has {available} available: lower `batch_size` (`global_batch` keeps the batch by accumulating) or `seq_len`")]
    TooLarge {
        /// The estimate.
        need: String,
        /// Its parts.
        detail: String,
        /// "this machine", "the GPU".
        place: &'static str,
        /// What is available.
        available: String,
    },
    /// More steps with a non-finite loss or gradients than `skip_nonfinite` allows.
    #[error("step {step} had a non-finite loss or gradients: {skips} such steps, more than `skip_nonfinite` {allowed} allows; the last checkpoint is kept")]
    TooManyNonFinite {
        /// The 1-based step.
        step: u64,
        /// Non-finite steps so far, this one included.
        skips: u64,
        /// The allowance.
        allowed: u64,
    },
    /// Reading results back from the device failed.
    #[error("reading the step results back from the device: {0}")]
    Readback(String),
    /// burn's collective operations failed (data-parallel training).
    #[error("data-parallel all-reduce failed: {0}")]
    Collective(String),
    /// One device of a data-parallel run failed (an error or a panic) in a step.
    #[error("device {rank} failed at step {step}: {problem}")]
    DeviceFailed {
        /// The device's rank.
        rank: usize,
        /// The 1-based step.
        step: u64,
        /// What happened.
        problem: String,
    },
    /// A data-parallel peer thread that ended without reporting (`stopped`, `panicked`).
    #[error("a data-parallel peer {0}")]
    PeerGone(&'static str),
    /// Another device of a data-parallel run failed in this step (its own error says why).
    #[error("another device of the data-parallel run failed at step {step}")]
    PeerFailed {
        /// The 1-based step.
        step: u64,
    },
}

impl TrainError {
    pub(crate) fn checkpoint(path: &Path, problem: impl std::fmt::Display) -> Self {
        TrainError::Checkpoint {
            path: path.to_path_buf(),
            problem: problem.to_string(),
        }
    }
}

/// The text of a caught panic (a device failing in a data-parallel step, a library panicking on
/// a malformed file).
pub(crate) fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = panic.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s.clone()
    } else {
        "it panicked".to_string()
    }
}
