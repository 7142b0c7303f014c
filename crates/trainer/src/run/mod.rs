//! A training run: its settings, its folder, the loop ([`train`]), checkpoints, the records it
//! writes (`metrics.jsonl`, `loss.svg`), what it reports to its caller, validation, and the
//! memory check made before it starts.

pub mod checkpoint;
pub(crate) mod eval;
pub(crate) mod memory;
pub mod metrics;
pub(crate) mod report;
pub(crate) mod run_config;
pub(crate) mod run_dir;
pub mod train;
