//! How a run ended ([`RunOutcome`]) and the one mapping from outcomes to exit codes.
//! The other codes (2 invalid, 5 no access to the API, 75 locked) are for runs that never
//! started, so no report has them: they are `run::RunError::exit_code`'s.
//!
//! The outcome is decided from the run's counts and its stop alone, so a rebuilt report
//! and the live one agree; the words and meanings here are the ones every renderer and
//! dashboard shows. Counting the tasks is [`super::build`]'s job.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::Summary;
use crate::exec::StopReason;

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
    /// The process ended without recording a stop (`kill -9`, a crash, a power cut), as a
    /// report rebuilt from its journal finds; resumable.
    #[serde(rename = "killed")]
    Killed,
}

impl RunOutcome {
    pub const ALL: [RunOutcome; 7] = [
        RunOutcome::Succeeded,
        RunOutcome::FailedTasks,
        RunOutcome::Threshold,
        RunOutcome::Interrupted,
        RunOutcome::Deadline,
        RunOutcome::Incomplete,
        RunOutcome::Killed,
    ];

    /// The outcome of a run with these counts: a stop beats a threshold, which beats
    /// failed tasks, which beat tasks never started.
    pub fn of(s: &Summary, stopped: Option<StopReason>, threshold: bool) -> RunOutcome {
        match stopped {
            Some(StopReason::Interrupted) => RunOutcome::Interrupted,
            Some(StopReason::Deadline) => RunOutcome::Deadline,
            None if threshold => RunOutcome::Threshold,
            None if s.failed + s.unknown + s.skipped > 0 => RunOutcome::FailedTasks,
            None if s.not_started + s.interrupted > 0 => RunOutcome::Incomplete,
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
            RunOutcome::Deadline | RunOutcome::Incomplete | RunOutcome::Killed => exit::INCOMPLETE,
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
            RunOutcome::Killed => "killed",
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
            RunOutcome::Killed => "killed before it could record a stop; resumable",
        }
    }
}

impl fmt::Display for RunOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.word())
    }
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
                ("incomplete", 4),
                ("killed", 4)
            ]
        );
        for o in RunOutcome::ALL {
            let json = serde_json::to_string(&o).unwrap();
            assert_eq!(serde_json::from_str::<RunOutcome>(&json).unwrap(), o);
        }
    }
}
