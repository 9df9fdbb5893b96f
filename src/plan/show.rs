//! The plan as text, for people reviewing a job before it runs: targets with a sample of
//! their items, steps with their fan-out and rollout stages, the request estimate and,
//! on request, every write the plan would send.
//!
//! Pure: a [`Plan`] in, a `String` out. Printing it, and deciding when to, is the
//! command line's business; the JSON form is the plan's own serialization. The plan names
//! requests by [`Endpoint`]; how one is written as `METHOD /path` comes from the caller
//! through [`Paths`], since paths belong to the client.

use std::fmt::Write as _;
use std::time::Duration;

use std::collections::BTreeMap;

use super::{Endpoint, Fanout, ItemKind, OpTemplate, Plan, WriteSpec};
use crate::base::count;

/// How requests are written for people, as `METHOD /path`: the client's path table, seen
/// from a plan that holds none.
pub trait Paths {
    /// The endpoint with its placeholders (`{enterprise_id}`, `{id}`) kept, as the
    /// estimate lists it.
    fn template(&self, endpoint: &Endpoint) -> String;
    /// The write as it goes to `enterprise_id`, query included; an id the plan does not
    /// know stays a placeholder.
    fn write(&self, w: &WriteSpec, enterprise_id: &str) -> String;
}

/// `export devices of stores (all devices) to <run dir>/exports/x.csv: 1,000 rows, 11 reads
/// (~1s at 20/s), installdevices per version`: what an export reads and what it costs.
fn export_line(e: &super::ExportPlan, step: &str, rate: f64) -> String {
    let spec = &e.spec;
    let of = match &spec.target {
        Some(t) => format!(" of {t}"),
        None if matches!(
            spec.what,
            crate::job::ExportWhat::Devices | crate::job::ExportWhat::Installed
        ) =>
        {
            " of every device".to_string()
        }
        None => String::new(),
    };
    let file = spec
        .file
        .clone()
        .unwrap_or_else(|| format!("<run dir>/exports/{step}.{}", spec.format.extension()));
    let reads: u64 = e.requests.values().sum();
    let rows = e
        .rows
        .map(|n| format!("{}, ", count(n, "row", "rows")))
        .unwrap_or_default();
    let secs = (reads as f64 / rate).ceil() as u64;
    let method = e
        .method
        .map(|m| format!(", by {}", m.describe()))
        .unwrap_or_default();
    let since = match spec.since {
        Some(crate::job::Since::LastRun) => ", since the last successful run".to_string(),
        Some(crate::job::Since::Ago(d)) => format!(", since {} ago", humantime::format_duration(d)),
        None => String::new(),
    };
    format!(
        "export {}{of} as {} to {file}: {rows}{} (~{} at {rate}/s){method}{since}; reads only",
        spec.what.as_str(),
        spec.format.extension(),
        count(reads, "read", "reads"),
        humantime::format_duration(Duration::from_secs(secs.max(1))),
    )
}

