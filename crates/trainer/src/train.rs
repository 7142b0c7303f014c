//! The training loop: AdamW with warmup + cosine, global-norm clipping, gradient accumulation,
//! periodic evaluation, self-guided training (alpha per optimizer step, fixedstep / fixedflop
//! with replay, reduce_flop), the FLOP ledger, checkpoints and exact resume.
//!
//! The run folder holds `config.json` ([`TrainConfig`]), `metrics.jsonl`, `loss.svg` and
//! `checkpoints/step-*/`. Library code never prints: progress goes to an [`Observer`].

use std::path::{Path, PathBuf};
use std::time::Instant;

use burn::module::{AutodiffModule, Module};
use burn::optim::GradientsParams;
use burn::tensor::activation::log_softmax;
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::{DType, ElementConversion, Int, Tensor, TensorData};
use serde::{Deserialize, Serialize};
use transformer::{accounting, Transformer, TransformerConfig};

use crate::checkpoint::{self, TrainState};
use crate::data::Manifest;
use crate::error::{DataError, TrainError};
use crate::loader::{Cursor, WindowLoader};
use crate::metrics::{loss_svg, MetricsLog, StepRecord};
use crate::optim::{clip_scale, global_grad_norm, AdamW, AdamWConfig};
use crate::parallel::{Peers, Replica, StepContext};
use crate::precision::{LossScaler, Precision};
use crate::readback::Pending;
use crate::schedule::{LrSchedule, Plan, SgtConfig};
use crate::shard::write_atomic;

/// How long to train.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Budget {
    /// Optimizer steps (before fixedflop's extra steps).
    Steps(u64),
    /// Tokens: `floor(tokens / (global batch * seq_len))` steps, as the reference counts.
    Tokens(u64),
}

/// Everything a run needs; saved as the run folder's `config.json`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TrainConfig {
    /// Zoo name or file the model came from (for reports).
    pub model_name: String,
    /// The model.
    pub model: TransformerConfig,
    /// Prepared data folder (`strata data prepare`).
    pub data: PathBuf,
    /// Tokens per training sequence (at most the model's `max_seq_len`).
    pub seq_len: usize,
    /// Sequences per micro-batch.
    pub batch_size: usize,
    /// Micro-batches per optimizer step (global batch = `batch_size * grad_accum`).
    pub grad_accum: usize,
    /// Training length.
    pub budget: Budget,
    /// Peak learning rate.
    pub lr: f64,
    /// Fraction of the steps spent warming up linearly (0.1).
    pub warmup_frac: f64,
    /// Cosine floor as a fraction of `lr` (0.1).
    pub min_lr_ratio: f64,
    /// AdamW.
    pub adamw: AdamWConfig,
    /// Clip the global gradient norm to this (1.0; 0 turns clipping off).
    pub clip: f64,
    /// Self-guided training, if any.
    pub sgt: Option<SgtConfig>,
    /// Evaluate every this many steps (and at the end); 0: only at the end.
    pub eval_every: u64,
    /// Validation batches of `batch_size * devices` sequences per evaluation (0: the whole
    /// validation split).
    pub eval_batches: usize,
    /// Write a metrics record every this many steps (evaluation steps always).
    pub log_every: u64,
    /// Checkpoint every this many steps (and at the end); 0: only at the end.
    pub checkpoint_every: u64,
    /// Checkpoints kept.
    pub keep: usize,
    /// Seed of everything (init, data order, dropout, reduce_flop).
    pub seed: u64,
    /// Peak FLOP/s of the device, for MFU.
    pub peak_flops: Option<f64>,
    /// Arithmetic of the forward and backward passes (weights stay f32).
    #[serde(default)]
    pub precision: Precision,
    /// Data-parallel replicas, one per device; each takes `batch_size` sequences per
    /// micro-batch, so the global batch is `batch_size * grad_accum * devices`.
    #[serde(default = "one")]
    pub devices: usize,
}

fn one() -> usize {
    1
}

