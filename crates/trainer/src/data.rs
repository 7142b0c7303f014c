//! `data prepare`: text files, folders of them or JSON lines -> a tokenizer (trained byte-level
//! BPE, or the user's), token shards split by whole document, and a manifest; plus the
//! manifest's reader, and `data import` of raw uint16 token files.
//!
//! Documents are read one at a time (a text file is one document, a JSON line is one
//! document), so memory does not grow with the corpus: BPE training keeps word counts, and
//! encoding streams into shards of a bounded size.

use std::collections::HashSet;
use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};
use tokenizers::models::bpe::{BpeTrainerBuilder, BPE};
use tokenizers::models::TrainerWrapper;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::{AddedToken, Tokenizer};

use crate::error::{DataError, TrainError};
use crate::loader::WindowLoader;
use crate::shard::{sync_parent, tmp_path, write_atomic, ShardWriter, TokenFile};

/// The manifest's file name inside a data folder.
pub const MANIFEST: &str = "manifest.json";
/// The tokenizer's file name inside a data folder (and a checkpoint).
pub const TOKENIZER: &str = "tokenizer.json";
/// The end-of-text token of tokenizers trained here.
pub const EOT: &str = "<|endoftext|>";
/// Names tried, in order, for the end-of-text token of a user's tokenizer.
const EOT_CANDIDATES: &[&str] = &[
    EOT,
    "</s>",
    "<eos>",
    "<|end_of_text|>",
    "<|eot_id|>",
    "[SEP]",
];

/// Where the tokenizer comes from.
#[derive(Clone, Debug, PartialEq)]
pub enum TokenizerSource {
    /// Train a byte-level BPE of this many tokens (special tokens included) on the training
    /// split.
    Train {
        /// Vocabulary size.
        vocab_size: usize,
    },
    /// Load a `tokenizer.json`.
    File(PathBuf),
}

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

/// On-disk layout of a split's token files.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum FileFormat {
    /// strata's shards (`shard.rs`: versioned header, checksum).
    #[default]
    Shard,
    /// Headerless little-endian uint16 tokens: the reference's rows of 1025 tokens, or any
    /// plain uint16 stream.
    RawU16,
}

/// One split's files.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(deny_unknown_fields)]
pub struct Split {
    /// File paths, relative to the data folder (or absolute).
    pub files: Vec<String>,
    /// Their layout.
    #[serde(default)]
    pub format: FileFormat,
    /// Tokens in all files.
    pub tokens: u64,
    /// Documents (0 when unknown, e.g. imported raw files).
    pub documents: u64,
    /// Raw files: what each was at import, in `files` order (empty for shards, whose headers
    /// carry their own checksum, and for manifests written before the field existed).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub checks: Vec<FileCheck>,
    /// Files of independent rows of this many tokens (the reference's 1025): each training
    /// window is one row, so the sequence length must be `row_len - 1`. `None`: one stream.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub row_len: Option<usize>,
}

/// What a raw uint16 file was when it was imported: its size, and a checksum of its first and
/// last MiB (cheap to recompute at every start, even for files of many GB).
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct FileCheck {
    /// Bytes.
    pub bytes: u64,
    /// FNV-1a of the first and the last MiB (the whole file when smaller than 2 MiB).
    pub sample_fnv1a: u64,
}

impl FileCheck {
    /// Bytes at each end that the checksum covers.
    const SAMPLE: usize = 1 << 20;

    /// The check of a raw uint16 file.
    pub fn of(file: &TokenFile) -> Self {
        let tokens = file.len();
        let per_end = Self::SAMPLE / 2;
        // The first and the last `per_end` tokens (overlapping ranges cover a small file once).
        let head = 0..per_end.min(tokens);
        let tail = tokens.saturating_sub(per_end).max(head.end)..tokens;
        let mut bytes = Vec::with_capacity(2 * Self::SAMPLE);
        for i in head.chain(tail) {
            bytes.extend_from_slice(&(file.get(i) as u16).to_le_bytes());
        }
        Self {
            bytes: 2 * tokens as u64,
            sample_fnv1a: crate::shard::fnv1a(&bytes),
        }
    }
}

/// A data folder's description: `manifest.json`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// Always `strata-data`.
    pub format: String,
    /// Manifest version (1).
    pub version: u32,
    /// Vocabulary size of the tokenizer (every token id is below it).
    pub vocab_size: usize,
    /// The end-of-text token's id, appended to every document.
    pub eot_id: Option<u32>,
    /// Tokenizer file, relative to the data folder (absent for imported raw tokens).
    pub tokenizer: Option<String>,
    /// Training split.
    pub train: Split,
    /// Validation split.
    pub validation: Split,
    /// How documents were split (for the record).
    pub split_rule: String,
}

