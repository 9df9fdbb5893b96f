//! Templates rendered when the job loads: `${{ vars.* }}` in the keys the table marks
//! [`Tpl::Load`], whose values the checker or the planner must read itself (a schedule's
//! days and times are checked here; an app version is looked up by package and code at
//! plan time, before any task exists).
//!
//! Runs before every other pass and replaces each such template with its value, keeping
//! the node's position, so the later passes check the value the job will really use.
//! Only `vars` can be read this early: a reference to anything else, a var that does not
//! exist or a malformed template is reported here and marked, so the shape and reference
//! passes skip the node. Templates in other keys are left for the planner (`Tpl::Task`) or
//! refused by the shape pass (`Tpl::No`).

use std::collections::BTreeMap;

use serde_json::Value;

use crate::job::node::{Kind, Node, Span};
use crate::job::shape::{self, Shape, Tpl, Ty};
use crate::job::template;

use super::refs::vars_ref;
use super::{Cx, is_template, join};

/// Renders every load-time template in the tree.
pub(super) fn render_at_load(cx: &mut Cx, root: &mut Node) {
    let vars: BTreeMap<String, Value> = root
        .get("vars")
        .and_then(Node::as_map)
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| Some((k.scalar_text()?, v.to_json())))
                .collect()
        })
        .unwrap_or_default();
    walk_map(cx, root, &shape::JOB, "", &vars);
}

fn walk_map(cx: &mut Cx, n: &mut Node, s: &Shape, path: &str, vars: &BTreeMap<String, Value>) {
    let Kind::Map(pairs) = &mut n.kind else {
        return;
    };
    for (k, v) in pairs.iter_mut() {
        let Some(f) = k.as_str().and_then(|name| s.field(name)) else {
            continue;
        };
        walk(cx, v, &f.ty, f.tpl, &join(path, f.name), vars);
    }
}

fn walk(cx: &mut Cx, v: &mut Node, t: &Ty, tpl: Tpl, path: &str, vars: &BTreeMap<String, Value>) {
    if tpl == Tpl::Load && is_template(v) {
        render(cx, v, path, vars);
        return;
    }
    match (t, &mut v.kind) {
        (Ty::Obj(s), _) => walk_map(cx, v, s, path, vars),
        (Ty::ListOf(inner), Kind::Seq(items)) => {
            for (i, it) in items.iter_mut().enumerate() {
                walk(cx, it, inner, tpl, &format!("{path}[{i}]"), vars);
            }
        }
        (Ty::StrList | Ty::StrOrList, Kind::Seq(items)) => {
            for (i, it) in items.iter_mut().enumerate() {
                walk(cx, it, &Ty::Str, tpl, &format!("{path}[{i}]"), vars);
            }
        }
        (Ty::MapOf(inner), Kind::Map(pairs)) => {
            for (k, it) in pairs.iter_mut() {
                let at = join(path, &k.scalar_text().unwrap_or_default());
                walk(cx, it, inner, tpl, &at, vars);
            }
        }
        _ => {}
    }
}

/// Replaces one templated string with its value, or reports why it cannot be rendered.
fn render(cx: &mut Cx, v: &mut Node, path: &str, vars: &BTreeMap<String, Value>) {
    let text = v.as_str().unwrap_or_default().to_string();
    let problem = match template::refs(&text) {
        Err(e) => Some((e.to_string(), None)),
        Ok(refs) => refs.iter().find_map(|parts| {
            let shown = parts.join(".");
            if parts[0] != "vars" {
                return Some((
                    format!("`{shown}` cannot be used in `{path}`, which is read when the job loads"),
                    Some("only `${{ vars.<name> }}` is known that early; write the value itself or put it in `vars`".into()),
                ));
            }
            vars_ref(parts, &shown, parts.get(1).map_or("", String::as_str), vars)
        }),
    };
    if let Some((message, help)) = problem {
        cx.error(v, path, message, help);
        cx.mark_reported(v);
        return;
    }
    let lookup = |r: &[String]| template::lookup_path(vars.get(r.get(1)?)?, &r[2..]).cloned();
    match template::render_str(&text, &lookup) {
        Ok(value) => *v = from_json(&value, v.span),
        Err(e) => {
            // A var that exists but holds nothing (null) cannot be spliced into text.
            cx.error(
                v,
                path,
                e.to_string(),
                Some("give the var a value under `vars:`".into()),
            );
            cx.mark_reported(v);
        }
    }
}

/// A rendered value as a node at the template's position.
fn from_json(v: &Value, span: Span) -> Node {
    let kind = match v {
        Value::Null => Kind::Null,
        Value::Bool(b) => Kind::Bool(*b),
        Value::Number(n) => match n.as_i64() {
            Some(i) => Kind::Int(i),
            None => Kind::Float(n.as_f64().unwrap_or_default()),
        },
        Value::String(s) => Kind::Str(s.clone()),
        Value::Array(items) => Kind::Seq(items.iter().map(|i| from_json(i, span)).collect()),
        Value::Object(m) => Kind::Map(
            m.iter()
                .map(|(k, i)| {
                    (
                        Node {
                            span,
                            kind: Kind::Str(k.clone()),
                        },
                        from_json(i, span),
                    )
                })
                .collect(),
        ),
    };
    Node { span, kind }
}