/// The text `esper-bulk plan` prints; `show_requests` adds every write (method, path,
/// body) in task order.
pub fn plan_text(p: &Plan, show_requests: bool, paths: &dyn Paths) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "plan for job `{}` against {} (enterprise {})",
        p.job, p.server.base_url, p.server.enterprise_id
    );
    if !p.limit.is_empty() {
        let pats: Vec<String> = p.limit.iter().map(|l| format!("`{l}`")).collect();
        let _ = writeln!(
            out,
            "limit: {} (targets narrowed to what it matches)",
            pats.join(", ")
        );
    }
    for (name, t) in &p.targets {
        let n = t.items.len() as u64;
        let kind = match t.kind {
            ItemKind::Group => count(n, "group", "groups"),
            ItemKind::Device => count(n, "device", "devices"),
        };
        if t.items.is_empty() {
            // Resolution refuses empty selections; only a limit leaves one.
            let _ = writeln!(out, "target {name}: {kind} (none left by the limit)");
            continue;
        }
        let sample: Vec<&str> = t.items.iter().take(3).map(|i| i.label()).collect();
        let more = if t.items.len() > 3 { ", …" } else { "" };
        let _ = writeln!(out, "target {name}: {kind} ({}{more})", sample.join(", "));
    }
    // Webhooks by their place and format only: a URL is a secret.
    for (i, n) in p.notify.iter().enumerate() {
        let on: Vec<&str> = n.on.iter().map(|o| o.as_str()).collect();
        let _ = writeln!(
            out,
            "notify: webhook {} ({}) on {}",
            i + 1,
            n.format.as_str(),
            on.join(", ")
        );
    }
    let _ = writeln!(out, "steps:");
    for s in &p.steps {
        let needs = if s.needs.is_empty() {
            String::new()
        } else {
            let per_item: Vec<&str> = s
                .resolved_needs
                .iter()
                .filter(|n| n.per_item)
                .map(|n| p.steps[n.step].id.as_str())
                .collect();
            let names: Vec<String> = s
                .needs
                .iter()
                .map(|n| {
                    if per_item.contains(&n.as_str()) {
                        format!("{n} per item")
                    } else {
                        n.clone()
                    }
                })
                .collect();
            format!(", after {}", names.join(", "))
        };
        let fan = match &s.fanout {
            Fanout::Single => "once".to_string(),
            Fanout::PerItem { target } => format!("once per item of {target}"),
            Fanout::Chunks { target, size } => match p.targets.get(target).map(|t| t.kind) {
                Some(ItemKind::Device) => format!("one per {size} devices of {target}"),
                _ => format!("one per group of {target}"),
            },
        };
        let _ = writeln!(
            out,
            "  {:<20} {:<15} {:>7} {} ({fan}{needs})",
            s.id,
            s.kind,
            s.task_count,
            if s.task_count == 1 { "task " } else { "tasks" }
        );
        if s.actions.is_some() {
            changes_lines(&mut out, p, s);
        }
        if let Some(w) = wait_line(&s.op) {
            let _ = writeln!(out, "  {:<20} {w}", "");
        }
        if let OpTemplate::Export(e) = &s.op {
            let _ = writeln!(out, "  {:<20} {}", "", export_line(e, &s.id, p.limits.rate));
        }
        if let Some(r) = &s.rollout {
            let stages: Vec<String> = r.stage_ends.iter().map(|e| e.to_string()).collect();
            let _ = writeln!(
                out,
                "  {:<20} rollout: stages end at task {} of {}; stop when failures exceed {}",
                "",
                stages.join(", "),
                s.task_count,
                r.max_failures
            );
        }
    }
    let _ = writeln!(
        out,
        "requests (estimated; command polls are a lower bound):"
    );
    // Sorted and merged by how they print: a raw request may be written just like a named
    // endpoint, and old plan files list every request as written.
    let mut routes: BTreeMap<String, u64> = BTreeMap::new();
    for (endpoint, n) in &p.estimate.requests {
        *routes.entry(paths.template(endpoint)).or_default() += n;
    }
    for (route, n) in &routes {
        let _ = writeln!(out, "  {n:>9}  {route}");
    }
    let _ = writeln!(
        out,
        "total {} requests, about {} at {}/s{}",
        p.estimate.total_requests,
        time_range(&p.estimate),
        p.limits.rate,
        p.deadline_ms
            .map(|d| format!(" (deadline {})", humantime::format_duration(d)))
            .unwrap_or_default()
    );
    if show_requests {
        let _ = writeln!(out, "writes (nothing is sent by `plan`):");
        for id in p.task_ids() {
            let Some(t) = p.task(id) else { continue };
            for w in planned_writes(&t) {
                let note = w
                    .note
                    .as_ref()
                    .map(|n| format!("  # {n}"))
                    .unwrap_or_default();
                let _ = writeln!(
                    out,
                    "  {} [{}] {} {}{note}",
                    t.id,
                    t.step,
                    paths.write(&w, &p.server.enterprise_id),
                    serde_json::to_string(&w.body).unwrap_or_default()
                );
            }
        }
    }
    out
}

/// Tasks listed per kind of change before the rest are only counted.
const CHANGES_SHOWN: usize = 20;

