//! strata's files, shared by training, evaluation, generation and the Hugging Face bridge:
//!
//! - [`checkpoint`]: the checkpoint folder (`model.safetensors`, `model.json`, `state.json`,
//!   `tokenizer.json`; the trainer adds `optimizer.safetensors`), written complete-or-absent;
//! - [`weights`]: a checkpoint's model rebuilt, its weights checked tensor by tensor;
//! - [`TrainState`]: where a run stands (step, tokens, FLOPs, data [`Cursor`], seed, alpha);
//! - [`metrics`]: a line of a run's `metrics.jsonl`, [`StepRecord`];
//! - [`run`]: a run folder's layout, the run a checkpoint belongs to, the data it recorded;
//! - [`tokenizer`]: loading a `tokenizer.json` and finding its end-of-text token;
//! - [`atomic`]: atomic file writes (temporary file, fsync, rename);
//! - [`canonical`]: safetensors files whose bytes depend on their tensors only.
//!
//! Every failure is a [`StorageError`] naming the file.

pub mod atomic;
pub mod canonical;
pub mod checkpoint;
mod error;
pub mod metrics;
pub mod run;
mod state;
pub mod tokenizer;
pub mod weights;

pub use atomic::write_atomic;
pub use error::StorageError;
pub use metrics::StepRecord;
pub use state::{Cursor, LossScale, TrainState};
