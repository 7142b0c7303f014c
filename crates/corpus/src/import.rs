//! `data import`: a data folder over existing raw uint16 token files, with their size and
//! checksum recorded.

use std::path::{Path, PathBuf};

use super::manifest::{
    claim_output, write_manifest, FileCheck, FileFormat, Manifest, Split, MANIFEST_FORMAT,
    MANIFEST_VERSION,
};
use crate::error::DataError;
use crate::shard::TokenFile;

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
) -> Result<Manifest, DataError> {
    if row_len.is_some_and(|r| r < 2) {
        return Err(DataError::Setting {
            setting: "row_len",
            problem: "must be at least 2".into(),
        });
    }
    if vocab_size == 0 || vocab_size > 1 << 16 {
        return Err(DataError::Setting {
            setting: "vocab_size",
            problem: format!("{vocab_size} must lie in 1..=65536 for uint16 tokens"),
        });
    }
    let split = |files: &[PathBuf], what: &'static str| -> Result<Split, DataError> {
        if files.is_empty() {
            return Err(DataError::Setting {
                setting: what,
                problem: "no files given".into(),
            });
        }
        let mut tokens = 0;
        let (mut names, mut checks) = (Vec::new(), Vec::new());
        for f in files {
            let abs = std::fs::canonicalize(f).map_err(|e| DataError::io(f, e))?;
            let file = TokenFile::open_raw_u16(&abs)?;
            if let Some(r) = row_len.filter(|r| file.len() % r != 0) {
                return Err(DataError::Input {
                    path: abs,
                    problem: format!(": {} tokens are not whole rows of {r}", file.len()),
                });
            }
            if let Some(i) = (0..file.len()).find(|&i| file.get(i) as usize >= vocab_size) {
                return Err(DataError::TokenOutOfRange {
                    id: file.get(i),
                    vocab_size,
                });
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
