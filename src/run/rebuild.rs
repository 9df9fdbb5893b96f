//! Reports from a run directory alone: rebuilding a [`Report`] from the frozen plan and
//! the journal (`esper-bulk report`), and the report files ([`Format`]) that both a run
//! and a rebuild write.
//!
//! The journal only records; what a missing outcome or a missing `finish` line means for
//! a report is decided here. Building and rendering reports is [`crate::report`]'s.

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use crate::exec::{GovernorStats, Outcome, Reason, RolloutStop, RunOutput, StopReason, TaskStatus};
use crate::journal::{self, Replay};
use crate::plan::Plan;
use crate::report::{Report, RunOutcome, SegmentReport, render};

use super::RunError;
use super::notice::{Notice, Notices};

/// Rebuilds a run's report from its plan and journal alone. Tasks with no recorded
/// outcome are `not_started`: because the run stopped, when the journal says it did.
pub fn rebuild_report(run_id: &str, plan: &Plan, replay: &Replay) -> Report {
    let unrecorded = match replay.finish.as_ref().and_then(|f| f.stopped) {
        Some(s) => Reason::NotStarted(Some(s)),
        None => Reason::NotRecorded,
    };
    let outcomes: Vec<Outcome> = plan
        .task_ids()
        .map(|id| {
            replay.outcomes.get(&id.0).cloned().unwrap_or_else(|| {
                Outcome::not_run(id, TaskStatus::NotStarted, unrecorded.clone(), 0)
            })
        })
        .collect();
    let (started, finished, elapsed, stopped, rollout_stops, gov) = match &replay.finish {
        Some(f) => (
            f.started_at.parse().ok(),
            f.finished_at.parse().ok(),
            f.elapsed_ms,
            f.stopped,
            f.rollout_stops
                .iter()
                .cloned()
                .map(RolloutStop::from)
                .collect(),
            GovernorStats::from(f.governor.clone()),
        ),
        // A run that never finished cleanly (killed) was stopped; say so.
        None => (
            None,
            None,
            0,
            Some(StopReason::Interrupted),
            Vec::new(),
            GovernorStats::default(),
        ),
    };
    let out = RunOutput {
        outcomes,
        stopped,
        rollout_stops,
        elapsed: Duration::from_millis(elapsed),
    };
    let epoch = jiff::Timestamp::UNIX_EPOCH;
    // A killed run has no finish line: its real start is its first `start` line.
    let first_start = replay
        .segments
        .first()
        .and_then(|s| s.started_at.parse().ok());
    let report = Report::build_at(
        run_id,
        plan,
        &out,
        gov,
        started.or(first_start).unwrap_or(epoch),
        finished.or(first_start).unwrap_or(epoch),
    );
    let mut report = with_history(report, replay);
    if replay.segments.last().is_some_and(|s| s.finish.is_none()) {
        report.run.outcome = RunOutcome::Killed;
        report.run.exit_code = RunOutcome::Killed.exit_code();
    }
    report
}

/// The report with its run's segments from the journal: the first start and every
/// resumption, each with its end (or "killed"), exit code and the tasks it finished.
pub(super) fn with_history(report: Report, replay: &Replay) -> Report {
    let segments = replay
        .segments
        .iter()
        .map(|s| {
            let (finished_at, elapsed_ms, ended, exit_code) = match &s.finish {
                Some(f) => (
                    Some(f.finished_at.clone()),
                    Some(f.elapsed_ms),
                    match f.stopped {
                        Some(StopReason::Interrupted) => "interrupted",
                        Some(StopReason::Deadline) => "deadline",
                        None => "finished",
                    },
                    f.exit_code,
                ),
                None => (None, None, "killed", None),
            };
            SegmentReport {
                started_at: s.started_at.clone(),
                finished_at,
                elapsed_ms,
                ended: ended.to_string(),
                exit_code,
                tasks_finished: s.outcomes,
            }
        })
        .collect();
    report.with_segments(segments, &replay.task_segment)
}

/// Rebuilds the report of the run in `dir` (a `runs/<run id>` directory); journal lines
/// left out and an unsealed plan are told to `notices`.
pub fn rebuild(dir: &Path, notices: &Notices) -> Result<Report, RunError> {
    let plan = super::dir::run_plan(dir, notices)?;
    let path = dir.join("journal.jsonl");
    let replay = journal::read(&path)?;
    if !replay.warnings.is_empty() {
        notices.send(Notice::JournalLines {
            path,
            lines: replay.warnings.clone(),
        });
    }
    let id = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    Ok(rebuild_report(&id, &plan, &replay))
}

/// A report file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// `report.json`, the record; the others are renderings of it.
    Json,
    Markdown,
    Junit,
    Csv,
    Html,
}

impl Format {
    pub const ALL: [Format; 5] = [
        Format::Json,
        Format::Markdown,
        Format::Junit,
        Format::Csv,
        Format::Html,
    ];

    pub fn file_name(self) -> &'static str {
        match self {
            Format::Json => "report.json",
            Format::Markdown => "report.md",
            Format::Junit => "report.xml",
            Format::Csv => "results.csv",
            Format::Html => "report.html",
        }
    }

    pub fn render(self, r: &Report) -> String {
        match self {
            Format::Json => r.to_json(),
            Format::Markdown => render::markdown(r),
            Format::Junit => render::junit(r),
            Format::Csv => render::csv(r),
            Format::Html => render::html(r),
        }
    }
}

/// `json`, `md`, `xml` (or `junit`), `csv`, `html`: the names `--format` takes.
impl FromStr for Format {
    type Err = RunError;
    fn from_str(s: &str) -> Result<Format, RunError> {
        Ok(match s {
            "json" => Format::Json,
            "md" => Format::Markdown,
            "xml" | "junit" => Format::Junit,
            "csv" => Format::Csv,
            "html" => Format::Html,
            other => return Err(RunError::UnknownFormat(other.to_string())),
        })
    }
}

/// Writes one report file into `dir` atomically, returning its path.
pub fn write_report(dir: &Path, report: &Report, format: Format) -> Result<PathBuf, RunError> {
    let path = dir.join(format.file_name());
    crate::util::atomic_write(&path, format.render(report).as_bytes()).map_err(|source| {
        RunError::Write {
            path: path.clone(),
            source,
        }
    })?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn format_names_round_trip_to_file_names() {
        let names: Vec<&str> = ["json", "md", "xml", "junit", "csv", "html"]
            .iter()
            .map(|n| n.parse::<Format>().unwrap().file_name())
            .collect();
        assert_eq!(
            names,
            [
                "report.json",
                "report.md",
                "report.xml",
                "report.xml",
                "results.csv",
                "report.html"
            ]
        );
        let err = "pdf".parse::<Format>().unwrap_err();
        assert_eq!(
            err.to_string(),
            "unknown report format `pdf`; use json, md, xml, csv or html"
        );
    }
}
