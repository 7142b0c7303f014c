//! Project automation: `cargo xtask ci` (the checks CI runs), `tidy` (as a test), `chaos`,
//! `cuda-sim env`, `data sotu`, `forks`, `imports`, `demo`, `study` and `gpu-kit`. One module per command; the work itself lives in the library crates and the
//! `strata` binary (benchmarks are `strata bench ...`), so xtask builds without burn.

mod chaos;
mod ci;
mod cuda_sim;
mod data;
mod demo;
mod forks;
mod gpu_kit;
mod imports;
mod study;
mod tidy;

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::OnceLock;

use anyhow::{bail, Context, Result};

/// Project automation for strata (`cargo xtask <command>`).
#[derive(clap::Parser, Debug)]
#[command(name = "xtask", bin_name = "cargo xtask", about)]
struct Cli {
    #[command(subcommand)]
    command: Task,
}

#[derive(clap::Subcommand, Debug)]
enum Task {
    /// Run the checks of .ci/run, cheapest first (fmt, clippy, tests).
    Ci,
    /// Kill `strata train` with SIGKILL at random moments, resume each time, and check nothing
    /// was lost.
    Chaos(chaos::ChaosArgs),
    /// The CUDA driver stand-in (crates/cuda-sim) with NVRTC from pinned pip wheels.
    #[command(subcommand)]
    CudaSim(cuda_sim::CudaSimCommand),
    /// Corpora.
    #[command(subcommand)]
    Data(data::DataCommand),
    /// The main job: fetch the corpus, train a small structured model with self-guided training
    /// on the CPU, evaluate it and generate a sample.
    Demo(demo::Options),
    /// The patched dependencies under third_party/.
    #[command(subcommand)]
    Forks(forks::ForksCommand),
    /// Build the bundle a GPU host measures strata with (then, on the GPU host: bash
    /// OUT/check.sh).
    GpuKit {
        /// The bundle's folder.
        #[arg(default_value = ".gpu")]
        out: String,
    },
    /// Check that no crate of ours has a circle of imports among its modules (also a tidy
    /// test).
    Imports,
    /// The small study of docs/results.md: dense, LowRank and LowRank + self-guided training
    /// at equal FLOPs at four sizes, trained side by side, then plotted, fitted and reported.
    Study(study::Options),
}

fn main() {
    use clap::Parser;
    if let Err(e) = run(Cli::parse().command) {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

fn run(command: Task) -> Result<()> {
    match command {
        Task::Ci => ci::run(),
        Task::Chaos(args) => chaos::run(&args),
        Task::CudaSim(c) => cuda_sim::run(&c),
        Task::Data(c) => data::run(&c),
        Task::Demo(o) => demo::run(&o),
        Task::Forks(c) => forks::run(&c),
        Task::GpuKit { out } => gpu_kit::run(&out),
        Task::Imports => imports::run(),
        Task::Study(o) => study::run(&o),
    }
}

/// The repository root (xtask's parent folder).
fn repo_root() -> PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask sits in the repository root")
        .to_path_buf()
}

/// The `strata` binary, built once per xtask run with the whole workspace (the same burn
/// features as the test build, so nothing is compiled twice).
fn strata_binary() -> Result<&'static PathBuf> {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    if let Some(b) = BIN.get() {
        return Ok(b);
    }
    eprintln!("==> cargo build -q --workspace --bins");
    let status = Command::new("cargo")
        .args(["build", "-q", "--workspace", "--bins"])
        .status()
        .context("cannot run cargo")?;
    if !status.success() {
        bail!("building strata failed ({status})");
    }
    let target = std::env::var("CARGO_TARGET_DIR").unwrap_or_else(|_| "target".into());
    Ok(BIN.get_or_init(|| PathBuf::from(target).join("debug/strata")))
}

/// Runs `strata args...` with its output shown.
fn strata(args: &[&str]) -> Result<()> {
    eprintln!("==> strata {}", args.join(" "));
    let status = Command::new(strata_binary()?).args(args).status()?;
    if !status.success() {
        bail!("`strata {}` failed ({status})", args.join(" "));
    }
    Ok(())
}

/// Runs `strata args...`, showing its progress (stderr) and returning its stdout.
fn strata_output(args: &[&str]) -> Result<String> {
    eprintln!("==> strata {}", args.join(" "));
    let out = Command::new(strata_binary()?)
        .args(args)
        .stderr(Stdio::inherit())
        .output()?;
    if !out.status.success() {
        bail!("`strata {}` failed ({})", args.join(" "), out.status);
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}
