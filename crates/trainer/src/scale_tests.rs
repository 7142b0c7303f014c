//! Tests of mixed precision (bf16 / f16 compute on f32 master weights, f16 loss scaling) on the
//! CPU's burn-flex backend, and of data-parallel training on replicas sharing the CPU device
//! (burn's collective all-reduce), against single-device f32 runs.

use crate::run::train::FaultPlan;
use std::fs;
use std::path::Path;

use burn::backend::{Autodiff, Flex};
use burn::module::{Module, ModuleVisitor, Param};
use burn::optim::GradientsParams;
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::{DType, Tensor};
use transformer::Transformer;

use crate::run::checkpoint::{self, TrainState};
use crate::run::metrics::StepRecord;
use crate::run::train::{self, apply_update, micro_step, Compute, Quiet, RunOptions, Start};
use crate::step::optim::{AdamW, AdamWConfig};
use crate::step::precision::LossScaler;
use crate::step::schedule::{AlphaShape, SgtConfig, SgtMode};
use crate::train_tests::{err_text, losses, prepared, rng_lock, scratch, small_model, small_run};
use test_support::scalar;
use transformer::precision::{cast_params, Precision};

type TB = Autodiff<burn::backend::NdArray<f32>>;
type FB = Autodiff<Flex>;

/// Every parameter's gradient, flattened, in visiting order, with its dtype.
fn gradients<B: AutodiffBackend>(
    model: &Transformer<B>,
    grads: &GradientsParams,
) -> Vec<(DType, Vec<f32>)> {
    struct Collect<'a>(&'a GradientsParams, Vec<(DType, Vec<f32>)>);
    impl<B: AutodiffBackend> ModuleVisitor<B> for Collect<'_> {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
            let g = self
                .0
                .get::<B::InnerBackend, D>(param.id)
                .expect("a gradient");
            let dtype = g.dtype();
            let values = g.into_data().convert::<f32>().to_vec::<f32>().unwrap();
            self.1.push((dtype, values));
        }
    }
    let mut c = Collect(grads, Vec::new());
    model.visit(&mut c);
    c.1
}

fn cosine(a: &[(DType, Vec<f32>)], b: &[(DType, Vec<f32>)]) -> f64 {
    let (mut dot, mut na, mut nb) = (0.0f64, 0.0f64, 0.0f64);
    for ((_, x), (_, y)) in a.iter().zip(b) {
        for (&x, &y) in x.iter().zip(y) {
            dot += x as f64 * y as f64;
            na += x as f64 * x as f64;
            nb += y as f64 * y as f64;
        }
    }
    dot / (na.sqrt() * nb.sqrt())
}

fn windows(vocab: usize) -> Vec<Vec<u32>> {
    (0..4)
        .map(|b| (0..33).map(|i| ((i * 7 + b * 31) % vocab) as u32).collect())
        .collect()
}

#[test]
fn half_precision_passes_give_f32_gradients_close_to_f32_ones() {
    let device = Default::default();
    let model: Transformer<FB> = small_model(320).init(&device).unwrap();
    let w = windows(320);
    let (loss32, g32) = micro_step(&model, &w, 1, Compute::F32, &device).unwrap();
    let loss32 = scalar(loss32);
    let want = gradients(&model, &g32);
    for (precision, scale, tol) in [
        (Precision::Bf16, 1.0, 0.02),
        (Precision::F16, 1024.0, 0.005),
    ] {
        // The cast copy really computes in the half type.
        let half = cast_params(
            burn::module::AutodiffModule::valid(&model),
            precision.compute_dtype().unwrap(),
        );
        let logits = half.forward(Tensor::zeros([1, 4], &device)).unwrap();
        assert_eq!(
            logits.dtype(),
            DType::from(precision.compute_dtype().unwrap())
        );

        let compute = Compute {
            precision,
            loss_scale: scale,
            skip_nonfinite: false,
        };
        let (loss, g) = micro_step(&model, &w, 1, compute, &device).unwrap();
        let loss = scalar(loss);
        assert!(
            ((loss - loss32) / loss32).abs() < tol,
            "{precision:?}: loss {loss} vs f32 {loss32}"
        );
        let got: Vec<_> = gradients(&model, &g)
            .into_iter()
            .map(|(dt, v)| (dt, v.into_iter().map(|x| x / scale as f32).collect()))
            .collect();
        assert!(
            got.iter().all(|(dt, _)| *dt == DType::F32),
            "master gradients are f32"
        );
        let c = cosine(&got, &want);
        assert!(c > 0.99, "{precision:?}: gradient cosine {c}");
    }
}

