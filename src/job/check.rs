//! Checking a job file: from the spanned YAML tree to a [`Job`], collecting every problem.
//!
//! Two passes. The shape pass walks the tree against the tables in `shape.rs` (unknown
//! keys with did-you-mean, missing keys, wrong types). The meaning pass builds the job and
//! checks what tables cannot: references between steps and targets, `needs` cycles (shown
//! as `a -> b -> a`), every `${{ … }}` reference, value ranges, literal API keys, CSV
//! columns. Every diagnostic points at a line and column. Nothing here touches the network;
//! files (CSV device lists) are read through [`Host`].

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use serde_json::Value;

use super::model::*;
use super::node::{Kind, Node, Span};
use super::shape::{self, Field, Shape, Ty};
use super::{Diagnostic, Diagnostics, Host, Severity, closest, template};

struct Cx<'a> {
    file: &'a str,
    host: &'a Host<'a>,
    diags: Vec<Diagnostic>,
    /// The key whose value is being checked, so "missing key" errors can point at
    /// `alarm_rule:` rather than at whichever key happens to come first in the map.
    parent_key: Option<Span>,
}

impl Cx<'_> {
    fn push(
        &mut self,
        severity: Severity,
        span: Span,
        path: &str,
        message: String,
        help: Option<String>,
    ) {
        self.diags.push(Diagnostic {
            severity,
            file: self.file.to_string(),
            span: Some(span),
            path: path.to_string(),
            message,
            help,
        });
    }
    fn error(&mut self, at: &Node, path: &str, message: impl Into<String>, help: Option<String>) {
        self.push(Severity::Error, at.span, path, message.into(), help);
    }
    fn warn(&mut self, at: &Node, path: &str, message: impl Into<String>, help: Option<String>) {
        self.push(Severity::Warning, at.span, path, message.into(), help);
    }
    /// Substitutes `${NAME}`; reports a missing variable at the node.
    fn env(&mut self, node: &Node, path: &str) -> Option<String> {
        let s = node.scalar_text()?;
        match template::subst_env(&s, self.host.env) {
            Ok(v) => Some(v),
            Err(e) => {
                self.error(
                    node,
                    path,
                    e,
                    Some(
                        "export the variable before running, or write the value in the file".into(),
                    ),
                );
                None
            }
        }
    }
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

fn is_template(n: &Node) -> bool {
    n.as_str().is_some_and(|s| s.contains("${{"))
}

// ---------------------------------------------------------------- shape pass

fn check_shape(cx: &mut Cx, node: &Node, s: &'static Shape, path: &str) {
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
            None => {
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
        }
    }
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
    let bad = |cx: &mut Cx, expected: &str, help: Option<String>| {
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
    };
    match t {
        Ty::Str => {
            if !matches!(v.kind, Kind::Str(_) | Kind::Int(_) | Kind::Float(_)) {
                bad(cx, "a string", None);
            }
        }
        Ty::Int => {
            if !matches!(v.kind, Kind::Int(_)) && !is_template(v) {
                bad(cx, "a whole number", None);
            }
        }
        Ty::Num => {
            if !matches!(v.kind, Kind::Int(_) | Kind::Float(_)) && !is_template(v) {
                bad(cx, "a number", None);
            }
        }
        Ty::Bool => {
            if !matches!(v.kind, Kind::Bool(_)) {
                bad(cx, "true or false", None);
            }
        }
        Ty::Duration => {
            if parse_duration(v).is_none() {
                bad(
                    cx,
                    "a duration",
                    Some("write e.g. `500ms`, `30s`, `50m` or `1h 30m` (at most 30 days)".into()),
                );
            }
        }
        Ty::Rate => {
            if parse_rate(v).is_none() {
                bad(cx, "a rate", Some("write requests per unit time between 0.01/s and 10000/s, e.g. `20/s`, `600/m`, or a number per second".into()));
            }
        }
        Ty::Amount => {
            if parse_amount(v).is_none() {
                bad(
                    cx,
                    "a count or a percentage",
                    Some("e.g. `1`, `10%`, `100%`".into()),
                );
            }
        }
        Ty::Any => {}
        Ty::StrList => match v.as_seq() {
            Some(items) => {
                for (i, it) in items.iter().enumerate() {
                    if !matches!(it.kind, Kind::Str(_) | Kind::Int(_) | Kind::Float(_)) {
                        check_ty(cx, it, &Ty::Str, &format!("{path}[{i}]"));
                    }
                }
            }
            None => bad(
                cx,
                "a list of strings",
                Some(format!(
                    "e.g. `{}: [a, b]`",
                    path.rsplit('.').next().unwrap_or(path)
                )),
            ),
        },
        Ty::StrOrList => {
            if v.as_seq().is_some() {
                check_ty(cx, v, &Ty::StrList, path);
            } else {
                check_ty(cx, v, &Ty::Str, path);
            }
        }
        Ty::Enum(values) => match v.as_str() {
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
            None => bad(cx, &format!("one of {}", values.join(", ")), None),
        },
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
            None => bad(cx, "a map", None),
        },
        Ty::ListOf(inner) => match v.as_seq() {
            Some(items) => {
                for (i, it) in items.iter().enumerate() {
                    // A list item has no key of its own; its map's first key is the anchor.
                    cx.parent_key = None;
                    check_ty(cx, it, inner, &format!("{path}[{i}]"));
                }
            }
            None => bad(cx, "a list", None),
        },
    }
}

