//! What a webhook receives when a run ends: the [`NotifySummary`] (posted as JSON) and the
//! one Slack message made from it ([`NotifySummary::slack_text`]).
//!
//! Made from the finished [`Report`] alone, so it says what the report says; sending it,
//! and keeping the webhook's URL secret, is `run::notify`'s.

use std::fmt::Write as _;

use serde::Serialize;

use super::render::next_line_text;
use super::{CauseReport, Report, RunOutcome};

/// Causes a notification names; the rest are in the report.
pub const TOP_CAUSES: usize = 3;

/// The summary a webhook receives.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct NotifySummary {
    pub job: String,
    pub run_id: String,
    pub outcome: RunOutcome,
    pub exit_code: u8,
    pub counts: NotifyCounts,
    pub elapsed_ms: u64,
    /// The largest causes of tasks that did not succeed, with their next action.
    pub top_causes: Vec<CauseReport>,
    /// Where `report.json` is.
    pub report: String,
}

/// The run's tasks by status.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct NotifyCounts {
    pub tasks: u64,
    pub succeeded: u64,
    pub failed: u64,
    pub skipped: u64,
    pub unknown: u64,
    pub not_started: u64,
    pub interrupted: u64,
}

impl NotifySummary {
    pub fn of(r: &Report, report_path: &str) -> NotifySummary {
        let s = &r.summary;
        NotifySummary {
            job: r.run.job.clone(),
            run_id: r.run.id.clone(),
            outcome: r.run.outcome,
            exit_code: r.run.exit_code,
            counts: NotifyCounts {
                tasks: s.tasks,
                succeeded: s.succeeded,
                failed: s.failed,
                skipped: s.skipped,
                unknown: s.unknown,
                not_started: s.not_started,
                interrupted: s.interrupted,
            },
            elapsed_ms: r.run.elapsed_ms,
            top_causes: super::causes::causes(&r.tasks)
                .into_iter()
                .take(TOP_CAUSES)
                .collect(),
            report: report_path.to_string(),
        }
    }

    /// The message of a `format: slack` webhook, in Slack's mrkdwn with its three
    /// characters (`&`, `<`, `>`) escaped.
    pub fn slack_text(&self) -> String {
        let c = &self.counts;
        let mut out = String::new();
        let _ = write!(
            out,
            "esper-bulk: job `{}` {} (exit {}) in {:.1}s: {} succeeded, {} failed, {} skipped, {} unknown, {} not started of {} tasks",
            self.job,
            self.outcome.word(),
            self.exit_code,
            self.elapsed_ms as f64 / 1000.0,
            c.succeeded,
            c.failed,
            c.skipped,
            c.unknown,
            c.not_started,
            c.tasks
        );
        for cause in &self.top_causes {
            let what = match (cause.class, cause.http_status) {
                (Some(class), Some(s)) => format!("{}, HTTP {s}", class.as_str()),
                (Some(class), None) => class.as_str().to_string(),
                _ => cause.reason.replace('_', " "),
            };
            let _ = write!(
                out,
                "\n• {} {} in step `{}` ({what}): {}",
                crate::base::count(cause.tasks, "task", "tasks"),
                cause.status.as_str(),
                cause.step,
                next_line_text(cause, &self.run_id)
            );
        }
        let _ = write!(out, "\nrun `{}`; report: {}", self.run_id, self.report);
        slack_escape(&out)
    }
}

fn slack_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slack_text_escapes_its_control_characters() {
        assert_eq!(slack_escape("a <b> & c"), "a &lt;b&gt; &amp; c");
    }
}
