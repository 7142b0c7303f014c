//! `strata bench decode`: decoding throughput of a zoo model in three forms (structured,
//! pre-merged dense, and dispatching by token count) at several batch sizes, one JSON line per
//! batch size. The pre-merge dispatch threshold's default comes from this measurement.
//! `strata bench train`: training tokens/s and MFU of zoo models, one JSON line per model.

use std::time::Instant;

use anyhow::{bail, Result};
use burn::module::Module;
use burn::tensor::backend::Backend;
use burn::tensor::{Int, Tensor, TensorData};
use clap::{Args, Subcommand};
use serde_json::json;
use trainer::optim::{AdamW, AdamWConfig};
use trainer::precision::Precision;
use trainer::train::{apply_update, micro_step, Compute};
use transformer::accounting::{forward_flops, mfu};
use transformer::zoo::{resolve_model, Zoo};
use transformer::{
    Dispatching, KvCache, Transformer, TransformerConfig, DEFAULT_DISPATCH_THRESHOLD,
};

use crate::backend::{dispatch, BackendKind, Job};
use crate::infer::cast_dispatching;
use crate::train::PrecisionArg;

#[derive(Subcommand, Debug)]
pub enum BenchCommand {
    /// Decoding tokens/s for structured, merged and dispatching models over batch sizes.
    Decode(DecodeArgs),
    /// Training tokens/s and MFU of a zoo model (forward, backward, clipping, AdamW).
    Train(TrainBenchArgs),
}

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
    #[arg(long, value_enum, default_value = "f32")]
    precision: PrecisionArg,
    /// Device peak TFLOP/s, to report MFU.
    #[arg(long)]
    peak_tflops: Option<f64>,
    /// Backend.
    #[arg(long, value_enum, default_value = "cpu")]
    backend: BackendKind,
    /// Seed of the model's initialisation.
    #[arg(long, default_value_t = 0)]
    seed: u64,
}

#[derive(Args, Debug, Clone)]
pub struct DecodeArgs {
    /// Zoo name or config file of the model.
    #[arg(long, default_value = "s-lowrank-r192")]
    model: String,
    /// Batch sizes (sequences decoded together).
    #[arg(long, num_args = 1.., default_values_t = [1, 2, 4, 8, 16, 32, 64, 128, 256])]
    batch: Vec<usize>,
    /// Tokens already in the KV cache when decoding starts.
    #[arg(long, default_value_t = 32)]
    context: usize,
    /// Decoding steps timed per sample.
    #[arg(long, default_value_t = 4)]
    steps: usize,
    /// Timed samples per form (median reported).
    #[arg(long, default_value_t = 3)]
    repeats: usize,
    /// Dispatch threshold in tokens (default: the built-in default).
    #[arg(long)]
    threshold: Option<usize>,
    /// Backend.
    #[arg(long, value_enum, default_value = "cpu")]
    backend: BackendKind,
    /// Arithmetic of decoding (the models are built in f32, merged, then cast).
    #[arg(long, value_enum, default_value = "f32")]
    precision: PrecisionArg,
    /// Seed of the model's initialisation.
    #[arg(long, default_value_t = 0)]
    seed: u64,
}

pub fn run(command: BenchCommand) -> Result<()> {
    match command {
        BenchCommand::Train(args) => {
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
        BenchCommand::Decode(args) => {
            for (name, value) in [
                ("batch", args.batch.iter().min().copied().unwrap_or(0)),
                ("steps", args.steps),
                ("repeats", args.repeats),
                ("context", args.context),
            ] {
                if value == 0 {
                    bail!("`--{name}` must be at least 1");
                }
            }
            let entry = resolve_model(&Zoo::builtin()?, &args.model)?;
            if args.context + args.steps > entry.config.max_seq_len {
                bail!(
                    "--context {} + --steps {} exceeds the model's max_seq_len {}",
                    args.context,
                    args.steps,
                    entry.config.max_seq_len
                );
            }
            dispatch(
                args.backend,
                Decode {
                    args: args.clone(),
                    name: entry.name,
                    config: entry.config,
                },
            )
        }
    }
}

struct Decode {
    args: DecodeArgs,
    name: String,
    config: TransformerConfig,
}

fn ids<B: Backend>(
    batch: usize,
    len: usize,
    vocab: usize,
    salt: usize,
    device: &B::Device,
) -> Tensor<B, 2, Int> {
    let v: Vec<i64> = (0..batch * len)
        .map(|i| ((i * 7919 + salt * 104_729) % vocab) as i64)
        .collect();
    Tensor::from_data(TensorData::new(v, [batch, len]), device)
}

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    let n = xs.len();
    if n % 2 == 1 {
        xs[n / 2]
    } else {
        0.5 * (xs[n / 2 - 1] + xs[n / 2])
    }
}

