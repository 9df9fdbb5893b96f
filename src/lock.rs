//! The run lock: one run of a job against one server and enterprise at a time.
//!
//! An OS file lock (`flock`) on `<state>/locks/<job>-<scope hash>.lock`, which the kernel releases when
//! the holder dies, so a crashed or `kill -9`ed run never leaves a lock that blocks the next
//! cron slot. The file also holds a JSON record of the holder (pid, host, start, run id) so
//! a refused run can say who holds the lock, and a record left behind by a dead holder is
//! reported when the lock is taken over. The scope hash covers the job's exact name, the
//! server and the enterprise: the same job against staging and production are different
//! work, and names that read alike once made file-safe (`a/b`, `a:b`) never share a lock.
//! It decides nothing about runs themselves.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

/// Who holds (or held) a lock.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Holder {
    pub pid: u32,
    pub host: String,
    pub started: String,
    pub run_id: String,
    pub job: String,
    /// The server (base URL) and enterprise the run works on; part of the lock's scope.
    #[serde(default)]
    pub server: String,
    #[serde(default)]
    pub enterprise: String,
}

impl std::fmt::Display for Holder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "run {} (pid {} on {}, started {})",
            self.run_id, self.pid, self.host, self.started
        )
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error(
        "job `{job}` is already running: {holder}; wait for it, pass --wait-lock 10m, or stop it"
    )]
    Held { job: String, holder: Box<Holder> },
    #[error(
        "job `{job}` is already running (its lock record is unreadable); wait for it or stop the other esper-bulk process"
    )]
    HeldUnknown { job: String },
    #[error("stopped while waiting for the lock of job `{job}`")]
    Stopped { job: String },
    #[error("cannot use the lock file {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// A held lock; dropping it clears the record and releases the lock.
#[derive(Debug)]
pub struct RunLock {
    file: File,
    pub path: PathBuf,
    /// The record a dead holder left behind, if the lock was taken over.
    pub taken_over: Option<Holder>,
}

impl Drop for RunLock {
    fn drop(&mut self) {
        // Clearing the record first means a later reader never sees a live-looking holder
        // for a lock that is free; the kernel releases the lock when the file closes.
        let _ = self.file.set_len(0);
        let _ = self.file.sync_all();
    }
}

/// This machine's name, for lock records.
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .ok()
        .filter(|s| !s.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "unknown-host".into())
}

fn lock_path(state: &Path, holder: &Holder) -> PathBuf {
    use sha2::{Digest, Sha256};
    let safe = crate::util::file_name_for(&holder.job);
    // Separators that cannot occur in a URL or an id keep the three parts apart.
    let scope = Sha256::digest(
        format!("{}\n{}\n{}", holder.job, holder.server, holder.enterprise).as_bytes(),
    );
    let hex: String = scope.iter().take(6).map(|b| format!("{b:02x}")).collect();
    state.join("locks").join(format!("{safe}-{hex}.lock"))
}

fn read_holder(file: &mut File) -> Option<Holder> {
    let mut text = String::new();
    file.seek(SeekFrom::Start(0)).ok()?;
    file.read_to_string(&mut text).ok()?;
    serde_json::from_str(text.trim()).ok()
}

/// Takes the lock of `holder.job` in `state`, waiting up to `wait` for another run to end.
/// `stop` is asked between waits, so a run cancelled while it waits gives up at once
/// instead of holding its process for the rest of `wait`.
pub fn acquire(
    state: &Path,
    holder: &Holder,
    wait: Option<Duration>,
    stop: &dyn Fn() -> bool,
) -> Result<RunLock, LockError> {
    let path = lock_path(state, holder);
    let io = |source| LockError::Io {
        path: path.clone(),
        source,
    };
    std::fs::create_dir_all(path.parent().unwrap_or(state)).map_err(io)?;
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(io)?;
    let until = wait.map(|w| Instant::now() + w);
    loop {
        match file.try_lock() {
            Ok(()) => break,
            Err(std::fs::TryLockError::WouldBlock) => {
                if stop() {
                    return Err(LockError::Stopped {
                        job: holder.job.clone(),
                    });
                }
                if until.is_some_and(|u| Instant::now() < u) {
                    std::thread::sleep(Duration::from_millis(500));
                    continue;
                }
                return Err(match read_holder(&mut file) {
                    Some(h) => LockError::Held {
                        job: holder.job.clone(),
                        holder: Box::new(h),
                    },
                    None => LockError::HeldUnknown {
                        job: holder.job.clone(),
                    },
                });
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(io(e)),
        }
    }
    let taken_over = read_holder(&mut file);
    let record = serde_json::to_string(holder).unwrap_or_default();
    file.set_len(0).map_err(io)?;
    file.seek(SeekFrom::Start(0)).map_err(io)?;
    file.write_all(record.as_bytes()).map_err(io)?;
    file.sync_all().map_err(io)?;
    Ok(RunLock {
        file,
        path,
        taken_over,
    })
}

/// What `unlock` found.
#[derive(Debug, PartialEq)]
pub enum Unlock {
    /// The record was stale (its run is gone) and has been cleared.
    Cleared(Holder),
    /// The run is alive and holds the lock; it was left alone.
    Running(Holder),
    NotFound,
}

/// Clears the lock record of `run_id` if its run is gone. A live run's lock cannot and
/// should not be broken from outside: stop that process instead.
pub fn unlock(state: &Path, run_id: &str) -> Result<Unlock, LockError> {
    let dir = state.join("locks");
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Ok(Unlock::NotFound);
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let io = |source| LockError::Io {
            path: path.clone(),
            source,
        };
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .map_err(io)?;
        let Some(holder) = read_holder(&mut file) else {
            continue;
        };
        if holder.run_id != run_id {
            continue;
        }
        return match file.try_lock() {
            Ok(()) => {
                file.set_len(0).map_err(io)?;
                Ok(Unlock::Cleared(holder))
            }
            Err(std::fs::TryLockError::WouldBlock) => Ok(Unlock::Running(holder)),
            Err(std::fs::TryLockError::Error(e)) => Err(io(e)),
        };
    }
    Ok(Unlock::NotFound)
}

