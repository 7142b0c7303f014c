//! Tidy checks of the tree, run as ordinary tests by `cargo test --workspace`.

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};

    /// The repository root (xtask's parent folder).
    fn root() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .expect("xtask sits in the repository root")
            .to_path_buf()
    }

    /// Every file under `dir` with one of `extensions`, skipping build outputs and the
    /// patched copy of a dependency.
    fn files(dir: &Path, extensions: &[&str], out: &mut Vec<PathBuf>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let name = entry.file_name().to_string_lossy().to_string();
            if path.is_dir() {
                if !matches!(name.as_str(), "target" | "cubek-matmul" | ".git") {
                    files(&path, extensions, out);
                }
            } else if extensions.iter().any(|e| name.ends_with(e)) {
                out.push(path);
            }
        }
    }

    /// Code, the zoo and the docs stand alone: no pointer to files outside the repository
    /// (the papers' notes live in docs/reference.md).
    #[test]
    fn sources_point_only_inside_the_repository() {
        let root = root();
        let mut all = Vec::new();
        for dir in ["crates", "xtask", "examples", "models"] {
            files(&root.join(dir), &[".rs", ".toml", ".md"], &mut all);
        }
        files(&root.join("docs"), &["reference.md"], &mut all);
        assert!(all.len() > 30, "found the sources: {}", all.len());
        // Spelled in pieces so this file does not match itself.
        let banned = [
            ["paper", ".md"].concat(),
            ["design", ".md"].concat(),
            ["style", ".md"].concat(),
            ["../", "shared"].concat(),
        ];
        let mut bad = Vec::new();
        for path in &all {
            let text = std::fs::read_to_string(path).unwrap_or_default();
            for (i, line) in text.lines().enumerate() {
                if banned.iter().any(|b| line.contains(b.as_str())) {
                    bad.push(format!("{}:{}: {line}", path.display(), i + 1));
                }
            }
        }
        assert!(
            bad.is_empty(),
            "pointers outside the repository:\n{}",
            bad.join("\n")
        );
    }
}