const MANIFEST_FORMAT: &str = "strata-data";
const MANIFEST_VERSION: u32 = 1;

impl Manifest {
    /// Reads `dir/manifest.json`.
    pub fn load(dir: &Path) -> Result<Self, TrainError> {
        let path = dir.join(MANIFEST);
        if !dir.is_dir() {
            return Err(TrainError::Config(format!(
                "data folder {} does not exist; prepare one with `strata data prepare`",
                dir.display()
            )));
        }
        let text = std::fs::read_to_string(&path).map_err(|_| {
            TrainError::Config(format!(
                "{} has no {MANIFEST}; prepare it with `strata data prepare`",
                dir.display()
            ))
        })?;
        let m: Manifest = serde_json::from_str(&text).map_err(|e| {
            TrainError::Config(format!(
                "{}: not a strata data manifest: {e}",
                path.display()
            ))
        })?;
        if m.format != MANIFEST_FORMAT || m.version != MANIFEST_VERSION {
            return Err(TrainError::Config(format!(
                "{}: manifest {} version {} (this strata reads {MANIFEST_FORMAT} version {MANIFEST_VERSION}); regenerate with `strata data prepare`",
                path.display(),
                m.format,
                m.version
            )));
        }
        Ok(m)
    }

    /// Opens a split's token files, checking each against the manifest's vocabulary.
    pub fn open(&self, dir: &Path, split: &Split) -> Result<Vec<TokenFile>, TrainError> {
        if split.files.is_empty() {
            return Err(TrainError::Config(format!(
                "{}: a split has no files",
                dir.display()
            )));
        }
        split
            .files
            .iter()
            .enumerate()
            .map(|(i, f)| {
                let path = dir.join(f);
                let file = match split.format {
                    FileFormat::Shard => TokenFile::open_shard(&path)?,
                    FileFormat::RawU16 => TokenFile::open_raw_u16(&path)?,
                };
                if let Some(check) = split.checks.get(i) {
                    if FileCheck::of(&file) != *check {
                        return Err(DataError::BadShard {
                            path,
                            problem: "changed since it was imported (its size or checksum \
                                      differ); import it again with `strata data import`"
                                .into(),
                        }
                        .into());
                    }
                }
                if let Some(v) = file.vocab_size() {
                    if v > self.vocab_size {
                        return Err(DataError::BadShard {
                            path,
                            problem: format!(
                                "shard vocabulary {v} exceeds the manifest's {}",
                                self.vocab_size
                            ),
                        }
                        .into());
                    }
                }
                Ok(file)
            })
            .collect()
    }

    /// A window loader over a split for sequences of `seq_len` tokens (rows of `row_len` need
    /// `seq_len = row_len - 1`).
    pub fn loader(
        &self,
        dir: &Path,
        split: &Split,
        seq_len: usize,
        seed: u64,
        shuffle: bool,
    ) -> Result<WindowLoader, TrainError> {
        let loader = WindowLoader::new(self.open(dir, split)?, seq_len, seed, shuffle)?;
        match split.row_len {
            Some(row) if row != seq_len + 1 => Err(TrainError::Config(format!(
                "{} holds rows of {row} tokens: train and evaluate with sequence length {}",
                dir.display(),
                row.saturating_sub(1)
            ))),
            Some(row) => Ok(loader.with_stride(row)?),
            None => Ok(loader),
        }
    }

    /// Refuses a model whose embedding cannot index every token of this data.
    pub fn check_vocab(&self, model: &str, model_vocab: usize) -> Result<(), TrainError> {
        if self.vocab_size > model_vocab {
            return Err(TrainError::Tokenizer(format!(
                "the data's vocabulary has {} tokens but model {model} has vocab_size {model_vocab}; prepare the data with --vocab-size {model_vocab} or pick a model with a larger vocabulary",
                self.vocab_size
            )));
        }
        Ok(())
    }

    /// Loads the tokenizer of a data folder.
    pub fn load_tokenizer(&self, dir: &Path) -> Result<Tokenizer, TrainError> {
        let name = self.tokenizer.as_deref().ok_or_else(|| {
            TrainError::Tokenizer(format!(
                "{} has no tokenizer (imported tokens)",
                dir.display()
            ))
        })?;
        load_tokenizer(&dir.join(name))
    }
}

