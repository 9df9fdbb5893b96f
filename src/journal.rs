//! The run journal: an append-only JSON Lines record of what happened to each task, so an
//! interrupted or crashed run can be resumed and its reports rebuilt.
//!
//! Lines are versioned entries ([`Entry`]); they are written through a buffer, flushed and
//! fsynced in batches (every [`SYNC_EVERY`] lines or [`SYNC_AFTER`]) and at the end. A
//! torn last line (power loss mid-write) is tolerated on read. The journal never decides
//! anything: resuming treats every task without a recorded success as uncertain, so the
//! executor reads it back by natural key before writing — a lost line can cost a read,
//! never a duplicate.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::exec::{Outcome, TaskStatus};

/// The journal line format; bumped on incompatible changes.
pub const JOURNAL_FORMAT: u32 = 1;
/// Lines between fsyncs…
pub const SYNC_EVERY: usize = 64;
/// …or this long, whichever comes first.
pub const SYNC_AFTER: Duration = Duration::from_millis(250);

/// One journal line.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "entry", rename_all = "snake_case")]
pub enum Entry {
    /// A run (or a resumption of it) started.
    Start {
        format: u32,
        run_id: String,
        job: String,
        tasks: u32,
        at: String,
        resumed: bool,
    },
    /// A task is about to send its first request. Written in batches like everything else,
    /// so it can be lost in a crash; resuming does not rely on it (see the module doc).
    Intent { task: u32 },
    /// A task's final outcome in this attempt of the run.
    Outcome(Outcome),
    /// The run (or this resumption) ended: what a report needs beyond the outcomes.
    Finish {
        started_at: String,
        finished_at: String,
        elapsed_ms: u64,
        #[serde(default)]
        stopped: Option<crate::exec::StopReason>,
        #[serde(default)]
        thresholds: Vec<String>,
        governor: crate::exec::GovernorStats,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    #[error("cannot write the journal {path}: {source} (is the disk full?)")]
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
        "{path} was written by journal format {found}; this esper-bulk reads format {JOURNAL_FORMAT}"
    )]
    Format { path: PathBuf, found: u32 },
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
    /// The last `Finish` entry, if the run ever ended cleanly.
    pub finish: Option<Entry>,
    /// The last line was cut short (a crash mid-write) and was ignored.
    pub torn: bool,
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
    for (i, line) in lines.iter().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        match serde_json::from_str::<Entry>(line) {
            Ok(Entry::Start { format, .. }) if format != JOURNAL_FORMAT => {
                return Err(JournalError::Format {
                    path: path.to_path_buf(),
                    found: format,
                });
            }
            Ok(Entry::Start { .. }) => replay.starts += 1,
            Ok(Entry::Intent { task }) => {
                replay.in_flight.insert(task);
            }
            Ok(Entry::Outcome(o)) => {
                replay.in_flight.remove(&o.task.0);
                replay.outcomes.insert(o.task.0, o);
            }
            Ok(f @ Entry::Finish { .. }) => replay.finish = Some(f),
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::TaskId;

    fn outcome(t: u32, status: TaskStatus) -> Outcome {
        Outcome {
            task: TaskId(t),
            status,
            attempts: vec![],
            error: None,
            result: None,
            started_ms: 0,
            finished_ms: 1,
        }
    }

    #[test]
    fn round_trip_last_outcome_wins_and_torn_lines_are_tolerated() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("journal.jsonl");
        let mut j = Journal::open(&p).unwrap();
        j.append(&Entry::Start {
            format: JOURNAL_FORMAT,
            run_id: "r".into(),
            job: "j".into(),
            tasks: 3,
            at: "t".into(),
            resumed: false,
        })
        .unwrap();
        j.append(&Entry::Intent { task: 0 }).unwrap();
        j.append(&Entry::Intent { task: 2 }).unwrap();
        j.append(&Entry::Outcome(outcome(0, TaskStatus::Failed)))
            .unwrap();
        j.append(&Entry::Outcome(outcome(1, TaskStatus::Succeeded)))
            .unwrap();
        j.append(&Entry::Outcome(outcome(0, TaskStatus::Succeeded)))
            .unwrap();
        j.sync().unwrap();
        drop(j);
        // A crash mid-write leaves half a line.
        let mut f = OpenOptions::new().append(true).open(&p).unwrap();
        f.write_all(br#"{"entry":"outcome","task":2,"sta"#).unwrap();
        let r = read(&p).unwrap();
        assert!(r.torn);
        assert_eq!(r.starts, 1);
        assert_eq!(
            r.in_flight.iter().copied().collect::<Vec<_>>(),
            vec![2],
            "task 2 was in flight at the crash"
        );
        assert_eq!(
            r.succeeded().keys().copied().collect::<Vec<_>>(),
            vec![0, 1]
        );
        // Garbage in the middle is corruption, not a torn tail.
        let mut text = std::fs::read_to_string(&p).unwrap();
        text = text.replacen("\n", "\nnot json\n", 1);
        std::fs::write(&p, text).unwrap();
        assert!(matches!(
            read(&p),
            Err(JournalError::Corrupt { line: 2, .. })
        ));
    }
}
