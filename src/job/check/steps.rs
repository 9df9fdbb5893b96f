//! The `steps:` pass: step ids, the facts every step shows to the others ([`StepInfo`]),
//! and each step's frame around its operation: which operation it has, `for_each`,
//! `rollout`, and the [`Step`] that results.
//!
//! The operation's own keys become a [`StepOp`] in `ops`; `needs` entries and cycles are
//! checked by `needs`, and the `${{ … }}` references inside the operation by `refs`. This
//! file decides the order: first the facts about every step, so references may point
//! forward or backward in the file, then each step in file order.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::job::model::*;
use crate::job::node::{Kind, Node};
use crate::job::shape;

use super::needs::{self, Reach};
use super::refs::{self, RefCx};
use super::targets::{self, Targets, target_kind};
use super::values::parse_amount;
use super::{Cx, help_names, is_template, ops, strs, text};

/// What a step looks like to steps after it.
pub(super) struct StepInfo<'n> {
    /// The `id` value, where step-wide errors such as a cycle point.
    pub node: &'n Node,
    pub kind: &'static str,
    pub outputs: &'static [&'static str],
    pub fans_out: bool,
    pub needs: Vec<String>,
}

/// Every step with a valid, unique id, by id.
pub(super) type StepTable<'n> = BTreeMap<String, StepInfo<'n>>;

/// Operations that run one task per group or per chunk of devices of their `to:`.
const FAN_OUT_OPS: &[&str] = &["app_install", "app_uninstall", "command", "group_move"];

/// What every step is checked against.
struct Scope<'a, 'n> {
    targets: &'a Targets<'n>,
    vars: &'a BTreeMap<String, Value>,
    info: &'a StepTable<'n>,
    ids: &'a [String],
}

pub(super) fn steps(
    cx: &mut Cx,
    node: Option<&Node>,
    targets: &Targets,
    vars: &BTreeMap<String, Value>,
) -> Vec<Step> {
    let Some(items) = node.and_then(Node::as_seq) else {
        return Vec::new();
    };
    if items.is_empty()
        && let Some(n) = node
    {
        cx.error(
            n,
            "steps",
            "the job has no steps",
            Some("add at least one, e.g. `- id: install` with `app_install:`".into()),
        );
    }
    let mut info = StepTable::new();
    for (i, s) in items.iter().enumerate() {
        if let Some((id, facts)) = step_info(cx, i, s, &info) {
            info.insert(id, facts);
        }
    }
    let ids: Vec<String> = info.keys().cloned().collect();
    let cyclic = needs::check_cycles(cx, &info);
    let mut reach = Reach::new(&info, !cyclic);
    let scope = Scope {
        targets,
        vars,
        info: &info,
        ids: &ids,
    };
    items
        .iter()
        .enumerate()
        .filter_map(|(i, s)| step(cx, i, s, &scope, &mut reach))
        .collect()
}

/// The facts about one step, unless its id is missing, malformed or already taken.
fn step_info<'n>(
    cx: &mut Cx,
    i: usize,
    s: &'n Node,
    info: &StepTable,
) -> Option<(String, StepInfo<'n>)> {
    let id_node = s.get("id")?;
    let id = id_node.scalar_text()?;
    if id.is_empty()
        || !id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        cx.error(
            id_node,
            &format!("steps[{i}].id"),
            format!("`{id}` is not a step id"),
            Some("use letters, digits, `-` and `_`".into()),
        );
        return None;
    }
    if info.contains_key(&id) {
        cx.error(
            id_node,
            &format!("steps[{i}].id"),
            format!("step id `{id}` is used twice"),
            Some("give every step a unique id".into()),
        );
        return None;
    }
    let kind = shape::OPERATIONS
        .iter()
        .copied()
        .find(|op| s.get(op).is_some())
        .unwrap_or("");
    let facts = StepInfo {
        node: id_node,
        kind,
        outputs: output_names(kind),
        fans_out: s.get("for_each").is_some() || FAN_OUT_OPS.contains(&kind),
        needs: strs(s.get("needs")),
    };
    Some((id, facts))
}

