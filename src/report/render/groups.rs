//! "What failed and why": the tasks that did not succeed, grouped by cause.
//!
//! A cause is typed data: one status, one step, and one failure class and HTTP status (or
//! one kind of reason for tasks that did not run). Message text never splits a group, so
//! 156 refusals naming 24 app versions are one row that shows the first message and says
//! how many others there are. How a group is laid out is the renderers' job.

use std::collections::BTreeMap;

use super::text::{Line, and_more};
use super::view::EXAMPLES;
use crate::base::FailureClass;
use crate::exec::TaskStatus;
use crate::report::causes::{self, CAUSE_EXAMPLES};
use crate::report::{DeviceCountsReport, NextAction, ReasonReport, Report, TaskReport};

/// The next action of a cause in words: the command to resume, the step to fix, or the
/// devices to look at (`examples`: their names, or the targets when no device is named).
pub fn next_line(
    next: NextAction,
    step: &str,
    examples: &[String],
    total: u64,
    run_id: &str,
) -> Line {
    let resume = format!("esper-bulk run --resume {run_id}");
    match next {
        NextAction::Resume => Line::from("resume: ").code(resume),
        NextAction::FixJob => Line::from("fix step ")
            .code(step)
            .text(" in the job (the API refused it), then run the job again"),
        NextAction::CheckAccess => {
            Line::from("check the API key and the enterprise id, then ").code(resume)
        }
        NextAction::CheckCanaries => Line::from("investigate the failing canaries of step ")
            .code(step)
            .text(" (under Rollout stops), then run the job again"),
        NextAction::FixNeededStep => {
            Line::from("fix what failed in the step it needs, then ").code(resume)
        }
        NextAction::CheckDevices => {
            let n = (total as usize).max(examples.len());
            let mut line = Line::from(match n {
                1 => "look at this device: ".to_string(),
                n if n <= CAUSE_EXAMPLES => format!("look at these {n} devices: "),
                _ => format!("look at these {CAUSE_EXAMPLES} devices first: "),
            });
            for (i, e) in examples.iter().take(CAUSE_EXAMPLES).enumerate() {
                if i > 0 {
                    line.push_text(", ");
                }
                line = line.code(e.clone());
            }
            if n > CAUSE_EXAMPLES {
                line = line
                    .text(format!(
                        " (and {} more in ",
                        n - CAUSE_EXAMPLES.min(examples.len())
                    ))
                    .code("devices.csv")
                    .text(")");
            }
            line
        }
    }
}

/// Tasks that did not succeed for the same cause.
pub struct Group<'a> {
    pub status: TaskStatus,
    /// What the group's tasks have in common, for people: the first task's error with
    /// ids masked, or the devices of every task added up.
    pub error: Line,
    pub steps: Vec<&'a str>,
    pub tasks: Vec<&'a TaskReport>,
    /// What to do about it ([`crate::report::causes::next_action`]), in words.
    pub next: Line,
    /// Devices of the group's tasks that did not succeed.
    pub devices: u64,
}

impl Group<'_> {
    /// The first few tasks of the group, and `… and 3 more` when there are others.
    pub fn examples(&self) -> (&[&TaskReport], Option<String>) {
        let n = self.tasks.len().min(EXAMPLES);
        let more = (self.tasks.len() > EXAMPLES).then(|| and_more(self.tasks.len() - EXAMPLES));
        (&self.tasks[..n], more)
    }
}

/// The kind of a task's reason, with the failure's class and HTTP status: what groups it.
type Cause = (u8, Option<FailureClass>, Option<u16>);

fn cause(t: &TaskReport) -> Cause {
    match &t.reason {
        Some(ReasonReport::Failed { failure, .. }) => (0, Some(failure.class), failure.http_status),
        Some(ReasonReport::DeviceFailures { .. }) => (1, None, None),
        Some(ReasonReport::NeedsFailed { .. }) => (2, None, None),
        Some(ReasonReport::RolloutStopped { .. }) => (3, None, None),
        Some(ReasonReport::NotStarted { .. }) => (4, None, None),
        Some(ReasonReport::NotRecorded) => (5, None, None),
        Some(ReasonReport::Abandoned) => (6, None, None),
        Some(ReasonReport::Interrupted { .. }) => (7, None, None),
        Some(ReasonReport::StatusUnread { .. }) => (8, None, None),
        None => (9, None, None),
    }
}

