//! The run journal: an append-only JSON Lines record of what happened to each task, so an
//! interrupted or crashed run can be resumed and its reports rebuilt.
//!
//! Lines are versioned entries ([`Entry`]) made of the journal's own records
//! ([`OutcomeRecord`], [`FinishRecord`], …), not of the executor's types: what the
//! executor keeps in memory can change without changing what is on disk. Records convert
//! from and back to the executor's [`Outcome`]s. Each `start` line names the format of the
//! lines after it, so a run written by format 1 and resumed by format 2 reads back whole;
//! format 1 lines (failures as text) are converted on read, see [`v1`]. Lines are written
//! through a buffer, flushed and fsynced in batches (every [`SYNC_EVERY`] lines or
//! [`SYNC_AFTER`]) and at the end. A torn last line (power loss mid-write) is tolerated on
//! read. The journal never decides anything: resuming treats every task without a
//! recorded success as uncertain, so the executor reads it back by natural key before
//! writing — a lost line can cost a read, never a duplicate.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::base::{FailureClass, Hint};
use crate::exec::{
    Attempt, DeviceCounts, DeviceResult, DeviceState, Failure, Followed, GaveUp, GovernorStats,
    Outcome, Reason, RolloutStop, RunOutput, Sample, Shortfall, StopReason, TaskStatus,
};
use crate::plan::TaskId;

/// The journal line format written now; bumped on incompatible changes. Format 1 (failures
/// as text) is still read.
pub const JOURNAL_FORMAT: u32 = 2;
/// The oldest format this version reads.
pub const OLDEST_FORMAT: u32 = 1;
/// Lines between fsyncs…
pub const SYNC_EVERY: usize = 64;
/// …or this long, whichever comes first.
pub const SYNC_AFTER: Duration = Duration::from_millis(250);

/// One journal line. The `start` entry has the same shape in every format: it is how a
/// reader learns the format of the lines after it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "entry", rename_all = "snake_case")]
pub enum Entry {
    /// A run (or a resumption of it) started.
    Start {
        format: u32,
        run_id: String,
        job: String,
        tasks: u32,
        at: String,
        resumed: bool,
    },
    /// A task is about to send its first request. Written in batches like everything else,
    /// so it can be lost in a crash; resuming does not rely on it (see the module doc).
    Intent { task: u32 },
    /// A task's final outcome in this attempt of the run.
    Outcome(OutcomeRecord),
    /// The run (or this resumption) ended: what a report needs beyond the outcomes.
    Finish(FinishRecord),
}

