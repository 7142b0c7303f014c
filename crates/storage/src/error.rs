//! The one error type of strata's files: each one line, naming the file.

use std::path::{Path, PathBuf};

use thiserror::Error;

/// A file or folder that cannot be read, written or used.
#[derive(Error, Debug)]
pub enum StorageError {
    /// A file-system operation failed. (The OS error is part of the message, not a chained
    /// source, so that a report of the whole chain says it once.)
    #[error("{}: {error}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        error: std::io::Error,
    },
    /// A checkpoint that cannot be used; `problem` says why.
    #[error("checkpoint {}: {problem}", path.display())]
    Checkpoint {
        /// The checkpoint folder or file.
        path: PathBuf,
        /// What is wrong.
        problem: String,
    },
    /// A run's `config.json` that cannot be read as one.
    #[error("{}: not a strata run config: {problem}", path.display())]
    RunConfig {
        /// The file.
        path: PathBuf,
        /// The parse error.
        problem: String,
    },
    /// A tokenizer file that cannot be loaded or lacks a token.
    #[error("tokenizer: {0}")]
    Tokenizer(String),
}

impl StorageError {
    /// A failed file-system operation on `path`.
    pub fn io(path: &Path, error: std::io::Error) -> Self {
        StorageError::Io {
            path: path.to_path_buf(),
            error,
        }
    }

    /// A checkpoint (folder or file) that cannot be used.
    pub fn checkpoint(path: &Path, problem: impl std::fmt::Display) -> Self {
        StorageError::Checkpoint {
            path: path.to_path_buf(),
            problem: problem.to_string(),
        }
    }
}
