//! Planning: resolve a job's targets with read-only calls, freeze them, and compile the
//! task graph that `run` executes unchanged.
//!
//! Reads go through the [`Inventory`] trait (the Esper client implements it; tests and the
//! benchmark use fakes), so everything else here is pure: no HTTP, no clock, no sleeping.
//! A [`Plan`] stores each step's fan-out and operation template plus the frozen targets,
//! not a million rendered tasks: [`Plan::task`] materializes any task on demand, always the
//! same way, so a plan file stays small and what was reviewed is exactly what runs. It
//! never contains the API key.
//!
//! Requests are named by [`Endpoint`], never by path: the paths are the client's, and the
//! review text gets them through the [`Paths`] trait (the Esper adapter implements it).

mod compile;
pub mod diff;
pub mod export;
mod frozen;
pub mod limit;
mod resolve;
mod show;
mod verify;

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

pub use crate::base::Endpoint;
use crate::job::{Amount, Limits, OnExists, RetrySettings, Tolerance, template};

pub use compile::{MAX_DEVICES_PER_COMMAND, MAX_DEVICES_PER_MOVE, compile, compile_owned};
pub use diff::{Action, Changes, FieldChange, LiveContent, LiveRule};
pub use export::{ExportPlan, ExportScope, InstalledMethod, PackageVersion};
pub use resolve::{
    GroupInfo, Inventory, InventoryError, Resolved, SerialMethod, listing_cost, resolve,
    select_groups,
};
pub use show::{Paths, plan_text};
pub use verify::{Fault, Faults, integrity, verify};

/// The plan file format; bumped on incompatible changes.
/// Format 3 writes frozen targets as columns (`frozen`); 1 and 2 wrote items and read as
/// they always did.
pub const PLAN_FORMAT: u32 = 3;
/// The oldest format `run --plan` still runs: format 1 rendered every task, a shape no
/// longer read.
pub const OLDEST_PLAN_FORMAT: u32 = 2;

/// Index of a task in the plan; also its position in reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct TaskId(pub u32);

impl fmt::Display for TaskId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#{}", self.0)
    }
}

/// A resolved group or device.
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
    /// How reports name this item: the group path, or the device name.
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

/// A target's frozen selection. Its serde is `frozen`'s: items up to format 2, columns
/// from format 3.
#[derive(Debug, Clone, PartialEq)]
pub struct FrozenTarget {
    pub kind: ItemKind,
    pub items: Vec<Item>,
}

pub type Targets = BTreeMap<String, FrozenTarget>;

/// How a step's tasks are made from its target.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Fanout {
    /// One task.
    Single,
    /// One task per item of the target.
    PerItem { target: String },
    /// Groups: one task per group; devices: one task per chunk of `size`.
    Chunks { target: String, size: u32 },
}

/// What each task of a step sends, before the item is filled in.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum OpTemplate {
    /// A command request; `command_type` and `groups`/`devices` come per task.
    Command {
        command: String,
        args: Value,
        /// `{type, …args}` from the job's `schedule:`; absent means IMMEDIATE.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        schedule: Option<Value>,
        #[serde(
            default,
            with = "crate::job::opt_ms",
            skip_serializing_if = "Option::is_none"
        )]
        wait_ms: Option<std::time::Duration>,
        /// What the devices must reach for the task to succeed (`wait.success`, …);
        /// absent means strict, as in plans written before it existed.
        #[serde(default, skip_serializing_if = "Tolerance::is_default")]
        tolerance: Tolerance,
        /// An INSTALL whose devices are checked for the version once it settles; left
        /// out when false, so older plans keep their hash.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        verify: bool,
    },
    AlarmRule {
        name: String,
        body: Value,
        on_exists: OnExists,
    },
    /// Adds a chunk of devices to the group (`?action=add`).
    GroupMove {
        group_id: String,
        group_label: String,
    },
    AppUpload {
        file: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        package: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        version_code: Option<String>,
    },
    ContentUpload {
        file: String,
    },
    Request {
        method: String,
        path: String,
        #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
        query: BTreeMap<String, String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        body: Option<Value>,
    },
    /// Reads into a file; sends no write.
    Export(Box<ExportPlan>),
}

/// A step's rollout: cumulative task counts at which stages end.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlanRollout {
    pub stage_ends: Vec<u32>,
    pub max_failures: Amount,
}

