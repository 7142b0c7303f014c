//! `strata train`: flags -> [`TrainConfig`], the run on the chosen backend (with the progress
//! display of [`crate::progress`] and the stall watchdog) and the final summary.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Result};
use burn::backend::Autodiff;
use burn::tensor::backend::Backend;
use clap::{Args, ValueEnum};
use trainer::config::{Recipe, DEFAULTS};
use trainer::parallel::local_devices;
use trainer::schedule::{SgtConfig, SgtMode};
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
    /// Prepared data folder (`strata data prepare`). With --resume: the run's own by default;
    /// give it when the folder moved (it must hold the same data).
    #[arg(long, required_unless_present = "resume")]
    pub data: Option<PathBuf>,
    /// Run folder: config.json, metrics.jsonl, loss.svg, checkpoints/.
    #[arg(long)]
    pub out: PathBuf,
    /// Backend.
    #[arg(long, value_enum, default_value = "cpu")]
    pub backend: BackendKind,
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
    /// Sequences per optimizer step (a multiple of --batch-size; gradient accumulation makes up
    /// the difference). Default: --batch-size.
    #[arg(long)]
    pub global_batch: Option<usize>,
    /// Self-guided training: none, fixedstep (guide during the first ratio x N of N steps) or
    /// fixedflop (add ratio x N steps to match dense FLOPs, replaying the guided phase's data
    /// at the end).
    #[arg(long, value_parser = parse_sgt, default_value = "none")]
    pub sgt: std::option::Option<SgtMode>,
    /// Evaluate each guide with probability alpha only.
    #[arg(long)]
    pub reduce_flop: bool,
    // The recipe's flags (`--batch-size`, `--lr`, `--warmup`, AdamW's, the cadences, `--seed`,
    // `--precision`, ...): the library's `Recipe`, defaults included.
    #[command(flatten)]
    pub recipe: Recipe,
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

/// Builds the run's settings from the flags: the recipe as given, and the settings the flags
/// spell differently (the model or checkpoint, the budget, `--global-batch`, `--sgt`, ...).
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
    let batch = args.recipe.batch_size;
    if batch == 0 {
        bail!("--batch-size must be at least 1");
    }
    let global = args.global_batch.unwrap_or(batch);
    if global == 0 || !global.is_multiple_of(batch) {
        bail!("--global-batch {global} must be a positive multiple of --batch-size {batch}");
    }
    if args.sgt.is_none() && args.reduce_flop {
        bail!("--reduce-flop needs --sgt fixedstep or fixedflop");
    }
    let Some(data) = args.data.clone() else {
        bail!("give the data folder: --data DIR");
    };
    let mut c = TrainConfig::with_recipe(&name, model, data, budget, &args.recipe);
    c.init = args.init.clone();
    c.seq_len = args.seq_len.unwrap_or(c.seq_len);
    c.grad_accum = global / batch;
    c.sgt = args.sgt.map(|mode| SgtConfig {
        mode,
        ratio: args.recipe.sgt_ratio,
        shape: args.recipe.sgt_shape,
        reduce_flop: args.reduce_flop,
    });
    c.peak_flops = args.peak_tflops.map(|t| t * 1e12);
    c.devices = args.devices.unwrap_or(DEFAULTS.devices);
    c.skip_nonfinite = args.skip_nonfinite.unwrap_or(DEFAULTS.skip_nonfinite);
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
    // A resumed run uses its saved settings (read once); the model named must be the run's.
    let start = if args.resume {
        let start = Start::resume(&args.out)?;
        if let (Some(name), Start::Resume(saved)) = (&args.model, &start) {
            let entry = resolve_model(&Zoo::builtin()?, name)?;
            train::check_run_model(&args.out, saved, &entry.name, &entry.config)?;
        }
        start
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
        data: args.data.clone(),
        memory: crate::memory::limit(args.backend),
        faults: None,
    };
    // A resumed run keeps its device count unless --devices says otherwise.
    let devices = match (args.devices, &start) {
        (Some(n), _) => n,
        (None, Start::Resume(saved)) => saved.devices,
        (None, Start::Fresh(c)) => c.devices,
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
        print_summary(&summary);
    }
    if summary.interrupted {
        eprintln!(
            "interrupted after step {}; continue with: strata train --resume --out {}",
            summary.steps,
            args.out.display()
        );
    }
    Ok(())
}

/// Prints a run's summary as text.
pub fn print_summary(s: &Summary) {
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
        s.data.display()
    );
    if s.stopped_early {
        println!("stopped early; continue with --resume");
    }
    println!("checkpoint: {}", s.checkpoint.display());
}
