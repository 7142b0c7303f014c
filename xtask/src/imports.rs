//! The import graph among one crate's modules, read from its sources as text, and the circles
//! in it (used by the tidy test `no_import_circles_among_our_modules`).
//!
//! A module is a file: `src/lib.rs` / `src/main.rs` is the root, `src/a.rs` and `src/a/mod.rs`
//! are `a`, `src/a/b.rs` is `a::b`. A module imports another when its code names a path into it
//! through `crate::`, `super::` or `self::` (grouped `use` lists included); a name the root
//! re-exports (`pub use a::Name;`) counts as a path into `a`. Paths into the root itself and
//! into the module's own ancestors (a child reaching back to its folder's `mod.rs`) are not
//! edges: a parent declares its children, so they would make every folder a circle. Inline
//! test modules (`#[cfg(test)] mod tests { ... }`) are left out: test code may reach anywhere.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use anyhow::{bail, Result};

/// `cargo xtask imports`: every crate's module graph checked; prints the edge counts.
pub fn run() -> Result<()> {
    for (src, edges) in check_all(&crate::repo_root())? {
        println!(
            "{}: {edges} imports among its modules, no circle",
            src.display()
        );
    }
    Ok(())
}

/// Checks the `src` folder of every crate under `crates/` and xtask's; the error lists the
/// circles found, one per crate.
pub fn check_all(root: &Path) -> Result<Vec<(PathBuf, usize)>> {
    let mut crates: Vec<PathBuf> = std::fs::read_dir(root.join("crates"))?
        .flatten()
        .map(|e| e.path().join("src"))
        .filter(|p| p.is_dir())
        .collect();
    crates.push(root.join("xtask/src"));
    crates.sort();
    let (mut counts, mut circles) = (Vec::new(), Vec::new());
    for src in crates {
        let edges = edges(&read_crate(&src)?);
        if let Some(circle) = find_circle(&edges) {
            circles.push(format!("{}: {}", src.display(), circle.join(" -> ")));
        }
        counts.push((src, edges.len()));
    }
    if !circles.is_empty() {
        bail!("import circles:\n{}", circles.join("\n"));
    }
    Ok(counts)
}

/// Module path (`["data", "prepare"]`) -> its source text.
pub type Sources = BTreeMap<Vec<String>, String>;

/// Reads every `.rs` file under `src` into [`Sources`] (`src/bin` left out: separate crates).
pub fn read_crate(src: &Path) -> std::io::Result<Sources> {
    let mut out = Sources::new();
    let mut stack = vec![src.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir)? {
            let path = entry?.path();
            let rel = path.strip_prefix(src).unwrap_or(&path).to_path_buf();
            if path.is_dir() && rel != Path::new("bin") {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.insert(module_of(&rel), std::fs::read_to_string(&path)?);
            }
        }
    }
    Ok(out)
}

/// `a/b.rs` -> `["a", "b"]`; `a/mod.rs` -> `["a"]`; `lib.rs` / `main.rs` -> `[]`.
fn module_of(rel: &Path) -> Vec<String> {
    let mut parts: Vec<String> = rel
        .with_extension("")
        .iter()
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    if parts.last().is_some_and(|l| l == "mod") || parts == ["lib"] || parts == ["main"] {
        parts.pop();
    }
    parts
}

/// Edges `from -> to` among the modules of `sources`.
pub fn edges(sources: &Sources) -> BTreeSet<(Vec<String>, Vec<String>)> {
    let reexports = root_reexports(sources.get(&Vec::new()).map_or("", String::as_str));
    let mut out = BTreeSet::new();
    for (module, text) in sources {
        for path in paths(&without_test_modules(&strip_comments(text))) {
            let Some(full) = absolute(module, &path) else {
                continue;
            };
            let Some(target) = resolve(sources, &reexports, &full) else {
                continue;
            };
            let ancestor = module.starts_with(&target);
            if !target.is_empty() && !ancestor {
                out.insert((module.clone(), target));
            }
        }
    }
    out
}

/// The module a full path (from the root) lands in: its longest prefix that is a module, or
/// for a name directly under the root, the module the root re-exports it from.
fn resolve(
    sources: &Sources,
    reexports: &BTreeMap<String, Vec<String>>,
    full: &[String],
) -> Option<Vec<String>> {
    let longest = (1..=full.len())
        .rev()
        .map(|n| full[..n].to_vec())
        .find(|prefix| sources.contains_key(prefix));
    longest.or_else(|| full.first().and_then(|name| reexports.get(name).cloned()))
}

