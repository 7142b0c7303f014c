//! Helpers shared by the `strata` binary's end-to-end tests: running the binary, reading its
//! output, a prepared corpus with a small model file, and the one-line error contract.
#![allow(dead_code)] // each test binary uses its own subset

use std::process::{Command, Output};

use test_support::{pattern_corpus, Scratch};

/// Runs the `strata` binary with `args` (strings or string slices) and returns its output.
pub fn strata<S: AsRef<std::ffi::OsStr>>(args: &[S]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_strata"))
        .args(args)
        .output()
        .expect("the strata binary runs")
}

/// The standard output of a command that must have succeeded (its stderr otherwise).
pub fn stdout_text(out: &Output) -> String {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout.clone()).expect("stdout is UTF-8")
}

pub fn stdout_json(out: &Output) -> serde_json::Value {
    serde_json::from_str(&stdout_text(out)).expect("stdout is JSON")
}

pub fn scratch(name: &str) -> Scratch {
    Scratch::new(&format!("cli-{name}"))
}

/// Twenty generated documents of 200 words.
pub fn write_corpus(dir: &std::path::Path) -> String {
    pattern_corpus(dir, 20, 200).to_string_lossy().into_owned()
}

/// A model config file: tiny-lowrank-r32 shrunk to width 32, 2 layers, context 32.
pub fn write_model(dir: &std::path::Path, vocab: u64) -> String {
    let mut config =
        stdout_json(&strata(&["zoo", "show", "tiny-lowrank-r32", "--json"]))["config"].clone();
    for (k, v) in [
        ("vocab_size", vocab),
        ("d_model", 32),
        ("d_attn", 32),
        ("d_ff", 128),
        ("n_heads", 2),
        ("n_kv_heads", 2),
        ("n_layers", 2),
        ("max_seq_len", 32),
    ] {
        config[k] = v.into();
    }
    config["ffn"]["fc1"]["rank"] = 8.into();
    config["ffn"]["fc2"]["rank"] = 8.into();
    let path = dir.join(format!("model-{vocab}.json"));
    std::fs::write(&path, config.to_string()).unwrap();
    path.to_string_lossy().into_owned()
}

/// Generated text prepared with a 300-token BPE, and a small model file for it: (text folder,
/// data folder, model file).
pub fn prepared(dir: &std::path::Path) -> (String, String, String) {
    let text = write_corpus(dir);
    let data = dir.join("data").to_string_lossy().into_owned();
    let out = strata(&[
        "data",
        "prepare",
        "--input",
        &text,
        "--out",
        &data,
        "--vocab-size",
        "300",
    ]);
    stdout_text(&out);
    let model = write_model(dir, 300);
    (text, data, model)
}

/// Asserts a one-line `error: ...` containing `needle` and a non-zero exit.
pub fn fails_with(out: Output, needle: &str) {
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "expected a failure: {err}");
    assert_eq!(err.trim_end().lines().count(), 1, "one line: {err}");
    assert!(err.starts_with("error: ") && err.contains(needle), "{err}");
}

/// `strata train --model M --data D --out O` followed by `args`.
pub fn train_cmd(model: &str, data: &str, out: &str, args: &[&[&str]]) -> Output {
    let mut all = vec!["train", "--model", model, "--data", data, "--out", out];
    for a in args {
        all.extend_from_slice(a);
    }
    strata(&all)
}

/// The newest checkpoint folder of the run in `run`.
pub fn newest_checkpoint(run: &std::path::Path) -> std::path::PathBuf {
    std::fs::read_dir(run.join("checkpoints"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .max()
        .unwrap()
}
