//! The one error type of the results commands: each one line, naming the run or file.

use std::path::PathBuf;

use thiserror::Error;

/// Runs that cannot be read, compared or fitted, or an output that cannot be written.
#[derive(Error, Debug)]
pub enum ResultsError {
    /// A file-system operation failed.
    #[error("{}: {error}", path.display())]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// The OS error.
        error: std::io::Error,
    },
    /// A folder that is not a strata run (no readable `config.json`).
    #[error("{}: not a strata run folder: {problem}", path.display())]
    NotARun {
        /// The folder.
        path: PathBuf,
        /// What is missing or wrong.
        problem: String,
    },
    /// A `metrics.jsonl` line that is not a record (truncated or corrupt).
    #[error("{}: line {line} is not a metrics record (truncated or corrupt): {problem}", path.display())]
    BadMetrics {
        /// The file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// The parse error.
        problem: String,
    },
    /// Runs whose records hold nothing for the chosen axes or the fit.
    #[error("{0}")]
    NoPoints(String),
    /// Runs that cannot be compared (validation losses over different tokenizers).
    #[error("{0}")]
    Incomparable(String),
    /// Runs that cannot support a fit; says why.
    #[error("cannot fit {family}: {problem}")]
    Fit {
        /// The family of runs.
        family: String,
        /// Why not.
        problem: String,
    },
    /// An output path that cannot be used.
    #[error("{}: {problem}", path.display())]
    Output {
        /// The path.
        path: PathBuf,
        /// Why not.
        problem: String,
    },
    /// The chart could not be drawn.
    #[error("drawing the chart: {0}")]
    Draw(String),
}

impl ResultsError {
    /// An I/O failure on `path`.
    pub fn io(path: &std::path::Path, error: std::io::Error) -> Self {
        Self::Io {
            path: path.to_path_buf(),
            error,
        }
    }
}
