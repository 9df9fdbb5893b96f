//! How a task's problem and a rollout stop read in words: [`TaskReport::error_text`], the
//! one line every renderer shows as a task's error, and the `Display` of [`StopReport`]
//! and [`DeviceCountsReport`].
//!
//! Everything here is phrased from the typed reason, never from other text; which tasks
//! to show and how to escape them is left to the renderers.

use std::fmt::{self, Write as _};

use crate::exec::{GaveUp, StopReason, TaskStatus};
use crate::report::{DeviceCountsReport, ReasonReport, StopReport, TaskReport};

impl TaskReport {
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
                    .map(|n| format!("`{}` ({} not succeeded)", n.step, n.not_succeeded))
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

impl fmt::Display for StopReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "rollout of step `{}` stopped after stage {} of {}: {} failures exceed max_failures ({} of {} allowed)",
            self.step, self.stage, self.stages, self.failed, self.allowed, self.total
        )
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
