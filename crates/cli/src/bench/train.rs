//! `strata bench train`: training tokens/s and MFU of zoo models (forward, backward, global
//! clipping and AdamW on synthetic windows), one JSON line per model.

use std::time::Instant;

use anyhow::{bail, Result};
use burn::module::Module;
use burn::tensor::backend::Backend;
use clap::Args;
use serde_json::json;
use trainer::config::DEFAULTS;
use trainer::optim::{AdamW, AdamWConfig};
use trainer::profile::{profiled_step, PhaseTimes, StepSettings, PHASES};
use trainer::train::{apply_update, micro_step, Compute};
use transformer::accounting::{forward_flops, mfu};
use transformer::zoo::{resolve_model, Zoo};
use transformer::Precision;
use transformer::{Transformer, TransformerConfig};

use super::driver::{self, Tally};
use super::{median, round1, round3};
use crate::backend::{dispatch, BackendKind, Job};

#[derive(Args, Debug, Clone)]
pub struct TrainBenchArgs {
    /// Zoo names or config files of the models.
    #[arg(long, num_args = 1.., default_values_t = ["tiny-dense".to_string(), "tiny-lowrank-r32".to_string()])]
    model: Vec<String>,
    /// Sequences per step.
    #[arg(long, default_value_t = 8)]
    batch_size: usize,
    /// Tokens per sequence (default: the model's max_seq_len).
    #[arg(long)]
    seq_len: Option<usize>,
    /// Timed optimizer steps (median reported).
    #[arg(long, default_value_t = 5)]
    steps: usize,
    /// Untimed steps first.
    #[arg(long, default_value_t = 2)]
    warmup: usize,
    /// Train with the self-guided guides present (alpha 0.5), as in the guided phase.
    #[arg(long)]
    guided: bool,
    /// Forward/backward arithmetic (f32 master weights either way).
    #[arg(long, value_enum, default_value_t = DEFAULTS.precision)]
    precision: Precision,
    /// Device peak TFLOP/s, to report MFU.
    #[arg(long)]
    peak_tflops: Option<f64>,
    /// Backend.
    #[arg(long, value_enum, default_value = "cpu")]
    backend: BackendKind,
    /// Seed of the model's initialisation.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Time each phase of the step (batch, forward + loss, backward, norm + clipping, AdamW),
    /// synchronising the device between them; reported as `phases_ms` (medians). On the CUDA
    /// driver stand-in, also the driver calls of each phase (`driver_per_phase`).
    #[arg(long)]
    profile: bool,
}

pub fn run(args: TrainBenchArgs) -> Result<()> {
    if args.batch_size == 0 || args.steps == 0 {
        bail!("`--batch-size` and `--steps` must be at least 1");
    }
    let zoo = Zoo::builtin()?;
    for model in &args.model {
        let entry = resolve_model(&zoo, model)?;
        let seq_len = args.seq_len.unwrap_or(entry.config.max_seq_len);
        if seq_len == 0 || seq_len > entry.config.max_seq_len {
            bail!(
                "--seq-len {seq_len} must lie in 1..={} for {}",
                entry.config.max_seq_len,
                entry.name
            );
        }
        dispatch(
            args.backend,
            TrainBench {
                args: args.clone(),
                name: entry.name,
                config: entry.config,
                seq_len,
            },
        )?;
    }
    Ok(())
}

struct TrainBench {
    args: TrainBenchArgs,
    name: String,
    config: TransformerConfig,
    seq_len: usize,
}

/// What the timed steps of [`TrainBench::steps`] measured.
struct Samples {
    /// Seconds of each timed step.
    times: Vec<f64>,
    /// Each timed step's phases (with `--profile`).
    phases: Vec<PhaseTimes>,
    /// Seconds from the end of the first step to the end of the last.
    after_first: f64,
    /// On the CUDA stand-in: the driver calls of each timed step...
    per_step: Tally,
    /// ... and of each of its phases (with `--profile`), in the order of [`PHASES`].
    per_phase: Vec<Tally>,
}

