//! The shape pass: walks the tree against the declarative tables in `job/shape.rs` and
//! reports unknown keys (with did-you-mean), missing keys and values of the wrong type.
//!
//! It owns only what a table can say. It builds nothing and never looks across the tree:
//! whether a name refers to something defined, whether numbers are in range, and whether
//! two keys may be set together are left to the meaning passes (`settings`, `targets`,
//! `steps`, `needs`, `refs`). The tables themselves stay in `job/shape.rs`, which also
//! turns them into the JSON Schema, so the two cannot drift.

use crate::job::closest;
use crate::job::node::{Kind, Node, Span};
use crate::job::shape::{Field, Shape, Ty};

use super::values::{parse_amount, parse_duration, parse_rate};
use super::{Cx, is_template, join};

/// Checks a map against its shape: every key known and well typed, every required key set.
pub(super) fn check_shape(cx: &mut Cx, node: &Node, s: &'static Shape, path: &str) {
    let parent = cx.parent_key.take();
    let Some(map) = node.as_map() else {
        let what = if path.is_empty() {
            "the job file".to_string()
        } else {
            format!("`{path}`")
        };
        cx.error(
            node,
            path,
            format!("{what} must be a map, found {}", node.describe()),
            Some(s.doc.to_string()),
        );
        return;
    };
    for (k, v) in map {
        let Some(name) = k.as_str() else {
            cx.error(
                k,
                path,
                format!("keys must be names, found {}", k.describe()),
                None,
            );
            continue;
        };
        match s.field(name) {
            Some(f) => {
                cx.parent_key = Some(k.span);
                check_ty(cx, v, &f.ty, &join(path, name));
            }
            None => unknown_key(cx, k, name, s, path),
        }
    }
    missing_keys(cx, node, map, parent, s, path);
}

fn unknown_key(cx: &mut Cx, k: &Node, name: &str, s: &Shape, path: &str) {
    let names = s.names();
    let help = match closest(name, &names) {
        Some(c) => format!("did you mean `{c}`?"),
        None => format!("valid keys in {}: {}", s.name, names.join(", ")),
    };
    cx.error(
        k,
        &join(path, name),
        format!("unknown key `{name}` in {}", s.name),
        Some(help),
    );
}

fn missing_keys(
    cx: &mut Cx,
    node: &Node,
    map: &[(Node, Node)],
    parent: Option<Span>,
    s: &Shape,
    path: &str,
) {
    for f in s.fields.iter().filter(|f| f.required) {
        if node.get(f.name).is_none() {
            let at = map.first().map(|(k, _)| k).unwrap_or(node);
            let at = &Node {
                span: parent.unwrap_or(at.span),
                kind: Kind::Null,
            };
            cx.error(
                at,
                &join(path, f.name),
                format!(
                    "{} is missing `{}`",
                    if path.is_empty() { "the job" } else { s.name },
                    f.name
                ),
                Some(field_help(f)),
            );
        }
    }
}

fn field_help(f: &Field) -> String {
    format!("`{}`: {}", f.name, f.doc)
}

fn check_ty(cx: &mut Cx, v: &Node, t: &Ty, path: &str) {
    match t {
        Ty::Any => {}
        Ty::StrList => check_str_list(cx, v, path),
        Ty::StrOrList => {
            if v.as_seq().is_some() {
                check_ty(cx, v, &Ty::StrList, path);
            } else {
                check_ty(cx, v, &Ty::Str, path);
            }
        }
        Ty::Enum(values) => check_enum(cx, v, values, path),
        Ty::Obj(s) => check_shape(cx, v, s, path),
        Ty::MapOf(inner) => match v.as_map() {
            Some(pairs) => {
                for (k, item) in pairs {
                    cx.parent_key = Some(k.span);
                    let key = k.scalar_text().unwrap_or_default();
                    check_ty(cx, item, inner, &join(path, &key));
                }
            }
            None if matches!(v.kind, Kind::Null) => {}
            None => wrong_type(cx, v, path, "a map", None),
        },
        Ty::ListOf(inner) => match v.as_seq() {
            Some(items) => {
                for (i, it) in items.iter().enumerate() {
                    // A list item has no key of its own; its map's first key is the anchor.
                    cx.parent_key = None;
                    check_ty(cx, it, inner, &format!("{path}[{i}]"));
                }
            }
            None => wrong_type(cx, v, path, "a list", None),
        },
        scalar => {
            if let Some((expected, help)) = scalar_mismatch(v, scalar) {
                wrong_type(cx, v, path, expected, help);
            }
        }
    }
}