/// A step's tasks as a diff against live state, Terraform-style: `+` create, `~` update
/// with `field: old → new`, `!` conflict; unchanged and skipped ones only counted.
fn changes_lines(out: &mut String, p: &Plan, s: &super::PlanStep) {
    use super::Action;
    let (_, per_step) = super::diff::changes(p);
    let c = per_step.get(&s.id).copied().unwrap_or_default();
    let mut parts = Vec::new();
    for (n, what) in [
        (c.create, "to create"),
        (c.update, "to update"),
        (c.unchanged, "unchanged"),
        (c.skip, "skipped (exist)"),
        (c.conflict, "in conflict"),
        (c.send, "decided when run"),
    ] {
        if n > 0 {
            parts.push(format!("{n} {what}"));
        }
    }
    let _ = writeln!(out, "  {:<20} changes: {}", "", parts.join(", "));
    let mut shown = 0;
    let mut hidden = 0;
    for id in s.tasks() {
        let Some(t) = p.task(id) else { continue };
        let line = match &t.action {
            Some(Action::Create) => format!("+ {} {}", t.id, t.label()),
            Some(Action::Update { changes, .. }) => {
                let fields: Vec<String> = changes
                    .iter()
                    .map(|c| format!("{}: {} → {}", c.field, compact(&c.old), compact(&c.new)))
                    .collect();
                format!("~ {} {} ({})", t.id, t.label(), fields.join("; "))
            }
            Some(Action::Conflict { id: rule }) => {
                format!(
                    "! {} {} (exists as {rule}; on_exists: fail)",
                    t.id,
                    t.label()
                )
            }
            _ => continue,
        };
        if shown < CHANGES_SHOWN {
            let _ = writeln!(out, "      {line}");
            shown += 1;
        } else {
            hidden += 1;
        }
    }
    if hidden > 0 {
        let _ = writeln!(
            out,
            "      … and {hidden} more (`plan --json` lists every task's action)"
        );
    }
}

/// A JSON value on one line, long ones cut.
fn compact(v: &serde_json::Value) -> String {
    let s = serde_json::to_string(v).unwrap_or_default();
    if s.chars().count() > 60 {
        let cut: String = s.chars().take(57).collect();
        format!("{cut}…")
    } else {
        s
    }
}

/// The writes a task will really send: a create or a patch as the snapshot decided, none
/// for an unchanged, skipped or conflicting one; every possible write where it decided
/// nothing.
fn planned_writes(t: &super::Task) -> Vec<WriteSpec> {
    use super::Action;
    let all = t.op.writes();
    match &t.action {
        Some(Action::Create) if matches!(t.op, super::Operation::AlarmRule { .. }) => all
            .into_iter()
            .filter(|w| w.endpoint == Endpoint::CreateAlarmRule)
            .map(|mut w| {
                w.note = None;
                w
            })
            .collect(),
        Some(Action::Update { id, .. }) if matches!(t.op, super::Operation::AlarmRule { .. }) => {
            all.into_iter()
                .filter(|w| w.endpoint == Endpoint::PatchAlarmRule)
                .map(|mut w| {
                    w.id = Some(id.clone());
                    w.note = None;
                    w
                })
                .collect()
        }
        Some(Action::Unchanged { .. } | Action::Skip { .. } | Action::Conflict { .. }) => {
            Vec::new()
        }
        Some(Action::Create | Action::Update { .. } | Action::Send) | None => all,
    }
}

/// What a followed command waits for and what counts as its success, in words.
fn wait_line(op: &OpTemplate) -> Option<String> {
    let OpTemplate::Command {
        wait_ms: Some(timeout),
        tolerance: t,
        verify,
        ..
    } = op
    else {
        return None;
    };
    let allowed = match (t.max_device_failures, t.success) {
        (Some(0), _) | (None, None) => "every device succeeds".to_string(),
        (Some(1), _) => "at most 1 device fails".to_string(),
        (Some(n), _) => format!("at most {n} devices fail"),
        (None, Some(p)) => format!("at least {p}% of its devices do not fail"),
    };
    let pending = if t.pending_fails {
        "devices still pending then fail"
    } else {
        "devices still pending then are reported, not failed"
    };
    let verified = if *verify {
        "; then the installs are verified (a device that reports success without the version counts as failed)"
    } else {
        ""
    };
    Some(format!(
        "wait: up to {} per task; a task succeeds when {allowed}; {pending}{verified}",
        humantime::format_duration(*timeout)
    ))
}

/// `about 40s`, or `40s to 10m 40s` when command waits may add time: the best case sends
/// every request at the rate budget, the worst lets every wait run to its timeout.
fn time_range(e: &super::Estimate) -> String {
    let best = Duration::from_secs(e.seconds.ceil() as u64);
    let worst = Duration::from_secs(e.max_seconds.ceil() as u64);
    if worst > best {
        format!(
            "{} to {} (waiting for devices)",
            humantime::format_duration(best),
            humantime::format_duration(worst)
        )
    } else {
        humantime::format_duration(best).to_string()
    }
}