fn output_names(kind: &str) -> &'static [&'static str] {
    match kind {
        "app_upload" => &["version_id", "application_id", "package", "version_code"],
        "content_upload" => &["content_id"],
        "alarm_rule" => &["rule_id"],
        "request" => &["status", "body"],
        "export" => &["file", "rows", "pages"],
        _ => &[],
    }
}

fn step(cx: &mut Cx, i: usize, s: &Node, scope: &Scope, reach: &mut Reach) -> Option<Step> {
    let at = format!("steps[{i}]");
    s.as_map()?;
    // A missing or bad id is reported elsewhere; the rest of the step is still checked,
    // named by its position, so that one error does not hide the others.
    let id = text(s, "id");
    let name = id.clone().unwrap_or_else(|| at.clone());
    if let Some(needs) = s.get("needs") {
        needs::check_step_needs(cx, needs, &name, &at, scope.info, scope.ids);
    }
    let ops = operations(cx, s, &name, &at);
    let kind = ops
        .first()
        .and_then(|(k, _)| k.as_str())
        .unwrap_or_default();
    let for_each = s
        .entry("for_each")
        .and_then(|(k, v)| Some((k, v, v.scalar_text()?)))
        .filter(|(_, v, _)| !is_template(v));
    let item_kind = for_each
        .as_ref()
        .and_then(|(k, v, t)| for_each_items(cx, (k, v), t, kind, &at, scope.targets));
    let rollout = s
        .get("rollout")
        .and_then(|r| rollout(cx, r, &format!("{at}.rollout")));
    let for_each = for_each.map(|f| f.2);
    let mut built = Vec::new();
    for (op_key, op) in &ops {
        let opath = format!("{at}.{}", op_key.as_str().unwrap_or_default());
        // Every string inside the operation: templates must resolve.
        let mut refs_cx = RefCx {
            step: &name,
            item_kind,
            vars: scope.vars,
            info: scope.info,
            reach,
            for_each: for_each.as_deref(),
        };
        refs::check_refs(cx, op, &opath, &mut refs_cx);
        built.push(ops::operation(cx, op_key, op, &opath, scope.targets));
    }
    let [Some(op)] = <[Option<StepOp>; 1]>::try_from(built).ok()? else {
        return None;
    };
    if rollout.is_some() {
        warn_nothing_to_stage(cx, s, &op, for_each.is_some(), &at);
    }
    let needs = strs(s.get("needs"));
    let needs_all = s
        .get("needs_all")
        .is_some_and(|n| n.kind == Kind::Bool(true));
    if needs_all && needs.is_empty() {
        warn_needs_all_alone(cx, s, &at);
    }
    Some(Step {
        id: id?,
        needs,
        needs_all,
        for_each,
        rollout,
        op,
    })
}

/// The step's operations as keys and values, in file order; anything but exactly one is
/// reported (each of several is still checked, for its own problems).
fn operations<'n>(cx: &mut Cx, s: &'n Node, id: &str, at: &str) -> Vec<(&'n Node, &'n Node)> {
    let ops: Vec<(&Node, &Node)> = s
        .as_map()
        .unwrap_or_default()
        .iter()
        .filter(|(k, _)| k.as_str().is_some_and(|k| shape::OPERATIONS.contains(&k)))
        .map(|(k, v)| (k, v))
        .collect();
    match ops.as_slice() {
        [_] => {}
        [] => cx.error(
            s.get("id").unwrap_or(s),
            at,
            format!("step `{id}` has no operation"),
            Some(format!("add one of: {}", shape::OPERATIONS.join(", "))),
        ),
        // In file order, so "two operations" points at the second one written.
        [_, second, ..] => cx.error(
            second.0,
            at,
            format!("step `{id}` has {} operations", ops.len()),
            Some("one operation per step; split it into steps joined by `needs`".into()),
        ),
    }
    ops
}