#[test]
fn f16_overflow_skips_the_update_and_halves_the_scale() {
    let device = Default::default();
    let model: Transformer<FB> = small_model(320).init(&device).unwrap();
    let before = weights(&model);
    let mut optim = AdamW::new(AdamWConfig::default());
    let overflow = Compute {
        precision: Precision::F16,
        loss_scale: 1e30,
        skip_nonfinite: false,
    };
    let (_, grads) = micro_step(&model, &windows(320), 1, overflow, &device).unwrap();
    let (model, update) = apply_update(model, &mut optim, &grads, 1e-3, 1.0, overflow);
    let norm = scalar(update.norm);
    assert!(
        !update.applied && !norm.is_finite(),
        "overflowed gradients: norm {norm}"
    );
    assert_eq!(optim.steps(), 0, "no update");
    assert_eq!(weights(&model), before, "weights unchanged");

    let mut scaler = LossScaler::default();
    scaler.update(false);
    assert_eq!(scaler.scale, 32768.0);
    for _ in 0..LossScaler::GROWTH_INTERVAL {
        scaler.update(true);
    }
    assert_eq!((scaler.scale, scaler.clean_steps), (65536.0, 0));
}

/// Every parameter's values, flattened, in visiting order.
fn weights<B: Backend>(model: &Transformer<B>) -> Vec<Vec<f32>> {
    struct Collect(Vec<Vec<f32>>);
    impl<B: Backend> ModuleVisitor<B> for Collect {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
            let v = param.val().into_data().convert::<f32>().to_vec::<f32>();
            self.0.push(v.unwrap());
        }
    }
    let mut c = Collect(Vec::new());
    model.visit(&mut c);
    c.0
}

/// Collects the parameters' dtypes.
struct DTypes<'a>(&'a mut Vec<DType>);
impl<B: Backend> ModuleVisitor<B> for DTypes<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        self.0.push(param.val().dtype());
    }
}

