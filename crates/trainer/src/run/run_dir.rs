//! The run folder (its layout: `storage::run`): claiming it for a fresh run, finding where a run resumes, and
//! reading the run's saved settings.

use std::path::{Path, PathBuf};

use crate::error::TrainError;
use crate::run::checkpoint;
use corpus::DataError;
use storage::run::RunDir;
use transformer::TransformerConfig;

use crate::config::TrainConfig;

/// The settings of the run in folder `out` (its `config.json`).
pub fn read_run_config(out: &Path) -> Result<TrainConfig, TrainError> {
    let dir = RunDir::new(out);
    let text = match std::fs::read_to_string(dir.config()) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(TrainError::NothingToResume {
                dir: out.to_path_buf(),
                why: "holds no run".into(),
            })
        }
        Err(e) => {
            return Err(TrainError::BadRunConfig {
                path: dir.config(),
                problem: e.to_string(),
            })
        }
    };
    serde_json::from_str(&text).map_err(|e| TrainError::BadRunConfig {
        path: dir.config(),
        problem: e.to_string(),
    })
}

/// The newest checkpoint of the run in `dir`; none when the run was stopped before its first
/// checkpoint (a resumed run starts over, from its saved settings).
pub(crate) fn latest_checkpoint(dir: &RunDir) -> Option<PathBuf> {
    checkpoint::list(&dir.checkpoints()).pop().map(|(_, p)| p)
}

/// Refuses to resume the run in `out`, whose saved settings are `saved`, as model `name` when
/// the run trains another model (a guard for front ends, whose user names the model again).
pub fn check_run_model(
    out: &Path,
    saved: &TrainConfig,
    name: &str,
    model: &TransformerConfig,
) -> Result<(), TrainError> {
    if saved.model != *model {
        return Err(TrainError::OtherModel {
            dir: out.to_path_buf(),
            run_model: saved.model_name.clone(),
            asked: name.to_string(),
        });
    }
    Ok(())
}

/// A fresh run: refuses to replace another run unless forced; creates the folder.
pub(crate) fn claim_fresh(dir: &RunDir, force: bool) -> Result<(), TrainError> {
    if dir.config().exists() {
        if !force {
            return Err(TrainError::RunExists {
                dir: dir.root().to_path_buf(),
            });
        }
        let _ = std::fs::remove_dir_all(dir.checkpoints());
        for f in [dir.metrics(), dir.plot(), dir.config()] {
            let _ = std::fs::remove_file(f);
        }
    }
    std::fs::create_dir_all(dir.root()).map_err(|e| DataError::io(dir.root(), e))?;
    Ok(())
}
