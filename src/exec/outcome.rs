//! Task outcomes: what happened to each task, attempt by attempt. These are data, never
//! errors, and they are what journals and reports are made of.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::plan::TaskId;

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
}

impl TaskStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            TaskStatus::Succeeded => "succeeded",
            TaskStatus::Failed => "failed",
            TaskStatus::Skipped => "skipped",
            TaskStatus::Unknown => "unknown",
            TaskStatus::NotStarted => "not_started",
        }
    }
}

/// One try of a task's operation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Attempt {
    pub n: u32,
    /// Milliseconds since the run started.
    pub at_ms: u64,
    pub took_ms: u64,
    /// `ok`, an HTTP status (`429`) or a failure class (`timeout`).
    pub result: String,
    /// How long the task waited before the next attempt, if there was one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wait_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// The final record of a task.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Outcome {
    pub task: TaskId,
    pub status: TaskStatus,
    pub attempts: Vec<Attempt>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// What the task produced: ids created, per-device command results, ….
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<Value>,
    pub started_ms: u64,
    pub finished_ms: u64,
}

impl Outcome {
    pub fn not_run(task: TaskId, status: TaskStatus, why: String, at_ms: u64) -> Outcome {
        Outcome {
            task,
            status,
            attempts: Vec::new(),
            error: Some(why),
            result: None,
            started_ms: at_ms,
            finished_ms: at_ms,
        }
    }
}
