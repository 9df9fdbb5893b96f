//! The settings of one run or plan: where the work comes from ([`Source`]), how to reach
//! Esper ([`ConnectionSettings`]), how to pace and poll ([`Pacing`]) and what to show and
//! write besides the run directory ([`Output`]).
//!
//! Settings are plain data with named constructors that document every choice they make;
//! nothing here implements `Default`, so a caller never inherits a pause, a seed or a
//! timeout it did not see. This is also the one place a [`GovernorConfig`] is built
//! ([`governor_config`]), so the CLI, the demo, the tests and the benchmark pace requests
//! with the same formula and differ only in the knobs they pass. Resolving the connection
//! and running belong to the parent module.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::context::Chosen;
use crate::esper::adapter::PollSettings;
use crate::esper::{ApiKey, ClientOptions};
use crate::exec::GovernorConfig;
use crate::job::{Job, Limits, RetrySettings};
use crate::plan::Plan;

use super::RunId;
use super::notice::Notices;
use super::notify::NotifySettings;

/// Where a run's tasks come from.
#[derive(Debug)]
pub enum Source {
    /// A validated job: its targets are resolved and compiled into a plan when the run
    /// starts (after the lock is taken).
    Job(Box<Job>),
    /// A plan saved by `plan --out` (see [`super::read_plan`]), run unchanged.
    Plan(Box<Plan>),
    /// An earlier run in the same state directory: its frozen plan, keeping the tasks its
    /// journal records as succeeded and reading every other one back before it writes.
    Resume(RunId),
    /// A job, continuing its latest unfinished run when there is one: `run JOB --resume`.
    /// With `run` set, that run (which must be of this job); else the newest run of this
    /// job on this server and enterprise that did not finish (killed, interrupted, past
    /// its deadline). With none, a new run starts: one cron line for "finish last night's
    /// run if it was cut short, else start".
    Continue { job: Box<Job>, run: Option<RunId> },
}

/// Environment lookups (`ESPER_*`, `XDG_STATE_HOME`, a job's `${VAR}`s), injectable so tests
/// and the demo never depend on the process environment.
#[derive(Clone)]
pub struct Env(Arc<Lookup>);

type Lookup = dyn Fn(&str) -> Option<String> + Send + Sync;

impl Env {
    /// The process environment.
    pub fn process() -> Env {
        Env(Arc::new(|name| std::env::var(name).ok()))
    }

    /// No variables at all.
    pub fn empty() -> Env {
        Env(Arc::new(|_| None))
    }

    pub fn from_fn(f: impl Fn(&str) -> Option<String> + Send + Sync + 'static) -> Env {
        Env(Arc::new(f))
    }

    pub fn get(&self, name: &str) -> Option<String> {
        (self.0)(name)
    }
}

impl std::fmt::Debug for Env {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Env(..)")
    }
}

/// An API key given outside the job file.
#[derive(Clone)]
pub enum KeyOverride {
    /// Read from this file (trimmed), like `--api-key-file`.
    File(PathBuf),
    /// This key.
    Key(ApiKey),
}

impl std::fmt::Debug for KeyOverride {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            KeyOverride::File(p) => f.debug_tuple("File").field(p).finish(),
            KeyOverride::Key(_) => f.write_str("Key(..)"),
        }
    }
}

/// How to reach Esper. Each value is looked up in order: these overrides, then a saved
/// plan's server, then the job's `esper:` block, then the chosen [`context`](Self::context),
/// then `ESPER_BASE_URL` / `ESPER_TENANT` / `ESPER_ENTERPRISE_ID` / `ESPER_API_KEY` from
/// [`ConnectionSettings::env`] (the parent module's `connect::resolve` has the details).
#[derive(Clone, Debug)]
pub struct ConnectionSettings {
    pub base_url: Option<String>,
    /// A tenant name, for `https://{tenant}-api.esper.cloud/api`; `base_url` wins.
    pub tenant: Option<String>,
    pub enterprise_id: Option<String>,
    pub api_key: Option<KeyOverride>,
    /// The context `--context`, `ESPER_BULK_CONTEXT` or `default_context` chose.
    pub context: Option<Chosen>,
    pub client: ClientOptions,
    pub env: Env,
}

impl ConnectionSettings {
    /// No overrides: the job, the plan or the process environment say where to go; the
    /// client's transport defaults (10 s connect, 60 s per request, 600 s per upload).
    pub fn from_env() -> ConnectionSettings {
        ConnectionSettings {
            base_url: None,
            tenant: None,
            enterprise_id: None,
            api_key: None,
            context: None,
            client: ClientOptions::default(),
            env: Env::process(),
        }
    }

    /// Exactly this server and key whatever the job or plan says (the mock in the demo and
    /// tests); no environment lookups; the client's transport defaults.
    pub fn direct(base_url: &str, enterprise_id: &str, key: ApiKey) -> ConnectionSettings {
        ConnectionSettings {
            base_url: Some(base_url.to_string()),
            tenant: None,
            enterprise_id: Some(enterprise_id.to_string()),
            api_key: Some(KeyOverride::Key(key)),
            context: None,
            client: ClientOptions::default(),
            env: Env::empty(),
        }
    }
}

/// The pacing and polling knobs that are not in a job file.
#[derive(Clone, Debug)]
pub struct Pacing {
    /// The shortest run-wide pause after a 429 without `Retry-After`; the job's
    /// `retry.initial_delay` is used when it is longer. Doubles up to `retry.max_delay`.
    pub min_pause: Duration,
    /// Added to every governor wait so waiting workers do not wake together.
    pub jitter: Duration,
    /// How command tracking polls.
    pub poll: PollSettings,
    /// How long in-flight tasks may finish after a stop. A deadline stops dispatching
    /// this much earlier (at most a tenth of the deadline) so the drain fits inside it.
    pub drain: Duration,
    /// Seed of the governor's and the backoff's jitter; `None` draws one per run.
    pub seed: Option<u64>,
}

