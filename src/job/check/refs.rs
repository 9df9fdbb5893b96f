//! The `${{ … }}` references inside an operation: each must name something that exists
//! when the task runs.
//!
//! Owns the four roots and what each may reach: `item.*` (fields of a group or device
//! item, and only under `for_each`), `vars.*`, `target.name`/`target.count`, and
//! `steps.<id>.<output>` (a step that exists, is not this one, is needed first, runs a
//! single task and has that output). Parsing the template syntax is `template`'s; whether
//! a step transitively needs another is answered by `needs`; rendering happens in the
//! planner.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::job::closest;
use crate::job::node::{Kind, Node};
use crate::job::template;

use super::needs::Reach;
use super::steps::StepTable;
use super::{Cx, help_names, join};

/// What the references of one step can see.
pub(super) struct RefCx<'a, 'r> {
    pub step: &'a str,
    /// `groups` or `devices` under `for_each`, `unknown` for a target that does not
    /// exist (already reported), `None` without `for_each`.
    pub item_kind: Option<&'static str>,
    pub vars: &'a BTreeMap<String, Value>,
    pub info: &'a StepTable<'a>,
    pub reach: &'a mut Reach<'r>,
    pub for_each: Option<&'a str>,
}

pub(super) type Problem = (String, Option<String>);

const GROUP_ITEM: &[&str] = &["id", "name", "path"];
const DEVICE_ITEM: &[&str] = &["id", "name", "serial"];

/// Checks every string in a subtree.
pub(super) fn check_refs(cx: &mut Cx, n: &Node, path: &str, r: &mut RefCx) {
    if cx.was_reported(n) {
        return;
    }
    match &n.kind {
        Kind::Str(s) if s.contains("${{") => {
            let refs = match template::refs(s) {
                Ok(refs) => refs,
                Err(e) => {
                    cx.error(n, path, e.to_string(), None);
                    return;
                }
            };
            for parts in refs {
                if let Some((msg, help)) = bad_ref(&parts, r) {
                    cx.error(n, path, msg, help);
                }
            }
        }
        Kind::Seq(items) => {
            for (i, it) in items.iter().enumerate() {
                check_refs(cx, it, &format!("{path}[{i}]"), r);
            }
        }
        Kind::Map(pairs) => {
            for (k, v) in pairs {
                check_refs(cx, v, &join(path, &k.scalar_text().unwrap_or_default()), r);
            }
        }
        _ => {}
    }
}

/// What is wrong with one reference, split at its dots, if anything.
fn bad_ref(parts: &[String], r: &mut RefCx) -> Option<Problem> {
    let shown = parts.join(".");
    let field = parts.get(1).map(String::as_str).unwrap_or("");
    match parts[0].as_str() {
        "item" => item_ref(parts, &shown, field, r),
        "vars" => vars_ref(parts, &shown, field, r.vars),
        "target" => target_ref(parts, &shown, field, r),
        "steps" => steps_ref(parts, &shown, field, r),
        other => Some((
            format!("unknown template root `{other}` in `{shown}`"),
            Some("templates start with `item.`, `vars.`, `steps.` or `target.`".into()),
        )),
    }
}

fn item_ref(parts: &[String], shown: &str, field: &str, r: &RefCx) -> Option<Problem> {
    let kind = match r.item_kind {
        None => {
            return Some((
                format!("`{shown}` is used but step `{}` has no `for_each`", r.step),
                Some("add `for_each: <target>` to run the step once per group or device".into()),
            ));
        }
        Some("unknown") => return None,
        Some(kind) => kind,
    };
    let fields = if kind == "groups" {
        GROUP_ITEM
    } else {
        DEVICE_ITEM
    };
    // `groups` -> `group`, `devices` -> `device`.
    let item = &kind[..kind.len() - 1];
    (parts.len() != 2 || !fields.contains(&field)).then(|| {
        let help = closest(field, fields)
            .map(|c| format!("did you mean `item.{c}`?"))
            .unwrap_or_else(|| format!("a {item} item has: {}", fields.join(", ")));
        (
            format!("`{shown}` is not a field of a {item} item"),
            Some(help),
        )
    })
}

