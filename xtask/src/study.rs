//! `cargo xtask study`: the small study of docs/results.md. On the demo corpus, dense, LowRank
//! (31% of the dense FFN weights) and LowRank + self-guided training at equal training FLOPs,
//! at four model sizes (the tiny family at widths 64 to 160), the compute growing with the
//! size; runs train side by side (one core each), then `strata plot`, `fit` and `report` draw,
//! fit and compare them in the study folder.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use anyhow::{bail, Context, Result};
use serde_json::Value;

use crate::data::prepared_dir;
use crate::demo::{equal_flop_steps, step_flops, LR, SGT_RATIO};
use crate::{strata_binary, strata_output};

/// The sizes: width (attention and FFN scale with it: 4x FFN, heads of 32) and layers.
const SIZES: [(u64, u64); 4] = [(64, 2), (96, 3), (128, 4), (160, 5)];
/// Dense steps of 8 x 128 tokens at each size; the structured runs get the same FLOPs.
const DENSE_STEPS: [u64; 4] = [400, 520, 640, 800];

/// `cargo xtask study` arguments.
#[derive(clap::Args, Debug)]
pub struct Options {
    /// The study folder: model files, run folders, charts, fits and the report.
    #[arg(long, default_value = "runs/study")]
    out: String,
    /// Runs trained at once, each on its share of the cores.
    #[arg(long, default_value_t = 2)]
    jobs: usize,
    /// Multiplies every run's steps (a quick look: 0.1).
    #[arg(long, default_value_t = 1.0)]
    scale: f64,
}

/// One run of the study.
struct Planned {
    name: String,
    model: String,
    steps: u64,
    guided: bool,
}

pub fn run(o: &Options) -> Result<()> {
    if o.jobs == 0 || !(o.scale > 0.0 && o.scale.is_finite()) {
        bail!("--jobs must be at least 1 and --scale a positive number");
    }
    crate::data::sotu(false)?;
    let models = Path::new(&o.out).join("models");
    std::fs::create_dir_all(&models)?;
    let shown = strata_output(&["zoo", "show", "tiny-dense", "--json"])?;
    let shown: Value =
        serde_json::from_str(shown.trim()).context("cannot read strata zoo show's output")?;
    let mut plan = Vec::new();
    for (&(width, layers), &steps) in SIZES.iter().zip(&DENSE_STEPS) {
        plan.extend(size_runs(
            &models,
            &shown["config"],
            width,
            layers,
            (steps as f64 * o.scale).ceil() as u64,
        )?);
    }
    let runs: Vec<String> = plan
        .iter()
        .map(|p| format!("{}/{}", o.out, p.name))
        .collect();
    train_all(&plan, &runs, o.jobs)?;
    draw(&o.out, &runs)
}

/// The three runs of one size at equal FLOPs: dense for `dense_steps`, LowRank and LowRank +
/// self-guided training (fixedflop) for as many steps as the same FLOPs buy.
fn size_runs(
    models: &Path,
    base: &Value,
    width: u64,
    layers: u64,
    dense_steps: u64,
) -> Result<Vec<Planned>> {
    let dense = write_model(models, base, width, layers, false)?;
    let lowrank = write_model(models, base, width, layers, true)?;
    let budget = dense_steps as f64 * step_flops(&dense)?.0;
    let (lowrank_steps, sgt_base) = equal_flop_steps(&lowrank, budget)?;
    let run = |kind: &str, model: &str, steps: f64, guided| Planned {
        name: format!("d{width}-{kind}"),
        model: model.to_string(),
        steps: steps.floor().max(1.0) as u64,
        guided,
    };
    Ok(vec![
        run("dense", &dense, dense_steps as f64, false),
        run("lowrank", &lowrank, lowrank_steps, false),
        run("lowrank-sgt", &lowrank, sgt_base, true),
    ])
}

