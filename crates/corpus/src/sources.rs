//! Where documents come from: text files, folders of them (recursively, sorted) and JSON lines,
//! streamed one document at a time, and the whole-document validation split.

use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

use crate::error::DataError;

/// Where one document comes from.
#[derive(Clone, Debug)]
pub(super) enum Source {
    /// A whole text file.
    Text(PathBuf),
    /// One document per line, in field `text_field`.
    JsonLines(PathBuf),
}

/// Expands the inputs to files in a deterministic order.
pub(super) fn list_sources(inputs: &[PathBuf]) -> Result<Vec<Source>, DataError> {
    if inputs.is_empty() {
        return Err(DataError::Setting {
            setting: "inputs",
            problem: "no input given".into(),
        });
    }
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) -> Result<(), DataError> {
        let mut entries = std::fs::read_dir(dir)
            .map_err(|e| DataError::io(dir, e))?
            .map(|e| e.map(|e| e.path()).map_err(|e| DataError::io(dir, e)))
            .collect::<Result<Vec<_>, _>>()?;
        entries.sort();
        for p in entries {
            let hidden = p
                .file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with('.'));
            if hidden {
                continue;
            }
            if p.is_dir() {
                walk(&p, out)?;
            } else {
                out.push(p);
            }
        }
        Ok(())
    }
    let mut files = Vec::new();
    for input in inputs {
        if input.is_dir() {
            let before = files.len();
            walk(input, &mut files)?;
            if files.len() == before {
                return Err(DataError::Input {
                    path: input.clone(),
                    problem: ": the input folder is empty".into(),
                });
            }
        } else if input.is_file() {
            files.push(input.clone());
        } else {
            return Err(DataError::Input {
                path: input.clone(),
                problem: ": the input does not exist".into(),
            });
        }
    }
    Ok(files
        .into_iter()
        .map(|p| {
            if p.extension().and_then(|e| e.to_str()) == Some("jsonl") {
                Source::JsonLines(p)
            } else {
                Source::Text(p)
            }
        })
        .collect())
}

pub(super) fn utf8(path: &Path, line: Option<usize>, bytes: Vec<u8>) -> Result<String, DataError> {
    String::from_utf8(bytes).map_err(|e| {
        let at = line.map(|l| format!(":{l}")).unwrap_or_default();
        DataError::Input {
            path: path.to_path_buf(),
            problem: format!(
                "{at}: not UTF-8 text (invalid byte at offset {})",
                e.utf8_error().valid_up_to()
            ),
        }
    })
}

/// Visits every non-empty document in order with its index; stops at the first error.
pub(super) fn for_each_document(
    sources: &[Source],
    text_field: &str,
    mut visit: impl FnMut(usize, String) -> Result<(), DataError>,
) -> Result<usize, DataError> {
    let mut index = 0;
    let mut emit = |text: String,
                    visit: &mut dyn FnMut(usize, String) -> Result<(), DataError>|
     -> Result<(), DataError> {
        if text.trim().is_empty() {
            return Ok(());
        }
        visit(index, text)?;
        index += 1;
        Ok(())
    };
    for source in sources {
        match source {
            Source::Text(path) => {
                let mut bytes = Vec::new();
                File::open(path)
                    .and_then(|mut f| f.read_to_end(&mut bytes))
                    .map_err(|e| DataError::io(path, e))?;
                emit(utf8(path, None, bytes)?, &mut visit)?;
            }
            Source::JsonLines(path) => {
                let mut reader =
                    BufReader::new(File::open(path).map_err(|e| DataError::io(path, e))?);
                let mut line = Vec::new();
                let mut number = 0;
                loop {
                    line.clear();
                    number += 1;
                    let n = reader
                        .read_until(b'\n', &mut line)
                        .map_err(|e| DataError::io(path, e))?;
                    if n == 0 {
                        break;
                    }
                    let text = utf8(path, Some(number), std::mem::take(&mut line))?;
                    if text.trim().is_empty() {
                        continue;
                    }
                    let value: serde_json::Value =
                        serde_json::from_str(&text).map_err(|e| DataError::Input {
                            path: path.clone(),
                            problem: format!(":{number}: not JSON: {e}"),
                        })?;
                    let doc = value
                        .get(text_field)
                        .and_then(|v| v.as_str())
                        .ok_or_else(|| DataError::Input {
                            path: path.clone(),
                            problem: format!(":{number}: no string field \"{text_field}\""),
                        })?;
                    emit(doc.to_string(), &mut visit)?;
                }
            }
        }
    }
    Ok(index)
}

pub(super) fn is_validation(index: usize, val_every: usize) -> bool {
    index % val_every == val_every - 1
}
