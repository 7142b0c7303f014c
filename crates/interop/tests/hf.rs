//! Import, export and conversion against the Hugging Face fixtures in `tests/fixtures/` (tiny
//! random GPT-2, Llama and Qwen2 models and their outputs, written by `transformers`: see
//! `tests/fixtures/make_fixtures.py`). No network, no Python.
//!
//! Long on purpose: import, export, conversion and the bad-checkpoint cases share the fixture
//! readers, the reference outputs and the greedy decoder, and one test binary links burn once.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use burn::module::Module;
use burn::tensor::{Int, Tensor, TensorData};
use interop::tensors::{read_file, read_hf_weights, Tensors};
use interop::{
    convert, export_hf, import_hf, ConvertSpec, ExportOptions, ImportOptions, Kind, Size,
    WeightType,
};
use storage::checkpoint;
use structured_linear::{singular_values, Structure};
use test_support::backend::Cpu;
use test_support::compare::{assert_close, values};
use test_support::scratch::Scratch;
use transformer::Transformer;

const FAMILIES: [&str; 3] = ["gpt2", "llama", "qwen2"];

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

/// The fixture's prompts, greedy continuations and `transformers`' logits.
struct Reference {
    prompts: Vec<Vec<i64>>,
    greedy: Vec<Vec<i64>>,
    logits: Vec<f64>,
}

fn reference(name: &str) -> Reference {
    let dir = fixture(name);
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("reference.json")).unwrap())
            .unwrap();
    let ids = |key: &str| -> Vec<Vec<i64>> { serde_json::from_value(json[key].clone()).unwrap() };
    let mut t = Tensors::new();
    read_file(&dir.join("reference.safetensors"), &mut t).unwrap();
    Reference {
        prompts: ids("prompts"),
        greedy: ids("greedy"),
        logits: t["logits"].data.iter().map(|&v| v as f64).collect(),
    }
}

fn device() -> burn::backend::ndarray::NdArrayDevice {
    Default::default()
}

fn load(dir: &Path) -> Transformer<Cpu> {
    storage::weights::load_model::<Cpu>(dir, &device())
        .unwrap()
        .0
}

fn tokens(rows: &[Vec<i64>]) -> Tensor<Cpu, 2, Int> {
    let flat: Vec<i64> = rows.iter().flatten().copied().collect();
    Tensor::from_data(
        TensorData::new(flat, [rows.len(), rows[0].len()]),
        &device(),
    )
}

fn logits(model: &Transformer<Cpu>, prompts: &[Vec<i64>]) -> Vec<f64> {
    values(model.forward(tokens(prompts)).unwrap())
}

/// Greedy continuation by full forwards (argmax of the last position), no stop token.
fn greedy(model: &Transformer<Cpu>, prompt: &[i64], n: usize) -> Vec<i64> {
    let mut ids = prompt.to_vec();
    let vocab = model.config().vocab_size;
    for _ in 0..n {
        let l = logits(model, std::slice::from_ref(&ids));
        let last = &l[l.len() - vocab..];
        let best = (0..vocab)
            .max_by(|&a, &b| last[a].total_cmp(&last[b]))
            .unwrap();
        ids.push(best as i64);
    }
    ids[prompt.len()..].to_vec()
}

fn import(name: &str, out: &Path) {
    import_hf::<Cpu>(&fixture(name), out, &ImportOptions::default(), &device()).unwrap();
}

#[test]
fn imported_models_give_the_logits_and_greedy_ids_of_transformers() {
    let s = Scratch::new("import-logits");
    for name in FAMILIES {
        let out = s.join(name);
        import(name, &out);
        let model = load(&out);
        // The shapes import checks the files against are the built model's.
        assert_eq!(
            interop::layout::dense_shapes(model.config()),
            interop::snapshot::shapes(&model),
            "{name}"
        );
        let r = reference(name);
        assert_close(&logits(&model, &r.prompts), &r.logits, 1e-4, name);
        for (prompt, want) in r.prompts.iter().zip(&r.greedy) {
            assert_eq!(
                &greedy(&model, prompt, want.len()),
                want,
                "{name}: greedy ids"
            );
        }
    }
}

