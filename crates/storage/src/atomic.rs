//! Atomic file writes: a temporary file beside the target, fsynced, renamed into place, and the
//! folder fsynced, so a file that exists is complete.

use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::StorageError;

/// The temporary file next to `path` used for atomic writes.
pub fn tmp_path(path: &Path) -> PathBuf {
    let mut name = path
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_default();
    name.push(".tmp");
    path.with_file_name(name)
}

/// Fsyncs the folder holding `path` so that a rename survives a crash (best effort).
pub fn sync_parent(path: &Path) {
    if let Some(dir) = path.parent() {
        if let Ok(d) = File::open(if dir.as_os_str().is_empty() {
            Path::new(".")
        } else {
            dir
        }) {
            let _ = d.sync_all();
        }
    }
}

/// Writes `bytes` to `path` atomically: temp file, fsync, rename.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), StorageError> {
    let tmp = tmp_path(path);
    let mut f = File::create(&tmp).map_err(|e| StorageError::io(&tmp, e))?;
    f.write_all(bytes).map_err(|e| StorageError::io(&tmp, e))?;
    f.sync_all().map_err(|e| StorageError::io(&tmp, e))?;
    drop(f);
    fs::rename(&tmp, path).map_err(|e| StorageError::io(path, e))?;
    sync_parent(path);
    Ok(())
}
