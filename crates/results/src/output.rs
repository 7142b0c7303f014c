//! Writing a chart, page or table to the path a user named: the kind by its extension, the file
//! written whole or not at all (a temporary file renamed over it).

use std::path::Path;

use storage::write_atomic;

use crate::ResultsError;

/// What a chart is written as.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChartFormat {
    /// The SVG document.
    Svg,
    /// The SVG drawn into a PNG image with the system's fonts.
    Png,
}

impl ChartFormat {
    /// The format `path`'s extension names (`.svg` or `.png`).
    pub fn of(path: &Path) -> Result<Self, ResultsError> {
        match extension(path).as_deref() {
            Some("svg") => Ok(Self::Svg),
            Some("png") => Ok(Self::Png),
            _ => Err(ResultsError::Output {
                path: path.to_path_buf(),
                problem: "a chart is written as .svg or .png".into(),
            }),
        }
    }
}

/// Checks that `path` ends in `.{ext}` and its folder exists, before any work is done.
pub fn check_output(path: &Path, exts: &[&str]) -> Result<(), ResultsError> {
    let bad = |problem: String| ResultsError::Output {
        path: path.to_path_buf(),
        problem,
    };
    let ext = extension(path).unwrap_or_default();
    if !exts.contains(&ext.as_str()) {
        return Err(bad(format!("expected a .{} file", exts.join(" or ."))));
    }
    if path.is_dir() {
        return Err(bad("is a folder".into()));
    }
    let parent = path.parent().filter(|p| !p.as_os_str().is_empty());
    if parent.is_some_and(|p| !p.is_dir()) {
        return Err(bad("its folder does not exist".into()));
    }
    Ok(())
}

/// Writes `bytes` to `path` atomically.
pub fn write_output(path: &Path, bytes: &[u8]) -> Result<(), ResultsError> {
    write_atomic(path, bytes).map_err(|e| ResultsError::Output {
        path: path.to_path_buf(),
        problem: format!("cannot write: {e}"),
    })
}

/// Writes a chart's SVG to `path` as its extension says.
pub fn write_chart(path: &Path, svg: &str) -> Result<(), ResultsError> {
    match ChartFormat::of(path)? {
        ChartFormat::Svg => write_output(path, svg.as_bytes()),
        ChartFormat::Png => write_output(path, &crate::png::png(svg)?),
    }
}

fn extension(path: &Path) -> Option<String> {
    path.extension()
        .map(|e| e.to_string_lossy().to_ascii_lowercase())
}