/// The run ids whose lock is held right now. Only lock files with a record are asked (a
/// cleanly released lock has none), and each is held for a moment only, so a run starting
/// meanwhile is not turned away for long.
pub fn live_runs(state: &Path) -> std::collections::BTreeSet<String> {
    let mut live = std::collections::BTreeSet::new();
    let Ok(entries) = std::fs::read_dir(state.join("locks")) else {
        return live;
    };
    for entry in entries.flatten() {
        let Ok(mut file) = OpenOptions::new().read(true).open(entry.path()) else {
            continue;
        };
        let Some(holder) = read_holder(&mut file) else {
            continue;
        };
        match file.try_lock() {
            Ok(()) => {
                let _ = file.unlock();
            }
            Err(std::fs::TryLockError::WouldBlock) => {
                live.insert(holder.run_id);
            }
            // Cannot tell: counting it as held is the side that deletes nothing.
            Err(std::fs::TryLockError::Error(_)) => {
                live.insert(holder.run_id);
            }
        }
    }
    live
}

#[cfg(test)]
mod tests {
    use super::*;

    fn holder(run: &str) -> Holder {
        Holder {
            pid: std::process::id(),
            host: hostname(),
            started: "2026-11-28T03:00:00Z".into(),
            run_id: run.into(),
            job: "nightly".into(),
            server: "https://acme-api.esper.cloud/api".into(),
            enterprise: "e1".into(),
        }
    }

    // See: #9, #11 — one lock per job, server and enterprise; look-alike names never share.
    #[test]
    fn the_lock_scope_is_job_server_and_enterprise() {
        let dir = tempfile::tempdir().unwrap();
        let first = acquire(dir.path(), &holder("r1"), None, &|| false).unwrap();
        let staging = Holder {
            server: "https://acme-staging-api.esper.cloud/api".into(),
            ..holder("r2")
        };
        let other_enterprise = Holder {
            enterprise: "e2".into(),
            ..holder("r3")
        };
        let look_alike = Holder {
            job: "night:ly".into(),
            ..holder("r4")
        };
        let look_alike_too = Holder {
            job: "night/ly".into(),
            ..holder("r5")
        };
        let _a = acquire(dir.path(), &staging, None, &|| false).unwrap();
        let _b = acquire(dir.path(), &other_enterprise, None, &|| false).unwrap();
        let _c = acquire(dir.path(), &look_alike, None, &|| false).unwrap();
        let _d = acquire(dir.path(), &look_alike_too, None, &|| false).unwrap();
        assert!(matches!(
            acquire(dir.path(), &holder("r6"), None, &|| false),
            Err(LockError::Held { .. })
        ));
        drop(first);
    }

    #[test]
    fn second_acquire_names_the_holder_and_release_frees() {
        let dir = tempfile::tempdir().unwrap();
        let first = acquire(dir.path(), &holder("r1"), None, &|| false).unwrap();
        assert!(first.taken_over.is_none());
        match acquire(dir.path(), &holder("r2"), None, &|| false) {
            Err(LockError::Held { holder, .. }) => assert_eq!(holder.run_id, "r1"),
            other => panic!("expected Held, got {other:?}"),
        }
        assert_eq!(
            unlock(dir.path(), "r1").unwrap(),
            Unlock::Running(holder("r1"))
        );
        drop(first);
        let again = acquire(dir.path(), &holder("r3"), None, &|| false).unwrap();
        assert!(
            again.taken_over.is_none(),
            "a clean release leaves no record"
        );
    }

    #[test]
    fn live_runs_are_the_held_locks_only() {
        let dir = tempfile::tempdir().unwrap();
        let held = acquire(dir.path(), &holder("r1"), None, &|| false).unwrap();
        let other = Holder {
            job: "other".into(),
            ..holder("dead")
        };
        let path = lock_path(dir.path(), &other);
        std::fs::write(&path, serde_json::to_string(&other).unwrap()).unwrap();
        let live = live_runs(dir.path());
        assert_eq!(live.into_iter().collect::<Vec<_>>(), ["r1"]);
        drop(held);
        assert!(live_runs(dir.path()).is_empty());
        // Asking did not take the lock away from the next run.
        let _again = acquire(dir.path(), &holder("r2"), None, &|| false).unwrap();
    }

    #[test]
    fn a_left_behind_record_is_reported_and_unlock_clears_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = lock_path(dir.path(), &holder("dead"));
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, serde_json::to_string(&holder("dead")).unwrap()).unwrap();
        assert!(matches!(
            unlock(dir.path(), "dead").unwrap(),
            Unlock::Cleared(_)
        ));
        assert_eq!(unlock(dir.path(), "dead").unwrap(), Unlock::NotFound);
        std::fs::write(&path, serde_json::to_string(&holder("dead2")).unwrap()).unwrap();
        let lock = acquire(dir.path(), &holder("new"), None, &|| false).unwrap();
        assert_eq!(
            lock.taken_over.as_ref().map(|h| h.run_id.as_str()),
            Some("dead2")
        );
    }
}
