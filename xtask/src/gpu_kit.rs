//! `cargo xtask gpu-kit [OUT]`: builds the bundle a GPU host measures strata with (default
//! `.gpu/`): release `strata` with CUDA and wgpu, the CUDA cross-backend tests, the prepared
//! corpus, the PyTorch peers and `check.sh`, the one script to run there. The steps are the
//! shell script `xtask/gpu-kit/bundle.sh` (builds, strip, xz, apt downloads); this command
//! runs it from the project root.

use std::process::Command;

use anyhow::{bail, Context, Result};

pub fn run(out: &str) -> Result<()> {
    eprintln!("==> bash xtask/gpu-kit/bundle.sh {out}");
    let status = Command::new("bash")
        .arg("xtask/gpu-kit/bundle.sh")
        .arg(out)
        .status()
        .context("cannot run bash")?;
    if !status.success() {
        bail!("building the GPU kit failed ({status})");
    }
    eprintln!("==> {out}/ is ready: send the working tree along and run `bash {out}/check.sh` on the GPU host");
    Ok(())
}
