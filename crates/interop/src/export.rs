//! `strata export hf`: a strata checkpoint with every structured layer merged into dense
//! matrices (guides mixed in at the checkpoint's alpha), written as a Hugging Face model of its
//! family (`config.json`, `model.safetensors`, `tokenizer.json`, `generation_config.json`)
//! that `transformers.AutoModelForCausalLM` loads.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use burn::tensor::backend::Backend;
use serde::Serialize;
use serde_json::json;
use storage::tokenizer::{find_eot, load_tokenizer, TOKENIZER};
use storage::weights::load_model;
use storage::{checkpoint, write_atomic};

use crate::error::InteropError;
use crate::folder::{check_out, replace};
use crate::hf_config::{family_of, write_config};
use crate::layout;
use crate::snapshot;
use crate::tensors::{to_safetensors, WeightType};

/// How to export.
#[derive(Clone, Debug)]
pub struct ExportOptions {
    /// Element type of the written weights.
    pub dtype: WeightType,
    /// Replace a folder at the output path.
    pub force: bool,
}

/// What an export wrote.
#[derive(Serialize, Clone, Debug)]
pub struct ExportReport {
    /// `gpt2`, `llama` or `qwen2`.
    pub family: String,
    /// Parameters of the exported (dense) model.
    pub params: u64,
    /// Structured layers merged into dense matrices.
    pub merged_layers: usize,
    /// The folder written.
    pub out: PathBuf,
}

/// Exports the checkpoint `from` (a checkpoint folder or a run folder: its newest) into the
/// Hugging Face model folder `out`.
pub fn export_hf<B: Backend>(
    from: &Path,
    out: &Path,
    options: &ExportOptions,
    device: &B::Device,
) -> Result<ExportReport, InteropError> {
    check_out(out, options.force)?;
    let dir = checkpoint::resolve(from)?;
    let (model, _) = load_model::<B>(&dir, device)?;
    let family = family_of(model.config())?;
    let merged_layers = model
        .linears()
        .iter()
        .filter(|l| l.guide.is_some() || l.layer.structure() != structured_linear::Structure::Dense)
        .count();
    let merged = model.merged();
    let config = merged.config().clone();
    let hf = layout::to_hf(family, &config, &snapshot::tensors(&merged)?)?;
    let metadata = HashMap::from([("format".to_string(), "pt".to_string())]);
    let weights = to_safetensors(&hf, options.dtype, metadata)?;
    let tokenizer = dir.join(TOKENIZER);
    let eot = if tokenizer.is_file() {
        find_eot(&load_tokenizer(&tokenizer)?, None).ok()
    } else {
        None
    };
    let hf_config = write_config(family, &config, options.dtype, eot);
    let mut generation = json!({});
    if let Some(id) = eot {
        generation = json!({"bos_token_id": id, "eos_token_id": id});
    }
    replace(out, options.force, |tmp| -> Result<(), InteropError> {
        std::fs::create_dir_all(tmp).map_err(|e| InteropError::io(tmp, e))?;
        let pretty = |v: &serde_json::Value| serde_json::to_string_pretty(v).expect("plain JSON");
        write_atomic(&tmp.join("model.safetensors"), &weights)?;
        write_atomic(&tmp.join("config.json"), pretty(&hf_config).as_bytes())?;
        write_atomic(
            &tmp.join("generation_config.json"),
            pretty(&generation).as_bytes(),
        )?;
        if tokenizer.is_file() {
            let bytes = std::fs::read(&tokenizer).map_err(|e| InteropError::io(&tokenizer, e))?;
            write_atomic(&tmp.join(TOKENIZER), &bytes)?;
        }
        Ok(())
    })?;
    Ok(ExportReport {
        family: family.model_type().into(),
        params: transformer::accounting::params(&config).total,
        merged_layers,
        out: out.to_path_buf(),
    })
}
