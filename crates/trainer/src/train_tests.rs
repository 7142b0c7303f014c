//! Tests of data preparation, schedules, the optimizer and the training loop on generated text:
//! learning (validation loss far below the unigram entropy), exact stop-and-resume (also inside
//! the guided phase and fixedflop's replay), checkpoints for evaluation, and every bad input.
//!
//! Long on purpose: the training loop's end-to-end tests share one prepared corpus and helpers.

use crate::run::train::FaultPlan;
use std::fs;
use std::path::{Path, PathBuf};

use rand::SeedableRng;

use burn::module::{Module, Param};
use burn::optim::GradientsParams;
use burn::tensor::{ElementConversion, Tensor, TensorData};
use structured_linear::Structure;
use test_support::{grammar_corpus, Scratch};
use transformer::TransformerConfig;

use crate::run::checkpoint;
use crate::run::metrics::StepRecord;
use crate::run::train::{self, Budget, Quiet, RunOptions, Start, TrainConfig};
use crate::step::optim::{clip_scale, global_grad_norm, AdamW, AdamWConfig, Decay};
use crate::step::schedule::{AlphaShape, LrSchedule, Plan, SgtConfig, SgtMode};
use crate::TrainError;
use corpus::{self as data, Manifest, PrepareConfig, TokenizerSource};

type TB = burn::backend::Autodiff<burn::backend::NdArray<f32>>;
type IB = burn::backend::NdArray<f32>;

pub(crate) use test_support::rng_lock;

pub(crate) fn scratch(name: &str) -> Scratch {
    Scratch::new(&format!("train-{name}"))
}

/// A prepared data folder of 40 generated documents with a 320-token BPE.
pub(crate) fn prepared(dir: &Path) -> PathBuf {
    let text = grammar_corpus(dir, 40, 7);
    let mut config = PrepareConfig::new(vec![text], dir.join("data"));
    config.tokenizer = TokenizerSource::Train { vocab_size: 320 };
    data::prepare(&config).unwrap();
    dir.join("data")
}

/// The harness's shrunk model as LowRank r8 FFN for `vocab` tokens: width 32, d_ff 128, 2 heads,
/// 2 layers, context 32.
pub(crate) fn small_model(vocab: usize) -> TransformerConfig {
    let mut c: TransformerConfig = test_support::small_model();
    c.vocab_size = vocab;
    c.init_std = 0.02;
    c.d_ff = 128;
    c.n_heads = 2;
    c.n_kv_heads = 2;
    c.max_seq_len = 32;
    c.ffn.fc1 = Structure::LowRank { rank: 8 };
    c.ffn.fc2 = Structure::LowRank { rank: 8 };
    c
}

pub(crate) fn small_run(data: &Path, steps: u64) -> TrainConfig {
    let manifest = Manifest::load(data).unwrap();
    let mut c = TrainConfig::new(
        "small-lowrank",
        small_model(manifest.vocab_size),
        data.to_path_buf(),
        Budget::Steps(steps),
    );
    c.batch_size = 4;
    c.grad_accum = 2;
    c.lr = 3e-3;
    c.eval_every = 0;
    c.eval_batches = 4;
    c.seed = 11;
    c
}

pub(crate) fn losses(run: &Path) -> Vec<(u64, f64, f64, f64)> {
    fs::read_to_string(run.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| {
            let r: StepRecord = serde_json::from_str(l).unwrap();
            (r.step, r.loss, r.alpha, r.flops)
        })
        .collect()
}

#[test]
fn lr_schedule_warms_up_then_decays_to_its_floor() {
    let s = LrSchedule {
        peak: 1e-3,
        warmup: 10,
        total: 100,
        min_ratio: 0.1,
    };
    assert!((s.at(0) - 1e-4).abs() < 1e-12);
    assert!((s.at(9) - 1e-3).abs() < 1e-12, "warmup ends at the peak");
    assert!((s.at(10) - 1e-3).abs() < 1e-12, "cosine starts at the peak");
    assert!(
        (s.at(55) - 0.55e-3).abs() < 1e-12,
        "halfway down the cosine"
    );
    assert!((s.at(100) - 1e-4).abs() < 1e-12, "the floor is 0.1 x lr");
    assert!((s.at(1000) - 1e-4).abs() < 1e-12, "flat after the end");
    assert!(
        (1..100).all(|t| t < 10 || s.at(t) <= s.at(t - 1)),
        "monotone decay"
    );
}

