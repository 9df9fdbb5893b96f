//! The shape pass: walks the tree against the declarative tables in `job/shape.rs` and
//! reports unknown keys (with did-you-mean), missing keys, values of the wrong type, and
//! `${{ … }}` templates in keys the table does not mark as taking them.
//!
//! It owns only what a table can say. It builds nothing and never looks across the tree:
//! whether a name refers to something defined, whether numbers are in range, and whether
//! two keys may be set together are left to the meaning passes (`settings`, `targets`,
//! `steps`, `needs`, `refs`). The tables themselves stay in `job/shape.rs`, which also
//! turns them into the JSON Schema, so the two cannot drift.

use crate::job::closest;
use crate::job::node::{Kind, Node, Span};
use crate::job::shape::{DAYS, Field, Shape, TIME_TYPES, Tpl, Ty};

use super::values::{
    DurationError, parse_amount, parse_date_time, parse_duration, parse_duration_str, parse_rate,
    parse_time_of_day, suggest_time_of_day,
};
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
                check_ty(cx, v, &f.ty, f.tpl, &join(path, name));
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

fn check_ty(cx: &mut Cx, v: &Node, t: &Ty, tpl: Tpl, path: &str) {
    // A template the load-time pass could not render was reported there already.
    if cx.was_reported(v) {
        return;
    }
    if tpl == Tpl::No && is_template(v) && !matches!(t, Ty::Any) {
        literal_only(cx, v, path);
        return;
    }
    match t {
        Ty::Any if tpl == Tpl::No => templates_in_any(cx, v, path),
        Ty::Any => {}
        Ty::StrList => check_str_list(cx, v, tpl, path),
        Ty::StrOrList => {
            if v.as_seq().is_some() {
                check_ty(cx, v, &Ty::StrList, tpl, path);
            } else {
                check_ty(cx, v, &Ty::Str, tpl, path);
            }
        }
        Ty::Enum(values) => check_enum(cx, v, values, path),
        Ty::Obj(s) => check_shape(cx, v, s, path),
        Ty::MapOf(inner) => match v.as_map() {
            Some(pairs) => {
                for (k, item) in pairs {
                    cx.parent_key = Some(k.span);
                    let key = k.scalar_text().unwrap_or_default();
                    check_ty(cx, item, inner, tpl, &join(path, &key));
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
                    check_ty(cx, it, inner, tpl, &format!("{path}[{i}]"));
                }
            }
            None => wrong_type(cx, v, path, "a list", None),
        },
        // Rendered into each task; its type is the rendered value's.
        _ if is_template(v) => {}
        scalar => {
            if let Some((expected, help)) = scalar_mismatch(v, scalar) {
                wrong_type(cx, v, path, &expected, help);
            }
        }
    }
}

/// A template where the table says the value is taken literally.
fn literal_only(cx: &mut Cx, v: &Node, path: &str) {
    cx.error(
        v,
        path,
        format!("`{path}` does not take `${{{{ … }}}}` templates"),
        Some(
            "it is used as written, before any task exists; write the value itself, or an environment variable as `${NAME}`"
                .into(),
        ),
    );
}

/// Every template inside a free-form value that is used as written (such as `vars`).
fn templates_in_any(cx: &mut Cx, v: &Node, path: &str) {
    match &v.kind {
        Kind::Str(_) if is_template(v) => literal_only(cx, v, path),
        Kind::Seq(items) => {
            for (i, it) in items.iter().enumerate() {
                templates_in_any(cx, it, &format!("{path}[{i}]"));
            }
        }
        Kind::Map(pairs) => {
            for (k, it) in pairs {
                templates_in_any(cx, it, &join(path, &k.scalar_text().unwrap_or_default()));
            }
        }
        _ => {}
    }
}

