//! `cargo xtask demo [--compare]`: strata's main job from a fresh clone. Fetches and prepares
//! the default corpus, trains a small structured model with self-guided training on the CPU
//! (bounded time), evaluates it, prints a summary and a generated sample, and leaves the run
//! folder (metrics.jsonl, loss.svg, checkpoints). `--compare` trains dense, LowRank and
//! LowRank + SGT at equal training FLOPs, prints them side by side, and draws them: a chart of
//! validation loss against training FLOPs (`strata plot`) and a report page (`strata report`).

use anyhow::{bail, Context, Result};
use serde_json::Value;

use crate::data::prepared_dir;
use crate::strata_output;

/// The demo's model, recipe and limits (tuned so training takes ~7 minutes on 2 cores).
const MODEL: &str = "tiny-lowrank-r32";
const DENSE: &str = "tiny-dense";
const STEPS: u64 = 700;
pub(crate) const SGT_RATIO: f64 = 0.3;
const BATCH: u64 = 8;
const SEQ: u64 = 128;
pub(crate) const LR: &str = "2e-3";
/// Dense steps of `--compare`; the others get the same FLOPs.
const COMPARE_DENSE_STEPS: u64 = 240;

/// `cargo xtask demo` arguments.
#[derive(clap::Args, Debug)]
pub struct Options {
    /// Train dense, LowRank and LowRank + SGT at equal training FLOPs and compare them.
    #[arg(long)]
    compare: bool,
    /// Time limit of the training, in minutes.
    #[arg(long, default_value_t = 9.0, value_parser = positive_minutes)]
    minutes: f64,
    /// Run folder.
    #[arg(long, default_value = "runs/demo")]
    out: String,
}

fn positive_minutes(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(m) if m > 0.0 && m.is_finite() => Ok(m),
        _ => Err(format!("`{text}` is not a positive number of minutes")),
    }
}

pub fn run(o: &Options) -> Result<()> {
    crate::data::sotu(false)?;
    if o.compare {
        compare(o)
    } else {
        demo(o)
    }
}

fn train_args<'a>(model: &'a str, out: &'a str, steps: &'a str, limit: &'a str) -> Vec<&'a str> {
    vec![
        "train",
        "--model",
        model,
        "--data",
        "data/sotu/prepared",
        "--out",
        out,
        "--steps",
        steps,
        "--batch-size",
        "8",
        "--lr",
        LR,
        "--eval-every",
        "100",
        "--eval-batches",
        "8",
        "--checkpoint-every",
        "200",
        "--time-limit",
        limit,
        "--force",
        "--json",
    ]
}

fn summary(json: &str) -> Result<Value> {
    let line = json
        .lines()
        .last()
        .context("strata train printed no summary")?;
    serde_json::from_str(line).context("cannot read strata train's summary")
}

fn demo(o: &Options) -> Result<()> {
    let steps = STEPS.to_string();
    let limit = format!("{}", o.minutes * 60.0);
    let ratio = SGT_RATIO.to_string();
    let mut args = train_args(MODEL, &o.out, &steps, &limit);
    args.extend(["--sgt", "fixedflop", "--sgt-ratio", &ratio]);
    let s = summary(&strata_output(&args)?)?;
    let e: Value = evaluate(&o.out)?;
    let prompt = "Fellow citizens of the Senate and House of Representatives,";
    let sample = strata_output(&[
        "generate",
        "--checkpoint",
        &o.out,
        "--prompt",
        prompt,
        "--max-tokens",
        "60",
        "--temperature",
        "0.8",
        "--top-k",
        "50",
        "--seed",
        "1",
    ])?;
    println!("\n=== strata demo: {MODEL} with self-guided training (fixedflop, ratio {SGT_RATIO}) on the State of the Union addresses ===");
    println!(
        "parameters        {:.2}M",
        s["params"].as_f64().unwrap_or(0.0) / 1e6
    );
    println!(
        "steps             {}{}",
        s["steps"],
        if s["stopped_early"] == true {
            " (time limit reached)"
        } else {
            ""
        }
    );
    println!("tokens trained    {}", s["tokens"]);
    println!(
        "training FLOPs    {:.3e}",
        s["flops"].as_f64().unwrap_or(0.0)
    );
    println!(
        "training time     {:.0} s",
        s["elapsed_s"].as_f64().unwrap_or(0.0)
    );
    println!(
        "tokens/s          {:.0}",
        s["tokens_per_s"].as_f64().unwrap_or(0.0)
    );
    println!(
        "val loss          {:.4} nats/token over {} tokens",
        e["val_loss"].as_f64().unwrap_or(f64::NAN),
        e["tokens"]
    );
    println!(
        "val perplexity    {:.2}",
        e["ppl"].as_f64().unwrap_or(f64::NAN)
    );
    println!("sample            {}", sample.trim());
    println!(
        "run folder        {} (metrics.jsonl, loss.svg, checkpoints/)",
        o.out
    );
    Ok(())
}

