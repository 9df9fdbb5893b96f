//! The `needs` graph between steps: entries that name no step or the step itself, cycles
//! (shown as `a -> b -> a`), and whether one step transitively needs another.
//!
//! Owns the graph only. The facts about each step (`StepInfo`) are gathered by `steps`,
//! and `refs` asks [`Reach`] whether a `${{ steps.x.… }}` reference reads a step that runs
//! first. Everything here is iterative and at most linear per question, because a job may
//! chain tens of thousands of steps: the recursive search this replaced overflowed a 2 MiB
//! thread at about 20,000.

use std::collections::{BTreeMap, BTreeSet};

use crate::job::node::Node;

use super::steps::StepTable;
use super::{Cx, help_names, strs};

/// Reports the `needs` entries of one step that name itself or no step at all.
pub(super) fn check_step_needs(
    cx: &mut Cx,
    needs: &Node,
    id: &str,
    at: &str,
    info: &StepTable,
    ids: &[String],
) {
    for (j, n) in strs(Some(needs)).iter().enumerate() {
        let node = needs.as_seq().and_then(|v| v.get(j)).unwrap_or(needs);
        if n.contains("${{") {
            // The shape pass refused the template; its text names no step.
            continue;
        }
        if n == id {
            cx.error(
                node,
                &format!("{at}.needs"),
                format!("step `{id}` needs itself"),
                Some(format!("cycle: {id} -> {id}")),
            );
        } else if !info.contains_key(n) {
            cx.error(
                node,
                &format!("{at}.needs"),
                format!("step `{id}` needs unknown step `{n}`"),
                help_names(n, ids),
            );
        }
    }
}

/// Reports the first cycle among the steps, if any, and says whether there was one.
pub(super) fn check_cycles(cx: &mut Cx, info: &StepTable) -> bool {
    let Some(cycle) = find_cycle(info) else {
        return false;
    };
    cx.error(
        info[cycle[0]].node,
        "steps",
        format!("steps need each other in a cycle: {}", cycle.join(" -> ")),
        Some("remove one of these `needs` entries".into()),
    );
    true
}

/// The edges the cycle search follows: a step needing itself is reported where its
/// `needs` entry is, and an unknown step is reported as unknown, so neither is a cycle.
fn edges<'a>(info: &'a StepTable, id: &str) -> impl Iterator<Item = &'a str> {
    info.get(id)
        .map(|s| s.needs.as_slice())
        .unwrap_or_default()
        .iter()
        .map(String::as_str)
        .filter(move |n| *n != id && info.contains_key(*n))
}

enum Mark {
    OnPath,
    Done,
}

/// Depth-first from each step in id order, following `needs` in the order written, so the
/// cycle reported is the one the recursive search reported: the path from the first step
/// seen twice back to itself, e.g. `[a, b, a]`.
fn find_cycle<'a>(info: &'a StepTable) -> Option<Vec<&'a str>> {
    let mut mark: BTreeMap<&str, Mark> = BTreeMap::new();
    for root in info.keys() {
        if mark.contains_key(root.as_str()) {
            continue;
        }
        mark.insert(root, Mark::OnPath);
        // The current path, each step with its remaining edges.
        let mut path = vec![(root.as_str(), edges(info, root))];
        while let Some((id, next)) = path.last_mut() {
            let Some(n) = next.next() else {
                mark.insert(*id, Mark::Done);
                path.pop();
                continue;
            };
            match mark.get(n) {
                Some(Mark::Done) => {}
                Some(Mark::OnPath) => {
                    let from = path.iter().position(|(s, _)| *s == n).unwrap_or(0);
                    let mut cycle: Vec<&str> = path[from..].iter().map(|(s, _)| *s).collect();
                    cycle.push(n);
                    return Some(cycle);
                }
                None => {
                    mark.insert(n, Mark::OnPath);
                    path.push((n, edges(info, n)));
                }
            }
        }
    }
    None
}

/// Answers "does step `id` transitively need step `other`?" for `steps.*` references.
///
/// A fresh search per question would be quadratic when many steps read one early step
/// through a long chain, so what each search learns is kept per `other`: every step whose
/// answer is settled, so later searches stop there. A "yes" always holds, since it was
/// found along a path of `needs`. A "no" is kept only when the graph has no cycle: with
/// one (already an error), a search skips steps already on its path, and a step settled
/// "no" below such a skip might still need `other` through it.
pub(super) struct Reach<'a> {
    info: &'a StepTable<'a>,
    acyclic: bool,
    settled: BTreeMap<&'a str, BTreeMap<&'a str, bool>>,
}

impl<'a> Reach<'a> {
    pub(super) fn new(info: &'a StepTable<'a>, acyclic: bool) -> Self {
        Reach {
            info,
            acyclic,
            settled: BTreeMap::new(),
        }
    }

