//! Failures grouped by cause, with the next action for each: the typed record behind
//! `report.json`'s `causes` and the "next action" column of every rendering.
//!
//! A cause is one status, one step, one kind of reason and, for a failed request, one
//! failure class and HTTP status; what to do about it ([`NextAction`]) follows from those
//! alone, never from message text. This file owns the grouping key, the decision and which
//! devices a cause names; the sentences are [`super::render`]'s.

use std::collections::BTreeMap;

use super::{CauseReport, NextAction, ReasonReport, TaskReport};
use crate::base::FailureClass;
use crate::exec::{DeviceState, TaskStatus};

/// Devices (or targets) a cause names for "look at these".
pub const CAUSE_EXAMPLES: usize = 3;

/// The reason's kind as `report.json` spells it (`tasks[].reason.kind`).
pub fn reason_kind(r: Option<&ReasonReport>) -> &'static str {
    match r {
        Some(ReasonReport::Failed { .. }) => "failed",
        Some(ReasonReport::NeedsFailed { .. }) => "needs_failed",
        Some(ReasonReport::RolloutStopped { .. }) => "rollout_stopped",
        Some(ReasonReport::NotStarted { .. }) => "not_started",
        Some(ReasonReport::NotRecorded) => "not_recorded",
        Some(ReasonReport::Abandoned) => "abandoned",
        Some(ReasonReport::DeviceFailures { .. }) => "device_failures",
        Some(ReasonReport::Interrupted { .. }) => "interrupted",
        Some(ReasonReport::StatusUnread { .. }) => "status_unread",
        None => "none",
    }
}

/// What to do about a task that did not succeed.
pub fn next_action(t: &TaskReport) -> NextAction {
    if t.status == TaskStatus::Unknown {
        // Resuming reads the task back by its natural key before anything is sent again.
        return NextAction::Resume;
    }
    match &t.reason {
        Some(ReasonReport::Failed { failure, .. }) => match failure.class {
            FailureClass::Auth => NextAction::CheckAccess,
            // Recorded before failures were typed: the status still says whose fault it was.
            FailureClass::Unclassified => match failure.http_status {
                Some(401 | 403) => NextAction::CheckAccess,
                Some(429) => NextAction::Resume,
                Some(s) if (400..500).contains(&s) => NextAction::FixJob,
                _ => NextAction::Resume,
            },
            FailureClass::NotFound
            | FailureClass::Client
            | FailureClass::Build
            | FailureClass::Conflict
            | FailureClass::Decode => NextAction::FixJob,
            FailureClass::RateLimited
            | FailureClass::Server
            | FailureClass::Connect
            | FailureClass::Timeout
            | FailureClass::Transport
            | FailureClass::Stopped => NextAction::Resume,
        },
        Some(ReasonReport::DeviceFailures { .. }) => NextAction::CheckDevices,
        Some(ReasonReport::RolloutStopped { .. }) => NextAction::CheckCanaries,
        Some(ReasonReport::NeedsFailed { .. }) => NextAction::FixNeededStep,
        _ => NextAction::Resume,
    }
}

/// The devices of a task that did not succeed, by name where the plan knew it (else id).
pub fn failed_devices(t: &TaskReport) -> Vec<String> {
    let name = |id: &str| {
        t.devices
            .iter()
            .find(|d| d.id == id)
            .map_or_else(|| id.to_string(), |d| d.name.clone())
    };
    match &t.followed {
        Some(f) if !f.devices.is_empty() => f
            .devices
            .iter()
            .filter(|d| d.state != DeviceState::Succeeded)
            .map(|d| name(&d.id))
            .collect(),
        // Nothing followed: every device of a task that did not succeed is affected.
        _ if t.status != TaskStatus::Succeeded => {
            t.devices.iter().map(|d| d.name.clone()).collect()
        }
        _ => Vec::new(),
    }
}

/// How many devices of a task did not succeed: those its command's status names, at
/// least the count it recorded, else every device of a task that did not succeed.
pub fn devices_affected(t: &TaskReport) -> u64 {
    let named = failed_devices(t).len() as u64;
    match &t.reason {
        Some(ReasonReport::DeviceFailures { counts }) => counts.unsuccessful().max(named),
        _ => named,
    }
}

/// The grouping key of a task's cause.
type Key<'a> = (
    TaskStatus,
    &'a str,
    &'static str,
    Option<FailureClass>,
    Option<u16>,
);

fn key(t: &TaskReport) -> Key<'_> {
    let (class, status) = match t.failure() {
        Some(f) => (Some(f.class), f.http_status),
        None => (None, None),
    };
    (
        t.status,
        t.step.as_str(),
        reason_kind(t.reason.as_ref()),
        class,
        status,
    )
}