/// What a scalar type expects and how to write it, if `v` is not one.
fn scalar_mismatch(v: &Node, t: &Ty) -> Option<(String, Option<String>)> {
    let text_like = matches!(v.kind, Kind::Str(_) | Kind::Int(_) | Kind::Float(_));
    let text = v.as_str().unwrap_or_default();
    let (ok, expected, help): (bool, &str, Option<String>) = match t {
        Ty::Str => (text_like, "a string", None),
        Ty::Int => (matches!(v.kind, Kind::Int(_)), "a whole number", None),
        Ty::Num => (
            matches!(v.kind, Kind::Int(_) | Kind::Float(_)),
            "a number",
            None,
        ),
        Ty::Bool => (matches!(v.kind, Kind::Bool(_)), "true or false", None),
        Ty::Duration => {
            if matches!(v.kind, Kind::Str(_)) && parse_duration_str(text) == Err(DurationError::TooLong) {
                return Some((
                    "at most 30 days".into(),
                    Some("a job runs for 30 days at most; write a shorter duration".into()),
                ));
            }
            (parse_duration(v).is_some(), "a duration", Some(DURATION_HELP.into()))
        }
        Ty::Rate => (
            parse_rate(v).is_some(),
            "a rate",
            Some(
                "write requests per unit time between 0.01/s and 10000/s, e.g. `20/s`, `600/m`, or a number per second"
                    .into(),
            ),
        ),
        Ty::Amount => (
            parse_amount(v).is_some(),
            "a count or a percentage",
            Some(if text.trim_end().ends_with('%') {
                "percentages run from `0%` to `100%`, e.g. `10%`".into()
            } else {
                "a whole number of tasks or a percentage, e.g. `1`, `10%`, `100%`".into()
            }),
        ),
        Ty::Weekday => (
            DAYS.contains(&text),
            "a day of the week",
            Some(day_help(&v.scalar_text().unwrap_or_default())),
        ),
        Ty::TimeOfDay => (
            parse_time_of_day(text).is_some(),
            "a time of day",
            Some(time_help(&v.scalar_text().unwrap_or_default())),
        ),
        Ty::DateTime => (
            parse_date_time(text).is_some(),
            "a date-time",
            Some(date_time_help(text)),
        ),
        _ => (true, "", None),
    };
    (!ok).then(|| (expected.to_string(), help))
}

/// The duration grammar, as every duration's help says it.
const DURATION_HELP: &str = "write whole seconds (`90`) or numbers with units: `500ms`, `30s`, `10 minutes`, `1h 30m`; units are ms, s/sec/seconds, m/min/minutes, h/hr/hours, d/days; at most 30 days";

fn day_help(written: &str) -> String {
    let lower = written.to_ascii_lowercase();
    // `Tue`, `thurs`: an abbreviation of exactly one day.
    let by_prefix: Vec<&str> = DAYS
        .iter()
        .copied()
        .filter(|d| lower.len() >= 2 && d.to_ascii_lowercase().starts_with(&lower))
        .collect();
    let guess = match by_prefix.as_slice() {
        [one] => Some(*one),
        _ => closest(written, DAYS),
    };
    let forms = format!("days are written in full: {}", DAYS.join(", "));
    match guess {
        Some(d) => format!("did you mean `{d}`? {forms}"),
        None => forms,
    }
}

fn time_help(written: &str) -> String {
    let forms = "write `HH:MM` on a 24-hour clock, e.g. `02:00` or `14:30`";
    match suggest_time_of_day(written) {
        Some(t) => format!("did you mean `{t}`? {forms}"),
        None => forms.into(),
    }
}

fn date_time_help(written: &str) -> String {
    let forms = "write an RFC 3339 date-time with its offset, e.g. `2026-01-01T00:00:00Z` or `2026-01-01T02:00:00+01:00`";
    let date_only =
        written.len() == 10 && parse_date_time(&format!("{written}T00:00:00Z")).is_some();
    if date_only {
        format!("did you mean `{written}T00:00:00Z`? {forms}")
    } else {
        forms.into()
    }
}

fn check_str_list(cx: &mut Cx, v: &Node, tpl: Tpl, path: &str) {
    match v.as_seq() {
        Some(items) => {
            for (i, it) in items.iter().enumerate() {
                let at = format!("{path}[{i}]");
                if !matches!(it.kind, Kind::Str(_) | Kind::Int(_) | Kind::Float(_)) {
                    check_ty(cx, it, &Ty::Str, tpl, &at);
                } else if tpl == Tpl::No && is_template(it) && !cx.was_reported(it) {
                    literal_only(cx, it, &at);
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
                // Esper's two words for a time zone are not what people try first (`UTC`).
                None if values == TIME_TYPES => "one of: device (each device's own time zone), console (the time zone of the user who sends the command)".into(),
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
