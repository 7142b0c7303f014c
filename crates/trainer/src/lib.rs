//! strata's training side: a run's settings ([`config`]) and four parts (one folder each):
//!
//! - [`data`]: preparation (tokenizer, token shards, manifest) and the memory-mapped window
//!   loader;
//! - [`step`]: one optimizer step (forward, fused loss, backward, clipping, AdamW), mixed
//!   precision and the schedules;
//! - [`distributed`]: data-parallel replicas and the multi-node all-reduce;
//! - [`run`]: the training loop with self-guided training, checkpoints and exact resume.
//!
//! - [`data::prepare`]: text / JSON lines -> byte-level BPE + shards split by document;
//! - [`WindowLoader`]: seeded, exactly resumable training windows;
//! - [`train::train`]: AdamW + warmup/cosine + global-norm clipping + accumulation, SGT
//!   schedules ([`schedule`]), FLOP ledger, `metrics.jsonl`, checkpoints ([`checkpoint`]);
//! - [`train::evaluate`] and [`checkpoint::load_model`] for `strata eval` / `generate`.

pub mod config;
pub mod data;
pub mod distributed;
mod error;
pub mod run;
pub mod step;

// The parts' public modules, also at the crate's root (the paths the CLI and tests use).
pub use data::{loader, shard};
pub use distributed::{cluster, cluster_bench, parallel};
pub use run::{checkpoint, metrics, train};
pub use step::{optim, precision, profile, schedule};

pub use data::loader::{Cursor, WindowLoader};
pub use data::shard::{ShardWriter, TokenFile, TokenWidth};
pub use error::{DataError, TrainError};

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
mod tests;
#[cfg(test)]
mod train_tests;
