//! The `report.json` schema: the versioned, serialized records a report is made of, from
//! [`Report`] down to one attempt ([`AttemptReport`]) and one device's command result
//! ([`DeviceResultReport`]).
//!
//! These types are the record other tools read, so changing a field changes
//! [`REPORT_FORMAT`]. They hold typed data only (statuses, failure classes, HTTP statuses,
//! counts); filling them from the executor's outcomes is [`super::build`]'s job, the run's
//! outcome is [`super::RunOutcome`]'s, and every sentence about them is made by
//! [`super::render`].

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::RunOutcome;
use crate::base::{FailureClass, Hint};
use crate::exec::{DeviceState, GaveUp, StopReason, TaskStatus};

/// The `report.json` schema version. 2: failures, reasons, rollout stops, followed
/// commands and the run outcome are typed records instead of text. 3: failures grouped
/// by cause with their next action (`causes`), webhook results (`notifications`), the
/// run's `--limit` (`run.limit`) and device serials; every addition is optional, so a
/// reader of format 2 reads a format 3 report.
pub const REPORT_FORMAT: u32 = 3;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Report {
    pub format: u32,
    pub run: RunInfo,
    pub summary: Summary,
    pub governor: GovernorReport,
    pub steps: Vec<StepReport>,
    pub tasks: Vec<TaskReport>,
    /// The tasks that did not succeed, grouped by cause, largest first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub causes: Vec<CauseReport>,
    /// What each webhook of the run answered (the URL is never recorded).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notifications: Vec<NotificationReport>,
}

/// Tasks that did not succeed for one cause: one status, one step, one kind of reason and,
/// for failed requests, one failure class and HTTP status.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct CauseReport {
    pub status: TaskStatus,
    pub step: String,
    /// The reason's kind, as in `tasks[].reason.kind` (`failed`, `device_failures`, …).
    pub reason: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub class: Option<FailureClass>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http_status: Option<u16>,
    pub tasks: u64,
    /// Devices these tasks covered that did not succeed (0 for tasks over groups that
    /// failed before their command was sent, and for tasks that name no device).
    pub devices: u64,
    /// A few of the devices (names) or targets, for "look at these".
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub examples: Vec<String>,
    pub next: NextAction,
}

/// What to do about a cause.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum NextAction {
    /// `esper-bulk run --resume <run id>`: the cause was transient or the run stopped;
    /// resuming keeps what succeeded and reads back the rest before it writes.
    Resume,
    /// The API refused what the job asks (a 4xx, a conflict, a bad template): change
    /// the job, then run it again.
    FixJob,
    /// The command reached the devices and some did not carry it out: look at them.
    CheckDevices,
    /// The API refused the key or the enterprise: fix the credentials, then resume.
    CheckAccess,
    /// A needed step did not succeed: fix that step's cause, then resume.
    FixNeededStep,
    /// A rollout stopped at its threshold: investigate the failing canaries before the
    /// later stages are sent.
    CheckCanaries,
}

/// One webhook of the run and what it answered.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct NotificationReport {
    /// `webhook 1 (slack)`: its place in the job's `notify:` list (then `--notify`), never
    /// its URL, which is a secret.
    pub target: String,
    pub ok: bool,
    /// Tries made (at most two).
    pub attempts: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http_status: Option<u16>,
    /// Why it was not told, when it was not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure: Option<NotifyFailure>,
}

/// Why a webhook was not told how the run ended. Never holds the URL: at most its host.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, thiserror::Error)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum NotifyFailure {
    #[error("environment variable {name} is not set")]
    EnvUnset { name: String },
    #[error("the URL has a malformed `${{NAME}}` reference")]
    BadReference,
    #[error("the URL is not an http(s) URL")]
    NotHttp,
    #[error(
        "{host} did not answer within {}",
        humantime::format_duration(std::time::Duration::from_millis(*after_ms))
    )]
    Timeout { host: String, after_ms: u64 },
    #[error("could not connect to {host}")]
    Connect { host: String },
    #[error("{host} answered HTTP {status}")]
    Status { host: String, status: u16 },
    #[error("the request to {host} failed")]
    Request { host: String },
    #[error("no HTTP client could be built")]
    NoClient,
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
    pub outcome: RunOutcome,
    /// `outcome.exit_code()`, for readers of the JSON.
    pub exit_code: u8,
    /// Rollouts stopped by `max_failures`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rollout_stops: Vec<StopReport>,
    /// The first run and each resumption, in order. `started_at` is the first one's start;
    /// `elapsed_ms` adds up the segments' running times (not the gaps between them).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub segments: Vec<SegmentReport>,
    /// The `--limit` patterns the run's plan was narrowed by; empty when none was.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub limit: Vec<String>,
}