#[test]
fn sgt_plans_match_the_paper() {
    let sgt = |mode, shape| SgtConfig {
        mode,
        ratio: 0.3,
        shape,
        reduce_flop: false,
    };
    // fixedstep: 30 of 100 steps guided, no extra steps, no replay.
    let p = Plan::new(100, Some(&sgt(SgtMode::Fixedstep, AlphaShape::Cosine))).unwrap();
    assert_eq!((p.total_steps, p.guided_steps), (100, 30));
    assert_eq!(p.alpha(0), 1.0);
    assert!((p.alpha(15) - 0.5).abs() < 1e-12, "cosine is 1/2 halfway");
    assert!(p.alpha(29) > 0.0 && p.alpha(29) < 0.01);
    assert_eq!((p.alpha(30), p.alpha(99)), (0.0, 0.0));
    assert!((0..100).all(|s| p.data_step(s) == s));
    // Linear alpha.
    let p = Plan::new(100, Some(&sgt(SgtMode::Fixedstep, AlphaShape::Linear))).unwrap();
    assert!((p.alpha(15) - 0.5).abs() < 1e-12 && (p.alpha(6) - 0.8).abs() < 1e-12);
    // fixedflop: 30 extra steps, guided [0, 30), replay of steps 0..30 during [100, 130).
    let p = Plan::new(100, Some(&sgt(SgtMode::Fixedflop, AlphaShape::Cosine))).unwrap();
    assert_eq!(
        (p.total_steps, p.guided_steps, p.replay_from),
        (130, 30, 100)
    );
    assert!((0..100).all(|s| p.data_step(s) == s));
    assert!((100..130).all(|s| p.data_step(s) == s - 100));
    assert_eq!(p.alpha(100), 0.0, "no guide during the replay");
    // Without SGT: no guide; bad ratios and empty budgets are refused.
    let p = Plan::new(10, None).unwrap();
    assert_eq!((p.total_steps, p.guided_steps, p.alpha(0)), (10, 0, 0.0));
    assert!(Plan::new(0, None).is_err());
    let mut bad = sgt(SgtMode::Fixedflop, AlphaShape::Cosine);
    for ratio in [0.0, -0.5, 1.5, f64::NAN] {
        bad.ratio = ratio;
        assert!(Plan::new(10, Some(&bad)).is_err(), "ratio {ratio}");
    }
    // Guided steps round down, as the reference's int() does: 0.43 x 100 -> 43, 0.5 x 7 -> 3.
    let mut r = sgt(SgtMode::Fixedstep, AlphaShape::Cosine);
    r.ratio = 0.43;
    assert_eq!(Plan::new(100, Some(&r)).unwrap().guided_steps, 43);
    r.ratio = 0.5;
    assert_eq!(Plan::new(7, Some(&r)).unwrap().guided_steps, 3);
    r.mode = SgtMode::Fixedflop;
    assert_eq!(Plan::new(7, Some(&r)).unwrap().total_steps, 10);
    // fixedstep over every step would never drop the guides: refused.
    r.mode = SgtMode::Fixedstep;
    r.ratio = 1.0;
    let e = Plan::new(100, Some(&r)).unwrap_err().to_string();
    assert!(e.contains("never be dropped"), "{e}");
}

#[test]
fn warmup_rounds_down_like_the_reference() {
    let dir = scratch("warmup");
    let mut c = TrainConfig::new("m", small_model(320), dir.to_path_buf(), Budget::Steps(115));
    c.warmup_frac = 0.1;
    let plan = c.plan().unwrap();
    assert_eq!(c.lr_schedule(&plan).warmup, 11, "int(0.1 x 115)");
}

/// Two parameters whose gradients are known: loss = sum(w * a) + sum(b * c).
#[derive(Module, Debug)]
struct Two<B: burn::tensor::backend::Backend> {
    w: Param<Tensor<B, 2>>,
    b: Param<Tensor<B, 1>>,
}

#[test]
fn global_norm_clipping_and_adamw_match_a_direct_computation() {
    adamw_matches_a_direct_computation(Decay::Matrices);
    adamw_matches_a_direct_computation(Decay::All);
}

/// PyTorch's AdamW with `clip_grad_norm_`, written out in f64, against [`AdamW`] with `decay`.
fn adamw_matches_a_direct_computation(decay: Decay) {
    let device = Default::default();
    let w0 = [0.5f32, -1.0, 2.0, 0.25];
    let b0 = [1.0f32, -2.0];
    let a = [3.0f32, -4.0, 1.0, 2.0];
    let c = [2.0f32, 6.0];
    let mut model = Two::<TB> {
        w: Param::from_tensor(Tensor::from_data(
            TensorData::new(w0.to_vec(), [2, 2]),
            &device,
        )),
        b: Param::from_tensor(Tensor::from_data(
            TensorData::new(b0.to_vec(), [2]),
            &device,
        )),
    };
    let at = Tensor::<TB, 2>::from_data(TensorData::new(a.to_vec(), [2, 2]), &device);
    let ct = Tensor::<TB, 1>::from_data(TensorData::new(c.to_vec(), [2]), &device);
    let config = AdamWConfig {
        beta1: 0.9,
        beta2: 0.999,
        eps: 1e-8,
        weight_decay: 0.1,
        decay,
    };
    let mut optim = AdamW::<IB>::new(config);
    // The reference: PyTorch's AdamW with clip_grad_norm_, in f64, on the flattened params.
    let mut params: Vec<f64> = w0.iter().chain(&b0).map(|&x| x as f64).collect();
    let grads: Vec<f64> = a.iter().chain(&c).map(|&x| x as f64).collect();
    let (mut m, mut v) = (vec![0.0; 6], vec![0.0; 6]);
    let (lr, max_norm) = (0.01, 2.0);
    for t in 1..=3 {
        let loss = (model.w.val() * at.clone()).sum() + (model.b.val() * ct.clone()).sum();
        let g = GradientsParams::from_grads(loss.backward(), &model);
        // The training path: norm and clipping factor computed on the device.
        let norm_t = global_grad_norm(&model, &g, &Default::default());
        let norm = norm_t.clone().into_scalar().elem::<f64>();
        let direct = grads.iter().map(|x| x * x).sum::<f64>().sqrt();
        assert!((norm - direct).abs() < 1e-5, "{norm} vs {direct}");
        let scale_t = clip_scale(norm_t, max_norm, 1.0);
        let scale = scale_t.clone().into_scalar().elem::<f64>();
        assert!((scale - max_norm / (direct + 1e-6)).abs() < 1e-6 * scale);
        model = optim.step(model, &g, lr, scale_t);
        for i in 0..6 {
            let gi = grads[i] * scale;
            // Matrices: the matrix decays, the vector does not. All: both decay.
            if i < 4 || decay == Decay::All {
                params[i] *= 1.0 - lr * config.weight_decay;
            }
            m[i] = 0.9 * m[i] + 0.1 * gi;
            v[i] = 0.999 * v[i] + 0.001 * gi * gi;
            let (bc1, bc2) = (1.0 - 0.9f64.powi(t), 1.0 - 0.999f64.powi(t));
            params[i] -= lr / bc1 * m[i] / ((v[i] / bc2).sqrt() + 1e-8);
        }
    }
    let got: Vec<f32> = model
        .w
        .val()
        .into_data()
        .to_vec::<f32>()
        .unwrap()
        .into_iter()
        .chain(model.b.val().into_data().to_vec::<f32>().unwrap())
        .collect();
    for (g, want) in got.iter().zip(&params) {
        assert!((*g as f64 - want).abs() < 1e-5, "{got:?} vs {params:?}");
    }
    // No clipping below the threshold, and clipping off at 0.
    let factor = |norm: f32, max_norm: f64| {
        let norm = Tensor::<IB, 1>::from_floats([norm], &Default::default());
        clip_scale(norm, max_norm, 1.0).into_scalar().elem::<f64>()
    };
    assert_eq!(factor(0.5, 1.0), 1.0);
    assert_eq!(factor(50.0, 0.0), 1.0);
}

