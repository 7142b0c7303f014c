//! Where the kernel caches live: the root folder and the per-GPU subfolder.

use std::path::PathBuf;

/// The environment variable naming the cache root.
pub const CACHE_ENV: &str = "STRATA_CACHE_DIR";

/// The cache root: `STRATA_CACHE_DIR` if set and not empty, else `strata/kernels` in the
/// per-user cache folder (`XDG_CACHE_HOME`, else `~/.cache`; `%LOCALAPPDATA%` on Windows).
pub fn cache_root() -> Option<PathBuf> {
    let var = |name: &str| {
        std::env::var_os(name)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    if let Some(dir) = var(CACHE_ENV) {
        return Some(dir);
    }
    let user = var("XDG_CACHE_HOME")
        .or_else(|| var("HOME").map(|h| h.join(".cache")))
        .or_else(|| var("LOCALAPPDATA"))?;
    Some(user.join("strata").join("kernels"))
}

/// A folder name for a GPU: its name in lower case, every run of other characters than
/// letters and digits turned into one `-` (`NVIDIA H200` -> `nvidia-h200`).
pub fn gpu_key(name: &str) -> String {
    let mut key = String::new();
    for c in name.chars() {
        if c.is_ascii_alphanumeric() {
            key.push(c.to_ascii_lowercase());
        } else if !key.ends_with('-') {
            key.push('-');
        }
    }
    let key = key.trim_matches('-');
    if key.is_empty() {
        "unknown-gpu".into()
    } else {
        key.into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gpu_keys_are_plain_folder_names() {
        assert_eq!(gpu_key("NVIDIA H200"), "nvidia-h200");
        assert_eq!(
            gpu_key("llvmpipe (LLVM 15.0.6, 256 bits)"),
            "llvmpipe-llvm-15-0-6-256-bits"
        );
        assert_eq!(gpu_key("../.."), "unknown-gpu");
        assert_eq!(gpu_key(""), "unknown-gpu");
    }
}
