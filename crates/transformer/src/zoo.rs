//! The model zoo: one registry over the declarative TOML files in `models/`.
//!
//! A zoo file holds `[templates.NAME]` tables (partial model configs, each may `extends`
//! another template) and `[[models]]` entries. An entry has a `name`, a `description`, the
//! template it `extends`, optionally the documented parameter count `params`, and any config
//! fields that override the template. Tables merge key by key, nested tables recursively.

use std::path::Path;

use serde::Serialize;
use thiserror::Error;
use toml::{Table, Value};

use crate::config::TransformerConfig;

/// The zoo files shipped with strata, compiled into the binary.
pub const BUILTIN_FILES: &[(&str, &str)] = &[
    (
        "models/paper.toml",
        include_str!("../../../models/paper.toml"),
    ),
    (
        "models/wide.toml",
        include_str!("../../../models/wide.toml"),
    ),
    ("models/lpa.toml", include_str!("../../../models/lpa.toml")),
    (
        "models/tiny.toml",
        include_str!("../../../models/tiny.toml"),
    ),
    (
        "models/llama.toml",
        include_str!("../../../models/llama.toml"),
    ),
];

/// A zoo file or lookup that cannot be used.
#[derive(Error, Debug, Clone, PartialEq)]
pub enum ZooError {
    /// The file is not valid TOML or not shaped as a zoo file.
    #[error("{file}: {message}")]
    File {
        /// The file.
        file: String,
        /// What is wrong.
        message: String,
    },
    /// One entry cannot be turned into a valid model config.
    #[error("{file}: model `{model}`: {message}")]
    Entry {
        /// The file.
        file: String,
        /// The entry's name.
        model: String,
        /// What is wrong, naming the field.
        message: String,
    },
    /// No entry of that name.
    #[error("unknown model `{name}`{hint}")]
    Unknown {
        /// The name asked for.
        name: String,
        /// "; did you mean ..." or a pointer to `strata zoo list`.
        hint: String,
    },
}

/// One model of the zoo.
#[derive(Serialize, Clone, Debug, PartialEq)]
pub struct ZooEntry {
    /// Stable name (`s-lowrank-r192`).
    pub name: String,
    /// One line on what it is.
    pub description: String,
    /// The file it comes from.
    pub file: String,
    /// The documented total parameter count, when the source states one.
    pub documented_params: Option<u64>,
    /// The full model configuration.
    pub config: TransformerConfig,
}

/// The registry: every entry of a set of zoo files, in file order.
#[derive(Clone, Debug)]
pub struct Zoo {
    entries: Vec<ZooEntry>,
}

const ENTRY_KEYS: [&str; 4] = ["name", "description", "extends", "params"];

fn merge(base: &mut Table, over: &Table) {
    for (key, value) in over {
        match (base.get_mut(key), value) {
            (Some(Value::Table(b)), Value::Table(o)) => merge(b, o),
            _ => {
                base.insert(key.clone(), value.clone());
            }
        }
    }
}

fn resolve(file: &str, templates: &Table, name: &str, depth: usize) -> Result<Table, ZooError> {
    let err = |message: String| ZooError::File {
        file: file.into(),
        message,
    };
    if depth > 16 {
        return Err(err(format!("template `{name}` extends itself in a cycle")));
    }
    let Some(Value::Table(t)) = templates.get(name) else {
        return Err(err(format!("unknown template `{name}`")));
    };
    let mut t = t.clone();
    match t.remove("extends") {
        Some(Value::String(parent)) => {
            let mut base = resolve(file, templates, &parent, depth + 1)?;
            merge(&mut base, &t);
            Ok(base)
        }
        Some(_) => Err(err(format!(
            "template `{name}`: `extends` must be a string"
        ))),
        None => Ok(t),
    }
}

impl Zoo {
    /// The zoo shipped with strata.
    pub fn builtin() -> Result<Self, ZooError> {
        Self::from_sources(
            BUILTIN_FILES
                .iter()
                .map(|(f, t)| (f.to_string(), t.to_string())),
        )
    }

