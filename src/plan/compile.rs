//! Compiling a checked job and its resolved targets into the frozen plan.
//!
//! Pure and deterministic: steps keep file order, task ids are handed out step by step in
//! listing order, `${{ vars.* }}`, `${{ item.* }}` and `${{ target.* }}` are rendered when a
//! task is materialized (`Plan::task`), and the request estimate is computed from fan-out
//! counts without materializing anything, so a million-task plan compiles in moments.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use super::resolve::Resolved;
use super::{
    Endpoint, Estimate, Fanout, ItemKind, OpTemplate, PLAN_FORMAT, Plan, PlanError, PlanRollout,
    PlanStep, Server,
};
use crate::job::{Job, StepOp, VersionRef, Wait};

/// Rows of a command's per-device statuses read a page (the client's page size for them).
const STATUS_PAGE: u64 = 1000;

/// Esper's `/commands/v0/commands/` takes at most 1,000 devices (and 500 groups) per
/// request (API.md §6, `devices` 0..1000): a 100,000-device command is 100 requests.
pub const MAX_DEVICES_PER_COMMAND: u32 = 1000;
/// The bulk limit of `device_ids` in a group PATCH is undocumented; 500 matches commands.
pub const MAX_DEVICES_PER_MOVE: u32 = 500;
/// A plan larger than this is a mistake (or needs splitting into several jobs).
const MAX_TASKS: u64 = 10_000_000;

/// Builds the plan. `server` is where the targets were resolved.
pub fn compile(job: &Job, resolved: &Resolved, server: Server) -> Result<Plan, PlanError> {
    compile_owned(job, resolved.clone(), server)
}