/// What a scalar type expects and how to write it, if `v` is not one.
fn scalar_mismatch(v: &Node, t: &Ty) -> Option<(&'static str, Option<String>)> {
    let text_like = matches!(v.kind, Kind::Str(_) | Kind::Int(_) | Kind::Float(_));
    // Numbers may be templates: `${{ vars.threshold }}` is checked by `refs`.
    let (ok, expected, help) = match t {
        Ty::Str => (text_like, "a string", None),
        Ty::Int => (
            matches!(v.kind, Kind::Int(_)) || is_template(v),
            "a whole number",
            None,
        ),
        Ty::Num => (
            matches!(v.kind, Kind::Int(_) | Kind::Float(_)) || is_template(v),
            "a number",
            None,
        ),
        Ty::Bool => (matches!(v.kind, Kind::Bool(_)), "true or false", None),
        Ty::Duration => (
            parse_duration(v).is_some(),
            "a duration",
            Some("write e.g. `500ms`, `30s`, `50m` or `1h 30m` (at most 30 days)"),
        ),
        Ty::Rate => (
            parse_rate(v).is_some(),
            "a rate",
            Some(
                "write requests per unit time between 0.01/s and 10000/s, e.g. `20/s`, `600/m`, or a number per second",
            ),
        ),
        Ty::Amount => (
            parse_amount(v).is_some(),
            "a count or a percentage",
            Some("e.g. `1`, `10%`, `100%`"),
        ),
        _ => (true, "", None),
    };
    (!ok).then(|| (expected, help.map(String::from)))
}

fn check_str_list(cx: &mut Cx, v: &Node, path: &str) {
    match v.as_seq() {
        Some(items) => {
            for (i, it) in items.iter().enumerate() {
                if !matches!(it.kind, Kind::Str(_) | Kind::Int(_) | Kind::Float(_)) {
                    check_ty(cx, it, &Ty::Str, &format!("{path}[{i}]"));
                }
            }
        }
        None => wrong_type(
            cx,
            v,
            path,
            "a list of strings",
            Some(format!(
                "e.g. `{}: [a, b]`",
                path.rsplit('.').next().unwrap_or(path)
            )),
        ),
    }
}

fn check_enum(cx: &mut Cx, v: &Node, values: &[&str], path: &str) {
    match v.as_str() {
        Some(s) if values.contains(&s) => {}
        Some(s) => {
            let help = match closest(s, values) {
                Some(c) => format!("did you mean `{c}`?"),
                None => format!("one of: {}", values.join(", ")),
            };
            cx.error(
                v,
                path,
                format!(
                    "`{s}` is not a valid {}",
                    path.rsplit('.').next().unwrap_or(path)
                ),
                Some(help),
            );
        }
        None => wrong_type(cx, v, path, &format!("one of {}", values.join(", ")), None),
    }
}

fn wrong_type(cx: &mut Cx, v: &Node, path: &str, expected: &str, help: Option<String>) {
    let shown = v
        .scalar_text()
        .map(|s| format!("`{s}`"))
        .unwrap_or_else(|| v.describe().to_string());
    cx.error(
        v,
        path,
        format!("`{path}` must be {expected}, found {shown}"),
        help,
    );
}
