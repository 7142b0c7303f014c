//! The commands the README and the guide show are ones the `strata` binary accepts: every
//! `strata ...` (or `cargo run ... -p cli -- ...`) line of their `sh` blocks names a real
//! subcommand, and each of its `--flags` is one that subcommand's `--help` lists.

mod common;

use common::*;

/// The `strata` command lines of the `sh` blocks of a Markdown file (continuations joined,
/// comments dropped), as words after `strata`.
fn commands(markdown: &str) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    let mut in_sh = false;
    let mut line = String::new();
    for raw in markdown.lines() {
        if raw.trim_start().starts_with("```") {
            in_sh = !in_sh && raw.trim_start().starts_with("```sh");
            continue;
        }
        if !in_sh {
            continue;
        }
        let code = raw.split(" #").next().unwrap_or(raw).trim_end();
        if let Some(head) = code.strip_suffix('\\') {
            line.push_str(head);
            continue;
        }
        line.push_str(code);
        if let Some(words) = strata_words(&line) {
            out.push(words);
        }
        line.clear();
    }
    out
}

/// The words after `strata` (or after `cargo run ... -p cli --`), if the line runs strata.
fn strata_words(line: &str) -> Option<Vec<String>> {
    let words: Vec<&str> = line.split_whitespace().collect();
    let start = if words.first() == Some(&"strata") {
        1
    } else if words.starts_with(&["cargo", "run"]) && words.contains(&"cli") {
        words.iter().position(|w| *w == "--")? + 1
    } else {
        return None;
    };
    let end = words.iter().position(|w| *w == ">" || *w == "|");
    Some(
        words[start..end.unwrap_or(words.len())]
            .iter()
            .map(|w| w.to_string())
            .collect(),
    )
}

/// Checks one command: its subcommand path's `--help` succeeds and lists each flag it uses.
fn check(words: &[String], problems: &mut Vec<String>) {
    let path: Vec<&str> = words
        .iter()
        .take_while(|w| !w.starts_with('-'))
        .map(String::as_str)
        .collect();
    let out = strata(&[path.as_slice(), &["--help"]].concat());
    let help = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        problems.push(format!("strata {}: not a command", path.join(" ")));
        return;
    }
    for flag in words.iter().filter(|w| w.starts_with("--")) {
        let name = flag.split('=').next().unwrap_or(flag);
        if !help.contains(&format!("{name} ")) && !help.contains(&format!("{name}\n")) {
            problems.push(format!("strata {}: no flag {name}", path.join(" ")));
        }
    }
}

#[test]
fn every_strata_command_in_the_readme_and_the_guide_is_accepted() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let mut problems = Vec::new();
    let mut checked = 0;
    for doc in ["README.md", "docs/guide.md"] {
        let text = std::fs::read_to_string(root.join(doc)).unwrap();
        for words in commands(&text) {
            check(&words, &mut problems);
            checked += 1;
        }
    }
    assert!(checked >= 15, "found the commands: {checked}");
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn the_check_catches_a_flag_that_does_not_exist() {
    let words = commands("```sh\nstrata train --model tiny-dense \\\n    --no-such-flag 3\n```\n");
    assert_eq!(words.len(), 1);
    let mut problems = Vec::new();
    check(&words[0], &mut problems);
    assert_eq!(problems, ["strata train: no flag --no-such-flag"]);
    let mut problems = Vec::new();
    check(&["no-such-command".to_string()], &mut problems);
    assert_eq!(problems.len(), 1);
}
