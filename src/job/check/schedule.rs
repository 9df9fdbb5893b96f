//! A command's `schedule:` beyond its shape: the keys that only make sense together and
//! in order, checked against Esper's `schedule` and `schedule_args` (API.md §7.1).
//!
//! Owns pairs (`window_start_time` with `window_end_time`), order (a schedule that ends
//! before it starts, an empty daily window; one that crosses midnight is a warning), what
//! each `type` needs or ignores, and `days` that are empty or repeated. The values' own
//! forms (`HH:MM`, RFC 3339, day names, `time_type`) are the shape pass's, so a value that
//! does not parse is skipped here rather than reported twice; `${{ vars.* }}` in these
//! keys were rendered when the job loaded (`load_templates`).

use std::collections::BTreeSet;

use crate::job::node::Node;

use super::Cx;
use super::values::{parse_date_time, parse_time_of_day};

/// The keys of `schedule_args` that shape when a scheduled command runs.
const WINDOW_KEYS: &[&str] = &[
    "start_datetime",
    "end_datetime",
    "time_type",
    "window_start_time",
    "window_end_time",
    "days",
];

pub(super) fn check_schedule(cx: &mut Cx, s: &Node, path: &str) {
    if s.as_map().is_none() {
        return;
    }
    let kind = s.get("type").and_then(Node::as_str).unwrap_or_default();
    let window = daily_window(cx, s, path);
    date_range(cx, s, path);
    days(cx, s, kind, path);
    let Some(type_node) = s.get("type") else {
        return;
    };
    match kind {
        // Half a window is reported as such by `daily_window`.
        "WINDOW" | "RECURRING" if window.is_none() => cx.error(
            type_node,
            &format!("{path}.type"),
            format!("a {kind} schedule needs a daily window"),
            Some(
                "add `window_start_time` and `window_end_time` (`HH:MM`), or use `type: IMMEDIATE`"
                    .into(),
            ),
        ),
        "IMMEDIATE" => {
            let ignored: Vec<String> = WINDOW_KEYS
                .iter()
                .filter(|k| s.get(k).is_some())
                .map(|k| format!("`{k}`"))
                .collect();
            if !ignored.is_empty() {
                cx.warn(
                    type_node,
                    &format!("{path}.type"),
                    format!(
                        "an IMMEDIATE schedule runs at once and ignores {}",
                        ignored.join(", ")
                    ),
                    Some("use `type: WINDOW` or `type: RECURRING` to run in the window, or remove these keys".into()),
                );
            }
        }
        _ => {}
    }
}

/// Checks `window_start_time` and `window_end_time` together: `None` when neither is
/// set, else whether both are.
fn daily_window(cx: &mut Cx, s: &Node, path: &str) -> Option<bool> {
    let help = "a daily window needs both, e.g. `window_start_time: \"02:00\"` and `window_end_time: \"04:00\"`";
    match (s.entry("window_start_time"), s.entry("window_end_time")) {
        (Some((k, _)), None) => {
            cx.error(
                k,
                &format!("{path}.window_start_time"),
                "`window_start_time` is set without `window_end_time`",
                Some(help.into()),
            );
            Some(false)
        }
        (None, Some((k, _))) => {
            cx.error(
                k,
                &format!("{path}.window_end_time"),
                "`window_end_time` is set without `window_start_time`",
                Some(help.into()),
            );
            Some(false)
        }
        (Some((_, a)), Some((_, b))) => {
            let (ta, tb) = (
                a.as_str().unwrap_or_default(),
                b.as_str().unwrap_or_default(),
            );
            let at = format!("{path}.window_end_time");
            match (parse_time_of_day(ta), parse_time_of_day(tb)) {
                (Some(x), Some(y)) if x == y => cx.error(
                    b,
                    &at,
                    format!("the daily window is empty: it opens and closes at {ta}"),
                    Some("make `window_end_time` later than `window_start_time`".into()),
                ),
                (Some(x), Some(y)) if y < x => cx.warn(
                    b,
                    &at,
                    format!("the daily window crosses midnight: {ta} to {tb} the next day"),
                    Some("if you meant a window within one day, swap `window_start_time` and `window_end_time`".into()),
                ),
                _ => {}
            }
            Some(true)
        }
        (None, None) => None,
    }
}

fn date_range(cx: &mut Cx, s: &Node, path: &str) {
    let (Some(a), Some(b)) = (s.get("start_datetime"), s.get("end_datetime")) else {
        return;
    };
    let (ta, tb) = (
        a.as_str().unwrap_or_default(),
        b.as_str().unwrap_or_default(),
    );
    if let (Some(start), Some(end)) = (parse_date_time(ta), parse_date_time(tb))
        && end <= start
    {
        cx.error(
            b,
            &format!("{path}.end_datetime"),
            format!("the schedule ends before it starts: `{tb}` is not after `{ta}`"),
            Some("swap `start_datetime` and `end_datetime`, or move `end_datetime` later".into()),
        );
    }
}

fn days(cx: &mut Cx, s: &Node, kind: &str, path: &str) {
    let Some(days) = s.get("days") else {
        return;
    };
    let Some(items) = days.as_seq() else {
        return;
    };
    if items.is_empty() && matches!(kind, "WINDOW" | "RECURRING") {
        cx.error(
            days,
            &format!("{path}.days"),
            "`days` is empty, so the window never opens",
            Some("list the days it opens, e.g. `[Monday, Thursday]`".into()),
        );
    }
    let mut seen = BTreeSet::new();
    for (i, d) in items.iter().enumerate() {
        if let Some(name) = d.as_str()
            && !seen.insert(name)
        {
            cx.warn(
                d,
                &format!("{path}.days[{i}]"),
                format!("`{name}` is listed twice in `days`"),
                Some("remove the repeat".into()),
            );
        }
    }
}
