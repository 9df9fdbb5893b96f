//! Picking up an earlier run: its frozen plan and what its journal says, turned into the
//! outcomes a resumption keeps.
//!
//! Recorded successes are kept, and tasks interrupted while waiting for a command's devices
//! are followed by the command's request id rather than sent again; every other task runs
//! again with read-back first (the executor's `reconcile`), because a crash can lose the
//! record of a write but a read by natural key cannot be fooled by that. Locking and running are the parent
//! module's; reading the journal is [`crate::journal`]'s.

use std::collections::BTreeMap;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};

use crate::exec::Outcome;
use crate::journal::{self, JournalError, Replay};
use crate::plan::Plan;

use super::notice::{Notice, Notices};
use super::{RunError, RunId, dir};

/// An earlier run, ready to continue.
pub(super) struct Resumed {
    pub dir: PathBuf,
    pub plan: Plan,
    /// The tasks that already succeeded, kept as they are, and the interrupted ones whose
    /// command is followed again.
    pub prior: BTreeMap<u32, Outcome>,
}

/// Opens run `id` in `state` and tells the person what will happen to it.
pub(super) fn open(state: &Path, id: &RunId, notices: &Notices) -> Result<Resumed, RunError> {
    let dir = dir::existing_run(state, id)?;
    let plan = dir::run_plan(&dir, notices)?;
    // A run killed before its first journal line has nothing to keep, which is not an error.
    let path = dir.join("journal.jsonl");
    let replay = match journal::read(&path) {
        Ok(r) => r,
        Err(JournalError::Read { source, .. }) if source.kind() == ErrorKind::NotFound => {
            Replay::default()
        }
        Err(e) => return Err(e.into()),
    };
    if replay.torn {
        notices.send(Notice::TornJournal);
    }
    if !replay.warnings.is_empty() {
        notices.send(Notice::JournalLines {
            path,
            lines: replay.warnings.clone(),
        });
    }
    // Outcomes of tasks the plan does not have are not this run's to keep.
    let mut prior = replay.succeeded();
    prior.retain(|t, _| *t < plan.task_count);
    let succeeded = prior.len();
    let interrupted: Vec<(u32, Outcome)> = replay
        .outcomes
        .iter()
        .filter(|(t, o)| **t < plan.task_count && o.interrupted_command().is_some())
        .map(|(t, o)| (*t, o.clone()))
        .collect();
    let following = interrupted.len();
    prior.extend(interrupted);
    if !replay.in_flight.is_empty() {
        notices.send(Notice::InFlight(replay.in_flight.len()));
    }
    notices.send(Notice::Resuming {
        run_id: id.to_string(),
        succeeded,
        following,
        tasks: plan.task_count,
    });
    Ok(Resumed { dir, plan, prior })
}
