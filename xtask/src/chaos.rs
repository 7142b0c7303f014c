//! `cargo xtask chaos [--kills N] [--steps N] [--seed S]`: kill anywhere, lose nothing, at
//! full size (default 100 kills). Runs `strata train` on a small model, kills it with SIGKILL at
//! seeded random moments, resumes, and compares the log with an uninterrupted run's; every
//! checkpoint folder on disk after every kill must load (`strata eval` on it). Prints the
//! report as one JSON line; fails unless every kill was survived.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use test_support::chaos::Chaos;

use crate::strata_binary;

pub fn run(args: &[String]) -> Result<()> {
    let (mut kills, mut steps, mut seed) = (100usize, 200u64, 1u64);
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        let value = it
            .next()
            .with_context(|| format!("`{flag}` needs a value"))?;
        let number = || -> Result<u64> {
            value
                .parse()
                .with_context(|| format!("`{flag}`: `{value}` is not a whole number"))
        };
        match flag.as_str() {
            "--kills" => kills = number()? as usize,
            "--steps" => steps = number()?,
            "--seed" => seed = number()?,
            other => bail!("unknown flag `{other}` (usage: cargo xtask chaos [--kills N] [--steps N] [--seed S])"),
        }
    }
    if kills == 0 || steps == 0 {
        bail!("`--kills` and `--steps` must be at least 1");
    }
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
