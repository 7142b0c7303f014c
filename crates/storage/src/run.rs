//! A run folder's layout (`config.json`, `metrics.jsonl`, `loss.svg`, `checkpoints/step-*/`),
//! finding the run a checkpoint belongs to, and the data folder a run recorded. The settings
//! themselves (`config.json`'s schema) are the trainer's.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::StorageError;

/// Files of a run folder.
pub struct RunDir(PathBuf);

impl RunDir {
    /// The run folder at `root`.
    pub fn new(root: &Path) -> Self {
        Self(root.to_path_buf())
    }
    /// `config.json`.
    pub fn config(&self) -> PathBuf {
        self.0.join("config.json")
    }
    /// `metrics.jsonl`.
    pub fn metrics(&self) -> PathBuf {
        self.0.join("metrics.jsonl")
    }
    /// `loss.svg`.
    pub fn plot(&self) -> PathBuf {
        self.0.join("loss.svg")
    }
    /// `checkpoints/`.
    pub fn checkpoints(&self) -> PathBuf {
        self.0.join("checkpoints")
    }
    /// The folder itself.
    pub fn root(&self) -> &Path {
        &self.0
    }
}

/// The run folder `path` is or whose `checkpoints/` holds it (a checkpoint of a run); none for
/// a checkpoint outside a run (an import or a conversion).
pub fn run_folder_of(path: &Path) -> Option<PathBuf> {
    [Some(path), path.parent().and_then(Path::parent)]
        .into_iter()
        .flatten()
        .find(|p| RunDir::new(p).config().is_file())
        .map(Path::to_path_buf)
}

/// The data folder the run in `run` trained on, as its `config.json` records it.
pub fn recorded_data(run: &Path) -> Result<PathBuf, StorageError> {
    #[derive(Deserialize)]
    struct DataOnly {
        data: PathBuf,
    }
    let path = RunDir::new(run).config();
    let text = std::fs::read_to_string(&path).map_err(|e| StorageError::io(&path, e))?;
    serde_json::from_str::<DataOnly>(&text)
        .map(|c| c.data)
        .map_err(|e| StorageError::RunConfig {
            path,
            problem: e.to_string(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_checkpoint_finds_its_run_and_the_run_its_data() {
        let root = std::env::temp_dir().join(format!("strata-run-dir-{}", std::process::id()));
        let ckpt = root.join("checkpoints").join("step-4");
        std::fs::create_dir_all(&ckpt).unwrap();
        assert_eq!(run_folder_of(&ckpt), None);
        std::fs::write(root.join("config.json"), r#"{"data": "/d/x", "seed": 1}"#).unwrap();
        assert_eq!(run_folder_of(&ckpt), Some(root.clone()));
        assert_eq!(run_folder_of(&root), Some(root.clone()));
        assert_eq!(recorded_data(&root).unwrap(), PathBuf::from("/d/x"));
        std::fs::write(root.join("config.json"), r#"{"seed": 1}"#).unwrap();
        let err = recorded_data(&root).unwrap_err().to_string();
        assert!(
            err.contains("config.json: not a strata run config: missing field `data`"),
            "{err}"
        );
        std::fs::remove_dir_all(&root).unwrap();
    }
}
