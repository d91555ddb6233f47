//! The module layering of `shared` (written down in `shared/src/lib.rs`), checked from the
//! source: which top-level module's code names which other module through a `crate::` path.
//! Unit tests (the `#[cfg(test)] mod tests` at the end of a file) are left out; they may
//! reach further.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Top-level module → the modules its non-test code names.
type Graph = BTreeMap<String, BTreeSet<String>>;

fn shared_src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/src")
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The code of a file up to its unit tests.
fn non_test_code(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap();
    let mut code = String::new();
    let mut lines = text.lines().peekable();
    while let Some(line) = lines.next() {
        if line.trim() == "#[cfg(test)]" && lines.peek().is_some_and(|next| next.trim_start().starts_with("mod tests"))
        {
            break;
        }
        code.push_str(line);
        code.push('\n');
    }
    code
}

/// Every `crate::<name>` in `code`.
fn crate_paths(code: &str) -> BTreeSet<String> {
    code.match_indices("crate::")
        .filter(|(at, _)| !code[..*at].ends_with(|c: char| c.is_alphanumeric() || c == '_'))
        .map(|(at, m)| {
            code[at + m.len()..]
                .chars()
                .take_while(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_')
                .collect()
        })
        .filter(|name: &String| !name.is_empty())
        .collect()
}

fn graph() -> Graph {
    let src = shared_src();
    let mut modules: BTreeMap<String, Vec<PathBuf>> = BTreeMap::new();
    for entry in std::fs::read_dir(&src).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_stem().unwrap().to_string_lossy().into_owned();
        if path.is_dir() {
            let mut files = Vec::new();
            rust_files(&path, &mut files);
            modules.insert(name, files);
        } else if path.extension().is_some_and(|e| e == "rs") && name != "lib" {
            modules.insert(name, vec![path]);
        }
    }
    let names: BTreeSet<String> = modules.keys().cloned().collect();
    modules
        .into_iter()
        .map(|(module, files)| {
            let uses = files
                .iter()
                .flat_map(|f| crate_paths(&non_test_code(f)))
                .filter(|m| names.contains(m) && *m != module)
                .collect();
            (module, uses)
        })
        .collect()
}

/// The modules reachable from `from`, not counting `from` itself unless a path leads back.
fn reachable(graph: &Graph, from: &str) -> BTreeSet<String> {
    let mut seen = BTreeSet::new();
    let mut todo: Vec<&str> = graph[from].iter().map(String::as_str).collect();
    while let Some(module) = todo.pop() {
        if seen.insert(module.to_owned()) {
            todo.extend(graph[module].iter().map(String::as_str));
        }
    }
    seen
}

#[test]
fn no_module_imports_its_way_back_to_itself() {
    let graph = graph();
    assert!(graph.len() > 10, "read the modules of shared/src: {:?}", graph.keys());
    // Each circle as the set of modules on it: those that reach one another.
    let circles: BTreeSet<Vec<&String>> = graph
        .keys()
        .filter(|m| reachable(&graph, m).contains(*m))
        .map(|m| {
            graph.keys().filter(|n| reachable(&graph, m).contains(*n) && reachable(&graph, n).contains(m)).collect()
        })
        .collect();
    assert!(circles.is_empty(), "modules of shared that import one another (see lib.rs for the layering): {circles:?}");
}

/// Asserts `module` uses none of `never`.
fn never(graph: &Graph, module: &str, never: &[&str]) {
    let used: Vec<&String> = graph[module].iter().filter(|m| never.contains(&m.as_str())).collect();
    assert!(used.is_empty(), "{module} must not use {used:?} (see the layering in shared/src/lib.rs)");
}

#[test]
fn lower_layers_never_use_higher_ones() {
    let graph = graph();
    // The worker meets the scheduled jobs only at the queue message.
    never(&graph, "worker", &["cio_sync", "triggers"]);
    for port in ["mavera", "store", "queue", "parse", "customerio", "deliver", "health"] {
        never(&graph, port, &["rules", "worker", "cio_sync", "triggers", "ingest", "config"]);
    }
    for foundation in ["domain", "template", "toml_table", "vars", "retry", "deadline"] {
        let above: Vec<&str> = graph.keys().map(String::as_str).filter(|m| *m != "domain").collect();
        never(&graph, foundation, &above);
    }
}

#[test]
fn crate_paths_are_read_from_code() {
    let code = "use crate::queue::{Job};\nlet x = crate::domain::percent(1, 2); // and my_crate::other\n";
    assert_eq!(crate_paths(code), BTreeSet::from(["domain".to_owned(), "queue".to_owned()]));
    let path = shared_src().join("queue/message.rs");
    assert!(!non_test_code(&path).contains("mod tests"), "unit tests are left out");
}