#[test]
fn prepare_writes_deterministic_shards_split_by_document() {
    let dir = scratch("prepare");
    let text = grammar_corpus(&dir, 20, 3);
    // One document as JSON lines too, with an empty line and an empty document skipped.
    let jsonl = dir.join("extra.jsonl");
    fs::write(&jsonl, "{\"text\": \"the cat sees the river.\"}\n\n{\"text\": \"  \"}\n{\"text\": \"a dog takes some bread.\"}\n").unwrap();
    let mut config = PrepareConfig::new(vec![text.clone(), jsonl.clone()], dir.join("a"));
    config.tokenizer = TokenizerSource::Train { vocab_size: 300 };
    let m = data::prepare(&config).unwrap();
    assert_eq!(m.train.documents + m.validation.documents, 22);
    assert_eq!(m.validation.documents, 2, "documents 9 and 19 of 22");
    assert!(m.vocab_size <= 300 && m.vocab_size > 256);
    // Every document ends with the end-of-text token, and nothing else is one.
    let eot = m.eot_id.unwrap();
    let train = m.open(&dir.join("a"), &m.train).unwrap();
    let ids: Vec<u32> = train.iter().flat_map(|f| f.read(0, f.len())).collect();
    assert_eq!(ids.len() as u64, m.train.tokens);
    assert_eq!(
        ids.iter().filter(|&&t| t == eot).count() as u64,
        m.train.documents
    );
    assert_eq!(*ids.last().unwrap(), eot);
    // The tokenizer round-trips the text.
    let tok = m.load_tokenizer(&dir.join("a")).unwrap();
    let first = fs::read_to_string(text.join("doc-000.txt")).unwrap();
    let end = ids.iter().position(|&t| t == eot).unwrap();
    assert_eq!(tok.decode(&ids[..end], false).unwrap(), first);
    // Preparing again gives the same bytes; small shards split the same stream.
    config.out = dir.join("b");
    config.shard_tokens = 1000;
    let m2 = data::prepare(&config).unwrap();
    assert!(m2.train.files.len() > 1);
    let ids2: Vec<u32> = m2
        .open(&dir.join("b"), &m2.train)
        .unwrap()
        .iter()
        .flat_map(|f| f.read(0, f.len()))
        .collect();
    assert_eq!(ids, ids2);
    assert_eq!(
        fs::read(dir.join("a/tokenizer.json")).unwrap(),
        fs::read(dir.join("b/tokenizer.json")).unwrap()
    );
    // A user's tokenizer is loaded, not retrained.
    config.out = dir.join("c");
    config.tokenizer = TokenizerSource::File(dir.join("a/tokenizer.json"));
    let m3 = data::prepare(&config).unwrap();
    assert_eq!((m3.train.tokens, m3.eot_id), (m.train.tokens, m.eot_id));
}

pub(crate) fn err_text<T: std::fmt::Debug, E: Into<TrainError>>(r: Result<T, E>) -> String {
    r.map_err(Into::into).unwrap_err().to_string()
}

