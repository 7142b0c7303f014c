//! `strata bench decode`: decoding throughput of a zoo model in three forms (structured,
//! pre-merged dense, and dispatching by token count) at several batch sizes, one JSON line per
//! batch size. Tokens are chosen as `generate` chooses them (`--sample-on`: on the device on a
//! GPU backend, on the host on a CPU backend); on the CUDA driver stand-in the driver's counts
//! per token are reported. The pre-merge dispatch threshold's default comes from this
//! measurement.

use std::time::Instant;

use anyhow::{bail, Result};
use burn::tensor::backend::Backend;
use burn::tensor::{Int, Tensor, TensorData};
use clap::Args;
use serde_json::{json, Map, Value};
use trainer::config::DEFAULTS;
use transformer::zoo::{resolve_model, Zoo};
use transformer::Precision;
use transformer::{
    Dispatching, KvCache, NextToken, Transformer, TransformerConfig, DEFAULT_DISPATCH_THRESHOLD,
};

use super::driver::{self, Tally};
use super::{median, round1, round3};
use crate::backend::{dispatch, BackendKind, Job};
use crate::infer::{cast_dispatching, SamplingArgs};

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
    #[arg(long, value_enum, default_value_t = DEFAULTS.precision)]
    precision: Precision,
    /// Seed of the model's initialisation and of the sampler.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    #[command(flatten)]
    sampling: SamplingArgs,
    /// Where tokens are chosen: on the device (one id read back per token and sequence), on
    /// the host (each row of logits read back, the ids uploaded again), or auto: the device on
    /// a GPU backend, the host on a CPU backend (as `strata generate` does).
    #[arg(long, value_enum, default_value = "auto")]
    sample_on: SampleOn,
}

impl DecodeArgs {
    /// Whether tokens are chosen on the device (`--sample-on`; auto: on a GPU backend).
    fn on_device(&self) -> bool {
        match self.sample_on {
            SampleOn::Auto => self.backend.is_gpu(),
            on => on == SampleOn::Device,
        }
    }
}

/// Where `bench decode` chooses tokens.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq)]
enum SampleOn {
    Auto,
    Device,
    Host,
}

pub fn run(args: DecodeArgs) -> Result<()> {
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

struct Decode {
    args: DecodeArgs,
    name: String,
    config: TransformerConfig,
}

/// One form of the model: a cached forward.
type Form<'a, B> = Box<dyn Fn(Tensor<B, 2, Int>, &mut KvCache<B>) -> Result<Tensor<B, 3>> + 'a>;

/// Seconds to decode `steps` tokens per sequence after a prefill of `context` tokens, as
/// `generate` does: each token chosen where `--sample-on` says (`NextToken`) and fed in as the
/// next input. On the CUDA stand-in, `tally` gets the driver's counts of the timed steps.
fn time_decode<B: Backend>(
    forward: &Form<'_, B>,
    config: &TransformerConfig,
    batch: usize,
    args: &DecodeArgs,
    device: &B::Device,
    tally: &mut Tally,
) -> Result<f64> {
    let sampling = args.sampling.config(args.seed);
    let mut sampler = NextToken::new(sampling, args.on_device())?;
    // A cache of just the positions this run writes: fixed shapes, no unused memory.
    let mut cache = KvCache::with_capacity(config, args.context + args.steps)?;
    let logits = forward(
        ids(batch, args.context, config.vocab_size, 0, device),
        &mut cache,
    )?;
    let (_, mut next) = sampler.next(last_position(logits), device)?;
    B::sync(device)?;
    let counts = driver::now();
    let start = Instant::now();
    for _ in 0..args.steps {
        let logits = forward(next, &mut cache)?;
        (_, next) = sampler.next(last_position(logits), device)?;
    }
    B::sync(device)?;
    let seconds = start.elapsed().as_secs_f64();
    if let (Some(before), Some(after)) = (counts, driver::now()) {
        tally.add_units(&before, &after, (args.steps * batch) as u64);
    }
    Ok(seconds)
}

/// The logits of each sequence's last position: `[batch, seq, vocab]` -> `[batch, vocab]`.
fn last_position<B: Backend>(logits: Tensor<B, 3>) -> Tensor<B, 2> {
    let [b, t, v] = logits.dims();
    logits.narrow(1, t - 1, 1).reshape([b, v])
}

impl Job for Decode {
    type Output = ();

    fn run<B: Backend>(self, device: B::Device) -> Result<()> {
        let args = &self.args;
        let precision = args.precision;
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
            let mut tallies: Vec<Tally> = forms.iter().map(|_| Tally::default()).collect();
            for (_, f) in &forms {
                time_decode(f, &config, batch, args, &device, &mut Tally::default())?;
            }
            let mut samples = vec![Vec::new(); forms.len()];
            for _ in 0..args.repeats {
                for (i, (_, f)) in forms.iter().enumerate() {
                    samples[i].push(time_decode(
                        f,
                        &config,
                        batch,
                        args,
                        &device,
                        &mut tallies[i],
                    )?);
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
                    "sampling": {
                        "settings": args.sampling.config(args.seed),
                        "on": if args.on_device() { "device" } else { "host" },
                    },
                    "driver_per_token": driver_per_token(&forms, &tallies),
                })
            );
        }
        Ok(())
    }
}

/// On the CUDA stand-in, each form's driver counts per token (per sequence): launches, by
/// kernel too, copies, bytes read back; `null` elsewhere.
fn driver_per_token<B: Backend>(forms: &[(&str, Form<'_, B>)], tallies: &[Tally]) -> Value {
    if tallies.iter().all(Tally::is_empty) {
        return Value::Null;
    }
    let per_form: Map<String, Value> = forms
        .iter()
        .zip(tallies)
        .map(|((name, _), t)| (name.to_string(), t.per_unit()))
        .collect();
    Value::Object(per_form)
}

/// Token ids `[batch, len]` in a fixed pattern (`salt` shifts it).
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
