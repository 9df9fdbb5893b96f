//! Why a run, a plan or a report could not be made: [`RunError`], one variant per thing
//! to fix, each message naming the bad value and what to do about it.
//!
//! Task failures are not here (they are outcomes in the report); this is for what stops a
//! run from starting or from being recorded. [`RunError::exit_code`] maps each to the
//! documented exit codes; printing is the caller's.

use std::path::PathBuf;
use std::time::Duration;

use crate::base::{AccessError, Hint};
use crate::esper::ApiError;
use crate::exit;
use crate::journal::JournalError;
use crate::lock::{Holder, LockError};
use crate::plan::{Faults, PlanError};
use crate::util::refusal;

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("cannot read job file {}: {source}", path.display())]
    ReadJob {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The job's diagnostics, rendered with their source lines (they carry their own
    /// `error:` prefixes).
    #[error("{rendered}")]
    InvalidJob { file: String, rendered: String },
    /// Resolving or compiling failed; rendered as `file: error: …` plus a help line.
    #[error("{job}: error: {error}{}", help_line(error))]
    Plan { job: String, error: PlanError },
    /// Reading the job's targets did not finish within its deadline.
    #[error(
        "{job}: planning did not finish within the deadline of {}",
        humantime::format_duration(*deadline)
    )]
    PlanningDeadline { job: String, deadline: Duration },
    /// `--tenant` or `ESPER_TENANT` is not a tenant name.
    #[error("`{tenant}` from {from} is not a tenant name")]
    BadTenant { tenant: String, from: &'static str },
    #[error(
        "no Esper server: set `esper.tenant` in the job, pass --tenant or --base-url, or export ESPER_TENANT"
    )]
    NoServer,
    #[error(
        "no enterprise id: set `esper.enterprise_id`, pass --enterprise-id or export ESPER_ENTERPRISE_ID"
    )]
    NoEnterprise,
    #[error("no state directory: pass --state-dir, or set STATE_DIRECTORY, XDG_STATE_HOME or HOME")]
    NoStateDir,
    /// A saved plan or a resumed run is bound to the server and enterprise it was
    /// resolved against.
    #[error("the plan was made for {what} `{planned}` but {from} says `{asked}`")]
    PlanElsewhere {
        what: &'static str,
        planned: String,
        asked: String,
        from: String,
    },
    /// A context named for this command contradicts the job's `esper:` block.
    #[error("the job names {what} `{job}` but {from} says `{context}`")]
    ContextElsewhere {
        what: &'static str,
        job: String,
        context: String,
        from: String,
    },
    #[error(transparent)]
    Context(#[from] crate::context::ContextError),
    #[error("run {run_id} is a run of `{run_job}`, not of `{job}`")]
    NotThisJob {
        run_id: String,
        run_job: String,
        job: String,
    },
    #[error("no API key: environment variable {0} is not set")]
    NoKey(String),
    #[error("reading the API key file {path}: {source}")]
    ReadKey {
        path: String,
        source: std::io::Error,
    },
    #[error("the API key is empty (from {0})")]
    EmptyKey(String),
    #[error(transparent)]
    Client(#[from] ApiError),
    /// The API cannot be used with these settings, found before anything was written.
    #[error("{}", access_text(base_url, error))]
    Access {
        base_url: String,
        error: AccessError,
    },
    #[error(transparent)]
    Lock(#[from] LockError),
    #[error("no coordinator given")]
    NoCoordinator,
    /// The job's `coordinator:` names a variable the run's environment lacks.
    #[error("the job's coordinator cannot be rendered: {0}")]
    CoordinatorFromJob(String),
    /// `--coordinator` is set but cannot be used: the run does not start.
    #[error(transparent)]
    Coordinator(#[from] crate::coord::CoordError),
    #[error("reading plan {}: {source}", path.display())]
    ReadPlan {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{} is not a plan file: {message}", path.display())]
    NotAPlan { path: PathBuf, message: String },
    /// A plan file that fails [`crate::plan::verify`]: edited, damaged or forged.
    #[error("refusing plan {}: {faults}", path.display())]
    BadPlan { path: PathBuf, faults: Faults },
    #[error("plan {} has format {found}, this esper-bulk reads formats {} to {expected}", path.display(), crate::plan::OLDEST_PLAN_FORMAT)]
    PlanFormat {
        path: PathBuf,
        found: u32,
        expected: u32,
    },
    #[error("no run `{id}` in {}; see the run ids printed by `run`", runs.display())]
    NoSuchRun { id: String, runs: PathBuf },
    #[error("no runs in {}: {source}", runs.display())]
    NoRuns {
        runs: PathBuf,
        source: std::io::Error,
    },
    #[error("no run to resume in {}", runs.display())]
    NothingToResume { runs: PathBuf },
    #[error("{} is not a run directory (no plan.json): {source}", dir.display())]
    NotARunDir {
        dir: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Journal(#[from] JournalError),
    #[error("creating the run directory {}: {source}", path.display())]
    CreateDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("writing {}: {source}", path.display())]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("deleting the run directory {}: {source}", path.display())]
    Delete {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("unknown report format `{0}`; use json, md, xml, csv, html or devices")]
    UnknownFormat(String),
    #[error("--stdout prints one format; give exactly one with --format (got {0})")]
    StdoutFormats(usize),
    #[error(
        "the plan needs about {} at {rate}/s but the deadline is {}",
        humantime::format_duration(*needs),
        humantime::format_duration(*deadline)
    )]
    DeadlineTooShort {
        needs: Duration,
        rate: f64,
        deadline: Duration,
    },
    #[error("{holder} is still running and holds the lock")]
    StillRunning { holder: Box<Holder> },
    #[error(
        "no lock of run `{run_id}` in {}",
        locks.display()
    )]
    NoLock { run_id: String, locks: PathBuf },
    #[error("starting the mock Esper server: {0}")]
    Mock(std::io::Error),
    #[error("interrupted before any task was sent")]
    Interrupted,
    /// `--limit` with a saved plan or a resumed run, whose targets are frozen.
    #[error("--limit cannot be used with {with}: its targets were frozen when it was planned")]
    LimitFrozen { with: &'static str },
    /// An `@file` of `--limit` patterns could not be read.
    #[error("cannot read --limit file {}: {source}", path.display())]
    LimitFile {
        path: PathBuf,
        source: std::io::Error,
    },
    /// An `@file` of `--limit` patterns holds none.
    #[error("--limit file {} holds no pattern", path.display())]
    EmptyLimitFile { path: PathBuf },
}

/// An access error, naming the server when it could not be reached.
fn access_text(base_url: &str, e: &AccessError) -> String {
    match e {
        AccessError::Unreachable { detail } => {
            format!("cannot reach the Esper API at {base_url}: {detail}")
        }
        other => other.to_string(),
    }
}

fn help_line(e: &PlanError) -> String {
    e.hint()
        .map(|h| format!("\n  = help: {h}"))
        .unwrap_or_default()
}

/// Advice, kept out of `Display` (see the crate docs, "Errors and advice"); the command
/// line prints it with [`crate::base::render_error`].
impl Hint for RunError {
    fn hint(&self) -> Option<String> {
        match self {
            RunError::ReadJob { source, .. } => refusal(source)
                .and_then(Hint::hint)
                .or_else(|| Some("check the path".into())),
            RunError::ReadPlan { source, .. } | RunError::Write { source, .. } => {
                refusal(source).and_then(Hint::hint)
            }
            RunError::BadPlan { faults, .. } => faults.hint(),
            RunError::PlanElsewhere { asked, from, .. } => Some(format!(
                "make a new plan against `{asked}` (`esper-bulk plan JOB --out FILE`), or unset {from} to run this one where it was made"
            )),
            RunError::ContextElsewhere { what, .. } => Some(format!(
                "leave out the context to run where the job says, or override the {what} with a flag (--base-url, --tenant, --enterprise-id)"
            )),
            RunError::Context(e) => e.hint(),
            RunError::NotThisJob { .. } => {
                Some("give that run's own job file, or `--resume RUN_ID` without a job file".into())
            }
            RunError::DeadlineTooShort { .. } => Some(
                "raise limits.rate (if the tenant allows it) or the deadline, or split the job"
                    .into(),
            ),
            RunError::StillRunning { holder } => Some(format!(
                "stop it (kill -TERM {}) instead of unlocking; it will finish cleanly",
                holder.pid
            )),
            RunError::NoLock { .. } => Some("check the run id and --state-dir".into()),
            RunError::PlanningDeadline { .. } => Some(
                "the server was slow or kept failing while the targets were read; raise `deadline` (or --deadline) or try again later"
                    .into(),
            ),
            RunError::BadTenant { .. } => Some(
                "use the console sub-domain, e.g. `acme` for acme.esper.cloud, or --base-url for a full URL"
                    .into(),
            ),
            RunError::LimitFrozen { .. } => Some(
                "make a new plan with the limit (`esper-bulk plan JOB --limit … --out FILE`), or run the job file with --limit"
                    .into(),
            ),
            RunError::LimitFile { source, .. } => refusal(source)
                .and_then(Hint::hint)
                .or_else(|| Some("`@FILE` names a file with one pattern a line".into())),
            RunError::EmptyLimitFile { .. } => Some(
                "put one group path, glob, device name or serial on each line (`#` starts a comment)"
                    .into(),
            ),
            RunError::Client(e) => e.hint(),
            RunError::Access { error, .. } => error.hint(),
            RunError::Journal(e) => e.hint(),
            RunError::Coordinator(e) => e.hint(),
            RunError::NoCoordinator => {
                Some("pass --coordinator redis://HOST:PORT/DB or set ESPER_BULK_REDIS_URL".into())
            }
            _ => None,
        }
    }
}

impl RunError {
    /// The process exit code for this error.
    pub fn exit_code(&self) -> u8 {
        match self {
            RunError::Lock(LockError::Held { .. } | LockError::HeldUnknown { .. })
            | RunError::StillRunning { .. } => exit::LOCKED,
            // Without the coordinator the run cannot know it is alone: try again later.
            RunError::Coordinator(_) => exit::LOCKED,
            RunError::CoordinatorFromJob(_) => exit::INVALID,
            RunError::Interrupted => exit::INTERRUPTED,
            RunError::PlanningDeadline { .. } => exit::INCOMPLETE,
            RunError::Access { .. } => exit::NO_ACCESS,
            _ => exit::INVALID,
        }
    }

    /// Whether the message is already rendered with its own `error:` labels (job
    /// diagnostics and plan errors), so a printer must not add one.
    pub fn is_rendered(&self) -> bool {
        matches!(self, RunError::InvalidJob { .. } | RunError::Plan { .. })
    }
}
