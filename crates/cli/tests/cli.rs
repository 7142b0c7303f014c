//! End-to-end tests of the `strata` binary: the command-line contract (docs/reference.md §6, docs/guide.md).
//!
//! Long on purpose: each test runs the binary end to end, and they share the data helpers.

mod common;

use common::*;

/// `strata generate` of 8 tokens after "the cat" from `run`, greedy, followed by `extra`.
fn greedy(run: &str, extra: &[&str]) -> String {
    let mut args = vec!["generate", "--checkpoint", run, "--prompt", "the cat"];
    args.extend_from_slice(&["--max-tokens", "8", "--temperature", "0"]);
    args.extend_from_slice(extra);
    stdout_text(&strata(&args))
}

#[test]
fn zoo_show_json_follows_the_contract() {
    let v = stdout_json(&strata(&["zoo", "show", "s-lowrank-r192", "--json"]));
    assert_eq!(v["name"], "s-lowrank-r192");
    assert_eq!(v["params"]["total"], 73_947_648);
    assert_eq!(v["params"]["ffn_weights"], 20_938_752);
    assert!(v["params"]["attention_weights"].as_u64().unwrap() > 0);
    assert_eq!(v["params"]["embedding"], 32_000 * 768);
    assert!(v["flops"]["forward_per_token"].as_u64().unwrap() > 0);
    assert_eq!(v["config"]["d_model"], 768);
    assert_eq!(v["config"]["ffn"]["fc1"]["kind"], "lowrank");
}

#[test]
fn zoo_show_takes_a_model_file_too() {
    let dir = scratch("zoo-file");
    let shown = stdout_json(&strata(&["zoo", "show", "tiny-lowrank-r32", "--json"]));
    let file = dir.join("mine.json");
    std::fs::write(&file, shown["config"].to_string()).unwrap();
    let from_file = stdout_json(&strata(&["zoo", "show", file.to_str().unwrap(), "--json"]));
    assert_eq!(from_file["name"], "mine");
    assert_eq!(from_file["params"], shown["params"]);
    assert_eq!(from_file["flops"], shown["flops"]);
    std::fs::write(&file, "{\"d_model\": 8}").unwrap();
    fails_with(
        strata(&["zoo", "show", file.to_str().unwrap()]),
        "mine.json",
    );
}

#[test]
fn zoo_show_counts_the_guides_while_guided() {
    let flops =
        |name: &str| stdout_json(&strata(&["zoo", "show", name, "--json"]))["flops"].clone();
    let lowrank = flops("tiny-lowrank-r32");
    let dense = flops("tiny-dense");
    // The guided forward runs each structured layer and its dense guide.
    assert!(
        lowrank["forward_per_token_guided"].as_u64().unwrap()
            > dense["forward_per_token"].as_u64().unwrap()
    );
    assert_eq!(
        dense["forward_per_token_guided"],
        dense["forward_per_token"]
    );
}

