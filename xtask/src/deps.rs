//! The dependency rules of ARCHITECTURE.md, checked: crates depend only on
//! crates of a lower layer (so no library ever depends on `cri-server`), and
//! inside `cri-server` no file imports, through others, a file that imports
//! it back.

use anyhow::{bail, Context, Result};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

/// Every workspace member's layer. A crate may depend (normally, for builds
/// or for tests) only on crates of a lower layer. A new crate must be added
/// here, which is where its place is decided.
const LAYERS: &[(&str, u8)] = &[
    // Foundations: no workspace dependency at all.
    ("netns", 0),
    ("idmapped", 0),
    ("sandbox-core", 0),
    ("trust-policy", 0),
    ("cgroups", 0),
    ("cni", 0),
    ("oci-shim", 0),
    ("cri-streaming", 0),
    ("cri-api", 0),
    // Built on foundations.
    ("cri-spec", 1),
    ("image-store", 1),
    ("image-signature", 2),
    // The binary that stitches them together.
    ("cri-server", 3),
    // Tools and tests of the whole.
    ("xtask", 4),
    ("tests", 4),
];

/// Checks both rules; the error lists every violation.
pub fn check(root: &Path) -> Result<()> {
    let mut problems = crate_layers(root)?;
    problems.extend(module_cycles(&root.join("cri-server/src"))?);
    if !problems.is_empty() {
        bail!("dependency rules broken:\n  {}", problems.join("\n  "));
    }
    eprintln!("deps: crate layers and cri-server's imports are in order");
    Ok(())
}

/// Violations of [`LAYERS`] according to `cargo metadata`.
fn crate_layers(root: &Path) -> Result<Vec<String>> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo)
        .current_dir(root)
        .args(["metadata", "--format-version", "1", "--no-deps"])
        .output()
        .context("cargo metadata")?;
    if !out.status.success() {
        bail!("cargo metadata: {}", String::from_utf8_lossy(&out.stderr));
    }
    let metadata: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    let layer = |name: &str| LAYERS.iter().find(|(n, _)| *n == name).map(|(_, l)| *l);
    let mut problems = Vec::new();
    for package in metadata["packages"].as_array().into_iter().flatten() {
        let name = package["name"].as_str().unwrap_or_default();
        let Some(own) = layer(name) else {
            problems.push(format!("{name} has no layer in xtask/src/deps.rs"));
            continue;
        };
        for dep in package["dependencies"].as_array().into_iter().flatten() {
            let dep_name = dep["name"].as_str().unwrap_or_default();
            if dep["path"].is_null() {
                continue; // from a registry, not the workspace
            }
            match layer(dep_name) {
                Some(theirs) if theirs < own => {}
                Some(theirs) => problems.push(format!(
                    "{name} (layer {own}) depends on {dep_name} (layer {theirs})"
                )),
                // Vendored crates (third_party) sit below everything.
                None => {}
            }
        }
    }
    Ok(problems)
}

/// Import cycles between the files of the crate whose sources are in `src`.
fn module_cycles(src: &Path) -> Result<Vec<String>> {
    let files = rust_files(src)?;
    let mut graph: BTreeMap<PathBuf, BTreeSet<PathBuf>> = BTreeMap::new();
    for file in &files {
        let text = std::fs::read_to_string(file).with_context(|| file.display().to_string())?;
        let text = without_comments(strip_tests(&text));
        let module = module_path(src, file);
        let targets = graph.entry(file.clone()).or_default();
        for path in crate_paths(&text, &module) {
            if let Some(target) = resolve(src, &path).filter(|t| t != file) {
                targets.insert(target);
            }
        }
    }
    Ok(cycles(&graph)
        .into_iter()
        .map(|cycle| {
            let names: Vec<String> = cycle
                .iter()
                .map(|f| f.strip_prefix(src).unwrap_or(f).display().to_string())
                .collect();
            format!("import circle in cri-server: {}", names.join(" → "))
        })
        .collect())
}

