//! `cargo xtask cuda-sim env`: sets up the CUDA driver stand-in (crates/cuda-sim) with the real
//! NVRTC and prints the shell `export` lines that use it: `eval "$(cargo xtask cuda-sim env)"`.
//!
//! NVRTC, the CUDA runtime headers, their `crt/` headers and CCCL come from NVIDIA's pip wheels,
//! pinned by version and sha256 (13.0.x: the driver 580 / nvcc 13.0 of the GPU hosts we measure
//! on; a newer NVRTC emits PTX that driver refuses). They unpack to `nvidia/cu13/{lib,include}`,
//! the layout cubecl expects under `CUDA_PATH`. The stand-in is built in release and installed
//! as `libcuda.so`, `libcuda.so.1` and `libnvrtc.so` (it forwards NVRTC calls to the real one
//! and counts them). Everything lives in `<target>/cuda-sim/` and is reused when present.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};

use crate::data::{python, sha256_hex};

/// The wheels: (requirement, file name, sha256).
const WHEELS: &[(&str, &str, &str)] = &[
    (
        "nvidia-cuda-nvrtc==13.0.88",
        "nvidia_cuda_nvrtc-13.0.88-py3-none-manylinux2010_x86_64.manylinux_2_12_x86_64.whl",
        "ad9b6d2ead2435f11cbb6868809d2adeeee302e9bb94bcf0539c7a40d80e8575",
    ),
    (
        "nvidia-cuda-runtime==13.0.96",
        "nvidia_cuda_runtime-13.0.96-py3-none-manylinux2014_x86_64.manylinux_2_17_x86_64.whl",
        "7f82250d7782aa23b6cfe765ecc7db554bd3c2870c43f3d1821f1d18aebf0548",
    ),
    (
        "nvidia-cuda-crt==13.0.88",
        "nvidia_cuda_crt-13.0.88-py3-none-manylinux2014_x86_64.manylinux_2_17_x86_64.whl",
        "2c8043c7c9e02492716426e9919fc78d2c5b3b2a7a768a88e952676b08aa55a4",
    ),
    (
        "nvidia-cuda-cccl==13.0.85",
        "nvidia_cuda_cccl-13.0.85-py3-none-manylinux2014_x86_64.manylinux_2_17_x86_64.whl",
        "e0da7ad981f3a8aff08241b5bfc1af868742a63e2762f53a5171c492ef242649",
    ),
];

/// `cargo xtask cuda-sim` commands.
#[derive(clap::Subcommand, Debug)]
pub enum CudaSimCommand {
    /// Set the stand-in up and print its environment: eval "$(cargo xtask cuda-sim env)".
    Env,
}

pub fn run(command: &CudaSimCommand) -> Result<()> {
    match command {
        CudaSimCommand::Env => {
            let dir = setup()?;
            print!("{}", exports(&dir));
            Ok(())
        }
    }
}

/// Sets the stand-in up and its environment in this process, for the commands it runs next
/// (`cargo xtask ci`).
pub fn use_here() -> Result<()> {
    let dir = setup()?;
    for (name, mut value) in variables(&dir) {
        if let Some(old) = std::env::var_os(name).filter(|v| !v.is_empty() && name == PATH_VAR) {
            value = format!("{value}:{}", old.to_string_lossy());
        }
        std::env::set_var(name, value);
    }
    Ok(())
}

/// The stand-in's folder, `<target>/cuda-sim`, as an absolute path.
fn folder() -> Result<PathBuf> {
    let target = std::env::var("CARGO_TARGET_DIR").unwrap_or_else(|_| "target".into());
    let dir = PathBuf::from(target).join("cuda-sim");
    std::fs::create_dir_all(&dir).with_context(|| dir.display().to_string())?;
    Ok(std::fs::canonicalize(&dir)?)
}

/// Wheels fetched and unpacked, the stand-in built and installed; returns the folder.
fn setup() -> Result<PathBuf> {
    if !cfg!(all(target_os = "linux", target_arch = "x86_64")) {
        bail!(
            "the CUDA stand-in is set up for x86-64 Linux only (NVRTC's wheels are per platform)"
        );
    }
    let dir = folder()?;
    let toolkit = dir.join("toolkit");
    if !toolkit.join("nvidia/cu13/include/cuda_fp16.h").is_file()
        || !toolkit.join("complete").is_file()
    {
        let _ = std::fs::remove_dir_all(&toolkit);
        for (req, file, sha) in WHEELS {
            let wheel = fetch(&dir.join("download"), req, file, sha)?;
            unpack(&wheel, &toolkit)?;
        }
        std::fs::write(toolkit.join("complete"), "")?;
    }
    install_stand_in(&dir.join("lib"))?;
    Ok(dir)
}

