//! Checkpoint folders: one per saved step, written under a temporary name and renamed into place
//! (each file fsynced first), so a checkpoint folder that exists is complete.
//!
//! `checkpoints/step-000120/` holds `model.safetensors` (weights, burn-store), `model.json` (the
//! config that rebuilds exactly this model: after the guided phase it has no guides),
//! `optimizer.safetensors` (AdamW moments by parameter path, written by the trainer),
//! `state.json` ([`TrainState`]: step, tokens, FLOPs, data cursor, seed) and `tokenizer.json`
//! when the data has one. The RNG state is the seed: every step's random draws (dropout,
//! reduce_flop) come from generators seeded by `(seed, step)`, so the step number restores them
//! exactly.

use std::path::{Path, PathBuf};

use burn::store::{ModuleSnapshot, SafetensorsStore};
use burn::tensor::backend::Backend;
use transformer::{Transformer, TransformerConfig};

use crate::atomic::{sync_parent, write_atomic};
use crate::canonical::canonical_safetensors;
use crate::tokenizer::TOKENIZER;
use crate::{StorageError, TrainState};

/// File names inside a checkpoint folder.
pub const MODEL_WEIGHTS: &str = "model.safetensors";
/// The model's config.
pub const MODEL_CONFIG: &str = "model.json";
/// AdamW's state.
pub const OPTIMIZER: &str = "optimizer.safetensors";
/// [`TrainState`].
pub const STATE: &str = "state.json";

/// The prefix of a checkpoint folder being written.
const PARTIAL: &str = ".tmp-";

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

/// Writes the checkpoint of `step` under `dir` (`fill` writes its files into the temporary
/// folder it is given), renames it into place and keeps the newest `keep`. A failed write
/// (disk full, I/O error) leaves the earlier checkpoints as they were and frees what it wrote.
pub fn place<E: From<StorageError>>(
    dir: &Path,
    step: u64,
    keep: usize,
    fill: impl FnOnce(&Path) -> Result<(), E>,
) -> Result<PathBuf, E> {
    std::fs::create_dir_all(dir).map_err(|e| StorageError::io(dir, e))?;
    let final_dir = dir.join(step_dir_name(step));
    let tmp = dir.join(format!("{PARTIAL}{}", step_dir_name(step)));
    let _ = std::fs::remove_dir_all(&tmp);
    let placed = fill(&tmp).and_then(|()| Ok(rename_into_place(&tmp, &final_dir)?));
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

/// Renames the finished folder `tmp` to `final_dir`, setting aside one already there.
fn rename_into_place(tmp: &Path, final_dir: &Path) -> Result<(), StorageError> {
    let aside = if final_dir.exists() {
        Some(set_aside(final_dir).map_err(|e| StorageError::io(final_dir, e))?)
    } else {
        None
    };
    std::fs::rename(tmp, final_dir).map_err(|e| StorageError::io(final_dir, e))?;
    if let Some(aside) = aside {
        let _ = std::fs::remove_dir_all(aside);
    }
    Ok(())
}

/// Renames the checkpoint folder `dir` to a partial name before it is deleted, so that a run
/// killed while deleting it leaves no half-deleted folder under a checkpoint's name (the
/// partial one goes at the next [`remove_partial`]).
fn set_aside(dir: &Path) -> std::io::Result<PathBuf> {
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

/// Removes the half-written checkpoint folders a killed run left under `dir`.
pub fn remove_partial(dir: &Path) {
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        if entry.file_name().to_string_lossy().starts_with(PARTIAL) {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

/// Writes the model's weights and config (and the tokenizer, if any) into the folder `dir`.
pub fn write_model_files<B: Backend>(
    dir: &Path,
    model: &Transformer<B>,
    tokenizer: Option<&Path>,
) -> Result<(), StorageError> {
    std::fs::create_dir_all(dir).map_err(|e| StorageError::io(dir, e))?;
    let mut store = SafetensorsStore::from_bytes(None);
    model
        .save_into(&mut store)
        .map_err(|e| StorageError::checkpoint(dir, format!("saving weights: {e}")))?;
    let bytes = store
        .get_bytes()
        .map_err(|e| StorageError::checkpoint(dir, format!("saving weights: {e}")))?;
    write_atomic(&dir.join(MODEL_WEIGHTS), &canonical_safetensors(bytes))?;
    let config = serde_json::to_string_pretty(model.config()).expect("plain config");
    write_atomic(&dir.join(MODEL_CONFIG), config.as_bytes())?;
    if let Some(t) = tokenizer {
        let bytes = std::fs::read(t).map_err(|e| StorageError::io(t, e))?;
        write_atomic(&dir.join(TOKENIZER), &bytes)?;
    }
    Ok(())
}

/// Writes `state` as the folder's `state.json`.
pub fn write_state(dir: &Path, state: &TrainState) -> Result<(), StorageError> {
    let json = serde_json::to_string_pretty(state).expect("plain state");
    write_atomic(&dir.join(STATE), json.as_bytes())
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
) -> Result<(), StorageError> {
    if dir.exists() {
        return Err(StorageError::checkpoint(dir, "already exists"));
    }
    write_model_files(dir, model, tokenizer)?;
    write_state(dir, state)
}

/// A checkpoint folder from `path`: a checkpoint itself, or a run folder (its newest one).
pub fn resolve(path: &Path) -> Result<PathBuf, StorageError> {
    if path.join(STATE).is_file() {
        return Ok(path.to_path_buf());
    }
    if !path.exists() {
        return Err(StorageError::checkpoint(path, "does not exist"));
    }
    list(&path.join("checkpoints"))
        .pop()
        .map(|(_, p)| p)
        .ok_or_else(|| StorageError::checkpoint(path, "holds no checkpoint"))
}

/// Reads a checkpoint's state.
pub fn read_state(dir: &Path) -> Result<TrainState, StorageError> {
    let path = dir.join(STATE);
    let text = std::fs::read_to_string(&path).map_err(|e| StorageError::checkpoint(&path, e))?;
    serde_json::from_str(&text).map_err(|e| StorageError::checkpoint(dir, format!("{STATE}: {e}")))
}

/// Reads a checkpoint's model config.
pub fn read_model_config(dir: &Path) -> Result<TransformerConfig, StorageError> {
    let path = dir.join(MODEL_CONFIG);
    let text = std::fs::read_to_string(&path).map_err(|e| StorageError::checkpoint(&path, e))?;
    serde_json::from_str(&text)
        .map_err(|e| StorageError::checkpoint(dir, format!("{MODEL_CONFIG}: {e}")))
}
