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
use trainer::precision::Precision;
use trainer::profile::{profiled_step, PhaseTimes};
use trainer::train::{apply_update, micro_step, Compute};
use transformer::accounting::{forward_flops, mfu};
use transformer::zoo::{resolve_model, Zoo};
use transformer::{Transformer, TransformerConfig};

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
    /// synchronising the device between them; reported as `phases_ms` (medians).
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
        let mut times = Vec::new();
        let mut phases = Vec::new();
        let mut first_step = 0.0;
        for i in 0..args.warmup + args.steps {
            let start = Instant::now();
            if args.profile {
                let took;
                (model, took) =
                    profiled_step(model, &mut optim, &windows, 1e-4, 1.0, compute, &device)?;
                if i >= args.warmup {
                    phases.push(took);
                }
            } else {
                let (_, grads) = micro_step(&model, &windows, 1, compute, &device)?;
                (model, _) = apply_update(model, &mut optim, &grads, 1e-4, 1.0, compute);
            }
            B::sync(&device)?;
            let took = start.elapsed().as_secs_f64();
            if i == 0 {
                // From the model's init to the end of the first optimizer step: on a GPU,
                // kernel compilation and autotune (cold or warm caches) included.
                first_step = job_start.elapsed().as_secs_f64();
            }
            if i >= args.warmup {
                times.push(took);
            }
        }
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
        if let Some(p) = args.peak_tflops {
            line["mfu"] = round3(mfu(flops, t, p * 1e12)).into();
        }
        println!("{line}");
        Ok(())
    }
}
