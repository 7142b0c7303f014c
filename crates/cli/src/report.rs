//! `strata plot`, `strata fit` and `strata report`: runs read back from their folders, drawn on
//! one chart, fitted with a scaling law, or compared on one HTML page (the results crate does
//! the work; the page's samples are generated here, on the CPU).

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;
use results::output::{check_output, write_chart, write_output};
use results::plot::runs_chart;
use results::report::{report_html, Sample};
use results::scaling::fit_runs;
use results::{Run, XAxis, YAxis};
use storage::checkpoint;
use transformer::{Precision, SamplingConfig, DEFAULT_DISPATCH_THRESHOLD};

use crate::backend::BackendKind;
use crate::infer::{continue_prompt, Decoding};

/// The kinds of file a chart is written as.
const CHART_KINDS: [&str; 2] = ["svg", "png"];

#[derive(Args, Debug)]
pub struct PlotArgs {
    /// Run folders (`strata train --out`), drawn on one chart.
    #[arg(required = true, value_name = "RUN")]
    runs: Vec<PathBuf>,
    /// Horizontal axis.
    #[arg(long, value_enum, default_value = "flops")]
    x: XAxis,
    /// Vertical axis [default: val-loss where any run evaluated, else loss].
    #[arg(long, value_enum)]
    y: Option<YAxis>,
    /// The chart: .svg, or .png (drawn with the system's fonts).
    #[arg(long, default_value = "plot.svg")]
    out: PathBuf,
}

#[derive(Args, Debug)]
pub struct FitArgs {
    /// Run folders: grouped into families (one structure at several sizes or budgets), each
    /// family fitted with L(C) = E + A * C^-alpha (final validation loss against training FLOPs).
    #[arg(required = true, value_name = "RUN")]
    runs: Vec<PathBuf>,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
    /// Also draw the points and fitted curves: .svg or .png.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Seed of the bootstrap resampling.
    #[arg(long, default_value_t = 0)]
    seed: u64,
}

#[derive(Args, Debug)]
pub struct ReportArgs {
    /// Run folders, one row and one curve each.
    #[arg(required = true, value_name = "RUN")]
    runs: Vec<PathBuf>,
    /// The page (.html): self-contained, no scripts, nothing fetched.
    #[arg(long, default_value = "report.html")]
    out: PathBuf,
    /// Prompt of each run's sample, generated on the CPU by its newest checkpoint.
    #[arg(long, default_value = "The")]
    prompt: String,
    /// New tokens of each sample (0: no samples).
    #[arg(long, default_value_t = 40)]
    sample_tokens: usize,
    /// Seed of the samples (temperature 0.8).
    #[arg(long, default_value_t = 0)]
    seed: u64,
}

/// `strata plot`.
pub fn plot(args: PlotArgs) -> Result<()> {
    check_output(&args.out, &CHART_KINDS)?;
    let runs = load(&args.runs)?;
    let y = args.y.unwrap_or_else(|| YAxis::default_for(&runs));
    let chart = runs_chart(&runs, args.x, y)?;
    write_chart(&args.out, &chart.svg()?)?;
    println!("wrote {} ({} runs)", args.out.display(), runs.len());
    Ok(())
}

/// `strata fit`.
pub fn fit(args: FitArgs) -> Result<()> {
    if let Some(out) = &args.out {
        check_output(out, &CHART_KINDS)?;
    }
    let runs = load(&args.runs)?;
    let fits = fit_runs(&runs, args.seed)?;
    if let Some(out) = &args.out {
        write_chart(out, &fits.chart().svg()?)?;
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&fits)?);
    } else {
        print!("{}", fits.table());
        if let Some(out) = &args.out {
            println!("\nwrote {}", out.display());
        }
    }
    Ok(())
}

/// `strata report`.
pub fn report(args: ReportArgs) -> Result<()> {
    check_output(&args.out, &["html", "htm"])?;
    let runs = load(&args.runs)?;
    let mut samples = Vec::new();
    for run in &runs {
        samples.push(sample(run, &args)?);
    }
    write_output(&args.out, report_html(&runs, &samples)?.as_bytes())?;
    println!("wrote {} ({} runs)", args.out.display(), runs.len());
    Ok(())
}

/// The run's sample from its newest checkpoint; none without a checkpoint, a tokenizer or
/// `--sample-tokens`.
fn sample(run: &Run, args: &ReportArgs) -> Result<Option<Sample>> {
    let Ok(dir) = checkpoint::resolve(&run.dir) else {
        return Ok(None);
    };
    if args.sample_tokens == 0 || !dir.join(storage::tokenizer::TOKENIZER).is_file() {
        return Ok(None);
    }
    let sampling = SamplingConfig {
        temperature: 0.8,
        top_k: None,
        top_p: None,
        seed: args.seed,
    };
    let cpu = Decoding {
        backend: BackendKind::Cpu,
        threshold: DEFAULT_DISPATCH_THRESHOLD,
        precision: Precision::default(),
    };
    let out = continue_prompt(dir.clone(), &args.prompt, args.sample_tokens, sampling, cpu)?;
    Ok(Some(Sample {
        checkpoint: dir.display().to_string(),
        prompt: args.prompt.clone(),
        text: out.text,
    }))
}

fn load(dirs: &[PathBuf]) -> Result<Vec<Run>> {
    Ok(dirs
        .iter()
        .map(|d| Run::load(d))
        .collect::<Result<_, _>>()?)
}