/// `crate::`, `super::`, `self::` paths made absolute (segments from the root).
fn absolute(module: &[String], path: &[String]) -> Option<Vec<String>> {
    let mut base: Vec<String> = match path.first()?.as_str() {
        "crate" => Vec::new(),
        "self" | "super" => module.to_vec(),
        _ => return None,
    };
    let mut rest = &path[1..];
    if path[0] == "super" {
        base.pop()?;
    }
    while rest.first().is_some_and(|s| s == "super") {
        base.pop()?;
        rest = &rest[1..];
    }
    base.extend(rest.iter().cloned());
    Some(base)
}

/// Names the root re-exports: `pub use a::b::Name;` (and grouped lists) -> `Name` -> `["a"]`
/// (the longest module prefix is resolved later; the first segment is enough here).
fn root_reexports(root: &str) -> BTreeMap<String, Vec<String>> {
    let mut out = BTreeMap::new();
    for line in strip_comments(root).split(';') {
        let Some(rest) = line.trim().strip_prefix("pub use ") else {
            continue;
        };
        for path in expand(&tokens(rest)) {
            if path.len() >= 2 && path[0] != "crate" {
                out.insert(path.last().unwrap().clone(), vec![path[0].clone()]);
            } else if path.len() >= 3 && path[0] == "crate" {
                out.insert(path.last().unwrap().clone(), vec![path[1].clone()]);
            }
        }
    }
    out
}

/// Every `crate::` / `super::` / `self::` path in `text`, groups expanded.
fn paths(text: &str) -> Vec<Vec<String>> {
    let toks = tokens(text);
    let mut out = Vec::new();
    for (i, tok) in toks.iter().enumerate() {
        let starts = matches!(tok.as_str(), "crate" | "super" | "self")
            && toks.get(i + 1).is_some_and(|t| t == "::")
            && !(i > 0 && matches!(toks[i - 1].as_str(), "::" | "$"));
        if starts {
            out.extend(expand(&toks[i..]));
        }
    }
    out
}

/// Expands the path at the start of `toks` (`a::b::{c, d::e}`) into full paths.
fn expand(toks: &[String]) -> Vec<Vec<String>> {
    let mut prefix = Vec::new();
    let mut i = 0;
    while let Some(tok) = toks.get(i) {
        if tok == "{" {
            return group(&toks[i + 1..])
                .into_iter()
                .flat_map(|item| expand(&item))
                .map(|tail| prefix.iter().cloned().chain(tail).collect())
                .collect();
        }
        if !is_ident(tok) {
            break;
        }
        prefix.push(tok.clone());
        if toks.get(i + 1).is_none_or(|t| t != "::") {
            break;
        }
        i += 2;
    }
    vec![prefix]
}

/// The comma-separated items of a `{...}` group (toks start after `{`).
fn group(toks: &[String]) -> Vec<Vec<String>> {
    let (mut items, mut current, mut depth) = (Vec::new(), Vec::new(), 0usize);
    for tok in toks {
        match tok.as_str() {
            "{" => depth += 1,
            "}" if depth == 0 => break,
            "}" => depth -= 1,
            "," if depth == 0 => {
                items.push(std::mem::take(&mut current));
                continue;
            }
            _ => {}
        }
        current.push(tok.clone());
    }
    items.push(current);
    items.retain(|i| !i.is_empty());
    items
}

fn is_ident(tok: &str) -> bool {
    tok.chars().all(|c| c.is_alphanumeric() || c == '_') && !tok.is_empty()
}

/// Identifiers, `::`, and single punctuation characters; string literals dropped.
fn tokens(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c.is_alphanumeric() || c == '_' {
            let mut ident = c.to_string();
            while let Some(&n) = chars.peek().filter(|n| n.is_alphanumeric() || **n == '_') {
                ident.push(n);
                chars.next();
            }
            out.push(ident);
        } else if c == ':' && chars.peek() == Some(&':') {
            chars.next();
            out.push("::".into());
        } else if c == '"' {
            skip_string(&mut chars);
        } else if !c.is_whitespace() {
            out.push(c.to_string());
        }
    }
    out
}

fn skip_string(chars: &mut std::iter::Peekable<std::str::Chars>) {
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                chars.next();
            }
            '"' => return,
            _ => {}
        }
    }
}

