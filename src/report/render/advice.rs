//! "What to do next": concrete next steps, most urgent first, each derived from the
//! report's typed data (statuses, failure classes, HTTP statuses, reasons, the governor's
//! counters), never from message text.
//!
//! Each piece of advice is one function that looks at one kind of trouble and returns a
//! [`Line`] when the run had it; [`next_steps`] puts them in order. The failure groups
//! and rollout stops come from the view model, so the advice counts what the report
//! lists. Laying the advice out is the renderers' job.

use super::groups::Group;
use super::text::{Line, duration, tasks, times};
use super::view::{EXAMPLES, StopView};
use crate::base::FailureClass;
use crate::exec::{StopReason, TaskStatus};
use crate::report::{FailureReport, ReasonReport, Report, RunOutcome, TaskReport};

/// Concrete next steps, most urgent first.
pub fn next_steps(r: &Report, groups: &[Group], stops: &[StopView]) -> Vec<Line> {
    let bad = Bad::of(r);
    let mut out: Vec<Line> = Vec::new();
    out.extend(unknown(r));
    out.extend(interrupted(r));
    out.extend(stops.iter().map(rollout_stop));
    out.extend(unauthorized(r, &bad));
    out.extend(forbidden(&bad));
    out.extend(not_found(&bad));
    out.extend(throttled(r));
    out.extend(timeouts(&bad));
    out.extend(unreachable(&bad));
    out.extend(server_errors(&bad));
    out.extend(failed(r, groups));
    out.extend(skipped(r));
    out.extend(not_started(r));
    let clean = r.run.outcome == RunOutcome::Succeeded;
    if out.is_empty() {
        out.push(if clean {
            Line::from("Nothing: every task succeeded.")
        } else {
            Line::from("Nothing the report can point to; read ")
                .code("report.json")
                .text(" and the logs of the run.")
        });
    } else if clean {
        out.insert(
            0,
            Line::from("Every task succeeded; for a smoother next run:"),
        );
    }
    out
}

/// The failed and unknown tasks, which most advice counts.
struct Bad<'a>(Vec<&'a TaskReport>);

