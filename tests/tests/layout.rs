//! The shared crate's layout holds: arrows point one way between its top-level modules (no
//! import cycle), and the domain depends on nothing outside itself (it is pure: no store, no
//! queue, no clock, no configuration).
//!
//! A module's dependencies are read from its source: every `crate::<module>` path in the code of
//! any file under it (including `use crate::{a, b}` groups; comments do not count).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn src() -> PathBuf {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/src")).to_owned()
}

fn files(p: &Path, out: &mut Vec<PathBuf>) {
    if p.is_dir() {
        for e in std::fs::read_dir(p).expect("read dir") {
            files(&e.expect("entry").path(), out);
        }
    } else if p.extension().is_some_and(|e| e == "rs") {
        out.push(p.to_owned());
    }
}

/// Top-level module → the top-level modules its code names.
fn graph() -> BTreeMap<String, BTreeSet<String>> {
    let root = src();
    let lib = std::fs::read_to_string(root.join("lib.rs")).expect("lib.rs");
    let modules: BTreeSet<String> = lib
        .lines()
        .filter_map(|l| l.trim().strip_prefix("pub mod "))
        .map(|m| m.trim_end_matches(';').to_owned())
        .collect();
    assert!(modules.len() >= 10, "{modules:?}");
    let mut g = BTreeMap::new();
    for m in &modules {
        let mut fs = Vec::new();
        let dir = root.join(m);
        if dir.is_dir() {
            files(&dir, &mut fs);
        }
        let file = root.join(format!("{m}.rs"));
        if file.exists() {
            fs.push(file);
        }
        let mut deps = BTreeSet::new();
        for f in fs {
            // Code only: a documentation link is not a dependency.
            let text: String = std::fs::read_to_string(&f)
                .expect("source")
                .lines()
                .filter(|l| !l.trim_start().starts_with("//"))
                .collect::<Vec<_>>()
                .join("\n");
            for (i, _) in text.match_indices("crate::") {
                let rest = &text[i + "crate::".len()..];
                if let Some(group) = rest.strip_prefix('{') {
                    let end = group.find('}').unwrap_or(group.len());
                    for part in group[..end].split(',') {
                        let name: String = part
                            .trim()
                            .chars()
                            .take_while(|c| c.is_alphanumeric() || *c == '_')
                            .collect();
                        deps.insert(name);
                    }
                } else {
                    let name: String = rest
                        .chars()
                        .take_while(|c| c.is_alphanumeric() || *c == '_')
                        .collect();
                    deps.insert(name);
                }
            }
        }
        deps.retain(|d| modules.contains(d) && d != m);
        g.insert(m.clone(), deps);
    }
    g
}

#[test]
fn the_shared_crate_has_no_import_cycle() {
    let g = graph();
    // Depth-first search with colours; a grey node met again closes a cycle.
    fn visit(
        n: &str,
        g: &BTreeMap<String, BTreeSet<String>>,
        colour: &mut BTreeMap<String, u8>,
        path: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        colour.insert(n.to_owned(), 1);
        path.push(n.to_owned());
        for d in &g[n] {
            match colour.get(d).copied().unwrap_or(0) {
                1 => {
                    let start = path.iter().position(|p| p == d).unwrap_or(0);
                    let mut cycle = path[start..].to_vec();
                    cycle.push(d.clone());
                    return Some(cycle);
                }
                0 => {
                    if let Some(c) = visit(d, g, colour, path) {
                        return Some(c);
                    }
                }
                _ => {}
            }
        }
        path.pop();
        colour.insert(n.to_owned(), 2);
        None
    }
    let mut colour = BTreeMap::new();
    for n in g.keys() {
        if colour.get(n).copied().unwrap_or(0) == 0 {
            let cycle = visit(n, &g, &mut colour, &mut Vec::new());
            assert!(
                cycle.is_none(),
                "import cycle: {}\n{g:#?}",
                cycle.unwrap_or_default().join(" -> ")
            );
        }
    }
}

#[test]
fn the_domain_depends_on_nothing_outside_itself() {
    let g = graph();
    assert!(g["domain"].is_empty(), "domain uses {:?}", g["domain"]);
    // The flow sits between the edges and the domain: nothing below it names it.
    for (m, deps) in &g {
        if !["api", "lambda", "flow"].contains(&m.as_str()) {
            assert!(!deps.contains("flow"), "{m} depends on flow");
            assert!(!deps.contains("api"), "{m} depends on api");
        }
    }
}
