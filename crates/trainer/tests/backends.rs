//! Cross-backend equivalence: the same seeded weights give the same outputs on the CPU
//! (burn-ndarray) and on a GPU backend. Built only with `--features test-wgpu` (any GPU, or
//! Debian's software Vulkan driver in CI) or `--features test-cuda` (NVIDIA):
//!
//! ```sh
//! cargo test -p trainer --features test-wgpu --test backends
//! ```
//!
//! Shapes stay small: on a software driver, compiling each shader dominates.
#![cfg(any(feature = "test-wgpu", feature = "test-cuda"))]

use std::path::{Path, PathBuf};

use burn::backend::Autodiff;
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::{DType, Distribution, Int, Tensor, TensorData};
use corpus::{self as data, Manifest, PrepareConfig, TokenizerSource};
use structured_linear::{SelfGuided, Structure, StructuredLinearConfig};
use test_support::{
    assert_close, copy_weights, max_abs_diff, pattern_corpus, scalar, small_model, values, Cpu,
    Gpu, Scratch,
};
use trainer::optim::{global_grad_norm, AdamW, AdamWConfig};
use trainer::train::{
    self, apply_update, micro_step, Budget, Compute, Quiet, RunOptions, Start, TrainConfig,
};
use transformer::Precision;
use transformer::{KvCache, Transformer, TransformerConfig};

/// `gpu_kernels::layer_norm` (one kernel on the GPU backend) against burn's decomposition on
/// the CPU: rows shorter and longer than a cube, with and without the shift, and in the half
/// types the device has.
#[test]
fn the_layer_norm_kernel_matches_the_cpu() {
    let (cpu, gpu) = (Default::default(), Default::default());
    let _seed = test_support::seeded::<Cpu>(&cpu, 11);
    for (rows, d) in [(1, 48), (7, 300), (3, 1000)] {
        let x = Tensor::<Cpu, 3>::random([1, rows, d], Distribution::Normal(0.5, 2.0), &cpu);
        let gamma = Tensor::<Cpu, 1>::random([d], Distribution::Normal(1.0, 0.3), &cpu);
        let beta = Tensor::<Cpu, 1>::random([d], Distribution::Normal(0.0, 0.3), &cpu);
        for with_beta in [true, false] {
            let want = values(gpu_kernels::layer_norm(
                x.clone(),
                gamma.clone(),
                with_beta.then(|| beta.clone()),
                1e-5,
            ));
            for dtype in [DType::F32, DType::F16, DType::BF16] {
                if !Gpu::supports_dtype(&gpu, dtype) {
                    continue;
                }
                let on_gpu = |t: Tensor<Cpu, 1>| Tensor::<Gpu, 1>::from_data(t.to_data(), &gpu);
                let xg = Tensor::<Gpu, 3>::from_data(x.to_data(), &gpu).cast(dtype);
                let got = gpu_kernels::layer_norm(
                    xg,
                    on_gpu(gamma.clone()).cast(dtype),
                    with_beta.then(|| on_gpu(beta.clone()).cast(dtype)),
                    1e-5,
                );
                assert_eq!(got.dtype(), dtype);
                let tol = if dtype == DType::F32 { 1e-4 } else { 0.05 };
                let what = format!("{rows}x{d}, beta {with_beta}, {dtype:?}");
                assert_close(&values(got.cast(DType::F32)), &want, tol, &what);
            }
        }
    }
}

/// The layer-norm node under autodiff (the kernel forward, the two backward kernels) against
/// burn-autodiff's node on the CPU: the output and the gradients of the input, the scale and
/// the shift.
#[test]
fn the_layer_norm_node_matches_the_cpu_in_its_gradients() {
    let (cpu, gpu) = (Default::default(), Default::default());
    let _seed = test_support::seeded::<Cpu>(&cpu, 12);
    let normal = |m, s| Distribution::Normal(m, s);
    let x = Tensor::<Cpu, 3>::random([3, 3, 300], normal(0.5, 2.0), &cpu);
    let w = Tensor::<Cpu, 3>::random([3, 3, 300], normal(0.0, 1.0), &cpu);
    let gamma = Tensor::<Cpu, 1>::random([300], normal(1.0, 0.3), &cpu);
    let beta = Tensor::<Cpu, 1>::random([300], normal(0.0, 0.3), &cpu);
    for with_beta in [true, false] {
        let inputs = (&x, &w, &gamma, with_beta.then_some(&beta));
        let got = layer_norm_pass::<Autodiff<Gpu>>(inputs, &gpu);
        let want = layer_norm_pass::<Autodiff<Cpu>>(inputs, &cpu);
        for (i, (got, want)) in got.iter().zip(&want).enumerate() {
            assert_close(got, want, 2e-4, &format!("output {i}, beta {with_beta}"));
        }
    }
}