/// Failed, unknown and skipped tasks grouped by status, step and cause: failed first,
/// then unknown, then skipped; the largest groups first, ties in plan order.
pub fn failure_groups(r: &Report) -> Vec<Group<'_>> {
    type Key<'a> = (TaskStatus, &'a str, Cause);
    let mut members: Vec<(Key, Vec<&TaskReport>)> = Vec::new();
    let mut index: BTreeMap<Key, usize> = BTreeMap::new();
    for t in &r.tasks {
        if !matches!(
            t.status,
            TaskStatus::Failed | TaskStatus::Unknown | TaskStatus::Skipped
        ) {
            continue;
        }
        let key = (t.status, t.step.as_str(), cause(t));
        let i = *index.entry(key).or_insert_with(|| {
            members.push((key, Vec::new()));
            members.len() - 1
        });
        members[i].1.push(t);
    }
    let mut groups: Vec<Group> = members
        .into_iter()
        .map(|((status, step, _), tasks)| {
            let failed: Vec<String> = tasks
                .iter()
                .flat_map(|t| causes::failed_devices(t))
                .collect();
            let examples: Vec<String> = if failed.is_empty() {
                tasks.iter().map(|t| t.target.clone()).collect()
            } else {
                failed.clone()
            };
            Group {
                status,
                error: group_error(&tasks),
                steps: vec![step],
                next: next_line(
                    causes::next_action(tasks[0]),
                    step,
                    &examples,
                    examples.len() as u64,
                    &r.run.id,
                ),
                devices: tasks.iter().map(|t| causes::devices_affected(t)).sum(),
                tasks,
            }
        })
        .collect();
    let rank = |s: TaskStatus| match s {
        TaskStatus::Failed => 0,
        TaskStatus::Unknown => 1,
        _ => 2,
    };
    groups.sort_by_key(|g| (rank(g.status), std::cmp::Reverse(g.tasks.len())));
    groups
}

/// What a group's tasks share, in words: their devices added up for device failures,
/// else the first message (ids masked) and how many other messages there are.
fn group_error(tasks: &[&TaskReport]) -> Line {
    let counts: Vec<&DeviceCountsReport> = tasks
        .iter()
        .filter_map(|t| match &t.reason {
            Some(ReasonReport::DeviceFailures { counts }) => Some(counts),
            _ => None,
        })
        .collect();
    if !counts.is_empty() && counts.len() == tasks.len() {
        let mut sum = DeviceCountsReport::default();
        for c in counts {
            sum.add(c);
        }
        return Line::from(sum.to_string());
    }
    let mut messages: Vec<Line> = Vec::new();
    for t in tasks {
        let m = t.error_line().map(mask_ids);
        if !messages.contains(&m) {
            messages.push(m);
        }
    }
    let others = messages.len().saturating_sub(1);
    let error = messages.into_iter().next().unwrap_or_default();
    if others == 0 {
        return error;
    }
    let what = if others == 1 { "message" } else { "messages" };
    error
        .text(format!(" (and {others} other {what} in "))
        .code("results.csv")
        .text(")")
}

/// Replaces UUIDs (Esper's group, device, app and enterprise ids, which appear in request
/// paths) with `<id>`, so tasks that differ only in their ids show one message.
fn mask_ids(s: &str) -> String {
    fn is_uuid(b: &[u8]) -> bool {
        b.iter().enumerate().all(|(k, c)| {
            if matches!(k, 8 | 13 | 18 | 23) {
                *c == b'-'
            } else {
                c.is_ascii_hexdigit()
            }
        })
    }
    let b = s.as_bytes();
    let (mut out, mut i, mut last) = (String::with_capacity(s.len()), 0, 0);
    while i + 36 <= b.len() {
        let bounded = (i == 0 || !b[i - 1].is_ascii_alphanumeric())
            && b.get(i + 36).is_none_or(|c| !c.is_ascii_alphanumeric());
        if bounded && is_uuid(&b[i..i + 36]) {
            out.push_str(&s[last..i]);
            out.push_str("<id>");
            i += 36;
            last = i;
        } else {
            i += 1;
        }
    }
    out.push_str(&s[last..]);
    out
}

#[cfg(test)]
mod tests {
    use super::mask_ids;

    #[test]
    fn only_whole_uuids_are_masked() {
        let id = "0a1b2c3d-0000-4000-8000-00000000000a";
        assert_eq!(
            mask_ids(&format!("/group/{id}/install/")),
            "/group/<id>/install/"
        );
        assert_eq!(mask_ids(&format!("x{id}")), format!("x{id}"));
        assert_eq!(mask_ids("no ids"), "no ids");
    }
}