/// Loads a `tokenizer.json`.
pub fn load_tokenizer(path: &Path) -> Result<Tokenizer, TrainError> {
    if !path.is_file() {
        return Err(TrainError::Tokenizer(format!(
            "{} does not exist",
            path.display()
        )));
    }
    Tokenizer::from_file(path)
        .map_err(|e| TrainError::Tokenizer(format!("{}: cannot load: {e}", path.display())))
}

/// Where one document comes from.
#[derive(Clone, Debug)]
enum Source {
    /// A whole text file.
    Text(PathBuf),
    /// One document per line, in field `text_field`.
    JsonLines(PathBuf),
}

/// Expands the inputs to files in a deterministic order.
fn list_sources(inputs: &[PathBuf]) -> Result<Vec<Source>, TrainError> {
    if inputs.is_empty() {
        return Err(TrainError::Config("no input given".into()));
    }
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) -> Result<(), DataError> {
        let mut entries = std::fs::read_dir(dir)
            .map_err(|e| DataError::io(dir, e))?
            .map(|e| e.map(|e| e.path()).map_err(|e| DataError::io(dir, e)))
            .collect::<Result<Vec<_>, _>>()?;
        entries.sort();
        for p in entries {
            let hidden = p
                .file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with('.'));
            if hidden {
                continue;
            }
            if p.is_dir() {
                walk(&p, out)?;
            } else {
                out.push(p);
            }
        }
        Ok(())
    }
    let mut files = Vec::new();
    for input in inputs {
        if input.is_dir() {
            let before = files.len();
            walk(input, &mut files)?;
            if files.len() == before {
                return Err(TrainError::Config(format!(
                    "input folder {} is empty",
                    input.display()
                )));
            }
        } else if input.is_file() {
            files.push(input.clone());
        } else {
            return Err(TrainError::Config(format!(
                "input {} does not exist",
                input.display()
            )));
        }
    }
    Ok(files
        .into_iter()
        .map(|p| {
            if p.extension().and_then(|e| e.to_str()) == Some("jsonl") {
                Source::JsonLines(p)
            } else {
                Source::Text(p)
            }
        })
        .collect())
}

fn utf8(path: &Path, line: Option<usize>, bytes: Vec<u8>) -> Result<String, TrainError> {
    String::from_utf8(bytes).map_err(|e| {
        let at = match line {
            Some(l) => format!("{}:{l}", path.display()),
            None => path.display().to_string(),
        };
        TrainError::Config(format!(
            "{at}: not UTF-8 text (invalid byte at offset {})",
            e.utf8_error().valid_up_to()
        ))
    })
}

/// Visits every non-empty document in order with its index; stops at the first error.
fn for_each_document(
    sources: &[Source],
    text_field: &str,
    mut visit: impl FnMut(usize, String) -> Result<(), TrainError>,
) -> Result<usize, TrainError> {
    let mut index = 0;
    let mut emit = |text: String,
                    visit: &mut dyn FnMut(usize, String) -> Result<(), TrainError>|
     -> Result<(), TrainError> {
        if text.trim().is_empty() {
            return Ok(());
        }
        visit(index, text)?;
        index += 1;
        Ok(())
    };
    for source in sources {
        match source {
            Source::Text(path) => {
                let mut bytes = Vec::new();
                File::open(path)
                    .and_then(|mut f| f.read_to_end(&mut bytes))
                    .map_err(|e| DataError::io(path, e))?;
                emit(utf8(path, None, bytes)?, &mut visit)?;
            }
            Source::JsonLines(path) => {
                let mut reader =
                    BufReader::new(File::open(path).map_err(|e| DataError::io(path, e))?);
                let mut line = Vec::new();
                let mut number = 0;
                loop {
                    line.clear();
                    number += 1;
                    let n = reader
                        .read_until(b'\n', &mut line)
                        .map_err(|e| DataError::io(path, e))?;
                    if n == 0 {
                        break;
                    }
                    let text = utf8(path, Some(number), std::mem::take(&mut line))?;
                    if text.trim().is_empty() {
                        continue;
                    }
                    let value: serde_json::Value = serde_json::from_str(&text).map_err(|e| {
                        TrainError::Config(format!("{}:{number}: not JSON: {e}", path.display()))
                    })?;
                    let doc = value
                        .get(text_field)
                        .and_then(|v| v.as_str())
                        .ok_or_else(|| {
                            TrainError::Config(format!(
                                "{}:{number}: no string field \"{text_field}\"",
                                path.display()
                            ))
                        })?;
                    emit(doc.to_string(), &mut visit)?;
                }
            }
        }
    }
    Ok(index)
}