#[test]
fn prepare_refuses_bad_input_and_keeps_existing_data() {
    let dir = scratch("prepare-bad");
    let text = grammar_corpus(&dir, 12, 5);
    let run = |inputs: Vec<PathBuf>, out: &str| {
        let mut c = PrepareConfig::new(inputs, dir.join(out));
        c.tokenizer = TokenizerSource::Train { vocab_size: 300 };
        data::prepare(&c)
    };
    assert!(err_text(run(vec![dir.join("nope.txt")], "o")).contains("does not exist"));
    assert!(err_text(run(vec![], "o")).contains("no input"));
    fs::create_dir_all(dir.join("empty")).unwrap();
    assert!(err_text(run(vec![dir.join("empty")], "o")).contains("is empty"));
    fs::write(dir.join("blank.txt"), " \n\n").unwrap();
    assert!(err_text(run(vec![dir.join("blank.txt")], "o")).contains("no text"));
    fs::write(dir.join("latin1.txt"), b"caf\xe9 au lait").unwrap();
    let e = err_text(run(vec![text.clone(), dir.join("latin1.txt")], "o"));
    assert!(e.contains("latin1.txt") && e.contains("not UTF-8"), "{e}");
    fs::write(dir.join("bad.jsonl"), "{\"body\": \"x\"}\n").unwrap();
    assert!(err_text(run(vec![dir.join("bad.jsonl")], "o"))
        .contains("bad.jsonl:1: no string field \"text\""));
    fs::write(dir.join("broken.jsonl"), "{\"text\": \n").unwrap();
    assert!(err_text(run(vec![dir.join("broken.jsonl")], "o")).contains("not JSON"));
    let e = err_text(run(vec![text.join("doc-000.txt")], "o"));
    assert!(e.contains("too few to hold out"), "{e}");
    assert!(!dir.join("o").exists(), "nothing is written on bad input");
    // Prepared data is not replaced without --force, and stays intact.
    run(vec![text.clone()], "keep").unwrap();
    let before = fs::read(dir.join("keep/manifest.json")).unwrap();
    assert!(err_text(run(vec![text.clone()], "keep")).contains("`force`"));
    assert_eq!(fs::read(dir.join("keep/manifest.json")).unwrap(), before);
    // A missing user tokenizer, one without an end-of-text token, a too small vocabulary.
    let mut c = PrepareConfig::new(vec![text.clone()], dir.join("t"));
    c.tokenizer = TokenizerSource::File(dir.join("missing.json"));
    assert!(err_text(data::prepare(&c)).contains("does not exist"));
    c.tokenizer = TokenizerSource::File(dir.join("keep/tokenizer.json"));
    c.eot = Some("<nope>".into());
    assert!(err_text(data::prepare(&c)).contains("no token \"<nope>\""));
    c.tokenizer = TokenizerSource::Train { vocab_size: 100 };
    c.eot = None;
    assert!(err_text(data::prepare(&c)).contains("too small"));
}

#[test]
fn training_learns_far_below_the_unigram_entropy() {
    let _lock = rng_lock();
    let dir = scratch("learn");
    let data = prepared(&dir);
    let manifest = Manifest::load(&data).unwrap();
    // Unigram entropy of the training tokens (nats): what a model without context achieves.
    let ids: Vec<u32> = manifest
        .open(&data, &manifest.train)
        .unwrap()
        .iter()
        .flat_map(|f| f.read(0, f.len()))
        .collect();
    let mut counts = vec![0f64; manifest.vocab_size];
    ids.iter().for_each(|&t| counts[t as usize] += 1.0);
    let n = ids.len() as f64;
    let unigram: f64 = counts
        .iter()
        .filter(|&&c| c > 0.0)
        .map(|&c| -(c / n) * (c / n).ln())
        .sum();

    let mut config = small_run(&data, 200);
    config.lr = 1e-2;
    config.eval_every = 100;
    let out = dir.join("run");
    let summary = train::train::<TB>(
        Start::Fresh(config.clone()),
        &out,
        RunOptions::default(),
        &Default::default(),
        &mut Quiet,
    )
    .unwrap();
    let val = summary.val_loss.unwrap();
    assert!(
        val < 0.6 * unigram,
        "validation loss {val} vs unigram entropy {unigram}"
    );
    // The run folder: config, metrics with every step and two evaluations, plot, checkpoint.
    let records = losses(&out);
    assert_eq!(records.len(), 200);
    let evals = fs::read_to_string(out.join("metrics.jsonl"))
        .unwrap()
        .matches("val_loss")
        .count();
    assert_eq!(evals, 2);
    assert!(fs::read_to_string(out.join("loss.svg"))
        .unwrap()
        .contains("<polyline"));
    assert!(out.join("config.json").is_file());
    // The FLOP ledger is the paper's formula: 3 x forward x tokens, no guides here.
    let fwd = transformer::accounting::forward_flops(&config.model, config.seq_len, false, false);
    let tokens = 200.0 * (config.global_batch() * config.seq_len) as f64;
    assert!((summary.flops - 3.0 * tokens * fwd.forward_per_token as f64).abs() < 1.0);
    // The checkpoint evaluates to the same validation loss.
    let (model, state) =
        checkpoint::load_model::<IB>(&summary.checkpoint, &Default::default()).unwrap();
    assert_eq!(state.step, 200);
    let val_loader = corpus::WindowLoader::new(
        manifest.open(&data, &manifest.validation).unwrap(),
        32,
        0,
        false,
    )
    .unwrap();
    let r = transformer::evaluate(
        &model,
        val_loader.batches_in_order(4, 4),
        &Default::default(),
    )
    .unwrap();
    assert!((r.val_loss - val).abs() < 1e-5, "{} vs {val}", r.val_loss);
    // Pre-merged, the same loss.
    let r2 = transformer::evaluate(
        &model.merged(),
        val_loader.batches_in_order(4, 4),
        &Default::default(),
    )
    .unwrap();
    assert!((r2.val_loss - val).abs() < 1e-4);
}