impl Pacing {
    /// Against a real tenant: 100 ms minimum pause, 20 ms jitter, polls from 2 s up to
    /// 30 s, 30 s of drain, a fresh seed per run.
    pub fn production() -> Pacing {
        Pacing {
            min_pause: Duration::from_millis(100),
            jitter: Duration::from_millis(20),
            poll: PollSettings::default(),
            drain: Duration::from_secs(30),
            seed: None,
        }
    }
}

/// The one formula from a plan's limits and retry settings to the governor's settings.
pub fn governor_config(
    limits: &Limits,
    retry: &RetrySettings,
    pacing: &Pacing,
    seed: u64,
) -> GovernorConfig {
    GovernorConfig {
        rate: limits.rate,
        device_list_rate: limits.device_list_rate(),
        batch: limits.batch,
        max_in_flight: limits.max_in_flight,
        base_pause: retry.initial_delay.max(pacing.min_pause),
        max_pause: retry.max_delay,
        max_retry_after: retry.max_retry_after,
        jitter: pacing.jitter,
        seed,
    }
}

/// What a run shows and writes besides `plan.json`, `journal.jsonl` and `report.json`,
/// which every run writes.
#[derive(Clone, Debug)]
pub struct Output {
    /// Draw progress bars; they are only ever drawn when stdout is a terminal.
    pub progress: bool,
    /// Also write `report.md`, `report.xml`, `results.csv` and `report.html`.
    pub renderings: bool,
    /// Write Prometheus metrics of the run here (atomically).
    pub metrics_file: Option<PathBuf>,
    /// Where the run's notices (warnings, "resuming …") go.
    pub notices: Notices,
}

impl Output {
    /// Every report file, no bars, notices dropped: for embedding and tests.
    pub fn quiet() -> Output {
        Output {
            progress: false,
            renderings: true,
            metrics_file: None,
            notices: Notices::none(),
        }
    }
}

/// One run: [`super::run()`]'s only argument.
#[derive(Debug)]
pub struct RunConfig {
    pub source: Source,
    pub connection: ConnectionSettings,
    /// Holds `runs/<run id>/` and `locks/`.
    pub state_dir: PathBuf,
    /// Stop dispatching after this long; overrides the job's or plan's deadline.
    pub deadline: Option<Duration>,
    /// When another run of the job holds the lock, wait up to this long for it instead of
    /// failing with [`super::RunError::Lock`].
    pub wait_lock: Option<Duration>,
    pub pacing: Pacing,
    pub output: Output,
    /// A saved plan whose snapshot of live state is older than this has it read again
    /// before the run acts on it (`--max-plan-age`).
    pub max_plan_age: Duration,
    /// `--limit`: narrow a job's targets to what these patterns match (group paths or
    /// globs, device names or serials, `@file` for one a line). Refused with a saved plan
    /// or a resumed run, whose targets are frozen.
    pub limit: Vec<String>,
    /// The `--notify` webhooks, and how long each webhook may take.
    pub notify: NotifySettings,
    /// `--coordinator`: share the tenant's rate budget and the run lock with other
    /// processes through Redis (the lock is then a Redis lease, not the file lock).
    pub coordinator: Option<super::CoordinatorSettings>,
}

/// How old a plan's snapshot of live state may be before a run reads it again.
pub const DEFAULT_MAX_PLAN_AGE: Duration = Duration::from_secs(15 * 60);

impl RunConfig {
    /// A run with the job's or plan's own deadline, no waiting for a held lock,
    /// [`Pacing::production`] and [`Output::quiet`].
    pub fn new(source: Source, connection: ConnectionSettings, state_dir: PathBuf) -> RunConfig {
        RunConfig {
            source,
            connection,
            state_dir,
            deadline: None,
            wait_lock: None,
            pacing: Pacing::production(),
            output: Output::quiet(),
            max_plan_age: DEFAULT_MAX_PLAN_AGE,
            limit: Vec::new(),
            notify: NotifySettings::plan_only(),
            coordinator: None,
        }
    }
}

/// Planning a job without running it: [`super::plan()`]'s only argument.
#[derive(Debug)]
pub struct PlanConfig {
    pub job: Job,
    pub connection: ConnectionSettings,
    /// Paces the read-only planning requests like a run of the job would be paced.
    pub pacing: Pacing,
    /// Where planning warnings (e.g. CSV serials not in the fleet) go.
    pub notices: Notices,
    /// `--limit`, as for a run ([`RunConfig::limit`]).
    pub limit: Vec<String>,
}

impl PlanConfig {
    /// [`Pacing::production`] with a fixed seed (planning has no jitter worth varying);
    /// warnings dropped.
    pub fn new(job: Job, connection: ConnectionSettings) -> PlanConfig {
        PlanConfig {
            job,
            connection,
            pacing: Pacing {
                seed: Some(0),
                ..Pacing::production()
            },
            notices: Notices::none(),
            limit: Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_governor_pauses_at_least_the_pacing_minimum_and_at_most_the_retry_maximum() {
        let retry = RetrySettings {
            initial_delay: Duration::from_millis(20),
            ..RetrySettings::default()
        };
        let pacing = Pacing::production();
        let g = governor_config(&Limits::default(), &retry, &pacing, 5);
        assert_eq!(g.base_pause, pacing.min_pause);
        assert_eq!(g.max_pause, retry.max_delay);
        assert_eq!((g.rate, g.seed, g.jitter), (20.0, 5, pacing.jitter));
    }
}
