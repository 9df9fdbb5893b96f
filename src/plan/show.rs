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

/// The text `esper-bulk plan` prints; `show_requests` adds every write (method, path,
/// body) in task order.
pub fn plan_text(p: &Plan, show_requests: bool, paths: &dyn Paths) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "plan for job `{}` against {} (enterprise {})",
        p.job, p.server.base_url, p.server.enterprise_id
    );
    for (name, t) in &p.targets {
        let n = t.items.len() as u64;
        let kind = match t.kind {
            ItemKind::Group => count(n, "group", "groups"),
            ItemKind::Device => count(n, "device", "devices"),
        };
        let sample: Vec<&str> = t.items.iter().take(3).map(|i| i.label()).collect();
        let more = if t.items.len() > 3 { ", …" } else { "" };
        let _ = writeln!(out, "target {name}: {kind} ({}{more})", sample.join(", "));
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
        if let Some(w) = wait_line(&s.op) {
            let _ = writeln!(out, "  {:<20} {w}", "");
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
            for w in t.op.writes() {
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

/// What a followed command waits for and what counts as its success, in words.
fn wait_line(op: &OpTemplate) -> Option<String> {
    let OpTemplate::Command {
        wait_ms: Some(timeout),
        tolerance: t,
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
    Some(format!(
        "wait: up to {} per task; a task succeeds when {allowed}; {pending}",
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