#[test]
// Long on purpose: one scenario: a run stopped in several ways, resumed, and compared with an uninterrupted one.
fn stopping_and_resuming_matches_an_uninterrupted_run() {
    let _lock = rng_lock();
    let dir = scratch("resume");
    let data = prepared(&dir);
    let mut config = small_run(&data, 8);
    config.sgt = Some(SgtConfig {
        mode: SgtMode::Fixedflop,
        ratio: 0.5,
        shape: AlphaShape::Cosine,
        reduce_flop: true,
    });
    config.eval_every = 5;
    let device = Default::default();
    let straight = dir.join("straight");
    train::train::<TB>(
        Start::Fresh(config.clone()),
        &straight,
        RunOptions::default(),
        &device,
        &mut Quiet,
    )
    .unwrap();
    let want = losses(&straight);
    assert_eq!(want.len(), 12, "8 steps + 4 fixedflop steps");
    assert_eq!(want[0].2, 1.0, "alpha starts at 1");
    assert!(
        want[4..].iter().all(|r| r.2 == 0.0),
        "guides off after 4 steps"
    );

    // Stop inside the guided phase, then inside the replay, then finish.
    let split = dir.join("split");
    let stop = |at| RunOptions {
        stop_at_step: Some(at),
        ..RunOptions::default()
    };
    let s = train::train::<TB>(
        Start::Fresh(config.clone()),
        &split,
        stop(2),
        &device,
        &mut Quiet,
    )
    .unwrap();
    assert!(s.stopped_early && s.steps == 2);
    Start::resume(&split)
        .and_then(|start| train::train::<TB>(start, &split, stop(10), &device, &mut Quiet))
        .unwrap();
    Start::resume(&split)
        .and_then(|start| {
            train::train::<TB>(start, &split, RunOptions::default(), &device, &mut Quiet)
        })
        .unwrap();
    let got = losses(&split);
    assert_eq!(got.len(), want.len());
    for (g, w) in got.iter().zip(&want) {
        assert_eq!(g.0, w.0);
        // To the bit: runs are reproducible (burn-ndarray's approximate `recip`, which made
        // losses a few ulps apart from run to run, is no longer on the training path).
        assert_eq!(
            g.1.to_bits(),
            w.1.to_bits(),
            "step {}: loss {} vs {}",
            g.0,
            g.1,
            w.1
        );
        assert_eq!(g.2, w.2, "alpha");
        assert!((g.3 - w.3).abs() <= 1e-9 * w.3, "FLOPs");
    }
    // Guides were evaluated with probability alpha: their FLOPs lie between none and all.
    let plain = 3.0
        * 12.0
        * (config.global_batch() * config.seq_len) as f64
        * transformer::accounting::forward_flops(&config.model, config.seq_len, false, false)
            .forward_per_token as f64;
    assert!(want[11].3 > plain, "guides cost FLOPs while active");
    // The exact ledger: every micro-batch costs 3 x (the structured forward + 2 d_in d_out per
    // token for each guide its reduce_flop draw used), the draws replayed from the documented
    // per-step seeds (one Bernoulli(alpha) per guided layer and micro-batch, in layer order).
    let plan = config.plan().unwrap();
    let mut guided_config = config.model.clone();
    guided_config.self_guided = true;
    let mut model = guided_config.init::<TB>(&device).unwrap();
    model.set_reduce_flop(true);
    let per_token = plain / (3.0 * 12.0 * (config.global_batch() * config.seq_len) as f64);
    let micro_tokens = (config.batch_size * config.seq_len) as f64;
    let mut expected = 0.0;
    for step in 0..plan.total_steps {
        let mut rng =
            rand::rngs::StdRng::seed_from_u64(train::step_seed(config.seed ^ 0x5347_5400, step));
        model.set_alpha(plan.alpha(step)).unwrap();
        for _ in 0..config.grad_accum {
            let guides: f64 = model
                .linears()
                .iter()
                .filter(|l| l.guide.is_some() && l.draw_guide(&mut rng))
                .map(|l| 2.0 * (l.layer.d_in() * l.layer.d_out()) as f64)
                .sum();
            expected += 3.0 * micro_tokens * (per_token + guides);
        }
    }
    assert!(
        (want[11].3 - expected).abs() <= 1e-9 * expected,
        "ledger {} vs expected {expected}",
        want[11].3
    );
    // A finished run has nothing left to resume.
    let e = err_text(Start::resume(&split).and_then(|start| {
        train::train::<TB>(start, &split, RunOptions::default(), &device, &mut Quiet)
    }));
    assert!(e.contains("complete"), "{e}");
}

