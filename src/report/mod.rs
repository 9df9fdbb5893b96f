//! Reports: fold a run's outcomes into a [`Report`] and render it.
//!
//! A report reads outcomes, the plan and the governor's counters only; it never runs
//! anything. Tasks are listed in plan order. `report.json` is versioned
//! ([`REPORT_FORMAT`]) and made of this module's own schema types ([`TaskReport`],
//! [`AttemptReport`], [`FailureReport`], [`ReasonReport`], [`GovernorReport`], …), filled
//! from the executor's typed outcomes: failures stay typed all the way to the renderers,
//! which group and advise on classes and statuses, never on message text. The one-line
//! text of a task's problem is made in one place, [`TaskReport::error_text`]; the run's
//! outcome and its exit code in another, [`RunOutcome`]. The text summary is what a person
//! sees at the end of a run.

pub mod render;

use std::collections::BTreeMap;
use std::fmt::{self, Write as _};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::base::{FailureClass, Hint};
use crate::exec::{
    Attempt, DeviceCounts, DeviceState, Failure, Followed, GaveUp, GovernorStats, Outcome, Reason,
    RolloutStop, RunOutput, Sample, StopReason, TaskStatus,
};
use crate::plan::Plan;

/// The `report.json` schema version. 2: failures, reasons, rollout stops, followed
/// commands and the run outcome are typed records instead of text.
pub const REPORT_FORMAT: u32 = 2;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Report {
    pub format: u32,
    pub run: RunInfo,
    pub summary: Summary,
    pub governor: GovernorReport,
    pub steps: Vec<StepReport>,
    pub tasks: Vec<TaskReport>,
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
}

/// How a run ended, and the process exit code that says so.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum RunOutcome {
    /// Every task succeeded.
    #[serde(rename = "succeeded")]
    Succeeded,
    /// The run finished, but tasks failed, ended unknown or were skipped.
    #[serde(rename = "failed")]
    FailedTasks,
    /// A rollout's `max_failures` threshold stopped a step.
    #[serde(rename = "stopped")]
    Threshold,
    /// A signal stopped the run.
    #[serde(rename = "interrupted")]
    Interrupted,
    /// The deadline stopped the run; resumable.
    #[serde(rename = "deadline")]
    Deadline,
    /// The run ended with tasks not started, without a recorded stop; resumable.
    #[serde(rename = "incomplete")]
    Incomplete,
}

impl RunOutcome {
    pub const ALL: [RunOutcome; 6] = [
        RunOutcome::Succeeded,
        RunOutcome::FailedTasks,
        RunOutcome::Threshold,
        RunOutcome::Interrupted,
        RunOutcome::Deadline,
        RunOutcome::Incomplete,
    ];

    /// The outcome of a run with these counts: a stop beats a threshold, which beats
    /// failed tasks, which beat tasks never started.
    pub fn of(s: &Summary, stopped: Option<StopReason>, threshold: bool) -> RunOutcome {
        match stopped {
            Some(StopReason::Interrupted) => RunOutcome::Interrupted,
            Some(StopReason::Deadline) => RunOutcome::Deadline,
            None if threshold => RunOutcome::Threshold,
            None if s.failed + s.unknown + s.skipped > 0 => RunOutcome::FailedTasks,
            None if s.not_started > 0 => RunOutcome::Incomplete,
            None => RunOutcome::Succeeded,
        }
    }

    /// The process exit code (see [`crate::exit`]); the only mapping from outcomes to codes.
    pub fn exit_code(self) -> u8 {
        use crate::exit;
        match self {
            RunOutcome::Succeeded => exit::OK,
            RunOutcome::FailedTasks => exit::FAILED_TASKS,
            RunOutcome::Threshold => exit::THRESHOLD,
            RunOutcome::Interrupted => exit::INTERRUPTED,
            RunOutcome::Deadline | RunOutcome::Incomplete => exit::INCOMPLETE,
        }
    }