/// [`compile`], taking the resolved targets by value: a 100,000-device fleet's targets
/// move into the plan instead of being held twice.
pub fn compile_owned(job: &Job, mut resolved: Resolved, server: Server) -> Result<Plan, PlanError> {
    let resolved_groups = device_groups(&resolved);
    let mut steps = Vec::new();
    let mut next: u64 = 0;
    for step in &job.steps {
        let count_of = |target: &str| {
            resolved
                .targets
                .get(target)
                .map_or(0, |t| t.items.len() as u64)
        };
        let chunks = |target: &str, size: u32| match resolved.targets.get(target) {
            Some(t) if t.kind == ItemKind::Device => (t.items.len() as u64).div_ceil(size as u64),
            Some(t) => t.items.len() as u64,
            None => 0,
        };
        let per_item = |for_each: &Option<String>| match for_each {
            Some(t) => (Fanout::PerItem { target: t.clone() }, count_of(t)),
            None => (Fanout::Single, 1),
        };
        let command =
            |to: &str, command: &str, args: Value, schedule: Option<Value>, wait: Option<Wait>| {
                (
                    Fanout::Chunks {
                        target: to.to_string(),
                        size: MAX_DEVICES_PER_COMMAND,
                    },
                    chunks(to, MAX_DEVICES_PER_COMMAND),
                    OpTemplate::Command {
                        command: command.to_string(),
                        args,
                        schedule,
                        wait_ms: wait.map(|w| w.timeout),
                        tolerance: wait.map(|w| w.tolerance).unwrap_or_default(),
                        verify: false,
                    },
                )
            };
        let (fanout, count, op) = match &step.op {
            StepOp::AppInstall {
                to,
                version,
                wait,
                verify,
            } => {
                let version_id = match version {
                    VersionRef::Id(v) => Value::String(v.clone()),
                    VersionRef::Package {
                        package,
                        version_code,
                    } => Value::String(
                        resolved
                            .versions
                            .get(&(package.clone(), version_code.clone()))
                            .cloned()
                            .unwrap_or_default(),
                    ),
                };
                let (fanout, count, mut op) = command(
                    to,
                    "INSTALL",
                    json!({ "app_version": version_id }),
                    None,
                    *wait,
                );
                if let OpTemplate::Command { verify: v, .. } = &mut op {
                    *v = *verify && wait.is_some();
                }
                (fanout, count, op)
            }
            StepOp::AppUninstall { to, package, wait } => command(
                to,
                "UNINSTALL",
                json!({ "package_name": package }),
                None,
                *wait,
            ),
            StepOp::Command {
                to,
                name,
                args,
                schedule,
                wait,
            } => command(to, name, args.clone(), schedule.clone(), *wait),
            StepOp::AlarmRule {
                name,
                body,
                on_exists,
            } => {
                let (f, n) = per_item(&step.for_each);
                (
                    f,
                    n,
                    OpTemplate::AlarmRule {
                        name: name.clone(),
                        body: body.clone(),
                        on_exists: *on_exists,
                    },
                )
            }
            StepOp::GroupMove { devices, group } => {
                let (group_id, group_label) = resolved
                    .groups
                    .get(group)
                    .cloned()
                    .ok_or_else(|| PlanError::UnknownGroup(group.clone()))?;
                (
                    Fanout::Chunks {
                        target: devices.clone(),
                        size: MAX_DEVICES_PER_MOVE,
                    },
                    chunks(devices, MAX_DEVICES_PER_MOVE),
                    OpTemplate::GroupMove {
                        group_id,
                        group_label,
                    },
                )
            }
            StepOp::AppUpload {
                file,
                package,
                version_code,
            } => (
                Fanout::Single,
                1,
                OpTemplate::AppUpload {
                    file: file.clone(),
                    package: package.clone(),
                    version_code: version_code.clone(),
                },
            ),
            StepOp::ContentUpload { file } => (
                Fanout::Single,
                1,
                OpTemplate::ContentUpload { file: file.clone() },
            ),
            StepOp::Export(spec) => (Fanout::Single, 1, export_op(&resolved, &step.id, spec)),
            StepOp::Request {
                method,
                path,
                query,
                body,
            } => {
                let (f, n) = per_item(&step.for_each);
                (
                    f,
                    n,
                    OpTemplate::Request {
                        method: method.clone(),
                        path: path.clone(),
                        query: query.clone(),
                        body: body.clone(),
                    },
                )
            }
        };
        let rollout = step.rollout.as_ref().map(|r| {
            let mut ends: Vec<u32> = Vec::new();
            for s in &r.stages {
                let end = (s.of(count).max(1).min(count)) as u32;
                if ends.last().is_none_or(|l| end > *l) {
                    ends.push(end);
                }
            }
            if ends.last().is_none_or(|l| u64::from(*l) < count) {
                ends.push(count as u32);
            }
            PlanRollout {
                stage_ends: ends,
                max_failures: r.max_failures,
            }
        });
        if next + count > MAX_TASKS {
            return Err(PlanError::TooBig {
                count: next + count,
                max: MAX_TASKS,
            });
        }
        steps.push(PlanStep {
            id: step.id.clone(),
            kind: step.op.kind().to_string(),
            needs: step.needs.clone(),
            needs_all: step.needs_all,
            resolved_needs: Vec::new(),
            first_task: next as u32,
            task_count: count as u32,
            fanout,
            op,
            rollout,
            actions: None,
        });
        next += count;
    }
    let mut plan = Plan {
        format: PLAN_FORMAT,
        job: job.name.clone(),
        description: job.description.clone(),
        source: job.source.clone(),
        server,
        limits: job.limits.clone(),
        retry: job.retry.clone(),
        deadline_ms: job.deadline,
        vars: job.vars.clone(),
        targets: std::mem::take(&mut resolved.targets),
        steps,
        task_count: next as u32,
        estimate: Estimate::default(),
        snapshot_at: None,
        limit: Vec::new(),
        notify: job.notify.clone(),
        device_groups: resolved_groups,
    };
    if let Some(rules) = &resolved.rules {
        super::diff::decide(&mut plan, rules);
    }
    super::diff::decide_uploads(&mut plan, &resolved.uploads);
    if let Some(members) = &resolved.memberships {
        super::diff::decide_moves(&mut plan, members);
    }
    plan.estimate = estimate(&plan.steps, &plan.targets, job.limits.rate);
    plan.link();
    Ok(plan)
}

impl Plan {
    /// Estimates the plan again, after actions were decided outside [`compile`] (content
    /// uploads, whose local file sizes the caller reads).
    pub fn reestimate(&mut self) {
        self.estimate = estimate(&self.steps, &self.targets, self.limits.rate);
    }
}

/// An export step's template: what resolution decided for it (a plan compiled without
/// resolving exports reads every device, counting one page).
fn export_op(resolved: &Resolved, step: &str, spec: &crate::job::ExportSpec) -> OpTemplate {
    let plan = resolved
        .exports
        .get(step)
        .cloned()
        .unwrap_or_else(|| super::ExportPlan {
            spec: spec.clone(),
            scope: super::ExportScope::All,
            versions: Vec::new(),
            method: None,
            requests: BTreeMap::new(),
            rows: None,
        });
    OpTemplate::Export(Box::new(plan))
}