fn is_validation(index: usize, val_every: usize) -> bool {
    index % val_every == val_every - 1
}

/// Trains a byte-level BPE (GPT-2 style: bytes as the initial alphabet, no prefix space) on the
/// training documents, with [`EOT`] as its one special token.
fn train_tokenizer(
    sources: &[Source],
    config: &PrepareConfig,
    vocab_size: usize,
) -> Result<Tokenizer, TrainError> {
    let alphabet = ByteLevel::alphabet();
    if vocab_size < alphabet.len() + 2 {
        return Err(TrainError::Config(format!(
            "--vocab-size {vocab_size} is too small: a byte-level BPE needs at least {}",
            alphabet.len() + 2
        )));
    }
    let byte_level = ByteLevel::new(false, true, true);
    let mut tokenizer = Tokenizer::new(BPE::default());
    tokenizer
        .with_pre_tokenizer(Some(byte_level))
        .with_decoder(Some(byte_level))
        .with_post_processor(Some(byte_level));
    let mut trainer: TrainerWrapper = BpeTrainerBuilder::new()
        .vocab_size(vocab_size)
        .min_frequency(2)
        .show_progress(false)
        .special_tokens(vec![AddedToken::from(EOT, true)])
        .initial_alphabet(alphabet.into_iter().collect::<HashSet<char>>())
        .build()
        .into();
    // The tokenizer pulls documents from an iterator; a reading error ends the iteration and is
    // reported after training.
    let failure: Mutex<Option<TrainError>> = Mutex::new(None);
    let (tx, rx) = std::sync::mpsc::sync_channel::<String>(64);
    std::thread::scope(|scope| {
        let failure = &failure;
        scope.spawn(move || {
            let result = for_each_document(sources, &config.text_field, |i, text| {
                if !is_validation(i, config.val_every) && tx.send(text).is_err() {
                    return Err(TrainError::Tokenizer("training stopped early".into()));
                }
                Ok(())
            });
            if let Err(e) = result {
                *failure.lock().expect("no panics while locked") = Some(e);
            }
        });
        tokenizer
            .train(&mut trainer, rx.into_iter())
            .map(|_| ())
            .map_err(|e| TrainError::Tokenizer(e.to_string()))
    })?;
    if let Some(e) = failure.into_inner().expect("no panics while locked") {
        return Err(e);
    }
    Ok(tokenizer)
}