    /// The word people and dashboards see: `succeeded`, `failed`, `stopped`,
    /// `interrupted` or `incomplete` (both resumable outcomes).
    pub fn word(self) -> &'static str {
        match self {
            RunOutcome::Succeeded => "succeeded",
            RunOutcome::FailedTasks => "failed",
            RunOutcome::Threshold => "stopped",
            RunOutcome::Interrupted => "interrupted",
            RunOutcome::Deadline | RunOutcome::Incomplete => "incomplete",
        }
    }

    /// What the exit code means, for the report's first line.
    pub fn meaning(self) -> &'static str {
        match self {
            RunOutcome::Succeeded => "every task succeeded",
            RunOutcome::FailedTasks => "the run finished with failed tasks",
            RunOutcome::Threshold => "a rollout's max_failures threshold stopped the run",
            RunOutcome::Interrupted => "interrupted by a signal",
            RunOutcome::Deadline => "incomplete but resumable: the deadline was reached",
            RunOutcome::Incomplete => "incomplete but resumable: some tasks were not started",
        }
    }
}

impl fmt::Display for RunOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.word())
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Summary {
    pub tasks: u64,
    pub succeeded: u64,
    pub failed: u64,
    pub skipped: u64,
    pub unknown: u64,
    pub not_started: u64,
    pub requests: u64,
    pub retries: u64,
    pub rate_limited: u64,
    /// Requests per second over the whole run.
    pub mean_rate: f64,
    /// The busiest second of the run (requests in one timeline sample per second).
    #[serde(default)]
    pub peak_rate: f64,
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
    /// The devices of a task that covers several (a command to a device list, a move),
    /// so `results.csv` can give each its own row.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub devices: Vec<DeviceRef>,
}

/// A device of a multi-device task.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct DeviceRef {
    pub id: String,
    pub name: String,
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
    /// The command was accepted but devices failed, timed out or were cancelled.
    DeviceFailures { counts: DeviceCountsReport },
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

impl fmt::Display for StopReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "rollout of step `{}` stopped after stage {} of {}: {} failures exceed max_failures ({} of {} allowed)",
            self.step, self.stage, self.stages, self.failed, self.allowed, self.total
        )
    }
}

/// Devices of a followed command by final state.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct DeviceCountsReport {
    pub succeeded: u64,
    pub failed: u64,
    pub timed_out: u64,
    pub cancelled: u64,
    pub pending: u64,
}

impl DeviceCountsReport {
    pub fn total(&self) -> u64 {
        self.succeeded + self.failed + self.timed_out + self.cancelled + self.pending
    }

    /// Failed, timed out or cancelled.
    pub fn unsuccessful(&self) -> u64 {
        self.failed + self.timed_out + self.cancelled
    }

    fn add(&mut self, o: &DeviceCountsReport) {
        self.succeeded += o.succeeded;
        self.failed += o.failed;
        self.timed_out += o.timed_out;
        self.cancelled += o.cancelled;
        self.pending += o.pending;
    }
}

