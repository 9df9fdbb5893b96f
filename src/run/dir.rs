//! The state directory: where it is, run ids, `runs/<run id>/` and the files in it that
//! identify a run (`plan.json`, `journal.jsonl`), saved plan files, and taking or clearing
//! a job's lock in `locks/`.
//!
//! It knows paths and formats, not what a run does: the lock itself is [`crate::lock`],
//! the journal [`crate::journal`], and writing reports is the parent module's.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::lock::{self, Holder, LockError, RunLock, Unlock};
use crate::plan::{self, Plan};
use crate::util::MAX_INPUT_BYTES;

use super::RunError;
use super::config::Env;
use super::notice::{Notice, Notices};

/// A run's id: `<job>-<UTC time>-<4 hex digits>`, also its directory's name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RunId(String);

impl RunId {
    /// A fresh id for a run of `job`; the random suffix keeps two runs started in the same
    /// second apart.
    pub fn new(job: &str) -> RunId {
        let ts = jiff::Timestamp::now()
            .strftime("%Y%m%dT%H%M%SZ")
            .to_string();
        let safe = crate::util::file_name_for(job);
        RunId(format!("{safe}-{ts}-{:04x}", fastrand::u16(..)))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Any string names a run; whether it exists is checked when it is used.
impl From<&str> for RunId {
    fn from(s: &str) -> RunId {
        RunId(s.to_string())
    }
}

impl From<String> for RunId {
    fn from(s: String) -> RunId {
        RunId(s)
    }
}

impl fmt::Display for RunId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The state directory: `flag` if given, else systemd's `$STATE_DIRECTORY` (its first
/// entry), else `$XDG_STATE_HOME/esper-bulk`, else `$HOME/.local/state/esper-bulk`.
///
/// Never the working directory: the same job started from two directories must find the
/// same lock and the same runs to resume.
pub fn state_dir(flag: Option<PathBuf>, env: &Env) -> Result<PathBuf, RunError> {
    let set = |name: &str| env.get(name).filter(|s| !s.is_empty());
    flag.or_else(|| {
        set("STATE_DIRECTORY").map(|s| PathBuf::from(s.split(':').next().unwrap_or(&s)))
    })
    .or_else(|| set("XDG_STATE_HOME").map(|s| PathBuf::from(s).join("esper-bulk")))
    .or_else(|| set("HOME").map(|h| PathBuf::from(h).join(".local/state/esper-bulk")))
    .ok_or(RunError::NoStateDir)
}

/// Where the run `id` keeps its files.
pub fn run_dir(state: &Path, id: &RunId) -> PathBuf {
    state.join("runs").join(id.as_str())
}

/// The run in `state` whose journal was written last: what `--resume latest` resumes.
pub fn latest_run(state: &Path) -> Result<RunId, RunError> {
    let runs = state.join("runs");
    let newest = std::fs::read_dir(&runs)
        .map_err(|source| RunError::NoRuns {
            runs: runs.clone(),
            source,
        })?
        .flatten()
        .filter(|e| e.path().join("plan.json").exists())
        .max_by_key(|e| {
            e.path()
                .join("journal.jsonl")
                .metadata()
                .and_then(|m| m.modified())
                .ok()
        });
    newest
        .map(|e| RunId(e.file_name().to_string_lossy().into_owned()))
        .ok_or(RunError::NothingToResume { runs })
}

/// The newest run of `job` against `server` that did not finish: its journal has no
/// `finish` line (killed, or the journal could not be written) or says the run stopped
/// early (signal, deadline). Runs that ended, even with failed tasks, are done: failed
/// tasks are final answers, and re-running them is a new run.
pub(super) fn latest_unfinished(state: &Path, job: &str, server: &plan::Server) -> Option<RunId> {
    let runs = state.join("runs");
    let mut candidates: Vec<(std::time::SystemTime, PathBuf)> = std::fs::read_dir(&runs)
        .ok()?
        .flatten()
        .map(|e| e.path())
        .filter_map(|p| {
            let t = p
                .join("journal.jsonl")
                .metadata()
                .and_then(|m| m.modified());
            Some((t.ok()?, p))
        })
        .collect();
    candidates.sort_by_key(|c| std::cmp::Reverse(c.0));
    candidates.into_iter().find_map(|(_, dir)| {
        let plan = run_plan(&dir, &Notices::none()).ok()?;
        if plan.job != job || &plan.server != server {
            return None;
        }
        let replay = crate::journal::read(&dir.join("journal.jsonl")).ok()?;
        let unfinished = replay.finish.as_ref().is_none_or(|f| f.stopped.is_some());
        let name = dir.file_name()?.to_string_lossy().into_owned();
        unfinished.then_some(RunId(name))
    })
}

/// The directory of an existing run, which must hold a `plan.json`.
pub(super) fn existing_run(state: &Path, id: &RunId) -> Result<PathBuf, RunError> {
    let dir = run_dir(state, id);
    if dir.join("plan.json").exists() {
        Ok(dir)
    } else {
        Err(RunError::NoSuchRun {
            id: id.to_string(),
            runs: state.join("runs"),
        })
    }
}

/// A run directory's frozen plan, verified like a saved plan file ([`read_plan`]). Unlike
/// a saved plan file its format is not checked: the directory was written by this run.
pub(super) fn run_plan(dir: &Path, notices: &Notices) -> Result<Plan, RunError> {
    let path = dir.join("plan.json");
    let text =
        crate::util::read_text(&path, MAX_INPUT_BYTES).map_err(|source| RunError::NotARunDir {
            dir: dir.to_path_buf(),
            source,
        })?;
    let (plan, seal) = parse_plan(&path, &text)?;
    check_plan(&path, &plan, seal.as_deref(), notices)?;
    Ok(plan)
}

/// Reads a plan saved by `plan --out` (formats [`plan::OLDEST_PLAN_FORMAT`] to the current
/// one), refusing other plan formats and any plan that fails
/// [`plan::verify`]: its integrity hash, the job checker's ranges and counts that agree
/// with its frozen targets. A plan written before plans carried a hash is run with a
/// [`Notice::UnsealedPlan`].
pub fn read_plan(path: &Path, notices: &Notices) -> Result<Plan, RunError> {
    let text =
        crate::util::read_text(path, MAX_INPUT_BYTES).map_err(|source| RunError::ReadPlan {
            path: path.to_path_buf(),
            source,
        })?;
    let (plan, seal) = parse_plan(path, &text)?;
    if !(plan::OLDEST_PLAN_FORMAT..=plan::PLAN_FORMAT).contains(&plan.format) {
        return Err(RunError::PlanFormat {
            path: path.to_path_buf(),
            found: plan.format,
            expected: plan::PLAN_FORMAT,
        });
    }
    check_plan(path, &plan, seal.as_deref(), notices)?;
    Ok(plan)
}

/// A plan file: the plan's fields, then `integrity`, [`plan::integrity`] of the plan.
#[derive(serde::Serialize)]
struct Sealed<'a> {
    #[serde(flatten)]
    plan: &'a Plan,
    /// Tasks by action (`create`, `update`, …): what the plan would change, in all and
    /// by step id. Derived from the steps' actions, so neither read back nor hashed.
    changes: plan::Changes,
    step_changes: std::collections::BTreeMap<String, plan::Changes>,
    integrity: String,
}

/// The one field of a plan file that is not the plan's; files from before it have none.
#[derive(serde::Deserialize)]
struct Seal {
    #[serde(default)]
    integrity: Option<String>,
}

/// The plan and its recorded integrity hash, if the file has one.
fn parse_plan(path: &Path, text: &str) -> Result<(Plan, Option<String>), RunError> {
    let not_a_plan = |e: serde_json::Error| RunError::NotAPlan {
        path: path.to_path_buf(),
        message: e.to_string(),
    };
    // Parsed as the plan itself (unknown fields, `integrity` among them, are ignored), so
    // errors keep their line and column.
    let plan: Plan = serde_json::from_str(text).map_err(not_a_plan)?;
    let seal: Seal = serde_json::from_str(text).map_err(not_a_plan)?;
    Ok((plan, seal.integrity))
}

fn check_plan(
    path: &Path,
    plan: &Plan,
    seal: Option<&str>,
    notices: &Notices,
) -> Result<(), RunError> {
    plan::verify(plan, seal).map_err(|faults| RunError::BadPlan {
        path: path.to_path_buf(),
        faults,
    })?;
    if seal.is_none() {
        notices.send(Notice::UnsealedPlan {
            path: path.to_path_buf(),
        });
    }
    Ok(())
}

/// Writes a plan for review and `run --plan` (atomically: a half-written plan must never
/// be run), with its `integrity` hash.
pub fn write_plan(path: &Path, plan: &Plan) -> Result<(), RunError> {
    let sealed = sealed(plan);
    crate::util::atomic_write_with(path, |w| {
        serde_json::to_writer_pretty(w, &sealed).map_err(std::io::Error::other)
    })
    .map_err(|source| RunError::Write {
        path: path.to_path_buf(),
        source,
    })
}

fn sealed(plan: &Plan) -> Sealed<'_> {
    let (changes, step_changes) = plan::diff::changes(plan);
    Sealed {
        plan,
        changes,
        step_changes,
        integrity: plan::integrity(plan),
    }
}