/// One form of the model: a cached forward.
type Form<'a, B> = Box<dyn Fn(Tensor<B, 2, Int>, &mut KvCache<B>) -> Result<Tensor<B, 3>> + 'a>;

/// Seconds to decode `steps` tokens per sequence after a prefill of `context` tokens.
fn time_decode<B: Backend>(
    forward: &Form<'_, B>,
    config: &TransformerConfig,
    batch: usize,
    args: &DecodeArgs,
    device: &B::Device,
) -> Result<f64> {
    // A cache of just the positions this run writes: fixed shapes, no unused memory.
    let mut cache = KvCache::with_capacity(config, args.context + args.steps)?;
    forward(
        ids(batch, args.context, config.vocab_size, 0, device),
        &mut cache,
    )?;
    B::sync(device)?;
    let start = Instant::now();
    for step in 0..args.steps {
        let logits = forward(
            ids(batch, 1, config.vocab_size, step + 1, device),
            &mut cache,
        )?;
        // Read the logits back, as a sampler must.
        let _ = logits.into_data();
    }
    B::sync(device)?;
    Ok(start.elapsed().as_secs_f64())
}

impl Job for Decode {
    type Output = ();

    fn run<B: Backend>(self, device: B::Device) -> Result<()> {
        let args = &self.args;
        let precision = Precision::from(args.precision);
        precision.check::<B>(&device)?;
        B::seed(&device, args.seed);
        let structured: Transformer<B> = self.config.init(&device)?;
        let threshold = args.threshold.unwrap_or(DEFAULT_DISPATCH_THRESHOLD);
        let dispatching = cast_dispatching(precision, Dispatching::new(structured, threshold));
        let config = dispatching.structured.config().clone();
        for &batch in &args.batch {
            let forms: [(&str, Form<B>); 3] = [
                (
                    "structured",
                    Box::new(|t, c| Ok(dispatching.structured.forward_cached(t, c)?)),
                ),
                (
                    "merged",
                    Box::new(|t, c| Ok(dispatching.merged.forward_cached(t, c)?)),
                ),
                (
                    "dispatching",
                    Box::new(|t, c| {
                        Ok(transformer::LanguageModel::forward_cached(
                            &dispatching,
                            t,
                            c,
                        )?)
                    }),
                ),
            ];
            // Warm up once, then sample the three forms round-robin.
            for (_, f) in &forms {
                time_decode(f, &config, batch, args, &device)?;
            }
            let mut samples = vec![Vec::new(); forms.len()];
            for _ in 0..args.repeats {
                for (i, (_, f)) in forms.iter().enumerate() {
                    samples[i].push(time_decode(f, &config, batch, args, &device)?);
                }
            }
            let tok_s: Vec<f64> = samples
                .into_iter()
                .map(|s| (batch * args.steps) as f64 / median(s))
                .collect();
            let best = tok_s[0].max(tok_s[1]);
            println!(
                "{}",
                json!({
                    "bench": "decode",
                    "model": self.name,
                    "backend": args.backend.name(),
                    "precision": precision.name(),
                    "batch": batch,
                    "context": args.context,
                    "steps": args.steps,
                    "threshold": threshold,
                    "dispatch_uses": if batch <= threshold { "merged" } else { "structured" },
                    "structured_tok_s": round1(tok_s[0]),
                    "merged_tok_s": round1(tok_s[1]),
                    "dispatching_tok_s": round1(tok_s[2]),
                    "merged_over_structured": round3(tok_s[1] / tok_s[0]),
                    "dispatching_over_best": round3(tok_s[2] / best),
                })
            );
        }
        Ok(())
    }
}

fn round1(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
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
        let precision = Precision::from(args.precision);
        precision.check::<B>(&device)?;
        let compute = Compute {
            precision,
            loss_scale: if precision.scaled() { 1024.0 } else { 1.0 },
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
        let mut first_step = 0.0;
        for i in 0..args.warmup + args.steps {
            let start = Instant::now();
            let (_, grads) = micro_step(&model, &windows, 1, compute, &device)?;
            (model, _) = apply_update(model, &mut optim, &grads, 1e-4, 1.0, compute);
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
        if let Some(p) = args.peak_tflops {
            line["mfu"] = round3(mfu(flops, t, p * 1e12)).into();
        }
        println!("{line}");
        Ok(())
    }
}
