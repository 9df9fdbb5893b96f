//! The `targets:` pass: each target's selection (groups, devices or a union of targets),
//! the CSV device lists they read through [`Host`](crate::job::Host), and which kind of
//! item a target yields.
//!
//! Owns empty selections, invalid globs, unreadable CSVs and unknown CSV columns, and
//! unions that are empty, nest, name unknown targets or mix groups with devices. It does
//! not resolve anything against a tenant (the planner does) and does not look at steps:
//! whether a step's `to:` or `for_each:` names a target is checked by `steps` and `ops`,
//! through [`target_kind`].

use std::collections::{BTreeMap, BTreeSet};

use crate::job::closest;
use crate::job::model::*;
use crate::job::node::{Kind, Node};

use super::{Cx, help_names, strs};

/// The targets by name, each with its key node so later errors can point at it.
pub(super) type Targets<'n> = BTreeMap<String, (&'n Node, TargetSpec)>;

pub(super) fn targets<'n>(cx: &mut Cx, node: Option<&'n Node>) -> Targets<'n> {
    let mut out = Targets::new();
    let Some(pairs) = node.and_then(Node::as_map) else {
        return out;
    };
    for (k, t) in pairs {
        let Some(name) = k.scalar_text() else {
            continue;
        };
        if let Some(spec) = target(cx, k, t, &name) {
            out.insert(name, (k, spec));
        }
    }
    check_unions(cx, pairs, &out);
    out
}

fn target(cx: &mut Cx, k: &Node, t: &Node, name: &str) -> Option<TargetSpec> {
    let path = format!("targets.{name}");
    let given: Vec<&str> = ["groups", "devices", "union"]
        .into_iter()
        .filter(|x| t.get(x).is_some())
        .collect();
    if given.len() != 1 {
        // Not a map at all is the shape pass's error; do not add a second one.
        if t.as_map().is_some() {
            cx.error(k, &path, format!("target `{name}` must have exactly one of `groups`, `devices`, `union` ({} given)", given.len()), Some("e.g. `groups: { name: \"Stores/*\" }`".into()));
        }
        return None;
    }
    Some(if let Some(g) = t.get("groups") {
        groups(cx, g, &path)
    } else if let Some(d) = t.get("devices") {
        devices(cx, d, &path)
    } else {
        TargetSpec::Union(strs(t.get("union")))
    })
}

fn groups(cx: &mut Cx, g: &Node, path: &str) -> TargetSpec {
    let sel = GroupSelector {
        names: strs(g.get("name")),
        ids: strs(g.get("id")),
        all: g.get("all").is_some_and(|a| a.kind == Kind::Bool(true)),
        exclude: strs(g.get("exclude")),
    };
    if sel.names.is_empty() && sel.ids.is_empty() && !sel.all {
        cx.error(
            g,
            &format!("{path}.groups"),
            "the group selection is empty",
            Some(
                "select with `name:` (exact or a glob over the path), `id:` or `all: true`".into(),
            ),
        );
    }
    for p in sel.names.iter().chain(&sel.exclude) {
        if let Err(e) = globset::Glob::new(p) {
            cx.error(
                g,
                &format!("{path}.groups"),
                format!("`{p}` is not a valid glob: {}", e.kind()),
                Some("`*` matches within one level, `**` across levels".into()),
            );
        }
    }
    TargetSpec::Groups(sel)
}

fn devices(cx: &mut Cx, d: &Node, path: &str) -> TargetSpec {
    let text = |k: &str| d.get(k).and_then(Node::scalar_text);
    let mut sel = DeviceSelector {
        group: text("group"),
        name: text("name"),
        serial: text("serial"),
        state: text("state"),
        tags: text("tags"),
        serials: Vec::new(),
        ids: strs(d.get("ids")),
    };
    if let Some(s) = d.get("state")
        && let Some(v) = s.scalar_text()
        && !["online", "offline", "1", "60"].contains(&v.to_ascii_lowercase().as_str())
    {
        cx.error(
            s,
            &format!("{path}.devices.state"),
            format!("`{v}` is not a device state"),
            Some("`online` or `offline`".into()),
        );
    }
    match (d.get("csv"), d.entry("column")) {
        (Some(f), col) => {
            if let Some(serials) = csv_serials(cx, f, col.map(|(_, c)| c), path) {
                sel.serials = serials;
            }
        }
        (None, Some((k, _))) => cx.error(
            k,
            &format!("{path}.devices.column"),
            "`column` without `csv`",
            Some("add `csv: devices.csv` or remove `column`".into()),
        ),
        (None, None) => {}
    }
    let empty = DeviceSelector {
        serials: sel.serials.clone(),
        ..Default::default()
    };
    if sel == empty && sel.serials.is_empty() && d.get("csv").is_none() {
        cx.error(
            d,
            &format!("{path}.devices"),
            "the device selection is empty",
            Some(
                "filter with `group`, `name`, `serial`, `state`, `tags`, or give `csv` or `ids`"
                    .into(),
            ),
        );
    }
    TargetSpec::Devices(sel)
}