/// The plan as `plan --out` writes it and `plan --json` prints it: pretty JSON ending
/// with its `integrity` hash, so a plan saved from either is checked the same way.
pub fn sealed_plan(plan: &Plan) -> String {
    serde_json::to_string_pretty(&sealed(plan)).unwrap_or_default()
}

/// Takes the lock of `job` against `server` for run `id`, waiting up to `wait` for a
/// holder; gives up when `stop` says the run was cancelled meanwhile.
pub(super) fn take_lock(
    state: &Path,
    job: &str,
    server: &plan::Server,
    id: &RunId,
    wait: Option<Duration>,
    stop: &dyn Fn() -> bool,
    notices: &Notices,
) -> Result<RunLock, RunError> {
    let holder = Holder {
        pid: std::process::id(),
        host: lock::hostname(),
        started: jiff::Timestamp::now().to_string(),
        run_id: id.to_string(),
        job: job.to_string(),
        server: server.base_url.clone(),
        enterprise: server.enterprise_id.clone(),
    };
    let lock = lock::acquire(state, &holder, wait, stop).map_err(|e| match e {
        LockError::Stopped { .. } => RunError::Interrupted,
        e => RunError::Lock(e),
    })?;
    if let Some(prev) = &lock.taken_over {
        notices.send(Notice::LockTakenOver(prev.clone()));
    }
    Ok(lock)
}

