//! Property tests over every parser of a file a user hands in: token shards, `manifest.json`,
//! `tokenizer.json`, a run's `config.json`, model configs (TOML and JSON) and checkpoint folders
//! (`model.safetensors`, `model.json`, `state.json`, `optimizer.safetensors`). Valid files are
//! altered at random (seeded: byte flips, insertions, deletions, truncation; for JSON and TOML
//! also a value replaced by one of another type or out of range, a key removed or added); each
//! case must end in a value or an error whose message names the file, never a panic, and what
//! parses must be usable (read every token, encode text, validate, build the model) without
//! one.

use std::fmt::Display;
use std::fs;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;

use burn::module::Module;
use proptest::prelude::*;
use proptest::test_runner::{Config, RngAlgorithm, TestCaseError, TestRng, TestRunner};
use serde_json::{json, Value};

use crate::checkpoint;
use crate::data::Manifest;
use crate::optim::AdamW;
use crate::shard::TokenFile;
use crate::train::{self, Quiet, RunOptions, Start};
use crate::train_tests::{prepared, rng_lock, scratch, small_run};

type NB = burn::backend::NdArray<f32>;

/// A seeded runner: the same cases on every run, no failure files written.
fn runner(cases: u32) -> TestRunner {
    let config = Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    };
    TestRunner::new_with_rng(config, TestRng::deterministic_rng(RngAlgorithm::ChaCha))
}

/// One change to a file's bytes, at a position given as a fraction of its length.
#[derive(Clone, Debug)]
enum Edit {
    Flip(f64, u8),
    Insert(f64, Vec<u8>),
    Delete(f64, usize),
    Truncate(f64),
}

fn byte_edits() -> impl Strategy<Value = Vec<Edit>> {
    let edit = prop_oneof![
        (0.0..1.0f64, any::<u8>()).prop_map(|(p, b)| Edit::Flip(p, b)),
        (0.0..1.0f64, prop::collection::vec(any::<u8>(), 1..8))
            .prop_map(|(p, b)| Edit::Insert(p, b)),
        (0.0..1.0f64, 1..16usize).prop_map(|(p, n)| Edit::Delete(p, n)),
        (0.0..1.0f64).prop_map(Edit::Truncate),
    ];
    prop::collection::vec(edit, 1..4)
}

fn apply(bytes: &[u8], edits: &[Edit]) -> Vec<u8> {
    let mut b = bytes.to_vec();
    for e in edits {
        let at = |p: f64, len: usize| ((p * len as f64) as usize).min(len);
        match e {
            Edit::Flip(p, x) if !b.is_empty() => {
                let i = at(*p, b.len() - 1);
                b[i] ^= x | 1;
            }
            Edit::Insert(p, x) => {
                let i = at(*p, b.len());
                b.splice(i..i, x.iter().copied());
            }
            Edit::Delete(p, n) => {
                let i = at(*p, b.len());
                let j = (i + n).min(b.len());
                b.drain(i..j);
            }
            Edit::Truncate(p) => b.truncate(at(*p, b.len())),
            _ => {}
        }
    }
    b
}

/// One change to a JSON document: the `pick`-th value (depth first) replaced by a value of
/// another kind or range, removed from its object, or given an unknown sibling key.
#[derive(Clone, Debug)]
struct JsonEdit {
    pick: usize,
    kind: u8,
    with: usize,
}

fn json_edits() -> impl Strategy<Value = Vec<JsonEdit>> {
    prop::collection::vec(
        (any::<usize>(), 0..3u8, any::<usize>()).prop_map(|(pick, kind, with)| JsonEdit {
            pick,
            kind,
            with,
        }),
        1..3,
    )
}

fn replacements() -> Vec<Value> {
    vec![
        json!(0),
        json!(-1),
        json!(1),
        json!(3),
        json!(1e300),
        json!(-1e300),
        json!(u64::MAX),
        json!(i64::MIN),
        json!(4_294_967_296u64),
        json!(0.5),
        json!(""),
        json!("x"),
        json!("lowrank"),
        json!(null),
        json!([]),
        json!({}),
        json!(true),
        json!([1, 2, 3]),
        json!({"kind": "blockshuffle", "n_blocks": 7}),
    ]
}

/// Every path (object keys and array indices) of `v`, depth first.
fn paths(v: &Value, prefix: &mut Vec<Value>, out: &mut Vec<Vec<Value>>) {
    match v {
        Value::Object(map) => {
            for (k, child) in map {
                prefix.push(json!(k));
                out.push(prefix.clone());
                paths(child, prefix, out);
                prefix.pop();
            }
        }
        Value::Array(items) => {
            for (i, child) in items.iter().enumerate() {
                prefix.push(json!(i));
                out.push(prefix.clone());
                paths(child, prefix, out);
                prefix.pop();
            }
        }
        _ => {}
    }
}