/// The kind of item `for_each` yields (`"unknown"` for a target that does not exist),
/// or `None` where the step does not run per item.
fn for_each_items(
    cx: &mut Cx,
    (key, value): (&Node, &Node),
    target: &str,
    kind: &str,
    at: &str,
    targets: &Targets,
) -> Option<&'static str> {
    if FAN_OUT_OPS.contains(&kind) || ["app_upload", "content_upload", "export"].contains(&kind) {
        let help = if kind == "export" {
            "an export reads its `target:` in one streamed listing"
        } else if FAN_OUT_OPS.contains(&kind) {
            "these fan out over `to:` (one request per group, devices in chunks)"
        } else {
            "it runs once"
        };
        cx.error(
            key,
            &format!("{at}.for_each"),
            format!("`for_each` does not apply to {kind}"),
            Some(help.into()),
        );
        return None;
    }
    match target_kind(targets, target) {
        Some(k) => Some(k),
        None => {
            cx.error(
                value,
                &format!("{at}.for_each"),
                format!("unknown target `{target}`"),
                help_names(target, &targets::names(targets)),
            );
            // The step does fan out; its `item.*` fields cannot be checked against a
            // target that does not exist, and saying "no for_each" would be wrong.
            Some("unknown")
        }
    }
}

fn rollout(cx: &mut Cx, r: &Node, path: &str) -> Option<Rollout> {
    let stages_node = r.get("stages")?;
    let items = stages_node.as_seq()?;
    // A stage that is not an amount is the shape pass's error already; the others are
    // still checked, so every bad stage is reported at once.
    let parsed: Vec<Option<Amount>> = items.iter().map(parse_amount).collect();
    if items.is_empty() {
        cx.error(
            stages_node,
            &format!("{path}.stages"),
            "no stages",
            Some("e.g. `[1, 10%, 100%]`".into()),
        );
        return None;
    }
    for (j, (a, n)) in parsed.iter().zip(items).enumerate() {
        if matches!(a, Some(Amount::Count(0))) || matches!(a, Some(Amount::Percent(p)) if *p <= 0.0)
        {
            cx.error(
                n,
                &format!("{path}.stages[{j}]"),
                "a stage of zero tasks",
                Some("stages are cumulative sizes greater than zero".into()),
            );
        }
    }
    if let Some(Some(last)) = parsed.last()
        && *last != Amount::Percent(100.0)
    {
        cx.error(
            stages_node,
            &format!("{path}.stages"),
            "the last stage must be `100%`",
            Some("otherwise the remaining tasks never run; end with `100%`".into()),
        );
    }
    let stages: Vec<Amount> = parsed.into_iter().collect::<Option<_>>()?;
    let max_failures = r
        .get("max_failures")
        .and_then(parse_amount)
        .unwrap_or(Amount::Count(0));
    Some(Rollout {
        stages,
        max_failures,
    })
}

/// A warning, not an error: the rollout is harmless, but the author expected stages.
fn warn_nothing_to_stage(cx: &mut Cx, s: &Node, op: &StepOp, for_each: bool, at: &str) {
    let single = matches!(
        op,
        StepOp::AppUpload { .. } | StepOp::ContentUpload { .. } | StepOp::Export(_)
    ) || (!for_each
        && matches!(op, StepOp::AlarmRule { .. } | StepOp::Request { .. }));
    if single && let Some((key, _)) = s.entry("rollout") {
        cx.warn(
            key,
            &format!("{at}.rollout"),
            "this step runs a single task; `rollout` has nothing to stage",
            None,
        );
    }
}

/// A warning, not an error: `needs_all` is harmless alone, but the author expected needs.
fn warn_needs_all_alone(cx: &mut Cx, s: &Node, at: &str) {
    if let Some((key, _)) = s.entry("needs_all") {
        cx.warn(
            key,
            &format!("{at}.needs_all"),
            "this step needs no step; `needs_all` has nothing to wait for",
            None,
        );
    }
}
