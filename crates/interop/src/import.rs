//! `strata import hf`: a Hugging Face checkpoint (GPT-2, Llama or Qwen2; safetensors, one
//! file or shards; f32, bf16 or f16) and its tokenizer, as a strata checkpoint folder.

use std::path::{Path, PathBuf};

use burn::tensor::backend::Backend;
use serde::Serialize;
use storage::tokenizer::{load_tokenizer, TOKENIZER};
use storage::{checkpoint, TrainState};
use transformer::TransformerConfig;

use crate::error::InteropError;
use crate::folder::check_out;
use crate::hf_config::{read_config, Family};
use crate::layout;
use crate::snapshot;
use crate::tensors::read_hf_weights;

/// How to import.
#[derive(Clone, Debug, Default)]
pub struct ImportOptions {
    /// Context length of the strata model (default: the checkpoint's
    /// `max_position_embeddings` / `n_positions`); at most that.
    pub max_seq_len: Option<usize>,
    /// Replace a folder already at the output path.
    pub force: bool,
}

/// What an import wrote.
#[derive(Serialize, Clone, Debug)]
pub struct ImportReport {
    /// `gpt2`, `llama` or `qwen2`.
    pub family: String,
    /// Parameters of the strata model.
    pub params: usize,
    /// Tensors read from the checkpoint.
    pub tensors: usize,
    /// The checkpoint folder written.
    pub out: PathBuf,
    /// Its model.
    pub config: TransformerConfig,
}

/// The family and strata config of the Hugging Face folder `from` (its `config.json`).
pub fn inspect(from: &Path) -> Result<(Family, TransformerConfig), InteropError> {
    read_config(&from.join("config.json"))
}

/// Imports the Hugging Face model folder `from` into the strata checkpoint folder `out`
/// (built on `device`). Nothing is written unless every tensor fits.
pub fn import_hf<B: Backend>(
    from: &Path,
    out: &Path,
    options: &ImportOptions,
    device: &B::Device,
) -> Result<ImportReport, InteropError> {
    check_out(out, options.force)?;
    if !from.is_dir() {
        return Err(InteropError::bad_file(from, "is not a folder"));
    }
    let (family, mut config) = inspect(from)?;
    let full = config.clone(); // the checkpoint's own context length
    if let Some(n) = options.max_seq_len {
        if n == 0 || n > config.max_seq_len {
            return Err(InteropError::Invalid(format!(
                "`max_seq_len` {n} must lie in 1..={} (the checkpoint's context length)",
                config.max_seq_len
            )));
        }
        config.max_seq_len = n;
    }
    let tokenizer = from.join(TOKENIZER);
    if !tokenizer.is_file() {
        return Err(InteropError::bad_file(
            from,
            "has no tokenizer.json (strata reads the tokenizer in the `tokenizers` format)",
        ));
    }
    let vocab = load_tokenizer(&tokenizer)?.get_vocab_size(true);
    if vocab > config.vocab_size {
        return Err(InteropError::bad_file(
            &tokenizer,
            format!(
                "has {vocab} tokens, more than the model's vocab_size {}",
                config.vocab_size
            ),
        ));
    }
    let hf = read_hf_weights(from)?;
    let count = hf.len();
    // Every tensor is checked against the config before the model is built, so a config.json
    // that misdescribes the weights is named, not allocated.
    let mut weights = layout::from_hf(family, &config, &layout::dense_shapes(&full), hf)?;
    if let (Some(n), Some(pos)) = (options.max_seq_len, weights.get_mut("pos_emb")) {
        *pos = pos.rows(n);
    }
    let mut model = config.init::<B>(device)?;
    snapshot::load(&mut model, &weights, from)?;
    let state = TrainState::default();
    crate::folder::replace(out, options.force, |tmp| {
        checkpoint::save_model(tmp, &model, &state, Some(&tokenizer))
    })?;
    Ok(ImportReport {
        family: family.model_type().into(),
        params: transformer::accounting::params(&config).total as usize,
        tensors: count,
        out: out.to_path_buf(),
        config,
    })
}
