//! The Prometheus metrics of a run ([`Report::prometheus`]), for node_exporter's textfile
//! collector.
//!
//! Only numbers and the job's label: a dashboard reads the outcome and the counts here
//! and finds the reasons in the report files.

use std::fmt::Write as _;

use crate::report::Report;

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
                        f64::from(u8::from(self.run.outcome.word() == *o)),
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
            ("interrupted", s.interrupted),
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
