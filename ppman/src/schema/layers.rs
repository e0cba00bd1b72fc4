//! The order in which a package's layers are stacked. Writer and reader must agree on it: the
//! builder builds a package on exactly the stack the runtime later runs on.
//!
//! The order is a depth-first post-order over dependencies (each package's dependencies visited by
//! name), reversed: the package itself is top-most, and every package lies above all of its own
//! dependencies, so the base system is always at the bottom.

use std::collections::BTreeSet;

/// A dependency cycle, as the chain of ids that closes it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("dependency cycle: {}", .0.join(" -> "))]
pub struct CycleError(pub Vec<String>);

/// Orders `root` and its dependency closure top-most first. `deps` gives a node's direct
/// dependencies (already resolved to node ids); they are visited in sorted order.
pub fn layer_order<F>(root: &str, mut deps: F) -> Result<Vec<String>, CycleError>
where
    F: FnMut(&str) -> Vec<String>,
{
    let mut done = BTreeSet::new();
    let mut post = Vec::new();
    let mut stack = Vec::new();
    visit(root, &mut deps, &mut done, &mut stack, &mut post)?;
    post.reverse();
    Ok(post)
}

fn visit<F>(
    node: &str,
    deps: &mut F,
    done: &mut BTreeSet<String>,
    stack: &mut Vec<String>,
    post: &mut Vec<String>,
) -> Result<(), CycleError>
where
    F: FnMut(&str) -> Vec<String>,
{
    if done.contains(node) {
        return Ok(());
    }
    if let Some(pos) = stack.iter().position(|n| n == node) {
        let mut cycle = stack[pos..].to_vec();
        cycle.push(node.to_owned());
        return Err(CycleError(cycle));
    }
    stack.push(node.to_owned());
    let mut children = deps(node);
    children.sort();
    for child in children {
        visit(&child, deps, done, stack, post)?;
    }
    stack.pop();
    done.insert(node.to_owned());
    post.push(node.to_owned());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn graph(node: &str) -> Vec<String> {
        let d: &[&str] = match node {
            "ts" => &["node", "base"],
            "node" => &["base"],
            "rust" => &["gcc"],
            "gcc" => &["base"],
            "a" => &["b"],
            "b" => &["a"],
            _ => &[],
        };
        d.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn package_on_top_base_at_bottom() {
        assert_eq!(layer_order("ts", graph).unwrap(), ["ts", "node", "base"]);
        assert_eq!(layer_order("rust", graph).unwrap(), ["rust", "gcc", "base"]);
        assert_eq!(layer_order("base", graph).unwrap(), ["base"]);
    }

    #[test]
    fn cycle_is_named() {
        let err = layer_order("a", graph).unwrap_err();
        assert_eq!(err.to_string(), "dependency cycle: a -> b -> a");
    }
}
