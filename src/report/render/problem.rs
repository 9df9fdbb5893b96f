//! How a task's problem and a rollout stop read in words: [`TaskReport::error_text`], the
//! one line every renderer shows as a task's error, and the `Display` of [`StopReport`]
//! and [`DeviceCountsReport`].
//!
//! Everything here is phrased from the typed reason, never from other text, and once, as
//! a [`Line`]: Markdown and HTML escape its fragments their way, CSV, JUnit and the
//! terminal take its plain text. Which tasks to show, and where, is left to the renderers.

use std::fmt;

use super::text::{Line, count};
use crate::exec::{GaveUp, StopReason, TaskStatus};
use crate::report::{DeviceCountsReport, ReasonReport, StopReport, TaskReport};

impl TaskReport {
    /// The task's problem as one line: what every renderer shows as its error, from the
    /// typed reason. `None` for a task that succeeded.
    pub fn error_text(&self) -> Option<String> {
        self.problem().map(|l| l.plain())
    }

    /// The task's problem, or a placeholder when none was recorded.
    pub(crate) fn error_line(&self) -> Line {
        self.problem()
            .unwrap_or_else(|| Line::from("no error recorded"))
    }

    /// [`TaskReport::error_text`] as fragments.
    pub(crate) fn problem(&self) -> Option<Line> {
        Some(match self.reason.as_ref()? {
            ReasonReport::Failed { failure, gave_up } => {
                let n = count(self.attempts.len() as u64, "attempt", "attempts");
                let mut line = Line::from(crate::base::one_line(failure));
                match gave_up {
                    Some(GaveUp::Attempts) => line.push_text(format!(" (gave up after {n})")),
                    Some(GaveUp::Budget) => {
                        line.push_text(format!(" (retry budget exhausted after {n})"));
                    }
                    None => {}
                }
                if self.status == TaskStatus::Unknown {
                    line.push_text(
                        "; an earlier attempt may have been applied and no read-back confirmed it",
                    );
                }
                line
            }
            ReasonReport::NeedsFailed { needs } => {
                let steps = if needs.len() == 1 { "step" } else { "steps" };
                let mut line = Line::from(format!("skipped: needed {steps} "));
                for (i, n) in needs.iter().enumerate() {
                    if i > 0 {
                        line.push_text(", ");
                    }
                    line = line.code(n.step.clone()).text(match &n.item {
                        Some(item) => format!(" for {item}"),
                        None => format!(" ({} not succeeded)", n.not_succeeded),
                    });
                }
                line.text(" did not succeed")
            }
            ReasonReport::RolloutStopped { stop } => Line::from("skipped: ").append(stop.line()),
            ReasonReport::NotStarted { stopped } => Line::from(match stopped {
                Some(StopReason::Interrupted) => {
                    "not started: the run was interrupted; resume the run (esper-bulk run --resume) to continue"
                }
                Some(StopReason::Deadline) => {
                    "not started: the deadline was reached; resume the run (esper-bulk run --resume) to continue"
                }
                None => {
                    "not started: the run stopped; resume the run (esper-bulk run --resume) to continue"
                }
            }),
            ReasonReport::NotRecorded => Line::from("not started: no outcome in the journal"),
            ReasonReport::Abandoned => {
                Line::from("abandoned while in flight: check the tenant before resuming")
            }
            ReasonReport::DeviceFailures { counts } => Line::from(counts.to_string()),
            ReasonReport::Interrupted { command, stopped } => Line::from(match stopped {
                Some(StopReason::Deadline) => {
                    "interrupted by the deadline while waiting for command request "
                }
                _ => "interrupted while waiting for command request ",
            })
            .code(command.clone())
            .text("; resume the run to follow it (it is not sent again)"),
            ReasonReport::StatusUnread { command } => Line::from(
                "accepted, but the devices' status of command request ",
            )
            .code(command.clone())
            .text(" could not be read; resume the run to read it again (it is not sent again)"),
        })
    }
}

impl StopReport {
    /// The stop as a sentence, its step as code.
    pub(crate) fn line(&self) -> Line {
        let (failures, exceed) = if self.failed == 1 {
            ("failure", "exceeds")
        } else {
            ("failures", "exceed")
        };
        Line::from("rollout of step ")
            .code(self.step.clone())
            .text(format!(
                " stopped after stage {} of {}: {} {failures} {exceed} max_failures ({} of {} allowed)",
                self.stage, self.stages, self.failed, self.allowed, self.total
            ))
    }
}

impl fmt::Display for StopReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.line().plain())
    }
}

impl fmt::Display for DeviceCountsReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} of {} failed",
            self.unsuccessful(),
            count(self.total(), "device", "devices"),
        )?;
        if self.not_installed > 0 {
            write!(
                f,
                " ({} reported success without installing)",
                self.not_installed
            )?;
        }
        write!(f, ", {} still pending", self.pending)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_of_a_kind_reads_in_the_singular() {
        let stop = StopReport {
            step: "reboot".into(),
            stage: 1,
            stages: 3,
            failed: 1,
            allowed: 0,
            total: 3,
        };
        assert_eq!(
            stop.to_string(),
            "rollout of step `reboot` stopped after stage 1 of 3: 1 failure exceeds max_failures (0 of 3 allowed)"
        );
        let one = DeviceCountsReport {
            failed: 1,
            ..DeviceCountsReport::default()
        };
        assert_eq!(one.to_string(), "1 of 1 device failed, 0 still pending");
        let two = DeviceCountsReport {
            failed: 1,
            pending: 1,
            ..DeviceCountsReport::default()
        };
        assert_eq!(two.to_string(), "1 of 2 devices failed, 1 still pending");
    }
}