/// Replaces `${NAME}` in every string of a subtree, reporting unset variables in place.
fn subst_env_tree(cx: &mut Cx, n: &mut Node, path: &str) {
    match &mut n.kind {
        Kind::Str(s) if s.contains("${") => match template::subst_env(s, cx.host.env) {
            Ok(v) => *s = v,
            Err(e) => {
                let at = n.clone();
                cx.error(
                    &at,
                    path,
                    e,
                    Some(
                        "export the variable before running, or write the value in the file".into(),
                    ),
                );
            }
        },
        Kind::Seq(items) => {
            for (i, it) in items.iter_mut().enumerate() {
                subst_env_tree(cx, it, &format!("{path}[{i}]"));
            }
        }
        Kind::Map(pairs) => {
            for (k, v) in pairs.iter_mut() {
                let key = join(path, &k.scalar_text().unwrap_or_default());
                subst_env_tree(cx, v, &key);
            }
        }
        _ => {}
    }
}

// ---------------------------------------------------------------- values

/// `20/s`, `600/m`, `36000/h` or a bare number per second.
pub fn parse_rate(v: &Node) -> Option<f64> {
    let rate = match &v.kind {
        Kind::Int(i) => *i as f64,
        Kind::Float(f) => *f,
        Kind::Str(s) => {
            let s = s.trim();
            let (num, unit) = s.split_once('/').unwrap_or((s, "s"));
            let n: f64 = num.trim().parse().ok()?;
            let per = match unit.trim() {
                "s" | "sec" | "second" => 1.0,
                "m" | "min" | "minute" => 60.0,
                "h" | "hour" => 3600.0,
                _ => return None,
            };
            n / per
        }
        _ => return None,
    };
    (rate.is_finite() && (0.01..=10_000.0).contains(&rate)).then_some(rate)
}

/// `500ms`, `30s`, `50m`, `1h 30m`, or whole seconds; at most 30 days.
pub fn parse_duration(v: &Node) -> Option<Duration> {
    match &v.kind {
        Kind::Int(i) if *i >= 0 => Some(Duration::from_secs(*i as u64)),
        Kind::Str(s) => humantime::parse_duration(s.trim()).ok(),
        _ => None,
    }
    .filter(|d| *d <= Duration::from_secs(30 * 24 * 3600))
}

/// `5` or `5%`.
pub fn parse_amount(v: &Node) -> Option<Amount> {
    match &v.kind {
        Kind::Int(i) if *i >= 0 => Some(Amount::Count(*i as u64)),
        Kind::Str(s) => {
            let p: f64 = s.trim().strip_suffix('%')?.trim().parse().ok()?;
            (p.is_finite() && (0.0..=100.0).contains(&p)).then_some(Amount::Percent(p))
        }
        _ => None,
    }
}

// ---------------------------------------------------------------- meaning pass

/// Checks a parsed job file.
pub fn check(file: &str, root: &Node, host: &Host) -> Result<(Job, Vec<Diagnostic>), Diagnostics> {
    let mut cx = Cx {
        file,
        host,
        diags: Vec::new(),
        parent_key: None,
    };
    // `${NAME}` is read from the environment everywhere, once, before anything else looks
    // at the values (the `esper:` block does its own, to keep `api_key` a reference).
    let mut root = root.clone();
    if let Kind::Map(pairs) = &mut root.kind {
        for (k, v) in pairs.iter_mut() {
            if k.as_str() != Some("esper") {
                let key = k.scalar_text().unwrap_or_default();
                subst_env_tree(&mut cx, v, &key);
            }
        }
    }
    let root = &root;
    check_shape(&mut cx, root, &shape::JOB, "");
    if root.as_map().is_none() {
        return Err(Diagnostics(cx.diags));
    }
    if let Some(v) = root.get("version")
        && matches!(v.kind, Kind::Int(_))
        && v.kind != Kind::Int(1)
    {
        cx.error(
            v,
            "version",
            format!(
                "unsupported job version {}",
                v.scalar_text().unwrap_or_default()
            ),
            Some("this esper-bulk reads `version: 1`".into()),
        );
    }
    let name = root
        .get("name")
        .and_then(Node::scalar_text)
        .unwrap_or_default();
    if let Some(n) = root.get("name")
        && name.trim().is_empty()
    {
        cx.error(
            n,
            "name",
            "the job name is empty",
            Some("e.g. `name: kiosk-rollout`".into()),
        );
    }
    let esper = root
        .get("esper")
        .map(|e| esper(&mut cx, e))
        .unwrap_or_default();
    let limits = root
        .get("limits")
        .map(|l| limits(&mut cx, l))
        .unwrap_or_default();
    let retry = root
        .get("retry")
        .map(|r| retry(&mut cx, r))
        .unwrap_or_default();
    let deadline = root.get("deadline").and_then(parse_duration);
    let vars: BTreeMap<String, Value> = root
        .get("vars")
        .and_then(Node::as_map)
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| Some((k.scalar_text()?, v.to_json())))
                .collect()
        })
        .unwrap_or_default();
    let targets = targets(&mut cx, root.get("targets"));
    let steps = steps(&mut cx, root.get("steps"), &targets, &vars);

    if cx.diags.iter().any(|d| d.severity == Severity::Error) {
        cx.diags.sort_by_key(|d| d.span.map(|s| s.start));
        return Err(Diagnostics(cx.diags));
    }
    let job = Job {
        name,
        description: root.get("description").and_then(Node::scalar_text),
        source: file.to_string(),
        esper,
        limits,
        retry,
        deadline,
        vars,
        targets: targets.into_iter().map(|(k, (_, t))| (k, t)).collect(),
        steps,
    };
    Ok((job, cx.diags))
}

