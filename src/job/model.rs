//! The validated job: what the planner compiles. Every reference in it has been checked.
//!
//! Settings that travel into the frozen plan (limits, retry, `on_exists`) are serializable;
//! durations are stored as milliseconds so plan files stay readable and stable.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// A validated job.
#[derive(Debug, Clone)]
pub struct Job {
    pub name: String,
    pub description: Option<String>,
    /// The file it came from, for messages and the report.
    pub source: String,
    pub esper: EsperSettings,
    pub limits: Limits,
    pub retry: RetrySettings,
    pub deadline: Option<Duration>,
    pub vars: BTreeMap<String, Value>,
    pub targets: BTreeMap<String, TargetSpec>,
    pub steps: Vec<Step>,
    /// Webhooks called when the run ends (`notify:`).
    pub notify: Vec<Notify>,
    /// The Redis coordinator (`coordinator:`), as written: `${NAME}`s and all, since the
    /// URL may carry a password; the run renders it when it connects.
    pub coordinator: Option<String>,
}

impl Job {
    /// Makes the files a job names (APKs, content) relative to `base`, the job file's
    /// directory, unless they are absolute.
    pub fn resolve_paths(&mut self, base: &std::path::Path) {
        for step in &mut self.steps {
            if let StepOp::AppUpload { file, .. } | StepOp::ContentUpload { file } = &mut step.op
                && std::path::Path::new(file.as_str()).is_relative()
            {
                *file = base.join(&*file).display().to_string();
            }
            // An export's `file:` is relative to the job file too, like every file it names.
            if let StepOp::Export(ExportSpec {
                file: Some(file), ..
            }) = &mut step.op
                && std::path::Path::new(file.as_str()).is_relative()
            {
                *file = base.join(&*file).display().to_string();
            }
        }
    }
}

/// Connection settings from the job's `esper:` block, after `${ENV}` substitution.
/// The key itself is not here: only where to find it.
#[derive(Debug, Clone, Default)]
pub struct EsperSettings {
    pub base_url: Option<String>,
    pub enterprise_id: Option<String>,
    pub api_key: Option<KeySource>,
}

/// Where the API key comes from. A literal key in a job file is rejected by validation.
#[derive(Debug, Clone, PartialEq)]
pub enum KeySource {
    /// `${NAME}`: read from the environment when the run starts.
    Env(String),
    /// `api_key_file:` (e.g. a systemd credential).
    File(String),
}

/// A webhook of the job's `notify:` block. The URL is kept as written, `${NAME}`s and
/// all: it is a secret (a Slack webhook URL is a credential), rendered from the
/// environment only when the run sends, so plan files and reports never hold it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Notify {
    pub url: String,
    /// The outcomes it is called on; every one when the job lists none.
    pub on: Vec<NotifyOn>,
    pub format: NotifyFormat,
}

/// A kind of run outcome a webhook is called on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NotifyOn {
    Success,
    /// Failed tasks, and runs that ended incomplete (deadline, not started, killed).
    Failure,
    /// A rollout's `max_failures` stopped the run.
    Threshold,
    Interrupted,
}

impl NotifyOn {
    pub const ALL: [NotifyOn; 4] = [
        NotifyOn::Success,
        NotifyOn::Failure,
        NotifyOn::Threshold,
        NotifyOn::Interrupted,
    ];
    pub const NAMES: &'static [&'static str] = &["success", "failure", "threshold", "interrupted"];

    pub fn parse(s: &str) -> Option<NotifyOn> {
        NotifyOn::ALL.into_iter().find(|o| o.as_str() == s)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            NotifyOn::Success => "success",
            NotifyOn::Failure => "failure",
            NotifyOn::Threshold => "threshold",
            NotifyOn::Interrupted => "interrupted",
        }
    }
}

/// What a webhook receives: the summary as JSON, or Slack's `{"text": …}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NotifyFormat {
    Json,
    Slack,
}

impl NotifyFormat {
    pub const NAMES: &'static [&'static str] = &["json", "slack"];

    pub fn as_str(self) -> &'static str {
        match self {
            NotifyFormat::Json => "json",
            NotifyFormat::Slack => "slack",
        }
    }
}

