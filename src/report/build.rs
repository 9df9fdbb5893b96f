//! Builds a [`Report`] from a run's outcomes, its plan and the governor's counters, and
//! converts the executor's typed records into the report's own schema types.
//!
//! Building reads only; it never runs anything, and it makes no sentences: the schema
//! holds typed data, and wording it is [`super::render`]'s job. Tasks are listed in plan
//! order.

use std::collections::BTreeMap;

use super::{
    AttemptReport, DeviceCountsReport, DeviceRef, DeviceResultReport, FailureReport,
    FollowedReport, GovernorReport, InstallReport, NeedReport, REPORT_FORMAT, ReasonReport, Report,
    RunInfo, RunOutcome, SampleReport, SegmentReport, StepReport, StopReport, Summary, TaskReport,
};
use crate::exec::{
    Attempt, DeviceCounts, Failure, Followed, GovernorStats, Outcome, Reason, RolloutStop,
    RunOutput, Sample, TaskStatus,
};
use crate::plan::{Item, ItemKind, Plan};

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
            not_installed: 0,
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
            Reason::Interrupted { command, stopped } => ReasonReport::Interrupted {
                command: command.clone(),
                stopped: *stopped,
            },
            Reason::DeviceFailures(c) => ReasonReport::DeviceFailures {
                counts: (*c).into(),
            },
            Reason::StatusUnread { command } => ReasonReport::StatusUnread {
                command: command.clone(),
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
            install: f.install.as_ref().map(|c| InstallReport {
                version: c.version.clone(),
                installed: c.installed,
                succeeded_not_installed: c.not_installed,
                failed: c.failed,
                pending: c.pending,
                missing: c.missing.clone(),
                unchecked: c.unchecked.as_ref().map(FailureReport::from),
            }),
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
            coordinator: g.shared.as_ref().map(|s| super::schema::CoordinatorReport {
                url: s.url.clone(),
                permits_shared: s.permits_shared,
                permits_local: s.permits_local,
                pauses_published: s.pauses_published,
                pauses_seen: s.pauses_seen,
                degraded: s.degraded,
                reconnects: s.reconnects,
                fallback_rate: s.fallback_rate,
            }),
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
                TaskStatus::Interrupted => s.interrupted += 1,
            }
            s.retries += o.attempts.len().saturating_sub(1) as u64;
            if let Some(c) = o.followed.as_ref().and_then(|f| f.counts)
                && c.pending > 0
            {
                s.devices_pending += c.pending;
                s.tasks_with_pending += 1;
            }
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
        let tasks: Vec<TaskReport> = out.outcomes.iter().map(|o| task_report(plan, o)).collect();
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
                segments: Vec::new(),
                limit: plan.limit.clone(),
            },
            summary: s,
            governor: GovernorReport::from(&gov),
            steps,
            causes: super::causes::causes(&tasks),
            tasks,
            notifications: Vec::new(),
        }
    }

    /// Gives a report its history: the segments of a resumed (or rebuilt) run, oldest
    /// first, and for each task the segment (0-based index) that recorded its outcome. The
    /// run then starts when its first segment did, and its elapsed time is the sum of
    /// the segments' (a report never rewrites when the run began).
    pub fn with_segments(
        mut self,
        segments: Vec<SegmentReport>,
        task_segment: &BTreeMap<u32, usize>,
    ) -> Report {
        if let Some(first) = segments.first() {
            self.run.started_at = first.started_at.clone();
        }
        let total: u64 = segments.iter().filter_map(|s| s.elapsed_ms).sum();
        if total > 0 {
            self.run.elapsed_ms = total;
        }
        for t in &mut self.tasks {
            t.segment = task_segment.get(&t.id).map(|i| *i as u32 + 1);
        }
        self.run.segments = segments;
        self
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self)
            .unwrap_or_else(|e| format!("{{\"error\": \"cannot render report: {e}\"}}"))
    }
}

fn task_report(plan: &Plan, o: &Outcome) -> TaskReport {
    let task = plan.task(o.task);
    let (step, target) = match &task {
        Some(t) => (t.step.clone(), t.label()),
        None => (String::new(), format!("task {}", o.task)),
    };
    let device = |d: &Item| DeviceRef {
        id: d.id.clone(),
        name: d.name.clone(),
        serial: d.detail.clone(),
        group: plan.device_groups.get(&d.id).cloned(),
    };
    let mut devices: Vec<DeviceRef> = plan.task_devices(o.task).into_iter().map(device).collect();
    // A task over one device names it too, so `devices.csv` has its name and serial.
    if devices.is_empty()
        && let Some(item) = task.as_ref().and_then(|t| t.item.as_ref())
        && item.kind == ItemKind::Device
    {
        devices.push(device(item));
    }
    let mut reason = o.reason.as_ref().map(ReasonReport::from);
    if let (Some(ReasonReport::DeviceFailures { counts }), Some(check)) = (
        &mut reason,
        o.followed.as_ref().and_then(|f| f.install.as_ref()),
    ) {
        counts.not_installed = check.not_installed;
    }
    TaskReport {
        id: o.task.0,
        step,
        target,
        status: o.status,
        reason,
        attempts: o.attempts.iter().map(AttemptReport::from).collect(),
        result: o.result.clone(),
        followed: o.followed.as_ref().map(FollowedReport::from),
        devices,
        segment: None,
    }
}

/// `sha256:<hex>` of the plan as serialized (what `plan --out` writes, without indentation
/// and without its `integrity` field, which holds this same hash).
pub fn plan_hash(plan: &Plan) -> String {
    crate::plan::integrity(plan)
}