/// `y = layer_norm(x)` and the gradients of `sum(y * w)` with respect to `x`, gamma and (when
/// given) beta, on `B`.
fn layer_norm_pass<B: AutodiffBackend>(
    (x, w, gamma, beta): (
        &Tensor<Cpu, 3>,
        &Tensor<Cpu, 3>,
        &Tensor<Cpu, 1>,
        Option<&Tensor<Cpu, 1>>,
    ),
    device: &B::Device,
) -> Vec<Vec<f64>> {
    let x = Tensor::<B, 3>::from_data(x.to_data(), device).require_grad();
    let leaf = |t: &Tensor<Cpu, 1>| Tensor::<B, 1>::from_data(t.to_data(), device).require_grad();
    let (gamma, beta) = (leaf(gamma), beta.map(leaf));
    let y = gpu_kernels::layer_norm(x.clone(), gamma.clone(), beta.clone(), 1e-5);
    let grads = (y.clone() * Tensor::from_data(w.to_data(), device))
        .sum()
        .backward();
    let mut out = vec![values(y.inner()), values(x.grad(&grads).unwrap())];
    out.push(values(gamma.grad(&grads).unwrap()));
    out.extend(beta.map(|b| values(b.grad(&grads).unwrap())));
    out
}

#[test]
fn structured_layers_match_the_cpu() {
    let (cpu, gpu) = (Default::default(), Default::default());
    Cpu::seed(&cpu, 1);
    let x = Tensor::<Cpu, 3>::random([2, 5, 32], Distribution::Normal(0.0, 1.0), &cpu);
    let xg = Tensor::<Gpu, 3>::from_data(x.to_data(), &gpu);
    for (d_out, structure) in [
        (64, Structure::Dense),
        (64, Structure::LowRank { rank: 8 }),
        (
            64,
            Structure::BlockDense {
                n_blocks: 2,
                rank: 8,
            },
        ),
        (64, Structure::BlockShuffle { n_blocks: 4 }),
        (16, Structure::BlockShuffle { n_blocks: 2 }),
    ] {
        let config = StructuredLinearConfig::new(32, d_out).with_structure(structure);
        let layer = config.init::<Cpu>(&cpu).unwrap();
        let mut on_gpu = config.init::<Gpu>(&gpu).unwrap();
        copy_weights(&layer, &mut on_gpu);
        let want = values(layer.forward(x.clone()));
        let got = values(on_gpu.forward(xg.clone()));
        assert_close(&want, &got, 1e-4, &format!("{structure:?}"));
        let merged = max_abs_diff(
            &values(layer.merged_weight()),
            &values(on_gpu.merged_weight()),
        );
        assert!(merged < 1e-5, "{structure:?} merge: {merged}");
        // The self-guided mix too.
        let mut sg = SelfGuided::guided(layer, false);
        let mut sg_gpu = SelfGuided::guided(on_gpu, false);
        sg.set_alpha(0.3).unwrap();
        sg_gpu.set_alpha(0.3).unwrap();
        let d = max_abs_diff(
            &values(sg.forward(x.clone())),
            &values(sg_gpu.forward(xg.clone())),
        );
        assert!(d < 1e-4, "{structure:?} guided: {d}");
    }
}

