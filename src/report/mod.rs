//! Reports: fold a run's outcomes into a [`Report`] and render it.
//!
//! A report reads outcomes, the plan and the governor's counters only; it never runs
//! anything. Tasks are listed in plan order. `report.json` is versioned
//! ([`REPORT_FORMAT`]); the text summary is what a person sees at the end of a run.

pub mod render;

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::exec::{Attempt, GovernorStats, Outcome, RunOutput, StopReason, TaskStatus};
use crate::plan::Plan;

/// The `report.json` schema version.
pub const REPORT_FORMAT: u32 = 1;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Report {
    pub format: u32,
    pub run: RunInfo,
    pub summary: Summary,
    pub governor: GovernorStats,
    pub steps: Vec<StepReport>,
    pub tasks: Vec<TaskReport>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct RunInfo {
    pub id: String,
    pub job: String,
    /// `sha256:` of the frozen plan: two reports with the same hash ran the same requests.
    #[serde(default)]
    pub plan_hash: String,
    pub source: String,
    pub server: String,
    pub started_at: String,
    pub finished_at: String,
    pub elapsed_ms: u64,
    /// `succeeded`, `failed`, `stopped` (a rollout threshold), `interrupted` or `incomplete`.
    pub outcome: String,
    pub exit_code: u8,
    /// Rollouts stopped by `max_failures`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub thresholds: Vec<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Summary {
    pub tasks: u64,
    pub succeeded: u64,
    pub failed: u64,
    pub skipped: u64,
    pub unknown: u64,
    pub not_started: u64,
    pub requests: u64,
    pub retries: u64,
    pub rate_limited: u64,
    /// Requests per second over the whole run.
    pub mean_rate: f64,
    /// The busiest second of the run (requests in one timeline sample per second).
    #[serde(default)]
    pub peak_rate: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct StepReport {
    pub id: String,
    pub kind: String,
    pub tasks: u64,
    pub by_status: BTreeMap<String, u64>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TaskReport {
    pub id: u32,
    pub step: String,
    pub target: String,
    pub status: TaskStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub attempts: Vec<Attempt>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<Value>,
    /// The devices of a task that covers several (a command to a device list, a move),
    /// so `results.csv` can give each its own row.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub devices: Vec<DeviceRef>,
}

/// A device of a multi-device task.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct DeviceRef {
    pub id: String,
    pub name: String,
}

impl Report {
    /// Builds the report of a run that finished now.
    pub fn build(
        id: &str,
        plan: &Plan,
        out: &RunOutput,
        gov: GovernorStats,
        started_at: jiff::Timestamp,
    ) -> Report {
        Report::build_at(id, plan, out, gov, started_at, jiff::Timestamp::now())
    }

    /// Builds the report of a run that finished at `finished_at` (rebuilding from a journal).
    pub fn build_at(
        id: &str,
        plan: &Plan,
        out: &RunOutput,
        gov: GovernorStats,
        started_at: jiff::Timestamp,
        finished_at: jiff::Timestamp,
    ) -> Report {
        let mut s = Summary {
            tasks: out.outcomes.len() as u64,
            ..Default::default()
        };
        for o in &out.outcomes {
            match o.status {
                TaskStatus::Succeeded => s.succeeded += 1,
                TaskStatus::Failed => s.failed += 1,
                TaskStatus::Skipped => s.skipped += 1,
                TaskStatus::Unknown => s.unknown += 1,
                TaskStatus::NotStarted => s.not_started += 1,
            }
            s.retries += o.attempts.len().saturating_sub(1) as u64;
        }
        s.requests = gov.requests;
        s.rate_limited = gov.rate_limited;
        let secs = out.elapsed.as_secs_f64();
        // A run shorter than a second did not sustain its burst rate; do not report it as one.
        s.mean_rate = (gov.requests as f64 / secs.max(1.0) * 10.0).round() / 10.0;
        // Samples cover one second, or more once a long run's timeline was coarsened.
        s.peak_rate = gov
            .timeline
            .windows(2)
            .map(|w| w[0].requests as f64 / f64::from(w[1].t.saturating_sub(w[0].t).max(1)))
            .chain(gov.timeline.last().map(|l| l.requests as f64))
            .fold(0.0, f64::max);
        let (outcome, exit_code) = verdict(&s, out.stopped, !out.thresholds.is_empty());
        let steps = plan
            .steps
            .iter()
            .map(|st| {
                let mut by_status = BTreeMap::new();
                for t in st.tasks() {
                    *by_status
                        .entry(out.outcomes[t.0 as usize].status.as_str().to_string())
                        .or_default() += 1;
                }
                StepReport {
                    id: st.id.clone(),
                    kind: st.kind.clone(),
                    tasks: st.task_count as u64,
                    by_status,
                }
            })
            .collect();
        let tasks = out.outcomes.iter().map(|o| task_report(plan, o)).collect();
        Report {
            format: REPORT_FORMAT,
            run: RunInfo {
                id: id.to_string(),
                job: plan.job.clone(),
                plan_hash: plan_hash(plan),
                source: plan.source.clone(),
                server: plan.server.base_url.clone(),
                started_at: started_at.to_string(),
                finished_at: finished_at.to_string(),
                elapsed_ms: out.elapsed.as_millis() as u64,
                outcome: outcome.to_string(),
                exit_code,
                thresholds: out.thresholds.clone(),
            },
            summary: s,
            governor: gov,
            steps,
            tasks,
        }
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self)
            .unwrap_or_else(|e| format!("{{\"error\": \"cannot render report: {e}\"}}"))
    }

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
        let _ = writeln!(
            out,
            "tasks: {} succeeded, {} failed, {} skipped, {} unknown, {} not started (of {})",
            s.succeeded, s.failed, s.skipped, s.unknown, s.not_started, s.tasks
        );
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
        for t in &self.run.thresholds {
            let _ = writeln!(out, "  {t}");
        }
        for t in bad.iter().take(10) {
            let _ = writeln!(
                out,
                "  {} {} [{}]: {}",
                t.status.as_str(),
                t.target,
                t.step,
                t.error.as_deref().unwrap_or("-")
            );
        }
        if bad.len() > 10 {
            let _ = writeln!(out, "  … and {} more in the report", bad.len() - 10);
        }
        out
    }
}