    pub(super) fn needs(&mut self, id: &str, other: &str) -> bool {
        let (Some((id, _)), Some((other, _))) =
            (self.info.get_key_value(id), self.info.get_key_value(other))
        else {
            return false;
        };
        let info = self.info;
        let settled = self.settled.entry(other).or_default();
        if let Some(&known) = settled.get(id.as_str()) {
            return known;
        }
        let mut seen = BTreeSet::from([id.as_str()]);
        let mut path = vec![(id.as_str(), edges(info, id))];
        while let Some((n, next)) = path.last_mut() {
            let Some(m) = next.next() else {
                if self.acyclic {
                    settled.insert(*n, false);
                }
                path.pop();
                continue;
            };
            if m != other && settled.get(m) != Some(&true) {
                if !settled.contains_key(m) && seen.insert(m) {
                    path.push((m, edges(info, m)));
                }
                continue;
            }
            // Each step on the path needs the next one, so all of them need `other`.
            for (s, _) in path {
                settled.insert(s, true);
            }
            return true;
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::super::{EnvMode, check};
    use crate::job::Host;
    use crate::job::node::{Kind, Node, Pos, Span};

    const STEPS: usize = 30_000;

    fn at(line: usize) -> Span {
        let p = Pos { line, col: 1 };
        Span { start: p, end: p }
    }

    fn node(line: usize, kind: Kind) -> Node {
        Node {
            span: at(line),
            kind,
        }
    }

    fn text(line: usize, s: &str) -> Node {
        node(line, Kind::Str(s.into()))
    }

    fn map(line: usize, pairs: Vec<(&str, Node)>) -> Node {
        let pairs = pairs.into_iter().map(|(k, v)| (text(line, k), v)).collect();
        node(line, Kind::Map(pairs))
    }

    /// `s0`, then `s1` needing `s0` and so on, each a request reading `s0`'s status (the
    /// worst case for a search per reference); `s0` needs `first_needs` if given. Built as
    /// a tree, not YAML text: parsing 30,000 steps twice (yaml_serde, then saphyr) is what
    /// would make this test slow, and the parser has no per-step recursion to test.
    fn chain(first_needs: Option<&str>) -> Node {
        let steps = (0..STEPS)
            .map(|i| {
                let line = 10 + 3 * i;
                let mut step = vec![("id", text(line, &format!("s{i}")))];
                let needs = if i == 0 {
                    first_needs.map(str::to_string)
                } else {
                    Some(format!("s{}", i - 1))
                };
                if let Some(n) = needs {
                    step.push(("needs", node(line + 1, Kind::Seq(vec![text(line + 1, &n)]))));
                }
                let path = if i == 0 {
                    "/x"
                } else {
                    "/x/${{ steps.s0.status }}"
                };
                let request = map(
                    line + 2,
                    vec![
                        ("method", text(line + 2, "GET")),
                        ("path", text(line + 2, path)),
                    ],
                );
                step.push(("request", request));
                map(line, step)
            })
            .collect();
        map(
            1,
            vec![
                ("version", node(1, Kind::Int(1))),
                ("name", text(2, "chain")),
                ("steps", node(3, Kind::Seq(steps))),
            ],
        )
    }

    /// Runs `f` with a 2 MiB stack, the size of a thread std spawns by default.
    fn on_small_stack<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
        std::thread::Builder::new()
            .stack_size(2 << 20)
            .spawn(f)
            .unwrap()
            .join()
            .unwrap()
    }

    #[test]
    fn a_long_chain_validates_on_a_small_stack() {
        let steps = on_small_stack(|| {
            let env = |_: &str| None;
            let host = Host::env_only(&env);
            match check("chain.yaml", &chain(None), &host, EnvMode::Strict).result {
                Ok((job, _)) => job.steps.len(),
                Err(d) => panic!("{d}"),
            }
        });
        assert_eq!(steps, STEPS);
    }

    #[test]
    fn a_long_cycle_is_reported_as_its_chain() {
        let last = format!("s{}", STEPS - 1);
        let d = on_small_stack(move || {
            let env = |_: &str| None;
            let host = Host::env_only(&env);
            check("chain.yaml", &chain(Some(&last)), &host, EnvMode::Strict)
                .result
                .unwrap_err()
        });
        assert_eq!(
            d.0.len(),
            1,
            "{:?}",
            d.0.iter().map(|d| &d.message).take(3).collect::<Vec<_>>()
        );
        let m = &d.0[0].message;
        // Depth first from `s0` (the first id) through `s29999` down to `s1`, back to `s0`.
        let chain = m
            .strip_prefix("steps need each other in a cycle: ")
            .unwrap();
        assert!(
            chain.starts_with("s0 -> s29999 -> s29998 -> "),
            "{}",
            &m[..80]
        );
        assert!(chain.ends_with(" -> s2 -> s1 -> s0"));
        assert_eq!(chain.matches(" -> ").count(), STEPS);
        assert_eq!(d.0[0].line(), Some(10));
    }
}
