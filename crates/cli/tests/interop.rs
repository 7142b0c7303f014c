//! End to end through the `strata` binary: a Hugging Face checkpoint (the Llama fixture of
//! crates/interop, written by `transformers`) imported, evaluated, converted with self-guided
//! guides (the same loss at alpha = 1), healed with `train --init --sgt`, exported and
//! re-imported (the same loss again); and the one-line errors of these commands.

mod common;

use common::{fails_with, scratch, stdout_json, stdout_text, strata, write_corpus};

fn fixture(name: &str) -> String {
    format!(
        "{}/../interop/tests/fixtures/{name}",
        env!("CARGO_MANIFEST_DIR")
    )
}

fn val_loss(checkpoint: &str, data: &str) -> f64 {
    let out = strata(&["eval", "--checkpoint", checkpoint, "--data", data, "--json"]);
    stdout_json(&out)["val_loss"].as_f64().unwrap()
}

#[test]
// Long on purpose: one end-to-end scenario, the guide's worked example: import, convert, heal, export, re-import.
fn import_convert_heal_export_reimport() {
    let s = scratch("interop");
    let p = |n: &str| s.join(n).to_string_lossy().into_owned();
    let llama = fixture("llama");
    // Text tokenized with the checkpoint's own tokenizer.
    let text = write_corpus(&s);
    let tokenizer = format!("{llama}/tokenizer.json");
    stdout_text(&strata(&[
        "data",
        "prepare",
        "--input",
        &text,
        "--out",
        &p("data"),
        "--tokenizer",
        &tokenizer,
    ]));
    let data = p("data");

    let report = stdout_json(&strata(&[
        "import",
        "hf",
        "--from",
        &llama,
        "--out",
        &p("dense"),
        "--json",
    ]));
    assert_eq!(report["family"], "llama");
    assert_eq!(report["params"], 40864, "the index's total_parameters");
    let dense = val_loss(&p("dense"), &data);

    // Half the FFN parameters, guides kept: at alpha = 1 the pretrained model's loss.
    let out = strata(&[
        "convert",
        "--checkpoint",
        &p("dense"),
        "--out",
        &p("guided"),
        "--ffn",
        "lowrank",
        "--params-ratio",
        "0.5",
        "--self-guided",
        "--json",
    ]);
    let lines: Vec<serde_json::Value> = stdout_text(&out)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(
        lines.len(),
        2 * 3 + 1,
        "gate, up, down of 2 blocks, then the summary"
    );
    for l in &lines[..6] {
        assert!(l["params"].as_u64().unwrap() * 2 <= l["dense_params"].as_u64().unwrap());
        let e = l["rel_error"].as_f64().unwrap();
        assert!(e > 0.0 && e < 1.0, "{l}");
    }
    assert!((val_loss(&p("guided"), &data) - dense).abs() < 1e-4);
    // Without guides the truncation changes the model (of a random model: in either direction).
    stdout_text(&strata(&[
        "convert",
        "--checkpoint",
        &p("dense"),
        "--out",
        &p("plain"),
        "--ffn",
        "lowrank",
        "--params-ratio",
        "0.5",
    ]));
    let plain = val_loss(&p("plain"), &data);
    assert!((plain - dense).abs() > 1e-6, "{plain} vs {dense}");

    // Healing: alpha decays from 1 to 0, the guides are dropped at the end.
    let summary = stdout_json(&strata(&[
        "train",
        "--init",
        &p("guided"),
        "--data",
        &data,
        "--out",
        &p("healed"),
        "--steps",
        "6",
        "--batch-size",
        "2",
        "--seq-len",
        "32",
        "--lr",
        "1e-3",
        "--sgt",
        "fixedstep",
        "--sgt-ratio",
        "0.5",
        "--json",
    ]));
    assert_eq!(summary["steps"], 6);
    let healed = val_loss(&p("healed"), &data);
    assert!(healed.is_finite());

    // Export (LowRank layers merged), load back: the same model.
    let e = stdout_json(&strata(&[
        "export",
        "hf",
        "--checkpoint",
        &p("healed"),
        "--out",
        &p("hf"),
        "--json",
    ]));
    assert_eq!(e["family"], "llama");
    assert_eq!(e["merged_layers"], 6);
    let config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(s.join("hf/config.json")).unwrap()).unwrap();
    assert_eq!(config["architectures"][0], "LlamaForCausalLM");
    assert!(s.join("hf/tokenizer.json").is_file());
    stdout_text(&strata(&[
        "import",
        "hf",
        "--from",
        &p("hf"),
        "--out",
        &p("again"),
    ]));
    assert!((val_loss(&p("again"), &data) - healed).abs() < 1e-4);
    let g = stdout_json(&strata(&[
        "generate",
        "--checkpoint",
        &p("again"),
        "--prompt",
        "It was",
        "--temperature",
        "0",
        "--max-tokens",
        "5",
        "--json",
    ]));
    assert!(g["prompt_ids"].as_array().unwrap().len() >= 2);

    // Bad requests: one line, nothing replaced.
    fails_with(
        strata(&["import", "hf", "--from", &llama, "--out", &p("dense")]),
        "--force",
    );
    fails_with(
        strata(&["import", "hf", "--from", &p("data"), "--out", &p("x")]),
        "config.json",
    );
    fails_with(
        strata(&[
            "convert",
            "--checkpoint",
            &p("dense"),
            "--out",
            &p("x"),
            "--ffn",
            "lowrank",
        ]),
        "--rank R, --params-ratio X or --energy E",
    );
    fails_with(
        strata(&[
            "convert",
            "--checkpoint",
            &p("dense"),
            "--out",
            &p("x"),
            "--ffn",
            "lowrank",
            "--rank",
            "999",
        ]),
        "exceeds",
    );
    fails_with(
        strata(&[
            "convert",
            "--checkpoint",
            &p("dense"),
            "--out",
            &p("x"),
            "--ffn",
            "blockdense",
            "--params-ratio",
            "0.5",
            "--blocks",
            "64",
        ]),
        "exceeds",
    );
    fails_with(
        strata(&[
            "convert",
            "--checkpoint",
            &p("dense"),
            "--out",
            &p("x"),
            "--rank",
            "4",
        ]),
        "--ffn and/or --attention",
    );
    fails_with(
        strata(&[
            "train",
            "--init",
            &p("nowhere"),
            "--data",
            &data,
            "--out",
            &p("x"),
            "--steps",
            "1",
        ]),
        "nowhere",
    );
    fails_with(
        strata(&[
            "train",
            "--init",
            &p("dense"),
            "--model",
            "tiny-dense",
            "--data",
            &data,
            "--out",
            &p("x"),
            "--steps",
            "1",
        ]),
        "--model",
    );
    assert!(!s.join("x").exists());
}

#[test]
fn the_papers_models_have_no_hugging_face_family() {
    let s = scratch("export-papers");
    let p = |n: &str| s.join(n).to_string_lossy().into_owned();
    let (_, data, model) = common::prepared(&s);
    stdout_text(&common::train_cmd(
        &model,
        &data,
        &p("run"),
        &[&["--steps", "1", "--batch-size", "2"]],
    ));
    fails_with(
        strata(&["export", "hf", "--checkpoint", &p("run"), "--out", &p("hf")]),
        "Hugging Face has no family",
    );
    assert!(!s.join("hf").exists());
}
