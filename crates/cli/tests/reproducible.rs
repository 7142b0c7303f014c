//! Bit-reproducible CPU training, end to end: the same `strata train` twice, in two processes,
//! with two processes spinning beside it, gives the same `metrics.jsonl` (timing fields aside)
//! and the same checkpoint files byte for byte, on both CPU backends, with one, two and three
//! replicas (three make the gradients' sum a tree whose order once followed a hash map).

mod common;

use std::path::Path;
use std::process::{Child, Command, Stdio};

use common::{newest_checkpoint, prepared, scratch, stdout_text, train_cmd};
use serde_json::Value;

/// Processes that keep the CPU busy until dropped.
struct Hog(Vec<Child>);

impl Hog {
    fn start(processes: usize) -> Self {
        Hog((0..processes)
            .map(|_| {
                Command::new("sh")
                    .args(["-c", "while :; do :; done"])
                    .stdout(Stdio::null())
                    .spawn()
                    .unwrap()
            })
            .collect())
    }
}

impl Drop for Hog {
    fn drop(&mut self) {
        for child in &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The run's records without the fields that time it.
fn records(run: &Path) -> Vec<Value> {
    std::fs::read_to_string(run.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| {
            let mut r: Value = serde_json::from_str(l).unwrap();
            let r_map = r.as_object_mut().unwrap();
            r_map.retain(|k, _| !(k.ends_with("_s") || k == "mfu"));
            r
        })
        .collect()
}

/// The files of the run's newest checkpoint that hold numbers (its `state.json` without the
/// elapsed time).
fn checkpoint(run: &Path) -> Vec<(String, Vec<u8>)> {
    let dir = newest_checkpoint(run);
    let mut state: Value =
        serde_json::from_slice(&std::fs::read(dir.join("state.json")).unwrap()).unwrap();
    state.as_object_mut().unwrap().remove("elapsed_s");
    let mut files: Vec<_> = ["model.safetensors", "optimizer.safetensors", "model.json"]
        .iter()
        .map(|f| (f.to_string(), std::fs::read(dir.join(f)).unwrap()))
        .collect();
    files.push(("state.json".into(), state.to_string().into_bytes()));
    files
}

#[test]
fn the_same_run_twice_is_the_same_to_the_bit_beside_a_busy_cpu() {
    let dir = scratch("reproducible");
    let (_, data, model) = prepared(&dir);
    let _hog = Hog::start(2);
    for backend in ["cpu", "ndarray"] {
        for devices in ["1", "2", "3"] {
            let runs: Vec<_> = (0..2)
                .map(|i| {
                    let run = dir.join(format!("{backend}-{devices}-{i}"));
                    let recipe = [
                        "--backend",
                        backend,
                        "--devices",
                        devices,
                        "--steps",
                        "4",
                        "--batch-size",
                        "2",
                        "--lr",
                        "3e-3",
                        "--eval-every",
                        "2",
                        "--eval-batches",
                        "2",
                        "--seed",
                        "5",
                    ];
                    stdout_text(&train_cmd(
                        &model,
                        &data,
                        &run.to_string_lossy(),
                        &[&recipe],
                    ));
                    run
                })
                .collect();
            let what = format!("{backend} with {devices} replica(s)");
            assert_eq!(records(&runs[0]).len(), 4, "{what}");
            assert_eq!(records(&runs[0]), records(&runs[1]), "{what}: metrics");
            for ((name, a), (_, b)) in checkpoint(&runs[0]).iter().zip(checkpoint(&runs[1])) {
                assert!(*a == b, "{what}: {name} differs");
            }
        }
    }
}
