//! `strata train`: flags -> [`TrainConfig`], the run on the chosen backend (with the progress
//! display of [`crate::progress`] and the stall watchdog) and the final summary.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Result};
use burn::backend::Autodiff;
use burn::tensor::backend::Backend;
use clap::{Args, ValueEnum};
use trainer::config::DEFAULTS;
use trainer::optim::{AdamWConfig, Decay};
use trainer::parallel::local_devices;
use trainer::precision::Precision;
use trainer::schedule::{AlphaShape, SgtConfig, SgtMode};
use trainer::train::{self, Budget, Observer, RunOptions, Start, Summary, TrainConfig};
use transformer::zoo::{resolve_model, Zoo};

use crate::backend::{dispatch, BackendKind, Job};
use crate::progress::Progress;
use crate::watchdog::{Watchdog, Watched};

/// `--sgt`: none, or the library's mode (the settings' enums are clap values themselves).
fn parse_sgt(text: &str) -> Result<std::option::Option<SgtMode>, String> {
    match text {
        "none" => Ok(None),
        mode => SgtMode::from_str(mode, false)
            .map(Some)
            .map_err(|_| format!("`{mode}`: expected none, fixedstep or fixedflop")),
    }
}

#[derive(Args, Debug, Clone)]
pub struct TrainArgs {
    /// Zoo name or model config file (.json / .toml). Not with --init (the checkpoint's model
    /// is used); optional with --resume (checked against the run's when given).
    #[arg(long, required_unless_present_any = ["init", "resume"], conflicts_with = "init")]
    pub model: Option<String>,
    /// Start from the weights of this checkpoint (`strata import hf`, `strata convert`, or a
    /// run) with a fresh optimizer; its model is the run's. With --sgt its guides (a
    /// `convert --self-guided` checkpoint's pretrained matrices) are decayed away; without,
    /// they are dropped.
    #[arg(long, conflicts_with = "resume")]
    pub init: Option<PathBuf>,
    /// Prepared data folder (`strata data prepare`).
    #[arg(long)]
    pub data: PathBuf,
    /// Run folder: config.json, metrics.jsonl, loss.svg, checkpoints/.
    #[arg(long)]
    pub out: PathBuf,
    /// Backend.
    #[arg(long, value_enum, default_value = "cpu")]
    pub backend: BackendKind,
    /// Forward/backward arithmetic; weights, optimizer state and checkpoints stay f32.
    #[arg(long, value_enum, default_value_t = DEFAULTS.precision)]
    pub precision: Precision,
    /// Data-parallel training over this many local devices (GPUs 0..N-1; on the CPU backends
    /// the replicas share the CPU, one thread each, which keeps more cores busy than one
    /// replica). Each device takes --batch-size sequences per micro-batch. Default: 1, or the
    /// resumed run's count.
    #[arg(long)]
    pub devices: Option<usize>,
    /// Continue the run in --out from its newest checkpoint (its saved settings apply).
    #[arg(long)]
    pub resume: bool,
    /// Replace a run already in --out.
    #[arg(long, conflicts_with = "resume")]
    pub force: bool,
    /// Optimizer steps (before fixedflop's extra steps).
    #[arg(long, allow_hyphen_values = true, conflicts_with = "tokens")]
    pub steps: Option<i64>,
    /// Token budget: floor(tokens / (global batch x seq len)) steps.
    #[arg(long, allow_hyphen_values = true)]
    pub tokens: Option<i64>,
    /// Tokens per sequence (default: the model's max_seq_len).
    #[arg(long)]
    pub seq_len: Option<usize>,
    /// Sequences per micro-batch.
    #[arg(long, default_value_t = DEFAULTS.batch_size)]
    pub batch_size: usize,
    /// Sequences per optimizer step (a multiple of --batch-size; gradient accumulation makes up
    /// the difference). Default: --batch-size.
    #[arg(long)]
    pub global_batch: Option<usize>,
    /// Peak learning rate.
    #[arg(long, default_value_t = DEFAULTS.lr, allow_negative_numbers = true)]
    pub lr: f64,
    /// Warmup as a fraction of the steps.
    #[arg(long, default_value_t = DEFAULTS.warmup_frac)]
    pub warmup: f64,
    /// Cosine floor as a fraction of --lr.
    #[arg(long, default_value_t = DEFAULTS.min_lr_ratio)]
    pub min_lr_ratio: f64,
    /// AdamW weight decay.
    #[arg(long, default_value_t = DEFAULTS.adamw.weight_decay)]
    pub weight_decay: f64,
    /// Which parameters decay: all (one group, the papers' reference) or matrices (not biases
    /// and norm weights: GPT-2 / nanoGPT).
    #[arg(long, value_enum, default_value_t = DEFAULTS.adamw.decay)]
    pub decay: Decay,
    /// AdamW beta1.
    #[arg(long, default_value_t = DEFAULTS.adamw.beta1)]
    pub beta1: f64,
    /// AdamW beta2.
    #[arg(long, default_value_t = DEFAULTS.adamw.beta2)]
    pub beta2: f64,
    /// AdamW epsilon.
    #[arg(long, default_value_t = DEFAULTS.adamw.eps)]
    pub eps: f64,
    /// Clip the global gradient norm to this (0: off).
    #[arg(long, default_value_t = DEFAULTS.clip)]
    pub clip: f64,
    /// Self-guided training: none, fixedstep (guide during the first ratio x N of N steps) or
    /// fixedflop (add ratio x N steps to match dense FLOPs, replaying the guided phase's data
    /// at the end).
    #[arg(long, value_parser = parse_sgt, default_value = "none")]
    pub sgt: std::option::Option<SgtMode>,
    /// SGT ratio: guided fraction (fixedstep) or added fraction (fixedflop) of the steps.
    #[arg(long, default_value_t = DEFAULTS.sgt_ratio)]
    pub sgt_ratio: f64,
    /// Alpha's decay.
    #[arg(long, value_enum, default_value_t = DEFAULTS.sgt_shape)]
    pub sgt_schedule: AlphaShape,
    /// Evaluate each guide with probability alpha only.
    #[arg(long)]
    pub reduce_flop: bool,
    /// Evaluate every N steps (and at the end; 0: only at the end).
    #[arg(long, default_value_t = DEFAULTS.eval_every)]
    pub eval_every: u64,
    /// Validation batches per evaluation (0: the whole validation split).
    #[arg(long, default_value_t = DEFAULTS.eval_batches)]
    pub eval_batches: usize,
    /// Write a metrics record every N steps.
    #[arg(long, default_value_t = DEFAULTS.log_every)]
    pub log_every: u64,
    /// Checkpoint every N steps (and at the end; 0: only at the end).
    #[arg(long, default_value_t = DEFAULTS.checkpoint_every)]
    pub checkpoint_every: u64,
    /// Checkpoints kept.
    #[arg(long, default_value_t = DEFAULTS.keep)]
    pub keep: usize,
    /// Seed of everything.
    #[arg(long, default_value_t = DEFAULTS.seed)]
    pub seed: u64,
    /// Device peak TFLOP/s, to report MFU.
    #[arg(long)]
    pub peak_tflops: Option<f64>,
    /// Stop with a checkpoint after this many seconds (`--resume` continues).
    #[arg(long)]
    pub time_limit: Option<f64>,
    /// Stop with a checkpoint once this step is done (`--resume` continues).
    #[arg(long)]
    pub stop_at: Option<u64>,
    /// End the run with an error when it makes no progress (no step, no kernel compiled) for
    /// this many seconds; 0 turns the watchdog off. Default: 600 on the GPU backends, off on
    /// the CPU ones.
    #[arg(long, allow_negative_numbers = true)]
    pub stall_timeout: Option<f64>,
    /// Skip up to this many steps whose loss or gradients are not finite (no update) before
    /// stopping with an error; 0 stops at the first. Costs one small read-back per step. With
    /// --resume it applies to this session.
    #[arg(long, allow_hyphen_values = true)]
    pub skip_nonfinite: Option<u64>,
    /// Print the summary as JSON.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub cluster: crate::nodes::NodeArgs,
}

