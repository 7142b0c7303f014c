//! Output folders: refused when something is there (unless forced), written beside their place
//! and moved into it once complete, so a failed or interrupted write leaves what was there.

use std::path::{Path, PathBuf};

use crate::error::InteropError;

/// Refuses an output path that holds something, unless `force`.
pub fn check_out(out: &Path, force: bool) -> Result<(), InteropError> {
    let occupied = match std::fs::read_dir(out) {
        Ok(mut entries) => entries.next().is_some(),
        Err(_) => out.exists(),
    };
    if occupied && !force {
        return Err(InteropError::Exists(out.to_path_buf()));
    }
    Ok(())
}

/// The sibling of `out` named `prefix` + its name.
fn sibling(out: &Path, prefix: &str) -> Result<PathBuf, InteropError> {
    let name = out
        .file_name()
        .ok_or_else(|| InteropError::Invalid(format!("{} is not a folder name", out.display())))?;
    let parent = match out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    std::fs::create_dir_all(&parent).map_err(|e| InteropError::io(&parent, e))?;
    Ok(parent.join(format!("{prefix}{}", name.to_string_lossy())))
}

/// Has `write` fill a new folder (a path that does not exist yet), then puts it at `out`,
/// replacing what is there when `force` (checked again: [`check_out`]).
pub fn replace<E: Into<InteropError>>(
    out: &Path,
    force: bool,
    write: impl FnOnce(&Path) -> Result<(), E>,
) -> Result<(), InteropError> {
    check_out(out, force)?;
    let staging = sibling(out, ".new-")?;
    if staging.exists() {
        std::fs::remove_dir_all(&staging).map_err(|e| InteropError::io(&staging, e))?;
    }
    if let Err(e) = write(&staging) {
        let _ = std::fs::remove_dir_all(&staging);
        return Err(e.into());
    }
    if out.exists() {
        let removed = if out.is_dir() {
            std::fs::remove_dir_all(out)
        } else {
            std::fs::remove_file(out)
        };
        removed.map_err(|e| InteropError::io(out, e))?;
    }
    std::fs::rename(&staging, out).map_err(|e| InteropError::io(out, e))
}
