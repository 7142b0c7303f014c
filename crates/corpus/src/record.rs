//! What a run trained on, recorded in its `config.json`, so that a resumed run finds its data
//! folder by itself and a folder given instead (a moved copy) is checked to be the same data.

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::{Manifest, MANIFEST};
use crate::error::DataError;
use crate::shard::fnv1a;

/// A data folder's identity: what its manifest says and checksums of the manifest and the
/// tokenizer file (the shards carry their own checksums, raw files their import checks).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct DataRecord {
    /// The tokenizer's vocabulary size.
    pub vocab_size: usize,
    /// Tokens of the training split.
    pub train_tokens: u64,
    /// Tokens of the validation split.
    pub validation_tokens: u64,
    /// FNV-1a of the tokenizer file (none for imported raw tokens).
    pub tokenizer_fnv1a: Option<u64>,
    /// FNV-1a of `manifest.json` (paths inside it are relative to the folder, so a moved copy
    /// has the same manifest).
    pub manifest_fnv1a: u64,
}

impl DataRecord {
    /// The record of the data folder `dir`, whose manifest is `manifest`.
    pub fn of(manifest: &Manifest, dir: &Path) -> Result<Self, DataError> {
        let read = |name: &str| {
            std::fs::read(dir.join(name)).map_err(|e| DataError::BadManifest {
                path: dir.join(name),
                problem: e.to_string(),
            })
        };
        let tokenizer_fnv1a = match &manifest.tokenizer {
            Some(name) => Some(fnv1a(&read(name)?)),
            None => None,
        };
        Ok(Self {
            vocab_size: manifest.vocab_size,
            train_tokens: manifest.train.tokens,
            validation_tokens: manifest.validation.tokens,
            tokenizer_fnv1a,
            manifest_fnv1a: fnv1a(&read(MANIFEST)?),
        })
    }

    /// What differs between the data this record describes and `other` (none: the same data).
    pub fn difference(&self, other: &DataRecord) -> Option<String> {
        let pairs = [
            (
                "vocabulary size",
                self.vocab_size as u64,
                other.vocab_size as u64,
            ),
            ("training tokens", self.train_tokens, other.train_tokens),
            (
                "validation tokens",
                self.validation_tokens,
                other.validation_tokens,
            ),
        ];
        if let Some((what, run, given)) = pairs.iter().find(|(_, a, b)| a != b) {
            return Some(format!("{what}: {given}, the run's {run}"));
        }
        if self.tokenizer_fnv1a != other.tokenizer_fnv1a {
            return Some("another tokenizer".into());
        }
        if self.manifest_fnv1a != other.manifest_fnv1a {
            return Some("another manifest.json (other files or splits)".into());
        }
        None
    }
}