fn apply_json(doc: &Value, edits: &[JsonEdit]) -> Value {
    let mut doc = doc.clone();
    let with = replacements();
    for e in edits {
        let mut all = Vec::new();
        paths(&doc, &mut Vec::new(), &mut all);
        if all.is_empty() {
            continue;
        }
        let path = &all[e.pick % all.len()];
        let (last, parent_path) = path.split_last().unwrap();
        let mut parent = &mut doc;
        for step in parent_path {
            parent = match step {
                Value::String(k) => &mut parent[k.as_str()],
                Value::Number(i) => &mut parent[i.as_u64().unwrap() as usize],
                _ => unreachable!(),
            };
        }
        match (e.kind, last, parent) {
            (1, Value::String(k), Value::Object(map)) => {
                map.remove(k);
            }
            (2, _, Value::Object(map)) => {
                map.insert("zz_unknown".into(), json!(1));
            }
            (_, Value::String(k), p) => p[k.as_str()] = with[e.with % with.len()].clone(),
            (_, Value::Number(i), p) => {
                p[i.as_u64().unwrap() as usize] = with[e.with % with.len()].clone()
            }
            _ => {}
        }
    }
    doc
}

/// Runs `f`: a panic fails the case; an error must name `file` (a file name, or a path that
/// contains it); a value is returned.
fn clean<T, E: Display>(
    file: &str,
    f: impl FnOnce() -> Result<T, E>,
) -> Result<Option<T>, TestCaseError> {
    match catch_unwind(AssertUnwindSafe(f)) {
        Err(panic) => {
            let msg = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            Err(TestCaseError::fail(format!("{file}: panicked: {msg}")))
        }
        Ok(Err(e)) => {
            let text = e.to_string();
            prop_assert!(
                text.contains(file),
                "the error does not name {file}: {text}"
            );
            Ok(None)
        }
        Ok(Ok(v)) => Ok(Some(v)),
    }
}

#[test]
fn altered_data_files_never_panic() {
    let dir = scratch("parse-data");
    let data = prepared(&dir);
    let manifest = Manifest::load(&data).unwrap();
    let shard_name = manifest.train.files[0].clone();
    let shard = data.join(&shard_name);
    let files = [
        ("shard", shard.clone(), fs::read(&shard).unwrap()),
        (
            "manifest",
            data.join("manifest.json"),
            fs::read(data.join("manifest.json")).unwrap(),
        ),
        (
            "tokenizer",
            data.join("tokenizer.json"),
            fs::read(data.join("tokenizer.json")).unwrap(),
        ),
    ];
    {
        for (what, path, good) in &files {
            let file = path.file_name().unwrap().to_string_lossy().into_owned();
            let check = |bytes: Vec<u8>| -> Result<(), TestCaseError> {
                fs::write(path, &bytes).unwrap();
                let result = use_data(&data, &shard, what, &file);
                fs::write(path, good).unwrap();
                result
            };
            let mut r = runner(96);
            r.run(&byte_edits(), |edits| check(apply(good, &edits)))
                .unwrap_or_else(|e| panic!("{what}: {e}"));
            if *what != "shard" {
                let doc: Value = serde_json::from_slice(good).unwrap();
                let mut r = runner(96);
                r.run(&json_edits(), |edits| {
                    check(serde_json::to_vec(&apply_json(&doc, &edits)).unwrap())
                })
                .unwrap_or_else(|e| panic!("{what} (JSON edits): {e}"));
            }
        }
    }
}

/// Opens the data as training does and uses what opens.
fn use_data(data: &Path, shard: &Path, what: &str, file: &str) -> Result<(), TestCaseError> {
    if what == "shard" {
        if let Some(f) = clean(file, || TokenFile::open_shard(shard))? {
            let _ = f.read(0, f.len());
        }
    }
    let Some(manifest) = clean(file, || Manifest::load(data))? else {
        return Ok(());
    };
    if let Some(mut loader) = clean(file, || manifest.loader(data, &manifest.train, 16, 1, true))? {
        for _ in 0..3 {
            let batch = loader.next_batch(2);
            prop_assert!(batch.iter().all(|w| w.len() == 17));
        }
    }
    if let Some(tokenizer) = clean(file, || manifest.load_tokenizer(data))? {
        if let Ok(encoding) = tokenizer.encode("the cat sees the river", false) {
            let _ = tokenizer.decode(encoding.get_ids(), true);
        }
    }
    Ok(())
}