/// Requests by endpoint. Command polls are a lower bound: one stats read plus the
/// per-device status pages (`STATUS_PAGE` devices a page).
fn estimate(steps: &[PlanStep], targets: &super::Targets, rate: f64) -> Estimate {
    let mut r: BTreeMap<Endpoint, u64> = BTreeMap::new();
    let mut add = |k: Endpoint, n: u64| *r.entry(k).or_default() += n;
    for s in steps {
        let n = s.task_count as u64;
        match &s.op {
            OpTemplate::Command {
                wait_ms, verify, ..
            } => {
                add(Endpoint::CreateCommand, n);
                if *verify {
                    // At least: the succeeded devices' statuses and one page of the
                    // version's devices per task, after one listing of the apps.
                    add(Endpoint::ListApps, 1);
                    add(Endpoint::CommandStatuses, n);
                    add(Endpoint::InstallDevices, n);
                }
                if wait_ms.is_some() {
                    add(Endpoint::CommandStats, n);
                    let devices = match &s.fanout {
                        Fanout::Chunks { target, .. } => targets
                            .get(target)
                            .filter(|t| t.kind == ItemKind::Device)
                            .map(|t| t.items.len() as u64),
                        _ => None,
                    };
                    add(
                        Endpoint::CommandStatuses,
                        devices.map_or(n, |d| d.div_ceil(STATUS_PAGE).max(n)),
                    );
                }
            }
            // Decided from the plan's snapshot: only the writes; without one, a read
            // by name before each create.
            OpTemplate::AlarmRule { .. } => match &s.actions {
                Some(actions) => {
                    for a in actions {
                        match a {
                            super::Action::Create => add(Endpoint::CreateAlarmRule, 1),
                            super::Action::Update { .. } => add(Endpoint::PatchAlarmRule, 1),
                            super::Action::Send => {
                                add(Endpoint::ListAlarmRules, 1);
                                add(Endpoint::CreateAlarmRule, 1);
                            }
                            _ => {}
                        }
                    }
                }
                None => {
                    add(Endpoint::ListAlarmRules, n);
                    add(Endpoint::CreateAlarmRule, n);
                }
            },
            OpTemplate::GroupMove { .. } => match &s.actions {
                Some(actions) => add(
                    Endpoint::MoveDevices,
                    actions.iter().filter(|a| a.writes()).count() as u64,
                ),
                None => add(Endpoint::MoveDevices, n),
            },
            OpTemplate::AppUpload { .. } => match s.actions.as_deref() {
                Some([super::Action::Create, ..]) => add(Endpoint::UploadApp, n),
                Some([super::Action::Unchanged { .. }, ..]) => add(Endpoint::ListApps, n),
                _ => {
                    add(Endpoint::ListApps, n);
                    add(Endpoint::UploadApp, n);
                }
            },
            OpTemplate::ContentUpload { .. } => match s.actions.as_deref() {
                Some([super::Action::Create, ..]) => add(Endpoint::UploadContent, n),
                Some([super::Action::Unchanged { .. }, ..]) => {}
                _ => {
                    add(Endpoint::ListContent, n);
                    add(Endpoint::UploadContent, n);
                }
            },
            OpTemplate::Export(p) => {
                for (e, k) in &p.requests {
                    add(e.clone(), *k);
                }
            }
            OpTemplate::Request { method, path, .. } => add(
                Endpoint::Raw {
                    method: method.clone(),
                    path: path.clone(),
                },
                n,
            ),
        }
    }
    let total_requests: u64 = r.values().sum();
    let seconds = total_requests as f64 / rate;
    Estimate {
        requests: r,
        total_requests,
        seconds,
        max_seconds: match waits_upper_bound(steps) {
            0.0 => 0.0,
            waits => seconds + waits,
        },
    }
}

/// The most time a run can spend waiting rather than sending: each step that waits for
/// device results may wait up to its timeout once per rollout stage (stages run one after
/// another, and a stage's tasks wait side by side, since followers hold no write slot).
/// Summed over steps, which over-counts steps that could overlap: the bound is meant to
/// be safe to compare with a deadline, not tight.
fn waits_upper_bound(steps: &[PlanStep]) -> f64 {
    steps
        .iter()
        .filter(|s| s.task_count > 0)
        .filter_map(|s| match &s.op {
            OpTemplate::Command {
                wait_ms: Some(w), ..
            } => {
                let stages = s.rollout.as_ref().map_or(1, |r| r.stage_ends.len().max(1));
                Some(w.as_secs_f64() * stages as f64)
            }
            _ => None,
        })
        .sum()
}

/// The group paths of the devices the targets hold (after any `--limit`).
fn device_groups(resolved: &Resolved) -> BTreeMap<String, String> {
    resolved
        .targets
        .values()
        .flat_map(|t| &t.items)
        .filter_map(|d| Some((d.id.clone(), resolved.device_groups.get(&d.id)?.clone())))
        .collect()
}