#[test]
fn benchmarks_print_one_json_line_per_configuration() {
    let out = strata(&[
        "bench",
        "ffn",
        "--width",
        "128",
        "--tokens",
        "16",
        "--backend",
        "cpu",
        "ndarray",
        "--ratio",
        "0.5",
        "--repeats",
        "1",
        "--warmup",
        "0",
        "--min-sample-ms",
        "0",
    ]);
    let lines: Vec<serde_json::Value> = stdout_text(&out)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    // Per backend: dense, then lowrank, blockdense and blockshuffle at the one ratio.
    assert_eq!(lines.len(), 2 * 4, "{lines:?}");
    for l in &lines {
        assert_eq!(l["bench"], "ffn");
        assert!(l["fwd_ms"].as_f64().unwrap() > 0.0);
        assert!(l["fwdbwd_ms"].as_f64().unwrap() > 0.0);
        assert!(l["speedup_fwdbwd"].as_f64().unwrap() > 0.0);
        let ratio = l["params_ratio"].as_f64().unwrap();
        assert!(ratio > 0.0 && ratio <= 1.0, "{l}");
    }
    assert_eq!(lines[0]["layer"], "dense");
    assert_eq!(lines[0]["speedup_fwdbwd"], 1.0);
    assert_eq!(lines[4]["backend"], "ndarray");
    fails_with(
        strata(&["bench", "ffn", "--backend", "tpu"]),
        "unknown backend",
    );
    fails_with(
        strata(&["bench", "ffn", "--width", "0"]),
        "positive integer",
    );
    fails_with(
        strata(&["bench", "ffn", "--backend", "ndarray-bf16", "--width", "32"]),
        "bf16",
    );

    let out = strata(&["bench", "ops", "--backend", "cpu"]);
    let ops: Vec<serde_json::Value> = stdout_text(&out)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    // Five building blocks, fc1's thirteen products (dense, LowRank, BlockShuffle; forward
    // and backward), BlockShuffle's shuffle copy and the output head's three products.
    assert_eq!(ops.len(), 6 + 13 + 1 + 3);
    for op in ops
        .iter()
        .filter(|op| op["op"].as_str().unwrap().contains("x["))
    {
        assert!(op["gflops"].as_f64().unwrap() > 0.0, "{op}");
    }
    let products = ops.iter().filter(|op| op.get("gflops").is_some()).count();
    assert_eq!(products, 1 + 13 + 3, "{ops:?}");
    assert!(ops[19]["op"].as_str().unwrap().contains("shuffle copy"));
    assert!(ops[20..]
        .iter()
        .all(|op| op["op"].as_str().unwrap().starts_with("head ")));
    fails_with(
        strata(&["bench", "ops", "--backend", "wgpu"]),
        "CPU backends",
    );
}

#[test]
fn zoo_list_names_every_model() {
    let v = stdout_json(&strata(&["zoo", "list", "--json"]));
    let names: Vec<&str> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap())
        .collect();
    for name in [
        "s-dense",
        "xl-blockshuffle-b4",
        "m-wide-lowrank-r512",
        "lpa-370m",
        "tiny-dense",
    ] {
        assert!(names.contains(&name), "{name} missing");
    }
    let text = strata(&["zoo", "list"]);
    assert!(text.status.success());
    assert!(String::from_utf8_lossy(&text.stdout).contains("lpa-130m-dense"));
}

