//! The run history of a state directory: one [`RunSummary`] per `runs/<run id>/` (what
//! `esper-bulk runs` lists), finding a run by id or directory, and pruning old runs
//! ([`prune`]) without ever deleting one that is locked or unfinished.
//!
//! A summary comes from the run's `report.json` when it is at least as new as the journal,
//! else from the plan and journal the way `esper-bulk report` rebuilds it, so a run killed
//! mid-resumption is described by what it recorded, not by its last report. The layout of
//! the directory is [`super::dir`]'s; whether a lock is held is [`crate::lock`]'s.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::report::{RunInfo, RunOutcome, Summary};

use super::notice::Notices;
use super::{RunError, RunId, dir};

/// One run, as `runs` lists it.
#[derive(Debug, Clone, Serialize)]
pub struct RunSummary {
    pub run_id: String,
    pub job: String,
    pub server: String,
    /// The first start (RFC 3339), when known.
    pub started_at: Option<String>,
    /// The last end, when the run recorded one.
    pub finished_at: Option<String>,
    /// Running time, all segments together (not the gaps between them).
    pub duration_ms: u64,
    /// `succeeded`, `failed`, `stopped`, `interrupted`, `incomplete`, `killed`, or
    /// `running` (its lock is held) and `unreadable` (no usable plan or journal).
    pub outcome: String,
    /// The run's exit code; `None` while running or when unreadable.
    pub exit_code: Option<u8>,
    pub tasks: u64,
    pub succeeded: u64,
    pub failed: u64,
    pub unknown: u64,
    pub skipped: u64,
    pub not_started: u64,
    /// The first start and each resumption.
    pub segments: u32,
    /// Its lock is held: a process is working on it now.
    pub locked: bool,
    /// Stopped before the end (signal, deadline, killed, tasks left): `run --resume` goes
    /// on with it.
    pub unfinished: bool,
    /// Why it could not be read, when it could not.
    #[serde(skip_serializing_if = "Option::is_none", serialize_with = "one_line")]
    pub error: Option<Arc<RunError>>,
    pub dir: PathBuf,
}

impl RunSummary {
    /// When it started, for ordering; a run without one sorts by its id's timestamp.
    fn started(&self) -> Option<jiff::Timestamp> {
        self.started_at.as_deref().and_then(|t| t.parse().ok())
    }

    /// When it was last active: its end, else its start.
    fn last_active(&self) -> Option<jiff::Timestamp> {
        self.finished_at
            .as_deref()
            .and_then(|t| t.parse().ok())
            .or_else(|| self.started())
    }
}

/// The part of `report.json` a summary needs.
#[derive(Deserialize)]
struct ReportHead {
    run: RunInfo,
    summary: Summary,
}

/// An unreadable run's error as the one line reports use.
fn one_line<S: serde::Serializer>(e: &Option<Arc<RunError>>, s: S) -> Result<S::Ok, S::Error> {
    match e {
        Some(e) => s.serialize_str(&crate::base::one_line(e.as_ref())),
        None => s.serialize_none(),
    }
}

fn resumable(o: RunOutcome) -> bool {
    matches!(
        o,
        RunOutcome::Interrupted
            | RunOutcome::Deadline
            | RunOutcome::Incomplete
            | RunOutcome::Killed
    )
}

fn modified(p: &Path) -> Option<std::time::SystemTime> {
    p.metadata().and_then(|m| m.modified()).ok()
}

/// The run's report rebuilt from its plan and journal, as `esper-bulk report` does, except
/// that a journal not written yet (a run that has only just started, or was killed before
/// its first line) is an empty one.
fn rebuilt(dir: &Path, id: &str) -> Result<crate::report::Report, RunError> {
    let plan = dir::run_plan(dir, &Notices::none())?;
    let replay = match crate::journal::read(&dir.join("journal.jsonl")) {
        Ok(r) => r,
        Err(crate::journal::JournalError::Read { source, .. })
            if source.kind() == std::io::ErrorKind::NotFound =>
        {
            crate::journal::Replay::default()
        }
        Err(e) => return Err(e.into()),
    };
    Ok(super::rebuild_report(id, &plan, &replay))
}

