//! The data crate's error: a corpus, shard, manifest or tokenizer that cannot be read, written
//! or used. Each message names the file or the setting.

use std::path::{Path, PathBuf};

use thiserror::Error;

/// Data that cannot be read or written.
#[derive(Error, Debug)]
pub enum DataError {
    /// A file-system operation failed. (The OS error is part of the message, not a chained
    /// source, so that a report of the whole chain says it once.)
    #[error("{}: {error}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        error: std::io::Error,
    },
    /// A shard that is not valid; `problem` says why and how to regenerate it.
    #[error("{}: {problem}", path.display())]
    BadShard {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        problem: String,
    },
    /// A token id outside the vocabulary.
    #[error("token id {id} is outside the vocabulary (vocab_size {vocab_size})")]
    TokenOutOfRange {
        /// The id.
        id: u32,
        /// The vocabulary size.
        vocab_size: usize,
    },
    /// Less data than one training window.
    #[error("{tokens} tokens are fewer than one window of {needed}")]
    TooFewTokens {
        /// Tokens available.
        tokens: usize,
        /// Tokens one window needs.
        needed: usize,
    },
    /// The tokenizer failed or does not fit the data or model.
    #[error("tokenizer: {0}")]
    Tokenizer(String),
    /// A data setting with a value it cannot take (`setting` names it: `vocab_size`, `val_every`, ...).
    #[error("{setting}: {problem}")]
    Setting {
        /// The setting as the data commands name it.
        setting: &'static str,
        /// What is wrong, with the value.
        problem: String,
    },
    /// An input file or folder that cannot be used (`problem` says why; it may start with a
    /// line number).
    #[error("{}{problem}", path.display())]
    Input {
        /// The file or folder.
        path: PathBuf,
        /// What is wrong, starting with `: ` or `:LINE: `.
        problem: String,
    },
    /// A data folder that does not exist or holds no prepared data.
    #[error("{} {problem}; prepare it with `strata data prepare`", dir.display())]
    NoData {
        /// The folder.
        dir: PathBuf,
        /// "does not exist" or "has no manifest.json".
        problem: &'static str,
    },
    /// A `manifest.json` that cannot be used.
    #[error("{}: {problem}", path.display())]
    BadManifest {
        /// The manifest (or its folder).
        path: PathBuf,
        /// What is wrong.
        problem: String,
    },
    /// Data of independent rows used with another sequence length.
    #[error("{} holds rows of {row} tokens: train and evaluate with sequence length {}", dir.display(), row.saturating_sub(1))]
    RowLength {
        /// The data folder.
        dir: PathBuf,
        /// Tokens per row.
        row: usize,
    },
    /// A data folder that holds prepared data already.
    #[error("{} already holds prepared data (manifest.json); pass `force` to replace it", dir.display())]
    DataExists {
        /// The folder.
        dir: PathBuf,
    },
    /// An invalid request.
    #[error("{0}")]
    Invalid(String),
    /// A file written or read through the `storage` crate.
    #[error(transparent)]
    Storage(#[from] storage::StorageError),
}

impl DataError {
    /// A failed file-system operation on `path`.
    pub fn io(path: &Path, source: std::io::Error) -> Self {
        DataError::Io {
            path: path.to_path_buf(),
            error: source,
        }
    }
}