/// The serials listed in a `csv:` file, read now so a wrong path or column fails
/// validation instead of the run.
fn csv_serials(cx: &mut Cx, f: &Node, col: Option<&Node>, path: &str) -> Option<Vec<String>> {
    let column = col
        .and_then(Node::scalar_text)
        .unwrap_or_else(|| "serial".into());
    let file = f.scalar_text()?;
    let text = match (cx.host.read)(&file) {
        Ok(text) => text,
        Err(e) => {
            cx.error(
                f,
                &format!("{path}.devices.csv"),
                format!("cannot read `{file}`: {e}"),
                Some("paths are relative to the job file".into()),
            );
            return None;
        }
    };
    match csv_column(&text, &column) {
        Ok(v) if v.is_empty() => {
            cx.error(
                f,
                &format!("{path}.devices.csv"),
                format!("`{file}` lists no devices in column `{column}`"),
                None,
            );
            None
        }
        Ok(v) => Some(v),
        Err(e) => {
            cx.error(
                col.unwrap_or(f),
                &format!("{path}.devices.column"),
                e.to_string(),
                None,
            );
            None
        }
    }
}

/// Why a CSV target's column could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CsvError {
    #[error("the CSV has no header row: {0}")]
    NoHeader(String),
    #[error("the CSV has no column `{column}`; {}", match suggestion {
        Some(c) => format!("did you mean `{c}`?"),
        None => format!("its columns are: {}", columns.join(", ")),
    })]
    NoColumn {
        column: String,
        suggestion: Option<String>,
        columns: Vec<String>,
    },
    #[error("CSV row {row}: {why}")]
    BadRow { row: usize, why: String },
}

/// The non-empty values of one CSV column, in file order.
pub fn csv_column(text: &str, column: &str) -> Result<Vec<String>, CsvError> {
    let mut rdr = csv::ReaderBuilder::new()
        .trim(csv::Trim::All)
        .flexible(true)
        .from_reader(text.as_bytes());
    let headers = rdr
        .headers()
        .map_err(|e| CsvError::NoHeader(e.to_string()))?
        .clone();
    let Some(idx) = headers.iter().position(|h| h.eq_ignore_ascii_case(column)) else {
        let cols: Vec<&str> = headers.iter().collect();
        return Err(CsvError::NoColumn {
            column: column.to_string(),
            suggestion: closest(column, &cols).map(str::to_string),
            columns: cols.iter().map(|c| c.to_string()).collect(),
        });
    };
    let mut out = Vec::new();
    for (i, rec) in rdr.records().enumerate() {
        let rec = rec.map_err(|e| CsvError::BadRow {
            row: i + 2,
            why: e.to_string(),
        })?;
        if let Some(v) = rec.get(idx).filter(|v| !v.is_empty()) {
            out.push(v.to_string());
        }
    }
    Ok(out)
}

/// Unions are checked once every target is known, since members may be defined after them.
fn check_unions(cx: &mut Cx, pairs: &[(Node, Node)], targets: &Targets) {
    let names = names(targets);
    let kinds: BTreeMap<&str, &'static str> = targets
        .iter()
        .map(|(k, (_, s))| (k.as_str(), s.kind_name()))
        .collect();
    // One table rather than a scan of `pairs` per union, which was quadratic in targets.
    let mut written: BTreeMap<&str, &Node> = BTreeMap::new();
    for (key, v) in pairs {
        if let Some(name) = key.as_str() {
            written.entry(name).or_insert(v);
        }
    }
    for (name, (k, spec)) in targets {
        let TargetSpec::Union(members) = spec else {
            continue;
        };
        let at = written
            .get(name.as_str())
            .and_then(|v| v.get("union"))
            .unwrap_or(k);
        let path = format!("targets.{name}.union");
        if members.is_empty() {
            cx.error(
                at,
                &path,
                "the union is empty",
                Some("list the targets to merge".into()),
            );
        }
        let mut seen = BTreeSet::new();
        for m in members {
            match kinds.get(m.as_str()) {
                None => cx.error(
                    at,
                    &path,
                    format!("unknown target `{m}`"),
                    help_names(m, &names),
                ),
                Some(&"union") => cx.error(
                    at,
                    &path,
                    format!("`{m}` is itself a union"),
                    Some("list its groups or devices targets directly".into()),
                ),
                Some(k) => {
                    seen.insert(*k);
                }
            }
        }
        if seen.len() > 1 {
            cx.error(
                at,
                &path,
                "the union mixes groups and devices",
                Some("make one union of groups targets and another of devices targets".into()),
            );
        }
    }
}

/// The item kind (`groups`/`devices`) a target yields.
pub(super) fn target_kind(targets: &Targets, name: &str) -> Option<&'static str> {
    match &targets.get(name)?.1 {
        // One level only: a union of unions is reported in `targets`, and following it
        // could loop forever (`a: { union: [a] }` overflowed the stack).
        TargetSpec::Union(m) => match &targets.get(m.first()?)?.1 {
            TargetSpec::Union(_) => None,
            s => Some(s.kind_name()),
        },
        s => Some(s.kind_name()),
    }
}

/// The defined target names, for did-you-mean help.
pub(super) fn names(targets: &Targets) -> Vec<String> {
    targets.keys().cloned().collect()
}