impl TrainBench {
    /// The warm-up and timed steps of `model`.
    fn steps<B: Backend>(
        &self,
        mut model: Transformer<burn::backend::Autodiff<B>>,
        optim: &mut AdamW<B>,
        windows: &[Vec<u32>],
        settings: StepSettings,
        device: &B::Device,
    ) -> Result<(Transformer<burn::backend::Autodiff<B>>, Samples)> {
        let args = &self.args;
        let mut samples = Samples {
            times: Vec::new(),
            phases: Vec::new(),
            after_first: 0.0,
            per_step: Tally::default(),
            per_phase: PHASES.iter().map(|_| Tally::default()).collect(),
        };
        let mut first_done = Instant::now();
        for i in 0..args.warmup + args.steps {
            let timed = i >= args.warmup;
            let step_counts = driver::now();
            let start = Instant::now();
            if args.profile {
                let mut last = driver::now();
                let per_phase = &mut samples.per_phase;
                let mut probe = |phase: &'static str| {
                    let now = driver::now();
                    let slot = PHASES.iter().position(|p| *p == phase);
                    if let (true, Some(slot), Some(a), Some(b)) = (timed, slot, &last, &now) {
                        per_phase[slot].add(a, b);
                    }
                    last = now;
                };
                let took;
                (model, took) = profiled_step(model, optim, windows, settings, device, &mut probe)?;
                if timed {
                    samples.phases.push(took);
                }
            } else {
                let compute = settings.compute;
                let (_, grads) = micro_step(&model, windows, 1, compute, device)?;
                (model, _) =
                    apply_update(model, optim, &grads, settings.lr, settings.clip, compute);
            }
            B::sync(device)?;
            if i == 0 {
                first_done = Instant::now();
            }
            if timed {
                samples.times.push(start.elapsed().as_secs_f64());
                if let (Some(a), Some(b)) = (&step_counts, &driver::now()) {
                    samples.per_step.add(a, b);
                }
            }
        }
        samples.after_first = first_done.elapsed().as_secs_f64();
        Ok((model, samples))
    }
}

impl Job for TrainBench {
    type Output = ();

    fn run<B: Backend>(self, device: B::Device) -> Result<()> {
        type AB<B> = burn::backend::Autodiff<B>;
        let args = &self.args;
        let mut config = self.config.clone();
        config.self_guided = args.guided;
        let job_start = Instant::now();
        B::seed(&device, args.seed);
        let mut model: Transformer<AB<B>> = config.init(&device)?;
        if args.guided {
            model.set_alpha(0.5)?;
        }
        let mut optim = AdamW::<B>::new(AdamWConfig::default());
        let precision = args.precision;
        precision.check::<B>(&device)?;
        let compute = Compute {
            precision,
            loss_scale: if precision.scaled() { 1024.0 } else { 1.0 },
            skip_nonfinite: false,
        };
        let windows: Vec<Vec<u32>> = (0..args.batch_size)
            .map(|b| {
                (0..=self.seq_len)
                    .map(|i| ((i * 7919 + b * 104_729) % config.vocab_size) as u32)
                    .collect()
            })
            .collect();
        let tokens = (args.batch_size * self.seq_len) as u64;
        let flops = 3.0
            * (tokens * {
                let f = forward_flops(&config, self.seq_len, false, false);
                f.attention_scores + f.head
            } + model.linear_flops(tokens)) as f64;
        let settings = StepSettings {
            lr: 1e-4,
            clip: 1.0,
            compute,
        };
        let samples;
        (model, samples) = self.steps(model, &mut optim, &windows, settings, &device)?;
        // From the model's init to the end of the first optimizer step: on a GPU, kernel
        // compilation and autotune (cold or warm caches) included.
        let first_step = job_start.elapsed().as_secs_f64() - samples.after_first;
        let Samples {
            times,
            phases,
            per_step,
            per_phase,
            ..
        } = samples;
        let t = median(times);
        let mut line = json!({
            "bench": "train",
            "model": self.name,
            "backend": args.backend.name(),
            "batch_size": args.batch_size,
            "seq_len": self.seq_len,
            "guided": args.guided,
            "precision": precision.name(),
            "params": model.num_params(),
            "step_ms": round1(t * 1e3),
            "first_step_s": round3(first_step),
            "tokens_per_s": round1(tokens as f64 / t),
            "flops_per_step": flops,
            "tflops_per_s": round3(flops / t / 1e12),
        });
        if args.profile {
            let ms =
                |f: fn(&PhaseTimes) -> f64| round1(median(phases.iter().map(f).collect()) * 1e3);
            line["phases_ms"] = json!({
                "data": ms(|p| p.data),
                "forward": ms(|p| p.forward),
                "backward": ms(|p| p.backward),
                "clip": ms(|p| p.clip),
                "adamw": ms(|p| p.adamw),
            });
        }
        if driver::now().is_some() {
            line["driver_per_step"] = per_step.per_unit();
            if args.profile {
                let phases: serde_json::Map<String, serde_json::Value> = PHASES
                    .iter()
                    .zip(&per_phase)
                    .map(|(p, t)| (p.to_string(), t.per_unit()))
                    .collect();
                line["driver_per_phase"] = phases.into();
            }
        }
        if let Some(p) = args.peak_tflops {
            line["mfu"] = round3(mfu(flops, t, p * 1e12)).into();
        }
        println!("{line}");
        Ok(())
    }
}
