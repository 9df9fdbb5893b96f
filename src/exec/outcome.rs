//! Task outcomes: what happened to each task, attempt by attempt, and why a task that did
//! not succeed did not. These are data, never errors, and every field is typed: the
//! journal and the report turn them into their own serialized records and never parse
//! text back out of them.
//!
//! The small enums ([`TaskStatus`], [`StopReason`], [`DeviceState`], [`GaveUp`]) carry
//! serde names because both formats use them as they are; the structs do not, since their
//! serialized shape belongs to `journal` and `report`.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::Failure;
use crate::plan::TaskId;

/// A task's final state. The snake_case names are part of the journal and report formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TaskStatus {
    /// The write was accepted (and, with `wait`, every device finished without failure).
    Succeeded,
    /// The task failed for good: a non-retryable answer, retries exhausted, or device failures.
    Failed,
    /// Not attempted because a needed step failed.
    Skipped,
    /// A create may or may not have happened and no read-back could tell.
    Unknown,
    /// Not started because the run stopped (signal, deadline, budget); resumable.
    NotStarted,
    /// The command was accepted, but the run stopped while waiting for its devices: its
    /// request id is known, its devices' final state is not. Resuming follows it again.
    Interrupted,
}

impl TaskStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            TaskStatus::Succeeded => "succeeded",
            TaskStatus::Failed => "failed",
            TaskStatus::Skipped => "skipped",
            TaskStatus::Unknown => "unknown",
            TaskStatus::NotStarted => "not_started",
            TaskStatus::Interrupted => "interrupted",
        }
    }
}

/// Why a run stopped before finishing every task.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StopReason {
    Interrupted,
    Deadline,
}

/// One try of a task's operation.
#[derive(Debug, Clone, PartialEq)]
pub struct Attempt {
    pub n: u32,
    /// Milliseconds since the run started.
    pub at_ms: u64,
    pub took_ms: u64,
    /// Accepted, or how it failed.
    pub result: Result<(), Failure>,
    /// How long the task waited before the next attempt, if there was one.
    pub wait_ms: Option<u64>,
    /// What a read-back found when it made the write unnecessary.
    pub note: Option<String>,
}

/// Why a task gave up retrying a retryable failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GaveUp {
    /// Every attempt `retry.attempts` allows was used.
    Attempts,
    /// The run-wide retry budget ran dry first.
    Budget,
}

/// A needed step that did not succeed, and how many of its tasks did not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shortfall {
    pub step: String,
    pub not_succeeded: u32,
    /// Set when the need is per item: the item (group path, device name) whose task in
    /// `step` did not succeed; `not_succeeded` is then 1.
    pub item: Option<String>,
}

/// A rollout stopped by its `max_failures` threshold after a stage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RolloutStop {
    pub step: String,
    /// The stage that completed before the stop, 1-based.
    pub stage: usize,
    pub stages: usize,
    /// Failure units (devices of followed commands, else tasks) so far, and how many
    /// `max_failures` allows of the `total` units so far.
    pub failed: u64,
    pub allowed: u64,
    pub total: u64,
}

/// Where a device ended up for a followed command.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeviceState {
    Succeeded,
    Failed,
    TimedOut,
    Cancelled,
    /// Not in a final state when the wait ended (queued, offline, in progress).
    Pending,
}

/// Devices of a followed command by final state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DeviceCounts {
    pub succeeded: u64,
    pub failed: u64,
    pub timed_out: u64,
    pub cancelled: u64,
    pub pending: u64,
}

impl DeviceCounts {
    pub fn add(&mut self, state: DeviceState) {
        let n = match state {
            DeviceState::Succeeded => &mut self.succeeded,
            DeviceState::Failed => &mut self.failed,
            DeviceState::TimedOut => &mut self.timed_out,
            DeviceState::Cancelled => &mut self.cancelled,
            DeviceState::Pending => &mut self.pending,
        };
        *n += 1;
    }

    pub fn total(&self) -> u64 {
        self.succeeded + self.failed + self.timed_out + self.cancelled + self.pending
    }

    /// Devices that ended without success (failed, timed out or cancelled): what counts
    /// against a rollout and fails the task.
    pub fn unsuccessful(&self) -> u64 {
        self.failed + self.timed_out + self.cancelled
    }
}

/// One device that did not succeed, with the reason the device gave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceResult {
    pub id: String,
    pub state: DeviceState,
    /// At most [`MAX_DEVICE_REASON`] characters ([`device_reason`]).
    pub reason: Option<String>,
}

/// The longest per-device reason kept: a 1,000-device chunk's journal record stays
/// bounded by its device list whatever a device reports.
pub const MAX_DEVICE_REASON: usize = 500;

/// A device's reason cut to [`MAX_DEVICE_REASON`] characters (`…` marks a cut).
pub fn device_reason(reason: &str) -> String {
    match reason.char_indices().nth(MAX_DEVICE_REASON) {
        None => reason.to_string(),
        Some((end, _)) => {
            let keep = reason[..end]
                .char_indices()
                .nth(MAX_DEVICE_REASON - 1)
                .map_or(end, |(i, _)| i);
            format!("{}…", &reason[..keep])
        }
    }
}

