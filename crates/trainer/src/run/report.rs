//! What a training run tells its caller: [`Event`]s while it runs (to an [`Observer`]; library
//! code never prints) and the [`Summary`] at its end. Re-exported by [`crate::run::train`].

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::run::metrics::StepRecord;
use crate::step::schedule::Plan;

/// Progress of a run, for whoever displays it.
#[derive(Debug)]
pub enum Event<'a> {
    /// The run starts (or resumes at `start_step`).
    Started {
        /// The plan.
        plan: &'a Plan,
        /// First step to run.
        start_step: u64,
        /// Parameters of the model as built (guides included).
        params: usize,
    },
    /// Step `n` (1-based) was issued to the device; its results are read (and logged) later.
    Issued(u64),
    /// A logged step.
    Step(&'a StepRecord),
    /// A checkpoint was written.
    Checkpoint(&'a Path),
    /// The run ended.
    Finished(&'a Summary),
}

/// Receives [`Event`]s.
pub trait Observer {
    /// Called at each event.
    fn event(&mut self, event: Event<'_>);
}

/// Ignores every event.
pub struct Quiet;

impl Observer for Quiet {
    fn event(&mut self, _: Event<'_>) {}
}

/// What a run achieved.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct Summary {
    /// Model name.
    pub model: String,
    /// Parameters after training (guides dropped).
    pub params: usize,
    /// Optimizer steps done.
    pub steps: u64,
    /// Tokens trained on.
    pub tokens: u64,
    /// Training FLOPs.
    pub flops: f64,
    /// Seconds of training.
    pub elapsed_s: f64,
    /// Mean training tokens per second.
    pub tokens_per_s: f64,
    /// Final validation loss.
    pub val_loss: Option<f64>,
    /// Final validation perplexity.
    pub val_ppl: Option<f64>,
    /// Whether the time limit, `stop_at_step` or a stop request ended the run before its last
    /// step.
    pub stopped_early: bool,
    /// Whether a stop request ([`crate::run::train::RunOptions::stop`], e.g. SIGINT/SIGTERM) ended it.
    #[serde(default)]
    pub interrupted: bool,
    /// The last checkpoint.
    pub checkpoint: PathBuf,
    /// The data folder the run read.
    #[serde(default)]
    pub data: PathBuf,
}