/// `base` (the tiny family's config) at `width` and `layers` (LowRank FFN of rank width / 4
/// when `lowrank`), written as a model file; its path.
fn write_model(dir: &Path, base: &Value, width: u64, layers: u64, lowrank: bool) -> Result<String> {
    let mut config = base.clone();
    for (key, value) in [
        ("d_model", width),
        ("d_attn", width),
        ("d_ff", 4 * width),
        ("n_layers", layers),
        ("n_heads", width / 32),
        ("n_kv_heads", width / 32),
    ] {
        config[key] = value.into();
    }
    let kind = if lowrank {
        let structure = serde_json::json!({"kind": "lowrank", "rank": width / 4});
        config["ffn"]["fc1"] = structure.clone();
        config["ffn"]["fc2"] = structure;
        "lowrank"
    } else {
        "dense"
    };
    let path = dir.join(format!("d{width}-{kind}.json"));
    std::fs::write(&path, serde_json::to_string_pretty(&config)?)?;
    Ok(path.to_string_lossy().into_owned())
}

/// Trains every planned run, `jobs` at a time (the largest first, a new one as soon as one
/// ends), each with its share of the cores; each run's output goes to `<run>.log`.
fn train_all(plan: &[Planned], runs: &[String], jobs: usize) -> Result<()> {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let threads = (cores / jobs).max(1).to_string();
    let mut queue: Vec<(&Planned, &String)> = plan.iter().zip(runs).collect();
    let mut running: Vec<(Child, &str)> = Vec::new();
    while !queue.is_empty() || !running.is_empty() {
        if running.len() < jobs {
            if let Some((p, out)) = queue.pop() {
                let sgt = if p.guided { " (self-guided)" } else { "" };
                eprintln!("==> {out}: {} steps{sgt}", p.steps);
                running.push((start(p, out, &threads)?, out));
                continue;
            }
        }
        std::thread::sleep(std::time::Duration::from_millis(500));
        for i in (0..running.len()).rev() {
            if let Some(status) = running[i].0.try_wait()? {
                let (_, name) = running.remove(i);
                if !status.success() {
                    bail!("training {name} failed ({status}); see {name}.log");
                }
                eprintln!("==> {name}: done");
            }
        }
    }
    Ok(())
}

fn start(p: &Planned, out: &str, threads: &str) -> Result<Child> {
    let steps = p.steps.to_string();
    let eval_every = (p.steps / 4).max(1).to_string();
    let data = prepared_dir();
    let mut args = vec![
        "train",
        "--model",
        &p.model,
        "--data",
        data.to_str().unwrap_or("data/sotu/prepared"),
        "--out",
        out,
        "--steps",
        &steps,
        "--batch-size",
        "8",
        "--lr",
        LR,
        "--eval-every",
        &eval_every,
        "--eval-batches",
        "32",
        "--seed",
        "1",
        "--force",
    ];
    let ratio = SGT_RATIO.to_string();
    if p.guided {
        args.extend(["--sgt", "fixedflop", "--sgt-ratio", &ratio]);
    }
    let log = std::fs::File::create(PathBuf::from(format!("{out}.log")))?;
    Ok(Command::new(strata_binary()?)
        .args(&args)
        .env("RAYON_NUM_THREADS", threads)
        .stdout(Stdio::from(log.try_clone()?))
        .stderr(Stdio::from(log))
        .spawn()?)
}

/// The study's charts, fits and report page.
fn draw(out: &str, runs: &[String]) -> Result<()> {
    let runs: Vec<&str> = runs.iter().map(String::as_str).collect();
    let with = |head: &[&'static str], tail: &[&str]| -> Vec<String> {
        let all = head.iter().chain(&runs).chain(tail);
        all.map(|s| s.to_string()).collect()
    };
    let strata = |args: Vec<String>| {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        strata_output(&args)
    };
    let val = format!("{out}/val-loss.svg");
    let train = format!("{out}/train-loss.svg");
    let fit = format!("{out}/fit.svg");
    let page = format!("{out}/report.html");
    strata(with(&["plot"], &["--out", &val]))?;
    strata(with(
        &["plot"],
        &["--x", "tokens", "--y", "loss", "--out", &train],
    ))?;
    // A refused fit is a finding too: its reason is kept, and the page is still drawn.
    let table =
        strata(with(&["fit"], &["--out", &fit])).unwrap_or_else(|e| format!("strata fit: {e:#}\n"));
    std::fs::write(format!("{out}/fit.txt"), &table)?;
    if let Ok(json) = strata(with(&["fit"], &["--json"])) {
        std::fs::write(format!("{out}/fit.json"), json)?;
    }
    strata(with(
        &["report"],
        &["--out", &page, "--prompt", "Fellow citizens"],
    ))?;
    println!("{table}\ncharts: {val}, {train}, {fit}\nreport: {page}");
    Ok(())
}