/// `strata eval --json` of a run on the whole validation split.
fn evaluate(run: &str) -> Result<Value> {
    let data = prepared_dir();
    let out = strata_output(&[
        "eval",
        "--checkpoint",
        run,
        "--data",
        &data.to_string_lossy(),
        "--json",
    ])?;
    serde_json::from_str(out.trim()).context("cannot read strata eval's output")
}

/// Training FLOPs of one step of `name` (paper formula, from one `strata zoo show --json` at
/// the model's context, which is SEQ): without guides, and with every guide evaluated.
pub(crate) fn step_flops(name: &str) -> Result<(f64, f64)> {
    let shown: Value =
        serde_json::from_str(strata_output(&["zoo", "show", name, "--json"])?.trim())
            .context("cannot read strata zoo show's output")?;
    let flops = &shown["flops"];
    if flops["seq_len"].as_u64() != Some(SEQ) {
        bail!(
            "{name}: expected a context of {SEQ}, the zoo says {}",
            flops["seq_len"]
        );
    }
    let per_step = |key: &str| {
        flops[key]
            .as_f64()
            .map(|f| 3.0 * (BATCH * SEQ) as f64 * f)
            .with_context(|| format!("strata zoo show {name}: no flops.{key}"))
    };
    Ok((
        per_step("forward_per_token")?,
        per_step("forward_per_token_guided")?,
    ))
}

/// The steps of `model` that `budget` training FLOPs buy: plain, and the base N of self-guided
/// training (fixedflop with base N: (1 + r) N plain steps, of which r N also pay for the
/// guides), not rounded.
pub(crate) fn equal_flop_steps(model: &str, budget: f64) -> Result<(f64, f64)> {
    let (plain, guided) = step_flops(model)?;
    let extra = guided - plain;
    let sgt_base = budget / ((1.0 + SGT_RATIO) * plain + SGT_RATIO * extra);
    Ok((budget / plain, sgt_base))
}

fn compare(o: &Options) -> Result<()> {
    let budget = COMPARE_DENSE_STEPS as f64 * step_flops(DENSE)?.0;
    let (lowrank_steps, sgt_base) = equal_flop_steps(MODEL, budget)?;
    let (lowrank_steps, sgt_base) = (lowrank_steps.floor() as u64, sgt_base.floor() as u64);
    let limit = format!("{}", o.minutes * 60.0 / 3.0);
    let ratio = SGT_RATIO.to_string();
    let runs: Vec<(String, &str, u64, bool, &str)> = vec![
        (
            DENSE.to_string(),
            DENSE,
            COMPARE_DENSE_STEPS,
            false,
            "dense",
        ),
        (MODEL.to_string(), MODEL, lowrank_steps, false, "lowrank"),
        (
            format!("{MODEL} + SGT"),
            MODEL,
            sgt_base,
            true,
            "lowrank-sgt",
        ),
    ];
    let mut rows = Vec::new();
    let mut folders = Vec::new();
    for (label, model, steps, sgt, slug) in &runs {
        let out = format!("{}-compare-{slug}", o.out);
        let steps_s = steps.to_string();
        let mut args = train_args(model, &out, &steps_s, &limit);
        if *sgt {
            args.extend(["--sgt", "fixedflop", "--sgt-ratio", &ratio]);
        }
        eprintln!("==> {label}: {steps} base steps");
        let s = summary(&strata_output(&args)?)?;
        let e: Value = evaluate(&out)?;
        folders.push(out.clone());
        rows.push((label.clone(), s, e, out));
    }
    println!("\n=== strata demo --compare: equal training FLOPs ({budget:.3e} planned) on the State of the Union addresses ===");
    println!(
        "{:<24} {:>8} {:>7} {:>10} {:>11} {:>9} {:>9}  run",
        "model", "params", "steps", "tokens", "FLOPs", "tok/s", "val ppl"
    );
    for (label, s, e, out) in rows {
        println!(
            "{:<24} {:>7.2}M {:>7} {:>10} {:>11.3e} {:>9.0} {:>9.2}  {out}",
            label,
            s["params"].as_f64().unwrap_or(0.0) / 1e6,
            s["steps"].as_u64().unwrap_or(0),
            s["tokens"].as_u64().unwrap_or(0),
            s["flops"].as_f64().unwrap_or(0.0),
            s["tokens_per_s"].as_f64().unwrap_or(0.0),
            e["ppl"].as_f64().unwrap_or(f64::NAN),
        );
    }
    draw(o, &folders)
}

/// The comparison's chart (validation loss against training FLOPs) and report page, beside
/// the run folders.
fn draw(o: &Options, folders: &[String]) -> Result<()> {
    let chart = format!("{}-compare.svg", o.out);
    let page = format!("{}-compare.html", o.out);
    let runs: Vec<&str> = folders.iter().map(String::as_str).collect();
    strata_output(&[&["plot"], runs.as_slice(), &["--out", &chart]].concat())?;
    let prompt = ["--prompt", "Fellow citizens", "--sample-tokens", "40"];
    strata_output(&[&["report"], runs.as_slice(), &["--out", &page], &prompt[..]].concat())?;
    println!("chart: {chart}\nreport: {page} (open it in a browser)");
    Ok(())
}