#[test]
fn training_refuses_bad_input() {
    let _lock = rng_lock();
    let dir = scratch("train-bad");
    let data = prepared(&dir);
    let device = Default::default();
    let go = |c: &TrainConfig, out: &str, o: RunOptions| {
        train::train::<TB>(
            Start::Fresh(c.clone()),
            &dir.join(out),
            o,
            &device,
            &mut Quiet,
        )
        .map(|_| ())
    };
    let ok = small_run(&data, 2);
    let mut c = ok.clone();
    c.seq_len = 64;
    assert!(err_text(go(&c, "r", RunOptions::default())).contains("max_seq_len"));
    let mut c = ok.clone();
    c.budget = Budget::Steps(0);
    assert!(err_text(go(&c, "r", RunOptions::default())).contains("at least 1"));
    c.budget = Budget::Tokens(10);
    assert!(err_text(go(&c, "r", RunOptions::default())).contains("less than one step"));
    let mut c = ok.clone();
    c.model.vocab_size = 100;
    assert!(err_text(go(&c, "r", RunOptions::default())).contains("vocabulary"));
    let mut c = ok.clone();
    c.data = dir.join("nowhere");
    assert!(err_text(go(&c, "r", RunOptions::default())).contains("does not exist"));
    let resume = |out: &str| {
        Start::resume(&dir.join(out)).and_then(|start| {
            train::train::<TB>(
                start,
                &dir.join(out),
                RunOptions::default(),
                &device,
                &mut Quiet,
            )
        })
    };
    assert!(err_text(resume("r")).contains("nothing to resume"));
    assert!(!dir.join("r").exists(), "refused runs write nothing");
    // A finished run is not overwritten without --force, nor resumed with another model.
    go(&ok, "done", RunOptions::default()).unwrap();
    let metrics = fs::read(dir.join("done/metrics.jsonl")).unwrap();
    assert!(err_text(go(&ok, "done", RunOptions::default())).contains("`force`"));
    assert_eq!(fs::read(dir.join("done/metrics.jsonl")).unwrap(), metrics);
    let mut other = ok.clone();
    other.model.ffn.fc1 = Structure::Dense;
    other.model_name = "other".into();
    let saved = train::read_run_config(&dir.join("done")).unwrap();
    let e = err_text(train::check_run_model(
        &dir.join("done"),
        &saved,
        &other.model_name,
        &other.model,
    ));
    assert!(e.contains("different model"), "{e}");
    train::check_run_model(&dir.join("done"), &saved, &ok.model_name, &ok.model).unwrap();
    // Weights of another model are refused by the checkpoint loader.
    let ckpt = checkpoint::resolve(&dir.join("done")).unwrap();
    let mut model = other.model.init::<IB>(&device).unwrap();
    assert!(err_text(checkpoint::load_weights(&ckpt, &mut model)).contains("do not fit"));
    // --force replaces the run.
    go(
        &ok,
        "done",
        RunOptions {
            force: true,
            ..RunOptions::default()
        },
    )
    .unwrap();
    // A corrupted shard is reported with a hint.
    let shard = data.join("train-0000.bin");
    let mut bytes = fs::read(&shard).unwrap();
    bytes[0] ^= 0xff;
    fs::write(&shard, bytes).unwrap();
    let e = err_text(go(&ok, "corrupt", RunOptions::default()));
    assert!(
        e.contains("train-0000.bin") && e.contains("strata data prepare"),
        "{e}"
    );
}

#[test]
fn imported_raw_uint16_rows_train_like_shards() {
    let _lock = rng_lock();
    let dir = scratch("import");
    // The reference's layout: rows of seq_len + 1 = 33 little-endian uint16 tokens.
    let row = |r: usize| (0..33).map(move |i| ((r * 7 + i * 3) % 50) as u16);
    let write = |name: &str, rows: std::ops::Range<usize>| {
        let bytes: Vec<u8> = rows.flat_map(row).flat_map(|t| t.to_le_bytes()).collect();
        fs::write(dir.join(name), bytes).unwrap();
        dir.join(name)
    };
    let (tf, vf) = (
        vec![write("train.bin", 0..40)],
        vec![write("val.bin", 40..44)],
    );
    let out = dir.join("data");
    let m = data::import_raw(&tf, &vf, 64, Some(33), &out, false).unwrap();
    assert_eq!((m.train.tokens, m.validation.tokens), (40 * 33, 4 * 33));
    assert!(m.tokenizer.is_none());
    // One window per row, each exactly a row.
    let loader = m.loader(&out, &m.train, 32, 0, false).unwrap();
    assert_eq!(loader.windows(), 40);
    assert_eq!(loader.window(5), row(5).map(u32::from).collect::<Vec<_>>());
    assert!(err_text(m.loader(&out, &m.train, 16, 0, false)).contains("sequence length 32"));
    // As a plain stream the same file gives windows that share a token.
    let stream = data::import_raw(&tf, &vf, 64, None, &dir.join("s"), false).unwrap();
    assert_eq!(
        stream
            .loader(&dir.join("s"), &stream.train, 32, 0, false)
            .unwrap()
            .windows(),
        (40 * 33 - 1) / 32
    );
    assert!(err_text(data::import_raw(
        &tf,
        &vf,
        64,
        Some(32),
        &dir.join("x"),
        false
    ))
    .contains("whole rows"));
    let mut config = small_run(&out, 3);
    config.model.vocab_size = 64;
    let s = train::train::<TB>(
        Start::Fresh(config.clone()),
        &dir.join("run"),
        RunOptions::default(),
        &Default::default(),
        &mut Quiet,
    )
    .unwrap();
    assert_eq!(s.steps, 3);
    // Tokens outside the stated vocabulary are refused; so is an existing manifest.
    let e = err_text(data::import_raw(
        &tf,
        &vf,
        20,
        None,
        &dir.join("other"),
        false,
    ));
    assert!(e.contains("outside the vocabulary"), "{e}");
    let e = err_text(data::import_raw(&tf, &vf, 64, None, &out, false));
    assert!(e.contains("`force`"), "{e}");
}

