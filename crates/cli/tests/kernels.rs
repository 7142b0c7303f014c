//! Kernel compilation counts on wgpu (CI: Debian's software Vulkan driver, which runs the same
//! cubecl machinery as a real GPU): a training step and a decoding step past the fourth compile
//! no new kernel, and a second run with the same cache folder compiles at most 5% of the
//! kernels the first compiled (`--features vulkan`: SPIR-V kernels persist; with WGSL only the
//! autotune results do, so there the second run compiles fewer with `--features autotune` and
//! the same kernels without).
//!
//! The in-process checks are one test on purpose: the count is per process, so nothing else
//! may compile kernels while it runs (this file is its own test binary).
#![cfg(feature = "wgpu")]

use std::process::Command;

use burn::backend::Autodiff;
use burn::module::AutodiffModule;
use burn::tensor::backend::Backend;
use burn::tensor::{Int, Tensor, TensorData};
use burn_wgpu::Wgpu;
use gpu_setup::{configure, Options, Runtime};
use test_support::{pattern_corpus, Scratch};
use trainer::optim::{AdamW, AdamWConfig};
use trainer::train::{apply_update, micro_step, Compute};
use transformer::zoo::Zoo;
use transformer::{KvCache, Transformer};

type Gpu = Wgpu;

/// tiny-lowrank-r32 with a 64-token vocabulary and a context of 32.
fn tiny() -> transformer::TransformerConfig {
    let mut c = Zoo::builtin()
        .unwrap()
        .get("tiny-lowrank-r32")
        .unwrap()
        .config
        .clone();
    c.vocab_size = 64;
    c.max_seq_len = 32;
    c
}

#[test]
fn steady_state_training_and_decoding_compile_no_new_kernel() {
    let cache = Scratch::new("kernels-inproc");
    let setup = configure(
        Runtime::Wgpu,
        &Options {
            root: Some(cache.to_path_buf()),
            count_compiles: true,
        },
    )
    .unwrap();
    let device = Default::default();
    let count = || {
        Gpu::sync(&device).unwrap();
        setup.settled_compiled_kernels()
    };

    // Training: the same batch shape every step.
    Gpu::seed(&device, 3);
    let mut model: Transformer<Autodiff<Gpu>> = tiny().init(&device).unwrap();
    let mut optim = AdamW::<Gpu>::new(AdamWConfig::default());
    let windows: Vec<Vec<u32>> = (0..4)
        .map(|b| (0..33).map(|i| ((i * 5 + b * 13) % 64) as u32).collect())
        .collect();
    let mut after = Vec::new();
    for step in 1..=12 {
        let (_, grads) = micro_step(&model, &windows, 1, Compute::F32, &device).unwrap();
        (model, _) = apply_update(model, &mut optim, &grads, 1e-3, 1.0, Compute::F32);
        if step % 2 == 0 {
            after.push(count());
        }
    }
    eprintln!("training: kernels after steps 2, 4, .., 12: {after:?}");
    assert!(after[0] > 0, "the log counts compilations");
    assert_eq!(after[5], after[2], "steps 7-12 compiled new kernels");

    // Decoding: a prefill, then one token at a time through a cache of fixed capacity.
    let model = model.valid();
    let mut cache = KvCache::with_capacity(model.config(), 24).unwrap();
    let ids = |n: usize, salt: usize| {
        let v: Vec<i64> = (0..n).map(|i| ((i * 7 + salt) % 64) as i64).collect();
        Tensor::<Gpu, 2, Int>::from_data(TensorData::new(v, [1, n]), &device)
    };
    let _ = model
        .forward_cached(ids(4, 0), &mut cache)
        .unwrap()
        .into_data();
    let mut decoded = Vec::new();
    for step in 1..=16 {
        let logits = model.forward_cached(ids(1, step), &mut cache).unwrap();
        let _ = logits.into_data();
        if step % 4 == 0 {
            decoded.push(count());
        }
    }
    eprintln!("decoding: kernels after steps 4, 8, 12, 16: {decoded:?}");
    assert_eq!(
        decoded[3], decoded[0],
        "decoding steps 5-16 compiled new kernels"
    );
}

/// `strata train --backend wgpu` with kernel counting, in `cache`; the number of kernels it
/// reports it compiled.
fn train_and_count(dir: &std::path::Path, cache: &std::path::Path, run: &str) -> usize {
    let data = dir.join("data");
    let out = Command::new(env!("CARGO_BIN_EXE_strata"))
        .args(["train", "--model", "tiny-lowrank-r32", "--data"])
        .arg(&data)
        .arg("--out")
        .arg(dir.join(run))
        .args(["--steps", "3", "--batch-size", "2", "--seq-len", "32"])
        .args(["--eval-batches", "1", "--backend", "wgpu", "--json"])
        .env("STRATA_CACHE_DIR", cache)
        .env("STRATA_COUNT_KERNELS", "1")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    let line = err
        .lines()
        .find(|l| l.starts_with("compiled "))
        .unwrap_or_else(|| panic!("no kernel count in: {err}"));
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

#[test]
fn a_second_run_with_the_same_cache_compiles_few_kernels() {
    let dir = Scratch::new("kernels-cache");
    let text = pattern_corpus(&dir, 20, 200);
    let prepare = Command::new(env!("CARGO_BIN_EXE_strata"))
        .args(["data", "prepare", "--input"])
        .arg(&text)
        .arg("--out")
        .arg(dir.join("data"))
        .args(["--vocab-size", "300"])
        .output()
        .unwrap();
    assert!(
        prepare.status.success(),
        "{}",
        String::from_utf8_lossy(&prepare.stderr)
    );
    let cache = dir.join("cache");
    let first = train_and_count(&dir, &cache, "first");
    let second = train_and_count(&dir, &cache, "second");
    eprintln!("first run: {first} kernels compiled, second run: {second}");
    assert!(first > 0);
    if cfg!(feature = "vulkan") {
        // SPIR-V: compiled kernels persist in the cache folder.
        assert!(
            second * 20 <= first,
            "the second run compiled {second} kernels, more than 5% of the first's {first}"
        );
    } else if cfg!(feature = "autotune") {
        // WGSL: cubecl keeps no compiled kernels, only autotune results, whose candidates
        // the second run does not compile again.
        assert!(
            second < first,
            "the second run compiled {second} kernels, the first {first}"
        );
    } else {
        // WGSL without autotune: nothing persists, and the same run compiles the same kernels.
        assert_eq!(
            second, first,
            "two identical runs compiled different kernels"
        );
    }
}
