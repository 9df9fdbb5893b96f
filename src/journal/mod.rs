//! The run journal: an append-only JSON Lines record of what happened to each task, so an
//! interrupted or crashed run can be resumed and its reports rebuilt.
//!
//! Lines are versioned entries ([`Entry`]) made of the journal's own records
//! ([`OutcomeRecord`], [`FinishRecord`], …), not of the executor's types: what the
//! executor keeps in memory can change without changing what is on disk. Records convert
//! from and back to the executor's [`Outcome`]s. Each `start` line names the format of the
//! lines after it, so a run written by format 1 and resumed by format 2 reads back whole;
//! format 1 lines (failures as text) are converted on read, see [`v1`]. Lines are written
//! through a buffer, flushed and fsynced in batches (every [`SYNC_EVERY`] lines or
//! [`SYNC_AFTER`]) and at the end. A torn last line (power loss mid-write) is tolerated on
//! read. The journal never decides anything: resuming treats every task without a
//! recorded success as uncertain, so the executor reads it back by natural key before
//! writing — a lost line can cost a read, never a duplicate.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::base::Hint;
use crate::exec::{Outcome, TaskStatus};

mod records;
pub mod v1;

pub use records::*;

/// The journal line format written now; bumped on incompatible changes. Format 1 (failures
/// as text) is still read.
pub const JOURNAL_FORMAT: u32 = 2;
/// The oldest format this version reads.
pub const OLDEST_FORMAT: u32 = 1;
/// Lines between fsyncs…
pub const SYNC_EVERY: usize = 64;
/// …or this long, whichever comes first.
pub const SYNC_AFTER: Duration = Duration::from_millis(250);

#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    #[error("cannot write the journal {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot read the journal {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}:{line}: not a journal entry: {message}")]
    Corrupt {
        path: PathBuf,
        line: usize,
        message: String,
    },
    #[error(
        "{path} was written by journal format {found}; this esper-bulk reads formats {OLDEST_FORMAT} to {JOURNAL_FORMAT}"
    )]
    Format { path: PathBuf, found: u32 },
}

impl Hint for JournalError {
    fn hint(&self) -> Option<String> {
        Some(
            match self {
                JournalError::Write { .. } => "check that the disk is not full",
                JournalError::Read { .. } => "check the run directory and its permissions",
                JournalError::Corrupt { .. } => {
                    "the journal was changed by hand or damaged; restore it or start a new run"
                }
                JournalError::Format { .. } => "use the esper-bulk version that wrote the run",
            }
            .into(),
        )
    }
}

/// An open journal, appending.
pub struct Journal {
    out: BufWriter<File>,
    path: PathBuf,
    unsynced: usize,
    last_sync: Instant,
}

impl Journal {
    /// Opens (or creates) the journal for appending.
    pub fn open(path: &Path) -> Result<Journal, JournalError> {
        let err = |source| JournalError::Write {
            path: path.to_path_buf(),
            source,
        };
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(err)?;
        Ok(Journal {
            out: BufWriter::new(file),
            path: path.to_path_buf(),
            unsynced: 0,
            last_sync: Instant::now(),
        })
    }

    pub fn append(&mut self, e: &Entry) -> Result<(), JournalError> {
        let err = |source| JournalError::Write {
            path: self.path.clone(),
            source,
        };
        let line = serde_json::to_string(e).map_err(|e| err(std::io::Error::other(e)))?;
        self.out.write_all(line.as_bytes()).map_err(err)?;
        self.out.write_all(b"\n").map_err(err)?;
        self.unsynced += 1;
        if self.unsynced >= SYNC_EVERY || self.last_sync.elapsed() >= SYNC_AFTER {
            self.sync()?;
        }
        Ok(())
    }

    /// Flushes and fsyncs what was appended.
    pub fn sync(&mut self) -> Result<(), JournalError> {
        let err = |source| JournalError::Write {
            path: self.path.clone(),
            source,
        };
        self.out.flush().map_err(err)?;
        self.out.get_ref().sync_data().map_err(err)?;
        self.unsynced = 0;
        self.last_sync = Instant::now();
        Ok(())
    }
}