#[test]
fn import_export_import_is_exact() {
    let s = Scratch::new("round-trip");
    for name in FAMILIES {
        let (a, hf, b) = (
            s.join(format!("{name}-a")),
            s.join(format!("{name}-hf")),
            s.join(format!("{name}-b")),
        );
        import(name, &a);
        let options = ExportOptions {
            dtype: WeightType::F32,
            force: false,
        };
        export_hf::<Cpu>(&a, &hf, &options, &device()).unwrap();
        // The export holds the fixture's tensors, value for value (a tied head is not written,
        // as transformers does not write it either).
        let original = read_hf_weights(&fixture(name)).unwrap();
        let exported = read_hf_weights(&hf).unwrap();
        assert_eq!(
            exported.keys().collect::<Vec<_>>(),
            original.keys().collect::<Vec<_>>(),
            "{name}: tensor names"
        );
        assert_eq!(exported, original, "{name}: tensor values");
        import_hf::<Cpu>(&hf, &b, &ImportOptions::default(), &device()).unwrap();
        let (ta, tb) = (
            interop::snapshot::tensors(&load(&a)).unwrap(),
            interop::snapshot::tensors(&load(&b)).unwrap(),
        );
        assert_eq!(ta, tb, "{name}: import -> export -> import");
        let config: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(hf.join("config.json")).unwrap())
                .unwrap();
        assert_eq!(config["model_type"], name);
    }
}

#[test]
fn bf16_export_rounds_each_weight_once() {
    let s = Scratch::new("bf16-export");
    let (a, hf) = (s.join("a"), s.join("hf"));
    import("gpt2", &a);
    let options = ExportOptions {
        dtype: WeightType::Bf16,
        force: false,
    };
    export_hf::<Cpu>(&a, &hf, &options, &device()).unwrap();
    let original = read_hf_weights(&fixture("gpt2")).unwrap();
    let exported = read_hf_weights(&hf).unwrap();
    for (name, t) in &original {
        let want: Vec<f32> = t
            .data
            .iter()
            .map(|&v| half::bf16::from_f32(v).to_f32())
            .collect();
        assert_eq!(exported[name].data, want, "{name}");
    }
}

/// `||W - W_r||_F^2 / ||W||_F^2` of the best rank-`r` approximation: the tail of the spectrum.
fn tail(s: &[f64], r: usize) -> f64 {
    s[r..].iter().map(|v| v * v).sum::<f64>() / s.iter().map(|v| v * v).sum::<f64>()
}

/// The dense weight `[d_in, d_out]` of `blocks.L.<place>` in an imported model.
fn dense_weight(model: &Transformer<Cpu>, layer: usize, place: &str) -> Tensor<Cpu, 2> {
    let place = model
        .config()
        .places()
        .into_iter()
        .find(|p| p.path() == place)
        .unwrap();
    model.blocks[layer]
        .linear(place)
        .unwrap()
        .layer
        .merged_weight()
}

fn spec(ffn: Option<Kind>, attention: Option<Kind>, size: Size) -> ConvertSpec {
    ConvertSpec {
        ffn,
        attention,
        size,
        blocks: 2,
        keep_first_dense: false,
        self_guided: false,
        force: false,
    }
}