fn positive(name: &str, v: Option<i64>) -> Result<Option<u64>> {
    match v {
        Some(n) if n <= 0 => bail!("--{name} must be positive (got {n})"),
        Some(n) => Ok(Some(n as u64)),
        None => Ok(None),
    }
}

/// Builds the run's settings from the flags.
pub fn config(args: &TrainArgs) -> Result<TrainConfig> {
    let (name, model) = match (&args.init, &args.model) {
        (Some(init), _) => {
            let dir = trainer::checkpoint::resolve(init)?;
            let mut model = trainer::checkpoint::read_model_config(&dir)?;
            model.self_guided = false; // the run's --sgt decides
            (format!("init:{}", init.display()), model)
        }
        (None, Some(name)) => {
            let entry = resolve_model(&Zoo::builtin()?, name)?;
            (entry.name, entry.config)
        }
        (None, None) => bail!("give --model NAME or --init CHECKPOINT"),
    };
    let budget = match (
        positive("steps", args.steps)?,
        positive("tokens", args.tokens)?,
    ) {
        (Some(s), _) => Budget::Steps(s),
        (None, Some(t)) => Budget::Tokens(t),
        (None, None) => bail!("give a budget: --steps N or --tokens N"),
    };
    let mut c = TrainConfig::new(&name, model, args.data.clone(), budget);
    c.init = args.init.clone();
    if let Some(s) = args.seq_len {
        c.seq_len = s;
    }
    if args.batch_size == 0 {
        bail!("--batch-size must be at least 1");
    }
    c.batch_size = args.batch_size;
    let global = args.global_batch.unwrap_or(args.batch_size);
    if global == 0 || !global.is_multiple_of(args.batch_size) {
        bail!(
            "--global-batch {global} must be a positive multiple of --batch-size {}",
            args.batch_size
        );
    }
    c.grad_accum = global / args.batch_size;
    c.lr = args.lr;
    c.warmup_frac = args.warmup;
    c.min_lr_ratio = args.min_lr_ratio;
    c.adamw = AdamWConfig {
        beta1: args.beta1,
        beta2: args.beta2,
        eps: args.eps,
        weight_decay: args.weight_decay,
        decay: args.decay,
    };
    c.clip = args.clip;
    c.sgt = args.sgt.map(|mode| SgtConfig {
        mode,
        ratio: args.sgt_ratio,
        shape: args.sgt_schedule,
        reduce_flop: args.reduce_flop,
    });
    if c.sgt.is_none() && args.reduce_flop {
        bail!("--reduce-flop needs --sgt fixedstep or fixedflop");
    }
    c.eval_every = args.eval_every;
    c.eval_batches = args.eval_batches;
    c.log_every = args.log_every;
    c.checkpoint_every = args.checkpoint_every;
    c.keep = args.keep;
    c.seed = args.seed;
    c.peak_flops = args.peak_tflops.map(|t| t * 1e12);
    c.precision = args.precision;
    c.devices = args.devices.unwrap_or(1);
    c.skip_nonfinite = args.skip_nonfinite.unwrap_or(0);
    Ok(c)
}

