//! strata's training side: a run's settings ([`config`]) and three parts (one folder each):
//!
//! - [`step`]: one optimizer step (forward, fused loss, backward, clipping, AdamW), mixed
//!   precision and the schedules;
//! - [`distributed`]: data-parallel replicas and the multi-node all-reduce;
//! - [`run`]: the training loop with self-guided training, checkpoints and exact resume.
//!
//! - [`train::train`]: AdamW + warmup/cosine + global-norm clipping + accumulation, SGT
//!   schedules ([`schedule`]), FLOP ledger, `metrics.jsonl`, checkpoints ([`checkpoint`]).
//!
//! The data it trains on (preparation, token shards, the seeded and exactly resumable window
//! loader) is the `corpus` crate; the validation loss is `transformer::evaluate`; the files
//! of a checkpoint and of a run folder are the `storage` crate.

pub mod config;
pub mod distributed;
mod error;
pub mod run;
pub mod step;

// The parts' public modules, also at the crate's root (the paths the CLI and tests use).
pub use distributed::{cluster, cluster_bench, parallel};
pub use run::{checkpoint, metrics, train};
pub use step::{optim, precision, profile, schedule};

pub use error::TrainError;

#[cfg(test)]
mod fault_tests;
#[cfg(test)]
mod parse_tests;
#[cfg(test)]
mod patch_tests;
#[cfg(test)]
mod resume_tests;
#[cfg(test)]
mod scale_tests;
#[cfg(test)]
mod train_tests;
