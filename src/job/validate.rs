//! Meaning checks: from [`RawJob`] to [`Job`], collecting every problem.
//!
//! It checks required fields, value formats (durations, rates), references between steps and
//! targets, `needs` cycles and every `${{ … }}` reference, and rejects literal API keys. It
//! never stops at the first problem. Positions for these semantic errors are given as YAML
//! paths; serde syntax errors (in `load`) carry line and column.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use serde_json::Value;

use super::model::*;
use super::raw::*;
use super::template;
use super::{Diagnostic, Diagnostics, Severity, closest};

struct Ctx<'a> {
    file: &'a str,
    diags: Vec<Diagnostic>,
    env: &'a dyn Fn(&str) -> Option<String>,
}

impl Ctx<'_> {
    fn error(&mut self, path: impl Into<String>, message: impl Into<String>, help: Option<String>) {
        self.push(Severity::Error, path, message, help);
    }
    fn warn(&mut self, path: impl Into<String>, message: impl Into<String>, help: Option<String>) {
        self.push(Severity::Warning, path, message, help);
    }
    fn push(
        &mut self,
        severity: Severity,
        path: impl Into<String>,
        message: impl Into<String>,
        help: Option<String>,
    ) {
        self.diags.push(Diagnostic {
            severity,
            file: self.file.to_string(),
            line: None,
            col: None,
            path: path.into(),
            message: message.into(),
            help,
        });
    }
    fn env_str(&mut self, path: &str, s: &str) -> Option<String> {
        match template::subst_env(s, self.env) {
            Ok(v) => Some(v),
            Err(e) => {
                self.error(
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

/// Item fields a `for_each` over groups or devices provides.
const GROUP_ITEM: &[&str] = &["id", "name", "path"];
const DEVICE_ITEM: &[&str] = &["id", "name", "serial", "alias"];

/// Validates a parsed job. Returns the job with its warnings, or every diagnostic.
pub fn validate(
    file: &str,
    raw: RawJob,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<(Job, Vec<Diagnostic>), Diagnostics> {
    let mut cx = Ctx {
        file,
        diags: Vec::new(),
        env,
    };

    match &raw.version {
        Some(Value::Number(n)) if n.as_u64() == Some(1) => {}
        Some(other) => cx.error(
            "version",
            format!("unsupported job version {other}"),
            Some("write `version: 1`".into()),
        ),
        None => cx.error(
            "version",
            "missing `version`",
            Some("start the file with `version: 1`".into()),
        ),
    }
    let name = match raw.name.as_deref().map(str::trim) {
        Some(n) if !n.is_empty() => n.to_string(),
        _ => {
            cx.error(
                "name",
                "missing job `name`",
                Some("add `name: my-job`; it names the run directory and the report".into()),
            );
            String::new()
        }
    };

    let esper = esper_settings(&mut cx, raw.esper.unwrap_or_default());
    let limits = limits(&mut cx, raw.limits.unwrap_or_default());
    let retry = retry(&mut cx, raw.retry.unwrap_or_default());
    let deadline = raw
        .deadline
        .as_ref()
        .and_then(|v| duration(&mut cx, "deadline", v));

    let mut targets = BTreeMap::new();
    for (tname, t) in raw.targets {
        if let Some(spec) = target(&mut cx, &tname, t) {
            targets.insert(tname, spec);
        }
    }
    check_unions(&mut cx, &targets);

    let step_ids: Vec<String> = raw
        .steps
        .iter()
        .map(|s| s.id.clone().unwrap_or_default())
        .collect();
    let mut steps = Vec::new();
    let mut seen = BTreeSet::new();
    for (i, s) in raw.steps.into_iter().enumerate() {
        let at = format!("steps[{i}]");
        if let Some(id) = &s.id
            && !seen.insert(id.clone())
        {
            cx.error(
                format!("{at}.id"),
                format!("step id `{id}` is used twice"),
                Some("give every step a unique id".into()),
            );
        }
        if let Some(step) = step(&mut cx, &at, s, &targets, &step_ids, &raw.vars) {
            steps.push(step);
        }
    }
    if steps.is_empty() && !cx.diags.iter().any(|d| d.path.starts_with("steps")) {
        cx.error(
            "steps",
            "the job has no steps",
            Some("add at least one step, e.g. `- id: install` with `app_install:`".into()),
        );
    }
    check_cycles(&mut cx, &steps);

    let has_errors = cx.diags.iter().any(|d| d.severity == Severity::Error);
    if has_errors {
        return Err(Diagnostics(cx.diags));
    }
    let job = Job {
        name,
        description: raw.description,
        source: file.to_string(),
        esper,
        limits,
        retry,
        deadline,
        vars: raw.vars,
        targets,
        steps,
    };
    Ok((job, cx.diags))
}

fn esper_settings(cx: &mut Ctx, e: RawEsper) -> EsperSettings {
    let mut out = EsperSettings::default();
    if e.tenant.is_some() && e.base_url.is_some() {
        cx.error(
            "esper",
            "both `tenant` and `base_url` are set",
            Some("keep one: `tenant: acme` means https://acme-api.esper.cloud/api".into()),
        );
    }
    if let Some(t) = e
        .tenant
        .as_deref()
        .and_then(|t| cx.env_str("esper.tenant", t))
    {
        if t.is_empty() || !t.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
            cx.error(
                "esper.tenant",
                format!("`{t}` is not a tenant name"),
                Some("use the console sub-domain, e.g. `acme` for acme.esper.cloud".into()),
            );
        } else {
            // Esper's published server template; the client documents the same rule.
            out.base_url = Some(format!("https://{t}-api.esper.cloud/api"));
        }
    }
    if let Some(u) = e
        .base_url
        .as_deref()
        .and_then(|u| cx.env_str("esper.base_url", u))
    {
        if !(u.starts_with("https://") || u.starts_with("http://")) {
            cx.error(
                "esper.base_url",
                format!("`{u}` is not an http(s) URL"),
                Some("e.g. https://acme-api.esper.cloud/api".into()),
            );
        } else {
            out.base_url = Some(u);
        }
    }
    if let Some(eid) = e
        .enterprise_id
        .as_deref()
        .and_then(|v| cx.env_str("esper.enterprise_id", v))
    {
        out.enterprise_id = Some(eid);
    }
    match (e.api_key, e.api_key_file) {
        (Some(_), Some(_)) => cx.error("esper", "both `api_key` and `api_key_file` are set", Some("keep one".into())),
        (Some(k), None) => match template::whole_env_ref(&k) {
            Some(name) => out.api_key = Some(KeySource::Env(name.to_string())),
            None => cx.error(
                "esper.api_key",
                "the API key is written in the job file",
                Some("never commit keys: write `api_key: ${ESPER_API_KEY}` or `api_key_file: /run/credentials/esper-bulk/key`, and revoke this key".into()),
            ),
        },
        (None, Some(f)) => {
            if let Some(f) = cx.env_str("esper.api_key_file", &f) {
                out.api_key = Some(KeySource::File(f));
            }
        }
        (None, None) => {}
    }
    out
}

fn limits(cx: &mut Ctx, l: RawLimits) -> Limits {
    let mut out = Limits::default();
    if let Some(r) = &l.rate {
        if let Some(rate) = parse_rate(r) {
            out.rate = rate;
        } else {
            cx.error("limits.rate", format!("`{}` is not a rate", show(r)), Some("write requests per unit time, e.g. `20/s`, `600/m` or `20` (per second), between 0.01/s and 10000/s".into()));
        }
    }
    if let Some(b) = &l.batch {
        match b.as_u64() {
            Some(n) if (1..=10_000).contains(&n) => out.batch = n as u32,
            _ => cx.error(
                "limits.batch",
                format!("`{}` is not a batch size", show(b)),
                Some("a whole number from 1 to 10000; 20 is the API's advice".into()),
            ),
        }
    }
    if let Some(m) = &l.max_in_flight {
        match m.as_u64() {
            Some(n) if (1..=10_000).contains(&n) => out.max_in_flight = n as u32,
            _ => cx.error(
                "limits.max_in_flight",
                format!("`{}` is not a number of requests", show(m)),
                Some("a whole number from 1 to 10000".into()),
            ),
        }
    }
    if out.batch > out.max_in_flight {
        cx.error(
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

fn retry(cx: &mut Ctx, r: RawRetry) -> RetrySettings {
    let mut out = RetrySettings::default();
    if let Some(a) = &r.attempts {
        match a.as_u64() {
            Some(n) if (1..=100).contains(&n) => out.attempts = n as u32,
            _ => cx.error(
                "retry.attempts",
                format!("`{}` is not a number of attempts", show(a)),
                Some("a whole number from 1 (no retries) to 100".into()),
            ),
        }
    }
    if let Some(d) = r
        .initial_delay
        .as_ref()
        .and_then(|v| duration(cx, "retry.initial_delay", v))
    {
        out.initial_delay = d;
    }
    if let Some(d) = r
        .max_delay
        .as_ref()
        .and_then(|v| duration(cx, "retry.max_delay", v))
    {
        out.max_delay = d;
    }
    if let Some(d) = r
        .max_retry_after
        .as_ref()
        .and_then(|v| duration(cx, "retry.max_retry_after", v))
    {
        out.max_retry_after = d;
    }
    if out.initial_delay > out.max_delay {
        cx.error(
            "retry.initial_delay",
            "initial_delay is longer than max_delay",
            Some("lower initial_delay or raise max_delay".into()),
        );
    }
    out
}

fn show(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// `20/s`, `600/m`, `36000/h` or a bare number per second.
pub fn parse_rate(v: &Value) -> Option<f64> {
    let rate = match v {
        Value::Number(n) => n.as_f64()?,
        Value::String(s) => {
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

/// `500ms`, `30s`, `50m`, `1h 30m`, or a bare number of seconds.
pub fn parse_duration(v: &Value) -> Option<Duration> {
    match v {
        Value::Number(n) => n.as_u64().map(Duration::from_secs),
        Value::String(s) => humantime::parse_duration(s.trim()).ok(),
        _ => None,
    }
    .filter(|d| *d <= Duration::from_secs(30 * 24 * 3600))
}

fn duration(cx: &mut Ctx, path: &str, v: &Value) -> Option<Duration> {
    let d = parse_duration(v);
    if d.is_none() {
        cx.error(
            path,
            format!("`{}` is not a duration", show(v)),
            Some("write e.g. `500ms`, `30s`, `50m` or `1h 30m` (at most 30 days)".into()),
        );
    }
    d
}

fn target(cx: &mut Ctx, name: &str, t: RawTarget) -> Option<TargetSpec> {
    let at = format!("targets.{name}");
    let set = [t.groups.is_some(), t.devices.is_some(), t.union.is_some()]
        .iter()
        .filter(|b| **b)
        .count();
    if set != 1 {
        cx.error(&at, format!("target `{name}` must have exactly one of `groups`, `devices`, `union` ({set} given)"), Some("e.g. `groups: { name: \"Stores/*\" }`".into()));
        return None;
    }
    if let Some(g) = t.groups {
        let sel = GroupSelector {
            names: g.name.map(OneOrMany::into_vec).unwrap_or_default(),
            ids: g.id.map(OneOrMany::into_vec).unwrap_or_default(),
            all: g.all.unwrap_or(false),
            exclude: g.exclude,
        };
        if sel.names.is_empty() && sel.ids.is_empty() && !sel.all {
            cx.error(
                format!("{at}.groups"),
                "the group selection is empty",
                Some(
                    "select with `name:` (exact or glob over the path), `id:` or `all: true`"
                        .into(),
                ),
            );
        }
        for (i, p) in sel.names.iter().chain(sel.exclude.iter()).enumerate() {
            if let Err(e) = globset::Glob::new(p) {
                cx.error(
                    format!("{at}.groups"),
                    format!("`{p}` is not a valid glob: {e}"),
                    Some("use `*` within one level and `**` across levels".into()),
                );
                let _ = i;
            }
        }
        return Some(TargetSpec::Groups(sel));
    }
    if let Some(d) = t.devices {
        let csv = match (d.csv, d.column) {
            (Some(f), Some(c)) => Some((f, c)),
            (Some(f), None) => Some((f, "serial".to_string())),
            (None, Some(_)) => {
                cx.error(
                    format!("{at}.devices.column"),
                    "`column` without `csv`",
                    Some("add `csv: file.csv` or remove `column`".into()),
                );
                None
            }
            (None, None) => None,
        };
        let sel = DeviceSelector {
            group: d.group,
            name: d.name,
            serial: d.serial,
            state: d.state,
            tags: d.tags,
            csv,
            ids: d.ids.unwrap_or_default(),
        };
        if sel == DeviceSelector::default() {
            cx.error(format!("{at}.devices"), "the device selection is empty", Some("filter with `group`, `name`, `serial`, `state`, `tags`, or give `csv` or `ids`".into()));
        }
        return Some(TargetSpec::Devices(sel));
    }
    t.union.map(TargetSpec::Union)
}

fn check_unions(cx: &mut Ctx, targets: &BTreeMap<String, TargetSpec>) {
    let names: Vec<&str> = targets.keys().map(String::as_str).collect();
    for (name, spec) in targets {
        if let TargetSpec::Union(members) = spec {
            let mut kinds = BTreeSet::new();
            for m in members {
                match targets.get(m) {
                    None => cx.error(
                        format!("targets.{name}.union"),
                        format!("unknown target `{m}`"),
                        help_names(m, &names),
                    ),
                    Some(TargetSpec::Union(_)) => cx.error(
                        format!("targets.{name}.union"),
                        format!("`{m}` is itself a union"),
                        Some("list the groups or devices targets directly".into()),
                    ),
                    Some(s) => {
                        kinds.insert(s.kind_name());
                    }
                }
            }
            if kinds.len() > 1 {
                cx.error(
                    format!("targets.{name}.union"),
                    "a union mixes groups and devices",
                    Some("make one union of groups and another of devices".into()),
                );
            }
        }
    }
}

fn help_names(word: &str, names: &[&str]) -> Option<String> {
    match closest(word, names) {
        Some(c) => Some(format!("did you mean `{c}`?")),
        None if names.is_empty() => Some("define it under `targets:`".into()),
        None => Some(format!("defined: {}", names.join(", "))),
    }
}

/// The item kind (`groups`/`devices`) a target yields.
fn target_kind(targets: &BTreeMap<String, TargetSpec>, name: &str) -> Option<&'static str> {
    match targets.get(name)? {
        TargetSpec::Union(m) => m.first().and_then(|f| target_kind(targets, f)),
        s => Some(s.kind_name()),
    }
}

fn step(
    cx: &mut Ctx,
    at: &str,
    s: RawStep,
    targets: &BTreeMap<String, TargetSpec>,
    step_ids: &[String],
    vars: &BTreeMap<String, Value>,
) -> Option<Step> {
    let id = match s.id.as_deref() {
        Some(id)
            if !id.is_empty()
                && id
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') =>
        {
            id.to_string()
        }
        Some(id) => {
            cx.error(
                format!("{at}.id"),
                format!("`{id}` is not a step id"),
                Some("use letters, digits, `-` and `_`".into()),
            );
            return None;
        }
        None => {
            cx.error(
                at,
                "step without `id`",
                Some(
                    "add `id: some-name`; ids name steps in `needs`, templates and reports".into(),
                ),
            );
            return None;
        }
    };
    let ids: Vec<&str> = step_ids.iter().map(String::as_str).collect();
    for n in &s.needs {
        if !step_ids.contains(n) {
            cx.error(
                format!("{at}.needs"),
                format!("step `{id}` needs unknown step `{n}`"),
                help_names(n, &ids),
            );
        } else if *n == id {
            cx.error(
                format!("{at}.needs"),
                format!("step `{id}` needs itself"),
                Some(format!("cycle: {id} -> {id}")),
            );
        }
    }
    let target_names: Vec<&str> = targets.keys().map(String::as_str).collect();
    let item_kind = match &s.for_each {
        None => None,
        Some(t) => match target_kind(targets, t) {
            Some(k) => Some(k),
            None => {
                cx.error(
                    format!("{at}.for_each"),
                    format!("unknown target `{t}`"),
                    help_names(t, &target_names),
                );
                None
            }
        },
    };
    if s.rollout.is_some() {
        cx.warn(
            format!("{at}.rollout"),
            "`rollout` is not supported yet and is ignored",
            Some(
                "staged rollouts arrive with the executor work; split the step by target for now"
                    .into(),
            ),
        );
    }
    for (key, present) in [
        ("app_upload", s.app_upload.is_some()),
        ("app_uninstall", s.app_uninstall.is_some()),
        ("group_move", s.group_move.is_some()),
        ("content_upload", s.content_upload.is_some()),
        ("request", s.request.is_some()),
    ] {
        if present {
            cx.error(
                format!("{at}.{key}"),
                format!("operation `{key}` is not supported by this version"),
                Some("supported: app_install, command, alarm_rule".into()),
            );
        }
    }
    let ops = [
        s.app_install.is_some(),
        s.alarm_rule.is_some(),
        s.command.is_some(),
    ]
    .iter()
    .filter(|b| **b)
    .count();
    if ops > 1 {
        cx.error(
            at,
            format!("step `{id}` has {ops} operations"),
            Some("one operation per step; split it into several steps joined by `needs`".into()),
        );
        return None;
    }
    let refs_ok = |cx: &mut Ctx, path: &str, s: &str| check_refs(cx, path, s, item_kind, vars, &id);
    let op = if let Some(a) = s.app_install {
        let path = format!("{at}.app_install");
        let to = require_target(cx, &path, a.to, targets, &target_names)?;
        let version = match (a.version, a.package, a.version_code) {
            (Some(v), None, None) => {
                refs_ok(cx, &format!("{path}.version"), &v);
                VersionRef::Id(v)
            }
            (None, Some(p), Some(c)) => VersionRef::Package {
                package: p,
                version_code: show(&c),
            },
            _ => {
                cx.error(&path, "app_install needs `version` (a version id) or `package` with `version_code`", Some("e.g. `version: ${{ steps.upload.version_id }}` or `package: com.acme.kiosk` + `version_code: 420`".into()));
                return None;
            }
        };
        let wait = wait(cx, &path, a.wait);
        StepOp::AppInstall { to, version, wait }
    } else if let Some(c) = s.command {
        let path = format!("{at}.command");
        let to = require_target(cx, &path, c.to, targets, &target_names)?;
        let name = match c.name {
            Some(n) if !n.trim().is_empty() => n.trim().to_ascii_uppercase(),
            _ => {
                cx.error(
                    format!("{path}.name"),
                    "command without `name`",
                    Some("e.g. `name: REBOOT` or `name: UPDATE_HEARTBEAT`".into()),
                );
                return None;
            }
        };
        let args = c.args.unwrap_or(Value::Object(Default::default()));
        let mut strings = Vec::new();
        template::strings(&args, &mut strings);
        for st in strings {
            refs_ok(cx, &format!("{path}.args"), &st);
        }
        let wait = wait(cx, &path, c.wait);
        StepOp::Command {
            to,
            name,
            args,
            wait,
        }
    } else if let Some(r) = s.alarm_rule {
        alarm_rule(cx, &format!("{at}.alarm_rule"), r, &refs_ok)?
    } else {
        if ops == 0 && !cx.diags.iter().any(|d| d.path.starts_with(at)) {
            cx.error(
                at,
                format!("step `{id}` has no operation"),
                Some("add one of: app_install, command, alarm_rule".into()),
            );
        }
        return None;
    };
    Some(Step {
        id,
        needs: s.needs,
        for_each: s.for_each,
        op,
    })
}

fn require_target(
    cx: &mut Ctx,
    path: &str,
    to: Option<String>,
    targets: &BTreeMap<String, TargetSpec>,
    names: &[&str],
) -> Option<String> {
    match to {
        Some(t) if targets.contains_key(&t) => Some(t),
        Some(t) => {
            cx.error(
                format!("{path}.to"),
                format!("unknown target `{t}`"),
                help_names(&t, names),
            );
            None
        }
        None => {
            cx.error(
                format!("{path}.to"),
                "missing `to`",
                Some("name a target defined under `targets:`".into()),
            );
            None
        }
    }
}

fn wait(cx: &mut Ctx, path: &str, w: Option<RawWait>) -> Option<Duration> {
    let w = w?;
    match w.timeout {
        Some(t) => duration(cx, &format!("{path}.wait.timeout"), &t),
        None => Some(Duration::from_secs(30 * 60)),
    }
}

type RefCheck<'a> = dyn Fn(&mut Ctx, &str, &str) + 'a;

fn alarm_rule(cx: &mut Ctx, path: &str, r: RawAlarmRule, refs_ok: &RefCheck) -> Option<StepOp> {
    let mut missing = Vec::new();
    if r.name.as_deref().is_none_or(|n| n.trim().is_empty()) {
        missing.push("name");
    }
    if r.metric.is_none() {
        missing.push("metric");
    }
    if r.conditions.is_none() {
        missing.push("conditions");
    }
    if r.realert_interval.is_none() {
        missing.push("realert_interval");
    }
    for m in &missing {
        cx.error(
            format!("{path}.{m}"),
            format!("alarm_rule is missing `{m}`"),
            Some("alarm rules need name, metric, conditions and realert_interval".into()),
        );
    }
    if let Some(c) = &r.conditions {
        conditions(cx, &format!("{path}.conditions"), c);
    }
    if let Some(v) = &r.realert_interval
        && v.as_i64().is_none_or(|n| n < 0)
        && !v.as_str().is_some_and(|s| s.contains("${{"))
    {
        cx.error(
            format!("{path}.realert_interval"),
            format!("`{}` is not a whole number", show(v)),
            Some("the interval between repeated alerts, e.g. 3600".into()),
        );
    }
    if r.groups.is_some() && r.devices.is_some() {
        cx.error(
            path,
            "an alarm rule cannot target both groups and devices",
            Some("Esper links a rule to devices only or to groups only".into()),
        );
    }
    let on_exists = match r.on_exists.as_deref() {
        None => OnExists::Update,
        Some("skip") => OnExists::Skip,
        Some("update") => OnExists::Update,
        Some("fail") => OnExists::Fail,
        Some(other) => {
            cx.error(
                format!("{path}.on_exists"),
                format!("`{other}` is not a valid on_exists"),
                Some("one of: skip, update, fail".into()),
            );
            OnExists::Update
        }
    };
    let name = r.name.clone().unwrap_or_default();
    let mut body = serde_json::Map::new();
    body.insert("name".into(), Value::String(name.clone()));
    if let Some(d) = r.description {
        body.insert("description".into(), Value::String(d));
    }
    body.insert("metric".into(), Value::String(r.metric.unwrap_or_default()));
    body.insert("conditions".into(), r.conditions.unwrap_or(Value::Null));
    body.insert(
        "realert_interval".into(),
        r.realert_interval.unwrap_or(Value::Null),
    );
    for (k, v) in [
        ("repeat_times", r.repeat_times),
        ("is_active", r.is_active.map(Value::Bool)),
    ] {
        if let Some(v) = v {
            body.insert(k.into(), v);
        }
    }
    for (k, v) in [
        ("action_emails", r.action_emails),
        ("actions", r.actions),
        ("groups", r.groups),
        ("devices", r.devices),
    ] {
        if let Some(v) = v {
            body.insert(
                k.into(),
                Value::Array(v.into_iter().map(Value::String).collect()),
            );
        }
    }
    if let Some(ch) = r.alert_channels {
        body.insert("alert_channels".into(), Value::Array(ch));
    }
    let body = Value::Object(body);
    let mut strings = Vec::new();
    template::strings(&body, &mut strings);
    for s in strings {
        refs_ok(cx, path, &s);
    }
    missing.is_empty().then_some(StepOp::AlarmRule {
        name,
        body,
        on_exists,
    })
}

fn conditions(cx: &mut Ctx, path: &str, c: &Value) {
    let Value::Object(map) = c else {
        cx.error(
            path,
            "`conditions` must be a map",
            Some("e.g. `{ comparator: LessThanThreshold, value: 15, unit: Percent }`".into()),
        );
        return;
    };
    const COMPARATORS: &[&str] = &[
        "GreaterThanThreshold",
        "GreaterThanOrEqualToThreshold",
        "LessThanThreshold",
        "LessThanOrEqualToThreshold",
        "Frequency",
    ];
    const UNITS: &[&str] = &["Percent", "Count"];
    const KEYS: &[&str] = &["comparator", "value", "unit", "toggle_state"];
    for k in map.keys() {
        if !KEYS.contains(&k.as_str()) {
            cx.error(
                format!("{path}.{k}"),
                format!("unknown condition key `{k}`"),
                closest(k, KEYS)
                    .map(|c| format!("did you mean `{c}`?"))
                    .or(Some(format!("valid keys: {}", KEYS.join(", ")))),
            );
        }
    }
    for (key, allowed) in [("comparator", COMPARATORS), ("unit", UNITS)] {
        match map.get(key).and_then(Value::as_str) {
            Some(v) if allowed.contains(&v) || v.contains("${{") => {}
            Some(v) => cx.error(
                format!("{path}.{key}"),
                format!("`{v}` is not a valid {key}"),
                Some(
                    closest(v, allowed)
                        .map(|c| format!("did you mean `{c}`?"))
                        .unwrap_or_else(|| format!("one of: {}", allowed.join(", "))),
                ),
            ),
            None => cx.error(
                format!("{path}.{key}"),
                format!("conditions need `{key}`"),
                Some(format!("one of: {}", allowed.join(", "))),
            ),
        }
    }
    if !map
        .get("value")
        .is_some_and(|v| v.is_number() || v.as_str().is_some_and(|s| s.contains("${{")))
    {
        cx.error(
            format!("{path}.value"),
            "conditions need a numeric `value`",
            Some("e.g. `value: 15`".into()),
        );
    }
}

fn check_refs(
    cx: &mut Ctx,
    path: &str,
    s: &str,
    item_kind: Option<&str>,
    vars: &BTreeMap<String, Value>,
    step: &str,
) {
    let refs = match template::refs(s) {
        Ok(r) => r,
        Err(e) => {
            cx.error(path, e, None);
            return;
        }
    };
    for r in refs {
        let shown = r.join(".");
        match r[0].as_str() {
            "item" => match item_kind {
                None => cx.error(
                    path,
                    format!("`{shown}` is used but step `{step}` has no `for_each`"),
                    Some("add `for_each: <target>` to fan the step out per group or device".into()),
                ),
                Some(kind) => {
                    let fields = if kind == "groups" {
                        GROUP_ITEM
                    } else {
                        DEVICE_ITEM
                    };
                    if r.len() != 2 || !fields.contains(&r[1].as_str()) {
                        let f = r.get(1).map(String::as_str).unwrap_or("");
                        cx.error(
                            path,
                            format!(
                                "`{shown}` is not a field of a {} item",
                                &kind[..kind.len() - 1]
                            ),
                            Some(
                                closest(f, fields)
                                    .map(|c| format!("did you mean `item.{c}`?"))
                                    .unwrap_or_else(|| format!("fields: {}", fields.join(", "))),
                            ),
                        );
                    }
                }
            },
            "vars" => {
                let names: Vec<&str> = vars.keys().map(String::as_str).collect();
                if r.len() < 2 || !vars.contains_key(&r[1]) {
                    let v = r.get(1).map(String::as_str).unwrap_or("");
                    cx.error(
                        path,
                        format!("`{shown}` is not defined"),
                        help_names(v, &names)
                            .map(|h| h.replace("under `targets:`", "under `vars:`")),
                    );
                }
            }
            "steps" => cx.error(
                path,
                format!("`{shown}`: step outputs are not supported by this version"),
                Some("give the value directly or via `vars`".into()),
            ),
            other => cx.error(
                path,
                format!("unknown template root `{other}` in `{shown}`"),
                Some("templates start with `item.`, `vars.`, `steps.` or `target.`".into()),
            ),
        }
    }
}

fn check_cycles(cx: &mut Ctx, steps: &[Step]) {
    let index: BTreeMap<&str, &Step> = steps.iter().map(|s| (s.id.as_str(), s)).collect();
    // Colour-marking DFS; on a back edge the stack holds the cycle.
    fn visit<'a>(
        id: &'a str,
        index: &BTreeMap<&'a str, &'a Step>,
        state: &mut BTreeMap<&'a str, u8>,
        stack: &mut Vec<&'a str>,
    ) -> Option<Vec<String>> {
        match state.get(id) {
            Some(2) => return None,
            Some(1) => {
                let from = stack.iter().position(|s| *s == id).unwrap_or(0);
                let mut cycle: Vec<String> = stack[from..].iter().map(|s| s.to_string()).collect();
                cycle.push(id.to_string());
                return Some(cycle);
            }
            _ => {}
        }
        state.insert(id, 1);
        stack.push(id);
        if let Some(step) = index.get(id) {
            for n in &step.needs {
                if n != id
                    && let Some(c) = visit(n, index, state, stack)
                {
                    return Some(c);
                }
            }
        }
        stack.pop();
        state.insert(id, 2);
        None
    }
    let mut state = BTreeMap::new();
    for s in steps {
        let mut stack = Vec::new();
        if let Some(cycle) = visit(&s.id, &index, &mut state, &mut stack) {
            cx.error(
                "steps",
                format!(
                    "steps depend on each other in a cycle: {}",
                    cycle.join(" -> ")
                ),
                Some("remove one of these `needs` entries".into()),
            );
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::load;
    use super::*;

    fn env(n: &str) -> Option<String> {
        match n {
            "ESPER_ENTERPRISE_ID" => Some("e-1".into()),
            _ => None,
        }
    }

    const GOOD: &str = r#"
version: 1
name: demo
esper:
  base_url: http://127.0.0.1:1/api
  enterprise_id: ${ESPER_ENTERPRISE_ID}
  api_key: ${ESPER_API_KEY}
limits: { rate: 600/m, batch: 10, max_in_flight: 50 }
retry: { attempts: 3, initial_delay: 100ms, max_delay: 2s }
deadline: 50m
vars: { threshold: 15 }
targets:
  stores: { groups: { name: "Stores/*", exclude: ["Stores/Lab"] } }
steps:
  - id: install
    app_install: { to: stores, package: com.acme.kiosk, version_code: 410, wait: { timeout: 5m } }
  - id: alarm
    needs: [install]
    for_each: stores
    alarm_rule:
      name: "Battery low - ${{ item.name }}"
      metric: battery_level
      conditions: { comparator: LessThanThreshold, value: "${{ vars.threshold }}", unit: Percent }
      realert_interval: 3600
      groups: ["${{ item.id }}"]
"#;

    #[test]
    fn good_job_loads() {
        let (job, warnings) = load("good.yaml", GOOD, &env).unwrap();
        assert!(warnings.is_empty());
        assert_eq!(
            job.limits,
            Limits {
                rate: 10.0,
                batch: 10,
                max_in_flight: 50
            }
        );
        assert_eq!(job.retry.attempts, 3);
        assert_eq!(job.deadline, Some(Duration::from_secs(3000)));
        assert_eq!(job.esper.enterprise_id.as_deref(), Some("e-1"));
        assert_eq!(
            job.esper.api_key,
            Some(KeySource::Env("ESPER_API_KEY".into()))
        );
        assert_eq!(job.steps.len(), 2);
    }

    fn errors(text: &str) -> Vec<String> {
        match load("bad.yaml", text, &env) {
            Ok(_) => vec![],
            Err(d) => {
                d.0.iter()
                    .map(|d| format!("{}: {}", d.path, d.message))
                    .collect()
            }
        }
    }

    #[test]
    fn every_problem_is_reported() {
        let bad = GOOD
            .replace("600/m", "fast")
            .replace("100ms", "soon")
            .replace("realert_interval: 3600", "")
            .replace("needs: [install]", "needs: [instal]")
            .replace("item.name", "item.nmae")
            .replace("api_key: ${ESPER_API_KEY}", "api_key: abcd1234");
        let e = errors(&bad);
        assert!(e.iter().any(|m| m.starts_with("limits.rate")), "{e:?}");
        assert!(
            e.iter().any(|m| m.starts_with("retry.initial_delay")),
            "{e:?}"
        );
        assert!(e.iter().any(|m| m.contains("realert_interval")), "{e:?}");
        assert!(
            e.iter().any(|m| m.contains("unknown step `instal`")),
            "{e:?}"
        );
        assert!(e.iter().any(|m| m.contains("item.nmae")), "{e:?}");
        assert!(e.iter().any(|m| m.contains("API key is written")), "{e:?}");
    }

    #[test]
    fn cycles_show_the_chain() {
        let text = GOOD.replace("app_install:", "needs: [alarm]\n    app_install:");
        let e = errors(&text);
        assert!(
            e.iter().any(|m| m.contains("install -> alarm -> install")),
            "{e:?}"
        );
    }

    #[test]
    fn unknown_keys_and_syntax_have_positions() {
        let d = load("x.yaml", "version: 1\nname: x\nlimts: {}\n", &env).unwrap_err();
        assert_eq!(d.0[0].line, Some(3));
        assert_eq!(d.0[0].help.as_deref(), Some("did you mean `limits`?"));
        let d = load("x.yaml", "version: 1\nname: [\n", &env).unwrap_err();
        assert!(d.0[0].line.is_some());
    }

    #[test]
    fn rates_and_durations() {
        assert_eq!(parse_rate(&Value::from("20/s")), Some(20.0));
        assert_eq!(parse_rate(&Value::from("1200/m")), Some(20.0));
        assert_eq!(parse_rate(&Value::from(5)), Some(5.0));
        assert_eq!(parse_rate(&Value::from("0/s")), None);
        assert_eq!(parse_rate(&Value::from("20/fortnight")), None);
        assert_eq!(
            parse_duration(&Value::from("1h 30m")),
            Some(Duration::from_secs(5400))
        );
        assert_eq!(
            parse_duration(&Value::from(90)),
            Some(Duration::from_secs(90))
        );
        assert_eq!(parse_duration(&Value::from("forever")), None);
    }
}
