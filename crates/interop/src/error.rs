//! Errors of import, conversion and export: each one line, naming the file or the tensor.

use std::path::{Path, PathBuf};

use thiserror::Error;

/// An import, conversion or export that cannot be carried out.
#[derive(Error, Debug)]
pub enum InteropError {
    /// A file could not be read or written.
    #[error("{}: {error}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        error: std::io::Error,
    },
    /// A file that is not what it should be (bad JSON, not safetensors, ...).
    #[error("{}: {problem}", path.display())]
    BadFile {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        problem: String,
    },
    /// A Hugging Face config strata cannot represent.
    #[error("{}: {problem}", path.display())]
    Unsupported {
        /// The config file.
        path: PathBuf,
        /// What is not supported.
        problem: String,
    },
    /// A tensor that is missing, of the wrong shape or type, or left over.
    #[error("tensor {name}: {problem}")]
    Tensor {
        /// The tensor's name in its file.
        name: String,
        /// What is wrong.
        problem: String,
    },
    /// A model strata cannot write in any Hugging Face family.
    #[error("the model cannot be exported: {0}")]
    NotExportable(String),
    /// A conversion request that does not fit the model.
    #[error("{0}")]
    Invalid(String),
    /// The output folder already holds something.
    #[error("{} already exists (give `force` to replace it)", .0.display())]
    Exists(PathBuf),
    /// A strata checkpoint or tokenizer file that cannot be read or written.
    #[error(transparent)]
    Storage(#[from] storage::StorageError),
    /// A model that cannot be built.
    #[error(transparent)]
    Model(#[from] transformer::ModelError),
    /// A structured layer that cannot be built from a matrix.
    #[error("{place}: {source}")]
    Layer {
        /// `blocks.L.ffn.fc1`, ...
        place: String,
        /// Why.
        source: structured_linear::LayerError,
    },
}

impl InteropError {
    pub(crate) fn io(path: &Path, error: std::io::Error) -> Self {
        InteropError::Io {
            path: path.to_path_buf(),
            error,
        }
    }

    pub(crate) fn bad_file(path: &Path, problem: impl std::fmt::Display) -> Self {
        InteropError::BadFile {
            path: path.to_path_buf(),
            problem: problem.to_string(),
        }
    }

    pub(crate) fn unsupported(path: &Path, problem: impl std::fmt::Display) -> Self {
        InteropError::Unsupported {
            path: path.to_path_buf(),
            problem: problem.to_string(),
        }
    }

    pub(crate) fn tensor(name: &str, problem: impl std::fmt::Display) -> Self {
        InteropError::Tensor {
            name: name.to_string(),
            problem: problem.to_string(),
        }
    }
}