#[test]
fn an_unknown_model_is_a_one_line_error_with_close_names() {
    let out = strata(&["zoo", "show", "s-lowrank-r191"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    assert!(
        err.starts_with("error: unknown model `s-lowrank-r191`"),
        "{err}"
    );
    assert!(err.contains("s-lowrank-r192"), "{err}");
}

#[test]
// Long on purpose: one end-to-end scenario: the README's commands in order.
fn prepare_train_resume_eval_generate_end_to_end() {
    let dir = scratch("e2e");
    let (text, data, model) = prepared(&dir);
    let run = dir.join("run").to_string_lossy().into_owned();
    let train = |extra: &[&str]| {
        let recipe = [
            "--steps",
            "6",
            "--batch-size",
            "2",
            "--global-batch",
            "4",
            "--lr",
            "3e-3",
            "--sgt",
            "fixedstep",
            "--reduce-flop",
            "--eval-batches",
            "2",
        ];
        train_cmd(&model, &data, &run, &[&recipe, extra])
    };
    let first = train(&["--stop-at", "3"]);
    assert!(stdout_text(&first).contains("stopped early"));
    // The run folder alone resumes it: data, model and settings are the run's.
    let summary = stdout_json(&strata(&["train", "--resume", "--out", &run, "--json"]));
    assert_eq!(summary["steps"], 6);
    // metrics.jsonl follows the contract: every step once, val_loss on evaluation steps.
    let metrics = std::fs::read_to_string(dir.join("run/metrics.jsonl")).unwrap();
    let lines: Vec<serde_json::Value> = metrics
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 6);
    for (i, l) in lines.iter().enumerate() {
        assert_eq!(l["step"], i as u64 + 1);
        for key in ["tokens", "loss", "lr", "alpha", "flops", "elapsed_s"] {
            assert!(l[key].is_number(), "{key} in {l}");
        }
    }
    assert!(lines[2]["val_loss"].is_number() && lines[5]["val_loss"].is_number());
    assert_eq!(lines[0]["alpha"], 1.0);
    assert!(dir.join("run/config.json").is_file() && dir.join("run/loss.svg").is_file());
    // eval (structured and pre-merged agree) and generate.
    let e = stdout_json(&strata(&[
        "eval",
        "--checkpoint",
        &run,
        "--data",
        &data,
        "--json",
    ]));
    // Without --data a run's checkpoint is scored on the run's validation split.
    let m = stdout_json(&strata(&[
        "eval",
        "--checkpoint",
        &run,
        "--json",
        "--merged",
    ]));
    assert!(e["val_loss"].as_f64().unwrap() > 0.0 && e["tokens"].as_u64().unwrap() > 0);
    assert!((e["ppl"].as_f64().unwrap() - e["val_loss"].as_f64().unwrap().exp()).abs() < 1e-6);
    assert!((e["val_loss"].as_f64().unwrap() - m["val_loss"].as_f64().unwrap()).abs() < 1e-4);
    let g = strata(&[
        "generate",
        "--checkpoint",
        &run,
        "--prompt",
        "the cat",
        "--max-tokens",
        "8",
        "--seed",
        "3",
    ]);
    assert!(stdout_text(&g).starts_with("the cat"));
    // Greedy decoding: the structured model alone (the default threshold, 0), the dispatching
    // pair and the merged model write the same text.
    let structured = greedy(&run, &[]);
    assert_eq!(greedy(&run, &["--premerge-threshold", "1"]), structured);
    assert_eq!(greedy(&run, &["--merged"]), structured);
    // --json: the prompt's ids, the generated ids and their text, which the plain output ends
    // with.
    let j: serde_json::Value = serde_json::from_str(&greedy(&run, &["--json"])).unwrap();
    let (prompt_ids, ids) = (
        j["prompt_ids"].as_array().unwrap(),
        j["ids"].as_array().unwrap(),
    );
    assert!(!prompt_ids.is_empty() && ids.len() <= 8, "{j}");
    assert!(ids.iter().all(|id| id.as_u64().is_some_and(|id| id < 300)));
    assert_eq!(
        format!("the cat{}", j["text"].as_str().unwrap()),
        structured.trim_end_matches('\n')
    );

    // Bad input: one line, non-zero exit, nothing already written changes.
    let before = std::fs::read(dir.join("run/metrics.jsonl")).unwrap();
    fails_with(train(&[]), "holds another run");
    fails_with(train(&["--seq-len", "64"]), "max_seq_len");
    let small = write_model(&dir, 200);
    fails_with(
        strata(&[
            "train", "--model", &small, "--data", &data, "--out", &run, "--steps", "2", "--resume",
        ]),
        "different model",
    );
    let fresh = dir.join("fresh").to_string_lossy().into_owned();
    fails_with(
        strata(&[
            "train", "--model", &small, "--data", &data, "--out", &fresh, "--steps", "2",
        ]),
        "vocab",
    );
    fails_with(
        strata(&[
            "train", "--model", &model, "--data", &data, "--out", &fresh, "--steps", "-1",
        ]),
        "positive",
    );
    fails_with(
        strata(&[
            "train", "--model", &model, "--data", &data, "--out", &fresh, "--tokens", "0",
        ]),
        "positive",
    );
    fails_with(
        strata(&[
            "train", "--model", &model, "--data", &data, "--out", &fresh, "--steps", "2",
            "--resume",
        ]),
        "nothing to resume",
    );
    fails_with(
        strata(&["eval", "--checkpoint", &fresh, "--data", &data]),
        "does not exist",
    );
    fails_with(
        strata(&["train", "--model", &model, "--out", &fresh, "--steps", "2"]),
        "--data",
    );
    // A checkpoint outside a run has no data of its own to score on.
    let newest = newest_checkpoint(&dir.join("run"));
    let loose = dir.join("loose");
    std::fs::create_dir(&loose).unwrap();
    for file in std::fs::read_dir(&newest).unwrap().flatten() {
        std::fs::copy(file.path(), loose.join(file.file_name())).unwrap();
    }
    fails_with(
        strata(&["eval", "--checkpoint", &loose.to_string_lossy()]),
        "give the data to score with --data",
    );
    fails_with(
        strata(&[
            "data",
            "prepare",
            "--input",
            &dir.join("missing").to_string_lossy(),
            "--out",
            &fresh,
        ]),
        "does not exist",
    );
    fails_with(
        strata(&["data", "prepare", "--input", &text, "--out", &data]),
        "--force",
    );
    fails_with(
        strata(&[
            "generate",
            "--checkpoint",
            &run,
            "--prompt",
            "the cat",
            "--temperature",
            "-1",
        ]),
        "temperature",
    );
    assert_eq!(
        std::fs::read(dir.join("run/metrics.jsonl")).unwrap(),
        before
    );
    assert!(!dir.join("fresh").exists());
}

#[test]
fn data_parallel_bf16_training_resumes_with_its_device_count() {
    let dir = scratch("parallel");
    let (_, data, model) = prepared(&dir);
    let run = dir.join("run").to_string_lossy().into_owned();
    let recipe = [
        "--steps",
        "4",
        "--batch-size",
        "2",
        "--lr",
        "3e-3",
        "--eval-batches",
        "1",
    ];
    let train = |extra: &[&str]| train_cmd(&model, &data, &run, &[&recipe, extra]);
    let first = train(&["--devices", "2", "--precision", "bf16", "--stop-at", "2"]);
    stdout_text(&first);
    let config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("run/config.json")).unwrap())
            .unwrap();
    assert_eq!(
        (config["devices"].clone(), config["precision"].clone()),
        (2.into(), "bf16".into())
    );
    fails_with(
        train(&["--resume", "--devices", "1"]),
        "set for 2 device(s)",
    );
    // Without --devices the resumed run keeps its two replicas.
    let summary = stdout_json(&train(&["--resume", "--json"]));
    assert_eq!(summary["steps"], 4);
    assert_eq!(
        summary["tokens"],
        4 * 2 * 2 * 32,
        "4 steps x 2 devices x 2 sequences x 32"
    );
    // Inference in half precision: the f32 checkpoint cast after loading (and merging).
    let eval = |extra: &[&str]| {
        let mut args = vec!["eval", "--checkpoint", &run, "--data", &data, "--json"];
        args.extend_from_slice(extra);
        stdout_json(&strata(&args))
    };
    let f32_loss = eval(&[])["val_loss"].as_f64().unwrap();
    for precision in ["bf16", "f16"] {
        for merged in [&[][..], &["--merged"][..]] {
            let e = eval(&[&["--precision", precision][..], merged].concat());
            let loss = e["val_loss"].as_f64().unwrap();
            assert!(
                (loss - f32_loss).abs() < 0.02 * f32_loss,
                "{precision} {merged:?}: {loss} vs f32 {f32_loss}"
            );
            assert_eq!(e["precision"], precision);
        }
    }
    // Greedy decoding in half precision through the dispatching pair.
    let generate = |precision: &str| {
        greedy(
            &run,
            &["--premerge-threshold", "1", "--precision", precision],
        )
    };
    let text = generate("bf16");
    assert!(
        text.starts_with("the cat") && text.len() > "the cat\n".len(),
        "{text:?}"
    );
    generate("f16");
    fails_with(
        strata(&[
            "eval",
            "--checkpoint",
            &run,
            "--data",
            &data,
            "--backend",
            "ndarray",
            "--precision",
            "bf16",
        ]),
        "bf16 is not supported",
    );

    let fresh = dir.join("fresh").to_string_lossy().into_owned();
    let fresh_train =
        |extra: &[&str]| train_cmd(&model, &data, &fresh, &[&["--steps", "2"], extra]);
    fails_with(
        fresh_train(&["--backend", "ndarray", "--precision", "f16"]),
        "f16 is not supported",
    );
    fails_with(fresh_train(&["--devices", "0"]), "at least 1");
    assert!(!dir.join("fresh").exists());
}

