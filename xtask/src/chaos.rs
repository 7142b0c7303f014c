//! `cargo xtask chaos [--kills N] [--steps N] [--seed S]`: kill anywhere, lose nothing, at
//! full size (default 100 kills). Runs `strata train` on a small model, kills it with SIGKILL at
//! seeded random moments, resumes, and compares the log with an uninterrupted run's; every
//! checkpoint folder on disk after every kill must load (`strata eval` on it). Prints the
//! report as one JSON line; fails unless every kill was survived.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use anyhow::{bail, Result};
use test_support::chaos::Chaos;

use crate::strata_binary;

/// `cargo xtask chaos` arguments.
#[derive(clap::Args, Debug)]
pub struct ChaosArgs {
    /// Times the run is killed (SIGKILL).
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u64).range(1..))]
    kills: u64,
    /// Steps of the run.
    #[arg(long, default_value_t = 200, value_parser = clap::value_parser!(u64).range(1..))]
    steps: u64,
    /// Seed of the kill moments.
    #[arg(long, default_value_t = 1)]
    seed: u64,
}

pub fn run(args: &ChaosArgs) -> Result<()> {
    let (kills, steps, seed) = (args.kills as usize, args.steps, args.seed);
    let strata = strata_binary()?.clone();
    let chaos = Chaos {
        strata: strata.clone(),
        dir: Path::new("target/chaos").to_path_buf(),
        kills,
        seed,
        steps,
        timeout: Duration::from_secs(3600),
    };
    eprintln!("==> chaos: {kills} kills over a {steps}-step run (seed {seed}), in target/chaos");
    let train = chaos.prepare().map_err(anyhow::Error::msg)?;
    let data = chaos.dir.join("data");
    let report = chaos
        .run(&train, &mut |checkpoint| {
            let out = Command::new(&strata)
                .arg("eval")
                .arg("--checkpoint")
                .arg(checkpoint)
                .arg("--data")
                .arg(&data)
                .args(["--max-batches", "1"])
                .output()
                .map_err(|e| e.to_string())?;
            if out.status.success() {
                Ok(())
            } else {
                Err(String::from_utf8_lossy(&out.stderr).trim().to_string())
            }
        })
        .map_err(anyhow::Error::msg)?;
    println!("{}", serde_json::to_string(&report)?);
    if report.survived != report.kills || report.kills < kills {
        bail!(
            "{} of {} kills survived ({} injected)",
            report.survived,
            kills,
            report.kills
        );
    }
    eprintln!(
        "==> {} / {} kills survived ({} during a checkpoint write, {} before a session's first step); {} checkpoint folders loaded",
        report.survived, kills, report.during_checkpoint, report.before_first_step, report.checkpoints_checked
    );
    Ok(())
}
