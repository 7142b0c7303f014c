//! `cargo xtask ci`: the same checks as `.ci/run`, cheapest first (a tidy test holds the two
//! to the same list, in the same order).

use std::process::Command;

use anyhow::{bail, Context, Result};

/// The steps, in order; the test step is the README's test command (it also builds the
/// examples, with the test build's burn features).
pub(crate) const STEPS: &[&[&str]] = &[
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
    // The GPU backends' code and tests (the CUDA stand-in tests among them) under clippy too.
    &[
        "cargo",
        "clippy",
        "-q",
        "-p",
        "cli",
        "--all-targets",
        "--features",
        "cuda,wgpu,browser",
        "--",
        "-D",
        "warnings",
    ],
    // The forks' releases in cargo's cache, for the tidy test that rebuilds each fork.
    &["cargo", "xtask", "forks", "fetch"],
    &["cargo", "test", "--workspace"],
];

/// After the examples (built by `cargo test --workspace`): wgpu for real (needs a Vulkan
/// driver: mesa-vulkan-drivers on Debian), CUDA on the driver stand-in (crates/cuda-sim, set up
/// first: `cargo xtask cuda-sim env`) and the report page in headless Chromium (Debian's
/// chromium) in the same build.
pub(crate) const GPU_STEPS: &[&[&str]] = &[
    &[
        "cargo",
        "test",
        "-p",
        "trainer",
        "-p",
        "cli",
        "--features",
        "trainer/test-wgpu,cli/wgpu,cli/cuda,cli/browser",
    ],
    // Kernel compilation counts with SPIR-V (compiled kernels persist in the cache folder).
    &[
        "cargo",
        "test",
        "-p",
        "cli",
        "--features",
        "vulkan",
        "--test",
        "kernels",
    ],
];

/// Examples run after the checks.
const EXAMPLES: &[&str] = &["structured_layers"];

fn run_checked(program: &str, args: &[&str]) -> Result<()> {
    eprintln!("==> {program} {}", args.join(" "));
    let status = Command::new(program)
        .args(args)
        .status()
        .with_context(|| format!("cannot run `{program}`"))?;
    if !status.success() {
        bail!("`{program} {}` failed ({status})", args.join(" "));
    }
    Ok(())
}

pub fn run() -> Result<()> {
    for step in STEPS {
        run_checked(step[0], &step[1..])?;
    }
    let target = std::env::var("CARGO_TARGET_DIR").unwrap_or_else(|_| "target".into());
    for example in EXAMPLES {
        run_checked(&format!("{target}/debug/examples/{example}"), &[])?;
    }
    crate::cuda_sim::use_here()?;
    for step in GPU_STEPS {
        run_checked(step[0], &step[1..])?;
    }
    eprintln!("all checks passed");
    Ok(())
}