impl TrainConfig {
    /// The reference recipe (docs/reference.md §4) for `model`, scaled to a small global batch: AdamW
    /// (0.9, 0.999, eps 1e-8, decay 0.1), 10% warmup, cosine to 0.1 x lr, clip 1.0.
    pub fn new(model_name: &str, model: TransformerConfig, data: PathBuf, budget: Budget) -> Self {
        Self {
            model_name: model_name.into(),
            seq_len: model.max_seq_len,
            model,
            data,
            batch_size: 8,
            grad_accum: 1,
            budget,
            lr: 6e-4,
            warmup_frac: 0.1,
            min_lr_ratio: 0.1,
            adamw: AdamWConfig::default(),
            clip: 1.0,
            sgt: None,
            eval_every: 0,
            eval_batches: 0,
            log_every: 1,
            checkpoint_every: 0,
            keep: 2,
            seed: 0,
            peak_flops: None,
            precision: Precision::F32,
            devices: 1,
        }
    }

    /// Sequences per optimizer step, over all devices.
    pub fn global_batch(&self) -> usize {
        self.batch_size * self.grad_accum * self.devices
    }

    /// Steps the budget asks for, before fixedflop's extra steps.
    pub fn base_steps(&self) -> u64 {
        match self.budget {
            Budget::Steps(n) => n,
            Budget::Tokens(t) => t / (self.global_batch() * self.seq_len) as u64,
        }
    }

    /// The step plan.
    pub fn plan(&self) -> Result<Plan, TrainError> {
        Plan::new(self.base_steps(), self.sgt.as_ref())
    }

    /// The learning-rate schedule over the plan's steps.
    pub fn lr_schedule(&self, plan: &Plan) -> LrSchedule {
        LrSchedule {
            peak: self.lr,
            // The reference's int(): floor.
            warmup: (self.warmup_frac * plan.total_steps as f64).floor() as u64,
            total: plan.total_steps,
            min_ratio: self.min_lr_ratio,
        }
    }

    /// Checks the settings against each other and the model.
    pub fn validate(&self) -> Result<(), TrainError> {
        let bad = |m: String| Err(TrainError::Config(m));
        if self.seq_len == 0 || self.seq_len > self.model.max_seq_len {
            return bad(format!(
                "sequence length {} must lie in 1..={} (the model's max_seq_len)",
                self.seq_len, self.model.max_seq_len
            ));
        }
        if self.batch_size == 0 || self.grad_accum == 0 || self.devices == 0 {
            return bad("batch size, gradient accumulation and devices must be at least 1".into());
        }
        match self.budget {
            Budget::Steps(0) => return bad("the step budget must be at least 1".into()),
            Budget::Tokens(t) if t < (self.global_batch() * self.seq_len) as u64 => {
                return bad(format!(
                    "a budget of {t} tokens is less than one step ({} sequences x {} tokens)",
                    self.global_batch(),
                    self.seq_len
                ))
            }
            _ => {}
        }
        if !(self.lr > 0.0 && self.lr.is_finite()) {
            return bad(format!("learning rate {} must be positive", self.lr));
        }
        if !(0.0..1.0).contains(&self.warmup_frac) || !(0.0..=1.0).contains(&self.min_lr_ratio) {
            return bad("warmup fraction must lie in [0, 1) and the LR floor in [0, 1]".into());
        }
        if self.clip < 0.0 || self.keep == 0 || self.log_every == 0 {
            return bad("clip must be >= 0, keep and log-every >= 1".into());
        }
        self.model.validate()?;
        self.plan()?;
        Ok(())
    }
}

