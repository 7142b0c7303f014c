//! Training checkpoints: the folder format of the `storage` crate (re-exported here) plus the
//! optimizer's state, which only training writes and reads.

use std::path::{Path, PathBuf};

use transformer::Transformer;

pub use storage::checkpoint::*;
pub use storage::weights::{load_model, load_weights, load_weights_from_bytes};
pub use storage::TrainState;

use crate::error::TrainError;

/// Writes a checkpoint of `model` at `state.step` under `dir` and keeps the newest `keep`.
pub fn save<B: burn::tensor::backend::AutodiffBackend>(
    dir: &Path,
    model: &Transformer<B>,
    optimizer: &crate::step::optim::AdamW<B::InnerBackend>,
    state: &TrainState,
    tokenizer: Option<&Path>,
    keep: usize,
) -> Result<PathBuf, TrainError> {
    place(dir, state.step, keep, |tmp| {
        write_model_files(tmp, model, tokenizer)?;
        optimizer.save(&tmp.join(OPTIMIZER))?;
        write_state(tmp, state)?;
        Ok(())
    })
}