#[test]
// Long on purpose: one scenario: each structure converted, its reported error checked against a direct SVD.
fn conversions_report_the_errors_of_a_direct_svd() {
    let s = Scratch::new("convert-errors");
    let a = s.join("llama");
    import("llama", &a);
    let dense = load(&a);
    // LowRank at a fixed rank: the error is the spectrum's tail (Eckart-Young).
    let r = convert::<Cpu>(
        &a,
        &s.join("lr"),
        &spec(Some(Kind::LowRank), None, Size::Rank(6)),
        &device(),
    )
    .unwrap();
    assert_eq!(r.layers.len(), 2 * 3, "gate, up and down of both blocks");
    for l in &r.layers {
        let w = dense_weight(&dense, l.layer, &l.place);
        let [d_in, d_out] = w.dims();
        let sv = singular_values(w).unwrap();
        assert!((l.rel_error.powi(2) - tail(&sv, 6)).abs() < 1e-5, "{l:?}");
        assert_eq!(l.params, 6 * (d_in + d_out) as u64, "{l:?}");
        assert_eq!(l.dense_params, (d_in * d_out) as u64, "{l:?}");
    }
    // BlockDense: each row block's own truncated SVD.
    let r = convert::<Cpu>(
        &a,
        &s.join("bd"),
        &spec(Some(Kind::BlockDense), None, Size::Rank(8)),
        &device(),
    )
    .unwrap();
    for l in &r.layers {
        let w = dense_weight(&dense, l.layer, &l.place);
        let [d_in, _] = w.dims();
        let p = d_in / 2;
        let (mut kept_tail, mut total) = (0.0, 0.0);
        for i in 0..2 {
            let sv = singular_values(w.clone().narrow(0, i * p, p)).unwrap();
            kept_tail += sv[4..].iter().map(|v| v * v).sum::<f64>();
            total += sv.iter().map(|v| v * v).sum::<f64>();
        }
        assert!(
            (l.rel_error.powi(2) - kept_tail / total).abs() < 1e-5,
            "{l:?}"
        );
    }
    // BlockShuffle: sub-matrix (i, c) (rows of input block i, columns c, c + b, ...) is
    // approximated at the rank its share of the inner dimension allows; the rest is error.
    let r = convert::<Cpu>(
        &a,
        &s.join("bs"),
        &spec(Some(Kind::BlockShuffle), None, Size::Unsized),
        &device(),
    )
    .unwrap();
    for l in &r.layers {
        let w = dense_weight(&dense, l.layer, &l.place);
        let [d_in, d_out] = w.dims();
        let vals = values(w);
        let b = 2;
        let q = structured_linear::block_shuffle_inner(d_in, d_out, b);
        let (p, sz) = (d_in / b, d_out / b);
        let (mut lost, total) = (0.0, vals.iter().map(|v| v * v).sum::<f64>());
        for i in 0..b {
            for c in 0..b {
                let share = (0..q).filter(|j| (i * q + j) % b == c).count();
                let sub: Vec<f64> = (0..p)
                    .flat_map(|u| (0..sz).map(move |t| (u, t)))
                    .map(|(u, t)| vals[(i * p + u) * d_out + t * b + c])
                    .collect();
                let m = Tensor::<Cpu, 2>::from_data(
                    TensorData::new(sub.iter().map(|&v| v as f32).collect::<Vec<_>>(), [p, sz]),
                    &device(),
                );
                let sv = singular_values(m).unwrap();
                lost += sv[share.min(sv.len())..].iter().map(|v| v * v).sum::<f64>();
            }
        }
        assert!(
            (l.rel_error.powi(2) - lost / total).abs() < 1e-5,
            "{l:?}: want {}",
            (lost / total).sqrt()
        );
    }
    // Energy: the smallest rank keeping 90% of each matrix's squared singular values.
    let r = convert::<Cpu>(
        &a,
        &s.join("en"),
        &spec(Some(Kind::LowRank), Some(Kind::LowRank), Size::Energy(0.9)),
        &device(),
    )
    .unwrap();
    let mut ranks = BTreeMap::new();
    for l in &r.layers {
        let sv = singular_values(dense_weight(&dense, l.layer, &l.place)).unwrap();
        let rank = l.rank.unwrap();
        assert!(
            1.0 - tail(&sv, rank) >= 0.9 - 1e-9,
            "{l:?} keeps too little"
        );
        assert!(1.0 - tail(&sv, rank - 1) < 0.9, "{l:?} is not the smallest");
        ranks.insert((l.layer, l.place.clone()), rank);
    }
    assert!(
        ranks
            .values()
            .collect::<std::collections::BTreeSet<_>>()
            .len()
            > 1,
        "per-matrix ranks differ: {ranks:?}"
    );
    // The converted model has exactly the reported structures, and its parameter count.
    let model = load(&s.join("en"));
    for ((layer, place), rank) in &ranks {
        let p = model
            .config()
            .places()
            .into_iter()
            .find(|p| p.path() == place)
            .unwrap();
        assert_eq!(
            model.config().linear(*layer, p).structure,
            Structure::LowRank { rank: *rank }
        );
    }
    assert_eq!(model.num_params() as u64, r.params_after);
    // Parameter budget: every matrix within it; BlockShuffle picks the fewest blocks that fit.
    for kind in [Kind::LowRank, Kind::BlockDense, Kind::BlockShuffle] {
        let out = s.join(format!("ratio-{kind:?}"));
        let r = convert::<Cpu>(
            &a,
            &out,
            &spec(Some(kind), None, Size::ParamsRatio(0.5)),
            &device(),
        )
        .unwrap();
        for l in &r.layers {
            assert!(
                l.params as f64 <= 0.5 * l.dense_params as f64,
                "{kind:?}: {l:?}"
            );
            assert!(l.rel_error > 0.0 && l.rel_error < 1.0, "{kind:?}: {l:?}");
        }
        // The written model runs and is the one reported.
        let m = load(&out);
        assert_eq!(m.num_params() as u64, r.params_after);
        let _ = logits(&m, &reference("llama").prompts);
    }
}

