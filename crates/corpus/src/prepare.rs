//! `data prepare`: documents -> tokenizer -> token shards per split -> manifest (written last,
//! so a folder with a manifest is complete).

use std::path::{Path, PathBuf};

use super::manifest::{
    claim_output, remove_stale, write_manifest, FileFormat, Manifest, Split, MANIFEST_FORMAT,
    MANIFEST_VERSION,
};
use super::sources::{for_each_document, is_validation, list_sources};
use super::tokenizer::{train_tokenizer, TokenizerSource};
use super::{EOT, TOKENIZER};
use crate::error::DataError;
use crate::shard::ShardWriter;
use storage::atomic::{sync_parent, tmp_path};
use storage::tokenizer::{find_eot, load_tokenizer};

/// What `data prepare` does.
#[derive(Clone, Debug)]
pub struct PrepareConfig {
    /// Text files, folders (read recursively, in sorted order, hidden files skipped) and
    /// `.jsonl` files.
    pub inputs: Vec<PathBuf>,
    /// Output folder.
    pub out: PathBuf,
    /// Tokenizer to train or load.
    pub tokenizer: TokenizerSource,
    /// The end-of-text token of a loaded tokenizer (default: the first of `<|endoftext|>`,
    /// `</s>`, `<eos>`, ... it has).
    pub eot: Option<String>,
    /// Field holding the text in JSON lines.
    pub text_field: String,
    /// Document `i` (in input order, empty documents skipped) goes to validation when
    /// `i % val_every == val_every - 1`.
    pub val_every: usize,
    /// Tokens per shard at most.
    pub shard_tokens: usize,
    /// Replace prepared data already in `out`.
    pub force: bool,
}

impl PrepareConfig {
    /// Defaults: train a 4096-token BPE, field `text`, 1 document in 10 to validation,
    /// shards of 64M tokens.
    pub fn new(inputs: Vec<PathBuf>, out: PathBuf) -> Self {
        Self {
            inputs,
            out,
            tokenizer: TokenizerSource::Train { vocab_size: 4096 },
            eot: None,
            text_field: "text".into(),
            val_every: 10,
            shard_tokens: 1 << 26,
            force: false,
        }
    }
}

/// Streams one split into shards of at most `limit` tokens named `{prefix}-{k:04}.bin`.
struct SplitWriter {
    dir: PathBuf,
    prefix: &'static str,
    vocab_size: usize,
    limit: usize,
    current: Option<ShardWriter>,
    files: Vec<String>,
    tokens: u64,
    documents: u64,
}

impl SplitWriter {
    fn new(dir: &Path, prefix: &'static str, vocab_size: usize, limit: usize) -> Self {
        Self {
            dir: dir.to_path_buf(),
            prefix,
            vocab_size,
            limit,
            current: None,
            files: Vec::new(),
            tokens: 0,
            documents: 0,
        }
    }

    fn write(&mut self, ids: &[u32]) -> Result<(), DataError> {
        let mut rest = ids;
        while !rest.is_empty() {
            if self
                .current
                .as_ref()
                .is_some_and(|w| w.len() as usize >= self.limit)
            {
                self.finish_shard()?;
            }
            if self.current.is_none() {
                let name = format!("{}-{:04}.bin", self.prefix, self.files.len());
                self.current = Some(ShardWriter::create(&self.dir.join(&name), self.vocab_size)?);
                self.files.push(name);
            }
            let w = self.current.as_mut().expect("opened above");
            let room = self.limit - w.len() as usize;
            let (now, later) = rest.split_at(room.min(rest.len()));
            w.write(now)?;
            rest = later;
        }
        self.tokens += ids.len() as u64;
        self.documents += 1;
        Ok(())
    }

    fn finish_shard(&mut self) -> Result<(), DataError> {
        if let Some(w) = self.current.take() {
            w.finish()?;
        }
        Ok(())
    }

    fn finish(mut self) -> Result<Split, DataError> {
        self.finish_shard()?;
        Ok(Split {
            files: self.files,
            checks: Vec::new(),
            format: FileFormat::Shard,
            tokens: self.tokens,
            documents: self.documents,
            row_len: None,
        })
    }
}

