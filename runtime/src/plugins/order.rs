//! Load order: Kahn's topological sort over dependencies.
//!
//! Required dependencies must be present (else the plugin, and everything
//! that depends on it, is left out with the reason); optional dependencies
//! only order the plugins when present. Among plugins free to load, the
//! configured order is kept, so the chain is predictable. A cycle leaves out
//! every plugin on it, with the chain spelled out.

use std::collections::{BTreeMap, BTreeSet};

/// A plugin as the sorter sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    /// Its name.
    pub name: String,
    /// Must load first.
    pub dependencies: Vec<String>,
    /// Load first when present.
    pub optional_dependencies: Vec<String>,
}

/// The outcome of sorting.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Order {
    /// Indices into the input, in load order.
    pub order: Vec<usize>,
    /// Plugins left out, with why.
    pub left_out: BTreeMap<String, String>,
}

/// Sorts `nodes` (given in configured order).
///
/// ```
/// use buntime::plugins::order::{Node, sort};
/// let n = |name: &str, deps: &[&str]| Node {
///     name: name.into(),
///     dependencies: deps.iter().map(|d| d.to_string()).collect(),
///     optional_dependencies: vec![],
/// };
/// let result = sort(&[n("b", &["a"]), n("a", &[]), n("c", &["x"])]);
/// assert_eq!(result.order, vec![1, 0]);
/// assert!(result.left_out["c"].contains("`x`"));
/// ```
pub fn sort(nodes: &[Node]) -> Order {
    let mut left_out: BTreeMap<String, String> = BTreeMap::new();
    let present: BTreeSet<&str> = nodes.iter().map(|n| n.name.as_str()).collect();

    // Drop plugins whose required dependency is missing, until stable.
    loop {
        let mut changed = false;
        for n in nodes {
            if left_out.contains_key(&n.name) {
                continue;
            }
            for d in &n.dependencies {
                let reason = if !present.contains(d.as_str()) {
                    Some(format!(
                        "requires `{d}`, which is not installed or not enabled"
                    ))
                } else {
                    left_out
                        .get(d)
                        .map(|why| format!("requires `{d}`, which was left out ({why})"))
                };
                if let Some(reason) = reason {
                    left_out.insert(n.name.clone(), reason);
                    changed = true;
                    break;
                }
            }
        }
        if !changed {
            break;
        }
    }

    let index: BTreeMap<&str, usize> = nodes
        .iter()
        .enumerate()
        .filter(|(_, n)| !left_out.contains_key(&n.name))
        .map(|(i, n)| (n.name.as_str(), i))
        .collect();
    // Edges dependency -> dependent, among the plugins still in.
    let deps_of = |n: &Node| -> Vec<usize> {
        n.dependencies
            .iter()
            .chain(&n.optional_dependencies)
            .filter_map(|d| index.get(d.as_str()).copied())
            .collect()
    };
    let mut indegree: BTreeMap<usize, usize> = index
        .values()
        .map(|&i| (i, deps_of(&nodes[i]).len()))
        .collect();
    let mut order = Vec::new();
    while let Some(next) = indegree
        .iter()
        .filter(|(_, d)| **d == 0)
        .map(|(i, _)| *i)
        .next()
    {
        indegree.remove(&next);
        order.push(next);
        for (&i, d) in indegree.iter_mut() {
            let edges = deps_of(&nodes[i]).iter().filter(|&&x| x == next).count();
            *d -= edges;
        }
    }

    // What is left is on a cycle or depends on one.
    let stuck: BTreeSet<usize> = indegree.keys().copied().collect();
    for &i in &stuck {
        let reason = match cycle_from(i, &stuck, &deps_of, nodes) {
            Some(chain) if chain.first() == Some(&nodes[i].name) => {
                format!("dependency cycle: {}", chain.join(" → "))
            }
            Some(chain) => format!("depends on a dependency cycle: {}", chain.join(" → ")),
            None => "depends on a dependency cycle".into(),
        };
        left_out.insert(nodes[i].name.clone(), reason);
    }
    Order { order, left_out }
}

/// Follows stuck dependencies from `start` until a node repeats; returns the
/// cycle, starting and ending at the repeated node.
fn cycle_from(
    start: usize,
    stuck: &BTreeSet<usize>,
    deps_of: &dyn Fn(&Node) -> Vec<usize>,
    nodes: &[Node],
) -> Option<Vec<String>> {
    let mut path = vec![start];
    loop {
        let last = *path.last()?;
        let next = deps_of(&nodes[last])
            .into_iter()
            .find(|d| stuck.contains(d))?;
        if let Some(pos) = path.iter().position(|&p| p == next) {
            let mut cycle: Vec<String> =
                path[pos..].iter().map(|&i| nodes[i].name.clone()).collect();
            cycle.push(nodes[next].name.clone());
            return Some(cycle);
        }
        path.push(next);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(name: &str, deps: &[&str], optional: &[&str]) -> Node {
        Node {
            name: name.into(),
            dependencies: deps.iter().map(|s| s.to_string()).collect(),
            optional_dependencies: optional.iter().map(|s| s.to_string()).collect(),
        }
    }

    fn names(nodes: &[Node], o: &Order) -> Vec<String> {
        o.order.iter().map(|&i| nodes[i].name.clone()).collect()
    }

    #[test]
    fn diamond() {
        let nodes = [
            n("top", &["l", "r"], &[]),
            n("l", &["base"], &[]),
            n("r", &["base"], &[]),
            n("base", &[], &[]),
        ];
        let o = sort(&nodes);
        assert_eq!(names(&nodes, &o), ["base", "l", "r", "top"]);
        assert!(o.left_out.is_empty());
    }

    #[test]
    fn optional_missing_and_present() {
        let nodes = [n("a", &[], &["ghost", "b"]), n("b", &[], &[])];
        let o = sort(&nodes);
        assert_eq!(names(&nodes, &o), ["b", "a"]);
    }

    #[test]
    fn cycle_names_the_chain() {
        let nodes = [
            n("a", &["b"], &[]),
            n("b", &["c"], &[]),
            n("c", &["a"], &[]),
            n("d", &["a"], &[]),
            n("e", &[], &[]),
        ];
        let o = sort(&nodes);
        assert_eq!(names(&nodes, &o), ["e"]);
        assert_eq!(o.left_out["a"], "dependency cycle: a → b → c → a");
        assert!(
            o.left_out["d"].contains("depends on a dependency cycle"),
            "{}",
            o.left_out["d"]
        );
    }

    #[test]
    fn missing_required_propagates() {
        let nodes = [
            n("a", &["ghost"], &[]),
            n("b", &["a"], &[]),
            n("c", &[], &[]),
        ];
        let o = sort(&nodes);
        assert_eq!(names(&nodes, &o), ["c"]);
        assert!(o.left_out["a"].contains("`ghost`"));
        assert!(o.left_out["b"].contains("`a`, which was left out"));
    }
}