#[test]
fn a_self_guided_conversion_computes_the_pretrained_model_at_alpha_one() {
    let s = Scratch::new("convert-guided");
    for name in ["gpt2", "qwen2"] {
        let a = s.join(name);
        import(name, &a);
        let mut c = spec(
            Some(Kind::LowRank),
            Some(Kind::LowRank),
            Size::ParamsRatio(0.3),
        );
        c.self_guided = true;
        let out = s.join(format!("{name}-sg"));
        convert::<Cpu>(&a, &out, &c, &device()).unwrap();
        let model = load(&out);
        assert!(model.has_guides());
        let r = reference(name);
        assert_close(&logits(&model, &r.prompts), &r.logits, 1e-4, name);
        // The plain conversion does not.
        c.self_guided = false;
        let plain = s.join(format!("{name}-plain"));
        convert::<Cpu>(&a, &plain, &c, &device()).unwrap();
        let diff =
            test_support::compare::max_abs_diff(&logits(&load(&plain), &r.prompts), &r.logits);
        assert!(diff > 1e-3, "{name}: truncation changed nothing ({diff})");
        // Its export merges the guides at alpha = 1: the pretrained weights.
        let hf = s.join(format!("{name}-hf"));
        let options = ExportOptions {
            dtype: WeightType::F32,
            force: false,
        };
        export_hf::<Cpu>(&out, &hf, &options, &device()).unwrap();
        let (want, got) = (
            read_hf_weights(&fixture(name)).unwrap(),
            read_hf_weights(&hf).unwrap(),
        );
        for (k, t) in &want {
            let d = test_support::compare::max_abs_diff(
                &t.data.iter().map(|&v| v as f64).collect::<Vec<_>>(),
                &got[k].data.iter().map(|&v| v as f64).collect::<Vec<_>>(),
            );
            assert!(d < 1e-6, "{name}: {k} differs by {d}");
        }
    }
}

/// A copy of a fixture whose files `edit` changes.
fn altered(s: &Scratch, name: &str, tag: &str, edit: impl FnOnce(&Path)) -> PathBuf {
    let dir = s.join(format!("{name}-{tag}"));
    std::fs::create_dir_all(&dir).unwrap();
    for e in std::fs::read_dir(fixture(name)).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), dir.join(e.file_name())).unwrap();
    }
    edit(&dir);
    dir
}

fn edit_json(path: &Path, f: impl FnOnce(&mut serde_json::Value)) {
    let mut v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    f(&mut v);
    std::fs::write(path, serde_json::to_string(&v).unwrap()).unwrap();
}