    /// Parses zoo files given as `(file name, contents)`.
    pub fn from_sources(
        sources: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, ZooError> {
        let mut entries: Vec<ZooEntry> = Vec::new();
        for (file, text) in sources {
            for entry in parse_file(&file, &text)? {
                if let Some(prev) = entries.iter().find(|e| e.name == entry.name) {
                    return Err(ZooError::File {
                        file,
                        message: format!(
                            "model `{}` is already defined in {}",
                            entry.name, prev.file
                        ),
                    });
                }
                entries.push(entry);
            }
        }
        Ok(Self { entries })
    }

    /// Every entry, in file order.
    pub fn entries(&self) -> &[ZooEntry] {
        &self.entries
    }

    /// The entry called `name`; an unknown name lists close names.
    pub fn get(&self, name: &str) -> Result<&ZooEntry, ZooError> {
        if let Some(e) = self.entries.iter().find(|e| e.name == name) {
            return Ok(e);
        }
        let mut scored: Vec<(usize, &str)> = self
            .entries
            .iter()
            .map(|e| (edit_distance(name, &e.name), e.name.as_str()))
            .filter(|(d, n)| *d <= 3 || n.contains(name))
            .collect();
        scored.sort();
        let close: Vec<&str> = scored.iter().take(5).map(|(_, n)| *n).collect();
        let hint = if close.is_empty() {
            " (see `strata zoo list`)".to_string()
        } else {
            format!("; did you mean {}?", close.join(", "))
        };
        Err(ZooError::Unknown {
            name: name.into(),
            hint,
        })
    }
}

fn parse_file(file: &str, text: &str) -> Result<Vec<ZooEntry>, ZooError> {
    let file_err = |message: String| ZooError::File {
        file: file.into(),
        message,
    };
    let doc: Table = toml::from_str(text).map_err(|e| file_err(e.message().to_string()))?;
    for key in doc.keys() {
        if key != "templates" && key != "models" && key != "description" {
            return Err(file_err(format!(
                "unknown top-level key `{key}` (expected templates, models, description)"
            )));
        }
    }
    let templates = match doc.get("templates") {
        Some(Value::Table(t)) => t.clone(),
        Some(_) => return Err(file_err("`templates` must be a table".into())),
        None => Table::new(),
    };
    let models = match doc.get("models") {
        Some(Value::Array(a)) => a.clone(),
        Some(_) => {
            return Err(file_err(
                "`models` must be an array of tables ([[models]])".into(),
            ))
        }
        None => Vec::new(),
    };
    let mut out = Vec::new();
    for (i, model) in models.iter().enumerate() {
        let Value::Table(model) = model else {
            return Err(file_err(format!("models[{i}] is not a table")));
        };
        let name = match model.get("name") {
            Some(Value::String(s)) if !s.is_empty() => s.clone(),
            _ => return Err(file_err(format!("models[{i}] has no `name`"))),
        };
        let entry_err = |message: String| ZooError::Entry {
            file: file.into(),
            model: name.clone(),
            message,
        };
        let mut config = match model.get("extends") {
            Some(Value::String(t)) => resolve(file, &templates, t, 0)?,
            Some(_) => return Err(entry_err("`extends` must be a string".into())),
            None => Table::new(),
        };
        let overrides: Table = model
            .iter()
            .filter(|(k, _)| !ENTRY_KEYS.contains(&k.as_str()))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        merge(&mut config, &overrides);
        let config: TransformerConfig = Value::Table(config)
            .try_into()
            .map_err(|e: toml::de::Error| entry_err(e.message().to_string()))?;
        config.validate().map_err(|e| entry_err(e.to_string()))?;
        let description = match model.get("description") {
            Some(Value::String(s)) => s.clone(),
            Some(_) => return Err(entry_err("`description` must be a string".into())),
            None => String::new(),
        };
        let documented_params = match model.get("params") {
            Some(Value::Integer(n)) if *n > 0 => Some(*n as u64),
            Some(_) => return Err(entry_err("`params` must be a positive integer".into())),
            None => None,
        };
        out.push(ZooEntry {
            name,
            description,
            file: file.into(),
            documented_params,
            config,
        });
    }
    Ok(out)
}

/// A model given either as a zoo name or as a path to a config file (`.json`, or `.toml` with
/// the config's fields at top level).
pub fn resolve_model(zoo: &Zoo, name_or_path: &str) -> Result<ZooEntry, ZooError> {
    let path = Path::new(name_or_path);
    let is_file =
        name_or_path.ends_with(".json") || name_or_path.ends_with(".toml") || path.exists();
    if !is_file {
        return zoo.get(name_or_path).cloned();
    }
    let file = name_or_path.to_string();
    let text = std::fs::read_to_string(path).map_err(|e| ZooError::File {
        file: file.clone(),
        message: e.to_string(),
    })?;
    let config: TransformerConfig = if name_or_path.ends_with(".json") {
        serde_json::from_str(&text).map_err(|e| ZooError::File {
            file: file.clone(),
            message: e.to_string(),
        })?
    } else {
        toml::from_str(&text).map_err(|e| ZooError::File {
            file: file.clone(),
            message: e.message().to_string(),
        })?
    };
    config.validate().map_err(|e| ZooError::File {
        file: file.clone(),
        message: e.to_string(),
    })?;
    let name = path
        .file_stem()
        .map_or(file.clone(), |s| s.to_string_lossy().into_owned());
    Ok(ZooEntry {
        name,
        description: format!("model config from {file}"),
        file,
        documented_params: None,
        config,
    })
}

/// Levenshtein distance between two names.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            cur[j + 1] = (prev[j] + usize::from(ca != *cb))
                .min(prev[j + 1] + 1)
                .min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}
