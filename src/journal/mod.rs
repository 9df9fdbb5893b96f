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
//! [`SYNC_AFTER`]) and at the end. Every line written now ends with a checksum of the rest
//! of it (`,"crc":"<crc32 hex>"}`), so a damaged, torn or forged line is detected. Reading
//! is line by line: a line that is not UTF-8, not an entry, fails its checksum, or lacks one
//! in a segment whose `start` line had one is left out and reported ([`LineWarning`]), and
//! the rest is used; lines of older journals, which have no checksum, are read as they are.
//! A torn last line (power loss mid-write) is tolerated silently. The journal never decides
//! anything: resuming treats every task without a recorded success as uncertain, so the
//! executor reads it back by natural key before writing — a lost line can cost a read,
//! never a duplicate.

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
        self.out.write_all(seal(&line).as_bytes()).map_err(err)?;
        self.out.write_all(b"\n").map_err(err)?;
        self.unsynced += 1;
        // A segment's start is on disk before its first write is sent, so a run killed at
        // once still shows when it began and that it was killed.
        if matches!(e, Entry::Start { .. })
            || self.unsynced >= SYNC_EVERY
            || self.last_sync.elapsed() >= SYNC_AFTER
        {
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
    /// Lines before the last that were left out, and why; the rest was used.
    pub warnings: Vec<LineWarning>,
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

/// A journal line that was left out, by its 1-based number.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {problem}")]
pub struct LineWarning {
    pub line: usize,
    pub problem: LineProblem,
}

/// Why a journal line was left out.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LineProblem {
    #[error("not valid UTF-8")]
    NotUtf8,
    #[error("not a journal entry ({0})")]
    NotAnEntry(String),
    #[error("its checksum does not match its content")]
    BadChecksum,
    #[error("no checksum, though the lines around it have one")]
    NoChecksum,
}

/// The checksum field every line written now ends with: `,"crc":"` and 8 hex digits.
const CRC_FIELD: &str = r#","crc":""#;
const CRC_SUFFIX_LEN: usize = CRC_FIELD.len() + 8 + 2;

fn crc_of(json: &str) -> String {
    format!("{:08x}", crc32fast::hash(json.as_bytes()))
}

/// `{…}` becomes `{…,"crc":"<crc32 of {…}>"}`.
fn seal(json: &str) -> String {
    match json.strip_suffix('}') {
        Some(body) => format!("{body}{CRC_FIELD}{}\"}}", crc_of(json)),
        None => json.to_string(),
    }
}

/// Splits a sealed line into the JSON it was made from and its checksum; `None` for a
/// line without one (older journals).
fn unseal(line: &str) -> Option<(String, &str)> {
    let at = line.len().checked_sub(CRC_SUFFIX_LEN)?;
    let suffix = line.get(at..)?;
    let crc = suffix.strip_prefix(CRC_FIELD)?.strip_suffix("\"}")?;
    (crc.len() == 8 && crc.bytes().all(|b| b.is_ascii_hexdigit()))
        .then(|| (format!("{}}}", &line[..at]), crc))
}

/// Decodes one line written in `format` as a current entry, and says whether it carried a
/// checksum.
fn decode(line: &[u8], format: u32) -> Result<(Entry, bool), LineProblem> {
    let line = std::str::from_utf8(line).map_err(|_| LineProblem::NotUtf8)?;
    let (json, sealed) = match unseal(line) {
        Some((json, crc)) if crc_of(&json) == crc => (std::borrow::Cow::Owned(json), true),
        Some(_) => return Err(LineProblem::BadChecksum),
        None => (std::borrow::Cow::Borrowed(line), false),
    };
    let entry = if format == 1 {
        serde_json::from_str::<v1::Entry>(&json).map(Entry::from)
    } else {
        serde_json::from_str::<Entry>(&json)
    };
    entry
        .map(|e| (e, sealed))
        .map_err(|e| LineProblem::NotAnEntry(e.to_string()))
}

/// Reads a journal line by line, tolerating a torn last line and leaving out (with a
/// [`LineWarning`]) any other line that cannot be trusted.
pub fn read(path: &Path) -> Result<Replay, JournalError> {
    let file = File::open(path).map_err(|source| JournalError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let mut lines = BufReader::new(file).split(b'\n').peekable();
    let mut replay = Replay::default();
    // Every `start` names the format of the lines after it; a journal begins with one.
    let mut format = JOURNAL_FORMAT;
    // Whether the current segment's `start` line was sealed: then every line after it is.
    let mut sealed_segment = false;
    let mut n = 0;
    while let Some(line) = lines.next() {
        n += 1;
        let mut line = line.map_err(|source| JournalError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        if line.last() == Some(&b'\r') {
            line.pop();
        }
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let last = lines.peek().is_none();
        let entry = match decode(&line, format) {
            Ok((e @ Entry::Start { .. }, sealed)) => {
                sealed_segment = sealed;
                e
            }
            Ok((_, false)) if sealed_segment => {
                replay.warnings.push(LineWarning {
                    line: n,
                    problem: LineProblem::NoChecksum,
                });
                continue;
            }
            Ok((e, _)) => e,
            Err(LineProblem::NotUtf8 | LineProblem::NotAnEntry(_)) if last => {
                replay.torn = true;
                continue;
            }
            Err(problem) => {
                replay.warnings.push(LineWarning { line: n, problem });
                continue;
            }
        };
        match entry {
            Entry::Start { format: f, .. } if !(OLDEST_FORMAT..=JOURNAL_FORMAT).contains(&f) => {
                return Err(JournalError::Format {
                    path: path.to_path_buf(),
                    found: f,
                });
            }
            Entry::Start {
                format: f,
                at,
                resumed,
                ..
            } => {
                format = f;
                replay.starts += 1;
                replay.segments.push(Segment {
                    started_at: at,
                    resumed,
                    finish: None,
                    outcomes: 0,
                });
            }
            Entry::Intent { task } => {
                replay.in_flight.insert(task);
            }
            Entry::Outcome(o) => {
                replay.in_flight.remove(&o.task);
                if let Some(n) = replay.segments.len().checked_sub(1) {
                    replay.segments[n].outcomes += 1;
                    replay.task_segment.insert(o.task, n);
                }
                replay.outcomes.insert(o.task, o.into());
            }
            Entry::Finish(f) => {
                if let Some(s) = replay.segments.last_mut() {
                    s.finish = Some(f.clone());
                }
                replay.finish = Some(f);
            }
        }
    }
    Ok(replay)
}

/// Journal format 1, read and converted to current records. Format 1 kept a task's
#[cfg(test)]
mod tests;
