//! Run folders read back: labels and families, and every way a folder can fail to be a run.

use std::fs;

use super::{scratch, FakeRun};
use crate::{ResultsError, Run};

#[test]
fn a_run_reads_back_with_its_label_and_family() {
    let dir = scratch("label");
    let path = FakeRun::new("tiny-lowrank-r32", 1e12, 4.0, 10)
        .guided()
        .write(&dir, "a");
    let run = Run::load(&path).unwrap();
    assert_eq!(run.records.len(), 10);
    assert_eq!(run.name(), "a");
    assert!(run.self_guided);
    let label = run.label();
    assert!(label.starts_with("tiny-lowrank-r32 · "), "{label}");
    assert!(
        label.contains("lowrank r32 FFN") && label.ends_with("· self-guided"),
        "{label}"
    );
    assert!(run.family().starts_with("lowrank ") && run.family().ends_with("+ self-guided"));
    assert_eq!(run.final_validation().unwrap().step, 10);
    let dense = Run::load(&FakeRun::new("tiny-dense", 1e12, 4.0, 10).write(&dir, "d")).unwrap();
    assert_eq!(dense.family(), "dense");
    assert_eq!(dense.structure(), "dense");
}

#[test]
fn sizes_of_one_structure_share_a_family_and_ratios_do_not() {
    let dir = scratch("family");
    let load = |model: &str| Run::load(&FakeRun::new(model, 1e12, 4.0, 4).write(&dir, model));
    let r32 = load("tiny-lowrank-r32").unwrap();
    let r64 = load("tiny-lowrank-r64").unwrap();
    assert_ne!(
        r32.family(),
        r64.family(),
        "rank 32 and 64 keep different shares"
    );
    let mut wider = FakeRun::new("tiny-lowrank-r32", 1e12, 4.0, 4);
    // Twice the width and twice the rank: the same share of the dense FFN's weights.
    wider.model.d_model *= 2;
    wider.model.d_ff *= 2;
    wider.model.ffn.fc1 = structured_linear::Structure::LowRank { rank: 64 };
    wider.model.ffn.fc2 = structured_linear::Structure::LowRank { rank: 64 };
    // Deeper too: the first layer kept dense does not move it to another family.
    wider.model.n_layers += 2;
    let wider = Run::load(&wider.write(&dir, "wider")).unwrap();
    assert_eq!(r32.family(), wider.family());
    assert_eq!(r32.family(), "lowrank 30%");
    assert!(wider.params > r32.params);
}

#[test]
fn a_folder_without_a_config_is_not_a_run() {
    let dir = scratch("not-a-run");
    let err = Run::load(&dir).unwrap_err();
    assert!(matches!(err, ResultsError::NotARun { .. }), "{err}");
    assert!(err.to_string().contains("config.json"), "{err}");
    let err = Run::load(&dir.join("missing")).unwrap_err();
    assert!(err.to_string().contains("no such folder"), "{err}");
}

#[test]
fn missing_empty_truncated_and_corrupt_metrics_are_named() {
    let dir = scratch("metrics");
    let path = FakeRun::new("tiny-dense", 1e12, 4.0, 6).write(&dir, "r");
    let metrics = path.join("metrics.jsonl");
    let whole = fs::read_to_string(&metrics).unwrap();

    fs::remove_file(&metrics).unwrap();
    let err = Run::load(&path).unwrap_err().to_string();
    assert!(
        err.contains("metrics.jsonl") && err.contains("logged no step"),
        "{err}"
    );

    fs::write(&metrics, "").unwrap();
    let err = Run::load(&path).unwrap_err().to_string();
    assert!(err.contains("no records"), "{err}");

    // Cut in the middle of the last line, as a killed writer would leave it.
    fs::write(&metrics, &whole[..whole.len() - 20]).unwrap();
    let err = Run::load(&path).unwrap_err();
    assert!(
        matches!(err, ResultsError::BadMetrics { line: 6, .. }),
        "{err}"
    );
    assert!(!err.to_string().contains('\n'));

    let mut lines: Vec<&str> = whole.lines().collect();
    lines[2] = "{\"step\": \"three\"}";
    fs::write(&metrics, lines.join("\n")).unwrap();
    let err = Run::load(&path).unwrap_err();
    assert!(
        matches!(err, ResultsError::BadMetrics { line: 3, .. }),
        "{err}"
    );
}

#[test]
fn non_finite_losses_written_as_null_read_back_as_nan() {
    let dir = scratch("null-loss");
    let path = FakeRun::new("tiny-dense", 1e12, 4.0, 4).write(&dir, "r");
    let metrics = path.join("metrics.jsonl");
    let text = fs::read_to_string(&metrics).unwrap();
    let first = text.lines().next().unwrap();
    let mut v: serde_json::Value = serde_json::from_str(first).unwrap();
    v["loss"] = serde_json::Value::Null;
    let rest: Vec<&str> = text.lines().skip(1).collect();
    fs::write(&metrics, format!("{v}\n{}\n", rest.join("\n"))).unwrap();
    let run = Run::load(&path).unwrap();
    assert!(run.records[0].loss.is_nan());
}