/// The harness's shrunk model as GQA (2 kv heads) with LowRank FFN and LowRank attention (LPA) projections.
fn small_config(vocab: usize) -> TransformerConfig {
    let mut c: TransformerConfig = small_model();
    c.vocab_size = vocab;
    c.init_std = 0.02;
    c.n_kv_heads = 2;
    c.ffn.fc1 = Structure::LowRank { rank: 8 };
    c.ffn.fc2 = Structure::LowRank { rank: 8 };
    c.attention.q = Structure::LowRank { rank: 8 };
    c.attention.o = Structure::LowRank { rank: 8 };
    c
}

fn tokens<B: Backend>(
    batch: usize,
    len: usize,
    vocab: usize,
    device: &B::Device,
) -> Tensor<B, 2, Int> {
    let ids: Vec<i64> = (0..batch * len)
        .map(|i| ((i * 37 + 11) % vocab) as i64)
        .collect();
    Tensor::from_data(TensorData::new(ids, [batch, len]), device)
}

#[test]
fn model_logits_and_cached_decoding_match_the_cpu() {
    let (cpu, gpu) = (Default::default(), Default::default());
    let config = small_config(64);
    Cpu::seed(&cpu, 2);
    let model: Transformer<Cpu> = config.init(&cpu).unwrap();
    let mut on_gpu: Transformer<Gpu> = config.init(&gpu).unwrap();
    copy_weights(&model, &mut on_gpu);
    let want = values(model.forward(tokens(2, 12, 64, &cpu)).unwrap());
    let got = values(on_gpu.forward(tokens(2, 12, 64, &gpu)).unwrap());
    assert_close(&want, &got, 1e-3, "logits");
    // Pre-merged on the GPU: the same function.
    let merged = values(on_gpu.merged().forward(tokens(2, 12, 64, &gpu)).unwrap());
    assert_close(&want, &merged, 1e-3, "merged");
    // Cached decoding on the GPU: a prefill of 8, then one token at a time.
    let all = tokens::<Gpu>(2, 12, 64, &gpu);
    let mut cache = KvCache::new(&config);
    let mut parts = vec![on_gpu
        .forward_cached(all.clone().narrow(1, 0, 8), &mut cache)
        .unwrap()];
    for t in 8..12 {
        parts.push(
            on_gpu
                .forward_cached(all.clone().narrow(1, t, 1), &mut cache)
                .unwrap(),
        );
    }
    let cached = values(Tensor::cat(parts, 1));
    assert_close(&got, &cached, 1e-3, "cached");
}

#[test]
fn training_steps_match_the_cpu() {
    let (cpu, gpu) = (Default::default(), Default::default());
    let config = small_config(64);
    Cpu::seed(&cpu, 3);
    let mut model: Transformer<Autodiff<Cpu>> = config.init(&cpu).unwrap();
    let mut on_gpu: Transformer<Autodiff<Gpu>> = config.init(&gpu).unwrap();
    copy_weights(&model, &mut on_gpu);
    let windows: Vec<Vec<u32>> = (0..4)
        .map(|b| (0..17).map(|i| ((i * 5 + b * 13) % 64) as u32).collect())
        .collect();
    let mut opt_cpu = AdamW::<Cpu>::new(AdamWConfig::default());
    let mut opt_gpu = AdamW::<Gpu>::new(AdamWConfig::default());
    let mut losses = Vec::new();
    for step in 0..4 {
        let (lc, gc) = micro_step(&model, &windows, 1, Compute::F32, &cpu).unwrap();
        let (lg, gg) = micro_step(&on_gpu, &windows, 1, Compute::F32, &gpu).unwrap();
        let (lc, lg) = (scalar(lc), scalar(lg));
        assert!((lc - lg).abs() < 1e-3, "step {step}: loss {lc} vs {lg}");
        let (nc, ng);
        let (uc, ug);
        (model, uc) = apply_update(model, &mut opt_cpu, &gc, 1e-2, 1.0, Compute::F32);
        (on_gpu, ug) = apply_update(on_gpu, &mut opt_gpu, &gg, 1e-2, 1.0, Compute::F32);
        (nc, ng) = (scalar(uc.norm), scalar(ug.norm));
        assert!(
            (nc - ng).abs() < 1e-3 * nc.max(1.0),
            "step {step}: grad norm {nc} vs {ng}"
        );
        losses.push(lg);
    }
    assert!(
        losses[3] < losses[0],
        "training lowers the loss: {losses:?}"
    );
}