fn esper(cx: &mut Cx, e: &Node) -> EsperSettings {
    let mut out = EsperSettings::default();
    if let (Some(_), Some((k, _))) = (e.get("tenant"), e.entry("base_url")) {
        cx.error(
            k,
            "esper.base_url",
            "both `tenant` and `base_url` are set",
            Some("keep one: `tenant: acme` means https://acme-api.esper.cloud/api".into()),
        );
    }
    if let Some(t) = e.get("tenant")
        && let Some(tenant) = cx.env(t, "esper.tenant")
    {
        if tenant.is_empty()
            || !tenant
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-')
        {
            cx.error(
                t,
                "esper.tenant",
                format!("`{tenant}` is not a tenant name"),
                Some("use the console sub-domain, e.g. `acme` for acme.esper.cloud".into()),
            );
        } else {
            // Esper's published server template; the client documents the same rule.
            out.base_url = Some(format!("https://{tenant}-api.esper.cloud/api"));
        }
    }
    if let Some(u) = e.get("base_url")
        && let Some(url) = cx.env(u, "esper.base_url")
    {
        if url.starts_with("https://") || url.starts_with("http://") {
            out.base_url = Some(url);
        } else {
            cx.error(
                u,
                "esper.base_url",
                format!("`{url}` is not an http(s) URL"),
                Some("e.g. https://acme-api.esper.cloud/api".into()),
            );
        }
    }
    if let Some(v) = e.get("enterprise_id") {
        out.enterprise_id = cx.env(v, "esper.enterprise_id");
    }
    match (e.get("api_key"), e.entry("api_key_file")) {
        (Some(_), Some((k, _))) => cx.error(k, "esper.api_key_file", "both `api_key` and `api_key_file` are set", Some("keep one".into())),
        (Some(k), None) => match k.as_str().and_then(template::whole_env_ref) {
            Some(name) => out.api_key = Some(KeySource::Env(name.to_string())),
            None => cx.error(
                k,
                "esper.api_key",
                "the API key is written in the job file",
                Some("never commit keys: write `api_key: ${ESPER_API_KEY}` or `api_key_file: /run/credentials/esper-bulk/key`, and revoke this key".into()),
            ),
        },
        (None, Some((_, f))) => out.api_key = cx.env(f, "esper.api_key_file").map(KeySource::File),
        (None, None) => {}
    }
    out
}

fn int_in(cx: &mut Cx, n: Option<&Node>, path: &str, lo: i64, hi: i64, help: &str) -> Option<u32> {
    let n = n?;
    match n.kind {
        Kind::Int(i) if (lo..=hi).contains(&i) => Some(i as u32),
        Kind::Int(i) => {
            cx.error(
                n,
                path,
                format!("`{path}` is {i}, outside {lo}..={hi}"),
                Some(help.to_string()),
            );
            None
        }
        _ => None,
    }
}

fn limits(cx: &mut Cx, l: &Node) -> Limits {
    let mut out = Limits::default();
    if let Some(r) = l.get("rate").and_then(parse_rate) {
        out.rate = r;
    }
    if let Some(b) = int_in(
        cx,
        l.get("batch"),
        "limits.batch",
        1,
        10_000,
        "20 is the API's own advice",
    ) {
        out.batch = b;
    }
    if let Some(m) = int_in(
        cx,
        l.get("max_in_flight"),
        "limits.max_in_flight",
        1,
        10_000,
        "e.g. 100",
    ) {
        out.max_in_flight = m;
    }
    if out.batch > out.max_in_flight
        && let Some(b) = l.get("batch")
    {
        cx.error(
            b,
            "limits.batch",
            format!(
                "batch {} is above max_in_flight {}",
                out.batch, out.max_in_flight
            ),
            Some("the window starts at `batch` and never exceeds `max_in_flight`".into()),
        );
    }
    out
}