/// A task's outcome as the journal keeps it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OutcomeRecord {
    pub task: u32,
    pub status: TaskStatus,
    pub attempts: Vec<AttemptRecord>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<ReasonRecord>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub followed: Option<FollowedRecord>,
    pub started_ms: u64,
    pub finished_ms: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AttemptRecord {
    pub n: u32,
    pub at_ms: u64,
    pub took_ms: u64,
    /// Absent when the attempt was accepted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure: Option<FailureRecord>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wait_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// A failure without its `Retry-After`, which only matters while the run is live.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FailureRecord {
    pub class: FailureClass,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http_status: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub esper_message: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
    pub description: String,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub maybe_processed: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ReasonRecord {
    Failed {
        failure: FailureRecord,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        gave_up: Option<GaveUp>,
    },
    NeedsFailed {
        needs: Vec<ShortfallRecord>,
    },
    RolloutStopped {
        stop: StopRecord,
    },
    NotStarted {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        stopped: Option<StopReason>,
    },
    NotRecorded,
    Abandoned,
    DeviceFailures {
        counts: CountsRecord,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShortfallRecord {
    pub step: String,
    pub not_succeeded: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub item: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StopRecord {
    pub step: String,
    pub stage: usize,
    pub stages: usize,
    pub failed: u64,
    pub allowed: u64,
    pub total: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FollowedRecord {
    pub command: String,
    pub finished: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub counts: Option<CountsRecord>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub devices: Vec<DeviceRecord>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CountsRecord {
    pub succeeded: u64,
    pub failed: u64,
    pub timed_out: u64,
    pub cancelled: u64,
    pub pending: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceRecord {
    pub id: String,
    pub state: DeviceState,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// The end of a run (or of one resumption of it).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FinishRecord {
    pub started_at: String,
    pub finished_at: String,
    pub elapsed_ms: u64,
    #[serde(default)]
    pub stopped: Option<StopReason>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rollout_stops: Vec<StopRecord>,
    pub governor: GovernorRecord,
}

impl FinishRecord {
    /// The record of a run that produced `out` under a governor that counted `gov`.
    pub fn of_run(
        started_at: String,
        finished_at: String,
        out: &RunOutput,
        gov: &GovernorStats,
    ) -> FinishRecord {
        FinishRecord {
            started_at,
            finished_at,
            elapsed_ms: out.elapsed.as_millis() as u64,
            stopped: out.stopped,
            rollout_stops: out.rollout_stops.iter().map(StopRecord::from).collect(),
            governor: GovernorRecord::from(gov),
        }
    }
}

/// The governor's counters. Format 1 wrote the same fields, so it reads with this too.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct GovernorRecord {
    pub requests: u64,
    pub by_status: BTreeMap<String, u64>,
    pub rate_limited: u64,
    pub window: u32,
    pub window_max: u32,
    pub window_min: u32,
    pub window_changes: u64,
    pub paused_ms: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub adaptive_rate: Option<f64>,
    #[serde(default)]
    pub timeline: Vec<SampleRecord>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SampleRecord {
    pub t: u32,
    pub requests: u32,
    pub rate_limited: u32,
    pub window: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate: Option<f64>,
}

// ---------------------------------------------------------------------------------------
// Records to and from the executor's types.

impl From<&Failure> for FailureRecord {
    fn from(f: &Failure) -> FailureRecord {
        FailureRecord {
            class: f.class,
            http_status: f.http_status,
            esper_message: f.esper_message.clone(),
            hint: f.hint.clone(),
            description: f.description.clone(),
            maybe_processed: f.maybe_processed,
        }
    }
}

impl From<FailureRecord> for Failure {
    fn from(r: FailureRecord) -> Failure {
        Failure {
            class: r.class,
            http_status: r.http_status,
            esper_message: r.esper_message,
            hint: r.hint,
            description: r.description,
            retry_after: None,
            maybe_processed: r.maybe_processed,
        }
    }
}

impl From<&RolloutStop> for StopRecord {
    fn from(s: &RolloutStop) -> StopRecord {
        StopRecord {
            step: s.step.clone(),
            stage: s.stage,
            stages: s.stages,
            failed: s.failed,
            allowed: s.allowed,
            total: s.total,
        }
    }
}

impl From<StopRecord> for RolloutStop {
    fn from(s: StopRecord) -> RolloutStop {
        RolloutStop {
            step: s.step,
            stage: s.stage,
            stages: s.stages,
            failed: s.failed,
            allowed: s.allowed,
            total: s.total,
        }
    }
}

impl From<DeviceCounts> for CountsRecord {
    fn from(c: DeviceCounts) -> CountsRecord {
        CountsRecord {
            succeeded: c.succeeded,
            failed: c.failed,
            timed_out: c.timed_out,
            cancelled: c.cancelled,
            pending: c.pending,
        }
    }
}

impl From<CountsRecord> for DeviceCounts {
    fn from(c: CountsRecord) -> DeviceCounts {
        DeviceCounts {
            succeeded: c.succeeded,
            failed: c.failed,
            timed_out: c.timed_out,
            cancelled: c.cancelled,
            pending: c.pending,
        }
    }
}

impl From<&Reason> for ReasonRecord {
    fn from(r: &Reason) -> ReasonRecord {
        match r {
            Reason::Failed { failure, gave_up } => ReasonRecord::Failed {
                failure: failure.into(),
                gave_up: *gave_up,
            },
            Reason::NeedsFailed(needs) => ReasonRecord::NeedsFailed {
                needs: needs
                    .iter()
                    .map(|n| ShortfallRecord {
                        step: n.step.clone(),
                        not_succeeded: n.not_succeeded,
                        item: n.item.clone(),
                    })
                    .collect(),
            },
            Reason::RolloutStopped(s) => ReasonRecord::RolloutStopped { stop: s.into() },
            Reason::NotStarted(stopped) => ReasonRecord::NotStarted { stopped: *stopped },
            Reason::NotRecorded => ReasonRecord::NotRecorded,
            Reason::Abandoned => ReasonRecord::Abandoned,
            Reason::DeviceFailures(c) => ReasonRecord::DeviceFailures {
                counts: (*c).into(),
            },
        }
    }
}

impl From<ReasonRecord> for Reason {
    fn from(r: ReasonRecord) -> Reason {
        match r {
            ReasonRecord::Failed { failure, gave_up } => Reason::Failed {
                failure: failure.into(),
                gave_up,
            },
            ReasonRecord::NeedsFailed { needs } => Reason::NeedsFailed(
                needs
                    .into_iter()
                    .map(|n| Shortfall {
                        step: n.step,
                        not_succeeded: n.not_succeeded,
                        item: n.item,
                    })
                    .collect(),
            ),
            ReasonRecord::RolloutStopped { stop } => Reason::RolloutStopped(stop.into()),
            ReasonRecord::NotStarted { stopped } => Reason::NotStarted(stopped),
            ReasonRecord::NotRecorded => Reason::NotRecorded,
            ReasonRecord::Abandoned => Reason::Abandoned,
            ReasonRecord::DeviceFailures { counts } => Reason::DeviceFailures(counts.into()),
        }
    }
}

impl From<&Followed> for FollowedRecord {
    fn from(f: &Followed) -> FollowedRecord {
        FollowedRecord {
            command: f.command.clone(),
            finished: f.finished,
            counts: f.counts.map(CountsRecord::from),
            devices: f
                .devices
                .iter()
                .map(|d| DeviceRecord {
                    id: d.id.clone(),
                    state: d.state,
                    reason: d.reason.clone(),
                })
                .collect(),
        }
    }
}

impl From<FollowedRecord> for Followed {
    fn from(f: FollowedRecord) -> Followed {
        Followed {
            command: f.command,
            finished: f.finished,
            counts: f.counts.map(DeviceCounts::from),
            devices: f
                .devices
                .into_iter()
                .map(|d| DeviceResult {
                    id: d.id,
                    state: d.state,
                    reason: d.reason,
                })
                .collect(),
        }
    }
}

impl From<&Outcome> for OutcomeRecord {
    fn from(o: &Outcome) -> OutcomeRecord {
        OutcomeRecord {
            task: o.task.0,
            status: o.status,
            attempts: o
                .attempts
                .iter()
                .map(|a| AttemptRecord {
                    n: a.n,
                    at_ms: a.at_ms,
                    took_ms: a.took_ms,
                    failure: a.result.as_ref().err().map(FailureRecord::from),
                    wait_ms: a.wait_ms,
                    note: a.note.clone(),
                })
                .collect(),
            reason: o.reason.as_ref().map(ReasonRecord::from),
            result: o.result.clone(),
            followed: o.followed.as_ref().map(FollowedRecord::from),
            started_ms: o.started_ms,
            finished_ms: o.finished_ms,
        }
    }
}

impl From<OutcomeRecord> for Outcome {
    fn from(r: OutcomeRecord) -> Outcome {
        Outcome {
            task: TaskId(r.task),
            status: r.status,
            attempts: r
                .attempts
                .into_iter()
                .map(|a| Attempt {
                    n: a.n,
                    at_ms: a.at_ms,
                    took_ms: a.took_ms,
                    result: match a.failure {
                        None => Ok(()),
                        Some(f) => Err(f.into()),
                    },
                    wait_ms: a.wait_ms,
                    note: a.note,
                })
                .collect(),
            reason: r.reason.map(Reason::from),
            result: r.result,
            followed: r.followed.map(Followed::from),
            started_ms: r.started_ms,
            finished_ms: r.finished_ms,
        }
    }
}

impl From<&GovernorStats> for GovernorRecord {
    fn from(g: &GovernorStats) -> GovernorRecord {
        GovernorRecord {
            requests: g.requests,
            by_status: g.by_status.clone(),
            rate_limited: g.rate_limited,
            window: g.window,
            window_max: g.window_max,
            window_min: g.window_min,
            window_changes: g.window_changes,
            paused_ms: g.paused_ms,
            adaptive_rate: g.adaptive_rate,
            timeline: g
                .timeline
                .iter()
                .map(|s| SampleRecord {
                    t: s.t,
                    requests: s.requests,
                    rate_limited: s.rate_limited,
                    window: s.window,
                    rate: s.rate,
                })
                .collect(),
        }
    }
}

impl From<GovernorRecord> for GovernorStats {
    fn from(g: GovernorRecord) -> GovernorStats {
        GovernorStats {
            requests: g.requests,
            by_status: g.by_status,
            rate_limited: g.rate_limited,
            window: g.window,
            window_max: g.window_max,
            window_min: g.window_min,
            window_changes: g.window_changes,
            paused_ms: g.paused_ms,
            adaptive_rate: g.adaptive_rate,
            timeline: g
                .timeline
                .into_iter()
                .map(|s| Sample {
                    t: s.t,
                    requests: s.requests,
                    rate_limited: s.rate_limited,
                    window: s.window,
                    rate: s.rate,
                })
                .collect(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    #[error("cannot write the journal {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot read the journal {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}:{line}: not a journal entry: {message}")]
    Corrupt {
        path: PathBuf,
        line: usize,
        message: String,
    },
    #[error(
        "{path} was written by journal format {found}; this esper-bulk reads formats {OLDEST_FORMAT} to {JOURNAL_FORMAT}"
    )]
    Format { path: PathBuf, found: u32 },
}

impl Hint for JournalError {
    fn hint(&self) -> Option<String> {
        Some(
            match self {
                JournalError::Write { .. } => "check that the disk is not full",
                JournalError::Read { .. } => "check the run directory and its permissions",
                JournalError::Corrupt { .. } => {
                    "the journal was changed by hand or damaged; restore it or start a new run"
                }
                JournalError::Format { .. } => "use the esper-bulk version that wrote the run",
            }
            .into(),
        )
    }
}

/// An open journal, appending.
pub struct Journal {
    out: BufWriter<File>,
    path: PathBuf,
    unsynced: usize,
    last_sync: Instant,
}

impl Journal {
    /// Opens (or creates) the journal for appending.
    pub fn open(path: &Path) -> Result<Journal, JournalError> {
        let err = |source| JournalError::Write {
            path: path.to_path_buf(),
            source,
        };
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(err)?;
        Ok(Journal {
            out: BufWriter::new(file),
            path: path.to_path_buf(),
            unsynced: 0,
            last_sync: Instant::now(),
        })
    }

    pub fn append(&mut self, e: &Entry) -> Result<(), JournalError> {
        let err = |source| JournalError::Write {
            path: self.path.clone(),
            source,
        };
        let line = serde_json::to_string(e).map_err(|e| err(std::io::Error::other(e)))?;
        self.out.write_all(line.as_bytes()).map_err(err)?;
        self.out.write_all(b"\n").map_err(err)?;
        self.unsynced += 1;
        if self.unsynced >= SYNC_EVERY || self.last_sync.elapsed() >= SYNC_AFTER {
            self.sync()?;
        }
        Ok(())
    }

    /// Flushes and fsyncs what was appended.
    pub fn sync(&mut self) -> Result<(), JournalError> {
        let err = |source| JournalError::Write {
            path: self.path.clone(),
            source,
        };
        self.out.flush().map_err(err)?;
        self.out.get_ref().sync_data().map_err(err)?;
        self.unsynced = 0;
        self.last_sync = Instant::now();
        Ok(())
    }
}

/// What a journal says.
#[derive(Debug, Default)]
pub struct Replay {
    /// The last outcome recorded for each task.
    pub outcomes: BTreeMap<u32, Outcome>,
    pub starts: u32,
    /// Tasks with an intent and no later outcome: in flight when the run stopped.
    pub in_flight: std::collections::BTreeSet<u32>,
    /// The last `finish` entry, if the run ever ended cleanly.
    pub finish: Option<FinishRecord>,
    /// The last line was cut short (a crash mid-write) and was ignored.
    pub torn: bool,
}

impl Replay {
    /// Outcomes a resumption keeps: the succeeded ones. Everything else runs again.
    pub fn succeeded(&self) -> BTreeMap<u32, Outcome> {
        self.outcomes
            .iter()
            .filter(|(_, o)| o.status == TaskStatus::Succeeded)
            .map(|(k, v)| (*k, v.clone()))
            .collect()
    }
}

/// Decodes one line written in `format` as a current entry.
fn decode(line: &str, format: u32) -> Result<Entry, serde_json::Error> {
    if format == 1 {
        serde_json::from_str::<v1::Entry>(line).map(Entry::from)
    } else {
        serde_json::from_str::<Entry>(line)
    }
}

/// Reads a journal, tolerating a torn last line.
pub fn read(path: &Path) -> Result<Replay, JournalError> {
    let file = File::open(path).map_err(|source| JournalError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let lines: Vec<String> = BufReader::new(file)
        .lines()
        .collect::<Result<_, _>>()
        .map_err(|source| JournalError::Read {
            path: path.to_path_buf(),
            source,
        })?;
    let mut replay = Replay::default();
    let last = lines.len();
    // Every `start` names the format of the lines after it; a journal begins with one.
    let mut format = JOURNAL_FORMAT;
    for (i, line) in lines.iter().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        match decode(line, format) {
            Ok(Entry::Start { format: f, .. })
                if !(OLDEST_FORMAT..=JOURNAL_FORMAT).contains(&f) =>
            {
                return Err(JournalError::Format {
                    path: path.to_path_buf(),
                    found: f,
                });
            }
            Ok(Entry::Start { format: f, .. }) => {
                format = f;
                replay.starts += 1;
            }
            Ok(Entry::Intent { task }) => {
                replay.in_flight.insert(task);
            }
            Ok(Entry::Outcome(o)) => {
                replay.in_flight.remove(&o.task);
                replay.outcomes.insert(o.task, o.into());
            }
            Ok(Entry::Finish(f)) => replay.finish = Some(f),
            Err(_) if i + 1 == last => replay.torn = true,
            Err(e) => {
                return Err(JournalError::Corrupt {
                    path: path.to_path_buf(),
                    line: i + 1,
                    message: e.to_string(),
                });
            }
        }
    }
    Ok(replay)
}

/// Journal format 1, read and converted to current records. Format 1 kept a task's
/// failure as one string (`error`) and an attempt's answer as a short code (`result`:
/// `ok`, an HTTP status, or a failure class). A string error becomes a failure of class
/// `unclassified` with the text as its description. The sentences format 1 wrote for
/// tasks that did not run came from fixed templates, so they are recognised and turned
/// back into their reasons; followed commands' device results came as JSON under
/// `result.devices` and become typed counts again.
pub mod v1 {
    use super::*;

    /// The format 1 suffix of an `unknown` task's error; the report adds it from the status.
    const UNKNOWN_SUFFIX: &str =
        "; an earlier attempt may have been applied and no read-back confirmed it";

    #[derive(Deserialize)]
    #[serde(tag = "entry", rename_all = "snake_case")]
    pub(super) enum Entry {
        Start {
            format: u32,
            run_id: String,
            job: String,
            tasks: u32,
            at: String,
            resumed: bool,
        },
        Intent {
            task: u32,
        },
        Outcome(Outcome1),
        Finish {
            started_at: String,
            finished_at: String,
            elapsed_ms: u64,
            #[serde(default)]
            stopped: Option<StopReason>,
            #[serde(default)]
            thresholds: Vec<String>,
            governor: GovernorRecord,
        },
    }

    #[derive(Deserialize)]
    pub(super) struct Outcome1 {
        task: u32,
        status: TaskStatus,
        attempts: Vec<Attempt1>,
        #[serde(default)]
        error: Option<String>,
        #[serde(default)]
        result: Option<Value>,
        started_ms: u64,
        finished_ms: u64,
    }

    #[derive(Deserialize)]
    struct Attempt1 {
        n: u32,
        at_ms: u64,
        took_ms: u64,
        result: String,
        #[serde(default)]
        wait_ms: Option<u64>,
        #[serde(default)]
        note: Option<String>,
    }

    impl From<Entry> for super::Entry {
        fn from(e: Entry) -> super::Entry {
            match e {
                Entry::Start {
                    format,
                    run_id,
                    job,
                    tasks,
                    at,
                    resumed,
                } => super::Entry::Start {
                    format,
                    run_id,
                    job,
                    tasks,
                    at,
                    resumed,
                },
                Entry::Intent { task } => super::Entry::Intent { task },
                Entry::Outcome(o) => super::Entry::Outcome(o.into()),
                Entry::Finish {
                    started_at,
                    finished_at,
                    elapsed_ms,
                    stopped,
                    thresholds,
                    governor,
                } => super::Entry::Finish(FinishRecord {
                    started_at,
                    finished_at,
                    elapsed_ms,
                    stopped,
                    rollout_stops: thresholds
                        .iter()
                        .filter_map(|t| {
                            let stop = rollout_stop(t);
                            if stop.is_none() {
                                tracing::warn!(threshold = %t, "a format 1 rollout stop is not in the form format 1 wrote; ignored");
                            }
                            stop
                        })
                        .collect(),
                    governor,
                }),
            }
        }
    }

    impl From<Outcome1> for OutcomeRecord {
        fn from(o: Outcome1) -> OutcomeRecord {
            let attempts: Vec<AttemptRecord> = o.attempts.into_iter().map(attempt).collect();
            let (result, followed) = split_devices(o.result);
            let last_status = attempts
                .last()
                .and_then(|a| a.failure.as_ref())
                .and_then(|f| f.http_status);
            let reason = o
                .error
                .map(|text| reason(o.status, text, last_status, followed.as_ref()));
            OutcomeRecord {
                task: o.task,
                status: o.status,
                attempts,
                reason,
                result,
                followed,
                started_ms: o.started_ms,
                finished_ms: o.finished_ms,
            }
        }
    }

    /// `ok`, or a failure: an HTTP status keeps its number, a class name its class, and the
    /// attempt's note (format 1 put the failure's message there) becomes the description.
    fn attempt(a: Attempt1) -> AttemptRecord {
        let (failure, note) = if a.result == "ok" {
            (None, a.note)
        } else {
            let http_status = a.result.parse::<u16>().ok();
            let class = FailureClass::parse(&a.result).unwrap_or(FailureClass::Unclassified);
            let failure = FailureRecord {
                class,
                http_status,
                esper_message: None,
                hint: None,
                description: a.note.unwrap_or_else(|| a.result.clone()),
                maybe_processed: false,
            };
            (Some(failure), None)
        };
        AttemptRecord {
            n: a.n,
            at_ms: a.at_ms,
            took_ms: a.took_ms,
            failure,
            wait_ms: a.wait_ms,
            note,
        }
    }

    fn unclassified(text: String, http_status: Option<u16>) -> ReasonRecord {
        ReasonRecord::Failed {
            failure: FailureRecord {
                class: FailureClass::Unclassified,
                http_status,
                esper_message: None,
                hint: None,
                description: text,
                maybe_processed: false,
            },
            gave_up: None,
        }
    }

    fn reason(
        status: TaskStatus,
        text: String,
        last_status: Option<u16>,
        followed: Option<&FollowedRecord>,
    ) -> ReasonRecord {
        match status {
            TaskStatus::Skipped => {
                if let Some(needs) = needs(&text) {
                    return ReasonRecord::NeedsFailed { needs };
                }
                if let Some(stop) = rollout_stop(&text) {
                    return ReasonRecord::RolloutStopped { stop };
                }
                unclassified(text, None)
            }
            TaskStatus::NotStarted => ReasonRecord::NotStarted {
                stopped: if text.contains("interrupted") {
                    Some(StopReason::Interrupted)
                } else if text.contains("deadline") {
                    Some(StopReason::Deadline)
                } else {
                    None
                },
            },
            TaskStatus::Unknown if text.starts_with("abandoned while in flight") => {
                ReasonRecord::Abandoned
            }
            _ => match followed.and_then(|f| f.counts) {
                Some(counts)
                    if status == TaskStatus::Failed
                        && counts.failed + counts.timed_out + counts.cancelled > 0 =>
                {
                    ReasonRecord::DeviceFailures { counts }
                }
                _ => {
                    let text = match text.strip_suffix(UNKNOWN_SUFFIX) {
                        Some(t) if status == TaskStatus::Unknown => t.to_string(),
                        _ => text,
                    };
                    unclassified(text, last_status)
                }
            },
        }
    }

    /// `skipped: needed step `a` (2 not succeeded), `b` (1 not succeeded) did not succeed`.
    fn needs(text: &str) -> Option<Vec<ShortfallRecord>> {
        let list = text
            .strip_prefix("skipped: needed step ")?
            .strip_suffix(" did not succeed")?;
        list.split("), ")
            .map(|part| {
                let (step, n) = part.strip_prefix('`')?.split_once("` (")?;
                let n = n.trim_end_matches(')').strip_suffix(" not succeeded")?;
                Some(ShortfallRecord {
                    step: step.to_string(),
                    not_succeeded: n.parse().ok()?,
                    item: None,
                })
            })
            .collect()
    }

    /// `[skipped: ]rollout of step `x` stopped after stage 1 of 3: 2 failures exceed
    /// max_failures 10% (1 of 3)`.
    fn rollout_stop(text: &str) -> Option<StopRecord> {
        let rest = text.strip_prefix("skipped: ").unwrap_or(text);
        let (step, rest) = rest
            .strip_prefix("rollout of step `")?
            .split_once("` stopped after stage ")?;
        let (stage, rest) = rest.split_once(" of ")?;
        let (stages, rest) = rest.split_once(": ")?;
        let (failed, rest) = rest.split_once(" failures exceed max_failures ")?;
        let (_, counts) = rest.rsplit_once(" (")?;
        let (allowed, total) = counts.strip_suffix(')')?.split_once(" of ")?;
        Some(StopRecord {
            step: step.to_string(),
            stage: stage.parse().ok()?,
            stages: stages.parse().ok()?,
            failed: failed.parse().ok()?,
            allowed: allowed.parse().ok()?,
            total: total.parse().ok()?,
        })
    }

    /// Format 1 merged a followed command's device results into the task's result as
    /// `devices: {command, finished, counts: {<Esper state>: n}, failed: [{device, state,
    /// reason}], pending: [id]}`; they move back out into a typed record.
    fn split_devices(result: Option<Value>) -> (Option<Value>, Option<FollowedRecord>) {
        let Some(Value::Object(mut map)) = result else {
            return (result, None);
        };
        let Some(devices) = map.remove("devices") else {
            return (Some(Value::Object(map)), None);
        };
        let text = |v: &Value, k: &str| v.get(k).and_then(Value::as_str).map(str::to_string);
        // The Esper command states format 1 recorded verbatim.
        let state = |s: &str| match s {
            "Command Success" => DeviceState::Succeeded,
            "Command Failure" => DeviceState::Failed,
            "Command TimeOut" => DeviceState::TimedOut,
            "Command Cancelled" => DeviceState::Cancelled,
            _ => DeviceState::Pending,
        };
        let counts = devices.get("counts").and_then(Value::as_object).map(|m| {
            let mut c = CountsRecord::default();
            for (k, n) in m {
                let n = n.as_u64().unwrap_or(0);
                match state(k) {
                    DeviceState::Succeeded => c.succeeded += n,
                    DeviceState::Failed => c.failed += n,
                    DeviceState::TimedOut => c.timed_out += n,
                    DeviceState::Cancelled => c.cancelled += n,
                    DeviceState::Pending => c.pending += n,
                }
            }
            c
        });
        let list = |k: &str| {
            devices
                .get(k)
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default()
        };
        let mut records: Vec<DeviceRecord> = list("failed")
            .iter()
            .filter_map(|d| {
                Some(DeviceRecord {
                    id: text(d, "device")?,
                    state: text(d, "state").map_or(DeviceState::Failed, |s| state(&s)),
                    reason: text(d, "reason"),
                })
            })
            .collect();
        records.extend(list("pending").iter().filter_map(|d| {
            Some(DeviceRecord {
                id: d.as_str()?.to_string(),
                state: DeviceState::Pending,
                reason: None,
            })
        }));
        let followed = FollowedRecord {
            command: text(&devices, "command").unwrap_or_default(),
            finished: devices
                .get("finished")
                .and_then(Value::as_bool)
                .unwrap_or(false),
            // A format 1 record without counts could not read the per-device status.
            counts: counts.filter(|_| devices.get("error").is_none()),
            devices: records,
        };
        (Some(Value::Object(map)), Some(followed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outcome(t: u32, status: TaskStatus) -> OutcomeRecord {
        OutcomeRecord {
            task: t,
            status,
            attempts: vec![],
            reason: None,
            result: None,
            followed: None,
            started_ms: 0,
            finished_ms: 1,
        }
    }

    #[test]
    fn round_trip_last_outcome_wins_and_torn_lines_are_tolerated() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("journal.jsonl");
        let mut j = Journal::open(&p).unwrap();
        j.append(&Entry::Start {
            format: JOURNAL_FORMAT,
            run_id: "r".into(),
            job: "j".into(),
            tasks: 3,
            at: "t".into(),
            resumed: false,
        })
        .unwrap();
        j.append(&Entry::Intent { task: 0 }).unwrap();
        j.append(&Entry::Intent { task: 2 }).unwrap();
        j.append(&Entry::Outcome(outcome(0, TaskStatus::Failed)))
            .unwrap();
        j.append(&Entry::Outcome(outcome(1, TaskStatus::Succeeded)))
            .unwrap();
        j.append(&Entry::Outcome(outcome(0, TaskStatus::Succeeded)))
            .unwrap();
        j.sync().unwrap();
        drop(j);
        // A crash mid-write leaves half a line.
        let mut f = OpenOptions::new().append(true).open(&p).unwrap();
        f.write_all(br#"{"entry":"outcome","task":2,"sta"#).unwrap();
        let r = read(&p).unwrap();
        assert!(r.torn);
        assert_eq!(r.starts, 1);
        assert_eq!(
            r.in_flight.iter().copied().collect::<Vec<_>>(),
            vec![2],
            "task 2 was in flight at the crash"
        );
        assert_eq!(
            r.succeeded().keys().copied().collect::<Vec<_>>(),
            vec![0, 1]
        );
        // Garbage in the middle is corruption, not a torn tail.
        let mut text = std::fs::read_to_string(&p).unwrap();
        text = text.replacen("\n", "\nnot json\n", 1);
        std::fs::write(&p, text).unwrap();
        assert!(matches!(
            read(&p),
            Err(JournalError::Corrupt { line: 2, .. })
        ));
    }

    /// Every typed reason, failure and followed command survives the trip to disk and
    /// back (except `Retry-After`, which is never recorded).
    #[test]
    fn records_round_trip_the_executor_types() {
        let failure = Failure {
            class: FailureClass::Auth,
            http_status: Some(401),
            esper_message: Some("invalid token".into()),
            hint: Some("check ESPER_API_KEY".into()),
            description: "GET /x/ answered 401".into(),
            retry_after: None,
            maybe_processed: false,
        };
        let counts = DeviceCounts {
            succeeded: 1,
            failed: 1,
            timed_out: 0,
            cancelled: 0,
            pending: 1,
        };
        let reasons = [
            Reason::Failed {
                failure: failure.clone(),
                gave_up: Some(GaveUp::Budget),
            },
            Reason::NeedsFailed(vec![
                Shortfall {
                    step: "a".into(),
                    not_succeeded: 2,
                    item: None,
                },
                Shortfall {
                    step: "b".into(),
                    not_succeeded: 1,
                    item: Some("Stores/North/0002".into()),
                },
            ]),
            Reason::RolloutStopped(RolloutStop {
                step: "r".into(),
                stage: 1,
                stages: 3,
                failed: 2,
                allowed: 1,
                total: 3,
            }),
            Reason::NotStarted(Some(StopReason::Deadline)),
            Reason::NotStarted(None),
            Reason::NotRecorded,
            Reason::Abandoned,
            Reason::DeviceFailures(counts),
        ];
        for reason in reasons {
            let o = Outcome {
                task: TaskId(7),
                status: TaskStatus::Failed,
                attempts: vec![
                    Attempt {
                        n: 1,
                        at_ms: 3,
                        took_ms: 4,
                        result: Err(failure.clone()),
                        wait_ms: Some(5),
                        note: None,
                    },
                    Attempt {
                        n: 2,
                        at_ms: 12,
                        took_ms: 4,
                        result: Ok(()),
                        wait_ms: None,
                        note: Some("found it".into()),
                    },
                ],
                reason: Some(reason),
                result: Some(serde_json::json!({"id": "c1"})),
                followed: Some(Followed {
                    command: "c1".into(),
                    finished: false,
                    counts: Some(counts),
                    devices: vec![DeviceResult {
                        id: "d1".into(),
                        state: DeviceState::Failed,
                        reason: Some("disk full".into()),
                    }],
                }),
                started_ms: 3,
                finished_ms: 20,
            };
            let line = serde_json::to_string(&Entry::Outcome((&o).into())).unwrap();
            let Entry::Outcome(back) = serde_json::from_str::<Entry>(&line).unwrap() else {
                panic!("not an outcome: {line}");
            };
            assert_eq!(Outcome::from(back), o, "{line}");
        }
    }

    /// Format 1 lines (string errors and attempt results) read as typed records, and a
    /// run resumed by format 2 reads back whole.
    #[test]
    fn format_1_journals_still_read() {
        let v1 = [
            r#"{"entry":"start","format":1,"run_id":"r","job":"j","tasks":9,"at":"t","resumed":false}"#,
            r#"{"entry":"outcome","task":0,"status":"failed","attempts":[{"n":1,"at_ms":0,"took_ms":23,"result":"400","note":"POST /x/ answered 400: bad"}],"error":"POST /x/ answered 400: bad","started_ms":0,"finished_ms":23}"#,
            r#"{"entry":"outcome","task":1,"status":"skipped","attempts":[],"error":"skipped: needed step `a` (4 not succeeded), `b` (1 not succeeded) did not succeed","started_ms":25,"finished_ms":25}"#,
            r#"{"entry":"outcome","task":2,"status":"skipped","attempts":[],"error":"skipped: rollout of step `reboot` stopped after stage 1 of 3: 2 failures exceed max_failures 10% (1 of 12)","started_ms":25,"finished_ms":25}"#,
            r#"{"entry":"outcome","task":3,"status":"unknown","attempts":[{"n":1,"at_ms":0,"took_ms":5,"result":"timeout","wait_ms":9,"note":"POST /y/: timed out"},{"n":2,"at_ms":14,"took_ms":5,"result":"503","note":"POST /y/ answered 503: down"}],"error":"POST /y/ answered 503: down (gave up after 2 attempts); an earlier attempt may have been applied and no read-back confirmed it","started_ms":0,"finished_ms":19}"#,
            r#"{"entry":"outcome","task":4,"status":"failed","attempts":[{"n":1,"at_ms":0,"took_ms":5,"result":"ok"}],"error":"1 of 2 devices failed, 1 still pending","result":{"id":"c1","devices":{"command":"c1","finished":false,"counts":{"Command Failure":1,"Command Queued":1},"failed":[{"device":"d1","state":"Command Failure","reason":"disk full"}],"pending":["d2"]}},"started_ms":0,"finished_ms":9}"#,
            r#"{"entry":"outcome","task":5,"status":"not_started","attempts":[],"error":"not started: the deadline was reached; resume it to continue","started_ms":30,"finished_ms":30}"#,
            r#"{"entry":"outcome","task":6,"status":"unknown","attempts":[],"error":"abandoned while in flight: check the tenant before resuming","started_ms":30,"finished_ms":30}"#,
            r#"{"entry":"finish","started_at":"a","finished_at":"b","elapsed_ms":84,"stopped":"deadline","thresholds":["rollout of step `reboot` stopped after stage 1 of 3: 2 failures exceed max_failures 10% (1 of 12)"],"governor":{"requests":10,"by_status":{"200":1},"rate_limited":0,"window":20,"window_max":20,"window_min":20,"window_changes":0,"paused_ms":0,"timeline":[{"t":0,"requests":10,"rate_limited":0,"window":20}]}}"#,
        ];
        let v2 = Entry::Outcome(OutcomeRecord {
            task: 7,
            ..outcome(7, TaskStatus::Succeeded)
        });
        let start2 = Entry::Start {
            format: JOURNAL_FORMAT,
            run_id: "r".into(),
            job: "j".into(),
            tasks: 9,
            at: "t2".into(),
            resumed: true,
        };
        let mut text = v1.join("\n");
        for e in [start2, v2] {
            text.push('\n');
            text.push_str(&serde_json::to_string(&e).unwrap());
        }
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("journal.jsonl");
        std::fs::write(&p, text).unwrap();
        let r = read(&p).unwrap();
        assert_eq!(r.starts, 2);
        let reason = |t: u32| r.outcomes[&t].reason.clone().unwrap();

        let Reason::Failed { failure, gave_up } = reason(0) else {
            panic!("{:?}", reason(0))
        };
        assert_eq!(failure.class, FailureClass::Unclassified);
        assert_eq!(failure.description, "POST /x/ answered 400: bad");
        assert_eq!(failure.http_status, Some(400), "from the last attempt");
        assert_eq!(gave_up, None);
        let attempt = &r.outcomes[&0].attempts[0];
        let f = attempt.result.as_ref().unwrap_err();
        assert_eq!(
            (f.http_status, f.description.as_str()),
            (Some(400), "POST /x/ answered 400: bad")
        );
        assert_eq!(attempt.note, None, "the note was the failure's message");

        assert_eq!(
            reason(1),
            Reason::NeedsFailed(vec![
                Shortfall {
                    step: "a".into(),
                    not_succeeded: 4,
                    item: None,
                },
                Shortfall {
                    step: "b".into(),
                    not_succeeded: 1,
                    item: None,
                },
            ])
        );
        let stop = RolloutStop {
            step: "reboot".into(),
            stage: 1,
            stages: 3,
            failed: 2,
            allowed: 1,
            total: 12,
        };
        assert_eq!(reason(2), Reason::RolloutStopped(stop.clone()));

        let Reason::Failed { failure, .. } = reason(3) else {
            panic!("{:?}", reason(3))
        };
        assert_eq!(
            failure.description, "POST /y/ answered 503: down (gave up after 2 attempts)",
            "the unknown suffix comes back from the status, not twice"
        );
        let first = r.outcomes[&3].attempts[0].result.as_ref().unwrap_err();
        assert_eq!(
            (first.class, first.http_status),
            (FailureClass::Timeout, None)
        );

        let o4 = &r.outcomes[&4];
        let counts = DeviceCounts {
            failed: 1,
            pending: 1,
            ..DeviceCounts::default()
        };
        assert_eq!(o4.reason, Some(Reason::DeviceFailures(counts)));
        assert_eq!(
            o4.result,
            Some(serde_json::json!({"id": "c1"})),
            "devices moved out"
        );
        let followed = o4.followed.as_ref().unwrap();
        assert_eq!(followed.counts, Some(counts));
        assert_eq!(
            followed.devices,
            vec![
                DeviceResult {
                    id: "d1".into(),
                    state: DeviceState::Failed,
                    reason: Some("disk full".into())
                },
                DeviceResult {
                    id: "d2".into(),
                    state: DeviceState::Pending,
                    reason: None
                },
            ]
        );

        assert_eq!(reason(5), Reason::NotStarted(Some(StopReason::Deadline)));
        assert_eq!(reason(6), Reason::Abandoned);
        assert_eq!(
            r.outcomes[&7].status,
            TaskStatus::Succeeded,
            "the format 2 part"
        );

        let finish = r.finish.unwrap();
        assert_eq!(finish.stopped, Some(StopReason::Deadline));
        assert_eq!(finish.rollout_stops, vec![StopRecord::from(&stop)]);
        assert_eq!(finish.governor.timeline.len(), 1);
    }

    #[test]
    fn formats_from_the_future_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("journal.jsonl");
        std::fs::write(
            &p,
            r#"{"entry":"start","format":3,"run_id":"r","job":"j","tasks":1,"at":"t","resumed":false}"#,
        )
        .unwrap();
        let e = read(&p).unwrap_err();
        assert!(matches!(e, JournalError::Format { found: 3, .. }), "{e}");
        assert!(e.to_string().contains("reads formats 1 to 2"), "{e}");
        assert!(e.hint().is_some());
    }
}