#[test]
fn a_non_finite_loss_is_caught_when_read_and_never_checkpointed() {
    let dir = scratch("nonfinite");
    let data = prepared(&dir);
    let run = dir.join("run");
    let mut config = small_run(&data, 6);
    config.checkpoint_every = 2;
    let options = RunOptions {
        faults: Some(std::sync::Arc::new(FaultPlan {
            nan_loss_at: Some(2), // the third step
            ..FaultPlan::default()
        })),
        ..RunOptions::default()
    };
    let _lock = rng_lock();
    let err = train::train::<TB>(
        Start::Fresh(config.clone()),
        &run,
        options,
        &Default::default(),
        &mut Quiet,
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("the loss became NaN at step 3"),
        "names the step: {err}"
    );
    // The read before the next checkpoint caught it: step 2's checkpoint is the last one,
    // and the log holds the two good steps.
    let kept: Vec<u64> = checkpoint::list(&run.join("checkpoints"))
        .into_iter()
        .map(|(step, _)| step)
        .collect();
    assert_eq!(kept, [2]);
    let logged: Vec<u64> = losses(&run).iter().map(|l| l.0).collect();
    assert_eq!(logged, [1, 2]);
}

#[test]
fn validation_inside_the_guided_phase_is_what_eval_scores_on_the_checkpoint() {
    let _lock = rng_lock();
    let dir = scratch("guided-eval");
    let data = prepared(&dir);
    let mut config = small_run(&data, 8);
    config.sgt = Some(SgtConfig {
        mode: SgtMode::Fixedstep,
        ratio: 0.5,
        shape: AlphaShape::Cosine,
        reduce_flop: true,
    });
    let device = Default::default();
    let stop = RunOptions {
        stop_at_step: Some(2),
        ..RunOptions::default()
    };
    let s = train::train::<TB>(
        Start::Fresh(config.clone()),
        &dir.join("run"),
        stop,
        &device,
        &mut Quiet,
    )
    .unwrap();
    let logged = s.val_loss.unwrap();
    // What `strata eval` computes on the checkpoint of the same step: every guide in use.
    let (model, state) = checkpoint::load_model::<IB>(&s.checkpoint, &device).unwrap();
    assert!(
        state.alpha > 0.0 && state.alpha < 1.0,
        "inside the guided phase"
    );
    let manifest = Manifest::load(&data).unwrap();
    let val = manifest
        .loader(&data, &manifest.validation, config.seq_len, 0, false)
        .unwrap();
    let r = transformer::evaluate(
        &model,
        val.batches_in_order(config.batch_size, config.eval_batches),
        &device,
    )
    .unwrap();
    assert!(
        (r.val_loss - logged).abs() < 1e-5,
        "logged {logged} vs eval {}",
        r.val_loss
    );
}

#[test]
fn the_default_recipe_decays_every_parameter_and_old_runs_keep_theirs() {
    let dir = scratch("decay");
    let c = TrainConfig::new("m", small_model(320), dir.to_path_buf(), Budget::Steps(5));
    assert_eq!(c.adamw.decay, Decay::All, "the reference's one group");
    // A run saved before the setting existed decayed matrices only, and resumes that way.
    let mut json = serde_json::to_value(&c).unwrap();
    json["adamw"].as_object_mut().unwrap().remove("decay");
    let old: TrainConfig = serde_json::from_value(json).unwrap();
    assert_eq!(old.adamw.decay, Decay::Matrices);
}

#[test]
fn a_document_quoting_the_end_of_text_token_gets_no_false_boundary() {
    let dir = scratch("eot-literal");
    let docs = dir.join("docs");
    fs::create_dir_all(&docs).unwrap();
    for i in 0..20 {
        let text = match i % 4 {
            0 => format!("document {i} quotes {} in its text", data::EOT),
            _ => format!("document {i} has plain words in it and more words"),
        };
        fs::write(docs.join(format!("{i:02}.txt")), text).unwrap();
    }
    let mut config = PrepareConfig::new(vec![docs], dir.join("data"));
    config.tokenizer = TokenizerSource::Train { vocab_size: 300 };
    data::prepare(&config).unwrap();
    let manifest = Manifest::load(&dir.join("data")).unwrap();
    let eot = manifest.eot_id.unwrap();
    let mut boundaries = 0;
    for split in [&manifest.train, &manifest.validation] {
        for f in &split.files {
            let file = corpus::TokenFile::open_shard(&dir.join("data").join(f)).unwrap();
            boundaries += file
                .read(0, file.len())
                .iter()
                .filter(|&&t| t == eot)
                .count();
        }
    }
    assert_eq!(
        boundaries, 20,
        "one end-of-text token per document, none from the text"
    );
}