/// Trains as `cluster`'s node (from [`crate::nodes::cluster`]) and returns the summary.
pub fn run_training(
    args: &TrainArgs,
    cluster: trainer::cluster::Cluster,
    observer: &mut (dyn Observer + Send),
) -> Result<Summary> {
    if let Some(t) = args.time_limit {
        if t.is_nan() || t <= 0.0 {
            bail!("--time-limit must be positive (got {t})");
        }
    }
    let stall = match (args.stall_timeout, args.backend) {
        (Some(t), _) if !(t >= 0.0 && t.is_finite()) => {
            bail!("--stall-timeout must be a number of seconds >= 0 (got {t})")
        }
        (Some(t), _) => t,
        (None, BackendKind::Wgpu | BackendKind::Cuda) => 600.0,
        (None, _) => 0.0,
    };
    let dog = (stall > 0.0).then(|| {
        Watchdog::start(
            Duration::from_secs_f64(stall),
            format!("training on {}", args.backend.name()),
        )
    });
    let mut observer = Watched {
        inner: observer,
        dog: dog.as_ref(),
    };
    // A resumed run uses its saved settings; the model named must be the run's.
    let start = if args.resume {
        if let Some(name) = &args.model {
            let entry = resolve_model(&Zoo::builtin()?, name)?;
            train::check_run_model(&args.out, &entry.name, &entry.config)?;
        }
        Start::Resume
    } else {
        let mut c = config(args)?;
        c.nodes = cluster.nodes;
        Start::Fresh(c)
    };
    let options = RunOptions {
        force: args.force,
        time_limit_s: args.time_limit,
        stop_at_step: args.stop_at,
        stop: Some(crate::signals::stop_on_signals()?),
        skip_nonfinite: if args.resume {
            args.skip_nonfinite
        } else {
            None
        },
        memory: crate::memory::limit(args.backend),
        faults: None,
    };
    // A resumed run keeps its device count unless --devices says otherwise.
    let devices = match (args.devices, args.resume) {
        (Some(n), _) => n,
        (None, true) => train::read_run_config(&args.out).map_or(1, |c| c.devices),
        (None, false) => 1,
    };
    dispatch(
        args.backend,
        TrainRun {
            start,
            out: args.out.clone(),
            options,
            devices,
            share_device: matches!(args.backend, BackendKind::Cpu | BackendKind::Ndarray),
            cluster,
            observer: &mut observer,
        },
    )
}

