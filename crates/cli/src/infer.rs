//! `strata eval` and `strata generate` on any checkpoint (a checkpoint folder, or a run folder
//! for its newest one), structured, pre-merged, or dispatching by tokens in flight. Checkpoints
//! and tokenizers are read by the storage crate, the prepared data by the corpus crate; the
//! validation loss and the precision casts are the transformer's.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use burn::tensor::backend::Backend;
use clap::Args;
use corpus::{Manifest, WindowLoader};
use serde_json::json;
use storage::checkpoint;
use storage::run::{recorded_data, run_folder_of};
use storage::tokenizer::{find_eot, load_tokenizer, TOKENIZER};
use storage::weights::load_model;
use transformer::{
    evaluate, generate, Dispatching, EvalResult, GenerateConfig, Precision, SamplingConfig,
    DEFAULT_DISPATCH_THRESHOLD,
};

use crate::backend::{dispatch, BackendKind, Job};

#[derive(Args, Debug)]
pub struct EvalArgs {
    /// Checkpoint folder, or a run folder (its newest checkpoint).
    #[arg(long)]
    checkpoint: PathBuf,
    /// Prepared data folder; its validation split is scored. Default: the data of the run the
    /// checkpoint belongs to.
    #[arg(long)]
    data: Option<PathBuf>,
    /// Tokens per sequence (default: the model's max_seq_len).
    #[arg(long)]
    seq_len: Option<usize>,
    /// Sequences per batch.
    #[arg(long, default_value_t = 8)]
    batch_size: usize,
    /// Batches scored at most (0: the whole validation split).
    #[arg(long, default_value_t = 0)]
    max_batches: usize,
    /// Evaluate the pre-merged (dense) form of the model.
    #[arg(long)]
    merged: bool,
    /// Backend.
    #[arg(long, value_enum, default_value = "cpu")]
    backend: BackendKind,
    /// Arithmetic of the forward pass: the f32 weights are cast to it after loading (and
    /// merging); the loss is taken in f32.
    #[arg(long, value_enum, default_value_t = Precision::default())]
    precision: Precision,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Args, Debug)]
pub struct GenerateArgs {
    /// Checkpoint folder, or a run folder (its newest checkpoint).
    #[arg(long)]
    checkpoint: PathBuf,
    /// Text to continue.
    #[arg(long)]
    prompt: String,
    /// New tokens at most.
    #[arg(long, default_value_t = 100)]
    max_tokens: usize,
    #[command(flatten)]
    sampling: SamplingArgs,
    /// Sampler seed.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Pre-merge: calls with at most this many tokens use the merged dense model (default:
    /// the measured default for this CPU).
    #[arg(long)]
    premerge_threshold: Option<usize>,
    /// Always use the pre-merged dense model.
    #[arg(long, conflicts_with = "premerge_threshold")]
    merged: bool,
    /// Backend.
    #[arg(long, value_enum, default_value = "cpu")]
    backend: BackendKind,
    /// Arithmetic of decoding: the f32 weights are cast to it after loading (and merging).
    #[arg(long, value_enum, default_value_t = Precision::default())]
    precision: Precision,
    /// Print one JSON object: `{"prompt_ids": [...], "ids": [...], "text": "..."}` (`ids`: the
    /// generated token ids, without the end-of-text token; `text`: their decoding).
    #[arg(long)]
    json: bool,
}

/// How tokens are drawn (`strata generate`, `strata bench decode`).
#[derive(Args, Debug, Clone)]
pub struct SamplingArgs {
    /// Softmax temperature (0: greedy).
    #[arg(long, default_value_t = 0.8, allow_negative_numbers = true)]
    temperature: f64,
    /// Sample from the k most likely tokens only.
    #[arg(long)]
    top_k: Option<usize>,
    /// Sample from the smallest set of tokens with this much probability.
    #[arg(long, allow_negative_numbers = true)]
    top_p: Option<f64>,
}

impl SamplingArgs {
    /// The sampler's settings with `seed`.
    pub fn config(&self, seed: u64) -> SamplingConfig {
        SamplingConfig {
            temperature: self.temperature,
            top_k: self.top_k,
            top_p: self.top_p,
            seed,
        }
    }
}