/// Every task that did not succeed, grouped by cause: failed first, then unknown, skipped,
/// interrupted and not started; the largest groups first, ties in plan order.
pub fn causes(tasks: &[TaskReport]) -> Vec<CauseReport> {
    let mut groups: Vec<(Key, Vec<&TaskReport>)> = Vec::new();
    let mut index: BTreeMap<Key, usize> = BTreeMap::new();
    for t in tasks.iter().filter(|t| t.status != TaskStatus::Succeeded) {
        let k = key(t);
        let i = *index.entry(k).or_insert_with(|| {
            groups.push((k, Vec::new()));
            groups.len() - 1
        });
        groups[i].1.push(t);
    }
    let rank = |s: TaskStatus| match s {
        TaskStatus::Failed => 0,
        TaskStatus::Unknown => 1,
        TaskStatus::Skipped => 2,
        TaskStatus::Interrupted => 3,
        _ => 4,
    };
    let mut out: Vec<CauseReport> = groups
        .into_iter()
        .map(|((status, step, reason, class, http_status), members)| {
            let devices: Vec<String> = members.iter().flat_map(|t| failed_devices(t)).collect();
            let examples = if devices.is_empty() {
                members
                    .iter()
                    .take(CAUSE_EXAMPLES)
                    .map(|t| t.target.clone())
                    .collect()
            } else {
                devices.iter().take(CAUSE_EXAMPLES).cloned().collect()
            };
            let counted = members.iter().map(|t| devices_affected(t)).sum();
            CauseReport {
                status,
                step: step.to_string(),
                reason: reason.to_string(),
                class,
                http_status,
                tasks: members.len() as u64,
                devices: counted,
                examples,
                next: next_action(members[0]),
            }
        })
        .collect();
    out.sort_by_key(|c| (rank(c.status), std::cmp::Reverse(c.tasks)));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::{DeviceCountsReport, DeviceRef, FailureReport};

    fn task(id: u32, step: &str, status: TaskStatus, reason: Option<ReasonReport>) -> TaskReport {
        TaskReport {
            id,
            step: step.into(),
            target: format!("t{id}"),
            status,
            reason,
            attempts: Vec::new(),
            result: None,
            followed: None,
            devices: Vec::new(),
            segment: None,
        }
    }

    fn failed(class: FailureClass, http: Option<u16>) -> Option<ReasonReport> {
        Some(ReasonReport::Failed {
            failure: FailureReport {
                class,
                http_status: http,
                esper_message: None,
                hint: None,
                description: "x".into(),
                maybe_processed: false,
            },
            gave_up: None,
        })
    }

    #[test]
    fn causes_group_by_class_status_and_step_and_say_what_to_do() {
        let mut dev = task(
            4,
            "reboot",
            TaskStatus::Failed,
            Some(ReasonReport::DeviceFailures {
                counts: DeviceCountsReport {
                    succeeded: 1,
                    failed: 2,
                    ..Default::default()
                },
            }),
        );
        dev.devices = ["a", "b", "c"]
            .iter()
            .map(|n| DeviceRef {
                id: format!("id-{n}"),
                name: format!("dev-{n}"),
                serial: None,
                group: None,
            })
            .collect();
        dev.followed = Some(crate::report::FollowedReport {
            command: "c".into(),
            finished: true,
            counts: None,
            install: None,
            devices: vec![
                crate::report::DeviceResultReport {
                    id: "id-a".into(),
                    state: DeviceState::Failed,
                    reason: None,
                },
                crate::report::DeviceResultReport {
                    id: "id-c".into(),
                    state: DeviceState::TimedOut,
                    reason: None,
                },
            ],
        });
        let tasks = vec![
            task(
                0,
                "install",
                TaskStatus::Failed,
                failed(FailureClass::Client, Some(400)),
            ),
            task(
                1,
                "install",
                TaskStatus::Failed,
                failed(FailureClass::Client, Some(400)),
            ),
            task(
                2,
                "install",
                TaskStatus::Failed,
                failed(FailureClass::Server, Some(503)),
            ),
            task(3, "install", TaskStatus::Succeeded, None),
            dev,
            task(
                5,
                "after",
                TaskStatus::NotStarted,
                Some(ReasonReport::NotStarted { stopped: None }),
            ),
        ];
        let c = causes(&tasks);
        let got: Vec<(&str, Option<u16>, u64, u64, NextAction)> = c
            .iter()
            .map(|c| (c.step.as_str(), c.http_status, c.tasks, c.devices, c.next))
            .collect();
        assert_eq!(
            got,
            [
                ("install", Some(400), 2, 0, NextAction::FixJob),
                ("install", Some(503), 1, 0, NextAction::Resume),
                ("reboot", None, 1, 2, NextAction::CheckDevices),
                ("after", None, 1, 0, NextAction::Resume),
            ]
        );
        assert_eq!(c[2].examples, ["dev-a", "dev-c"]);
        assert_eq!(c[0].examples, ["t0", "t1"]);
        assert_eq!(c[3].reason, "not_started");
    }
}