/// Request pacing for the whole job.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Limits {
    /// Ceiling in requests per second for every request of the job.
    pub rate: f64,
    /// Requests in flight at the start; grows while the API accepts, halves on 429.
    pub batch: u32,
    pub max_in_flight: u32,
    /// Budget of the fleet-wide device listing (`/v2/devices/`) inside `rate`, when set;
    /// else [`DEFAULT_DEVICE_LIST_RATE`]. Kept out of plans that leave it unset, so older
    /// plan files stay byte-identical.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_list_rate: Option<f64>,
    /// How many processes usually share the tenant through a coordinator: while it is
    /// unreachable each paces at `rate / expected_processes` (`--expected-processes`
    /// overrides it; default 2). Kept out of plans that leave it unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expected_processes: Option<u32>,
}

/// Pages per second of `/v2/devices/` unless `limits.device_list_rate` says otherwise. The
/// API throttles that route far harder than others (Esper's own bulk tool sleeps 25–45 s
/// between its pages); one page every five seconds is still 200 devices a second.
pub const DEFAULT_DEVICE_LIST_RATE: f64 = 0.2;

impl Limits {
    /// The device listing's budget: its own rate, never above the job's ceiling.
    pub fn device_list_rate(&self) -> f64 {
        self.device_list_rate
            .unwrap_or(DEFAULT_DEVICE_LIST_RATE)
            .min(self.rate)
    }
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            rate: 20.0,
            batch: 20,
            max_in_flight: 100,
            device_list_rate: None,
            expected_processes: None,
        }
    }
}

/// Retry settings (`retry:`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct RetrySettings {
    /// Attempts per task, the first included.
    pub attempts: u32,
    #[serde(with = "ms")]
    pub initial_delay: Duration,
    #[serde(with = "ms")]
    pub max_delay: Duration,
    /// A server's `Retry-After` is honoured up to this long.
    #[serde(with = "ms")]
    pub max_retry_after: Duration,
}

impl Default for RetrySettings {
    fn default() -> Self {
        RetrySettings {
            attempts: 6,
            initial_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(60),
            max_retry_after: Duration::from_secs(300),
        }
    }
}

/// How a target selects groups or devices; resolved against the API at plan time.
#[derive(Debug, Clone, PartialEq)]
pub enum TargetSpec {
    Groups(GroupSelector),
    Devices(DeviceSelector),
    Union(Vec<String>),
}

impl TargetSpec {
    /// Whether the target yields groups (`true`) or devices; unions take their members' kind.
    pub fn kind_name(&self) -> &'static str {
        match self {
            TargetSpec::Groups(_) => "groups",
            TargetSpec::Devices(_) => "devices",
            TargetSpec::Union(_) => "union",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct GroupSelector {
    /// Exact names or glob patterns over the group path (`Stores/*`, `Stores/**/00??`).
    pub names: Vec<String>,
    pub ids: Vec<String>,
    pub all: bool,
    /// Paths or globs removed from the selection.
    pub exclude: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct DeviceSelector {
    /// A group path, name or id; includes subgroups.
    pub group: Option<String>,
    pub name: Option<String>,
    pub serial: Option<String>,
    /// `online`/`offline` or Esper's numeric state.
    pub state: Option<String>,
    pub tags: Option<String>,
    /// Serial numbers read from the `csv:` file's column when the job was loaded.
    pub serials: Vec<String>,
    pub ids: Vec<String>,
}

/// One step of the job.
#[derive(Debug, Clone)]
pub struct Step {
    pub id: String,
    pub needs: Vec<String>,
    /// Wait for the whole of every needed step, even where `needs` would be per item.
    pub needs_all: bool,
    /// Fan out one task per group or device of this target (ops without `to:`).
    pub for_each: Option<String>,
    pub rollout: Option<Rollout>,
    pub op: StepOp,
}

/// Split a step's tasks into stages; each starts only when the previous one finished
/// within `max_failures`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Rollout {
    /// Cumulative stage sizes: `[1, 10%, 100%]`.
    pub stages: Vec<Amount>,
    pub max_failures: Amount,
}

/// `wait:` on a command step: how long to follow the command, and what its devices must
/// reach for the task to count as succeeded.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Wait {
    pub timeout: Duration,
    pub tolerance: Tolerance,
}

/// What success means for a followed command's devices. The default is strict: any
/// failed, timed-out or cancelled device fails the task; devices still queued when the
/// wait ends (offline ones) are counted and listed as pending, not failed, unless
/// `pending_fails`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Tolerance {
    /// `success: 95%`: the share of the task's devices that must not fail.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub success: Option<f64>,
    /// `max_device_failures: N`: devices that may fail before the task fails.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_device_failures: Option<u64>,
    /// `pending: fail`: devices still pending when the wait ends count as failures.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub pending_fails: bool,
}