/// Progress of a run, for whoever displays it.
#[derive(Debug)]
pub enum Event<'a> {
    /// The run starts (or resumes at `start_step`).
    Started {
        /// The plan.
        plan: &'a Plan,
        /// First step to run.
        start_step: u64,
        /// Parameters of the model as built (guides included).
        params: usize,
    },
    /// Step `n` (1-based) was issued to the device; its results are read (and logged) later.
    Issued(u64),
    /// A logged step.
    Step(&'a StepRecord),
    /// A checkpoint was written.
    Checkpoint(&'a Path),
    /// The run ended.
    Finished(&'a Summary),
}

/// Receives [`Event`]s.
pub trait Observer {
    /// Called at each event.
    fn event(&mut self, event: Event<'_>);
}

/// Ignores every event.
pub struct Quiet;

impl Observer for Quiet {
    fn event(&mut self, _: Event<'_>) {}
}

/// What a run achieved.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct Summary {
    /// Model name.
    pub model: String,
    /// Parameters after training (guides dropped).
    pub params: usize,
    /// Optimizer steps done.
    pub steps: u64,
    /// Tokens trained on.
    pub tokens: u64,
    /// Training FLOPs.
    pub flops: f64,
    /// Seconds of training.
    pub elapsed_s: f64,
    /// Mean training tokens per second.
    pub tokens_per_s: f64,
    /// Final validation loss.
    pub val_loss: Option<f64>,
    /// Final validation perplexity.
    pub val_ppl: Option<f64>,
    /// Whether the time limit or `stop_at_step` ended the run before its last step.
    pub stopped_early: bool,
    /// The last checkpoint.
    pub checkpoint: PathBuf,
}

/// How to treat the output folder.
#[derive(Clone, Copy, Debug, Default)]
pub struct RunOptions {
    /// Continue the run in the folder from its newest checkpoint.
    pub resume: bool,
    /// Replace a run already in the folder.
    pub force: bool,
    /// Stop (with a checkpoint) after this many seconds of this session.
    pub time_limit_s: Option<f64>,
    /// Stop (with a checkpoint) once this many steps are done; `--resume` continues.
    pub stop_at_step: Option<u64>,
    /// Tests: the data-parallel replica of this rank panics in this (0-based) step.
    #[cfg(test)]
    pub(crate) fail_at: Option<(usize, u64)>,
    /// Tests: the loss of this (0-based) step reads back as NaN.
    #[cfg(test)]
    pub(crate) poison_at: Option<u64>,
}

/// Files of a run folder.
pub struct RunDir(PathBuf);

impl RunDir {
    /// The run folder at `root`.
    pub fn new(root: &Path) -> Self {
        Self(root.to_path_buf())
    }
    /// `config.json`.
    pub fn config(&self) -> PathBuf {
        self.0.join("config.json")
    }
    /// `metrics.jsonl`.
    pub fn metrics(&self) -> PathBuf {
        self.0.join("metrics.jsonl")
    }
    /// `loss.svg`.
    pub fn plot(&self) -> PathBuf {
        self.0.join("loss.svg")
    }
    /// `checkpoints/`.
    pub fn checkpoints(&self) -> PathBuf {
        self.0.join("checkpoints")
    }
}

/// Mean cross-entropy (nats per token) of `logits` against `targets`; half-precision logits
/// are converted to f32 first.
///
/// # Shapes
/// - logits: `[batch, seq, vocab]`, targets: `[batch, seq]` -> `[1]`
pub fn cross_entropy<B: Backend>(logits: Tensor<B, 3>, targets: Tensor<B, 2, Int>) -> Tensor<B, 1> {
    let [b, t, v] = logits.dims();
    let logits = match logits.dtype() {
        DType::F16 | DType::BF16 => logits.cast(DType::F32),
        _ => logits,
    };
    let logp = log_softmax(logits.reshape([b * t, v]), 1);
    logp.gather(1, targets.reshape([b * t, 1])).mean().neg()
}

/// Refuses windows holding a token id the model's embedding cannot index (a data file that
/// changed after it was checked): an error naming the id, never an out-of-bounds lookup. One
/// pass over host memory per batch.
pub fn check_ids(windows: &[Vec<u32>], vocab_size: usize) -> Result<(), TrainError> {
    match windows
        .iter()
        .flatten()
        .find(|&&id| id as usize >= vocab_size)
    {
        Some(&id) => Err(DataError::TokenOutOfRange { id, vocab_size }.into()),
        None => Ok(()),
    }
}

/// Inputs (first `seq_len` tokens) and targets (last `seq_len`) of windows of `seq_len + 1`.
pub fn batch_tensors<B: Backend>(
    windows: &[Vec<u32>],
    device: &B::Device,
) -> (Tensor<B, 2, Int>, Tensor<B, 2, Int>) {
    let t = windows[0].len() - 1;
    let mut input = Vec::with_capacity(windows.len() * t);
    let mut target = Vec::with_capacity(windows.len() * t);
    for w in windows {
        input.extend(w[..t].iter().map(|&x| x as i64));
        target.extend(w[1..].iter().map(|&x| x as i64));
    }
    let shape = [windows.len(), t];
    (
        Tensor::from_data(TensorData::new(input, shape), device),
        Tensor::from_data(TensorData::new(target, shape), device),
    )
}

/// Validation result.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq)]
pub struct EvalResult {
    /// Mean token loss (nats).
    pub val_loss: f64,
    /// `exp(val_loss)`.
    pub ppl: f64,
    /// Tokens scored.
    pub tokens: u64,
}

/// Scores the windows of `loader` in order (no shuffling): `max_batches` batches of
/// `batch_size`, or all windows when `max_batches` is 0.
pub fn evaluate<B: Backend>(
    model: &Transformer<B>,
    loader: &WindowLoader,
    batch_size: usize,
    max_batches: usize,
    device: &B::Device,
) -> Result<EvalResult, TrainError> {
    let n = match max_batches {
        0 => loader.windows(),
        m => loader.windows().min(m * batch_size),
    };
    // The token-weighted sum stays on the device; one read at the end.
    let (mut sum, mut tokens) = (None::<Tensor<B, 1>>, 0u64);
    for start in (0..n).step_by(batch_size.max(1)) {
        let windows: Vec<Vec<u32>> = (start..(start + batch_size).min(n))
            .map(|w| loader.window(w))
            .collect();
        check_ids(&windows, model.config().vocab_size)?;
        let (input, target) = batch_tensors::<B>(&windows, device);
        let count = (windows.len() * (windows[0].len() - 1)) as u64;
        let loss = cross_entropy(model.forward(input)?, target).mul_scalar(count as f64);
        sum = Some(match sum {
            Some(s) => s + loss,
            None => loss,
        });
        tokens += count;
    }
    let sum: f64 = sum.map_or(0.0, |s| s.into_scalar().elem());
    let val_loss = sum / tokens.max(1) as f64;
    Ok(EvalResult {
        val_loss,
        ppl: val_loss.exp(),
        tokens,
    })
}

/// How a micro-batch is computed.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Compute {
    /// Arithmetic of the passes.
    pub precision: Precision,
    /// Factor the loss is multiplied by before the backward pass (f16 loss scaling; 1 otherwise).
    pub loss_scale: f64,
}

impl Compute {
    /// f32, no scaling.
    pub const F32: Compute = Compute {
        precision: Precision::F32,
        loss_scale: 1.0,
    };
}

/// Forward and backward of one micro-batch of windows: its mean token loss (unscaled, `[1]`,
/// left on the device: it may be non-finite, the caller decides when it reads it), and the
/// gradients of the (f32) parameters of `model` scaled by `loss_scale / accum` (burn's
/// accumulator sums, so `accum` micro-batches average). In half precision the passes run on
/// [`Precision::apply`]'s copy of the model.
pub fn micro_step<B: AutodiffBackend>(
    model: &Transformer<B>,
    windows: &[Vec<u32>],
    accum: usize,
    compute: Compute,
    device: &B::Device,
) -> Result<(Tensor<B::InnerBackend, 1>, GradientsParams), TrainError> {
    check_ids(windows, model.config().vocab_size)?;
    let (input, target) = batch_tensors::<B>(windows, device);
    let logits = compute.precision.apply(model.clone()).forward(input)?;
    let loss = cross_entropy(logits, target);
    let value = loss.clone().inner();
    let grads = loss
        .mul_scalar(compute.loss_scale / accum as f64)
        .backward();
    Ok((value, GradientsParams::from_grads(grads, model)))
}

/// What [`apply_update`] did.
#[derive(Clone, Debug)]
pub struct Update<B: Backend> {
    /// The global gradient norm before clipping (of the unscaled loss), `[1]`, on the device.
    pub norm: Tensor<B, 1>,
    /// Whether the update was applied. Only a scaled (f16) step reads the norm back to decide
    /// (as PyTorch's `GradScaler` does) and skips its update when the norm is not finite; every
    /// other step is applied without reading anything back, and a non-finite norm shows when
    /// the caller reads it.
    pub applied: bool,
}

/// Clips `grads` (of a loss multiplied by `compute.loss_scale`) by their global norm to `clip`
/// (0: no clipping) and applies one AdamW update with learning rate `lr`, the norm and the
/// clipping factor computed on the device. Returns the model and what was done.
pub fn apply_update<B: AutodiffBackend>(
    model: Transformer<B>,
    optim: &mut AdamW<B::InnerBackend>,
    grads: &GradientsParams,
    lr: f64,
    clip: f64,
    compute: Compute,
) -> (Transformer<B>, Update<B::InnerBackend>) {
    let device = model.devices()[0].clone();
    let scaled_norm = global_grad_norm(&model, grads, &device);
    let norm = scaled_norm.clone().div_scalar(compute.loss_scale);
    if compute.precision.scaled() {
        let value: f64 = norm.clone().into_scalar().elem();
        if !value.is_finite() {
            return (
                model,
                Update {
                    norm,
                    applied: false,
                },
            );
        }
    }
    let factor = clip_scale(scaled_norm, clip, compute.loss_scale);
    let model = optim.step_scaled(model, grads, lr, factor);
    (
        model,
        Update {
            norm,
            applied: true,
        },
    )
}

/// The generator seed of step `step` in a run seeded `seed` (splitmix64 of both).
pub fn step_seed(seed: u64, step: u64) -> u64 {
    let mut z = seed ^ step.wrapping_add(1).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The cursor at which `windows_done` windows have been drawn.
pub(crate) fn cursor_at(windows_done: u64, windows_per_epoch: usize) -> Cursor {
    let n = windows_per_epoch as u64;
    Cursor {
        epoch: windows_done / n,
        index: windows_done % n,
    }
}

/// The settings of the run in folder `out` (its `config.json`).
pub fn read_run_config(out: &Path) -> Result<TrainConfig, TrainError> {
    let dir = RunDir::new(out);
    let Ok(text) = std::fs::read_to_string(dir.config()) else {
        return Err(TrainError::Config(format!(
            "nothing to resume: {} holds no run",
            out.display()
        )));
    };
    serde_json::from_str(&text).map_err(|e| {
        TrainError::Config(format!(
            "{}: not a strata run config: {e}",
            dir.config().display()
        ))
    })
}

/// With `--resume`: the newest checkpoint of the run in `dir` and the run's saved settings
/// (which apply), after checking that the run trains the same model.
fn find_resume(dir: &RunDir, config: &TrainConfig) -> Result<(PathBuf, TrainConfig), TrainError> {
    let saved = read_run_config(&dir.0)?;
    if saved.model != config.model {
        return Err(TrainError::Config(format!(
            "{} holds a run of a different model ({}), not {}",
            dir.0.display(),
            saved.model_name,
            config.model_name
        )));
    }
    let Some((_, latest)) = checkpoint::list(&dir.checkpoints()).pop() else {
        return Err(TrainError::Config(format!(
            "nothing to resume: {} has no checkpoint yet",
            dir.0.display()
        )));
    };
    Ok((latest, saved))
}

/// A fresh run: refuses to replace another run unless forced; creates the folder.
fn claim_fresh(dir: &RunDir, force: bool) -> Result<(), TrainError> {
    if dir.config().exists() {
        if !force {
            return Err(TrainError::Config(format!(
                "{} holds another run; pass --resume to continue it or --force to replace it",
                dir.0.display()
            )));
        }
        let _ = std::fs::remove_dir_all(dir.checkpoints());
        for f in [dir.metrics(), dir.plot(), dir.config()] {
            let _ = std::fs::remove_file(f);
        }
    }
    std::fs::create_dir_all(&dir.0).map_err(|e| DataError::io(&dir.0, e))?;
    Ok(())
}

/// Trains (or resumes) the run in `out` on `device`, reporting to `observer`.
pub fn train<B: AutodiffBackend>(
    config: &TrainConfig,
    out: &Path,
    options: RunOptions,
    device: &B::Device,
    observer: &mut dyn Observer,
) -> Result<Summary, TrainError> {
    train_on::<B>(config, out, options, std::slice::from_ref(device), observer)
}

/// Trains (or resumes) the run in `out` data-parallel over `devices` (one replica each; see
/// [`crate::parallel`]), reporting to `observer`. The run's `devices` setting must match.
pub fn train_on<B: AutodiffBackend>(
    config: &TrainConfig,
    out: &Path,
    options: RunOptions,
    devices: &[B::Device],
    observer: &mut dyn Observer,
) -> Result<Summary, TrainError> {
    let dir = RunDir::new(out);
    let resumed = match options.resume {
        true => Some(find_resume(&dir, config)?),
        false => None,
    };
    let config = match &resumed {
        Some((_, saved)) => saved,
        None => config,
    };
    config.validate()?;
    if config.devices != devices.len() {
        return Err(TrainError::Config(format!(
            "the run is set for {} device(s) but {} were given; pass --devices {}",
            config.devices,
            devices.len(),
            config.devices
        )));
    }
    for device in devices {
        config.precision.check::<B>(device)?;
    }
    let device = &devices[0];
    // Data problems surface before the output folder is touched.
    let manifest = Manifest::load(&config.data)?;
    manifest.check_vocab(&config.model_name, config.model.vocab_size)?;
    let open_loader = || {
        manifest.loader(
            &config.data,
            &manifest.train,
            config.seq_len,
            config.seed,
            true,
        )
    };
    let loader = open_loader()?;
    let peer_loaders = (1..devices.len())
        .map(|_| open_loader())
        .collect::<Result<Vec<_>, _>>()?;
    let val_loader =
        manifest.loader(&config.data, &manifest.validation, config.seq_len, 0, false)?;
    let tokenizer = manifest.tokenizer.as_ref().map(|t| config.data.join(t));
    if let Some(t) = &tokenizer {
        if !t.is_file() {
            return Err(TrainError::Tokenizer(format!("{} is missing", t.display())));
        }
    }
    if resumed.is_none() {
        claim_fresh(&dir, options.force)?;
    }
    let plan = config.plan()?;

    // The model: seeded init, guides when self-guided, then the checkpoint if resuming.
    let mut model_config = config.model.clone();
    if config.sgt.is_some() {
        model_config.self_guided = true;
    }
    B::seed(device, config.seed);
    let mut model: Transformer<B> = model_config.init(device)?;
    let mut optim = AdamW::<B::InnerBackend>::new(config.adamw);
    let mut state = TrainState {
        seed: config.seed,
        guides: model_config.self_guided,
        loss_scale: config.precision.scaled().then(LossScaler::default),
        ..TrainState::default()
    };
    if let Some((ckpt, _)) = &resumed {
        state = checkpoint::read_state(ckpt)?;
        if !state.guides {
            model.drop_guides();
        }
        checkpoint::load_weights(ckpt, &mut model)?;
        optim.load(&ckpt.join(checkpoint::OPTIMIZER), device)?;
        if state.step >= plan.total_steps {
            return Err(TrainError::Config(format!(
                "nothing to resume: the run in {} is complete ({} steps)",
                dir.0.display(),
                state.step
            )));
        }
    } else {
        let json = serde_json::to_string_pretty(config).expect("plain config");
        write_atomic(&dir.config(), json.as_bytes())?;
    }
    if let Some(sgt) = &config.sgt {
        model.set_reduce_flop(sgt.reduce_flop);
    }
    let mut metrics = MetricsLog::open(&dir.metrics(), resumed.as_ref().map(|_| state.step))?;
    observer.event(Event::Started {
        plan: &plan,
        start_step: state.step,
        params: model.num_params(),
    });

    // FLOPs of everything but the linear layers (scores, head), per token: the paper's formula.
    let fixed = accounting::forward_flops(&config.model, config.seq_len, false, false);
    let ctx = StepContext {
        config: config.clone(),
        plan,
        lr: config.lr_schedule(&plan),
        fixed_per_token: fixed.attention_scores + fixed.head,
        #[cfg(test)]
        fail_at: options.fail_at,
    };
    let step_tokens = (config.global_batch() * config.seq_len) as u64;
    let mut replica = Replica {
        model,
        optim,
        loader,
        device: device.clone(),
        rank: 0,
        peers: devices.len(),
        guides: state.guides,
        scaler: state.loss_scale,
    };
    let resume_optimizer = resumed.as_ref().map(|(p, _)| p.join(checkpoint::OPTIMIZER));
    let peers = Peers::start(
        &replica,
        devices,
        peer_loaders,
        resume_optimizer.as_deref(),
        &ctx,
    )?;
    let session = Instant::now();
    let elapsed_before = state.elapsed_s;
    let mut pending = Pending::new(state.tokens, state.flops);
    let mut stopped_early = false;
    let mut last_checkpoint = resumed.as_ref().map(|(p, _)| p.clone()).unwrap_or_default();

    for step in state.step..plan.total_steps {
        peers.begin(step)?;
        let loss_scale = replica.scaler.map(|s| s.scale);
        let done;
        (replica, done) = match replica.step(step, &ctx) {
            Ok(stepped) => stepped,
            Err(e) => return Err(peers.abort(e)),
        };
        state.step = step + 1;
        observer.event(Event::Issued(state.step));
        state.tokens += step_tokens;
        state.flops += done.flops;
        state.cursor = replica.loader.cursor();
        state.alpha = plan.alpha(step);
        state.guides = replica.guides;
        state.loss_scale = replica.scaler;
        let now = session.elapsed().as_secs_f64();
        state.elapsed_s = elapsed_before + now;

        let last = state.step == plan.total_steps;
        let stop_now = !last
            && (options.time_limit_s.is_some_and(|l| now >= l)
                || options.stop_at_step.is_some_and(|s| state.step >= s));
        let eval_now = last
            || stop_now
            || (config.eval_every > 0 && state.step.is_multiple_of(config.eval_every));
        let checkpoint_now = last
            || stop_now
            || (config.checkpoint_every > 0 && state.step.is_multiple_of(config.checkpoint_every));
        // The loss and gradient norm stay on the device; the record is completed when they
        // are read (below), with every other pending step's.
        let record = StepRecord {
            step: state.step,
            total_steps: plan.total_steps,
            tokens: state.tokens,
            lr: ctx.lr.at(step),
            alpha: state.alpha,
            guides_used: done.guides_used,
            skipped: !done.applied,
            loss_scale,
            flops: state.flops,
            elapsed_s: state.elapsed_s,
            ..StepRecord::default()
        };
        let logged = eval_now || state.step.is_multiple_of(config.log_every);
        #[cfg(test)]
        let mut done = done;
        #[cfg(test)]
        if options.poison_at == Some(step) {
            done.loss = done.loss.mul_scalar(f64::NAN);
        }
        pending.push(
            record,
            logged,
            done.loss,
            done.grad_norm,
            loss_scale.is_some(),
        );
        if eval_now || checkpoint_now || pending.due() {
            let mut records = pending.read(config.peak_flops)?;
            if eval_now {
                // The trained model in the training precision, every guide in use (not
                // reduce_flop's last draw): the function `strata eval` scores on the checkpoint.
                let mut trained = replica.model.valid();
                trained.set_reduce_flop(false);
                let r = evaluate(
                    &config.precision.apply(trained),
                    &val_loader,
                    config.batch_size,
                    config.eval_batches * config.devices,
                    device,
                )?;
                if let Some(record) = records.last_mut() {
                    record.val_loss = Some(r.val_loss);
                    record.val_ppl = Some(r.ppl);
                }
                state.val_loss = Some(r.val_loss);
            }
            for record in &records {
                metrics.append(record)?;
                observer.event(Event::Step(record));
            }
            if eval_now {
                write_atomic(
                    &dir.plot(),
                    loss_svg(metrics.records(), &config.model_name).as_bytes(),
                )?;
            }
        }
        if checkpoint_now {
            last_checkpoint = checkpoint::save(
                &dir.checkpoints(),
                &replica.model,
                &replica.optim,
                &state,
                tokenizer.as_deref(),
                config.keep,
            )?;
            observer.event(Event::Checkpoint(&last_checkpoint));
        }
        if stop_now {
            stopped_early = true;
            break;
        }
    }
    peers.finish::<B>()?;
    write_atomic(
        &dir.plot(),
        loss_svg(metrics.records(), &config.model_name).as_bytes(),
    )?;
    let summary = Summary {
        model: config.model_name.clone(),
        params: replica.model.num_params(),
        steps: state.step,
        tokens: state.tokens,
        flops: state.flops,
        elapsed_s: state.elapsed_s,
        tokens_per_s: state.tokens as f64 / state.elapsed_s.max(1e-9),
        val_loss: state.val_loss,
        val_ppl: state.val_loss.map(f64::exp),
        stopped_early,
        checkpoint: last_checkpoint,
    };
    observer.event(Event::Finished(&summary));
    Ok(summary)
}