/// What a journal says.
#[derive(Debug, Default)]
pub struct Replay {
    /// The last outcome recorded for each task.
    pub outcomes: BTreeMap<u32, Outcome>,
    pub starts: u32,
    /// Tasks with an intent and no later outcome: in flight when the run stopped.
    pub in_flight: std::collections::BTreeSet<u32>,
    /// The last `finish` entry, if the run ever ended cleanly.
    pub finish: Option<FinishRecord>,
    /// The last line was cut short (a crash mid-write) and was ignored.
    pub torn: bool,
    /// One per `start` line: the first run and each resumption, in order.
    pub segments: Vec<Segment>,
    /// For each task, the segment (index into `segments`) that recorded its last outcome.
    pub task_segment: BTreeMap<u32, usize>,
}

/// One stretch of a run between a `start` line and its `finish` (or the journal's end,
/// when the process was killed).
#[derive(Debug, Clone, PartialEq)]
pub struct Segment {
    pub started_at: String,
    pub resumed: bool,
    /// The segment's `finish` line; `None` when it never wrote one (killed, or its disk
    /// filled up).
    pub finish: Option<FinishRecord>,
    /// Outcome lines the segment wrote.
    pub outcomes: u32,
}

impl Replay {
    /// Outcomes a resumption keeps: the succeeded ones. Everything else runs again.
    pub fn succeeded(&self) -> BTreeMap<u32, Outcome> {
        self.outcomes
            .iter()
            .filter(|(_, o)| o.status == TaskStatus::Succeeded)
            .map(|(k, v)| (*k, v.clone()))
            .collect()
    }
}

/// Decodes one line written in `format` as a current entry.
fn decode(line: &str, format: u32) -> Result<Entry, serde_json::Error> {
    if format == 1 {
        serde_json::from_str::<v1::Entry>(line).map(Entry::from)
    } else {
        serde_json::from_str::<Entry>(line)
    }
}

/// Reads a journal, tolerating a torn last line.
pub fn read(path: &Path) -> Result<Replay, JournalError> {
    let file = File::open(path).map_err(|source| JournalError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let lines: Vec<String> = BufReader::new(file)
        .lines()
        .collect::<Result<_, _>>()
        .map_err(|source| JournalError::Read {
            path: path.to_path_buf(),
            source,
        })?;
    let mut replay = Replay::default();
    let last = lines.len();
    // Every `start` names the format of the lines after it; a journal begins with one.
    let mut format = JOURNAL_FORMAT;
    for (i, line) in lines.iter().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        match decode(line, format) {
            Ok(Entry::Start { format: f, .. })
                if !(OLDEST_FORMAT..=JOURNAL_FORMAT).contains(&f) =>
            {
                return Err(JournalError::Format {
                    path: path.to_path_buf(),
                    found: f,
                });
            }
            Ok(Entry::Start {
                format: f,
                at,
                resumed,
                ..
            }) => {
                format = f;
                replay.starts += 1;
                replay.segments.push(Segment {
                    started_at: at,
                    resumed,
                    finish: None,
                    outcomes: 0,
                });
            }
            Ok(Entry::Intent { task }) => {
                replay.in_flight.insert(task);
            }
            Ok(Entry::Outcome(o)) => {
                replay.in_flight.remove(&o.task);
                if let Some(n) = replay.segments.len().checked_sub(1) {
                    replay.segments[n].outcomes += 1;
                    replay.task_segment.insert(o.task, n);
                }
                replay.outcomes.insert(o.task, o.into());
            }
            Ok(Entry::Finish(f)) => {
                if let Some(s) = replay.segments.last_mut() {
                    s.finish = Some(f.clone());
                }
                replay.finish = Some(f);
            }
            Err(_) if i + 1 == last => replay.torn = true,
            Err(e) => {
                return Err(JournalError::Corrupt {
                    path: path.to_path_buf(),
                    line: i + 1,
                    message: e.to_string(),
                });
            }
        }
    }
    Ok(replay)
}

/// Journal format 1, read and converted to current records. Format 1 kept a task's
#[cfg(test)]
mod tests;