#[test]
fn a_raw_file_changed_after_import_is_refused_and_bad_ids_never_reach_the_model() {
    let _lock = rng_lock();
    let dir = scratch("import-changed");
    // 3 MiB of tokens: the checksum covers the first and last MiB, not the middle.
    let tokens: Vec<u16> = (0..3 * (1 << 19)).map(|i| (i * 7 % 50) as u16).collect();
    let bytes = |t: &[u16]| t.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<u8>>();
    let (train_file, val_file) = (dir.join("train.bin"), dir.join("val.bin"));
    fs::write(&train_file, bytes(&tokens)).unwrap();
    fs::write(&val_file, bytes(&tokens[..4096])).unwrap();
    let out = dir.join("data");
    let m = data::import_raw(
        std::slice::from_ref(&train_file),
        &[val_file],
        64,
        None,
        &out,
        false,
    )
    .unwrap();
    assert_eq!(m.train.checks.len(), 1);
    let mut config = small_run(&out, 2);
    config.model.vocab_size = 64;
    let run = |name: &str| {
        err_text(train::train::<TB>(
            Start::Fresh(config.clone()),
            &dir.join(name),
            RunOptions::default(),
            &Default::default(),
            &mut Quiet,
        ))
    };
    // A token changed inside the first MiB: refused when the data is opened.
    let mut changed = tokens.clone();
    changed[10] = 3;
    fs::write(&train_file, bytes(&changed)).unwrap();
    let e = run("a");
    assert!(e.contains("changed since it was imported"), "{e}");
    // Tokens appended: the size differs.
    let mut longer = tokens.clone();
    longer.extend([1, 2]);
    fs::write(&train_file, bytes(&longer)).unwrap();
    assert!(run("b").contains("changed since it was imported"));
    // A change the checksum does not cover (the middle MiB): the file opens, but the id check
    // on read stops a batch holding such a token with an error naming it (no embedding lookup
    // out of bounds, no panic), in training and in evaluation.
    let mut inner = tokens.clone();
    for t in &mut inner[(1 << 19)..2 * (1 << 19)] {
        *t = 60_000;
    }
    fs::write(&train_file, bytes(&inner)).unwrap();
    let m = Manifest::load(&out).unwrap();
    let loader = m.loader(&out, &m.train, 32, 0, false).unwrap();
    let windows: Vec<Vec<u32>> = (0..4).map(|w| loader.window(20_000 + w)).collect();
    let model = config.model.init::<TB>(&Default::default()).unwrap();
    let step = train::micro_step(
        &model,
        &windows,
        1,
        train::Compute::F32,
        &Default::default(),
    );
    let e = err_text(step.map(|_| ()));
    assert!(e.contains("token id 60000"), "{e}");
}

/// Every weight of the checkpoint folder `dir`, by name.
fn checkpoint_weights(dir: &Path) -> Vec<(String, Vec<f32>)> {
    let bytes = fs::read(dir.join(checkpoint::MODEL_WEIGHTS)).unwrap();
    let file = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let mut out: Vec<(String, Vec<f32>)> = file
        .iter()
        .map(|(name, view)| {
            let v = view
                .data()
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect();
            (name.to_string(), v)
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

#[test]
fn init_starts_from_a_checkpoint_with_or_without_guides() {
    let _g = rng_lock();
    let s = scratch("init");
    let data = prepared(&s);
    let device = Default::default();
    // A checkpoint to start from.
    let source = s.join("source");
    train::train::<TB>(
        Start::Fresh(small_run(&data, 3)),
        &source,
        RunOptions::default(),
        &device,
        &mut Quiet,
    )
    .unwrap();
    let ckpt = checkpoint::resolve(&source).unwrap();
    // A run from it with a vanishing learning rate ends where it started (a fresh model would
    // differ by its random initialisation, ~0.02 per weight).
    let mut config = small_run(&data, 1);
    config.init = Some(ckpt.clone());
    config.lr = 1e-12;
    config.seed = 99;
    let plain = s.join("plain");
    train::train::<TB>(
        Start::Fresh(config.clone()),
        &plain,
        RunOptions::default(),
        &device,
        &mut Quiet,
    )
    .unwrap();
    let (want, got) = (
        checkpoint_weights(&ckpt),
        checkpoint_weights(&checkpoint::resolve(&plain).unwrap()),
    );
    assert_eq!(want.len(), got.len());
    for ((name, a), (_, b)) in want.iter().zip(&got) {
        let d = a
            .iter()
            .zip(b)
            .map(|(x, y)| (x - y).abs())
            .fold(0.0f32, f32::max);
        assert!(d < 1e-6, "{name} moved by {d}");
    }
    // With --sgt the structured layers get guides equal to their merged matrices, so the
    // guided model computes the same function: the same first loss.
    config.sgt = Some(SgtConfig {
        mode: SgtMode::Fixedstep,
        ratio: 0.5,
        shape: AlphaShape::Cosine,
        reduce_flop: false,
    });
    config.budget = Budget::Steps(2);
    let guided = s.join("guided");
    train::train::<TB>(
        Start::Fresh(config.clone()),
        &guided,
        RunOptions::default(),
        &device,
        &mut Quiet,
    )
    .unwrap();
    let (first_plain, first_guided) = (losses(&plain)[0], losses(&guided)[0]);
    assert!(
        (first_plain.1 - first_guided.1).abs() < 1e-5,
        "{first_plain:?} vs {first_guided:?}"
    );
    assert_eq!(first_guided.2, 1.0, "alpha starts at 1");
    // A missing checkpoint is an error naming it, before anything is written.
    config.init = Some(s.join("nowhere"));
    let out = s.join("missing");
    let e = train::train::<TB>(
        Start::Fresh(config),
        &out,
        RunOptions::default(),
        &device,
        &mut Quiet,
    )
    .unwrap_err();
    assert!(e.to_string().contains("nowhere"), "{e}");
    assert!(!out.join("config.json").exists(), "nothing written");
}
