//! Tidy checks of the tree, run as ordinary tests by `cargo test --workspace`.

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};

    /// The repository root (xtask's parent folder).
    fn root() -> PathBuf {
        crate::repo_root()
    }

    /// Every file under `dir` with one of `extensions`, skipping build outputs and the
    /// patched copies of dependencies (`third_party/`).
    fn files(dir: &Path, extensions: &[&str], out: &mut Vec<PathBuf>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let name = entry.file_name().to_string_lossy().to_string();
            if path.is_dir() {
                if !matches!(name.as_str(), "target" | "third_party" | ".git") {
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

    /// Every file of ours under `crates/`, `xtask/` and `examples/` with extension `.rs`.
    fn rust_sources() -> Vec<PathBuf> {
        let root = root();
        let mut all = Vec::new();
        for dir in ["crates", "xtask", "examples"] {
            files(&root.join(dir), &[".rs"], &mut all);
        }
        all
    }

    /// Every source file opens with a `//!` line saying what it holds.
    #[test]
    fn every_source_file_says_what_it_holds() {
        let missing: Vec<String> = rust_sources()
            .iter()
            .filter(|p| {
                let text = std::fs::read_to_string(p).unwrap_or_default();
                !text.starts_with("//!")
            })
            .map(|p| p.display().to_string())
            .collect();
        assert!(missing.is_empty(), "no `//!` first line: {missing:?}");
    }

    /// No source file over 500 lines unless its header says why (`Long on purpose: ...`).
    #[test]
    fn long_files_state_why() {
        let long: Vec<String> = rust_sources()
            .iter()
            .filter_map(|p| {
                let text = std::fs::read_to_string(p).unwrap_or_default();
                let lines = text.lines().count();
                let header: String = text.lines().take_while(|l| l.starts_with("//!")).collect();
                (lines > 500 && !header.contains("Long on purpose:"))
                    .then(|| format!("{} ({lines} lines)", p.display()))
            })
            .collect();
        assert!(long.is_empty(), "split these or say why: {long:?}");
    }

    /// Functions of ours (from `fn` to the brace closing it at the same indentation) longer
    /// than `limit` lines whose comment lines just above do not say `Long on purpose:`.
    fn long_functions(text: &str, limit: usize) -> Vec<(String, usize)> {
        let lines: Vec<&str> = text.lines().collect();
        let mut out = Vec::new();
        for (i, line) in lines.iter().enumerate() {
            let code = line.trim_start();
            let indent = &line[..line.len() - code.len()];
            let declares = ["fn ", "pub fn ", "pub(crate) fn ", "pub(super) fn "]
                .iter()
                .any(|p| code.starts_with(p));
            if !declares || code.ends_with(';') {
                continue;
            }
            let close = format!("{indent}}}");
            let Some(end) = lines[i + 1..].iter().position(|l| *l == close) else {
                continue;
            };
            let why = lines[..i]
                .iter()
                .rev()
                .take_while(|l| {
                    l.trim_start().starts_with("//") || l.trim_start().starts_with("#[")
                })
                .any(|l| l.contains("Long on purpose:"));
            if end + 2 > limit && !why {
                let name = code.split("fn ").nth(1).unwrap_or(code);
                let name = name.split(['(', '<']).next().unwrap_or(name);
                out.push((name.to_string(), end + 2));
            }
        }
        out
    }

    /// No function of ours over 100 lines unless a comment above it says why
    /// (`Long on purpose: ...`, e.g. a table, a check list, an end-to-end test scenario).
    #[test]
    fn long_functions_state_why() {
        let long: Vec<String> = rust_sources()
            .iter()
            .flat_map(|p| {
                let text = std::fs::read_to_string(p).unwrap_or_default();
                long_functions(&text, 100)
                    .into_iter()
                    .map(move |(name, n)| format!("{}: {name} ({n} lines)", p.display()))
            })
            .collect();
        assert!(long.is_empty(), "split these or say why: {long:?}");
    }

    #[test]
    fn the_long_function_check_counts_and_reads_the_reason() {
        let body = "    let x = 1;\n".repeat(100);
        let plain = format!("/// Doc.\npub fn f() {{\n{body}}}\nfn g() {{}}\n");
        assert_eq!(long_functions(&plain, 100), [("f".to_string(), 102)]);
        let why = format!("// Long on purpose: a table.\n#[test]\nfn f() {{\n{body}}}\n");
        assert!(long_functions(&why, 100).is_empty());
        assert!(long_functions(&plain, 102).is_empty());
    }

    /// `.ci/run` runs `cargo xtask ci`'s steps, in the same order.
    #[test]
    fn ci_script_and_xtask_ci_run_the_same_steps() {
        let script = std::fs::read_to_string(root().join(".ci/run")).unwrap();
        let commands: Vec<&str> = script
            .lines()
            .map(str::trim)
            .filter(|l| l.starts_with("cargo "))
            .collect();
        let steps: Vec<String> = crate::ci::STEPS
            .iter()
            .chain(crate::ci::GPU_STEPS)
            .map(|s| s.join(" "))
            .collect();
        assert_eq!(commands, steps, ".ci/run and xtask/src/ci.rs differ");
    }

    /// No circle of imports among the modules of any crate of ours (`crate::`, `super::`,
    /// `self::` paths and the root's re-exports; see xtask/src/imports.rs). Crates cannot form
    /// one: cargo refuses a circle of dependencies.
    #[test]
    fn no_import_circles_among_our_modules() {
        match crate::imports::check_all(&root()) {
            Ok(counts) => assert!(counts.len() >= 9, "found the crates: {counts:?}"),
            Err(e) => panic!("{e:#}"),
        }
    }

    /// The dependencies `section` (`dependencies`, `dev-dependencies`) of the manifest
    /// `text` names, among `known`.
    fn manifest_deps(text: &str, section: &str, known: &[&str]) -> Vec<String> {
        let header = format!("[{section}]");
        let mut deps: Vec<String> = text
            .lines()
            .skip_while(|l| l.trim() != header)
            .skip(1)
            .take_while(|l| !l.starts_with('['))
            .filter_map(|l| l.split(['=', '.']).next().map(str::trim))
            .filter(|name| known.contains(name))
            .map(String::from)
            .collect();
        deps.sort();
        deps.dedup();
        deps
    }

    /// The crate table of docs/architecture.md lists, for each crate of ours, exactly the
    /// crates of ours (and burn-collective) its `Cargo.toml` names.
    #[test]
    fn the_crate_table_matches_the_manifests() {
        let root = root();
        let doc = std::fs::read_to_string(root.join("docs/architecture.md")).unwrap();
        let names = |cell: &str| -> Vec<String> {
            let mut v: Vec<String> = cell
                .split('`')
                .skip(1)
                .step_by(2)
                .map(String::from)
                .collect();
            v.sort();
            v
        };
        // The table that follows the words "The edges among our crates", up to a blank line.
        let table = doc
            .lines()
            .skip_while(|l| !l.starts_with("The edges among our crates"))
            .skip(1)
            .skip_while(|l| !l.starts_with('|'))
            .take_while(|l| l.starts_with('|'));
        let mut rows = Vec::new();
        for line in table.filter(|l| l.starts_with("| `")) {
            let cells: Vec<&str> = line.split('|').map(str::trim).collect();
            for name in names(cells[1]) {
                rows.push((name, names(cells[2]), names(cells[3])));
            }
        }
        let ours: Vec<String> = std::fs::read_dir(root.join("crates"))
            .unwrap()
            .flatten()
            .filter(|e| e.path().join("Cargo.toml").is_file())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .chain(["examples".to_string(), "xtask".to_string()])
            .collect();
        let mut known: Vec<&str> = ours.iter().map(String::as_str).collect();
        known.push("burn-collective");
        let mut listed: Vec<&String> = rows.iter().map(|r| &r.0).collect();
        listed.sort();
        let mut expected: Vec<&String> = ours.iter().collect();
        expected.sort();
        assert_eq!(listed, expected, "the table's crates vs the workspace's");
        for (name, deps, dev) in &rows {
            let dir = match name.as_str() {
                "examples" | "xtask" => root.join(name),
                _ => root.join("crates").join(name),
            };
            let text = std::fs::read_to_string(dir.join("Cargo.toml")).unwrap();
            assert_eq!(
                &manifest_deps(&text, "dependencies", &known),
                deps,
                "{name}: [dependencies]"
            );
            assert_eq!(
                &manifest_deps(&text, "dev-dependencies", &known),
                dev,
                "{name}: [dev-dependencies]"
            );
        }
    }

    /// Each fork under `third_party/` is its crates.io release (from cargo's registry cache,
    /// put there by `cargo xtask forks fetch`) plus its `STRATA-PATCH.diff`, file for file.
    #[test]
    fn forks_are_their_release_plus_their_patch() {
        if let Err(e) = crate::forks::check_all(&root()) {
            panic!("{e:#}");
        }
        let listed: Vec<String> = std::fs::read_dir(root().join("third_party"))
            .unwrap()
            .flatten()
            .filter(|e| e.path().is_dir())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        for name in &listed {
            assert!(
                crate::forks::FORKS.iter().any(|(n, _)| n == name),
                "third_party/{name} is not in xtask/src/forks.rs FORKS"
            );
        }
    }

    /// The GPU kit's scripts parse (they run on a GPU host, where a typo costs the session).
    #[test]
    fn the_gpu_kit_scripts_parse() {
        let kit = root().join("xtask/gpu-kit");
        for script in ["bundle.sh", "check.sh"] {
            let out = std::process::Command::new("bash")
                .arg("-n")
                .arg(kit.join(script))
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "{script}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        for peer in ["torch_gpt_gpu.py", "torch_ffn_gpu.py", "torch_ffn_bench.py"] {
            let source = std::fs::read_to_string(kit.join(peer)).unwrap();
            let out = std::process::Command::new("python3")
                .args(["-c", "import ast,sys; ast.parse(sys.stdin.read())"])
                .stdin(std::process::Stdio::piped())
                .spawn()
                .and_then(|mut child| {
                    use std::io::Write;
                    child.stdin.take().unwrap().write_all(source.as_bytes())?;
                    child.wait_with_output()
                })
                .unwrap();
            assert!(out.status.success(), "{peer} does not parse");
        }
    }
}
