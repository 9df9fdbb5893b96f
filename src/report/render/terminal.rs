//! The few lines a person sees on the terminal at the end of a run
//! ([`Report::summary_text`]).
//!
//! Plain text with no escaping: it goes to a terminal, not into a file format. Each task's
//! problem reads as in every other renderer ([`TaskReport::error_text`]).

use std::fmt::Write as _;

use super::groups::next_line;
use super::text::count;

/// Causes listed at the end of a run; the rest are in the report.
const MAX_CAUSES: usize = 5;
use crate::exec::TaskStatus;
use crate::report::{Report, TaskReport};

impl Report {
    /// The few lines printed at the end of a run.
    pub fn summary_text(&self) -> String {
        let s = &self.summary;
        let mut out = String::new();
        let _ = writeln!(
            out,
            "job {} — {} in {:.1}s",
            self.run.job,
            self.run.outcome,
            self.run.elapsed_ms as f64 / 1000.0
        );
        let interrupted = if s.interrupted > 0 {
            format!(", {} interrupted", s.interrupted)
        } else {
            String::new()
        };
        let _ = writeln!(
            out,
            "tasks: {} succeeded, {} failed, {} skipped, {} unknown, {} not started{interrupted} (of {})",
            s.succeeded, s.failed, s.skipped, s.unknown, s.not_started, s.tasks
        );
        if s.devices_pending > 0 {
            let _ = writeln!(
                out,
                "devices: {} still pending in {} when the wait ended (counted, not failed; listed in results.csv)",
                count(s.devices_pending, "device", "devices"),
                count(s.tasks_with_pending, "task", "tasks"),
            );
        }
        let _ = writeln!(
            out,
            "requests: {} ({} retries, {} answered 429), {:.1} req/s; in-flight window {}..{}",
            s.requests,
            s.retries,
            s.rate_limited,
            s.mean_rate,
            self.governor.window_min,
            self.governor.window_max
        );
        for st in &self.steps {
            let parts: Vec<String> = st
                .by_status
                .iter()
                .map(|(k, v)| format!("{v} {k}"))
                .collect();
            let _ = writeln!(
                out,
                "  step {:<20} {:<12} {}",
                st.id,
                st.kind,
                parts.join(", ")
            );
        }
        let bad: Vec<&TaskReport> = self
            .tasks
            .iter()
            .filter(|t| !matches!(t.status, TaskStatus::Succeeded | TaskStatus::NotStarted))
            .collect();
        for stop in &self.run.rollout_stops {
            let _ = writeln!(out, "  {stop}");
        }
        for t in bad.iter().take(10) {
            let _ = writeln!(
                out,
                "  {} {} [{}]: {}",
                t.status.as_str(),
                t.target,
                t.step,
                t.error_text().as_deref().unwrap_or("-")
            );
        }
        if bad.len() > 10 {
            let _ = writeln!(out, "  … and {} more in the report", bad.len() - 10);
        }
        let causes = crate::report::causes::causes(&self.tasks);
        if !causes.is_empty() {
            let _ = writeln!(out, "by cause:");
        }
        for c in causes.iter().take(MAX_CAUSES) {
            let what = match (c.class, c.http_status) {
                (Some(class), Some(s)) => format!("{}, HTTP {s}", class.as_str()),
                (Some(class), None) => class.as_str().to_string(),
                _ => c.reason.replace('_', " "),
            };
            let devices = if c.devices > 0 {
                format!(", {}", count(c.devices, "device", "devices"))
            } else {
                String::new()
            };
            let next = next_line(c.next, &c.step, &c.examples, c.devices, &self.run.id);
            let _ = writeln!(
                out,
                "  {} {} in step {} ({what}{devices}): {}",
                count(c.tasks, "task", "tasks"),
                c.status.as_str(),
                c.step,
                next.plain()
            );
        }
        if causes.len() > MAX_CAUSES {
            let _ = writeln!(
                out,
                "  … and {} more causes in report.json",
                causes.len() - MAX_CAUSES
            );
        }
        if !self.run.limit.is_empty() {
            let _ = writeln!(out, "limit: {}", self.run.limit.join(", "));
        }
        out
    }
}