#[test]
fn bad_checkpoints_are_refused_naming_the_problem_and_nothing_is_written() {
    let s = Scratch::new("import-errors");
    let cases: Vec<(PathBuf, &str)> = vec![
        (
            altered(&s, "gpt2", "arch", |d| {
                edit_json(&d.join("config.json"), |v| {
                    v["model_type"] = "bert".into();
                    v["architectures"] = serde_json::json!(["BertModel"]);
                })
            }),
            "\"bert\"",
        ),
        (
            altered(&s, "llama", "rope", |d| {
                edit_json(&d.join("config.json"), |v| {
                    v["rope_parameters"]["rope_type"] = "llama3".into()
                })
            }),
            "rope_type",
        ),
        (
            altered(&s, "gpt2", "shape", |d| {
                edit_json(&d.join("config.json"), |v| v["n_inner"] = 64.into())
            }),
            "tensor transformer.h.0.mlp.c_fc.weight: has shape [32, 128]; config.json implies [32, 64]",
        ),
        (
            altered(&s, "llama", "missing", |d| {
                edit_json(&d.join("model.safetensors.index.json"), |v| {
                    v["weight_map"]["model.layers.1.extra.weight"] = "model-00001-of-00003.safetensors".into()
                })
            }),
            "tensor model.layers.1.extra.weight: is listed",
        ),
        (
            altered(&s, "qwen2", "layers", |d| {
                edit_json(&d.join("config.json"), |v| v["num_hidden_layers"] = 3.into())
            }),
            "tensor model.layers.2.input_layernorm.weight: is missing",
        ),
        (
            altered(&s, "gpt2", "huge", |d| {
                edit_json(&d.join("config.json"), |v| v["n_embd"] = 1_000_000.into())
            }),
            "tensor transformer.wte.weight: has shape [300, 32]; config.json implies [300, 1000000]",
        ),
        (
            altered(&s, "gpt2", "act", |d| {
                edit_json(&d.join("config.json"), |v| v["activation_function"] = "relu".into())
            }),
            "activation_function",
        ),
        (
            altered(&s, "gpt2", "notok", |d| std::fs::remove_file(d.join("tokenizer.json")).unwrap()),
            "tokenizer.json",
        ),
        (
            altered(&s, "gpt2", "garbage", |d| std::fs::write(d.join("model.safetensors"), b"not a file").unwrap()),
            "not a safetensors file",
        ),
    ];
    for (i, (dir, want)) in cases.iter().enumerate() {
        let out = s.join(format!("out-{i}"));
        let e = import_hf::<Cpu>(dir, &out, &ImportOptions::default(), &device())
            .expect_err(want)
            .to_string();
        assert!(e.contains(want), "{e:?} should contain {want:?}");
        assert!(!e.contains('\n'), "one line: {e:?}");
        assert!(!out.exists(), "{}: something was written", out.display());
    }
    // An output folder that holds something is kept unless forced.
    let out = s.join("taken");
    std::fs::create_dir_all(&out).unwrap();
    std::fs::write(out.join("mine.txt"), "keep").unwrap();
    let e =
        import_hf::<Cpu>(&fixture("gpt2"), &out, &ImportOptions::default(), &device()).unwrap_err();
    assert!(e.to_string().contains("`force`"), "{e}");
    assert_eq!(
        std::fs::read_to_string(out.join("mine.txt")).unwrap(),
        "keep"
    );
}

#[test]
fn models_without_a_hugging_face_family_are_not_exported() {
    let s = Scratch::new("export-refused");
    let a = s.join("gpt2");
    import("gpt2", &a);
    // The papers' own family (LayerNorm + RoPE + GELU) has no Hugging Face counterpart here.
    let mut c = checkpoint::read_model_config(&a).unwrap();
    c.position = transformer::Position::Rope { base: 10_000.0 };
    let model = c.init::<Cpu>(&device()).unwrap();
    assert_eq!(
        interop::layout::dense_shapes(&c),
        interop::snapshot::shapes(&model)
    );
    let papers = s.join("papers");
    checkpoint::save_model(&papers, &model, &Default::default(), None).unwrap();
    let options = ExportOptions {
        dtype: WeightType::F32,
        force: false,
    };
    let out = s.join("out");
    let e = export_hf::<Cpu>(&papers, &out, &options, &device())
        .unwrap_err()
        .to_string();
    assert!(e.contains("learned positions"), "{e}");
    assert!(!out.exists());
}