impl Report {
    /// Prometheus text format for node_exporter's textfile collector: last run time,
    /// outcome, task counts by status, requests, 429s and duration, labelled by job.
    pub fn prometheus(&self) -> String {
        let job = self.run.job.replace('\\', "\\\\").replace('"', "\\\"");
        let mut out = String::new();
        let mut metric = |name: &str, help: &str, kind: &str, rows: Vec<(String, f64)>| {
            let _ = writeln!(
                out,
                "# HELP esper_bulk_{name} {help}\n# TYPE esper_bulk_{name} {kind}"
            );
            for (labels, v) in rows {
                let _ = writeln!(out, "esper_bulk_{name}{{job=\"{job}\"{labels}}} {v}");
            }
        };
        let finished = self
            .run
            .finished_at
            .parse::<jiff::Timestamp>()
            .map(|t| t.as_second() as f64)
            .unwrap_or(0.0);
        metric(
            "last_run_timestamp_seconds",
            "When the last run finished.",
            "gauge",
            vec![(String::new(), finished)],
        );
        metric(
            "last_run_duration_seconds",
            "How long the last run took.",
            "gauge",
            vec![(String::new(), self.run.elapsed_ms as f64 / 1000.0)],
        );
        metric(
            "last_run_exit_code",
            "Exit code of the last run (0 ok, 1 failed tasks, 3 threshold, 4 incomplete, 130 interrupted).",
            "gauge",
            vec![(String::new(), self.run.exit_code as f64)],
        );
        let outcomes = [
            "succeeded",
            "failed",
            "stopped",
            "incomplete",
            "interrupted",
        ];
        metric(
            "last_run_outcome",
            "1 for the outcome of the last run, 0 for the others.",
            "gauge",
            outcomes
                .iter()
                .map(|o| {
                    (
                        format!(",outcome=\"{o}\""),
                        f64::from(u8::from(self.run.outcome == *o)),
                    )
                })
                .collect(),
        );
        let s = &self.summary;
        let by_status = [
            ("succeeded", s.succeeded),
            ("failed", s.failed),
            ("skipped", s.skipped),
            ("unknown", s.unknown),
            ("not_started", s.not_started),
        ];
        metric(
            "last_run_tasks",
            "Tasks of the last run by status.",
            "gauge",
            by_status
                .iter()
                .map(|(k, v)| (format!(",status=\"{k}\""), *v as f64))
                .collect(),
        );
        metric(
            "last_run_requests",
            "Requests the last run sent.",
            "gauge",
            vec![(String::new(), s.requests as f64)],
        );
        metric(
            "last_run_rate_limited",
            "Requests of the last run answered 429.",
            "gauge",
            vec![(String::new(), s.rate_limited as f64)],
        );
        metric(
            "last_run_retries",
            "Retries in the last run.",
            "gauge",
            vec![(String::new(), s.retries as f64)],
        );
        out
    }
}

fn task_report(plan: &Plan, o: &Outcome) -> TaskReport {
    let (step, target) = match plan.task(o.task) {
        Some(t) => (t.step.clone(), t.label()),
        None => (String::new(), format!("task {}", o.task)),
    };
    TaskReport {
        id: o.task.0,
        step,
        target,
        status: o.status,
        error: o.error.clone(),
        attempts: o.attempts.clone(),
        result: o.result.clone(),
        devices: plan
            .task_devices(o.task)
            .into_iter()
            .map(|d| DeviceRef {
                id: d.id.clone(),
                name: d.name.clone(),
            })
            .collect(),
    }
}

/// `sha256:<hex>` of the plan as serialized (what `plan --out` writes, without indentation).
pub fn plan_hash(plan: &Plan) -> String {
    use sha2::{Digest, Sha256};
    let bytes = serde_json::to_vec(plan).unwrap_or_default();
    let digest = Sha256::digest(&bytes);
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256:{hex}")
}

/// The run's outcome word and exit code.
pub fn verdict(s: &Summary, stopped: Option<StopReason>, threshold: bool) -> (&'static str, u8) {
    use crate::exit;
    match stopped {
        Some(StopReason::Interrupted) => ("interrupted", exit::INTERRUPTED),
        Some(StopReason::Deadline) => ("incomplete", exit::INCOMPLETE),
        None if threshold => ("stopped", exit::THRESHOLD),
        None if s.failed + s.unknown + s.skipped > 0 => ("failed", exit::FAILED_TASKS),
        None if s.not_started > 0 => ("incomplete", exit::INCOMPLETE),
        None => ("succeeded", exit::OK),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verdicts() {
        let ok = Summary {
            tasks: 3,
            succeeded: 3,
            ..Default::default()
        };
        assert_eq!(verdict(&ok, None, false), ("succeeded", 0));
        let bad = Summary {
            tasks: 3,
            succeeded: 2,
            failed: 1,
            ..Default::default()
        };
        assert_eq!(verdict(&bad, None, false), ("failed", 1));
        assert_eq!(verdict(&bad, None, true), ("stopped", 3));
        assert_eq!(verdict(&ok, Some(StopReason::Interrupted), true).1, 130);
        assert_eq!(verdict(&ok, Some(StopReason::Deadline), false).1, 4);
    }
}