impl fmt::Display for DeviceCountsReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} of {} devices failed, {} still pending",
            self.unsuccessful(),
            self.total(),
            self.pending
        )
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

    /// The task's problem as one line: what every renderer shows as its error, from the
    /// typed reason. `None` for a task that succeeded.
    pub fn error_text(&self) -> Option<String> {
        let reason = self.reason.as_ref()?;
        Some(match reason {
            ReasonReport::Failed { failure, gave_up } => {
                let mut text = crate::base::one_line(failure);
                let n = self.attempts.len();
                match gave_up {
                    Some(GaveUp::Attempts) => {
                        let _ = write!(text, " (gave up after {n} attempts)");
                    }
                    Some(GaveUp::Budget) => {
                        let _ = write!(text, " (retry budget exhausted after {n} attempts)");
                    }
                    None => {}
                }
                if self.status == TaskStatus::Unknown {
                    text.push_str(
                        "; an earlier attempt may have been applied and no read-back confirmed it",
                    );
                }
                text
            }
            ReasonReport::NeedsFailed { needs } => {
                let list: Vec<String> = needs
                    .iter()
                    .map(|n| match &n.item {
                        Some(item) => format!("`{}` for {item}", n.step),
                        None => format!("`{}` ({} not succeeded)", n.step, n.not_succeeded),
                    })
                    .collect();
                let steps = if needs.len() == 1 { "step" } else { "steps" };
                format!(
                    "skipped: needed {steps} {} did not succeed",
                    list.join(", ")
                )
            }
            ReasonReport::RolloutStopped { stop } => format!("skipped: {stop}"),
            ReasonReport::NotStarted { stopped } => match stopped {
                Some(StopReason::Interrupted) => {
                    "not started: the run was interrupted; resume it to continue".into()
                }
                Some(StopReason::Deadline) => {
                    "not started: the deadline was reached; resume it to continue".into()
                }
                None => "not started: the run stopped; resume it to continue".into(),
            },
            ReasonReport::NotRecorded => "not started: no outcome in the journal".into(),
            ReasonReport::Abandoned => {
                "abandoned while in flight: check the tenant before resuming".into()
            }
            ReasonReport::DeviceFailures { counts } => counts.to_string(),
        })
    }
}

// ---------------------------------------------------------------------------------------
// From the executor's types.

impl From<&Failure> for FailureReport {
    fn from(f: &Failure) -> FailureReport {
        FailureReport {
            class: f.class,
            http_status: f.http_status,
            esper_message: f.esper_message.clone(),
            hint: f.hint.clone(),
            description: f.description.clone(),
            maybe_processed: f.maybe_processed,
        }
    }
}

impl From<&RolloutStop> for StopReport {
    fn from(s: &RolloutStop) -> StopReport {
        StopReport {
            step: s.step.clone(),
            stage: s.stage,
            stages: s.stages,
            failed: s.failed,
            allowed: s.allowed,
            total: s.total,
        }
    }
}

impl From<DeviceCounts> for DeviceCountsReport {
    fn from(c: DeviceCounts) -> DeviceCountsReport {
        DeviceCountsReport {
            succeeded: c.succeeded,
            failed: c.failed,
            timed_out: c.timed_out,
            cancelled: c.cancelled,
            pending: c.pending,
        }
    }
}

impl From<&Reason> for ReasonReport {
    fn from(r: &Reason) -> ReasonReport {
        match r {
            Reason::Failed { failure, gave_up } => ReasonReport::Failed {
                failure: failure.into(),
                gave_up: *gave_up,
            },
            Reason::NeedsFailed(needs) => ReasonReport::NeedsFailed {
                needs: needs
                    .iter()
                    .map(|n| NeedReport {
                        step: n.step.clone(),
                        not_succeeded: n.not_succeeded,
                        item: n.item.clone(),
                    })
                    .collect(),
            },
            Reason::RolloutStopped(s) => ReasonReport::RolloutStopped { stop: s.into() },
            Reason::NotStarted(stopped) => ReasonReport::NotStarted { stopped: *stopped },
            Reason::NotRecorded => ReasonReport::NotRecorded,
            Reason::Abandoned => ReasonReport::Abandoned,
            Reason::DeviceFailures(c) => ReasonReport::DeviceFailures {
                counts: (*c).into(),
            },
        }
    }
}

impl From<&Attempt> for AttemptReport {
    fn from(a: &Attempt) -> AttemptReport {
        AttemptReport {
            n: a.n,
            at_ms: a.at_ms,
            took_ms: a.took_ms,
            failure: a.result.as_ref().err().map(FailureReport::from),
            wait_ms: a.wait_ms,
            note: a.note.clone(),
        }
    }
}

impl From<&Followed> for FollowedReport {
    fn from(f: &Followed) -> FollowedReport {
        FollowedReport {
            command: f.command.clone(),
            finished: f.finished,
            counts: f.counts.map(DeviceCountsReport::from),
            devices: f
                .devices
                .iter()
                .map(|d| DeviceResultReport {
                    id: d.id.clone(),
                    state: d.state,
                    reason: d.reason.clone(),
                })
                .collect(),
        }
    }
}

