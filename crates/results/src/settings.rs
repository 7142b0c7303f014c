//! Runs' settings side by side: each run's `config.json` flattened to dotted keys
//! (`model.ffn.fc1.rank`), and the keys whose values differ between runs.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::Run;

/// One setting's value in each run (`None` where a run's config lacks it).
#[derive(Clone, Debug, PartialEq)]
pub struct Setting {
    /// Dotted key.
    pub key: String,
    /// The value in each run, as compact JSON.
    pub values: Vec<Option<String>>,
}

impl Setting {
    /// Whether the runs disagree on it.
    pub fn differs(&self) -> bool {
        self.values.windows(2).any(|w| w[0] != w[1])
    }
}

/// Every setting of `runs`, those that differ first, each group in key order.
pub fn settings(runs: &[Run]) -> Vec<Setting> {
    let flat: Vec<BTreeMap<String, String>> = runs
        .iter()
        .map(|r| {
            let mut m = BTreeMap::new();
            flatten("", &r.config, &mut m);
            m
        })
        .collect();
    let mut keys: Vec<&String> = flat.iter().flat_map(|m| m.keys()).collect();
    keys.sort();
    keys.dedup();
    let mut all: Vec<Setting> = keys
        .into_iter()
        .map(|k| Setting {
            key: k.clone(),
            values: flat.iter().map(|m| m.get(k).cloned()).collect(),
        })
        .collect();
    all.sort_by_key(|s| !s.differs());
    all
}

/// `value`'s leaves under dotted keys; arrays are leaves.
fn flatten(prefix: &str, value: &Value, out: &mut BTreeMap<String, String>) {
    match value {
        Value::Object(map) => {
            for (k, v) in map {
                let key = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                flatten(&key, v, out);
            }
        }
        Value::Null => {}
        Value::String(s) => {
            out.insert(prefix.to_string(), s.clone());
        }
        other => {
            out.insert(prefix.to_string(), other.to_string());
        }
    }
}