#[test]
fn altered_run_configs_and_checkpoints_never_panic() {
    let _lock = rng_lock();
    let dir = scratch("parse-run");
    let data = prepared(&dir);
    let run = dir.join("run");
    // Two steps planned, a checkpoint after the first: a resume loads everything and trains.
    let config = small_run(&data, 2);
    let first = RunOptions {
        stop_at_step: Some(1),
        ..RunOptions::default()
    };
    train::train::<burn::backend::Autodiff<NB>>(
        Start::Fresh(config),
        &run,
        first,
        &Default::default(),
        &mut Quiet,
    )
    .unwrap();
    let ckpt = checkpoint::list(&run.join("checkpoints")).pop().unwrap().1;
    let ckpt_name = ckpt.file_name().unwrap().to_owned();
    let files = [
        Path::new("config.json").to_path_buf(),
        Path::new("checkpoints")
            .join(&ckpt_name)
            .join(checkpoint::MODEL_WEIGHTS),
        Path::new("checkpoints")
            .join(&ckpt_name)
            .join(checkpoint::MODEL_CONFIG),
        Path::new("checkpoints")
            .join(&ckpt_name)
            .join(checkpoint::STATE),
        Path::new("checkpoints")
            .join(&ckpt_name)
            .join(checkpoint::OPTIMIZER),
    ];
    let case = dir.join("case");
    {
        for rel in &files {
            let good = fs::read(run.join(rel)).unwrap();
            let file = rel.file_name().unwrap().to_string_lossy().into_owned();
            // Each case alters the file in a fresh copy of the run.
            let check = |bytes: Vec<u8>| -> Result<(), TestCaseError> {
                let _ = fs::remove_dir_all(&case);
                copy_dir(&run, &case);
                fs::write(case.join(rel), &bytes).unwrap();
                use_run(&case, &case.join("checkpoints").join(&ckpt_name), &file)
            };
            let mut r = runner(48);
            r.run(&byte_edits(), |edits| check(apply(&good, &edits)))
                .unwrap_or_else(|e| panic!("{file}: {e}"));
            // JSON files, and the JSON header of the safetensors files.
            let (doc, rest) = json_part(&good);
            let mut r = runner(48);
            r.run(&json_edits(), |edits| {
                let text = serde_json::to_vec(&apply_json(&doc, &edits)).unwrap();
                check(with_json_part(&good, text, rest))
            })
            .unwrap_or_else(|e| panic!("{file} (JSON edits): {e}"));
            // Consistent safetensors files holding the wrong tensors.
            if rest.is_some() {
                let mut r = runner(48);
                r.run(&tensor_edits(), |edits| check(apply_tensors(&good, &edits)))
                    .unwrap_or_else(|e| panic!("{file} (tensor edits): {e}"));
            }
        }
    }
}

/// One change to a safetensors file that keeps it a valid safetensors file: the `pick`-th
/// tensor removed, duplicated under another name, reshaped (same number of elements: flat,
/// or its dimensions reversed), stored as f64 / f16 / i32, or renamed.
#[derive(Clone, Debug)]
struct TensorEdit {
    pick: usize,
    kind: u8,
}

fn tensor_edits() -> impl Strategy<Value = Vec<TensorEdit>> {
    prop::collection::vec(
        (any::<usize>(), 0..7u8).prop_map(|(pick, kind)| TensorEdit { pick, kind }),
        1..3,
    )
}

