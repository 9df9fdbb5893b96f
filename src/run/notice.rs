//! Notices: what a run tells the person watching it while it goes (warnings, "resuming
//! …", where the report will be), as typed values.
//!
//! The library never prints; it hands each [`Notice`] to the caller's [`Notices`] sink.
//! Its `Display` is the exact line the command line prints on stderr, so the wording lives
//! next to the facts. Results (the summary, the report path) are not notices: they come
//! back in [`super::RunResult`].

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

use crate::base::count;
use crate::journal::LineWarning;
use crate::lock::Holder;

/// Something worth telling a person, as it happens.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Notice {
    /// A job warning, rendered with its source line.
    JobWarning(String),
    /// A warning from resolving targets (e.g. CSV serials that are not in the fleet).
    PlanWarning(String),
    /// How targets were read, where it is worth knowing (e.g. CSV serials looked up one by
    /// one, and how many requests that took).
    PlanNote(String),
    /// The previous holder of the job's lock died without releasing it.
    LockTakenOver(Holder),
    /// The journal's last line was cut short; that task is read back like any other.
    TornJournal,
    /// Journal lines that were not used (damaged, or failing their checksum); the rest of
    /// the journal was.
    JournalLines {
        path: PathBuf,
        lines: Vec<LineWarning>,
    },
    /// A plan file written before plans carried an integrity hash: checked, not sealed.
    UnsealedPlan {
        path: PathBuf,
    },
    /// Tasks that had started but recorded no outcome when the resumed run stopped.
    InFlight(usize),
    Resuming {
        run_id: String,
        succeeded: usize,
        /// Interrupted commands followed by their request id, not sent again.
        following: usize,
        tasks: u32,
    },
    Started {
        run_id: String,
        tasks: u32,
        dir: PathBuf,
    },
    /// A report rendering (not `report.json`, the record) could not be written.
    RenderingNotWritten {
        path: PathBuf,
        error: String,
    },
    MetricsNotWritten {
        path: PathBuf,
        error: String,
    },
    /// The demo's mock server is up.
    MockStarted {
        base_url: String,
        groups: usize,
        devices_per_group: usize,
    },
    /// `run JOB --resume` found no unfinished run of the job: a new run starts.
    NothingToContinue {
        job: String,
    },
    /// The plan fits its deadline only if command waits end before their timeouts.
    DeadlineMayPass {
        worst: std::time::Duration,
        deadline: std::time::Duration,
    },
    /// A saved plan's snapshot of live state was older than `--max-plan-age`: it was read
    /// again, and these tasks' actions changed since the plan (task, planned, now).
    Drifted {
        age: std::time::Duration,
        drifted: Vec<(String, &'static str, &'static str)>,
    },
    /// A webhook could not be told how the run ended (`target` names it by its place,
    /// never by its URL); the run's exit code is unchanged.
    NotificationFailed {
        target: String,
        failure: crate::report::NotifyFailure,
    },
    /// The coordinator (`--coordinator`) stopped answering: the run paces itself at the
    /// local fallback rate until it answers again (told once a run).
    CoordinatorDegraded {
        url: String,
        error: String,
        fallback_rate: f64,
    },
    /// The coordinator answers again: back to the shared budget.
    CoordinatorRecovered {
        url: String,
    },
    /// Another process holds the run's lock lease now: the run stops dispatching.
    LeaseLost {
        holder: Option<Holder>,
    },
    /// The first SIGINT/SIGTERM: the run drains.
    Stopping,
    /// The second one: the process exits now.
    StoppedAtOnce,
}

impl Notice {
    /// Whether it warns of something to look at (shown under `-q`), rather than telling
    /// how the run goes.
    pub fn is_warning(&self) -> bool {
        matches!(
            self,
            Notice::JobWarning(_)
                | Notice::PlanWarning(_)
                | Notice::LockTakenOver(_)
                | Notice::TornJournal
                | Notice::JournalLines { .. }
                | Notice::UnsealedPlan { .. }
                | Notice::RenderingNotWritten { .. }
                | Notice::MetricsNotWritten { .. }
                | Notice::DeadlineMayPass { .. }
                | Notice::Drifted { .. }
                | Notice::NotificationFailed { .. }
                | Notice::CoordinatorDegraded { .. }
                | Notice::LeaseLost { .. }
                | Notice::StoppedAtOnce
        )
    }
}