/// A `needs` entry resolved to the needed step's index, and how it gates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Need {
    /// Index in [`Plan::steps`].
    pub step: usize,
    /// Task `k` of the needing step waits only for task `k` of the needed one: both fan out
    /// one task per item of the same target, so task `k` of each is item `k`.
    pub per_item: bool,
}

/// A step of the plan.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlanStep {
    pub id: String,
    pub kind: String,
    /// By step id: what plan files record and reports show.
    pub needs: Vec<String>,
    /// `needs_all: true`: wait for the whole of every needed step even where the need could
    /// be per item. Left out when false, so plans without it keep their hash.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub needs_all: bool,
    /// `needs` resolved by [`Plan::link`]. Never serialized: it follows from the names and
    /// fan-outs, and leaving it out keeps plan files (and their hashes) as they were.
    #[serde(skip)]
    pub resolved_needs: Vec<Need>,
    pub first_task: u32,
    pub task_count: u32,
    pub fanout: Fanout,
    pub op: OpTemplate,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollout: Option<PlanRollout>,
    /// Per task, what it does to the tenant as decided from the plan's snapshot of live
    /// state ([`diff`]); absent for steps that always send, and in plans without one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actions: Option<Vec<Action>>,
}

impl PlanStep {
    pub fn tasks(&self) -> impl Iterator<Item = TaskId> + use<> {
        (self.first_task..self.first_task + self.task_count).map(TaskId)
    }
}

/// One unit of work, materialized from its step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Task {
    pub id: TaskId,
    pub step: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub item: Option<Item>,
    pub op: Operation,
    /// What the plan's snapshot decided the task does; `None` when it had no snapshot
    /// for it (the run reads back by natural key first, as without a snapshot).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<Action>,
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

impl OpTemplate {
    /// What success means for the devices of a followed command; strict for the rest.
    pub fn tolerance(&self) -> Tolerance {
        match self {
            OpTemplate::Command { tolerance, .. } => *tolerance,
            _ => Tolerance::default(),
        }
    }
}

/// What a task sends. Strings may still hold `${{ steps.… }}`, filled in at run time.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Operation {
    Command {
        body: Value,
        #[serde(
            default,
            with = "crate::job::opt_ms",
            skip_serializing_if = "Option::is_none"
        )]
        wait_ms: Option<std::time::Duration>,
        /// What the devices must reach for the task to succeed (`wait.success`, …);
        /// absent means strict, as in plans written before it existed.
        #[serde(default, skip_serializing_if = "Tolerance::is_default")]
        tolerance: Tolerance,
        /// An INSTALL whose devices are checked for the version once it settles; left
        /// out when false, so older plans keep their hash.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        verify: bool,
    },
    AlarmRule {
        name: String,
        body: Value,
        on_exists: OnExists,
    },
    GroupMove {
        group_id: String,
        device_ids: Vec<String>,
    },
    AppUpload {
        file: String,
        package: Option<String>,
        version_code: Option<String>,
    },
    ContentUpload {
        file: String,
    },
    Request {
        method: String,
        path: String,
        query: BTreeMap<String, String>,
        body: Option<Value>,
    },
    /// An export: `step` names its default file.
    Export {
        step: String,
        plan: Box<ExportPlan>,
    },
}

/// A write as it will be sent, for `plan --show-requests`: the endpoint and what fills its
/// path in, not the path itself (that is the client's; see [`Paths::write`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WriteSpec {
    pub endpoint: Endpoint,
    /// The id the endpoint's path names, when the plan knows it; a rule found only at run
    /// time has none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub query: Vec<(String, String)>,
    pub body: Value,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

impl Operation {
    pub fn summary(&self) -> String {
        match self {
            Operation::Command { body, .. } => format!(
                "{} command",
                body.get("command").and_then(Value::as_str).unwrap_or("?")
            ),
            Operation::AlarmRule { name, .. } => format!("alarm rule `{name}`"),
            Operation::GroupMove { device_ids, .. } => format!("move {} devices", device_ids.len()),
            Operation::AppUpload { file, .. } => format!("upload {file}"),
            Operation::ContentUpload { file } => format!("upload {file}"),
            Operation::Request { method, path, .. } => format!("{method} {path}"),
            Operation::Export { plan, .. } => format!("export {}", plan.spec.what.as_str()),
        }
    }

