//! Planning: resolve a job's targets with read-only calls, freeze them, and compile the
//! task graph that `run` executes unchanged.
//!
//! Reads go through the [`Inventory`] trait (the Esper client implements it; tests use a
//! fake), so everything else here is pure: no HTTP, no clock, no sleeping. The [`Plan`] is
//! serializable: `plan --out` writes it and `run --plan` executes exactly that, so a
//! reviewed plan is what runs. It never contains the API key.

mod compile;
mod resolve;

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::job::{Limits, OnExists, RetrySettings};

pub use compile::compile;
pub use resolve::{GroupInfo, Inventory, InventoryError, resolve};

/// The plan file format; bumped on incompatible changes.
pub const PLAN_FORMAT: u32 = 1;

/// Index of a task in [`Plan::tasks`]; also its position in reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct TaskId(pub u32);

impl fmt::Display for TaskId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#{}", self.0)
    }
}

/// A resolved group or device that a task acts on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Item {
    pub kind: ItemKind,
    pub id: String,
    pub name: String,
    /// Group path below the root (`Stores/North/0042`) or device serial.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

impl Item {
    /// How reports name this item: the group path or the device name.
    pub fn label(&self) -> &str {
        match (self.kind, &self.detail) {
            (ItemKind::Group, Some(path)) => path,
            _ => &self.name,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ItemKind {
    Group,
    Device,
}

/// A target's frozen selection.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FrozenTarget {
    pub kind: ItemKind,
    pub items: Vec<Item>,
}

/// The resolved targets of a job, keyed by target name.
pub type Targets = BTreeMap<String, FrozenTarget>;

/// One unit of work: a single write (plus its read-backs and status polls).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Task {
    pub id: TaskId,
    pub step: String,
    /// The group or device this task is for, when the step fans out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub item: Option<Item>,
    pub op: Operation,
}

impl Task {
    /// The name reports use for this task's target.
    pub fn label(&self) -> String {
        match &self.item {
            Some(i) => i.label().to_string(),
            None => self.op.summary(),
        }
    }
}

/// What a task sends, frozen at plan time.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Operation {
    /// `POST /commands/v0/commands/` with this body; optionally follow it to final states.
    Command {
        body: Value,
        #[serde(
            default,
            with = "crate::job::opt_ms",
            skip_serializing_if = "Option::is_none"
        )]
        wait_ms: Option<std::time::Duration>,
    },
    /// Create the rule, or apply `on_exists` when a rule with this name exists.
    AlarmRule {
        name: String,
        body: Value,
        on_exists: OnExists,
    },
}

/// A write as it will be sent, for `plan --show-requests` and the request estimate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WriteSpec {
    pub method: String,
    /// Below the base URL, with `{enterprise_id}` filled in.
    pub path: String,
    pub body: Value,
    /// When the write only happens under a condition (e.g. the rule already exists).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

impl Operation {
    pub fn summary(&self) -> String {
        match self {
            Operation::Command { body, .. } => {
                format!(
                    "{} command",
                    body.get("command").and_then(Value::as_str).unwrap_or("?")
                )
            }
            Operation::AlarmRule { name, .. } => format!("alarm rule `{name}`"),
        }
    }

    /// The writes this operation sends on the happy path.
    pub fn writes(&self, enterprise_id: &str) -> Vec<WriteSpec> {
        match self {
            Operation::Command { body, .. } => vec![WriteSpec {
                method: "POST".into(),
                path: "/commands/v0/commands/".into(),
                body: body.clone(),
                note: None,
            }],
            Operation::AlarmRule {
                body, on_exists, ..
            } => {
                let mut w = vec![WriteSpec {
                    method: "POST".into(),
                    path: format!("/v1/enterprise/{enterprise_id}/alarmrules/"),
                    body: body.clone(),
                    note: Some("when no rule with this name exists".into()),
                }];
                if *on_exists == OnExists::Update {
                    w.push(WriteSpec {
                        method: "PUT".into(),
                        path: format!("/v1/enterprise/{enterprise_id}/alarmrules/{{id}}/"),
                        body: body.clone(),
                        note: Some("instead, when a rule with this name exists and differs".into()),
                    });
                }
                w
            }
        }
    }

    /// Requests this operation is expected to make, by `METHOD path-template`.
    pub fn expected_requests(&self) -> Vec<(&'static str, u64)> {
        match self {
            Operation::Command { wait_ms, body } => {
                let mut r = vec![("POST /commands/v0/commands/", 1)];
                if wait_ms.is_some() {
                    // At least one stats poll and one page of per-device status.
                    r.push(("GET /commands/v0/commands/{id}/stats/", 1));
                    let devices = body
                        .get("devices")
                        .and_then(Value::as_array)
                        .map_or(1, |d| d.len() as u64);
                    r.push(("GET /commands/v0/status/", devices.div_ceil(100).max(1)));
                }
                r
            }
            Operation::AlarmRule { .. } => vec![
                ("GET /v1/enterprise/{enterprise_id}/alarmrules/", 1),
                ("POST /v1/enterprise/{enterprise_id}/alarmrules/", 1),
            ],
        }
    }
}

/// A step of the plan: its tasks and what it needs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlanStep {
    pub id: String,
    pub kind: String,
    pub needs: Vec<String>,
    pub tasks: Vec<TaskId>,
}

/// Connection facts the plan was made against (never the key).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Server {
    pub base_url: String,
    pub enterprise_id: String,
}

/// The request count and time the plan needs under its rate ceiling.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Estimate {
    pub requests: BTreeMap<String, u64>,
    pub total_requests: u64,
    pub seconds: f64,
}

/// A compiled, frozen job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    pub format: u32,
    pub job: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    pub source: String,
    pub server: Server,
    pub limits: Limits,
    pub retry: RetrySettings,
    #[serde(
        default,
        with = "crate::job::opt_ms",
        skip_serializing_if = "Option::is_none"
    )]
    pub deadline_ms: Option<std::time::Duration>,
    pub targets: Targets,
    pub steps: Vec<PlanStep>,
    pub tasks: Vec<Task>,
    pub estimate: Estimate,
}

/// Why compiling failed: problems with the resolved data, each naming what to change.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PlanError {
    #[error("target `{0}` selects nothing")]
    EmptyTarget(String, String),
    #[error("app version {package} {version_code} does not exist")]
    UnknownVersion {
        package: String,
        version_code: String,
    },
    #[error("step `{step}`: {message}")]
    Template { step: String, message: String },
    #[error(transparent)]
    Inventory(#[from] InventoryError),
}

impl PlanError {
    /// How to fix it.
    pub fn help(&self) -> Option<String> {
        match self {
            PlanError::EmptyTarget(_, why) => Some(why.clone()),
            PlanError::UnknownVersion { package, .. } => Some(format!(
                "upload it first, or list versions of {package} in the console"
            )),
            _ => None,
        }
    }
}