/// The run in `dir`, summarized; `live` are the run ids whose lock is held.
fn summarize(dir: &Path, live: &BTreeSet<String>) -> RunSummary {
    let id = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let report = dir.join("report.json");
    let fresh = match (modified(&report), modified(&dir.join("journal.jsonl"))) {
        (Some(r), Some(j)) => r >= j,
        (Some(_), None) => true,
        _ => false,
    };
    let head = fresh
        .then(|| crate::util::read_text(&report, crate::util::MAX_INPUT_BYTES * 64).ok())
        .flatten()
        .and_then(|t| serde_json::from_str::<ReportHead>(&t).ok());
    let head = match head {
        Some(h) => Ok((h.run, h.summary)),
        None => rebuilt(dir, &id)
            .map(|r| (r.run, r.summary))
            .map_err(Arc::new),
    };
    let locked = live.contains(&id);
    match head {
        Ok((run, s)) => {
            // A run being worked on has a last segment without an end (a resumption
            // appends its start to the journal first, so its old report is not used).
            let running = locked
                && run
                    .segments
                    .last()
                    .is_none_or(|seg| seg.finished_at.is_none());
            let segments = run.segments.len() as u32;
            let ended = run
                .segments
                .last()
                .and_then(|s| s.finished_at.clone())
                .or_else(|| (!run.finished_at.is_empty()).then(|| run.finished_at.clone()))
                .filter(|_| run.outcome != RunOutcome::Killed);
            RunSummary {
                run_id: id,
                job: run.job,
                server: run.server,
                started_at: (!run.started_at.is_empty()).then_some(run.started_at),
                finished_at: ended,
                duration_ms: run.elapsed_ms,
                outcome: if running {
                    "running".into()
                } else {
                    run.outcome.word().into()
                },
                exit_code: (!running).then_some(run.exit_code),
                tasks: s.tasks,
                succeeded: s.succeeded,
                failed: s.failed,
                unknown: s.unknown,
                skipped: s.skipped,
                not_started: s.not_started,
                segments,
                locked,
                unfinished: running || resumable(run.outcome),
                error: None,
                dir: dir.to_path_buf(),
            }
        }
        Err(error) => RunSummary {
            job: String::new(),
            server: String::new(),
            started_at: None,
            finished_at: None,
            duration_ms: 0,
            outcome: "unreadable".into(),
            exit_code: None,
            tasks: 0,
            succeeded: 0,
            failed: 0,
            unknown: 0,
            skipped: 0,
            not_started: 0,
            segments: 0,
            locked,
            unfinished: true,
            error: Some(error),
            dir: dir.to_path_buf(),
            run_id: id,
        },
    }
}

/// The runs in `state`, newest first (by first start), only those of `job` if given.
/// Directories without a `plan.json` are not runs and are left out; a run whose files
/// cannot be read is listed as `unreadable`.
pub fn list_runs(state: &Path, job: Option<&str>) -> Result<Vec<RunSummary>, RunError> {
    let runs = state.join("runs");
    let entries = match std::fs::read_dir(&runs) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => return Err(RunError::NoRuns { runs, source }),
    };
    let live = crate::lock::live_runs(state);
    let mut out: Vec<RunSummary> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.join("plan.json").is_file())
        .map(|p| summarize(&p, &live))
        .filter(|s| job.is_none_or(|j| s.job == j))
        .collect();
    out.sort_by(|a, b| {
        b.started()
            .cmp(&a.started())
            .then_with(|| b.run_id.cmp(&a.run_id))
    });
    Ok(out)
}

/// The run `run` names: a run directory (one holding `plan.json`), or a run id in
/// `state`. Returns its directory and id.
pub fn find_run(state: Option<&Path>, run: &Path) -> Result<(PathBuf, RunId), RunError> {
    if run.join("plan.json").is_file() {
        let id = run
            .file_name()
            .map(|n| RunId::from(n.to_string_lossy().into_owned()))
            .unwrap_or_else(|| RunId::from(""));
        return Ok((run.to_path_buf(), id));
    }
    let text = run.to_string_lossy();
    let looks_like_id = run.components().count() == 1 && !text.starts_with('.');
    if !looks_like_id {
        let source = std::fs::metadata(run.join("plan.json"))
            .err()
            .unwrap_or_else(|| std::io::Error::other("plan.json is not a regular file"));
        return Err(RunError::NotARunDir {
            dir: run.to_path_buf(),
            source,
        });
    }
    let state = state.ok_or(RunError::NoStateDir)?;
    let id = RunId::from(text.into_owned());
    Ok((dir::existing_run(state, &id)?, id))
}

/// Which runs `prune` deletes: beyond the newest `keep` of each job, and ended longer
/// than `older_than` ago; a run goes only when every given rule says so.
#[derive(Debug, Clone, Default)]
pub struct PrunePolicy {
    pub keep: Option<usize>,
    pub older_than: Option<Duration>,
    pub job: Option<String>,
}