/// One stretch of a run: the first start or a resumption, to its end.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SegmentReport {
    pub started_at: String,
    /// Absent when the segment never recorded its end (killed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub elapsed_ms: Option<u64>,
    /// `finished`, `interrupted`, `deadline` or `killed`.
    pub ended: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<u8>,
    /// Tasks whose outcome this segment recorded.
    pub tasks_finished: u32,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Summary {
    pub tasks: u64,
    pub succeeded: u64,
    pub failed: u64,
    pub skipped: u64,
    pub unknown: u64,
    pub not_started: u64,
    /// Commands sent whose wait the run's stop cut short; resuming follows them.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub interrupted: u64,
    /// Devices of followed commands still queued (offline) when their wait ended, and the
    /// tasks they belong to: counted and listed, not failed (unless `pending: fail`).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub devices_pending: u64,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub tasks_with_pending: u64,
    pub requests: u64,
    pub retries: u64,
    pub rate_limited: u64,
    /// Requests per second over the whole run.
    pub mean_rate: f64,
    /// The busiest second of the run (requests in one timeline sample per second).
    #[serde(default)]
    pub peak_rate: f64,
}

/// Keeps the count out of reports of runs without it, so their JSON reads as before.
fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// The governor's counters as the report records them.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct GovernorReport {
    pub requests: u64,
    pub by_status: BTreeMap<String, u64>,
    pub rate_limited: u64,
    pub window: u32,
    pub window_max: u32,
    pub window_min: u32,
    pub window_changes: u64,
    /// Total time the run spent paused after 429s.
    pub paused_ms: u64,
    /// The adaptive send rate at the end (absent when the API never throttled).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub adaptive_rate: Option<f64>,
    /// One sample per second of the run, for charts.
    #[serde(default)]
    pub timeline: Vec<SampleReport>,
    /// The budget shared with other processes through `--coordinator`; absent without one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub coordinator: Option<CoordinatorReport>,
}

/// What the shared budget (`--coordinator`) did for this process.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct CoordinatorReport {
    /// Where the coordinator is, without any password.
    pub url: String,
    /// Permits the shared bucket granted.
    pub permits_shared: u64,
    /// Permits taken at the local fallback rate while the coordinator was unreachable.
    pub permits_local: u64,
    /// Shared pauses this process published after a 429.
    pub pauses_published: u64,
    /// Shared pauses this process waited for.
    pub pauses_seen: u64,
    /// The coordinator was unreachable at some point: the run paced itself locally.
    pub degraded: bool,
    /// Times the connection to the coordinator came back.
    pub reconnects: u64,
    /// The local fallback rate, requests per second.
    pub fallback_rate: f64,
}

/// One second of a run.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct SampleReport {
    /// Seconds since the governor started.
    pub t: u32,
    pub requests: u32,
    pub rate_limited: u32,
    pub window: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate: Option<f64>,
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
    /// Why the task did not succeed; absent when it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<ReasonReport>,
    pub attempts: Vec<AttemptReport>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<Value>,
    /// What following the task's command found, per device.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub followed: Option<FollowedReport>,
    /// The devices of a task over devices (a command to a device or a device list, a
    /// move), so `results.csv` and `devices.csv` can give each its own row.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub devices: Vec<DeviceRef>,
    /// The segment (1-based, see `run.segments`) that recorded this outcome.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub segment: Option<u32>,
}

/// A device of a multi-device task.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct DeviceRef {
    pub id: String,
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub serial: Option<String>,
    /// The device's group path, when the plan read it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
}

/// One try of a task's operation.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct AttemptReport {
    pub n: u32,
    /// Milliseconds since the run started.
    pub at_ms: u64,
    pub took_ms: u64,
    /// Absent when the attempt was accepted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure: Option<FailureReport>,
    /// How long the task waited before the next attempt, if there was one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wait_ms: Option<u64>,
    /// What a read-back found when it made the write unnecessary.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

impl AttemptReport {
    /// The attempt's answer in a word: `ok`, the HTTP status (`429`), or the failure class
    /// for failures without one (`timeout`).
    pub fn short(&self) -> String {
        match &self.failure {
            None => "ok".into(),
            Some(f) => f
                .http_status
                .map_or_else(|| f.class.as_str().to_string(), |s| s.to_string()),
        }
    }
}