/// The text without `//` comments (doc comments included).
fn strip_comments(text: &str) -> String {
    text.lines()
        .map(|line| {
            let code = line.trim_start();
            if code.starts_with("//") {
                ""
            } else {
                line.split(" // ").next().unwrap_or(line)
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The text without its inline `#[cfg(test)] mod NAME { ... }` blocks.
fn without_test_modules(text: &str) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(at) = rest.find("#[cfg(test)]") {
        out.push_str(&rest[..at]);
        let after = &rest[at + "#[cfg(test)]".len()..];
        let opens = after.trim_start().starts_with("mod ")
            && after.find('{').is_some_and(|b| !after[..b].contains(';'));
        if !opens {
            out.push_str("#[cfg(test)]");
            rest = after;
            continue;
        }
        let body = after.find('{').expect("checked") + 1;
        let mut depth = 1usize;
        let end = after[body..]
            .char_indices()
            .find(|&(_, c)| {
                match c {
                    '{' => depth += 1,
                    '}' => depth -= 1,
                    _ => {}
                }
                depth == 0
            })
            .map_or(after.len(), |(i, _)| body + i + 1);
        rest = &after[end..];
    }
    out.push_str(rest);
    out
}

/// One circle, if there is any: the modules along it, the first repeated at the end.
pub fn find_circle(edges: &BTreeSet<(Vec<String>, Vec<String>)>) -> Option<Vec<String>> {
    let mut next: BTreeMap<&Vec<String>, Vec<&Vec<String>>> = BTreeMap::new();
    for (from, to) in edges {
        next.entry(from).or_default().push(to);
    }
    let mut done = BTreeSet::new();
    for start in next.keys() {
        let mut trail = Vec::new();
        if let Some(circle) = walk(start, &next, &mut trail, &mut done) {
            return Some(circle.iter().map(|m| display(m)).collect());
        }
    }
    None
}

/// Depth-first search; `trail` is the current path, `done` the modules fully explored.
fn walk<'a>(
    at: &'a Vec<String>,
    next: &BTreeMap<&'a Vec<String>, Vec<&'a Vec<String>>>,
    trail: &mut Vec<&'a Vec<String>>,
    done: &mut BTreeSet<&'a Vec<String>>,
) -> Option<Vec<&'a Vec<String>>> {
    if let Some(pos) = trail.iter().position(|m| *m == at) {
        let mut circle = trail[pos..].to_vec();
        circle.push(at);
        return Some(circle);
    }
    if done.contains(at) {
        return None;
    }
    trail.push(at);
    for to in next.get(at).into_iter().flatten() {
        if let Some(circle) = walk(to, next, trail, done) {
            return Some(circle);
        }
    }
    trail.pop();
    done.insert(at);
    None
}

fn display(module: &[String]) -> String {
    if module.is_empty() {
        "crate".into()
    } else {
        module.join("::")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sources(files: &[(&str, &str)]) -> Sources {
        files
            .iter()
            .map(|(path, text)| (module_of(Path::new(path)), text.to_string()))
            .collect()
    }

    #[test]
    fn a_circle_through_a_group_a_reexport_and_super_is_found() {
        let s = sources(&[
            ("lib.rs", "mod a; mod b; mod c; pub use c::Gamma;"),
            (
                "a.rs",
                "use crate::{b::inner::Helper, x};\n// use crate::c::Nothing;",
            ),
            ("b/mod.rs", "mod inner; pub struct Beta;"),
            (
                "b/inner.rs",
                "use super::Beta; pub struct Helper; fn f() -> crate::Gamma { g() }",
            ),
            (
                "c.rs",
                "pub struct Gamma; fn g() { let _ = \"crate::b\"; crate::a::f(); }",
            ),
        ]);
        let e = edges(&s);
        let m = |p: &str| p.split("::").map(String::from).collect::<Vec<_>>();
        assert!(e.contains(&(m("a"), m("b::inner"))));
        assert!(e.contains(&(m("b::inner"), m("c"))));
        assert!(e.contains(&(m("c"), m("a"))));
        assert!(
            !e.contains(&(m("b::inner"), m("b"))),
            "child to parent is no edge"
        );
        assert_eq!(e.len(), 3, "comments and strings are not code: {e:?}");
        let circle = find_circle(&e).expect("a -> b::inner -> c -> a");
        assert_eq!(circle.first(), circle.last());
        assert!(circle.contains(&"c".to_string()), "{circle:?}");
    }

    #[test]
    fn inline_test_modules_are_left_out() {
        let s = sources(&[
            ("lib.rs", "mod a; mod b;"),
            ("a.rs", "use crate::b::B;"),
            ("b.rs", "pub struct B;\n#[cfg(test)]\nmod tests {\n    use crate::a::f;\n    fn g() { if true { f() } }\n}\nfn h() {}"),
        ]);
        assert_eq!(find_circle(&edges(&s)), None);
        let mut with_use = s.clone();
        with_use.insert(vec!["b".into()], "use crate::a::f; pub struct B;".into());
        assert!(find_circle(&edges(&with_use)).is_some());
    }

    #[test]
    fn a_tree_has_no_circle() {
        let s = sources(&[
            ("lib.rs", "mod a; mod b;"),
            ("a.rs", "use crate::b::B;"),
            ("b.rs", "use self::inner::I; pub struct B;"),
        ]);
        assert_eq!(find_circle(&edges(&s)), None);
    }
}
