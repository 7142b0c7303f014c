//! `manifest.json`: what a data folder holds (splits, files, tokenizer, vocabulary), its
//! reader with the checks every opened file passes, and the data folder's claiming.

use std::collections::HashSet;
use std::path::Path;

use serde::{Deserialize, Serialize};
use tokenizers::Tokenizer;

use super::MANIFEST;
use crate::error::DataError;
use crate::loader::WindowLoader;
use crate::shard::TokenFile;
use storage::tokenizer::load_tokenizer;
use storage::write_atomic;

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

pub(super) const MANIFEST_FORMAT: &str = "strata-data";
pub(super) const MANIFEST_VERSION: u32 = 1;

impl Manifest {
    /// Reads `dir/manifest.json`.
    pub fn load(dir: &Path) -> Result<Self, DataError> {
        let path = dir.join(MANIFEST);
        if !dir.is_dir() {
            return Err(DataError::NoData {
                dir: dir.to_path_buf(),
                problem: "does not exist",
            });
        }
        let text = std::fs::read_to_string(&path).map_err(|_| DataError::NoData {
            dir: dir.to_path_buf(),
            problem: "has no manifest.json",
        })?;
        let m: Manifest = serde_json::from_str(&text).map_err(|e| DataError::BadManifest {
            path: path.clone(),
            problem: format!("not a strata data manifest: {e}"),
        })?;
        if m.format != MANIFEST_FORMAT || m.version != MANIFEST_VERSION {
            return Err(DataError::BadManifest {
                path,
                problem: format!(
                    "manifest {} version {} (this strata reads {MANIFEST_FORMAT} version \
                     {MANIFEST_VERSION}); regenerate with `strata data prepare`",
                    m.format, m.version
                ),
            });
        }
        Ok(m)
    }

    /// Opens a split's token files, checking each against the manifest's vocabulary.
    pub fn open(&self, dir: &Path, split: &Split) -> Result<Vec<TokenFile>, DataError> {
        if split.files.is_empty() {
            return Err(DataError::BadManifest {
                path: dir.join(MANIFEST),
                problem: "a split has no files".into(),
            });
        }
        split
            .files
            .iter()
            .enumerate()
            .map(|(i, f)| {
                let path = dir.join(f);
                let opened = match split.format {
                    FileFormat::Shard => TokenFile::open_shard(&path),
                    FileFormat::RawU16 => TokenFile::open_raw_u16(&path),
                };
                // A file that cannot be opened at all: the manifest points at the wrong place.
                let file = opened.map_err(|e| match e {
                    DataError::Io { error, .. } => DataError::BadManifest {
                        path: dir.join(MANIFEST),
                        problem: format!("lists `{f}`, which cannot be opened: {error}"),
                    },
                    other => other,
                })?;
                if let Some(check) = split.checks.get(i) {
                    if FileCheck::of(&file) != *check {
                        return Err(DataError::BadShard {
                            path,
                            problem: "changed since it was imported (its size or checksum \
                                      differ); import it again with `strata data import`"
                                .into(),
                        });
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
                        });
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
    ) -> Result<WindowLoader, DataError> {
        let loader = WindowLoader::new(self.open(dir, split)?, seq_len, seed, shuffle)?;
        match split.row_len {
            Some(row) if row != seq_len + 1 => Err(DataError::RowLength {
                dir: dir.to_path_buf(),
                row,
            }),
            Some(row) => Ok(loader.with_stride(row)?),
            None => Ok(loader),
        }
    }

    /// Refuses a model whose embedding cannot index every token of this data.
    pub fn check_vocab(&self, model: &str, model_vocab: usize) -> Result<(), DataError> {
        if self.vocab_size > model_vocab {
            return Err(DataError::Tokenizer(format!(
                "the data's vocabulary has {} tokens but model {model} has vocab_size {model_vocab}; prepare the data with `vocab_size` {model_vocab} or pick a model with a larger vocabulary",
                self.vocab_size
            )));
        }
        Ok(())
    }

    /// Loads the tokenizer of a data folder.
    pub fn load_tokenizer(&self, dir: &Path) -> Result<Tokenizer, DataError> {
        let name = self.tokenizer.as_deref().ok_or_else(|| {
            DataError::Tokenizer(format!(
                "{} names no tokenizer (the data was imported as tokens)",
                dir.join(MANIFEST).display()
            ))
        })?;
        Ok(load_tokenizer(&dir.join(name))?)
    }
}

/// Refuses to overwrite prepared data unless forced; creates the folder.
pub(super) fn claim_output(out: &Path, force: bool) -> Result<(), DataError> {
    if out.join(MANIFEST).exists() && !force {
        return Err(DataError::DataExists {
            dir: out.to_path_buf(),
        });
    }
    if out.exists() && !out.is_dir() {
        return Err(DataError::Input {
            path: out.to_path_buf(),
            problem: " is a file, not a folder".into(),
        });
    }
    std::fs::create_dir_all(out).map_err(|e| DataError::io(out, e))?;
    Ok(())
}

/// Removes shards of an earlier preparation that the new manifest does not list.
pub(super) fn remove_stale(out: &Path, manifest: &Manifest) {
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

pub(super) fn write_manifest(dir: &Path, manifest: &Manifest) -> Result<(), DataError> {
    let json = serde_json::to_string_pretty(manifest).expect("plain struct");
    write_atomic(&dir.join(MANIFEST), json.as_bytes())?;
    Ok(())
}
