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
    let mut report = rebuild_report(&id, &plan, &replay);
    // Webhooks are called once, by the live run; a rebuilt report keeps what they answered.
    report.notifications = earlier_notifications(&dir.join(Format::Json.file_name()));
    Ok(report)
}

/// The `notifications` of the `report.json` a run wrote, if it wrote one that reads.
fn earlier_notifications(path: &Path) -> Vec<crate::report::NotificationReport> {
    #[derive(serde::Deserialize)]
    struct Notified {
        #[serde(default)]
        notifications: Vec<crate::report::NotificationReport>,
    }
    crate::util::read_text(path, super::load::MAX_REPORT_BYTES)
        .ok()
        .and_then(|t| serde_json::from_str::<Notified>(&t).ok())
        .map(|n| n.notifications)
        .unwrap_or_default()
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
    /// `devices.csv`: one row per device of the tasks over devices.
    Devices,
}

impl Format {
    pub const ALL: [Format; 6] = [
        Format::Json,
        Format::Markdown,
        Format::Junit,
        Format::Csv,
        Format::Html,
        Format::Devices,
    ];

    pub fn file_name(self) -> &'static str {
        match self {
            Format::Json => "report.json",
            Format::Markdown => "report.md",
            Format::Junit => "report.xml",
            Format::Csv => "results.csv",
            Format::Html => "report.html",
            Format::Devices => "devices.csv",
        }
    }

    pub fn render(self, r: &Report) -> String {
        match self {
            Format::Json => r.to_json(),
            Format::Markdown => render::markdown(r),
            Format::Junit => render::junit(r),
            Format::Csv => render::csv(r),
            Format::Html => render::html(r),
            Format::Devices => render::devices_csv(r),
        }
    }
}

/// `json`, `md`, `xml` (or `junit`), `csv`, `html`, `devices`: the names `--format` takes.
impl FromStr for Format {
    type Err = RunError;
    fn from_str(s: &str) -> Result<Format, RunError> {
        Ok(match s {
            "json" => Format::Json,
            "md" => Format::Markdown,
            "xml" | "junit" => Format::Junit,
            "csv" => Format::Csv,
            "html" => Format::Html,
            "devices" => Format::Devices,
            other => return Err(RunError::UnknownFormat(other.to_string())),
        })
    }
}

/// Writes one report file into `dir` atomically, returning its path.
pub fn write_report(dir: &Path, report: &Report, format: Format) -> Result<PathBuf, RunError> {
    write_report_with(dir, report, format, &crate::util::atomic_write)
}

/// How a file is written: [`crate::util::atomic_write`], or a stand-in in tests.
pub(super) type Writer = dyn Fn(&Path, &[u8]) -> std::io::Result<()>;

fn write_report_with(
    dir: &Path,
    report: &Report,
    format: Format,
    write: &Writer,
) -> Result<PathBuf, RunError> {
    let path = dir.join(format.file_name());
    write(&path, format.render(report).as_bytes()).map_err(|source| RunError::Write {
        path: path.clone(),
        source,
    })?;
    Ok(path)
}

/// What writing a finished run's report files came to.
#[derive(Debug)]
pub(super) struct Recorded {
    /// `report.json`, written or not.
    pub report_path: PathBuf,
    /// Why `report.json` could not be written (usually a full disk).
    pub report_error: Option<RunError>,
    pub outcome: RunOutcome,
    pub exit_code: u8,
}