/// Prepares a data folder: tokenizer, train/validation shards, manifest (written last, so a
/// folder with a manifest is complete).
pub fn prepare(config: &PrepareConfig) -> Result<Manifest, DataError> {
    if config.val_every < 2 {
        return Err(DataError::Setting {
            setting: "val_every",
            problem: "must be at least 2".into(),
        });
    }
    if config.shard_tokens == 0 {
        return Err(DataError::Setting {
            setting: "shard_tokens",
            problem: "must be at least 1".into(),
        });
    }
    let sources = list_sources(&config.inputs)?;
    // Count documents first: empty inputs and a split without validation fail before any work.
    let documents = for_each_document(&sources, &config.text_field, |_, _| Ok(()))?;
    if documents == 0 {
        return Err(DataError::Setting {
            setting: "inputs",
            problem: "the inputs hold no text".into(),
        });
    }
    if documents < config.val_every {
        return Err(DataError::Setting {
            setting: "inputs",
            problem: format!(
            "{documents} documents are too few to hold out 1 in {} for validation; give more documents or a smaller `val_every`",
            config.val_every
        ),
        });
    }
    claim_output(&config.out, config.force)?;
    let mut tokenizer = match &config.tokenizer {
        TokenizerSource::Train { vocab_size } => {
            train_tokenizer(&sources, &config.text_field, config.val_every, *vocab_size)?
        }
        TokenizerSource::File(path) => load_tokenizer(path)?,
    };
    let eot_id = find_eot(
        &tokenizer,
        config.eot.as_deref().or(match config.tokenizer {
            TokenizerSource::Train { .. } => Some(EOT),
            TokenizerSource::File(_) => None,
        }),
    )?;
    let vocab_size = tokenizer.get_vocab_size(true);
    let mut train = SplitWriter::new(&config.out, "train", vocab_size, config.shard_tokens);
    let mut val = SplitWriter::new(&config.out, "val", vocab_size, config.shard_tokens);
    // Document text is text: a document quoting a special token's text (`<|endoftext|>`) must
    // not put a false document boundary in the stream. The boundaries are ours, added below.
    tokenizer.set_encode_special_tokens(true);
    for_each_document(&sources, &config.text_field, |i, text| {
        let encoding = tokenizer
            .encode(text.as_str(), false)
            .map_err(|e| DataError::Tokenizer(format!("encoding document {i}: {e}")))?;
        let mut ids = encoding.get_ids().to_vec();
        ids.push(eot_id);
        if is_validation(i, config.val_every) {
            val.write(&ids)
        } else {
            train.write(&ids)
        }
    })?;
    tokenizer.set_encode_special_tokens(false);
    let tok_path = config.out.join(TOKENIZER);
    let tmp = tmp_path(&tok_path);
    match &config.tokenizer {
        // The user's tokenizer byte for byte: a checkpoint holding the same file (an imported
        // model) is then recognised as tokenizing alike.
        TokenizerSource::File(path) => {
            std::fs::copy(path, &tmp).map_err(|e| DataError::io(path, e))?;
        }
        TokenizerSource::Train { .. } => tokenizer
            .save(&tmp, false)
            .map_err(|e| DataError::Tokenizer(format!("cannot save: {e}")))?,
    }
    std::fs::rename(&tmp, &tok_path).map_err(|e| DataError::io(&tok_path, e))?;
    sync_parent(&tok_path);
    let manifest = Manifest {
        format: MANIFEST_FORMAT.into(),
        version: MANIFEST_VERSION,
        vocab_size,
        eot_id: Some(eot_id),
        tokenizer: Some(TOKENIZER.into()),
        train: train.finish()?,
        validation: val.finish()?,
        split_rule: format!(
            "document i (input order, empty ones skipped) -> validation when i % {} == {}",
            config.val_every,
            config.val_every - 1
        ),
    };
    write_manifest(&config.out, &manifest)?;
    remove_stale(&config.out, &manifest);
    Ok(manifest)
}