impl PrunePolicy {
    /// Which of `runs` (newest first) the policy names for deletion as of `now`, before
    /// locks and unfinished runs are spared.
    fn names(&self, runs: &[RunSummary], now: jiff::Timestamp) -> Vec<bool> {
        let mut by_job: BTreeMap<&str, usize> = BTreeMap::new();
        runs.iter()
            .map(|run| {
                // Unreadable runs have no job; each counts on its own.
                let key = if run.job.is_empty() {
                    run.run_id.as_str()
                } else {
                    run.job.as_str()
                };
                let rank = by_job.entry(key).or_default();
                let newer = *rank;
                *rank += 1;
                let beyond_keep = self.keep.is_none_or(|k| newer >= k);
                let old_enough = self.older_than.is_none_or(|age| {
                    run.last_active().is_some_and(|t| {
                        Duration::try_from(now.duration_since(t)).is_ok_and(|d| d > age)
                    })
                });
                beyond_keep && old_enough
            })
            .collect()
    }
}

/// Why a run the policy would delete stays.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Kept {
    /// Its lock is held.
    Locked,
    /// It can still be resumed (or could not be read to know).
    Unfinished,
}

/// What `prune` did (or with `dry_run`, would do).
#[derive(Debug, Clone, Default, Serialize)]
pub struct Pruned {
    pub deleted: Vec<RunSummary>,
    /// Runs the policy names that were kept, and why.
    pub kept: Vec<(RunSummary, Kept)>,
    pub dry_run: bool,
}

/// Deletes the runs in `state` that `policy` names, except locked and unfinished ones,
/// as of `now`. Each directory is first renamed out of `runs/` and then removed, so a
/// deletion cut short never leaves half a run where `--resume` would look.
pub fn prune(
    state: &Path,
    policy: &PrunePolicy,
    dry_run: bool,
    now: jiff::Timestamp,
) -> Result<Pruned, RunError> {
    let runs = list_runs(state, policy.job.as_deref())?;
    let named = policy.names(&runs, now);
    let mut out = Pruned {
        dry_run,
        ..Pruned::default()
    };
    for (run, named) in runs.into_iter().zip(named) {
        if !named {
            continue;
        }
        // Asked again right before deleting: a run may have been resumed meanwhile.
        if run.locked || crate::lock::live_runs(state).contains(&run.run_id) {
            out.kept.push((run, Kept::Locked));
            continue;
        }
        if run.unfinished {
            out.kept.push((run, Kept::Unfinished));
            continue;
        }
        if !dry_run {
            delete_run(state, &run.dir)?;
        }
        out.deleted.push(run);
    }
    Ok(out)
}

fn delete_run(state: &Path, dir: &Path) -> Result<(), RunError> {
    let err = |path: &Path| {
        let path = path.to_path_buf();
        move |source| RunError::Delete { path, source }
    };
    let trash = state.join("tmp").join(format!(
        "pruned-{}-{:04x}",
        dir.file_name().unwrap_or_default().to_string_lossy(),
        fastrand::u16(..)
    ));
    std::fs::create_dir_all(state.join("tmp")).map_err(err(dir))?;
    std::fs::rename(dir, &trash).map_err(err(dir))?;
    std::fs::remove_dir_all(&trash).map_err(err(&trash))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(id: &str, job: &str, days_ago: i64) -> RunSummary {
        let now: jiff::Timestamp = "2026-12-01T00:00:00Z".parse().unwrap();
        let at = now - jiff::SignedDuration::from_hours(24 * days_ago);
        RunSummary {
            run_id: id.into(),
            job: job.into(),
            server: String::new(),
            started_at: Some(at.to_string()),
            finished_at: Some(at.to_string()),
            duration_ms: 1,
            outcome: "succeeded".into(),
            exit_code: Some(0),
            tasks: 1,
            succeeded: 1,
            failed: 0,
            unknown: 0,
            skipped: 0,
            not_started: 0,
            segments: 1,
            locked: false,
            unfinished: false,
            error: None,
            dir: PathBuf::new(),
        }
    }

    #[test]
    fn keep_counts_per_job_and_with_an_age_both_must_agree() {
        let now: jiff::Timestamp = "2026-12-01T00:00:00Z".parse().unwrap();
        // Newest first, as `list_runs` gives them.
        let runs = [
            run("a1", "a", 1),
            run("b1", "b", 2),
            run("a2", "a", 40),
            run("a3", "a", 50),
            run("b2", "b", 60),
            run("x", "", 90),
        ];
        let keep = |keep, days: Option<u64>| {
            let p = PrunePolicy {
                keep,
                older_than: days.map(|d| Duration::from_secs(d * 86_400)),
                job: None,
            };
            runs.iter()
                .zip(p.names(&runs, now))
                .filter(|(_, n)| *n)
                .map(|(r, _)| r.run_id.as_str())
                .collect::<Vec<_>>()
        };
        assert_eq!(keep(Some(1), None), ["a2", "a3", "b2"]);
        assert_eq!(keep(None, Some(45)), ["a3", "b2", "x"]);
        assert_eq!(keep(Some(2), Some(45)), ["a3"]);
        assert_eq!(keep(Some(0), None).len(), runs.len());
        assert!(keep(Some(10), None).is_empty());
    }
}
