//! Checkpoints: one folder per saved step, written under a temporary name and renamed into place
//! (each file fsynced first), so a checkpoint folder that exists is complete.
//!
//! `checkpoints/step-000120/` holds `model.safetensors` (weights, burn-store), `model.json` (the
//! config that rebuilds exactly this model: after the guided phase it has no guides),
//! `optimizer.safetensors` (AdamW moments by parameter path), `state.json` ([`TrainState`]: step,
//! tokens, FLOPs, data cursor, seed) and `tokenizer.json` when the data has one. The RNG state is
//! the seed: every step's random draws (dropout, reduce_flop) come from generators seeded by
//! `(seed, step)`, so the step number restores them exactly.

use std::path::{Path, PathBuf};

use burn::store::{ModuleSnapshot, SafetensorsStore};
use burn::tensor::backend::Backend;
use serde::{Deserialize, Serialize};

use crate::precision::LossScaler;
use transformer::{Transformer, TransformerConfig};

use crate::error::{DataError, TrainError};
use crate::loader::Cursor;
use crate::shard::{sync_parent, write_atomic};

/// File names inside a checkpoint folder.
pub const MODEL_WEIGHTS: &str = "model.safetensors";
/// The model's config.
pub const MODEL_CONFIG: &str = "model.json";
/// AdamW's state.
pub const OPTIMIZER: &str = "optimizer.safetensors";
/// [`TrainState`].
pub const STATE: &str = "state.json";

/// Where a run stands after an optimizer step.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(deny_unknown_fields)]
pub struct TrainState {
    /// Optimizer steps done.
    pub step: u64,
    /// Tokens trained on (replayed ones included).
    pub tokens: u64,
    /// Training FLOPs spent, by the paper's formula with guides as evaluated.
    pub flops: f64,
    /// Wall-clock seconds of training so far (across resumes).
    pub elapsed_s: f64,
    /// Data position of the next step.
    pub cursor: Cursor,
    /// The run's seed; with `step` it determines every later random draw.
    pub seed: u64,
    /// Alpha of the last step (0 outside the guided phase).
    pub alpha: f64,
    /// Whether the model still has its guides.
    pub guides: bool,
    /// Latest validation loss, if any.
    pub val_loss: Option<f64>,
    /// f16's dynamic loss scale (absent for f32 and bf16).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub loss_scale: Option<LossScaler>,
    /// Steps skipped so far because their loss or gradients were not finite
    /// (`--skip-nonfinite`).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub nonfinite_skips: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// The checkpoint folder name of `step`.
pub fn step_dir_name(step: u64) -> String {
    format!("step-{step:09}")
}

/// Complete checkpoints under `dir`, oldest first.
pub fn list(dir: &Path) -> Vec<(u64, PathBuf)> {
    let mut out: Vec<(u64, PathBuf)> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().to_string();
            let step = name.strip_prefix("step-")?.parse().ok()?;
            e.path().join(STATE).is_file().then(|| (step, e.path()))
        })
        .collect();
    out.sort();
    out
}

/// Writes a checkpoint of `model` at `state.step` under `dir` and keeps the newest `keep`.
pub fn save<B: burn::tensor::backend::AutodiffBackend>(
    dir: &Path,
    model: &Transformer<B>,
    optimizer: &crate::optim::AdamW<B::InnerBackend>,
    state: &TrainState,
    tokenizer: Option<&Path>,
    keep: usize,
) -> Result<PathBuf, TrainError> {
    std::fs::create_dir_all(dir).map_err(|e| DataError::io(dir, e))?;
    let final_dir = dir.join(step_dir_name(state.step));
    let tmp = dir.join(format!("{PARTIAL}{}", step_dir_name(state.step)));
    let _ = std::fs::remove_dir_all(&tmp);
    // A failed write (disk full, I/O error) leaves the earlier checkpoints as they were and
    // frees what it wrote.
    let placed = write_folder(&tmp, model, optimizer, state, tokenizer).and_then(|()| {
        if final_dir.exists() {
            let aside = set_aside(&final_dir).map_err(|e| DataError::io(&final_dir, e))?;
            std::fs::rename(&tmp, &final_dir).map_err(|e| DataError::io(&final_dir, e))?;
            let _ = std::fs::remove_dir_all(aside);
        } else {
            std::fs::rename(&tmp, &final_dir).map_err(|e| DataError::io(&final_dir, e))?;
        }
        Ok(())
    });
    if let Err(e) = placed {
        let _ = std::fs::remove_dir_all(&tmp);
        return Err(e);
    }
    sync_parent(&final_dir);
    let all = list(dir);
    if all.len() > keep.max(1) {
        for (_, old) in &all[..all.len() - keep.max(1)] {
            if let Ok(aside) = set_aside(old) {
                let _ = std::fs::remove_dir_all(aside);
            }
        }
    }
    Ok(final_dir)
}