fn records(run: &Path) -> Vec<StepRecord> {
    fs::read_to_string(run.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn mixed_precision_runs_learn_like_f32_and_checkpoint_f32() {
    let _lock = rng_lock();
    let dir = scratch("precision");
    let data = prepared(&dir);
    let device = Default::default();
    let mut results = Vec::new();
    for precision in [Precision::F32, Precision::Bf16, Precision::F16] {
        let mut config = small_run(&data, 30);
        config.precision = precision;
        let out = dir.join(precision.name());
        let s = train::train::<FB>(
            Start::Fresh(config.clone()),
            &out,
            RunOptions::default(),
            &device,
            &mut Quiet,
        )
        .unwrap();
        let r = records(&out);
        assert!(
            r[29].loss < 0.8 * r[0].loss,
            "{precision:?} learns: {} -> {}",
            r[0].loss,
            r[29].loss
        );
        assert_eq!(
            r[0].loss_scale,
            precision.scaled().then_some(65536.0),
            "{precision:?}: loss scale recorded for f16 only"
        );
        // Checkpoints hold the f32 master weights (and f16's loss scale).
        let ckpt = checkpoint::resolve(&s.checkpoint).unwrap();
        let state: TrainState = checkpoint::read_state(&ckpt).unwrap();
        assert_eq!(state.loss_scale.is_some(), precision.scaled());
        let (model, _) = checkpoint::load_model::<Flex>(&ckpt, &device).unwrap();
        let mut dtypes = Vec::new();
        model.visit(&mut DTypes(&mut dtypes));
        assert!(dtypes.iter().all(|d| *d == DType::F32), "{dtypes:?}");
        results.push(s.val_loss.unwrap());
    }
    for (precision, v) in [("bf16", results[1]), ("f16", results[2])] {
        assert!(
            (v - results[0]).abs() < 0.05 * results[0],
            "{precision} validation loss {v} vs f32 {}",
            results[0]
        );
    }
}

#[test]
fn ndarray_refuses_half_precision_with_a_clear_error() {
    let _lock = rng_lock();
    let dir = scratch("precision-ndarray");
    let data = prepared(&dir);
    let mut config = small_run(&data, 2);
    config.precision = Precision::Bf16;
    let e = err_text(train::train::<TB>(
        Start::Fresh(config.clone()),
        &dir.join("run"),
        RunOptions::default(),
        &Default::default(),
        &mut Quiet,
    ));
    assert!(e.contains("bf16 is not supported"), "{e}");
    assert!(!dir.join("run").exists(), "nothing written");
}

#[test]
fn two_data_parallel_replicas_match_one_device_with_the_same_global_batch() {
    parallel_matches_one_device("parallel", None);
}

/// Self-guided training with reduce_flop: every replica must draw the same guides, or their
/// gradient sets differ and the all-reduce pairs the wrong tensors.
#[test]
fn data_parallel_reduce_flop_training_matches_one_device() {
    let sgt = SgtConfig {
        mode: SgtMode::Fixedstep,
        ratio: 0.5,
        shape: AlphaShape::Cosine,
        reduce_flop: true,
    };
    parallel_matches_one_device("parallel-sgt", Some(sgt));
}

/// Two replicas of batch 2 log the same losses and FLOPs as one device of batch 4, across a
/// stop at step 4 and a resume.
fn parallel_matches_one_device(name: &str, sgt: Option<SgtConfig>) {
    let _lock = rng_lock();
    let dir = scratch(name);
    let data = prepared(&dir);
    let device = Default::default();
    // One device: 4 sequences per micro-batch, 2 micro-batches per step.
    let mut single = small_run(&data, 6);
    single.eval_every = 3;
    single.sgt = sgt;
    let one = dir.join("one");
    let s1 = train::train::<TB>(
        Start::Fresh(single.clone()),
        &one,
        RunOptions::default(),
        &device,
        &mut Quiet,
    )
    .unwrap();

    // Two replicas of 2 sequences each: the same 8 sequences per step, split in device order.
    let mut parallel = single.clone();
    parallel.batch_size = 2;
    parallel.devices = 2;
    let devices = vec![device; 2];
    let two = dir.join("two");
    let stop = RunOptions {
        stop_at_step: Some(4),
        ..RunOptions::default()
    };
    let s = train::train_on::<TB>(
        Start::Fresh(parallel.clone()),
        &two,
        stop,
        &devices,
        &mut Quiet,
    )
    .unwrap();
    assert!(s.stopped_early);
    // The resumed run reloads every replica (weights and AdamW state) from the checkpoint.
    let s2 = Start::resume(&two)
        .and_then(|start| {
            train::train_on::<TB>(start, &two, RunOptions::default(), &devices, &mut Quiet)
        })
        .unwrap();

    let (want, got) = (losses(&one), losses(&two));
    assert_eq!(got.len(), want.len());
    for (g, w) in got.iter().zip(&want) {
        assert!(
            (g.1 - w.1).abs() < 1e-4 * w.1,
            "step {}: loss {} vs {}",
            g.0,
            g.1,
            w.1
        );
        assert!((g.3 - w.3).abs() < 1e-6 * w.3, "step {}: FLOPs", g.0);
    }
    assert_eq!(s2.tokens, s1.tokens);
    let (v1, v2) = (s1.val_loss.unwrap(), s2.val_loss.unwrap());
    assert!((v1 - v2).abs() < 1e-4 * v1, "validation {v2} vs {v1}");

    // The device count is part of the run.
    let e = err_text(train::train_on::<TB>(
        Start::Fresh(parallel.clone()),
        &dir.join("three"),
        RunOptions::default(),
        &devices[..1],
        &mut Quiet,
    ));
    assert!(e.contains("set for 2 device(s) but 1"), "{e}");
}

#[test]
fn a_failing_data_parallel_replica_stops_every_replica_with_its_error() {
    let _lock = rng_lock();
    let dir = scratch("parallel-failure");
    let data = prepared(&dir);
    let mut config = small_run(&data, 4);
    config.batch_size = 2;
    config.devices = 2;
    config.checkpoint_every = 1;
    for rank in [1, 0] {
        let (config, out) = (config.clone(), dir.join(format!("fail-{rank}")));
        let options = RunOptions {
            faults: Some(std::sync::Arc::new(FaultPlan {
                panic_at: Some((rank, 1)),
                ..FaultPlan::default()
            })),
            ..RunOptions::default()
        };
        // A replica that never joined the all-reduce would leave the others waiting forever.
        let (send, receive) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let devices = vec![Default::default(); 2];
            let _ = send.send(err_text(train::train_on::<TB>(
                Start::Fresh(config.clone()),
                &out,
                options,
                &devices,
                &mut Quiet,
            )));
        });
        let e = receive
            .recv_timeout(std::time::Duration::from_secs(300))
            .expect("the run ends instead of waiting for the failed replica");
        assert!(
            e.contains(&format!("device {rank} failed at step 2: injected failure")),
            "{e}"
        );
    }
    // The checkpoint of step 1 is intact: the run resumes from it and finishes.
    let devices = vec![Default::default(); 2];
    let s = Start::resume(&dir.join("fail-1"))
        .and_then(|start| {
            train::train_on::<TB>(
                start,
                &dir.join("fail-1"),
                RunOptions::default(),
                &devices,
                &mut Quiet,
            )
        })
        .unwrap();
    assert_eq!(s.steps, 4);
}
