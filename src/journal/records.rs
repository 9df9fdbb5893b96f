//! The journal's own record types, one per kind of line and field, and their conversions
//! from and back to the executor's types. What is on disk changes only when these change;
//! the executor's in-memory types may change freely. Reading and writing lines is the
//! module root's; format 1 is [`super::v1`]'s.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::base::FailureClass;
use crate::exec::{
    Attempt, DeviceCounts, DeviceResult, DeviceState, Failure, Followed, GaveUp, GovernorStats,
    InstallCheck, Outcome, Reason, RolloutStop, RunOutput, Sample, SharedStats, Shortfall,
    StopReason, TaskStatus,
};
use crate::plan::TaskId;

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
    /// The run stopped while following `command`.
    Interrupted {
        command: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        stopped: Option<StopReason>,
    },
    /// `command` was followed but its per-device status could not be read.
    StatusUnread {
        command: String,
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
    /// What the install verification found; journals before it have none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub install: Option<Box<InstallRecord>>,
}

/// A verified install's devices by state (see `exec::InstallCheck`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InstallRecord {
    pub version: String,
    pub installed: u64,
    pub not_installed: u64,
    pub failed: u64,
    pub pending: u64,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub missing: Vec<String>,
    /// Why the devices could not be checked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unchecked: Option<FailureRecord>,
}

impl From<&InstallCheck> for InstallRecord {
    fn from(c: &InstallCheck) -> InstallRecord {
        InstallRecord {
            version: c.version.clone(),
            installed: c.installed,
            not_installed: c.not_installed,
            failed: c.failed,
            pending: c.pending,
            missing: c.missing.clone(),
            unchecked: c.unchecked.as_ref().map(FailureRecord::from),
        }
    }
}

impl From<InstallRecord> for InstallCheck {
    fn from(c: InstallRecord) -> InstallCheck {
        InstallCheck {
            version: c.version,
            installed: c.installed,
            not_installed: c.not_installed,
            failed: c.failed,
            pending: c.pending,
            missing: c.missing,
            unchecked: c.unchecked.map(Failure::from),
        }
    }
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
    /// The exit code of the segment this line ends (absent in older journals).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<u8>,
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
            exit_code: None,
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
    /// The budget shared through `--coordinator`; absent without one (and in older runs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub coordinator: Option<CoordinatorRecord>,
}

/// The shared budget's counters (`--coordinator`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CoordinatorRecord {
    pub url: String,
    pub permits_shared: u64,
    pub permits_local: u64,
    pub pauses_published: u64,
    pub pauses_seen: u64,
    pub degraded: bool,
    pub reconnects: u64,
    pub fallback_rate: f64,
}

impl From<&SharedStats> for CoordinatorRecord {
    fn from(s: &SharedStats) -> CoordinatorRecord {
        CoordinatorRecord {
            url: s.url.clone(),
            permits_shared: s.permits_shared,
            permits_local: s.permits_local,
            pauses_published: s.pauses_published,
            pauses_seen: s.pauses_seen,
            degraded: s.degraded,
            reconnects: s.reconnects,
            fallback_rate: s.fallback_rate,
        }
    }
}

impl From<CoordinatorRecord> for SharedStats {
    fn from(s: CoordinatorRecord) -> SharedStats {
        SharedStats {
            url: s.url,
            permits_shared: s.permits_shared,
            permits_local: s.permits_local,
            pauses_published: s.pauses_published,
            pauses_seen: s.pauses_seen,
            degraded: s.degraded,
            reconnects: s.reconnects,
            fallback_rate: s.fallback_rate,
        }
    }
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
            Reason::Interrupted { command, stopped } => ReasonRecord::Interrupted {
                command: command.clone(),
                stopped: *stopped,
            },
            Reason::StatusUnread { command } => ReasonRecord::StatusUnread {
                command: command.clone(),
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
            ReasonRecord::Interrupted { command, stopped } => {
                Reason::Interrupted { command, stopped }
            }
            ReasonRecord::StatusUnread { command } => Reason::StatusUnread { command },
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
                    // Bounded here too: the journal never takes an unbounded device text.
                    reason: d.reason.as_deref().map(crate::exec::device_reason),
                })
                .collect(),
            install: f
                .install
                .as_deref()
                .map(|c| Box::new(InstallRecord::from(c))),
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
            install: f.install.map(|r| Box::new(InstallCheck::from(*r))),
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
            coordinator: g.shared.as_ref().map(CoordinatorRecord::from),
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
            shared: g.coordinator.map(SharedStats::from),
        }
    }
}