/// Downloads `req` into `download` unless a file with the pinned sha256 is there already.
fn fetch(download: &Path, req: &str, file: &str, sha: &str) -> Result<PathBuf> {
    let wheel = download.join(file);
    if wheel.is_file() && sha256_hex(&wheel)? == sha {
        return Ok(wheel);
    }
    std::fs::create_dir_all(download)?;
    let py = python()?;
    eprintln!("==> {py} -m pip download --no-deps --only-binary=:all: {req}");
    let status = Command::new(py)
        .args(["-m", "pip", "download", "--no-deps", "--only-binary=:all:"])
        .args([
            "--no-cache-dir",
            "--disable-pip-version-check",
            "--quiet",
            "-d",
        ])
        .arg(download)
        .arg(req)
        .status()
        .context("cannot run pip")?;
    if !status.success() {
        bail!("pip download of {req} failed ({status})");
    }
    let got = sha256_hex(&wheel).with_context(|| format!("pip did not leave {file}"))?;
    if got != sha {
        let _ = std::fs::remove_file(&wheel);
        bail!("{file} has sha256 {got}, expected {sha}; the file was removed");
    }
    Ok(wheel)
}

/// Extracts a wheel (a zip file) into `into` with Python's zipfile.
fn unpack(wheel: &Path, into: &Path) -> Result<()> {
    let status = Command::new(python()?)
        .args(["-m", "zipfile", "-e"])
        .arg(wheel)
        .arg(into)
        .status()
        .context("cannot run python's zipfile")?;
    if !status.success() {
        bail!("cannot extract {}", wheel.display());
    }
    Ok(())
}

/// Builds crates/cuda-sim in release and installs it under its three names in `lib`.
fn install_stand_in(lib: &Path) -> Result<()> {
    eprintln!("==> cargo build -q --release -p cuda-sim");
    let status = Command::new("cargo")
        .args(["build", "-q", "--release", "-p", "cuda-sim"])
        .status()
        .context("cannot run cargo")?;
    if !status.success() {
        bail!("building the CUDA stand-in failed ({status})");
    }
    let target = std::env::var("CARGO_TARGET_DIR").unwrap_or_else(|_| "target".into());
    let built = PathBuf::from(target).join("release/libstrata_cuda_sim.so");
    std::fs::create_dir_all(lib)?;
    let installed = lib.join("libcuda.so");
    // Replaced, not overwritten: a running process may have the old file mapped.
    let fresh = lib.join("libcuda.so.new");
    std::fs::copy(&built, &fresh).with_context(|| built.display().to_string())?;
    std::fs::rename(&fresh, &installed)?;
    for alias in ["libcuda.so.1", "libnvrtc.so"] {
        let link = lib.join(alias);
        let _ = std::fs::remove_file(&link);
        std::os::unix::fs::symlink("libcuda.so", &link)?;
    }
    Ok(())
}

/// The library search path (the stand-in's folder goes first, before anything already there).
const PATH_VAR: &str = "LD_LIBRARY_PATH";

/// The variables that make `--backend cuda` load the stand-in and the real NVRTC.
fn variables(dir: &Path) -> Vec<(&'static str, String)> {
    let cu = dir.join("toolkit/nvidia/cu13");
    let path = format!("{}:{}", dir.join("lib").display(), cu.join("lib").display());
    vec![
        ("CUDA_PATH", cu.display().to_string()),
        (
            "STRATA_CUDA_SIM_NVRTC",
            cu.join("lib/libnvrtc.so.13").display().to_string(),
        ),
        (PATH_VAR, path),
    ]
}

/// [`variables`] as shell `export` lines (the search path keeps what the shell has after it).
fn exports(dir: &Path) -> String {
    let mut out = String::new();
    for (name, value) in variables(dir) {
        let value = format!("'{}'", value.replace('\'', "'\\''"));
        let rest = if name == PATH_VAR {
            "${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
        } else {
            ""
        };
        out.push_str(&format!("export {name}={value}{rest}\n"));
    }
    out.push_str(
        "# Optional: export STRATA_CUDA_SIM_REPORT=FILE to get each process's counts as JSON.\n",
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_exports_put_the_stand_in_first_and_quote_paths() {
        let text = exports(Path::new("/x/it's"));
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[0],
            r"export CUDA_PATH='/x/it'\''s/toolkit/nvidia/cu13'"
        );
        assert_eq!(
            lines[2],
            r"export LD_LIBRARY_PATH='/x/it'\''s/lib:/x/it'\''s/toolkit/nvidia/cu13/lib'${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
        );
    }
}