fn apply_tensors(bytes: &[u8], edits: &[TensorEdit]) -> Vec<u8> {
    use safetensors::{Dtype, SafeTensors};
    let (_, meta) = SafeTensors::read_metadata(bytes).unwrap();
    let st = SafeTensors::deserialize(bytes).unwrap();
    let mut tensors: Vec<(String, Dtype, Vec<usize>, Vec<u8>)> = st
        .tensors()
        .into_iter()
        .map(|(n, v)| (n, v.dtype(), v.shape().to_vec(), v.data().to_vec()))
        .collect();
    tensors.sort_by(|a, b| a.0.cmp(&b.0));
    for e in edits {
        if tensors.is_empty() {
            break;
        }
        let i = e.pick % tensors.len();
        match e.kind {
            0 => {
                tensors.remove(i);
            }
            1 => {
                let mut extra = tensors[i].clone();
                extra.0.push_str(".extra");
                tensors.push(extra);
            }
            2 => {
                let n = tensors[i].2.iter().product();
                tensors[i].2 = vec![n];
            }
            3 => tensors[i].2.reverse(),
            4 if tensors[i].1 == Dtype::F32 => {
                let t = &mut tensors[i];
                t.3 = t
                    .3
                    .chunks(4)
                    .flat_map(|c| (f32::from_le_bytes(c.try_into().unwrap()) as f64).to_le_bytes())
                    .collect();
                t.1 = Dtype::F64;
            }
            5 if tensors[i].1 == Dtype::F32 => {
                let t = &mut tensors[i];
                t.3 =
                    t.3.chunks(4)
                        .flat_map(|c| {
                            burn::tensor::f16::from_f32(f32::from_le_bytes(c.try_into().unwrap()))
                                .to_le_bytes()
                        })
                        .collect();
                t.1 = Dtype::F16;
            }
            6 if tensors[i].1 == Dtype::F32 => tensors[i].1 = Dtype::I32,
            _ => tensors[i].0.push('x'),
        }
    }
    let views: Vec<(String, safetensors::tensor::TensorView<'_>)> = tensors
        .iter()
        .map(|(n, d, s, b)| {
            (
                n.clone(),
                safetensors::tensor::TensorView::new(*d, s.clone(), b).unwrap(),
            )
        })
        .collect();
    safetensors::serialize(views, meta.metadata().clone()).unwrap()
}

fn copy_dir(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for entry in fs::read_dir(from).unwrap().flatten() {
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// The JSON of a file: the whole file, or a safetensors file's header (and where its data
/// starts).
fn json_part(bytes: &[u8]) -> (Value, Option<usize>) {
    if let Ok(v) = serde_json::from_slice(bytes) {
        return (v, None);
    }
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    (
        serde_json::from_slice(&bytes[8..8 + n]).unwrap(),
        Some(8 + n),
    )
}

fn with_json_part(bytes: &[u8], json: Vec<u8>, data_start: Option<usize>) -> Vec<u8> {
    match data_start {
        None => json,
        Some(start) => {
            let mut out = (json.len() as u64).to_le_bytes().to_vec();
            out.extend(json);
            out.extend(&bytes[start..]);
            out
        }
    }
}

/// Reads the checkpoint as `strata eval` and `generate` do, then resumes the run (which loads
/// the settings, the weights and the optimizer state, and trains a step).
fn use_run(run: &Path, ckpt: &Path, file: &str) -> Result<(), TestCaseError> {
    clean(file, || checkpoint::read_state(ckpt))?;
    let device = Default::default();
    if let Some((model, _)) = clean(file, || checkpoint::load_model::<NB>(ckpt, &device))? {
        let mut optim = AdamW::<NB>::new(Default::default());
        clean(file, || {
            optim.load(&ckpt.join(checkpoint::OPTIMIZER), &device)
        })?;
        let _ = model.num_params();
    }
    clean(file, || {
        train::train::<burn::backend::Autodiff<NB>>(
            Start::Resume,
            run,
            RunOptions::default(),
            &device,
            &mut Quiet,
        )
    })?;
    Ok(())
}

#[test]
fn altered_model_configs_never_panic() {
    let dir = scratch("parse-model");
    let zoo = transformer::zoo::Zoo::builtin().unwrap();
    let good = zoo.get("tiny-lowrank-r32").unwrap().config.clone();
    let doc = serde_json::to_value(&good).unwrap();
    let json_path = dir.join("model.json");
    let toml_path = dir.join("model.toml");
    let check = |path: &Path, bytes: Vec<u8>| -> Result<(), TestCaseError> {
        fs::write(path, &bytes).unwrap();
        let file = path.file_name().unwrap().to_string_lossy().into_owned();
        let name = path.to_string_lossy().into_owned();
        if let Some(entry) = clean(&file, || transformer::zoo::resolve_model(&zoo, &name))? {
            // What parses is validated, and accounted for without overflowing.
            if entry.config.validate().is_ok() {
                clean(&file, || {
                    let p = transformer::accounting::params(&entry.config);
                    let f = transformer::accounting::forward_flops(
                        &entry.config,
                        entry.config.max_seq_len.min(4096),
                        false,
                        false,
                    );
                    Ok::<_, String>((p, f))
                })?;
            }
        }
        Ok(())
    };
    {
        let mut r = runner(128);
        r.run(&json_edits(), |edits| {
            let edited = apply_json(&doc, &edits);
            check(&json_path, serde_json::to_vec(&edited).unwrap())?;
            // The same document as TOML (where TOML can hold it).
            if let Ok(text) = toml::to_string(&edited) {
                check(&toml_path, text.into_bytes())?;
            }
            Ok(())
        })
        .unwrap_or_else(|e| panic!("model config: {e}"));
        let text = toml::to_string(&good).unwrap().into_bytes();
        let mut r = runner(128);
        r.run(&byte_edits(), |edits| {
            check(&toml_path, apply(&text, &edits))
        })
        .unwrap_or_else(|e| panic!("model config (bytes): {e}"));
    }
}
