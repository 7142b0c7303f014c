//! A checkpoint's model rebuilt: its config, its weights (checked tensor by tensor), its alpha.

use std::path::Path;

use burn::store::{ModuleSnapshot, SafetensorsStore};
use burn::tensor::backend::Backend;
use transformer::Transformer;

use crate::checkpoint::{read_model_config, read_state, MODEL_CONFIG, MODEL_WEIGHTS, STATE};
use crate::{StorageError, TrainState};

/// Loads the weights of `dir` into `model`, which must have exactly the checkpoint's layout.
pub fn load_weights<B: Backend>(
    dir: &Path,
    model: &mut Transformer<B>,
) -> Result<(), StorageError> {
    let path = dir.join(MODEL_WEIGHTS);
    let bytes = std::fs::read(&path).map_err(|e| StorageError::checkpoint(&path, e))?;
    load_weights_from_bytes(bytes, &path, model)
}

/// Loads safetensors `bytes` (read from, or standing for, `path`) into `model`, which must have
/// exactly their layout: every tensor f32, none missing, none left over, every shape the
/// model's.
pub fn load_weights_from_bytes<B: Backend>(
    bytes: Vec<u8>,
    path: &Path,
    model: &mut Transformer<B>,
) -> Result<(), StorageError> {
    // strata writes f32 master weights; anything else would be loaded as is and fail (or
    // worse) in the first operation that meets it.
    let (_, meta) = safetensors::SafeTensors::read_metadata(&bytes)
        .map_err(|e| StorageError::checkpoint(path, format!("not a safetensors file: {e}")))?;
    for (name, info) in meta.tensors() {
        if info.dtype != safetensors::Dtype::F32 {
            return Err(StorageError::checkpoint(
                path,
                format!(
                    "tensor {name} is stored as {:?}; strata's weights are f32",
                    info.dtype
                ),
            ));
        }
    }
    let mut store = SafetensorsStore::from_bytes(Some(bytes));
    let result = model.load_from(&mut store).map_err(|e| {
        StorageError::checkpoint(path, format!("weights do not fit the model: {e}"))
    })?;
    if !result.errors.is_empty() || !result.missing.is_empty() || !result.unused.is_empty() {
        let detail = result
            .errors
            .iter()
            .map(|e| format!("{e:?}"))
            .chain(result.missing.iter().map(|(p, _)| format!("missing {p}")))
            .chain(result.unused.iter().map(|p| format!("unexpected {p}")))
            .take(3)
            .collect::<Vec<_>>()
            .join("; ");
        return Err(StorageError::checkpoint(
            path,
            format!("weights do not fit the model (a checkpoint of a different model?): {detail}"),
        ));
    }
    Ok(())
}

/// Rebuilds the model of a checkpoint (its config, its weights, its alpha) for inference or
/// evaluation.
pub fn load_model<B: Backend>(
    dir: &Path,
    device: &B::Device,
) -> Result<(Transformer<B>, TrainState), StorageError> {
    let config = read_model_config(dir)?;
    let state = read_state(dir)?;
    let config_file = dir.join(MODEL_CONFIG);
    let mut model = config
        .init::<B>(device)
        .map_err(|e| StorageError::checkpoint(&config_file, e))?;
    load_weights(dir, &mut model).map_err(|e| {
        StorageError::checkpoint(&config_file, format!("does not describe the weights: {e}"))
    })?;
    if state.guides {
        model
            .set_alpha(state.alpha)
            .map_err(|e| StorageError::checkpoint(&dir.join(STATE), e))?;
    }
    Ok((model, state))
}
