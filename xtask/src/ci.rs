//! `cargo xtask ci`: the same checks as `.ci/run`, cheapest first.

use std::process::Command;

use anyhow::{bail, Context, Result};

/// The steps, in order; the test step is the README's test command, then the examples run.
const STEPS: &[&[&str]] = &[
    &["cargo", "fmt", "--all", "--check"],
    &[
        "cargo",
        "clippy",
        "--workspace",
        "--all-targets",
        "--",
        "-D",
        "warnings",
    ],
    &["cargo", "test", "--workspace"],
    &[
        "cargo",
        "run",
        "-q",
        "-p",
        "strata-examples",
        "--example",
        "structured_layers",
    ],
];

pub fn run() -> Result<()> {
    for step in STEPS {
        eprintln!("==> {}", step.join(" "));
        let status = Command::new(step[0])
            .args(&step[1..])
            .status()
            .with_context(|| format!("cannot run `{}`", step[0]))?;
        if !status.success() {
            bail!("`{}` failed ({status})", step.join(" "));
        }
    }
    eprintln!("all checks passed");
    Ok(())
}
