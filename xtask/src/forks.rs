//! `cargo xtask forks fetch|check`: the patched dependencies under `third_party/` are each their
//! crates.io release plus the `STRATA-PATCH.diff` beside it, nothing else. `fetch` puts the
//! releases in cargo's registry cache (a throw-away manifest and `cargo fetch`); `check` (also a
//! tidy test, offline) unpacks each release from that cache, applies the patch with `patch -p1`
//! and requires the result to equal the folder file for file.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};

/// The forks: folder under `third_party/` (= crate name) and the release it patches.
pub(crate) const FORKS: &[(&str, &str)] = &[
    ("burn-autodiff", "0.21.0"),
    ("burn-collective", "0.21.0"),
    ("burn-flex", "0.21.0"),
    ("cubek-matmul", "0.2.0"),
];

/// Files of ours in a fork folder, not part of the release or the patch.
const OURS: &[&str] = &["STRATA-PATCH.diff", "STRATA-PATCH.md"];

/// `cargo xtask forks` commands.
#[derive(clap::Subcommand, Debug)]
pub enum ForksCommand {
    /// Put the forks' releases in cargo's registry cache.
    Fetch,
    /// Check that each fork is its release plus its STRATA-PATCH.diff (also a tidy test).
    Check,
}

pub fn run(command: &ForksCommand) -> Result<()> {
    match command {
        ForksCommand::Fetch => fetch(),
        ForksCommand::Check => {
            check_all(&crate::repo_root())?;
            eprintln!("every fork is its release plus its STRATA-PATCH.diff");
            Ok(())
        }
    }
}

/// Downloads the releases into cargo's registry cache (a manifest naming exactly them).
fn fetch() -> Result<()> {
    let dir = std::env::temp_dir().join(format!("strata-forks-fetch-{}", std::process::id()));
    std::fs::create_dir_all(dir.join("src"))?;
    let deps: String = FORKS
        .iter()
        .map(|(name, version)| format!("{name} = \"={version}\"\n"))
        .collect();
    let manifest = format!(
        "[package]\nname = \"strata-forks-fetch\"\nversion = \"0.0.0\"\nedition = \"2021\"\n\
         [workspace]\n[dependencies]\n{deps}"
    );
    std::fs::write(dir.join("Cargo.toml"), manifest)?;
    std::fs::write(dir.join("src/lib.rs"), "")?;
    eprintln!("==> cargo fetch (the forks' releases)");
    let status = Command::new("cargo")
        .arg("fetch")
        .arg("--manifest-path")
        .arg(dir.join("Cargo.toml"))
        .status()
        .context("cannot run cargo")?;
    let _ = std::fs::remove_dir_all(&dir);
    if !status.success() {
        bail!("cargo fetch of the forks' releases failed ({status})");
    }
    Ok(())
}

/// Checks every fork; the error lists each one that differs.
pub(crate) fn check_all(root: &Path) -> Result<()> {
    let mut problems = Vec::new();
    for (name, version) in FORKS {
        if let Err(e) = check(root, name, version) {
            problems.push(format!("{name}: {e:#}"));
        }
    }
    if !problems.is_empty() {
        bail!("{}", problems.join("\n"));
    }
    Ok(())
}

/// One fork against its release plus its patch.
fn check(root: &Path, name: &str, version: &str) -> Result<()> {
    let fork = root.join("third_party").join(name);
    let work = std::env::temp_dir().join(format!("strata-fork-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work)?;
    let result = rebuild(&fork, name, version, &work).and_then(|rebuilt| {
        let want = tree(&rebuilt, &[])?;
        let have = tree(&fork, OURS)?;
        compare(&want, &have)
    });
    let _ = std::fs::remove_dir_all(&work);
    result
}

/// Unpacks the release into `work` and applies the fork's patch; returns the patched folder.
fn rebuild(fork: &Path, name: &str, version: &str, work: &Path) -> Result<PathBuf> {
    let archive = cached_release(name, version)?;
    run_in(work, "tar", &["xzf".as_ref(), archive.as_os_str()])?;
    let dir = work.join(format!("{name}-{version}"));
    let diff = fork.join("STRATA-PATCH.diff");
    run_in(
        &dir,
        "patch",
        &["-p1", "-s", "-N", "-r", "-", "-i"]
            .map(AsRef::as_ref)
            .into_iter()
            .chain([diff.as_os_str()])
            .collect::<Vec<_>>(),
    )?;
    Ok(dir)
}

/// `NAME-VERSION.crate` in cargo's registry cache (`$CARGO_HOME`, else `~/.cargo`).
fn cached_release(name: &str, version: &str) -> Result<PathBuf> {
    let home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")))
        .context("neither CARGO_HOME nor HOME is set")?;
    let file = format!("{name}-{version}.crate");
    let cache = home.join("registry/cache");
    for entry in std::fs::read_dir(&cache).into_iter().flatten().flatten() {
        let candidate = entry.path().join(&file);
        if candidate.is_file() {
            return Ok(candidate);
        }
    }
    bail!(
        "{file} is not in {} (run `cargo xtask forks fetch`)",
        cache.display()
    )
}

fn run_in(dir: &Path, program: &str, args: &[&std::ffi::OsStr]) -> Result<()> {
    let out = Command::new(program)
        .args(args)
        .current_dir(dir)
        .output()
        .with_context(|| format!("cannot run `{program}`"))?;
    if !out.status.success() {
        bail!(
            "`{program}` failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}

/// Every file under `dir` (relative path -> bytes), leaving out `skip` at the top level.
fn tree(dir: &Path, skip: &[&str]) -> Result<BTreeMap<PathBuf, Vec<u8>>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(current) = stack.pop() {
        for entry in std::fs::read_dir(&current)? {
            let path = entry?.path();
            let rel = path.strip_prefix(dir)?.to_path_buf();
            if skip.iter().any(|s| rel == Path::new(s)) {
                continue;
            }
            if path.is_dir() {
                stack.push(path);
            } else {
                out.insert(rel, std::fs::read(&path)?);
            }
        }
    }
    Ok(out)
}

/// Names the files that are missing, extra or different.
fn compare(want: &BTreeMap<PathBuf, Vec<u8>>, have: &BTreeMap<PathBuf, Vec<u8>>) -> Result<()> {
    let mut diffs = Vec::new();
    for (path, bytes) in want {
        match have.get(path) {
            None => diffs.push(format!("missing {}", path.display())),
            Some(b) if b != bytes => diffs.push(format!("differs {}", path.display())),
            Some(_) => {}
        }
    }
    for path in have.keys().filter(|p| !want.contains_key(*p)) {
        diffs.push(format!("not in release + patch: {}", path.display()));
    }
    if !diffs.is_empty() {
        bail!(
            "the folder is not the release plus STRATA-PATCH.diff: {}",
            diffs.join(", ")
        );
    }
    Ok(())
}