pub fn eval(args: EvalArgs) -> Result<()> {
    if args.batch_size == 0 {
        bail!("--batch-size must be at least 1");
    }
    let dir = checkpoint::resolve(&args.checkpoint)?;
    let config = checkpoint::read_model_config(&dir)?;
    let data = match &args.data {
        Some(data) => data.clone(),
        None => run_data(&args.checkpoint)?,
    };
    let manifest = Manifest::load(&data)?;
    manifest.check_vocab(&dir.display().to_string(), config.vocab_size)?;
    check_same_tokenizer(&dir, &manifest, &data)?;
    let seq_len = args.seq_len.unwrap_or(config.max_seq_len);
    if seq_len == 0 || seq_len > config.max_seq_len {
        bail!(
            "--seq-len {seq_len} must lie in 1..={} (the model's max_seq_len)",
            config.max_seq_len
        );
    }
    let loader = manifest.loader(&data, &manifest.validation, seq_len, 0, false)?;
    let precision = args.precision;
    let step = checkpoint::read_state(&dir)?.step;
    let result = dispatch(
        args.backend,
        Eval {
            dir: dir.clone(),
            loader,
            batch_size: args.batch_size,
            max_batches: args.max_batches,
            merged: args.merged,
            precision,
        },
    )?;
    if args.json {
        println!(
            "{}",
            json!({
                "val_loss": result.val_loss,
                "ppl": result.ppl,
                "tokens": result.tokens,
                "checkpoint": dir,
                "step": step,
                "merged": args.merged,
                "precision": precision.name(),
            })
        );
    } else {
        println!(
            "val_loss {:.4} | ppl {:.2} | {} tokens | {} (step {step}{}{})",
            result.val_loss,
            result.ppl,
            result.tokens,
            dir.display(),
            if args.merged { ", pre-merged" } else { "" },
            match precision {
                Precision::F32 => String::new(),
                p => format!(", {}", p.name()),
            }
        );
    }
    Ok(())
}

/// The data folder of the run `checkpoint` belongs to (the run folder or one of its
/// checkpoints).
fn run_data(checkpoint: &Path) -> Result<PathBuf> {
    let Some(run) = run_folder_of(checkpoint) else {
        bail!(
            "{} is not a run's checkpoint: give the data to score with --data",
            checkpoint.display()
        );
    };
    let data = recorded_data(&run)?;
    if !data.is_dir() {
        bail!(
            "the data folder of run {} ({}) does not exist: give its new place with --data",
            run.display(),
            data.display()
        );
    }
    Ok(data)
}

/// Refuses data tokenized with another tokenizer than the checkpoint's (when both have one).
fn check_same_tokenizer(dir: &Path, manifest: &Manifest, data: &Path) -> Result<()> {
    let (Some(name), true) = (&manifest.tokenizer, dir.join(TOKENIZER).is_file()) else {
        return Ok(());
    };
    let ours = std::fs::read(dir.join(TOKENIZER)).with_context(|| dir.display().to_string())?;
    let theirs = std::fs::read(data.join(name)).with_context(|| data.display().to_string())?;
    if ours != theirs {
        bail!(
            "{} was tokenized with a different tokenizer than the checkpoint {}",
            data.display(),
            dir.display()
        );
    }
    Ok(())
}

struct Eval {
    dir: PathBuf,
    loader: WindowLoader,
    batch_size: usize,
    max_batches: usize,
    merged: bool,
    precision: Precision,
}

impl Job for Eval {
    type Output = EvalResult;
    fn run<B: Backend>(self, device: B::Device) -> Result<Self::Output> {
        self.precision.check::<B>(&device)?;
        let (model, _) = load_model::<B>(&self.dir, &device)?;
        // Inside the guided phase, pre-merge folds each layer's guide/structure mix.
        let model = match self.merged {
            true => model.merged(),
            false => model,
        };
        let model = self.precision.apply(model);
        let batches = self
            .loader
            .batches_in_order(self.batch_size, self.max_batches);
        Ok(evaluate(&model, batches, &device)?)
    }
}

/// Both models of `model` in `precision` (cast after merging, so the merged twin is folded in
/// f32).
pub(crate) fn cast_dispatching<B: Backend>(
    precision: Precision,
    model: Dispatching<B>,
) -> Dispatching<B> {
    Dispatching {
        structured: precision.apply(model.structured),
        merged: precision.apply(model.merged),
        threshold: model.threshold,
    }
}