    /// Whether any string still waits for a step output.
    pub fn needs_outputs(&self) -> bool {
        serde_json::to_string(self).is_ok_and(|s| s.contains("${{"))
    }

    /// The writes this operation sends.
    pub fn writes(&self) -> Vec<WriteSpec> {
        let w = |endpoint: Endpoint, id: Option<&str>, body: Value, note: Option<&str>| WriteSpec {
            endpoint,
            id: id.map(str::to_string),
            query: Vec::new(),
            body,
            note: note.map(str::to_string),
        };
        match self {
            Operation::Command { body, .. } => {
                vec![w(Endpoint::CreateCommand, None, body.clone(), None)]
            }
            Operation::AlarmRule {
                body, on_exists, ..
            } => {
                let mut v = vec![w(
                    Endpoint::CreateAlarmRule,
                    None,
                    body.clone(),
                    Some("when no rule with this name exists"),
                )];
                if *on_exists == OnExists::Update {
                    v.push(w(
                        Endpoint::PatchAlarmRule,
                        None,
                        body.clone(),
                        Some("instead, when the rule exists and differs"),
                    ));
                }
                v
            }
            Operation::GroupMove {
                group_id,
                device_ids,
            } => vec![WriteSpec {
                query: vec![("action".into(), "add".into())],
                ..w(
                    Endpoint::MoveDevices,
                    Some(group_id),
                    json!({ "device_ids": device_ids }),
                    None,
                )
            }],
            Operation::AppUpload { file, .. } => vec![w(
                Endpoint::UploadApp,
                None,
                json!({ "app_file": file }),
                Some("multipart; skipped when the version exists"),
            )],
            Operation::ContentUpload { file } => vec![w(
                Endpoint::UploadContent,
                None,
                json!({ "key": file }),
                Some("multipart; skipped when the file exists"),
            )],
            Operation::Export { .. } => Vec::new(),
            Operation::Request {
                method,
                path,
                query,
                body,
            } => {
                if method == "GET" {
                    return Vec::new();
                }
                let endpoint = Endpoint::Raw {
                    method: method.clone(),
                    path: path.clone(),
                };
                vec![WriteSpec {
                    query: query.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
                    ..w(endpoint, None, body.clone().unwrap_or(Value::Null), None)
                }]
            }
        }
    }
}

/// Connection facts the plan was made against (never the key).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Server {
    pub base_url: String,
    pub enterprise_id: String,
}

/// Requests the plan needs and the time they take under its rate ceiling.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Estimate {
    /// By endpoint; polls of commands with `wait` are a lower bound. Plan files from before
    /// endpoints keyed this by `METHOD path-template`: those keys read as raw requests, which
    /// print and write back exactly as they were (so the file's hash stays the same).
    pub requests: BTreeMap<Endpoint, u64>,
    pub total_requests: u64,
    /// The best case: every request at the rate budget, nothing waited for.
    pub seconds: f64,
    /// The worst case: plus every command wait running to its timeout, stage by stage.
    /// Older plan files lack it (read as 0, meaning "no more than the best case"); it is
    /// left out when 0 so their hashes stay the same.
    #[serde(default, skip_serializing_if = "no_waits")]
    pub max_seconds: f64,
}

fn no_waits(max_seconds: &f64) -> bool {
    *max_seconds == 0.0
}

/// A compiled, frozen job.
///
/// Deserializing links the steps ([`Plan::link`]): `remote = "Self"` makes the derives
/// plain functions that the trait impls below wrap, so no way of loading a plan can skip it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(remote = "Self")]
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
    #[serde(default)]
    pub vars: BTreeMap<String, Value>,
    pub targets: Targets,
    pub steps: Vec<PlanStep>,
    pub task_count: u32,
    pub estimate: Estimate,
    /// When the live state the actions were decided from was read (RFC 3339); absent when
    /// the plan read none. A run of an older plan reads it again (`--max-plan-age`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot_at: Option<String>,
    /// The `--limit` patterns the targets were narrowed by, as given (files expanded);
    /// left out when none was, so older plans keep their hash.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub limit: Vec<String>,
    /// The job's webhooks, URLs as written (`${NAME}` unrendered: a secret never lands in
    /// a plan file).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notify: Vec<crate::job::Notify>,
    /// The group path of the targets' devices (by id), where planning read it without a
    /// request of its own; for reports (`devices.csv`), never for requests.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub device_groups: BTreeMap<String, String>,
}