impl<'a> Bad<'a> {
    fn of(r: &'a Report) -> Bad<'a> {
        Bad(r
            .tasks
            .iter()
            .filter(|t| matches!(t.status, TaskStatus::Failed | TaskStatus::Unknown))
            .collect())
    }

    fn failing(&self, is: impl Fn(&FailureReport) -> bool) -> u64 {
        self.0
            .iter()
            .filter(|t| t.failure().is_some_and(&is))
            .count() as u64
    }

    fn with_status(&self, code: u16) -> u64 {
        self.failing(|f| f.http_status == Some(code))
    }

    fn with_class(&self, class: FailureClass) -> u64 {
        self.failing(|f| f.class == class)
    }
}

/// ` (`a`, `b` and 3 more)` naming the first few targets, or nothing for no tasks.
fn examples(tasks: &[&TaskReport]) -> Line {
    let mut line = Line::new();
    for (i, t) in tasks.iter().take(EXAMPLES).enumerate() {
        line = line
            .text(if i == 0 { " (" } else { ", " })
            .code(t.target.clone());
    }
    if tasks.len() > EXAMPLES {
        line.push_text(format!(" and {} more", tasks.len() - EXAMPLES));
    }
    if !tasks.is_empty() {
        line.push_text(")");
    }
    line
}

fn unknown(r: &Report) -> Option<Line> {
    let n = r.summary.unknown;
    if n == 0 {
        return None;
    }
    let unknown: Vec<&TaskReport> = r
        .tasks
        .iter()
        .filter(|t| t.status == TaskStatus::Unknown)
        .collect();
    let these = if n == 1 {
        "this target"
    } else {
        "these targets"
    };
    let line = Line::from(format!(
        "{} ended unknown: the write may have been applied without an answer reaching the engine. \
         Check {these} in the tenant (Esper console or API); ",
        tasks(n)
    ))
    .code(format!("esper-bulk run --resume {}", r.run.id))
    .text(" reads each back by its natural key before it writes, so nothing is created twice");
    Some(line.append(examples(&unknown)).text("."))
}

fn rollout_stop(stop: &StopView) -> Line {
    Line::from("A rollout stopped at its threshold in step ")
        .code(stop.stop.step.clone())
        .text(
            ": investigate the failing canary devices listed under Rollout stops before you re-run the job; \
             its later stages were skipped and nothing was sent to them",
        )
        .append(examples(&stop.failing))
        .text(".")
}

fn unauthorized(r: &Report, bad: &Bad) -> Option<Line> {
    let g = &r.governor;
    let n = bad
        .with_status(401)
        .max(g.by_status.get("401").copied().unwrap_or(0));
    (n > 0).then(|| {
        Line::from(format!(
            "The API answered 401 (unauthorized) {}: check that ",
            times(n)
        ))
        .code("ESPER_API_KEY")
        .text(" (or ")
        .code("esper.api_key_file")
        .text(") holds a valid key for ")
        .code(r.run.server.clone())
        .text(", then re-run the job.")
    })
}

fn forbidden(bad: &Bad) -> Option<Line> {
    let n = bad.with_status(403);
    (n > 0).then(|| {
        Line::from(format!(
            "{} failed with 403: the API key lacks the permission for these calls; widen its scope in the Esper console.",
            tasks(n)
        ))
    })
}

fn not_found(bad: &Bad) -> Option<Line> {
    let n = bad.with_status(404);
    (n > 0).then(|| {
        Line::from(format!(
            "{} failed with 404: check the enterprise id (",
            tasks(n)
        ))
        .code("ESPER_ENTERPRISE_ID")
        .text("), the tenant and the ids in the job file.")
    })
}

fn throttled(r: &Report) -> Option<Line> {
    let (s, g) = (&r.summary, &r.governor);
    if s.rate_limited < 10 || s.rate_limited * 10 < s.requests {
        return None;
    }
    // What the server let through: the adaptive rate can end above it after regrowing,
    // the mean includes the pauses; the lower of the two is a safe setting.
    let target = g
        .adaptive_rate
        .map_or(s.mean_rate, |a| a.min(s.mean_rate))
        .floor()
        .max(1.0);
    Some(
        Line::from(format!(
            "{} of {} requests ({:.0} %) were answered 429 and the run paused {} for them: lower ",
            s.rate_limited,
            s.requests,
            s.rate_limited as f64 * 100.0 / s.requests.max(1) as f64,
            duration(g.paused_ms)
        ))
        .code("limits.rate")
        .text(" in the job to about ")
        .code(format!("{target:.0}/s"))
        .text(", the rate the server actually sustained."),
    )
}

fn timeouts(bad: &Bad) -> Option<Line> {
    let n = bad.with_class(FailureClass::Timeout);
    (n > 0).then(|| {
        Line::from(format!("{} timed out: raise ", tasks(n)))
            .code("--timeout")
            .text(" or lower ")
            .code("limits.rate")
            .text(".")
    })
}

fn unreachable(bad: &Bad) -> Option<Line> {
    let n = bad.with_class(FailureClass::Connect);
    (n > 0).then(|| {
        Line::from(format!(
            "{} could not connect: check the base URL, proxy settings (",
            tasks(n)
        ))
        .code("HTTPS_PROXY")
        .text(") and the network.")
    })
}

fn server_errors(bad: &Bad) -> Option<Line> {
    // Unknown tasks also carry their 5xx, but re-running them blindly is what the
    // advice on unknown tasks warns against; only failed ones are safe to call transient.
    let n = bad
        .0
        .iter()
        .filter(|t| {
            t.status == TaskStatus::Failed
                && t.failure()
                    .and_then(|f| f.http_status)
                    .is_some_and(|s| s >= 500)
        })
        .count() as u64;
    let (errors, their) = if n == 1 {
        ("a server error", "its")
    } else {
        ("server errors", "their")
    };
    (n > 0).then(|| {
        Line::from(format!(
            "{} failed on {errors} (5xx) after {their} retries; these are often transient: re-run the job later.",
            tasks(n)
        ))
    })
}

fn failed(r: &Report, groups: &[Group]) -> Option<Line> {
    let n = r.summary.failed;
    if n == 0 {
        return None;
    }
    let ways = groups
        .iter()
        .filter(|g| g.status == TaskStatus::Failed)
        .count();
    Some(
        Line::from(format!(
            "{} failed in {ways} distinct {} (see What failed and why; every task is in ",
            tasks(n),
            if ways == 1 { "way" } else { "ways" }
        ))
        .code("results.csv")
        .text("): fix the cause, in the job or on the devices, then re-run the job."),
    )
}

fn skipped(r: &Report) -> Option<Line> {
    let n = r
        .tasks
        .iter()
        .filter(|t| {
            t.status == TaskStatus::Skipped
                && matches!(t.reason, Some(ReasonReport::NeedsFailed { .. }))
        })
        .count() as u64;
    let (they, need, run) = if n == 1 {
        ("it", "needs", "runs")
    } else {
        ("they", "need", "run")
    };
    (n > 0).then(|| {
        Line::from(format!(
            "{} skipped because a step {they} {need} did not succeed; {they} {run} when you re-run the job once that step succeeds.",
            tasks(n)
        ))
    })
}

/// Re-running the job would send these commands again; only resuming the run follows
/// the requests already sent.
fn interrupted(r: &Report) -> Option<Line> {
    let n = r.summary.interrupted;
    let (their, them) = if n == 1 {
        ("its", "it")
    } else {
        ("their", "them")
    };
    (n > 0).then(|| {
        Line::from(format!(
            "{} interrupted while waiting for {their} command's devices: resume with ",
            tasks(n)
        ))
        .code(format!("esper-bulk run --resume {}", r.run.id))
        .text(format!(
            " to follow {them} by request id; re-running the job would send {them} again."
        ))
    })
}

fn not_started(r: &Report) -> Option<Line> {
    let n = r.summary.not_started;
    if n == 0 {
        return None;
    }
    let why = |stop: StopReason| {
        r.tasks.iter().any(|t| {
            t.status == TaskStatus::NotStarted
                && t.reason
                    == Some(ReasonReport::NotStarted {
                        stopped: Some(stop),
                    })
        })
    };
    let them = if n == 1 { "it" } else { "them" };
    // Resuming keeps what succeeded and reads back everything else before writing;
    // re-running the job would start over (a reboot job would reboot twice).
    let mut line = Line::from(format!("{} not started: resume the run with ", tasks(n)))
        .code(format!("esper-bulk run --resume {}", r.run.id))
        .text(format!(" to finish {them} (not a new run of the job)"));
    if why(StopReason::Deadline) || r.run.outcome == RunOutcome::Deadline {
        line = line
            .text("; the run reached its deadline, so if that keeps happening raise ")
            .code("deadline")
            .text(" or split the job");
    } else if why(StopReason::Interrupted) || r.run.outcome == RunOutcome::Interrupted {
        line.push_text("; the run was interrupted");
    }
    Some(line.text("."))
}