/// What following an asynchronous command found.
#[derive(Debug, Clone, PartialEq)]
pub struct Followed {
    pub command: String,
    /// Every device reached a final state before the wait ended.
    pub finished: bool,
    /// Devices per state; `None` when the per-device status could not be read.
    pub counts: Option<DeviceCounts>,
    /// The devices that did not succeed (pending ones included), in the order Esper listed them.
    pub devices: Vec<DeviceResult>,
    /// For a verified install: which devices really have the version.
    pub install: Option<Box<InstallCheck>>,
}

impl Followed {
    /// Devices that count as failed for the step's tolerance, rollouts and exit codes:
    /// failed, timed out or cancelled, plus those whose install succeeded without the
    /// version landing.
    pub fn unsuccessful(&self) -> Option<u64> {
        let c = self.counts?;
        Some(c.unsuccessful() + self.install.as_ref().map_or(0, |i| i.not_installed))
    }
}

/// Where a device of a verified install ended. The snake_case names are part of the
/// journal and report formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InstallState {
    /// The command succeeded and the version is on the device.
    Installed,
    /// The command reported success, but the device does not have the version.
    SucceededNotInstalled,
    /// The command failed, timed out or was cancelled.
    Failed,
    /// Still queued (offline) when the wait ended.
    Pending,
}

/// What the read after a followed INSTALL found: the task's devices by [`InstallState`].
#[derive(Debug, Clone, PartialEq, Default)]
pub struct InstallCheck {
    /// The app version the command installs.
    pub version: String,
    pub installed: u64,
    pub not_installed: u64,
    pub failed: u64,
    pub pending: u64,
    /// The devices whose command succeeded without installing, by id.
    pub missing: Vec<String>,
    /// Why the devices could not be checked (the read failed); then no device is counted
    /// against the task for it.
    pub unchecked: Option<Failure>,
}

impl InstallCheck {
    pub fn state_of(&self, device: &str) -> Option<InstallState> {
        self.missing
            .iter()
            .any(|d| d == device)
            .then_some(InstallState::SucceededNotInstalled)
    }
}

/// Why a task did not run, or did not succeed.
#[derive(Debug, Clone, PartialEq)]
pub enum Reason {
    /// The write failed for good (status `failed`, or `unknown` when an earlier attempt
    /// may have been applied).
    Failed {
        failure: Failure,
        /// Set when the failure was retryable and retrying stopped.
        gave_up: Option<GaveUp>,
    },
    /// Skipped: needed steps did not succeed.
    NeedsFailed(Vec<Shortfall>),
    /// Skipped: the step's rollout stopped at its threshold before this task's stage.
    RolloutStopped(RolloutStop),
    /// Not started because the run stopped (`None`: the cause was not recorded).
    NotStarted(Option<StopReason>),
    /// No outcome was recorded for the task (a report rebuilt from a journal without one).
    NotRecorded,
    /// In flight when the run stopped, and not finished within the drain time.
    Abandoned,
    /// The command was accepted but more devices failed, timed out or were cancelled (or
    /// stayed pending, under `pending: fail`) than the step's `wait` allows.
    DeviceFailures(DeviceCounts),
    /// The command was accepted and followed, but its per-device status could not be
    /// read: status `unknown`, and resuming reads it again instead of sending it again.
    StatusUnread { command: String },
    /// The run stopped while following command request `command` (`stopped`: why, `None`
    /// when the task could not tell); resuming follows it by id instead of sending it again.
    Interrupted {
        command: String,
        stopped: Option<StopReason>,
    },
}

/// The final record of a task.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    pub task: TaskId,
    pub status: TaskStatus,
    pub attempts: Vec<Attempt>,
    /// Why the task did not succeed; `None` when it did.
    pub reason: Option<Reason>,
    /// What the write produced: ids created, the answer of a raw request, ….
    pub result: Option<Value>,
    /// What following the task's command found, when it was followed.
    pub followed: Option<Followed>,
    pub started_ms: u64,
    pub finished_ms: u64,
}

impl Outcome {
    /// The command request an interrupted task was following, or one whose device status
    /// could not be read: what a resumption follows instead of writing again.
    pub fn interrupted_command(&self) -> Option<&str> {
        match (self.status, &self.reason) {
            (TaskStatus::Unknown, Some(Reason::StatusUnread { command })) => Some(command),
            (TaskStatus::Interrupted, Some(Reason::Interrupted { command, .. })) => Some(command),
            (TaskStatus::Interrupted, _) => self.followed.as_ref().map(|f| f.command.as_str()),
            _ => None,
        }
    }

    pub fn not_run(task: TaskId, status: TaskStatus, reason: Reason, at_ms: u64) -> Outcome {
        Outcome {
            task,
            status,
            attempts: Vec::new(),
            reason: Some(reason),
            result: None,
            followed: None,
            started_ms: at_ms,
            finished_ms: at_ms,
        }
    }
}