fn retry(cx: &mut Cx, r: &Node) -> RetrySettings {
    let mut out = RetrySettings::default();
    if let Some(a) = int_in(
        cx,
        r.get("attempts"),
        "retry.attempts",
        1,
        100,
        "1 means no retries",
    ) {
        out.attempts = a;
    }
    for (key, slot) in [
        ("initial_delay", &mut out.initial_delay),
        ("max_delay", &mut out.max_delay),
        ("max_retry_after", &mut out.max_retry_after),
    ] {
        if let Some(d) = r.get(key).and_then(parse_duration) {
            *slot = d;
        }
    }
    if out.initial_delay > out.max_delay
        && let Some(n) = r.get("initial_delay")
    {
        cx.error(
            n,
            "retry.initial_delay",
            "initial_delay is longer than max_delay",
            Some("lower initial_delay or raise max_delay".into()),
        );
    }
    out
}

type Targets<'n> = BTreeMap<String, (&'n Node, TargetSpec)>;

fn strs(n: Option<&Node>) -> Vec<String> {
    match n {
        Some(n) => match n.as_seq() {
            Some(items) => items.iter().filter_map(Node::scalar_text).collect(),
            None => n.scalar_text().into_iter().collect(),
        },
        None => Vec::new(),
    }
}

fn targets<'n>(cx: &mut Cx, node: Option<&'n Node>) -> Targets<'n> {
    let mut out = Targets::new();
    let Some(pairs) = node.and_then(Node::as_map) else {
        return out;
    };
    for (k, t) in pairs {
        let Some(name) = k.scalar_text() else {
            continue;
        };
        let path = format!("targets.{name}");
        let given: Vec<&str> = ["groups", "devices", "union"]
            .into_iter()
            .filter(|x| t.get(x).is_some())
            .collect();
        if given.len() != 1 {
            if t.as_map().is_some() {
                cx.error(k, &path, format!("target `{name}` must have exactly one of `groups`, `devices`, `union` ({} given)", given.len()), Some("e.g. `groups: { name: \"Stores/*\" }`".into()));
            }
            continue;
        }
        let spec = if let Some(g) = t.get("groups") {
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
                        "select with `name:` (exact or a glob over the path), `id:` or `all: true`"
                            .into(),
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
        } else if let Some(d) = t.get("devices") {
            devices(cx, d, &path)
        } else {
            TargetSpec::Union(strs(t.get("union")))
        };
        out.insert(name, (k, spec));
    }
    let names: Vec<String> = out.keys().cloned().collect();
    let kinds: BTreeMap<String, &'static str> = out
        .iter()
        .map(|(k, (_, s))| (k.clone(), s.kind_name()))
        .collect();
    for (name, (k, spec)) in &out {
        let TargetSpec::Union(members) = spec else {
            continue;
        };
        let at = pairs
            .iter()
            .find(|(key, _)| key.as_str() == Some(name))
            .and_then(|(_, v)| v.get("union"))
            .unwrap_or(k);
        let mut seen = BTreeSet::new();
        if members.is_empty() {
            cx.error(
                at,
                &format!("targets.{name}.union"),
                "the union is empty",
                Some("list the targets to merge".into()),
            );
        }
        for m in members {
            match kinds.get(m) {
                None => cx.error(
                    at,
                    &format!("targets.{name}.union"),
                    format!("unknown target `{m}`"),
                    help_names(m, &names),
                ),
                Some(&"union") => cx.error(
                    at,
                    &format!("targets.{name}.union"),
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
                &format!("targets.{name}.union"),
                "the union mixes groups and devices",
                Some("make one union of groups targets and another of devices targets".into()),
            );
        }
    }
    out
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
            let column = col
                .and_then(|(_, c)| c.scalar_text())
                .unwrap_or_else(|| "serial".into());
            if let Some(file) = f.scalar_text() {
                match (cx.host.read)(&file) {
                    Err(e) => cx.error(
                        f,
                        &format!("{path}.devices.csv"),
                        format!("cannot read `{file}`: {e}"),
                        Some("paths are relative to the job file".into()),
                    ),
                    Ok(text) => match csv_column(&text, &column) {
                        Ok(v) if v.is_empty() => cx.error(
                            f,
                            &format!("{path}.devices.csv"),
                            format!("`{file}` lists no devices in column `{column}`"),
                            None,
                        ),
                        Ok(v) => sel.serials = v,
                        Err(e) => {
                            let at = col.map(|(_, c)| c).unwrap_or(f);
                            cx.error(at, &format!("{path}.devices.column"), e, None);
                        }
                    },
                }
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

/// The non-empty values of one CSV column, in file order.
pub fn csv_column(text: &str, column: &str) -> Result<Vec<String>, String> {
    let mut rdr = csv::ReaderBuilder::new()
        .trim(csv::Trim::All)
        .flexible(true)
        .from_reader(text.as_bytes());
    let headers = rdr
        .headers()
        .map_err(|e| format!("the CSV has no header row: {e}"))?
        .clone();
    let Some(idx) = headers.iter().position(|h| h.eq_ignore_ascii_case(column)) else {
        let cols: Vec<&str> = headers.iter().collect();
        return Err(match closest(column, &cols) {
            Some(c) => format!("the CSV has no column `{column}`; did you mean `{c}`?"),
            None => format!(
                "the CSV has no column `{column}`; its columns are: {}",
                cols.join(", ")
            ),
        });
    };
    let mut out = Vec::new();
    for (i, rec) in rdr.records().enumerate() {
        let rec = rec.map_err(|e| format!("CSV row {}: {e}", i + 2))?;
        if let Some(v) = rec.get(idx).filter(|v| !v.is_empty()) {
            out.push(v.to_string());
        }
    }
    Ok(out)
}

fn help_names(word: &str, names: &[String]) -> Option<String> {
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    match closest(word, &refs) {
        Some(c) => Some(format!("did you mean `{c}`?")),
        None if names.is_empty() => Some("none are defined yet".into()),
        None => Some(format!("defined: {}", refs.join(", "))),
    }
}

/// The item kind (`groups`/`devices`) a target yields.
fn target_kind(targets: &Targets, name: &str) -> Option<&'static str> {
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

/// What a step looks like to steps after it.
struct StepInfo<'n> {
    node: &'n Node,
    kind: &'static str,
    outputs: &'static [&'static str],
    fans_out: bool,
    needs: Vec<String>,
}

