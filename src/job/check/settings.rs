//! The job-wide settings: `version`, `name`, `description`, `esper:`, `limits:`,
//! `retry:`, `deadline` and `vars:`.
//!
//! Owns what the tables cannot say about them: the supported version, values that exclude
//! each other (`tenant` and `base_url`, `api_key` and `api_key_file`), numeric ranges and
//! orderings (`batch` within `max_in_flight`, `initial_delay` within `max_delay`), and that
//! an API key is never written into the file. Types were already checked by the shape
//! pass, so values that fail to parse here are skipped, not reported twice. Targets and
//! steps are left to their own passes.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::Value;

use crate::job::model::*;
use crate::job::node::{Kind, Node};
use crate::job::template;

use super::Cx;
use super::values::{ATTEMPTS_RANGE, IN_FLIGHT_RANGE, MAX_NAME_CHARS, parse_duration, parse_rate};

/// Everything of the job apart from its targets and steps.
pub(super) struct Settings {
    pub name: String,
    pub description: Option<String>,
    pub esper: EsperSettings,
    pub limits: Limits,
    pub retry: RetrySettings,
    pub deadline: Option<Duration>,
    pub vars: BTreeMap<String, Value>,
}

pub(super) fn settings(cx: &mut Cx, root: &Node) -> Settings {
    check_version(cx, root);
    let name = name(cx, root);
    let esper = root.get("esper").map(|e| esper(cx, e)).unwrap_or_default();
    let limits = root
        .get("limits")
        .map(|l| limits(cx, l))
        .unwrap_or_default();
    let retry = root.get("retry").map(|r| retry(cx, r)).unwrap_or_default();
    let vars = root
        .get("vars")
        .and_then(Node::as_map)
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| Some((k.scalar_text()?, v.to_json())))
                .collect()
        })
        .unwrap_or_default();
    Settings {
        name,
        description: root.get("description").and_then(Node::scalar_text),
        esper,
        limits,
        retry,
        deadline: deadline(cx, root),
        vars,
    }
}

/// `deadline`, which must leave time to send something: a zero deadline stops a run
/// before its first request, and a plan carrying one is refused.
fn deadline(cx: &mut Cx, root: &Node) -> Option<Duration> {
    let n = root.get("deadline")?;
    let d = parse_duration(n)?;
    if d.is_zero() {
        cx.error(
            n,
            "deadline",
            "the deadline is 0",
            Some(
                "give the run time to finish, e.g. `deadline: 50m`, or leave `deadline` out".into(),
            ),
        );
    }
    Some(d)
}

fn check_version(cx: &mut Cx, root: &Node) {
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
}

fn name(cx: &mut Cx, root: &Node) -> String {
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
    let chars = name.chars().count();
    if let Some(n) = root.get("name")
        && chars > MAX_NAME_CHARS
    {
        cx.error(
            n,
            "name",
            format!("the job name is {chars} characters long, more than {MAX_NAME_CHARS}"),
            Some(
                "shorten it: the name becomes part of run directory and lock file names; put the detail in `description`"
                    .into(),
            ),
        );
    }
    name
}

fn esper(cx: &mut Cx, e: &Node) -> EsperSettings {
    EsperSettings {
        base_url: base_url(cx, e),
        enterprise_id: e
            .get("enterprise_id")
            .and_then(|v| cx.env(v, "esper.enterprise_id")),
        api_key: api_key(cx, e),
    }
}

/// The base URL of tenant `tenant` (Esper's published server template), or `None` when it
/// is not a tenant name: a non-empty run of ASCII letters, digits and `-`, so that nothing
/// in it can move the host, port or path. The one rule for `esper.tenant`, `--tenant` and
/// `ESPER_TENANT`.
pub fn tenant_base_url(tenant: &str) -> Option<String> {
    let ok = !tenant.is_empty()
        && tenant
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-');
    ok.then(|| format!("https://{tenant}-api.esper.cloud/api"))
}

/// `base_url` as written, else the one `tenant` names.
fn base_url(cx: &mut Cx, e: &Node) -> Option<String> {
    let mut out = None;
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
        match tenant_base_url(&tenant) {
            Some(url) => out = Some(url),
            None => cx.error(
                t,
                "esper.tenant",
                format!("`{tenant}` is not a tenant name"),
                Some("use the console sub-domain, e.g. `acme` for acme.esper.cloud".into()),
            ),
        }
    }
    if let Some(u) = e.get("base_url")
        && let Some(url) = cx.env(u, "esper.base_url")
    {
        if url.starts_with("https://") || url.starts_with("http://") {
            out = Some(url);
        } else {
            cx.error(
                u,
                "esper.base_url",
                format!("`{url}` is not an http(s) URL"),
                Some("e.g. https://acme-api.esper.cloud/api".into()),
            );
        }
    }
    out
}

/// Where the key comes from. Never the key itself: a key in the file would end up in
/// version control, so only `${NAME}` (kept as the name) or a file path are accepted.
fn api_key(cx: &mut Cx, e: &Node) -> Option<KeySource> {
    match (e.get("api_key"), e.entry("api_key_file")) {
        (Some(_), Some((k, _))) => {
            cx.error(
                k,
                "esper.api_key_file",
                "both `api_key` and `api_key_file` are set",
                Some("keep one".into()),
            );
            None
        }
        (Some(k), None) => match k.as_str().and_then(template::whole_env_ref) {
            Some(name) => Some(KeySource::Env(name.to_string())),
            None => {
                cx.secrets.push(k.span);
                cx.error(
                    k,
                    "esper.api_key",
                    "the API key is written in the job file",
                    Some("never commit keys: write `api_key: ${ESPER_API_KEY}` or `api_key_file: /run/credentials/esper-bulk/key`, and revoke this key".into()),
                );
                None
            }
        },
        (None, Some((_, f))) => cx.env(f, "esper.api_key_file").map(KeySource::File),
        (None, None) => None,
    }
}

fn int_in(
    cx: &mut Cx,
    n: Option<&Node>,
    path: &str,
    range: &std::ops::RangeInclusive<u32>,
    help: &str,
) -> Option<u32> {
    let n = n?;
    let (lo, hi) = (i64::from(*range.start()), i64::from(*range.end()));
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
    if let Some(r) = l.get("device_list_rate").and_then(parse_rate) {
        out.device_list_rate = Some(r);
    }
    if let Some(b) = int_in(
        cx,
        l.get("batch"),
        "limits.batch",
        &IN_FLIGHT_RANGE,
        "20 is the API's own advice",
    ) {
        out.batch = b;
    }
    out.expected_processes = int_in(
        cx,
        l.get("expected_processes"),
        "limits.expected_processes",
        &(1..=1000),
        "the number of hosts and jobs that share the tenant, e.g. 3",
    );
    if let Some(m) = int_in(
        cx,
        l.get("max_in_flight"),
        "limits.max_in_flight",
        &IN_FLIGHT_RANGE,
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
        &ATTEMPTS_RANGE,
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