impl From<&Sample> for SampleReport {
    fn from(s: &Sample) -> SampleReport {
        SampleReport {
            t: s.t,
            requests: s.requests,
            rate_limited: s.rate_limited,
            window: s.window,
            rate: s.rate,
        }
    }
}

impl From<&GovernorStats> for GovernorReport {
    fn from(g: &GovernorStats) -> GovernorReport {
        GovernorReport {
            requests: g.requests,
            by_status: g.by_status.clone(),
            rate_limited: g.rate_limited,
            window: g.window,
            window_max: g.window_max,
            window_min: g.window_min,
            window_changes: g.window_changes,
            paused_ms: g.paused_ms,
            adaptive_rate: g.adaptive_rate,
            timeline: g.timeline.iter().map(SampleReport::from).collect(),
        }
    }
}

impl Report {
    /// Builds the report of a run that finished now.
    pub fn build(
        id: &str,
        plan: &Plan,
        out: &RunOutput,
        gov: GovernorStats,
        started_at: jiff::Timestamp,
    ) -> Report {
        Report::build_at(id, plan, out, gov, started_at, jiff::Timestamp::now())
    }

    /// Builds the report of a run that finished at `finished_at` (rebuilding from a journal).
    pub fn build_at(
        id: &str,
        plan: &Plan,
        out: &RunOutput,
        gov: GovernorStats,
        started_at: jiff::Timestamp,
        finished_at: jiff::Timestamp,
    ) -> Report {
        let mut s = Summary {
            tasks: out.outcomes.len() as u64,
            ..Default::default()
        };
        for o in &out.outcomes {
            match o.status {
                TaskStatus::Succeeded => s.succeeded += 1,
                TaskStatus::Failed => s.failed += 1,
                TaskStatus::Skipped => s.skipped += 1,
                TaskStatus::Unknown => s.unknown += 1,
                TaskStatus::NotStarted => s.not_started += 1,
            }
            s.retries += o.attempts.len().saturating_sub(1) as u64;
        }
        s.requests = gov.requests;
        s.rate_limited = gov.rate_limited;
        let secs = out.elapsed.as_secs_f64();
        // A run shorter than a second did not sustain its burst rate; do not report it as one.
        s.mean_rate = (gov.requests as f64 / secs.max(1.0) * 10.0).round() / 10.0;
        // Samples cover one second, or more once a long run's timeline was coarsened.
        s.peak_rate = gov
            .timeline
            .windows(2)
            .map(|w| w[0].requests as f64 / f64::from(w[1].t.saturating_sub(w[0].t).max(1)))
            .chain(gov.timeline.last().map(|l| l.requests as f64))
            .fold(0.0, f64::max);
        let outcome = RunOutcome::of(&s, out.stopped, !out.rollout_stops.is_empty());
        let steps = plan
            .steps
            .iter()
            .map(|st| {
                let mut by_status = BTreeMap::new();
                for t in st.tasks() {
                    *by_status
                        .entry(out.outcomes[t.0 as usize].status.as_str().to_string())
                        .or_default() += 1;
                }
                StepReport {
                    id: st.id.clone(),
                    kind: st.kind.clone(),
                    tasks: st.task_count as u64,
                    by_status,
                }
            })
            .collect();
        let tasks = out.outcomes.iter().map(|o| task_report(plan, o)).collect();
        Report {
            format: REPORT_FORMAT,
            run: RunInfo {
                id: id.to_string(),
                job: plan.job.clone(),
                plan_hash: plan_hash(plan),
                source: plan.source.clone(),
                server: plan.server.base_url.clone(),
                started_at: started_at.to_string(),
                finished_at: finished_at.to_string(),
                elapsed_ms: out.elapsed.as_millis() as u64,
                outcome,
                exit_code: outcome.exit_code(),
                rollout_stops: out.rollout_stops.iter().map(StopReport::from).collect(),
            },
            summary: s,
            governor: GovernorReport::from(&gov),
            steps,
            tasks,
        }
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self)
            .unwrap_or_else(|e| format!("{{\"error\": \"cannot render report: {e}\"}}"))
    }

    /// The few lines printed at the end of a run.
    pub fn summary_text(&self) -> String {
        let s = &self.summary;
        let mut out = String::new();
        let _ = writeln!(
            out,
            "job {} — {} in {:.1}s",
            self.run.job,
            self.run.outcome,
            self.run.elapsed_ms as f64 / 1000.0
        );
        let _ = writeln!(
            out,
            "tasks: {} succeeded, {} failed, {} skipped, {} unknown, {} not started (of {})",
            s.succeeded, s.failed, s.skipped, s.unknown, s.not_started, s.tasks
        );
        let _ = writeln!(
            out,
            "requests: {} ({} retries, {} answered 429), {:.1} req/s; in-flight window {}..{}",
            s.requests,
            s.retries,
            s.rate_limited,
            s.mean_rate,
            self.governor.window_min,
            self.governor.window_max
        );
        for st in &self.steps {
            let parts: Vec<String> = st
                .by_status
                .iter()
                .map(|(k, v)| format!("{v} {k}"))
                .collect();
            let _ = writeln!(
                out,
                "  step {:<20} {:<12} {}",
                st.id,
                st.kind,
                parts.join(", ")
            );
        }
        let bad: Vec<&TaskReport> = self
            .tasks
            .iter()
            .filter(|t| !matches!(t.status, TaskStatus::Succeeded | TaskStatus::NotStarted))
            .collect();
        for stop in &self.run.rollout_stops {
            let _ = writeln!(out, "  {stop}");
        }
        for t in bad.iter().take(10) {
            let _ = writeln!(
                out,
                "  {} {} [{}]: {}",
                t.status.as_str(),
                t.target,
                t.step,
                t.error_text().as_deref().unwrap_or("-")
            );
        }
        if bad.len() > 10 {
            let _ = writeln!(out, "  … and {} more in the report", bad.len() - 10);
        }
        out
    }
}