/// bf16 / f16 passes on f32 master weights (where the GPU has the type): the loss and the
/// gradient norm stay close to the CPU's f32 ones.
#[test]
fn half_precision_passes_track_the_cpu_f32_ones() {
    let (cpu, gpu) = (Default::default(), Default::default());
    let config = small_config(64);
    Cpu::seed(&cpu, 5);
    let model: Transformer<Autodiff<Cpu>> = config.init(&cpu).unwrap();
    let mut on_gpu: Transformer<Autodiff<Gpu>> = config.init(&gpu).unwrap();
    copy_weights(&model, &mut on_gpu);
    let windows: Vec<Vec<u32>> = (0..4)
        .map(|b| (0..17).map(|i| ((i * 3 + b * 11) % 64) as u32).collect())
        .collect();
    let (want_loss, g) = micro_step(&model, &windows, 1, Compute::F32, &cpu).unwrap();
    let want_loss = scalar(want_loss);
    let want_norm = scalar(global_grad_norm(&model, &g, &cpu));
    for precision in [Precision::Bf16, Precision::F16] {
        if let Err(e) = precision.check::<Autodiff<Gpu>>(&gpu) {
            eprintln!("skipped: {e}");
            continue;
        }
        let loss_scale = if precision.scaled() { 1024.0 } else { 1.0 };
        let compute = Compute {
            precision,
            loss_scale,
            skip_nonfinite: false,
        };
        let (loss, g) = micro_step(&on_gpu, &windows, 1, compute, &gpu).unwrap();
        let loss = scalar(loss);
        let norm = scalar(global_grad_norm(&on_gpu, &g, &gpu)) / loss_scale;
        assert!(
            (loss - want_loss).abs() < 0.02 * want_loss,
            "{precision:?}: loss {loss} vs {want_loss}"
        );
        assert!(
            (norm - want_norm).abs() < 0.05 * want_norm,
            "{precision:?}: gradient norm {norm} vs {want_norm}"
        );
    }
}

fn scratch(name: &str) -> Scratch {
    Scratch::new(&format!("backends-{name}"))
}

fn prepared(dir: &Path) -> PathBuf {
    let text = pattern_corpus(dir, 20, 120);
    let mut c = PrepareConfig::new(vec![text], dir.join("data"));
    c.tokenizer = TokenizerSource::Train { vocab_size: 300 };
    data::prepare(&c).unwrap();
    dir.join("data")
}

#[test]
fn the_training_loop_runs_on_the_gpu() {
    let dir = scratch("loop");
    let data = prepared(&dir);
    let manifest = Manifest::load(&data).unwrap();
    let mut config = TrainConfig::new(
        "small",
        small_config(manifest.vocab_size),
        data,
        Budget::Steps(3),
    );
    config.batch_size = 2;
    config.lr = 1e-2;
    config.eval_batches = 2;
    config.sgt = Some(trainer::schedule::SgtConfig {
        mode: trainer::schedule::SgtMode::Fixedstep,
        ratio: 0.5,
        shape: trainer::schedule::AlphaShape::Cosine,
        reduce_flop: false,
    });
    let gpu = Default::default();
    let summary = train::train::<Autodiff<Gpu>>(
        Start::Fresh(config.clone()),
        &dir.join("run"),
        RunOptions::default(),
        &gpu,
        &mut Quiet,
    )
    .unwrap();
    assert_eq!(summary.steps, 3);
    assert!(summary.val_loss.unwrap().is_finite());
    // The checkpoint evaluates to the same loss on the CPU.
    let (model, _) =
        trainer::checkpoint::load_model::<Cpu>(&summary.checkpoint, &Default::default()).unwrap();
    let val = corpus::WindowLoader::new(
        manifest.open(&config.data, &manifest.validation).unwrap(),
        16,
        0,
        false,
    )
    .unwrap();
    let r = transformer::evaluate(&model, val.batches_in_order(2, 2), &Default::default()).unwrap();
    assert!(
        (r.val_loss - summary.val_loss.unwrap()).abs() < 1e-3,
        "{} vs {:?}",
        r.val_loss,
        summary.val_loss
    );
}