impl Tolerance {
    /// No threshold and pending devices not failed: what a plan without these fields means.
    pub fn is_default(&self) -> bool {
        *self == Tolerance::default()
    }

    /// Devices that may fail out of `total` before the task fails. `success: 95%` of 50
    /// devices needs 48 (95% rounded up), so 2 may fail.
    pub fn allowed(&self, total: u64) -> u64 {
        match (self.max_device_failures, self.success) {
            (Some(n), _) => n.min(total),
            (None, Some(p)) => total - Amount::Percent(p).of(total),
            (None, None) => 0,
        }
    }

    /// The devices that count as failed: `unsuccessful` (failed, timed out, cancelled),
    /// plus the `pending` ones under `pending: fail`.
    pub fn failures(&self, unsuccessful: u64, pending: u64) -> u64 {
        unsuccessful + if self.pending_fails { pending } else { 0 }
    }

    /// Whether a task whose devices ended so is a success.
    pub fn accepts(&self, unsuccessful: u64, pending: u64, total: u64) -> bool {
        self.failures(unsuccessful, pending) <= self.allowed(total)
    }
}

/// A count or a percentage.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Amount {
    Count(u64),
    Percent(f64),
}

impl Amount {
    /// The amount out of `total` (percentages round up, so 10% of 5 is 1).
    pub fn of(self, total: u64) -> u64 {
        match self {
            Amount::Count(n) => n.min(total),
            Amount::Percent(p) => ((p / 100.0) * total as f64).ceil().min(total as f64) as u64,
        }
    }
}

impl std::fmt::Display for Amount {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Amount::Count(n) => write!(f, "{n}"),
            Amount::Percent(p) => write!(f, "{p}%"),
        }
    }
}

/// What a step does. Strings may hold `${{ … }}` templates, all checked at validation;
/// `steps.<id>.<output>` references are filled in at run time from the needed step.
#[derive(Debug, Clone)]
pub enum StepOp {
    /// Upload an APK unless that package version already exists.
    AppUpload {
        file: String,
        package: Option<String>,
        version_code: Option<String>,
    },
    /// INSTALL of an app version: one command request per group, device lists chunked.
    AppInstall {
        to: String,
        version: VersionRef,
        wait: Option<Wait>,
        /// After the command settles, read which devices have the version installed
        /// (`verify:`; on by default when `wait:` is given).
        verify: bool,
    },
    /// UNINSTALL of a package.
    AppUninstall {
        to: String,
        package: String,
        wait: Option<Wait>,
    },
    /// Any Esper command with free-form args.
    Command {
        to: String,
        name: String,
        args: Value,
        /// Esper's `schedule` (`type`) and `schedule_args` (the rest), as written.
        schedule: Option<Value>,
        wait: Option<Wait>,
    },
    /// Create or update an alarm rule keyed by name.
    AlarmRule {
        name: String,
        body: Value,
        on_exists: OnExists,
    },
    /// Move the devices of a target into one group.
    GroupMove { devices: String, group: String },
    /// Upload a content file unless one with the same name and size exists.
    ContentUpload { file: String },
    /// Any request: the escape hatch for endpoints the language does not cover yet.
    Request {
        method: String,
        path: String,
        query: BTreeMap<String, String>,
        body: Option<Value>,
    },
    /// Read part of the tenant and write it to a file: reads only, never a write.
    Export(ExportSpec),
}