impl fmt::Display for Notice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Notice::Drifted { age, drifted } if drifted.is_empty() => write!(
                f,
                "the plan's view of the tenant was {} old, so it was read again: nothing drifted since plan",
                humantime::format_duration(std::time::Duration::from_secs(age.as_secs()))
            ),
            Notice::Drifted { age, drifted } => {
                let shown: Vec<String> = drifted
                    .iter()
                    .take(5)
                    .map(|(t, a, b)| format!("{t} ({a} → {b})"))
                    .collect();
                let more = if drifted.len() > 5 {
                    format!(", … and {} more", drifted.len() - 5)
                } else {
                    String::new()
                };
                write!(
                    f,
                    "warning: the plan's view of the tenant was {} old, so it was read again: {} drifted since plan: {}{more}; the run acts on what is there now",
                    humantime::format_duration(std::time::Duration::from_secs(age.as_secs())),
                    count(drifted.len() as u64, "task", "tasks"),
                    shown.join(", ")
                )
            }
            Notice::CoordinatorDegraded {
                url,
                error,
                fallback_rate,
            } => write!(
                f,
                "warning: the coordinator at {url} is unreachable ({error}): pacing at the local fallback rate of {fallback_rate:.1} requests/s until it answers again"
            ),
            Notice::CoordinatorRecovered { url } => {
                write!(f, "the coordinator at {url} answers again: back to the shared budget")
            }
            Notice::LeaseLost { holder: Some(h) } => write!(
                f,
                "warning: the run lock's lease was lost to {h}: this run stops dispatching"
            ),
            Notice::LeaseLost { holder: None } => f.write_str(
                "warning: the run lock's lease was lost to another process: this run stops dispatching",
            ),
            Notice::JobWarning(w) => f.write_str(w.trim_end()),
            Notice::PlanWarning(w) => write!(f, "warning: {w}"),
            Notice::PlanNote(n) => f.write_str(n),
            Notice::LockTakenOver(h) => write!(
                f,
                "warning: {h} ended without releasing its lock (crashed or killed); taking it over"
            ),
            Notice::TornJournal => f.write_str(
                "warning: the journal's last line was cut short (a crash mid-write); that task will be read back",
            ),
            Notice::JournalLines { path, lines } => {
                const SHOWN: usize = 5;
                let shown: Vec<String> = lines.iter().take(SHOWN).map(|l| l.to_string()).collect();
                write!(
                    f,
                    "warning: {}: ignoring {} damaged line{} ({}{}); their tasks will be read back",
                    path.display(),
                    lines.len(),
                    if lines.len() == 1 { "" } else { "s" },
                    shown.join("; "),
                    if lines.len() > SHOWN { "; …" } else { "" }
                )
            }
            Notice::UnsealedPlan { path } => write!(
                f,
                "warning: {} has no integrity hash (written by an older esper-bulk); its structure was checked, but edits to it cannot be detected",
                path.display()
            ),
            Notice::InFlight(n) => write!(
                f,
                "{} in flight when the run stopped; like every unfinished task {} read back before anything is sent",
                match n {
                    1 => "1 task was".to_string(),
                    n => format!("{n} tasks were"),
                },
                if *n == 1 { "it is" } else { "they are" }
            ),
            Notice::Resuming {
                run_id,
                succeeded,
                following: 0,
                tasks,
            } => write!(
                f,
                "resuming run {run_id}: {succeeded} of {} already succeeded; every other task is read back before it writes",
                count(u64::from(*tasks), "task", "tasks")
            ),
            Notice::Resuming {
                run_id,
                succeeded,
                following,
                tasks,
            } => write!(
                f,
                "resuming run {run_id}: {succeeded} of {} already succeeded; {} followed by request id, not sent again; every other task is read back before it writes",
                count(u64::from(*tasks), "task", "tasks"),
                match following {
                    1 => "1 interrupted command is".to_string(),
                    n => format!("{n} interrupted commands are"),
                }
            ),
            Notice::Started { run_id, tasks, dir } => {
                write!(
                    f,
                    "run {run_id}: {}; report in {}",
                    count(u64::from(*tasks), "task", "tasks"),
                    dir.display()
                )
            }
            Notice::RenderingNotWritten { path, error } => {
                write!(f, "warning: cannot write {}: {error}", path.display())
            }
            Notice::MetricsNotWritten { path, error } => {
                write!(f, "warning: cannot write metrics to {}: {error}", path.display())
            }
            Notice::MockStarted {
                base_url,
                groups,
                devices_per_group,
            } => write!(
                f,
                "mock Esper at {base_url} ({groups} store groups x {devices_per_group} devices; server limit 30 req/s, 2% 5xx, 2% commit-then-fail)"
            ),
            Notice::NothingToContinue { job } => write!(
                f,
                "no unfinished run of `{job}` on this server to resume; starting a new run"
            ),
            Notice::DeadlineMayPass { worst, deadline } => write!(
                f,
                "warning: if every command wait runs to its timeout the run needs {}, more than the deadline of {}; what is left then stops as resumable (exit 4)",
                humantime::format_duration(*worst),
                humantime::format_duration(*deadline)
            ),
            Notice::NotificationFailed { target, failure } => write!(
                f,
                "warning: {target} was not notified: {failure} (the run's exit code is unchanged)"
            ),
            Notice::Stopping => f.write_str(
                "stopping: finishing in-flight requests (signal again to stop at once)",
            ),
            Notice::StoppedAtOnce => f.write_str("stopped at once"),
        }
    }
}

/// Where notices go: a callback, shared by everything a run spawns.
#[derive(Clone)]
pub struct Notices(Arc<dyn Fn(&Notice) + Send + Sync>);

impl Notices {
    /// Drops every notice.
    pub fn none() -> Notices {
        Notices(Arc::new(|_| {}))
    }

    pub fn new(f: impl Fn(&Notice) + Send + Sync + 'static) -> Notices {
        Notices(Arc::new(f))
    }

    pub fn send(&self, n: Notice) {
        (self.0)(&n)
    }
}

impl fmt::Debug for Notices {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Notices(..)")
    }
}