/// Every `.rs` file under `dir`.
fn rust_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).with_context(|| dir.display().to_string())? {
        let path = entry?.path();
        if path.is_dir() {
            out.extend(rust_files(&path)?);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
    Ok(out)
}

/// The file without its `#[cfg(test)]` module at the end: tests may import
/// what they like.
fn strip_tests(text: &str) -> &str {
    text.find("#[cfg(test)]\nmod ").map_or(text, |i| &text[..i])
}

/// `text` without its `//` comments (doc links name modules without
/// importing them).
fn without_comments(text: &str) -> String {
    text.lines()
        .map(|line| line.split("//").next().unwrap_or_default())
        .collect::<Vec<_>>()
        .join("\n")
}

/// The module path of `file` (`pod/run.rs` → `["pod", "run"]`).
fn module_path(src: &Path, file: &Path) -> Vec<String> {
    let rel = file.strip_prefix(src).unwrap_or(file).with_extension("");
    let mut parts: Vec<String> = rel
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    if matches!(
        parts.last().map(String::as_str),
        Some("mod" | "lib" | "main")
    ) {
        parts.pop();
    }
    parts
}

/// The crate-relative paths `text` names: `crate::a::b`, `super::c` and the
/// items of `use crate::a::{b, c}` groups.
fn crate_paths(text: &str, module: &[String]) -> Vec<Vec<String>> {
    let mut paths = Vec::new();
    let bytes = text.as_bytes();
    for (start, prefix) in text
        .match_indices("crate::")
        .chain(text.match_indices("super::"))
    {
        if start > 0 && (bytes[start - 1].is_ascii_alphanumeric() || bytes[start - 1] == b'_') {
            continue;
        }
        let mut base: Vec<String> = if prefix == "crate::" {
            Vec::new()
        } else {
            module[..module.len().saturating_sub(1)].to_vec()
        };
        let rest = &text[start + prefix.len()..];
        let segment_end = rest
            .find(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':'))
            .unwrap_or(rest.len());
        base.extend(
            rest[..segment_end]
                .split("::")
                .filter(|s| !s.is_empty() && *s != "super")
                .map(str::to_string),
        );
        if rest[segment_end..].starts_with('{') {
            let group = &rest[segment_end + 1
                ..rest[segment_end..]
                    .find('}')
                    .map_or(rest.len(), |e| segment_end + e)];
            for item in group.split(',') {
                let segments = item
                    .trim()
                    .split("::")
                    .filter(|s| !s.is_empty() && *s != "self")
                    .map(str::to_string);
                let mut path = base.clone();
                path.extend(segments);
                paths.push(path);
            }
        }
        paths.push(base);
    }
    paths
}

/// The file that defines the longest prefix of `path` that is a module.
fn resolve(src: &Path, path: &[String]) -> Option<PathBuf> {
    (1..=path.len()).rev().find_map(|n| {
        let dir = path[..n].iter().fold(src.to_path_buf(), |d, p| d.join(p));
        [dir.with_extension("rs"), dir.join("mod.rs")]
            .into_iter()
            .find(|f| f.is_file())
    })
}

/// One cycle per strongly connected set of files that import each other.
fn cycles(graph: &BTreeMap<PathBuf, BTreeSet<PathBuf>>) -> Vec<Vec<PathBuf>> {
    let mut found = Vec::new();
    let mut reported: BTreeSet<PathBuf> = BTreeSet::new();
    for start in graph.keys() {
        if reported.contains(start) {
            continue;
        }
        if let Some(cycle) = path_back(graph, start) {
            reported.extend(cycle.iter().cloned());
            found.push(cycle);
        }
    }
    found
}

/// A path of imports from `start` back to `start`, if there is one.
fn path_back(
    graph: &BTreeMap<PathBuf, BTreeSet<PathBuf>>,
    start: &PathBuf,
) -> Option<Vec<PathBuf>> {
    let mut stack = vec![(start.clone(), vec![start.clone()])];
    let mut seen = BTreeSet::new();
    while let Some((node, path)) = stack.pop() {
        for next in graph.get(&node).into_iter().flatten() {
            if next == start {
                let mut cycle = path.clone();
                cycle.push(start.clone());
                return Some(cycle);
            }
            if seen.insert(next.clone()) {
                let mut longer = path.clone();
                longer.push(next.clone());
                stack.push((next.clone(), longer));
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_workspace_keeps_its_dependency_rules() {
        check(&crate::workspace_root()).unwrap();
    }

    #[test]
    fn a_cycle_between_two_files_is_found() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path();
        std::fs::create_dir(src.join("pod")).unwrap();
        std::fs::write(src.join("lib.rs"), "pub mod daemon;\npub mod pod;\n").unwrap();
        std::fs::write(src.join("daemon.rs"), "use crate::pod::run::start;\n").unwrap();
        std::fs::write(src.join("pod/mod.rs"), "pub mod run;\n").unwrap();
        std::fs::write(
            src.join("pod/run.rs"),
            "use crate::daemon::Daemon;\n#[cfg(test)]\nmod tests { use crate::lib; }\n",
        )
        .unwrap();
        let cycles = module_cycles(src).unwrap();
        assert_eq!(cycles.len(), 1, "{cycles:?}");
        assert!(cycles[0].contains("daemon.rs") && cycles[0].contains("pod/run.rs"));
        std::fs::write(src.join("daemon.rs"), "use super::x;\n").unwrap();
        assert!(module_cycles(src).unwrap().is_empty());
    }

    #[test]
    fn use_groups_and_super_paths_are_followed() {
        let module = vec!["pod".to_string(), "run".to_string()];
        let paths = crate_paths(
            "use crate::{daemon::Daemon, error};\nsuper::files::x();",
            &module,
        );
        assert!(paths.contains(&vec!["daemon".to_string(), "Daemon".to_string()]));
        assert!(paths.contains(&vec!["error".to_string()]));
        assert!(paths.contains(&vec![
            "pod".to_string(),
            "files".to_string(),
            "x".to_string()
        ]));
    }
}
