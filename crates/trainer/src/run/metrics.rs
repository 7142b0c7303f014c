//! The run's records: `metrics.jsonl`, one JSON object per logged step (the run's `loss.svg` is
//! drawn from them by the results crate).

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::error::TrainError;
use corpus::DataError;
use storage::write_atomic;

pub use storage::metrics::StepRecord;

/// Appends records to `metrics.jsonl`.
#[derive(Debug)]
pub struct MetricsLog {
    path: PathBuf,
    file: File,
    records: Vec<StepRecord>,
}

impl MetricsLog {
    /// Opens the log of a run; when resuming from `step`, records past it (written after the
    /// checkpoint) are dropped first, atomically, so the log continues without duplicates.
    pub fn open(path: &Path, resume_from: Option<u64>) -> Result<Self, TrainError> {
        let mut records = Vec::new();
        if let Some(step) = resume_from {
            if let Ok(text) = std::fs::read_to_string(path) {
                records = text
                    .lines()
                    .filter_map(|l| serde_json::from_str::<StepRecord>(l).ok())
                    .filter(|r| r.step <= step)
                    .collect();
            }
            let mut text = String::new();
            for r in &records {
                text.push_str(&serde_json::to_string(r).expect("plain record"));
                text.push('\n');
            }
            write_atomic(path, text.as_bytes())?;
        }
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .truncate(false)
            .open(path)
            .map_err(|e| DataError::io(path, e))?;
        Ok(Self {
            path: path.to_path_buf(),
            file,
            records,
        })
    }

    /// Appends one record (one line, flushed).
    pub fn append(&mut self, record: &StepRecord) -> Result<(), TrainError> {
        let mut line = serde_json::to_string(record).expect("plain record");
        line.push('\n');
        self.file
            .write_all(line.as_bytes())
            .and_then(|_| self.file.flush())
            .map_err(|e| DataError::io(&self.path, e))?;
        self.records.push(record.clone());
        Ok(())
    }

    /// Every record of the run so far.
    pub fn records(&self) -> &[StepRecord] {
        &self.records
    }
}
