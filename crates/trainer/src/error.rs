//! Typed errors of the data pipeline.

use std::path::{Path, PathBuf};

use thiserror::Error;

/// Data that cannot be read or written.
#[derive(Error, Debug)]
pub enum DataError {
    /// A file-system operation failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
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
    /// An invalid request.
    #[error("{0}")]
    Invalid(String),
}

impl DataError {
    pub(crate) fn io(path: &Path, source: std::io::Error) -> Self {
        DataError::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}

/// A training, evaluation or checkpoint request that cannot be carried out.
#[derive(Error, Debug)]
pub enum TrainError {
    /// Reading or preparing data failed.
    #[error(transparent)]
    Data(#[from] DataError),
    /// The model refused its configuration or input.
    #[error(transparent)]
    Model(#[from] transformer::ModelError),
    /// Invalid settings (budgets, sequence length, output folder, ...).
    #[error("{0}")]
    Config(String),
    /// A checkpoint that cannot be used; `problem` says why.
    #[error("checkpoint {}: {problem}", path.display())]
    Checkpoint {
        /// The checkpoint folder or file.
        path: PathBuf,
        /// What is wrong.
        problem: String,
    },
    /// The tokenizer failed or does not fit the data or model.
    #[error("tokenizer: {0}")]
    Tokenizer(String),
    /// Another device of a data-parallel run failed in this step (its own error says why).
    #[error("another device of the data-parallel run failed at step {step}")]
    PeerFailed {
        /// The 1-based step.
        step: u64,
    },
}

impl TrainError {
    pub(crate) fn checkpoint(path: &Path, problem: impl std::fmt::Display) -> Self {
        TrainError::Checkpoint {
            path: path.to_path_buf(),
            problem: problem.to_string(),
        }
    }
}