impl Serialize for Plan {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        frozen::columns_while(self.format >= 3, || Plan::serialize(self, s))
    }
}

impl<'de> Deserialize<'de> for Plan {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Plan, D::Error> {
        let mut plan = Plan::deserialize(d)?;
        plan.link();
        Ok(plan)
    }
}

/// Why compiling failed, naming what to change.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PlanError {
    #[error("target `{0}` selects nothing")]
    EmptyTarget(String, String),
    #[error("app version {package} {version_code} does not exist")]
    UnknownVersion {
        package: String,
        version_code: String,
    },
    #[error("group `{0}` does not exist")]
    UnknownGroup(String),
    /// A selection pattern that matches no group: refused, since a typo in `exclude`
    /// would widen the selection and one in `name` would silently narrow it.
    #[error("target `{target}`: {field} `{pattern}` matches no group")]
    NoMatch {
        target: String,
        field: &'static str,
        pattern: String,
        suggestion: Option<String>,
    },
    #[error("step `{step}`: {message}")]
    Template { step: String, message: String },
    /// `--limit` kept nothing of any target.
    #[error("--limit {} matches nothing the job targets", quoted(patterns))]
    LimitMatchesNothing { patterns: Vec<String> },
    #[error("the job fans out to more than {max} tasks ({count}); split it")]
    TooBig { count: u64, max: u64 },
    #[error(transparent)]
    Inventory(#[from] InventoryError),
}