/// Writes `report.json` (and, with `renderings`, the other report files) of a run whose
/// work is over, and decides how it ends. A journal that stopped recording
/// (`journal_failed`) or a `report.json` that cannot be written leaves the run incomplete
/// (exit 4): resumable, and `esper-bulk report RUN_DIR` rebuilds the reports from the plan
/// and journal once the disk has room; never exit 2, which says nothing was sent. A
/// rendering that cannot be written costs only itself ([`Notice::RenderingNotWritten`]).
pub(super) fn record(
    dir: &Path,
    report: &Report,
    journal_failed: bool,
    renderings: bool,
    write: &Writer,
    notices: &Notices,
) -> Recorded {
    let (report_path, report_error) = match write_report_with(dir, report, Format::Json, write) {
        Ok(p) => (p, None),
        Err(e) => (dir.join(Format::Json.file_name()), Some(e)),
    };
    if renderings && report_error.is_none() {
        for f in &Format::ALL[1..] {
            // Only a run with a task over devices has a `devices.csv`.
            if *f == Format::Devices && !render::has_devices(report) {
                continue;
            }
            if let Err(RunError::Write { path, source }) = write_report_with(dir, report, *f, write)
            {
                notices.send(Notice::RenderingNotWritten {
                    path,
                    error: source.to_string(),
                });
            }
        }
    }
    let (outcome, exit_code) = if journal_failed || report_error.is_some() {
        (RunOutcome::Incomplete, RunOutcome::Incomplete.exit_code())
    } else {
        (report.run.outcome, report.run.exit_code)
    };
    Recorded {
        report_path,
        report_error,
        outcome,
        exit_code,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A finished run's report, as `Report::build` makes it for a one-task plan.
    fn finished(status: TaskStatus) -> Report {
        let plan: Plan = serde_json::from_value(serde_json::json!({
            "format": 2, "job": "j", "source": "j.yaml",
            "server": {"base_url": "http://127.0.0.1:1/api", "enterprise_id": "e"},
            "limits": {"rate": 10.0, "batch": 1, "max_in_flight": 1},
            "retry": {"attempts": 1, "initial_delay": 0, "max_delay": 0, "max_retry_after": 0},
            "targets": {},
            "steps": [{"id": "s", "kind": "content_upload", "needs": [], "first_task": 0,
                "task_count": 1, "fanout": {"kind": "single"},
                "op": {"kind": "content_upload", "file": "f"}}],
            "task_count": 1,
            "estimate": {"requests": {}, "total_requests": 0, "seconds": 0.0}
        }))
        .unwrap();
        let out = RunOutput {
            outcomes: vec![Outcome::not_run(
                crate::plan::TaskId(0),
                status,
                Reason::NotRecorded,
                0,
            )],
            stopped: None,
            rollout_stops: Vec::new(),
            elapsed: Duration::ZERO,
        };
        Report::build(
            "r",
            &plan,
            &out,
            GovernorStats::default(),
            jiff::Timestamp::now(),
        )
    }

    // See: #11 — a full disk after the work is done is exit 4 (resumable), never 2.
    #[test]
    fn a_report_that_cannot_be_written_makes_the_run_incomplete() {
        let dir = tempfile::tempdir().unwrap();
        let full: &Writer = &|_, _| Err(std::io::Error::from_raw_os_error(28));
        let report = finished(TaskStatus::Succeeded);
        assert_eq!(report.run.exit_code, 0);
        let r = record(dir.path(), &report, false, true, full, &Notices::none());
        assert_eq!((r.outcome, r.exit_code), (RunOutcome::Incomplete, 4));
        match &r.report_error {
            Some(RunError::Write { path, source }) => {
                assert!(path.ends_with("report.json"));
                assert_eq!(source.raw_os_error(), Some(28));
            }
            other => panic!("expected a write error, got {other:?}"),
        }
        // Written, the run ends as its report says; a journal that failed makes it 4 too.
        let ok: &Writer = &crate::util::atomic_write;
        let r = record(dir.path(), &report, false, false, ok, &Notices::none());
        assert_eq!((r.exit_code, r.report_error.is_none()), (0, true));
        assert!(r.report_path.exists());
        let failed = finished(TaskStatus::Failed);
        let r = record(dir.path(), &failed, false, false, ok, &Notices::none());
        assert_eq!(r.exit_code, 1);
        let r = record(dir.path(), &failed, true, false, ok, &Notices::none());
        assert_eq!((r.outcome, r.exit_code), (RunOutcome::Incomplete, 4));
    }

    #[test]
    fn a_rendering_that_cannot_be_written_costs_only_itself() {
        let dir = tempfile::tempdir().unwrap();
        let only_json: &Writer = &|p, b| {
            if p.ends_with("report.json") {
                crate::util::atomic_write(p, b)
            } else {
                Err(std::io::Error::from_raw_os_error(28))
            }
        };
        let seen = std::sync::Arc::new(std::sync::Mutex::new(0));
        let count = seen.clone();
        let notices = Notices::new(move |n| {
            if matches!(n, Notice::RenderingNotWritten { .. }) {
                *count.lock().unwrap() += 1;
            }
        });
        let r = record(
            dir.path(),
            &finished(TaskStatus::Succeeded),
            false,
            true,
            only_json,
            &notices,
        );
        // The one-task plan has no task over devices, so no `devices.csv` is attempted.
        assert_eq!((r.exit_code, *seen.lock().unwrap()), (0, 4));
    }

    #[test]
    fn format_names_round_trip_to_file_names() {
        let names: Vec<&str> = ["json", "md", "xml", "junit", "csv", "html", "devices"]
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
                "report.html",
                "devices.csv"
            ]
        );
        let err = "pdf".parse::<Format>().unwrap_err();
        assert_eq!(
            err.to_string(),
            "unknown report format `pdf`; use json, md, xml, csv, html or devices"
        );
    }
}
