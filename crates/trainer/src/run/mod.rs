//! A training run: its folder, the loop ([`train`]), checkpoints, the step results read back
//! in batches, the records it writes (`metrics.jsonl`, `loss.svg`), what it reports to its
//! caller, validation, and the memory check made before it starts. Its settings are
//! [`crate::config`].

pub(crate) mod cadence;
pub mod checkpoint;
pub(crate) mod memory;
pub mod metrics;
pub(crate) mod open;
pub(crate) mod readback;
pub(crate) mod report;
pub(crate) mod run_dir;
pub(crate) mod session;
pub mod train;
