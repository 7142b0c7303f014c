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
use proptest::test_runner::TestCaseError;
use serde_json::Value;

use crate::run::checkpoint;
use crate::run::train::{self, Quiet, RunOptions, Start};
use crate::step::optim::AdamW;
use crate::train_tests::{prepared, rng_lock, scratch, small_run};
use corpus::shard::TokenFile;
use corpus::Manifest;

mod mutate;
use mutate::*;

type NB = burn::backend::NdArray<f32>;
/// Runs `f`: a panic fails the case; an error must name `file` (a file name, or a path that
/// contains it); a value is returned.
fn clean<T, E: Display>(
    file: &str,
    f: impl FnOnce() -> Result<T, E>,
) -> Result<Option<T>, TestCaseError> {
    match catch_unwind(AssertUnwindSafe(f)) {
        Err(panic) => Err(TestCaseError::fail(format!(
            "{file}: panicked: {}",
            crate::error::panic_message(panic.as_ref())
        ))),
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
/// Copies the folder `from` to `to`, subfolders included.
pub(crate) fn copy_dir(from: &Path, to: &Path) {
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
        Start::resume(run).and_then(|start| {
            train::train::<burn::backend::Autodiff<NB>>(
                start,
                run,
                RunOptions::default(),
                &device,
                &mut Quiet,
            )
        })
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