/// Clears the lock record a dead run `run_id` left in `state`, returning whose it was. A
/// live run's lock is never broken ([`RunError::StillRunning`]).
pub fn unlock(state: &Path, run_id: &str) -> Result<Holder, RunError> {
    match lock::unlock(state, run_id)? {
        Unlock::Cleared(h) => Ok(h),
        Unlock::Running(h) => Err(RunError::StillRunning {
            holder: Box::new(h),
        }),
        Unlock::NotFound => Err(RunError::NoLock {
            run_id: run_id.to_string(),
            locks: state.join("locks"),
        }),
    }
}

/// `<state>/jobs/<job>-<hash of job, server, enterprise>/`: what the state directory
/// remembers about one job on one tenant between runs, keyed like its lock.
pub(super) fn job_state(state: &Path, job: &str, server: &plan::Server) -> PathBuf {
    use sha2::{Digest, Sha256};
    let scope =
        Sha256::digest(format!("{job}\n{}\n{}", server.base_url, server.enterprise_id).as_bytes());
    let hex: String = scope.iter().take(6).map(|b| format!("{b:02x}")).collect();
    state
        .join("jobs")
        .join(format!("{}-{hex}", crate::util::file_name_for(job)))
}

/// When the job's last successful run on this server started, if one did
/// (`since: last_run`). A missing or unreadable file means none did.
pub(super) fn last_success(
    state: &Path,
    job: &str,
    server: &plan::Server,
) -> Option<jiff::Timestamp> {
    let text = std::fs::read_to_string(job_state(state, job, server).join("last_success")).ok()?;
    text.trim().parse().ok()
}

/// Remembers `started` as the start of the job's last successful run. The start, not the
/// end: an incremental export from there misses nothing created while the run ran (and
/// may repeat a little of it, which is the safe side).
pub(super) fn record_success(
    state: &Path,
    job: &str,
    server: &plan::Server,
    started: jiff::Timestamp,
) -> std::io::Result<()> {
    let path = job_state(state, job, server).join("last_success");
    crate::util::atomic_write(&path, format!("{started}\n").as_bytes())
}
