//! strata's training side: data preparation (tokenizer, token shards, manifest), the
//! memory-mapped window loader, and the training loop with self-guided training, checkpoints and
//! exact resume.
//!
//! - [`data::prepare`]: text / JSON lines -> byte-level BPE + shards split by document;
//! - [`WindowLoader`]: seeded, exactly resumable training windows;
//! - [`train::train`]: AdamW + warmup/cosine + global-norm clipping + accumulation, SGT
//!   schedules ([`schedule`]), FLOP ledger, `metrics.jsonl`, checkpoints ([`checkpoint`]);
//! - [`train::evaluate`] and [`checkpoint::load_model`] for `strata eval` / `generate`.

pub mod checkpoint;
pub mod cluster;
pub mod cluster_bench;
pub mod data;
mod error;
mod eval;
mod flat;
pub mod loader;
mod loss;
mod memory;
pub mod metrics;
pub mod optim;
mod optim_fused;
pub mod parallel;
mod peers;
pub mod precision;
pub mod profile;
mod readback;
mod report;
mod run_config;
mod run_dir;
pub mod schedule;
pub mod shard;
mod step;
pub mod train;

pub use error::{DataError, TrainError};
pub use loader::{Cursor, WindowLoader};
pub use shard::{ShardWriter, TokenFile, TokenWidth};

#[cfg(test)]
mod fault_tests;
#[cfg(test)]
mod parse_tests;
#[cfg(test)]
mod patch_tests;
#[cfg(test)]
mod scale_tests;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod train_tests;