struct TrainRun<'a> {
    start: Start,
    out: PathBuf,
    options: RunOptions,
    devices: usize,
    share_device: bool,
    cluster: trainer::cluster::Cluster,
    observer: &'a mut (dyn Observer + Send),
}

impl Job for TrainRun<'_> {
    type Output = Summary;
    fn run<B: Backend>(self, _device: B::Device) -> Result<Summary> {
        let devices = local_devices::<B>(self.devices, self.share_device)?;
        Ok(train::train_nodes::<Autodiff<B>>(
            self.start,
            &self.out,
            self.options,
            &devices,
            &self.cluster,
            self.observer,
        )?)
    }
}

pub fn run(args: TrainArgs) -> Result<()> {
    let cluster = crate::nodes::cluster(&args.cluster)?;
    let follower = cluster.rank > 0;
    let mut progress = Progress::new();
    let summary = run_training(&args, cluster, &mut progress)?;
    progress.finish();
    if args.json {
        println!("{}", serde_json::to_string(&summary)?);
    } else if follower {
        println!(
            "{}: {} steps, {} tokens over all nodes; node 0 evaluated and wrote the checkpoints",
            summary.model, summary.steps, summary.tokens
        );
    } else {
        print_summary(&summary, &args.data);
    }
    if summary.interrupted {
        eprintln!(
            "interrupted after step {}; continue with: strata train --resume --data {} --out {}",
            summary.steps,
            args.data.display(),
            args.out.display()
        );
    }
    Ok(())
}

/// Prints a run's summary as text.
pub fn print_summary(s: &Summary, data: &Path) {
    let ppl = s
        .val_ppl
        .map(|p| format!("{p:.2}"))
        .unwrap_or_else(|| "-".into());
    println!(
        "{}: {:.2}M params | {} steps, {} tokens, {:.3e} FLOPs | {:.0} tokens/s over {:.0}s | validation perplexity {} ({})",
        s.model,
        s.params as f64 / 1e6,
        s.steps,
        s.tokens,
        s.flops,
        s.tokens_per_s,
        s.elapsed_s,
        ppl,
        data.display()
    );
    if s.stopped_early {
        println!("stopped early; continue with --resume");
    }
    println!("checkpoint: {}", s.checkpoint.display());
}