/// `--backend wgpu` for train, eval and generate (CI runs it on a software Vulkan driver).
#[cfg(feature = "wgpu")]
#[test]
fn train_eval_generate_on_wgpu() {
    let dir = scratch("wgpu");
    let (_, data, model) = prepared(&dir);
    let run = dir.join("run").to_string_lossy().into_owned();
    let summary = stdout_json(&strata(&[
        "train",
        "--model",
        &model,
        "--data",
        &data,
        "--out",
        &run,
        "--steps",
        "2",
        "--batch-size",
        "2",
        "--seq-len",
        "16",
        "--eval-batches",
        "2",
        "--backend",
        "wgpu",
        "--json",
    ]));
    assert_eq!(summary["steps"], 2);
    let eval = |extra: &[&str]| {
        let mut args = vec![
            "eval",
            "--checkpoint",
            &run,
            "--data",
            &data,
            "--seq-len",
            "16",
            "--max-batches",
            "2",
            "--json",
        ];
        args.extend_from_slice(extra);
        strata(&args)
    };
    let on_gpu = stdout_json(&eval(&["--backend", "wgpu"]));
    let on_cpu = stdout_json(&eval(&[]));
    let (g, c) = (
        on_gpu["val_loss"].as_f64().unwrap(),
        on_cpu["val_loss"].as_f64().unwrap(),
    );
    assert!((g - c).abs() < 1e-3, "wgpu {g} vs cpu {c}");
    // f16 inference where the GPU has f16 (lavapipe does); otherwise a one-line refusal.
    let half = eval(&["--backend", "wgpu", "--precision", "f16"]);
    if half.status.success() {
        let h = stdout_json(&half)["val_loss"].as_f64().unwrap();
        assert!((h - c).abs() < 0.02 * c, "wgpu f16 {h} vs cpu f32 {c}");
    } else {
        fails_with(half, "f16 is not supported");
    }
    let gen = strata(&[
        "generate",
        "--checkpoint",
        &run,
        "--prompt",
        "the cat",
        "--max-tokens",
        "4",
        "--backend",
        "wgpu",
    ]);
    stdout_text(&gen);
}

#[test]
fn a_run_that_stalls_ends_with_an_error_instead_of_hanging() {
    let dir = scratch("stall");
    let (_, data, _) = prepared(&dir);
    let run = dir.join("run").to_string_lossy().into_owned();
    // A limit far below the time of one step on any CPU: the watchdog must end the run.
    let out = train_cmd(
        "tiny-dense",
        &data,
        &run,
        &[
            &["--steps", "1000", "--seq-len", "128"],
            &["--stall-timeout", "0.05"],
        ],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    let last = err.trim_end().lines().last().unwrap_or_default();
    assert!(
        last.starts_with("error: no progress for 0.05 s while training on cpu"),
        "{err}"
    );
    fails_with(
        train_cmd(
            "tiny-dense",
            &data,
            &run,
            &[&["--steps", "2"], &["--stall-timeout", "-1"]],
        ),
        "--stall-timeout must be a number of seconds >= 0",
    );
}