impl Report {
    /// Prometheus text format for node_exporter's textfile collector: last run time,
    /// outcome, task counts by status, requests, 429s and duration, labelled by job.
    pub fn prometheus(&self) -> String {
        let job = self.run.job.replace('\\', "\\\\").replace('"', "\\\"");
        let mut out = String::new();
        let mut metric = |name: &str, help: &str, kind: &str, rows: Vec<(String, f64)>| {
            let _ = writeln!(
                out,
                "# HELP esper_bulk_{name} {help}\n# TYPE esper_bulk_{name} {kind}"
            );
            for (labels, v) in rows {
                let _ = writeln!(out, "esper_bulk_{name}{{job=\"{job}\"{labels}}} {v}");
            }
        };
        let finished = self
            .run
            .finished_at
            .parse::<jiff::Timestamp>()
            .map(|t| t.as_second() as f64)
            .unwrap_or(0.0);
        metric(
            "last_run_timestamp_seconds",
            "When the last run finished.",
            "gauge",
            vec![(String::new(), finished)],
        );
        metric(
            "last_run_duration_seconds",
            "How long the last run took.",
            "gauge",
            vec![(String::new(), self.run.elapsed_ms as f64 / 1000.0)],
        );
        metric(
            "last_run_exit_code",
            "Exit code of the last run (0 ok, 1 failed tasks, 3 threshold, 4 incomplete, 130 interrupted).",
            "gauge",
            vec![(String::new(), self.run.exit_code as f64)],
        );
        let outcomes = [
            "succeeded",
            "failed",
            "stopped",
            "incomplete",
            "interrupted",
        ];
        metric(
            "last_run_outcome",
            "1 for the outcome of the last run, 0 for the others.",
            "gauge",
            outcomes
                .iter()
                .map(|o| {
                    (
                        format!(",outcome=\"{o}\""),
                        f64::from(u8::from(self.run.outcome.word() == *o)),
                    )
                })
                .collect(),
        );
        let s = &self.summary;
        let by_status = [
            ("succeeded", s.succeeded),
            ("failed", s.failed),
            ("skipped", s.skipped),
            ("unknown", s.unknown),
            ("not_started", s.not_started),
        ];
        metric(
            "last_run_tasks",
            "Tasks of the last run by status.",
            "gauge",
            by_status
                .iter()
                .map(|(k, v)| (format!(",status=\"{k}\""), *v as f64))
                .collect(),
        );
        metric(
            "last_run_requests",
            "Requests the last run sent.",
            "gauge",
            vec![(String::new(), s.requests as f64)],
        );
        metric(
            "last_run_rate_limited",
            "Requests of the last run answered 429.",
            "gauge",
            vec![(String::new(), s.rate_limited as f64)],
        );
        metric(
            "last_run_retries",
            "Retries in the last run.",
            "gauge",
            vec![(String::new(), s.retries as f64)],
        );
        out
    }
}