/// `` `a`, `b` `` for an error message.
fn quoted(patterns: &[String]) -> String {
    patterns
        .iter()
        .map(|p| format!("`{p}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

impl crate::base::Hint for PlanError {
    fn hint(&self) -> Option<String> {
        match self {
            PlanError::LimitMatchesNothing { .. } => Some(
                "a limit names group paths (globs too, `Stores/North/*`), group names or ids, device names, serials or ids; check the spelling against `esper-bulk plan` without --limit"
                    .into(),
            ),
            PlanError::EmptyTarget(_, why) => Some(why.clone()),
            PlanError::UnknownVersion { package, .. } => Some(format!(
                "upload it first (an `app_upload` step), or check the versions of {package}"
            )),
            PlanError::NoMatch {
                field, suggestion, ..
            } => {
                let why = if *field == "exclude" {
                    "an exclude that matches nothing would leave the selection wider than meant"
                } else {
                    "check the spelling: names and paths are matched exactly, paths below `All devices` (`Stores/North/0042`)"
                };
                Some(match suggestion {
                    Some(s) => format!("did you mean `{s}`? {why}"),
                    None => why.to_string(),
                })
            }
            PlanError::UnknownGroup(_) => {
                Some("group_move.to takes a group path below `All devices`, a name or an id".into())
            }
            _ => None,
        }
    }
}

impl Plan {
    /// Resolves every step's `needs` to [`Need`]s. Names that match no step are dropped:
    /// validation refuses them, and a hand-edited plan should not fail here for it.
    pub fn link(&mut self) {
        let index: BTreeMap<&str, usize> = self
            .steps
            .iter()
            .enumerate()
            .map(|(i, s)| (s.id.as_str(), i))
            .collect();
        let resolved: Vec<Vec<Need>> = self
            .steps
            .iter()
            .map(|s| {
                s.needs
                    .iter()
                    .filter_map(|n| index.get(n.as_str()).copied())
                    .map(|d| Need {
                        step: d,
                        per_item: !s.needs_all && self.same_items(&self.steps[d], s),
                    })
                    .collect()
            })
            .collect();
        for (s, r) in self.steps.iter_mut().zip(resolved) {
            s.resolved_needs = r;
        }
    }

    /// Whether task `k` of `a` and task `k` of `b` are the same item, for every `k`.
    fn same_items(&self, a: &PlanStep, b: &PlanStep) -> bool {
        let (ka, kb) = (self.item_target(a), self.item_target(b));
        ka.is_some() && ka == kb && a.task_count == b.task_count
    }

    /// The target a step runs one task per item of, if it does.
    fn item_target<'s>(&self, s: &'s PlanStep) -> Option<&'s str> {
        match &s.fanout {
            Fanout::PerItem { target } => Some(target),
            // Device chunks hold several devices each; a chunk is not an item.
            Fanout::Chunks { target, .. } => self
                .targets
                .get(target)
                .filter(|t| t.kind == ItemKind::Group)
                .map(|_| target.as_str()),
            Fanout::Single => None,
        }
    }

    /// How reports name the item of task `k` of `step`, when its tasks are one per item.
    pub fn item_label(&self, step: &PlanStep, k: u32) -> Option<&str> {
        let t = self.targets.get(self.item_target(step)?)?;
        t.items.get(k as usize).map(Item::label)
    }

    /// Every task id, in order.
    pub fn task_ids(&self) -> impl Iterator<Item = TaskId> + use<> {
        (0..self.task_count).map(TaskId)
    }

    /// The step a task belongs to.
    pub fn step_of(&self, id: TaskId) -> &PlanStep {
        let i = self
            .steps
            .partition_point(|s| s.first_task + s.task_count <= id.0);
        &self.steps[i.min(self.steps.len().saturating_sub(1))]
    }

    /// The devices a task covers when it targets a chunk of several devices (a command to a
    /// device list, a group move); empty for single-target tasks.
    pub fn task_devices(&self, id: TaskId) -> Vec<&Item> {
        if id.0 >= self.task_count {
            return Vec::new();
        }
        let step = self.step_of(id);
        let k = (id.0 - step.first_task) as usize;
        match &step.fanout {
            Fanout::Chunks { target, size } => match self.targets.get(target) {
                Some(t) if t.kind == ItemKind::Device => {
                    let chunk: Vec<&Item> = t
                        .items
                        .iter()
                        .skip(k * *size as usize)
                        .take(*size as usize)
                        .collect();
                    if chunk.len() > 1 { chunk } else { Vec::new() }
                }
                _ => Vec::new(),
            },
            _ => Vec::new(),
        }
    }

    /// Materializes one task. Deterministic; `None` only for an id past the end.
    pub fn task(&self, id: TaskId) -> Option<Task> {
        if id.0 >= self.task_count {
            return None;
        }
        let step = self.step_of(id);
        let k = (id.0 - step.first_task) as usize;
        let (item, chunk): (Option<&Item>, Vec<&Item>) = match &step.fanout {
            Fanout::Single => (None, Vec::new()),
            Fanout::PerItem { target } => (
                self.targets.get(target).and_then(|t| t.items.get(k)),
                Vec::new(),
            ),
            Fanout::Chunks { target, size } => {
                let t = self.targets.get(target)?;
                match t.kind {
                    ItemKind::Group => (t.items.get(k), Vec::new()),
                    ItemKind::Device => {
                        let size = *size as usize;
                        let chunk: Vec<&Item> = t.items.iter().skip(k * size).take(size).collect();
                        (None, chunk)
                    }
                }
            }
        };
        let target_name = match &step.fanout {
            Fanout::PerItem { target } | Fanout::Chunks { target, .. } => Some(target.as_str()),
            Fanout::Single => None,
        };
        let lookup = |r: &[String]| self.lookup(item, target_name, r);
        let render = |v: &Value| template::render_value(v, &lookup).unwrap_or_else(|_| v.clone());
        let render_s = |s: &str| match template::render_str(s, &lookup) {
            Ok(Value::String(s)) => s,
            Ok(other) => other.to_string(),
            Err(_) => s.to_string(),
        };
        let label_item = |chunk: &[&Item]| -> Option<Item> {
            match chunk {
                [] => None,
                [one] => Some((*one).clone()),
                [first, ..] => Some(Item {
                    kind: ItemKind::Device,
                    id: first.id.clone(),
                    name: format!("{} devices from {}", chunk.len(), first.name),
                    detail: None,
                }),
            }
        };
        let (item_out, op) = match &step.op {
            OpTemplate::Command {
                command,
                args,
                schedule,
                wait_ms,
                tolerance,
                verify,
            } => {
                let (kind, key, ids): (&str, &str, Vec<&str>) = match item {
                    Some(g) if g.kind == ItemKind::Group => {
                        ("GROUP", "groups", vec![g.id.as_str()])
                    }
                    Some(d) => ("DEVICE", "devices", vec![d.id.as_str()]),
                    None => (
                        "DEVICE",
                        "devices",
                        chunk.iter().map(|d| d.id.as_str()).collect(),
                    ),
                };
                let mut body = json!({
                    "command_type": kind,
                    key: ids,
                    "device_type": "all",
                    "command": command,
                    "command_args": render(args),
                    "schedule": "IMMEDIATE",
                });
                if let (Some(Value::Object(sched)), Value::Object(b)) = (schedule, &mut body) {
                    let mut args = sched.clone();
                    let kind = args
                        .remove("type")
                        .unwrap_or(Value::String("IMMEDIATE".into()));
                    b.insert("schedule".into(), kind);
                    b.insert("schedule_args".into(), render(&Value::Object(args)));
                }
                (
                    item.cloned().or_else(|| label_item(&chunk)),
                    Operation::Command {
                        body,
                        wait_ms: *wait_ms,
                        tolerance: *tolerance,
                        verify: *verify,
                    },
                )
            }
            OpTemplate::AlarmRule {
                name,
                body,
                on_exists,
            } => {
                let mut body = render(body);
                if let Value::Object(m) = &mut body {
                    m.insert(
                        "enterprise".into(),
                        Value::String(self.server.enterprise_id.clone()),
                    );
                }
                let name = render_s(name);
                if let Value::Object(m) = &mut body {
                    m.insert("name".into(), Value::String(name.clone()));
                }
                (
                    item.cloned(),
                    Operation::AlarmRule {
                        name,
                        body,
                        on_exists: *on_exists,
                    },
                )
            }
            OpTemplate::GroupMove { group_id, .. } => (
                label_item(&chunk),
                Operation::GroupMove {
                    group_id: group_id.clone(),
                    device_ids: chunk.iter().map(|d| d.id.clone()).collect(),
                },
            ),
            OpTemplate::AppUpload {
                file,
                package,
                version_code,
            } => (
                None,
                Operation::AppUpload {
                    file: file.clone(),
                    package: package.clone(),
                    version_code: version_code.clone(),
                },
            ),
            OpTemplate::ContentUpload { file } => {
                (None, Operation::ContentUpload { file: file.clone() })
            }
            OpTemplate::Request {
                method,
                path,
                query,
                body,
            } => (
                item.cloned(),
                Operation::Request {
                    method: method.clone(),
                    path: render_s(path),
                    query: query
                        .iter()
                        .map(|(k, v)| (k.clone(), render_s(v)))
                        .collect(),
                    body: body.as_ref().map(render),
                },
            ),
            OpTemplate::Export(p) => (
                None,
                Operation::Export {
                    step: step.id.clone(),
                    plan: p.clone(),
                },
            ),
        };
        let action = step
            .actions
            .as_ref()
            .and_then(|a| a.get((id.0 - step.first_task) as usize))
            .cloned();
        Some(Task {
            id,
            step: step.id.clone(),
            item: item_out,
            op,
            action,
        })
    }

    /// Template values known at plan time; `steps.*` stay as templates for the run.
    fn lookup(&self, item: Option<&Item>, target: Option<&str>, r: &[String]) -> Option<Value> {
        let field = r.get(1).map(String::as_str)?;
        match r[0].as_str() {
            // `vars.lock.state` reads inside the var, as the checker checked it does.
            "vars" => self
                .vars
                .get(field)
                .and_then(|v| template::lookup_path(v, &r[2..]))
                .cloned(),
            "item" => {
                let item = item?;
                match field {
                    "id" => Some(Value::String(item.id.clone())),
                    "name" => Some(Value::String(item.name.clone())),
                    "path" | "serial" => {
                        Some(Value::String(item.detail.clone().unwrap_or_default()))
                    }
                    _ => None,
                }
            }
            "target" => {
                let t = target?;
                match field {
                    "name" => Some(Value::String(t.to_string())),
                    "count" => self.targets.get(t).map(|x| Value::from(x.items.len())),
                    _ => None,
                }
            }
            "steps" => Some(Value::String(format!("${{{{ {} }}}}", r.join(".")))),
            _ => None,
        }
    }
}