/// The end-of-text token of `tokenizer`: the one named, or the first of the usual names
/// (`<|endoftext|>`, `</s>`, `<eos>`, ...) it has.
pub fn find_eot(tokenizer: &Tokenizer, name: Option<&str>) -> Result<u32, TrainError> {
    match name {
        Some(n) => tokenizer.token_to_id(n).ok_or_else(|| {
            TrainError::Tokenizer(format!("the tokenizer has no token {n:?} (--eot)"))
        }),
        None => EOT_CANDIDATES
            .iter()
            .find_map(|n| tokenizer.token_to_id(n))
            .ok_or_else(|| {
                TrainError::Tokenizer(format!(
                    "the tokenizer has none of the end-of-text tokens {EOT_CANDIDATES:?}; name one with --eot"
                ))
            }),
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

    fn write(&mut self, ids: &[u32]) -> Result<(), TrainError> {
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

    fn finish_shard(&mut self) -> Result<(), TrainError> {
        if let Some(w) = self.current.take() {
            w.finish()?;
        }
        Ok(())
    }

    fn finish(mut self) -> Result<Split, TrainError> {
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

/// Refuses to overwrite prepared data unless forced; creates the folder.
fn claim_output(out: &Path, force: bool) -> Result<(), TrainError> {
    if out.join(MANIFEST).exists() && !force {
        return Err(TrainError::Config(format!(
            "{} already holds prepared data ({MANIFEST}); pass --force to replace it",
            out.display()
        )));
    }
    if out.exists() && !out.is_dir() {
        return Err(TrainError::Config(format!(
            "{} is a file, not a folder",
            out.display()
        )));
    }
    std::fs::create_dir_all(out).map_err(|e| DataError::io(out, e))?;
    Ok(())
}

/// Removes shards of an earlier preparation that the new manifest does not list.
fn remove_stale(out: &Path, manifest: &Manifest) {
    let keep: HashSet<&str> = manifest
        .train
        .files
        .iter()
        .chain(&manifest.validation.files)
        .map(String::as_str)
        .collect();
    if let Ok(entries) = std::fs::read_dir(out) {
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().to_string();
            let ours =
                (name.starts_with("train-") || name.starts_with("val-")) && name.ends_with(".bin");
            if ours && !keep.contains(name.as_str()) {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }
}

/// Prepares a data folder: tokenizer, train/validation shards, manifest (written last, so a
/// folder with a manifest is complete).
pub fn prepare(config: &PrepareConfig) -> Result<Manifest, TrainError> {
    if config.val_every < 2 {
        return Err(TrainError::Config("--val-every must be at least 2".into()));
    }
    if config.shard_tokens == 0 {
        return Err(TrainError::Config(
            "shard size must be at least one token".into(),
        ));
    }
    let sources = list_sources(&config.inputs)?;
    // Count documents first: empty inputs and a split without validation fail before any work.
    let documents = for_each_document(&sources, &config.text_field, |_, _| Ok(()))?;
    if documents == 0 {
        return Err(TrainError::Config("the inputs hold no text".into()));
    }
    if documents < config.val_every {
        return Err(TrainError::Config(format!(
            "{documents} documents are too few to hold out 1 in {} for validation; give more documents or a smaller --val-every",
            config.val_every
        )));
    }
    claim_output(&config.out, config.force)?;
    let mut tokenizer = match &config.tokenizer {
        TokenizerSource::Train { vocab_size } => train_tokenizer(&sources, config, *vocab_size)?,
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
            .map_err(|e| TrainError::Tokenizer(format!("encoding document {i}: {e}")))?;
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
    tokenizer
        .save(&tmp, false)
        .map_err(|e| TrainError::Tokenizer(format!("cannot save: {e}")))?;
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

fn write_manifest(dir: &Path, manifest: &Manifest) -> Result<(), TrainError> {
    let json = serde_json::to_string_pretty(manifest).expect("plain struct");
    write_atomic(&dir.join(MANIFEST), json.as_bytes())?;
    Ok(())
}

/// `data import`: a data folder over existing raw uint16 token files, referenced by absolute
/// path rather than copied: plain token streams, or with `row_len` files of independent rows
/// (the reference's rows of 1025 tokens, read one row per window).
pub fn import_raw(
    train: &[PathBuf],
    validation: &[PathBuf],
    vocab_size: usize,
    row_len: Option<usize>,
    out: &Path,
    force: bool,
) -> Result<Manifest, TrainError> {
    if row_len.is_some_and(|r| r < 2) {
        return Err(TrainError::Config("--row-len must be at least 2".into()));
    }
    if vocab_size == 0 || vocab_size > 1 << 16 {
        return Err(TrainError::Config(format!(
            "--vocab-size {vocab_size} must lie in 1..=65536 for uint16 tokens"
        )));
    }
    let split = |files: &[PathBuf], what: &str| -> Result<Split, TrainError> {
        if files.is_empty() {
            return Err(TrainError::Config(format!("no {what} files given")));
        }
        let mut tokens = 0;
        let (mut names, mut checks) = (Vec::new(), Vec::new());
        for f in files {
            let abs = std::fs::canonicalize(f).map_err(|e| DataError::io(f, e))?;
            let file = TokenFile::open_raw_u16(&abs)?;
            if let Some(r) = row_len.filter(|r| file.len() % r != 0) {
                return Err(TrainError::Config(format!(
                    "{}: {} tokens are not whole rows of {r}",
                    abs.display(),
                    file.len()
                )));
            }
            if let Some(i) = (0..file.len()).find(|&i| file.get(i) as usize >= vocab_size) {
                return Err(DataError::TokenOutOfRange {
                    id: file.get(i),
                    vocab_size,
                }
                .into());
            }
            tokens += file.len() as u64;
            names.push(abs.to_string_lossy().to_string());
            checks.push(FileCheck::of(&file));
        }
        Ok(Split {
            files: names,
            checks,
            format: FileFormat::RawU16,
            tokens,
            documents: 0,
            row_len,
        })
    };
    let manifest = Manifest {
        format: MANIFEST_FORMAT.into(),
        version: MANIFEST_VERSION,
        vocab_size,
        eot_id: None,
        tokenizer: None,
        train: split(train, "training")?,
        validation: split(validation, "validation")?,
        split_rule: "imported raw uint16 files".into(),
    };
    claim_output(out, force)?;
    write_manifest(out, &manifest)?;
    Ok(manifest)
}