/// Renames the checkpoint folder `dir` to a partial name before it is deleted, so that a run
/// killed while deleting it leaves no half-deleted folder under a checkpoint's name (the
/// partial one goes at the next [`remove_partial`]).
fn set_aside(dir: &Path) -> std::io::Result<std::path::PathBuf> {
    if !dir.is_dir() {
        return Err(std::io::Error::other(
            "is in the way and is not a checkpoint folder",
        ));
    }
    let name = dir.file_name().unwrap_or_default().to_string_lossy();
    let aside = dir.with_file_name(format!("{PARTIAL}old-{name}"));
    let _ = std::fs::remove_dir_all(&aside);
    std::fs::rename(dir, &aside)?;
    Ok(aside)
}

/// The prefix of a checkpoint folder being written.
const PARTIAL: &str = ".tmp-";

/// Removes the half-written checkpoint folders a killed run left under `dir`.
pub fn remove_partial(dir: &Path) {
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        if entry.file_name().to_string_lossy().starts_with(PARTIAL) {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

/// Writes every file of a checkpoint into the folder `tmp`.
fn write_folder<B: burn::tensor::backend::AutodiffBackend>(
    tmp: &Path,
    model: &Transformer<B>,
    optimizer: &crate::optim::AdamW<B::InnerBackend>,
    state: &TrainState,
    tokenizer: Option<&Path>,
) -> Result<(), TrainError> {
    write_model_files(tmp, model, tokenizer)?;
    optimizer.save(&tmp.join(OPTIMIZER))?;
    let json = serde_json::to_string_pretty(state).expect("plain state");
    write_atomic(&tmp.join(STATE), json.as_bytes())?;
    Ok(())
}

/// Writes the model's weights and config (and the tokenizer, if any) into the folder `dir`.
fn write_model_files<B: Backend>(
    dir: &Path,
    model: &Transformer<B>,
    tokenizer: Option<&Path>,
) -> Result<(), TrainError> {
    std::fs::create_dir_all(dir).map_err(|e| DataError::io(dir, e))?;
    let mut store = SafetensorsStore::from_bytes(None);
    model
        .save_into(&mut store)
        .map_err(|e| TrainError::checkpoint(dir, format!("saving weights: {e}")))?;
    let bytes = store
        .get_bytes()
        .map_err(|e| TrainError::checkpoint(dir, format!("saving weights: {e}")))?;
    write_atomic(&dir.join(MODEL_WEIGHTS), &bytes)?;
    let config = serde_json::to_string_pretty(model.config()).expect("plain config");
    write_atomic(&dir.join(MODEL_CONFIG), config.as_bytes())?;
    if let Some(t) = tokenizer {
        let bytes = std::fs::read(t).map_err(|e| DataError::io(t, e))?;
        write_atomic(&dir.join(crate::data::TOKENIZER), &bytes)?;
    }
    Ok(())
}

/// Writes a checkpoint folder `dir` holding `model` without optimizer state (an imported or
/// converted model: `strata eval`, `generate`, `convert`, `export` and `train --init` read
/// it). `state` records the guides' alpha; its step, tokens and FLOPs are those of the model's
/// own history (0 for an import). `dir` must not exist: the folder is filled in place, so a
/// caller that needs it complete-or-absent writes it under a temporary name and renames it (as
/// `interop`'s outputs are written).
pub fn save_model<B: Backend>(
    dir: &Path,
    model: &Transformer<B>,
    state: &TrainState,
    tokenizer: Option<&Path>,
) -> Result<(), TrainError> {
    if dir.exists() {
        return Err(TrainError::checkpoint(dir, "already exists"));
    }
    write_model_files(dir, model, tokenizer)?;
    let json = serde_json::to_string_pretty(state).expect("plain state");
    Ok(write_atomic(&dir.join(STATE), json.as_bytes())?)
}

/// A checkpoint folder from `path`: a checkpoint itself, or a run folder (its newest one).
pub fn resolve(path: &Path) -> Result<PathBuf, TrainError> {
    if path.join(STATE).is_file() {
        return Ok(path.to_path_buf());
    }
    if !path.exists() {
        return Err(TrainError::checkpoint(path, "does not exist"));
    }
    list(&path.join("checkpoints"))
        .pop()
        .map(|(_, p)| p)
        .ok_or_else(|| TrainError::checkpoint(path, "holds no checkpoint"))
}

/// Reads a checkpoint's state.
pub fn read_state(dir: &Path) -> Result<TrainState, TrainError> {
    let path = dir.join(STATE);
    let text = std::fs::read_to_string(&path).map_err(|e| TrainError::checkpoint(&path, e))?;
    serde_json::from_str(&text).map_err(|e| TrainError::checkpoint(dir, format!("{STATE}: {e}")))
}

/// Reads a checkpoint's model config.
pub fn read_model_config(dir: &Path) -> Result<TransformerConfig, TrainError> {
    let path = dir.join(MODEL_CONFIG);
    let text = std::fs::read_to_string(&path).map_err(|e| TrainError::checkpoint(&path, e))?;
    serde_json::from_str(&text)
        .map_err(|e| TrainError::checkpoint(dir, format!("{MODEL_CONFIG}: {e}")))
}

/// Loads the weights of `dir` into `model`, which must have exactly the checkpoint's layout.
pub fn load_weights<B: Backend>(dir: &Path, model: &mut Transformer<B>) -> Result<(), TrainError> {
    let path = dir.join(MODEL_WEIGHTS);
    let bytes = std::fs::read(&path).map_err(|e| TrainError::checkpoint(&path, e))?;
    load_weights_from_bytes(bytes, &path, model)
}

/// Loads safetensors `bytes` (read from, or standing for, `path`) into `model`, which must have
/// exactly their layout: every tensor f32, none missing, none left over, every shape the
/// model's.
pub fn load_weights_from_bytes<B: Backend>(
    bytes: Vec<u8>,
    path: &Path,
    model: &mut Transformer<B>,
) -> Result<(), TrainError> {
    // strata writes f32 master weights; anything else would be loaded as is and fail (or
    // worse) in the first operation that meets it.
    let (_, meta) = safetensors::SafeTensors::read_metadata(&bytes)
        .map_err(|e| TrainError::checkpoint(path, format!("not a safetensors file: {e}")))?;
    for (name, info) in meta.tensors() {
        if info.dtype != safetensors::Dtype::F32 {
            return Err(TrainError::checkpoint(
                path,
                format!(
                    "tensor {name} is stored as {:?}; strata's weights are f32",
                    info.dtype
                ),
            ));
        }
    }
    let mut store = SafetensorsStore::from_bytes(Some(bytes));
    let result = model
        .load_from(&mut store)
        .map_err(|e| TrainError::checkpoint(path, format!("weights do not fit the model: {e}")))?;
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
        return Err(TrainError::checkpoint(
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
) -> Result<(Transformer<B>, TrainState), TrainError> {
    let config = read_model_config(dir)?;
    let state = read_state(dir)?;
    let config_file = dir.join(MODEL_CONFIG);
    let mut model = config
        .init::<B>(device)
        .map_err(|e| TrainError::checkpoint(&config_file, e))?;
    load_weights(dir, &mut model).map_err(|e| {
        TrainError::checkpoint(&config_file, format!("does not describe the weights: {e}"))
    })?;
    if state.guides {
        model
            .set_alpha(state.alpha)
            .map_err(|e| TrainError::checkpoint(&dir.join(STATE), e))?;
    }
    Ok((model, state))
}