fn task_report(plan: &Plan, o: &Outcome) -> TaskReport {
    let (step, target) = match plan.task(o.task) {
        Some(t) => (t.step.clone(), t.label()),
        None => (String::new(), format!("task {}", o.task)),
    };
    TaskReport {
        id: o.task.0,
        step,
        target,
        status: o.status,
        reason: o.reason.as_ref().map(ReasonReport::from),
        attempts: o.attempts.iter().map(AttemptReport::from).collect(),
        result: o.result.clone(),
        followed: o.followed.as_ref().map(FollowedReport::from),
        devices: plan
            .task_devices(o.task)
            .into_iter()
            .map(|d| DeviceRef {
                id: d.id.clone(),
                name: d.name.clone(),
            })
            .collect(),
    }
}

/// `sha256:<hex>` of the plan as serialized (what `plan --out` writes, without indentation).
pub fn plan_hash(plan: &Plan) -> String {
    use sha2::{Digest, Sha256};
    let bytes = serde_json::to_vec(plan).unwrap_or_default();
    let digest = Sha256::digest(&bytes);
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256:{hex}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcomes_and_exit_codes() {
        let ok = Summary {
            tasks: 3,
            succeeded: 3,
            ..Default::default()
        };
        assert_eq!(RunOutcome::of(&ok, None, false), RunOutcome::Succeeded);
        let bad = Summary {
            tasks: 3,
            succeeded: 2,
            failed: 1,
            ..Default::default()
        };
        assert_eq!(RunOutcome::of(&bad, None, false), RunOutcome::FailedTasks);
        assert_eq!(RunOutcome::of(&bad, None, true), RunOutcome::Threshold);
        assert_eq!(
            RunOutcome::of(&ok, Some(StopReason::Interrupted), true),
            RunOutcome::Interrupted
        );
        assert_eq!(
            RunOutcome::of(&ok, Some(StopReason::Deadline), false),
            RunOutcome::Deadline
        );
        let idle = Summary {
            tasks: 3,
            not_started: 3,
            ..Default::default()
        };
        assert_eq!(RunOutcome::of(&idle, None, false), RunOutcome::Incomplete);
        let codes: Vec<(&str, u8)> = RunOutcome::ALL
            .iter()
            .map(|o| (o.word(), o.exit_code()))
            .collect();
        assert_eq!(
            codes,
            [
                ("succeeded", 0),
                ("failed", 1),
                ("stopped", 3),
                ("interrupted", 130),
                ("incomplete", 4),
                ("incomplete", 4)
            ]
        );
        for o in RunOutcome::ALL {
            let json = serde_json::to_string(&o).unwrap();
            assert_eq!(serde_json::from_str::<RunOutcome>(&json).unwrap(), o);
        }
    }
}