fn steps(
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
    // First the facts about every step, so references can be checked in any order.
    let mut info: BTreeMap<String, StepInfo> = BTreeMap::new();
    for (i, s) in items.iter().enumerate() {
        let Some(id_node) = s.get("id") else { continue };
        let Some(id) = id_node.scalar_text() else {
            continue;
        };
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
            continue;
        }
        let ops: Vec<&str> = shape::OPERATIONS
            .iter()
            .copied()
            .filter(|op| s.get(op).is_some())
            .collect();
        if info.contains_key(&id) {
            cx.error(
                id_node,
                &format!("steps[{i}].id"),
                format!("step id `{id}` is used twice"),
                Some("give every step a unique id".into()),
            );
            continue;
        }
        let kind = ops.first().copied().unwrap_or("");
        let fans_out = s.get("for_each").is_some()
            || ["app_install", "app_uninstall", "command", "group_move"].contains(&kind);
        let outputs = output_names(kind);
        info.insert(
            id,
            StepInfo {
                node: id_node,
                kind,
                outputs,
                fans_out,
                needs: strs(s.get("needs")),
            },
        );
    }
    let ids: Vec<String> = info.keys().cloned().collect();
    check_cycles(cx, &info);
    let mut out = Vec::new();
    for (i, s) in items.iter().enumerate() {
        if let Some(step) = step(cx, i, s, targets, vars, &info, &ids) {
            out.push(step);
        }
    }
    out
}

fn output_names(kind: &str) -> &'static [&'static str] {
    match kind {
        "app_upload" => &["version_id", "application_id", "package", "version_code"],
        "content_upload" => &["content_id"],
        "alarm_rule" => &["rule_id"],
        "request" => &["status", "body"],
        _ => &[],
    }
}

fn check_cycles(cx: &mut Cx, info: &BTreeMap<String, StepInfo>) {
    fn visit(
        id: &str,
        info: &BTreeMap<String, StepInfo>,
        state: &mut BTreeMap<String, u8>,
        stack: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        match state.get(id) {
            Some(2) => return None,
            Some(1) => {
                let from = stack.iter().position(|s| s == id).unwrap_or(0);
                let mut cycle = stack[from..].to_vec();
                cycle.push(id.to_string());
                return Some(cycle);
            }
            _ => {}
        }
        state.insert(id.to_string(), 1);
        stack.push(id.to_string());
        for n in info.get(id).map(|s| s.needs.as_slice()).unwrap_or_default() {
            // A step needing itself is reported where the `needs` entry is.
            if n != id
                && info.contains_key(n)
                && let Some(c) = visit(n, info, state, stack)
            {
                return Some(c);
            }
        }
        stack.pop();
        state.insert(id.to_string(), 2);
        None
    }
    let mut state = BTreeMap::new();
    for id in info.keys() {
        let mut stack = Vec::new();
        if let Some(cycle) = visit(id, info, &mut state, &mut stack) {
            let at = info[&cycle[0]].node;
            cx.error(
                at,
                "steps",
                format!("steps need each other in a cycle: {}", cycle.join(" -> ")),
                Some("remove one of these `needs` entries".into()),
            );
            return;
        }
    }
}

