//! The CUDA driver stand-in's counts (launches, by kernel too, copies, synchronisations) between
//! two points of a benchmark, when `--backend cuda` runs on the stand-in (crates/cuda-sim) rather
//! than a real driver: what one training step or one decoded token asks of the driver. Counts are
//! exact, unlike times, so they show host work that a GPU's speed cannot hide.

use std::collections::BTreeMap;

use serde_json::{json, Map, Value};

/// The counters reported per unit of work.
const KEYS: [&str; 8] = [
    "launches",
    "htod_copies",
    "htod_bytes",
    "dtoh_copies",
    "dtoh_bytes",
    "syncs",
    "fence_waits",
    "kernels_compiled",
];

/// The stand-in's counts so far, `None` unless this process runs on it.
pub fn now() -> Option<Value> {
    #[cfg(target_os = "linux")]
    {
        gpu_setup::stand_in_counts().and_then(|text| serde_json::from_str(&text).ok())
    }
    #[cfg(not(target_os = "linux"))]
    None
}

/// Counts summed over several units of work (steps, phases of steps, tokens).
#[derive(Default, Debug)]
pub struct Tally {
    sums: BTreeMap<&'static str, u64>,
    by_kernel: BTreeMap<String, u64>,
    units: u64,
}

impl Tally {
    /// Adds one unit: the counts from `before` to `after` (two [`now`]s).
    pub fn add(&mut self, before: &Value, after: &Value) {
        self.add_units(before, after, 1);
    }

    /// Whether nothing was added (not on the stand-in).
    pub fn is_empty(&self) -> bool {
        self.units == 0
    }

    /// Adds `units` equal units of work done from `before` to `after` (several tokens).
    pub fn add_units(&mut self, before: &Value, after: &Value, units: u64) {
        let get = |v: &Value, k: &str| v[k].as_u64().unwrap_or(0);
        for key in KEYS {
            *self.sums.entry(key).or_default() += get(after, key).saturating_sub(get(before, key));
        }
        if let Some(kernels) = after["launches_by_kernel"].as_object() {
            for (name, n) in kernels {
                let was = before["launches_by_kernel"][name].as_u64().unwrap_or(0);
                let d = n.as_u64().unwrap_or(0).saturating_sub(was);
                if d > 0 {
                    *self.by_kernel.entry(name.clone()).or_default() += d;
                }
            }
        }
        self.units += units;
    }

    /// The counts per unit (means: equal units give whole numbers), with `launches_by_kernel`
    /// as `[name, launches]` pairs, most launched first.
    pub fn per_unit(&self) -> Value {
        let units = self.units.max(1) as f64;
        let mean = |n: u64| super::round1(n as f64 / units);
        let mut out = Map::new();
        for (key, n) in &self.sums {
            out.insert(key.to_string(), json!(mean(*n)));
        }
        let mut kernels: Vec<_> = self.by_kernel.iter().collect();
        kernels.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
        let kernels: Vec<Value> = kernels
            .into_iter()
            .map(|(name, n)| json!([name, mean(*n)]))
            .collect();
        out.insert("launches_by_kernel".into(), Value::Array(kernels));
        Value::Object(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tally_averages_the_differences_of_its_units() {
        // Alphabetical order would put `a_matmul` first: the order is by launches.
        let at = |launches: u64, fused: u64| {
            json!({"launches": launches, "htod_bytes": 10 * launches,
                   "launches_by_kernel": {"elemwise_fuse": fused, "a_matmul": launches - fused}})
        };
        let mut tally = Tally::default();
        tally.add(&at(100, 60), &at(130, 80));
        tally.add(&at(130, 80), &at(170, 100));
        let per = tally.per_unit();
        assert_eq!(per["launches"], 35.0);
        assert_eq!(per["htod_bytes"], 350.0);
        assert_eq!(per["dtoh_copies"], 0.0);
        assert_eq!(
            per["launches_by_kernel"],
            json!([["elemwise_fuse", 20.0], ["a_matmul", 15.0]])
        );
    }
}