/// A failed request or task.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct FailureReport {
    pub class: FailureClass,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http_status: Option<u16>,
    /// The server's own message text, when there was one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub esper_message: Option<String>,
    /// How to fix it, when that is known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
    /// What happened, in the engine's words.
    pub description: String,
    /// The server may have acted on the write.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub maybe_processed: bool,
}

/// The description, then Esper's message.
impl fmt::Display for FailureReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.description)?;
        if let Some(m) = &self.esper_message {
            write!(f, ": {m}")?;
        }
        Ok(())
    }
}

impl Hint for FailureReport {
    fn hint(&self) -> Option<String> {
        self.hint.clone()
    }
}

/// Why a task did not run, or did not succeed.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ReasonReport {
    /// The write failed for good.
    Failed {
        failure: FailureReport,
        /// Set when the failure was retryable and retrying stopped.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        gave_up: Option<GaveUp>,
    },
    /// Skipped: needed steps did not succeed.
    NeedsFailed { needs: Vec<NeedReport> },
    /// Skipped: the step's rollout stopped before this task's stage.
    RolloutStopped { stop: StopReport },
    /// Not started because the run stopped.
    NotStarted {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        stopped: Option<StopReason>,
    },
    /// No outcome was recorded for the task.
    NotRecorded,
    /// In flight when the run stopped, and not finished within the drain time.
    Abandoned,
    /// The command was accepted but more devices failed, timed out or were cancelled
    /// (or stayed pending, under `pending: fail`) than the step's `wait` allows.
    DeviceFailures { counts: DeviceCountsReport },
    /// The run stopped while waiting for command request `command`'s devices.
    Interrupted {
        command: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        stopped: Option<StopReason>,
    },
    /// Command request `command` was followed, but its devices' status could not be read.
    StatusUnread { command: String },
}

/// A needed step that did not succeed.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct NeedReport {
    pub step: String,
    pub not_succeeded: u32,
    /// The item whose task in `step` did not succeed, when the need is per item.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub item: Option<String>,
}

/// A rollout stopped by `max_failures` after stage `stage` (1-based) of `stages`:
/// `failed` failure units of `total` so far, `allowed` allowed.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct StopReport {
    pub step: String,
    pub stage: usize,
    pub stages: usize,
    pub failed: u64,
    pub allowed: u64,
    pub total: u64,
}

/// Devices of a followed command by final state.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct DeviceCountsReport {
    pub succeeded: u64,
    pub failed: u64,
    pub timed_out: u64,
    pub cancelled: u64,
    pub pending: u64,
    /// Of the `succeeded`, those a verified install found without the version: they
    /// count as failed. Left out when none.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub not_installed: u64,
}

impl DeviceCountsReport {
    pub fn total(&self) -> u64 {
        self.succeeded + self.failed + self.timed_out + self.cancelled + self.pending
    }

    /// Failed, timed out or cancelled, or succeeded without installing.
    pub fn unsuccessful(&self) -> u64 {
        self.failed + self.timed_out + self.cancelled + self.not_installed
    }

    /// Adds another task's devices, for a group of tasks.
    pub(crate) fn add(&mut self, o: &DeviceCountsReport) {
        self.succeeded += o.succeeded;
        self.failed += o.failed;
        self.timed_out += o.timed_out;
        self.cancelled += o.cancelled;
        self.pending += o.pending;
        self.not_installed += o.not_installed;
    }
}

/// What following a command found.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct FollowedReport {
    pub command: String,
    /// Every device reached a final state before the wait ended.
    pub finished: bool,
    /// Absent when the per-device status could not be read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub counts: Option<DeviceCountsReport>,
    /// The devices that did not succeed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub devices: Vec<DeviceResultReport>,
    /// What the install verification found (`app_install` with `verify`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub install: Option<InstallReport>,
}

/// A verified install's devices: `installed`, `succeeded_not_installed` (listed in
/// `missing`), `failed` and `pending`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct InstallReport {
    pub version: String,
    pub installed: u64,
    pub succeeded_not_installed: u64,
    pub failed: u64,
    pub pending: u64,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub missing: Vec<String>,
    /// Why the devices could not be checked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unchecked: Option<FailureReport>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct DeviceResultReport {
    pub id: String,
    pub state: DeviceState,
    /// The reason the device gave.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

impl TaskReport {
    /// The failure behind the task, when it failed on a request (or a local check).
    pub fn failure(&self) -> Option<&FailureReport> {
        match &self.reason {
            Some(ReasonReport::Failed { failure, .. }) => Some(failure),
            _ => None,
        }
    }
}