/// Whether step `id` transitively needs step `other`. Asked only for `steps.*` references,
/// so a long chain of steps costs no quadratic work (an ancestor set per step did).
fn needs_transitively(id: &str, other: &str, info: &BTreeMap<String, StepInfo>) -> bool {
    let mut seen = BTreeSet::new();
    let mut todo: Vec<&str> = info
        .get(id)
        .map(|s| s.needs.iter().map(String::as_str).collect())
        .unwrap_or_default();
    while let Some(n) = todo.pop() {
        if n == other {
            return true;
        }
        if seen.insert(n)
            && let Some(s) = info.get(n)
        {
            todo.extend(s.needs.iter().map(String::as_str));
        }
    }
    false
}

fn text(n: &Node, key: &str) -> Option<String> {
    n.get(key).and_then(Node::scalar_text)
}

fn step(
    cx: &mut Cx,
    i: usize,
    s: &Node,
    targets: &Targets,
    vars: &BTreeMap<String, Value>,
    info: &BTreeMap<String, StepInfo>,
    ids: &[String],
) -> Option<Step> {
    let at = format!("steps[{i}]");
    s.as_map()?;
    let id = text(s, "id")?;
    if let Some(needs) = s.get("needs") {
        for (j, n) in strs(Some(needs)).iter().enumerate() {
            let node = needs.as_seq().and_then(|v| v.get(j)).unwrap_or(needs);
            if *n == id {
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
    // In file order, so "two operations" points at the second one written.
    let ops: Vec<(&Node, &Node)> = s
        .as_map()
        .unwrap_or_default()
        .iter()
        .filter(|(k, _)| k.as_str().is_some_and(|k| shape::OPERATIONS.contains(&k)))
        .map(|(k, v)| (k, v))
        .collect();
    let (op_key, op) = match ops.as_slice() {
        [one] => *one,
        [] => {
            cx.error(
                s.get("id").unwrap_or(s),
                &at,
                format!("step `{id}` has no operation"),
                Some(format!("add one of: {}", shape::OPERATIONS.join(", "))),
            );
            return None;
        }
        [_, second, ..] => {
            cx.error(
                second.0,
                &at,
                format!("step `{id}` has {} operations", ops.len()),
                Some("one operation per step; split it into steps joined by `needs`".into()),
            );
            return None;
        }
    };
    let kind = op_key.as_str().unwrap_or_default();
    let opath = format!("{at}.{kind}");
    let target_names: Vec<String> = targets.keys().cloned().collect();
    let for_each = s
        .entry("for_each")
        .and_then(|(k, v)| Some((k, v, v.scalar_text()?)));
    let mut item_kind = None;
    if let Some((fk, fv, t)) = &for_each {
        if [
            "app_install",
            "app_uninstall",
            "command",
            "group_move",
            "app_upload",
            "content_upload",
        ]
        .contains(&kind)
        {
            cx.error(
                fk,
                &format!("{at}.for_each"),
                format!("`for_each` does not apply to {kind}"),
                Some(
                    if kind == "group_move"
                        || kind.starts_with("app_i")
                        || kind.starts_with("app_un")
                        || kind == "command"
                    {
                        "these fan out over `to:` (one request per group, devices in chunks)".into()
                    } else {
                        "it runs once".into()
                    },
                ),
            );
        } else {
            match target_kind(targets, t) {
                Some(k) => item_kind = Some(k),
                None => {
                    cx.error(
                        fv,
                        &format!("{at}.for_each"),
                        format!("unknown target `{t}`"),
                        help_names(t, &target_names),
                    );
                    // The step does fan out; its `item.*` fields cannot be checked against
                    // a target that does not exist, and saying "no for_each" would be wrong.
                    item_kind = Some("unknown");
                }
            }
        }
    }
    let rollout = s
        .get("rollout")
        .and_then(|r| rollout(cx, r, &format!("{at}.rollout")));
    // Every string inside the operation: templates must resolve.
    let mut refs_cx = RefCx {
        step: &id,
        item_kind,
        vars,
        info,
        for_each: for_each.as_ref().map(|f| f.2.clone()),
    };
    check_refs(cx, op, &opath, &mut refs_cx);

    let need_target = |cx: &mut Cx, key: &str, want: Option<&str>| -> Option<String> {
        let (n, t) = op.get(key).and_then(|n| Some((n, n.scalar_text()?)))?;
        match target_kind(targets, &t) {
            None => {
                cx.error(
                    n,
                    &format!("{opath}.{key}"),
                    format!("unknown target `{t}`"),
                    help_names(&t, &target_names),
                );
                None
            }
            Some(k) if want.is_some_and(|w| w != k) => {
                cx.error(
                    n,
                    &format!("{opath}.{key}"),
                    format!("`{t}` selects {k}, but {kind}.{key} needs devices"),
                    Some("define a `devices:` target".into()),
                );
                None
            }
            Some(_) => Some(t),
        }
    };
    let wait = |n: &Node| {
        n.get("wait").map(|w| {
            w.get("timeout")
                .and_then(parse_duration)
                .unwrap_or(Duration::from_secs(30 * 60))
        })
    };
    // These values pick targets, files or names before any task exists, so templates in
    // them would be sent literally; say so instead of failing later.
    let literal: &[&str] = match kind {
        "app_upload" => &["file", "package", "version_code"],
        "content_upload" => &["file"],
        "group_move" => &["devices", "to"],
        "command" => &["to", "name"],
        "app_install" | "app_uninstall" => &["to"],
        _ => &[],
    };
    for key in literal {
        if let Some(n) = op.get(key)
            && is_template(n)
        {
            cx.error(
                n,
                &format!("{opath}.{key}"),
                format!("`{kind}.{key}` does not take `${{{{ … }}}}` templates"),
                Some("write the value itself, or an environment variable as `${NAME}`".into()),
            );
        }
    }
    let op = match kind {
        "app_upload" => StepOp::AppUpload {
            file: text(op, "file")?,
            package: text(op, "package"),
            version_code: text(op, "version_code"),
        },
        "app_install" => {
            let to = need_target(cx, "to", None);
            let version = match (
                text(op, "version"),
                text(op, "package"),
                text(op, "version_code"),
            ) {
                (Some(v), None, None) => VersionRef::Id(v),
                (None, Some(p), Some(c)) => VersionRef::Package {
                    package: p,
                    version_code: c,
                },
                _ => {
                    cx.error(op_key, &opath, "app_install needs `version` (a version id), or `package` with `version_code`", Some("e.g. `version: ${{ steps.upload.version_id }}`, or `package: com.acme.kiosk` + `version_code: 420`".into()));
                    return None;
                }
            };
            StepOp::AppInstall {
                to: to?,
                version,
                wait: wait(op),
            }
        }
        "app_uninstall" => StepOp::AppUninstall {
            to: need_target(cx, "to", None)?,
            package: text(op, "package")?,
            wait: wait(op),
        },
        "command" => {
            let name = text(op, "name")?.trim().to_ascii_uppercase();
            if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                cx.error(
                    op.get("name")?,
                    &format!("{opath}.name"),
                    format!("`{name}` is not a command name"),
                    Some("Esper command names look like REBOOT or UPDATE_HEARTBEAT".into()),
                );
            }
            StepOp::Command {
                to: need_target(cx, "to", None)?,
                name,
                args: op
                    .get("args")
                    .map(Node::to_json)
                    .unwrap_or(Value::Object(Default::default())),
                schedule: op.get("schedule").map(Node::to_json),
                wait: wait(op),
            }
        }
        "alarm_rule" => {
            if let (Some(_), Some((k, _))) = (op.get("groups"), op.entry("devices")) {
                cx.error(
                    k,
                    &opath,
                    "an alarm rule cannot target both groups and devices",
                    Some("Esper links a rule to devices only or to groups only".into()),
                );
            }
            let on_exists = match text(op, "on_exists").as_deref() {
                Some("skip") => OnExists::Skip,
                Some("fail") => OnExists::Fail,
                _ => OnExists::Update,
            };
            let mut body = op.to_json();
            if let Value::Object(m) = &mut body {
                m.remove("on_exists");
            }
            StepOp::AlarmRule {
                name: text(op, "name")?,
                body,
                on_exists,
            }
        }
        "group_move" => StepOp::GroupMove {
            devices: need_target(cx, "devices", Some("devices"))?,
            group: text(op, "to")?,
        },
        "content_upload" => StepOp::ContentUpload {
            file: text(op, "file")?,
        },
        "request" => {
            let path = text(op, "path")?;
            if !path.starts_with('/') {
                cx.error(op.get("path")?, &format!("{opath}.path"), format!("`{path}` must start with `/`"), Some("paths are below the base URL, e.g. `/v1/enterprise/{enterprise_id}/alarmrules/`".into()));
            }
            let query = op
                .get("query")
                .and_then(Node::as_map)
                .map(|m| {
                    m.iter()
                        .filter_map(|(k, v)| Some((k.scalar_text()?, v.scalar_text()?)))
                        .collect()
                })
                .unwrap_or_default();
            StepOp::Request {
                method: text(op, "method")?,
                path,
                query,
                body: op.get("body").map(Node::to_json),
            }
        }
        _ => return None,
    };
    if let (Some(r), Some(rn)) = (&rollout, s.entry("rollout")) {
        let _ = r;
        if matches!(op, StepOp::AppUpload { .. } | StepOp::ContentUpload { .. })
            || (for_each.is_none()
                && matches!(op, StepOp::AlarmRule { .. } | StepOp::Request { .. }))
        {
            cx.warn(
                rn.0,
                &format!("{at}.rollout"),
                "this step runs a single task; `rollout` has nothing to stage",
                None,
            );
        }
    }
    Some(Step {
        id,
        needs: strs(s.get("needs")),
        for_each: for_each.map(|f| f.2),
        rollout,
        op,
    })
}

fn rollout(cx: &mut Cx, r: &Node, path: &str) -> Option<Rollout> {
    let stages_node = r.get("stages")?;
    let items = stages_node.as_seq()?;
    let stages: Vec<Amount> = items.iter().filter_map(parse_amount).collect();
    if stages.len() != items.len() {
        return None;
    }
    if stages.is_empty() {
        cx.error(
            stages_node,
            &format!("{path}.stages"),
            "no stages",
            Some("e.g. `[1, 10%, 100%]`".into()),
        );
        return None;
    }
    if stages.last() != Some(&Amount::Percent(100.0)) {
        cx.error(
            stages_node,
            &format!("{path}.stages"),
            "the last stage must be `100%`",
            Some("otherwise the remaining tasks never run; end with `100%`".into()),
        );
    }
    for (j, (a, n)) in stages.iter().zip(items).enumerate() {
        if matches!(a, Amount::Count(0)) || matches!(a, Amount::Percent(p) if *p <= 0.0) {
            cx.error(
                n,
                &format!("{path}.stages[{j}]"),
                "a stage of zero tasks",
                Some("stages are cumulative sizes greater than zero".into()),
            );
        }
    }
    let max_failures = r
        .get("max_failures")
        .and_then(parse_amount)
        .unwrap_or(Amount::Count(0));
    Some(Rollout {
        stages,
        max_failures,
    })
}

struct RefCx<'a> {
    step: &'a str,
    item_kind: Option<&'static str>,
    vars: &'a BTreeMap<String, Value>,
    info: &'a BTreeMap<String, StepInfo<'a>>,
    for_each: Option<String>,
}

const GROUP_ITEM: &[&str] = &["id", "name", "path"];
const DEVICE_ITEM: &[&str] = &["id", "name", "serial"];

fn check_refs(cx: &mut Cx, n: &Node, path: &str, r: &mut RefCx) {
    match &n.kind {
        Kind::Str(s) if s.contains("${{") => {
            let refs = match template::refs(s) {
                Ok(refs) => refs,
                Err(e) => {
                    cx.error(n, path, e, None);
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

fn bad_ref(parts: &[String], r: &RefCx) -> Option<(String, Option<String>)> {
    let shown = parts.join(".");
    let field = parts.get(1).map(String::as_str).unwrap_or("");
    match parts[0].as_str() {
        "item" => match r.item_kind {
            None => Some((
                format!("`{shown}` is used but step `{}` has no `for_each`", r.step),
                Some("add `for_each: <target>` to run the step once per group or device".into()),
            )),
            Some("unknown") => None,
            Some(kind) => {
                let fields = if kind == "groups" {
                    GROUP_ITEM
                } else {
                    DEVICE_ITEM
                };
                (parts.len() != 2 || !fields.contains(&field)).then(|| {
                    let help = closest(field, fields)
                        .map(|c| format!("did you mean `item.{c}`?"))
                        .unwrap_or_else(|| {
                            format!(
                                "a {} item has: {}",
                                &kind[..kind.len() - 1],
                                fields.join(", ")
                            )
                        });
                    (
                        format!(
                            "`{shown}` is not a field of a {} item",
                            &kind[..kind.len() - 1]
                        ),
                        Some(help),
                    )
                })
            }
        },
        "vars" => (parts.len() < 2 || !r.vars.contains_key(field)).then(|| {
            let names: Vec<String> = r.vars.keys().cloned().collect();
            (
                format!("`{shown}` is not defined"),
                help_names(field, &names).map(|h| {
                    if names.is_empty() {
                        "define it under `vars:`".into()
                    } else {
                        h
                    }
                }),
            )
        }),
        "target" => match &r.for_each {
            None => Some((
                format!("`{shown}` is used but step `{}` has no `for_each`", r.step),
                Some("`target.name` and `target.count` describe the `for_each` target".into()),
            )),
            Some(_) => (parts.len() != 2 || !["name", "count"].contains(&field)).then(|| {
                (
                    format!("`{shown}` is not a field of the target"),
                    Some("use `target.name` or `target.count`".into()),
                )
            }),
        },
        "steps" => {
            let ids: Vec<String> = r.info.keys().cloned().collect();
            let Some(other) = r.info.get(field) else {
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
            if !needs_transitively(r.step, field, r.info) {
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
        other => Some((
            format!("unknown template root `{other}` in `{shown}`"),
            Some("templates start with `item.`, `vars.`, `steps.` or `target.`".into()),
        )),
    }
}