impl StepOp {
    pub fn kind(&self) -> &'static str {
        match self {
            StepOp::AppUpload { .. } => "app_upload",
            StepOp::AppInstall { .. } => "app_install",
            StepOp::AppUninstall { .. } => "app_uninstall",
            StepOp::Command { .. } => "command",
            StepOp::AlarmRule { .. } => "alarm_rule",
            StepOp::GroupMove { .. } => "group_move",
            StepOp::ContentUpload { .. } => "content_upload",
            StepOp::Request { .. } => "request",
            StepOp::Export(_) => "export",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum VersionRef {
    /// An app version id (or a template producing one).
    Id(String),
    /// Resolved to a version id at plan time.
    Package {
        package: String,
        version_code: String,
    },
}

/// An `export:` step: what to read, from which target, and where to write it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExportSpec {
    pub what: ExportWhat,
    /// The target whose devices (or groups) are exported; all of them when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// Columns, by name or dotted path into Esper's object; the defaults when empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub fields: Vec<String>,
    pub format: ExportFormat,
    /// Where to write it (absolute once the job is loaded); `<run dir>/exports/<step>.<ext>`
    /// when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    /// `what: installed`: the package, and optionally one version code of it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub package: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version_code: Option<String>,
    /// `what: commands`: only command requests created since then.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<Since>,
}

/// What an export reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExportWhat {
    Devices,
    Groups,
    Apps,
    Installed,
    AlarmRules,
    Commands,
}

impl ExportWhat {
    pub const NAMES: &'static [&'static str] = &[
        "devices",
        "groups",
        "apps",
        "installed",
        "alarm_rules",
        "commands",
    ];

    pub fn parse(s: &str) -> Option<ExportWhat> {
        Some(match s {
            "devices" => ExportWhat::Devices,
            "groups" => ExportWhat::Groups,
            "apps" => ExportWhat::Apps,
            "installed" => ExportWhat::Installed,
            "alarm_rules" => ExportWhat::AlarmRules,
            "commands" => ExportWhat::Commands,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ExportWhat::Devices => "devices",
            ExportWhat::Groups => "groups",
            ExportWhat::Apps => "apps",
            ExportWhat::Installed => "installed",
            ExportWhat::AlarmRules => "alarm_rules",
            ExportWhat::Commands => "commands",
        }
    }
}

/// The file format of an export.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExportFormat {
    Csv,
    /// One JSON array, written element by element.
    Json,
    /// One JSON object a line.
    Jsonl,
}

impl ExportFormat {
    pub const NAMES: &'static [&'static str] = &["csv", "json", "jsonl"];

    pub fn parse(s: &str) -> Option<ExportFormat> {
        Some(match s {
            "csv" => ExportFormat::Csv,
            "json" => ExportFormat::Json,
            "jsonl" | "ndjson" => ExportFormat::Jsonl,
            _ => return None,
        })
    }

    /// The format a file name's extension names, if any.
    pub fn of_path(path: &str) -> Option<ExportFormat> {
        let ext = std::path::Path::new(path).extension()?.to_str()?;
        ExportFormat::parse(&ext.to_ascii_lowercase())
    }

    pub fn extension(self) -> &'static str {
        match self {
            ExportFormat::Csv => "csv",
            ExportFormat::Json => "json",
            ExportFormat::Jsonl => "jsonl",
        }
    }
}

/// Since when a command export reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Since {
    /// This long before the export runs.
    #[serde(with = "ms")]
    Ago(Duration),
    /// The start of this job's last successful run on this server (everything, the first
    /// time).
    LastRun,
}

/// What to do when an alarm rule with the same name exists.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum OnExists {
    Skip,
    #[default]
    Update,
    Fail,
}

/// Serde helper: `Duration` as whole milliseconds.
pub mod ms {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(d.as_millis() as u64)
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        Ok(Duration::from_millis(u64::deserialize(d)?))
    }
}

/// Serde helper: `Option<Duration>` as milliseconds or null.
pub mod opt_ms {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    pub fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => s.serialize_some(&(d.as_millis() as u64)),
            None => s.serialize_none(),
        }
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        Ok(Option::<u64>::deserialize(d)?.map(Duration::from_millis))
    }
}
