//! The library's top-level modules form layers: no module reaches, directly
//! or through others, back into one that depends on it (docs/architecture.md
//! lists them). This test reads `runtime/src`, collects every `crate::<module>`
//! path outside comments and test modules, and fails on a cycle, naming the
//! lines that close it.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// module → the modules it names, with one place each is named.
type Graph = BTreeMap<String, BTreeMap<String, String>>;

fn collect(dir: &Path, src: &Path, graph: &mut Graph) {
    for entry in std::fs::read_dir(dir).expect("read runtime/src") {
        let path = entry.expect("dir entry").path();
        if path.is_dir() {
            collect(&path, src, graph);
            continue;
        }
        if path.extension().is_none_or(|e| e != "rs") {
            continue;
        }
        let relative = path.strip_prefix(src).expect("under src");
        let first = relative
            .components()
            .next()
            .expect("a component")
            .as_os_str()
            .to_string_lossy();
        let module = first.trim_end_matches(".rs").to_owned();
        let text = std::fs::read_to_string(&path).expect("read source");
        let edges = graph.entry(module.clone()).or_default();
        for (number, line) in text.lines().enumerate() {
            let code = line.trim_start();
            // Test modules close a file by convention, and may reach anywhere.
            if code.starts_with("#[cfg(test)]") {
                break;
            }
            if code.starts_with("//") {
                continue;
            }
            let mut rest = code;
            while let Some(at) = rest.find("crate::") {
                rest = &rest[at + "crate::".len()..];
                let name: String = rest
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                if !name.is_empty() && name != module {
                    edges
                        .entry(name)
                        .or_insert_with(|| format!("{}:{}", relative.display(), number + 1));
                }
            }
        }
    }
}

/// A path from `from` back to itself, if there is one.
fn cycle_through(graph: &Graph, from: &str) -> Option<Vec<String>> {
    fn walk(
        graph: &Graph,
        target: &str,
        at: &str,
        path: &mut Vec<String>,
        seen: &mut BTreeSet<String>,
    ) -> bool {
        for next in graph.get(at).into_iter().flat_map(|e| e.keys()) {
            if next == target {
                path.push(next.clone());
                return true;
            }
            if seen.insert(next.clone()) {
                path.push(next.clone());
                if walk(graph, target, next, path, seen) {
                    return true;
                }
                path.pop();
            }
        }
        false
    }
    let mut path = vec![from.to_owned()];
    walk(graph, from, from, &mut path, &mut BTreeSet::new()).then_some(path)
}

#[test]
fn top_level_modules_form_layers_without_cycles() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut graph = Graph::new();
    collect(&src, &src, &mut graph);
    assert!(
        graph.contains_key("wasm") && graph.contains_key("server"),
        "the walk found the modules: {:?}",
        graph.keys()
    );
    for module in graph.keys() {
        if let Some(cycle) = cycle_through(&graph, module) {
            let steps: Vec<String> = cycle
                .windows(2)
                .map(|pair| format!("{} -> {} ({})", pair[0], pair[1], graph[&pair[0]][&pair[1]]))
                .collect();
            panic!(
                "an import cycle between top-level modules:\n  {}\nmove the shared piece into a lower module, or invert the dependency with a trait (see docs/architecture.md)",
                steps.join("\n  ")
            );
        }
    }
    // The leaves stay leaves.
    for leaf in ["grants", "counter"] {
        let reaches: Vec<&String> = graph[leaf].keys().filter(|m| *m != "counter").collect();
        assert!(
            reaches.is_empty(),
            "`{leaf}` is a leaf module but names {reaches:?}"
        );
    }
}

#[test]
fn the_check_finds_a_cycle_through_a_third_module() {
    let mut graph = Graph::new();
    let edge = |graph: &mut Graph, a: &str, b: &str| {
        graph
            .entry(a.into())
            .or_default()
            .insert(b.into(), format!("{a}.rs:1"));
    };
    edge(&mut graph, "wasm", "grants");
    edge(&mut graph, "capabilities", "wasm");
    assert_eq!(cycle_through(&graph, "wasm"), None);
    edge(&mut graph, "grants", "capabilities");
    assert_eq!(
        cycle_through(&graph, "wasm"),
        Some(vec![
            "wasm".into(),
            "grants".into(),
            "capabilities".into(),
            "wasm".into()
        ])
    );
}