/// Whether any guide of the model is still mixed in.
fn guided<B: Backend>(model: &transformer::Transformer<B>) -> bool {
    model.linears().iter().any(|l| l.guide_active())
}

pub fn generate_text(args: GenerateArgs) -> Result<()> {
    let dir = checkpoint::resolve(&args.checkpoint)?;
    let threshold = if args.merged {
        usize::MAX
    } else {
        args.premerge_threshold
            .unwrap_or(DEFAULT_DISPATCH_THRESHOLD)
    };
    let how = Decoding {
        backend: args.backend,
        threshold,
        precision: args.precision,
    };
    let sampling = args.sampling.config(args.seed);
    let out = continue_prompt(dir, &args.prompt, args.max_tokens, sampling, how)?;
    if args.json {
        let json =
            serde_json::json!({"prompt_ids": out.prompt_ids, "ids": out.ids, "text": out.text});
        println!("{json}");
    } else {
        println!("{}{}", args.prompt, out.text);
    }
    Ok(())
}

/// Where and how a checkpoint decodes.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Decoding {
    pub backend: BackendKind,
    /// Calls with at most this many tokens use the merged model.
    pub threshold: usize,
    pub precision: Precision,
}

/// A prompt continued by a checkpoint.
pub(crate) struct Continuation {
    /// The prompt's token ids.
    pub prompt_ids: Vec<u32>,
    /// The generated ids, without the end-of-text token.
    pub ids: Vec<u32>,
    /// Their text.
    pub text: String,
}

/// `prompt` continued by the checkpoint in `dir` (which must hold its tokenizer) with at most
/// `max_tokens` new tokens.
pub(crate) fn continue_prompt(
    dir: PathBuf,
    prompt: &str,
    max_tokens: usize,
    sampling: SamplingConfig,
    how: Decoding,
) -> Result<Continuation> {
    let tok_path = dir.join(TOKENIZER);
    if !tok_path.is_file() {
        bail!(
            "{} has no {TOKENIZER} (trained on imported tokens?); generation needs text",
            dir.display()
        );
    }
    let tokenizer = load_tokenizer(&tok_path)?;
    let prompt_ids = tokenizer
        .encode(prompt, false)
        .map_err(|e| anyhow::anyhow!("cannot tokenize the prompt: {e}"))?
        .get_ids()
        .to_vec();
    if prompt_ids.is_empty() {
        bail!("the prompt is empty");
    }
    let config = GenerateConfig {
        max_new_tokens: max_tokens,
        sampling,
        stop_token: find_eot(&tokenizer, None).ok(),
        // Tokens are chosen where the logits are: on a GPU, one id is read back per token.
        on_device: how.backend.is_gpu(),
    };
    config.sampling.validate()?;
    let job = Generate {
        dir,
        prompt: prompt_ids.clone(),
        config,
        threshold: how.threshold,
        precision: how.precision,
    };
    let ids: Vec<u32> = dispatch(how.backend, job)?
        .into_iter()
        .filter(|&t| Some(t) != config.stop_token)
        .collect();
    let text = tokenizer
        .decode(&ids, true)
        .map_err(|e| anyhow::anyhow!("cannot decode: {e}"))?;
    Ok(Continuation {
        prompt_ids,
        ids,
        text,
    })
}

struct Generate {
    dir: PathBuf,
    prompt: Vec<u32>,
    config: GenerateConfig,
    threshold: usize,
    precision: Precision,
}

impl Job for Generate {
    type Output = Vec<u32>;
    fn run<B: Backend>(self, device: B::Device) -> Result<Vec<u32>> {
        let precision = self.precision;
        precision.check::<B>(&device)?;
        let (mut model, _) = load_model::<B>(&self.dir, &device)?;
        if !guided(&model) {
            // Past the guided phase the guides (if any) serve no call.
            model.drop_guides();
        }
        // Inside the guided phase the merged twin folds each layer's guide/structure mix. With
        // threshold 0 (the CPU default) no call would use a merged twin: none is built.
        if self.threshold == 0 {
            let model = precision.apply(model);
            return Ok(generate(&model, &self.prompt, &self.config, &device)?);
        }
        let model = cast_dispatching(precision, Dispatching::new(model, self.threshold));
        Ok(generate(&model, &self.prompt, &self.config, &device)?)
    }
}