/// What is wrong with a `vars.…` reference. `vars` are known when the job loads, so a
/// path into a var (`vars.lock.state`) is checked too.
pub(super) fn vars_ref(
    parts: &[String],
    shown: &str,
    field: &str,
    vars: &BTreeMap<String, Value>,
) -> Option<Problem> {
    let Some(value) = vars.get(field).filter(|_| parts.len() >= 2) else {
        let names: Vec<String> = vars.keys().cloned().collect();
        return Some((
            format!("`{shown}` is not defined"),
            help_names(field, &names).map(|h| {
                if names.is_empty() {
                    "define it under `vars:`".into()
                } else {
                    h
                }
            }),
        ));
    };
    let rest = &parts[2..];
    if template::lookup_path(value, rest).is_some() {
        return None;
    }
    // The deepest part of the path that exists, to say what is there instead.
    let (mut at, mut depth) = (value, 0);
    while let Some(v) = template::lookup_path(at, &rest[depth..depth + 1]) {
        at = v;
        depth += 1;
    }
    let have = format!("vars.{}", parts[1..2 + depth].join("."));
    let missing = rest[depth].as_str();
    let help = match at {
        Value::Object(m) => {
            let keys: Vec<&str> = m.keys().map(String::as_str).collect();
            match closest(missing, &keys) {
                Some(k) => format!("did you mean `{have}.{k}`?"),
                None => format!("`{have}` has: {}", keys.join(", ")),
            }
        }
        Value::Array(items) => format!(
            "`{have}` is a list of {}; index it from 0, e.g. `{have}.0`",
            items.len()
        ),
        _ => format!("`{have}` is a single value, with nothing inside it"),
    };
    Some((format!("`{shown}` is not defined"), Some(help)))
}

fn target_ref(parts: &[String], shown: &str, field: &str, r: &RefCx) -> Option<Problem> {
    if r.for_each.is_none() {
        return Some((
            format!("`{shown}` is used but step `{}` has no `for_each`", r.step),
            Some("`target.name` and `target.count` describe the `for_each` target".into()),
        ));
    }
    (parts.len() != 2 || !["name", "count"].contains(&field)).then(|| {
        (
            format!("`{shown}` is not a field of the target"),
            Some("use `target.name` or `target.count`".into()),
        )
    })
}

fn steps_ref(parts: &[String], shown: &str, field: &str, r: &mut RefCx) -> Option<Problem> {
    let Some(other) = r.info.get(field) else {
        let ids: Vec<String> = r.info.keys().cloned().collect();
        return Some((
            format!("`{shown}` refers to unknown step `{field}`"),
            help_names(field, &ids),
        ));
    };
    if field == r.step {
        return Some((
            format!("`{shown}`: a step cannot read its own outputs"),
            None,
        ));
    }
    // A step without a usable id (already reported) has no known `needs` to check.
    if r.info.contains_key(r.step) && !r.reach.needs(r.step, field) {
        return Some((
            format!(
                "`{shown}` reads step `{field}`, which step `{}` does not need",
                r.step
            ),
            Some(format!("add `{field}` to `needs` so it runs first")),
        ));
    }
    let out = parts.get(2).map(String::as_str).unwrap_or("");
    if other.fans_out {
        return Some((format!("`{shown}`: step `{field}` runs many tasks, so it has no single output"), Some("read outputs of single-task steps (app_upload, content_upload, request or alarm_rule without for_each)".into())));
    }
    if !other.outputs.contains(&out) || (out != "body" && parts.len() > 3) {
        let help = match closest(out, other.outputs) {
            Some(c) => format!("did you mean `steps.{field}.{c}`?"),
            None if other.outputs.is_empty() => {
                format!("{} steps have no outputs", other.kind)
            }
            None => format!("{} outputs: {}", other.kind, other.outputs.join(", ")),
        };
        return Some((
            format!("`{shown}` is not an output of step `{field}`"),
            Some(help),
        ));
    }
    None
}
