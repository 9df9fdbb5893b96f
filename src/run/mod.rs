//! Running a job end to end, as a library: everything between "the settings are known" and
//! "here is the exit code", for the command line, the demo, the tests and the benchmark.
//!
//! [`run`] takes one [`RunConfig`] and a cancellation token and does, in this order: take
//! the job's lock (before anything reads the API, so an overlapping cron slot costs
//! nothing), resolve the connection, build the governor and throttled client, plan the job
//! (or take the saved or resumed plan; a run that read nothing yet makes one read to learn
//! that the key and the enterprise work, exit 5 when not), write `runs/<id>/plan.json`, run the plan while
//! journalling every task, then write the report files and metrics. It returns a
//! [`RunResult`] with the in-memory [`Report`]. [`plan()`] is the same up to planning, for
//! `esper-bulk plan`.
//!
//! It never prints and never installs signal handlers: notices go to the caller's
//! [`Notices`], cancellation comes in as a token ([`cancel_on_signals`] is the binary's
//! helper). The state directory's run history (listing, finding and pruning runs) is
//! `history.rs`'s. Parsing flags is [`crate::cli`]'s; what happens to each task is
//! [`crate::exec`]'s; what a report says is [`crate::report`]'s.

mod adhoc;
mod config;
mod connect;
pub mod demo;
mod dir;
mod error;
mod history;
mod load;
mod notice;
mod notify;
mod rebuild;
mod resume;
mod shared;
mod signal;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::esper::Client;
use crate::esper::adapter::{EsperDispatch, PlanReads};
use crate::exec::{self, Event, Governor, Outcome, RunOptions};
use crate::job::Job;
use crate::journal::{self, Entry, Journal, JournalError};
use crate::plan::{self, InventoryError, Plan, PlanError, Server};
use crate::progress::Progress;
use crate::report::Report;
pub use crate::report::RunOutcome;

pub use adhoc::{AdhocExport, export_job_text, load_export};
pub use config::{
    ConnectionSettings, Env, KeyOverride, Output, Pacing, PlanConfig, RunConfig, Source,
    governor_config,
};
pub use dir::{RunId, latest_run, read_plan, run_dir, sealed_plan, state_dir, unlock, write_plan};
pub use error::RunError;
pub use history::{Kept, PrunePolicy, Pruned, RunSummary, find_run, list_runs, prune};
pub use load::{LoadedJob, Validated, Validation, load_job, load_job_text, validate_paths};
pub use notice::{Notice, Notices};
pub use notify::{NOTIFY_TIMEOUT, NotifySettings, notify_on};
pub use rebuild::{Format, rebuild, rebuild_report, write_report};
pub use shared::{CoordinatorSettings, coordinator_status, resolve as resolve_coordinator};
pub use signal::cancel_on_signals;

/// What a run left behind.
#[derive(Debug)]
pub struct RunResult {
    pub run_id: RunId,
    pub run_dir: PathBuf,
    /// `report.json` in the run directory.
    pub report_path: PathBuf,
    pub report: Report,
    pub plan: Arc<Plan>,
    pub outcome: RunOutcome,
    /// The documented exit code ([`crate::exit`]).
    pub exit_code: u8,
    /// Why the journal stopped recording, if it did. The run stopped dispatching then, so
    /// it is incomplete and must be resumed once the cause (usually a full disk) is fixed.
    pub journal_error: Option<JournalError>,
    /// Why `report.json` could not be written, if it could not (usually a full disk): the
    /// run is incomplete (exit 4), and `esper-bulk report RUN_DIR` rebuilds its reports.
    pub report_error: Option<RunError>,
}

/// Resolves `cfg.job`'s targets (read-only, paced like a run) and compiles its plan.
pub async fn plan(cfg: PlanConfig) -> Result<Plan, RunError> {
    let conn = connect::resolve(&cfg.connection, Some(&cfg.job.esper), None)?;
    let seed = cfg.pacing.seed.unwrap_or_else(|| fastrand::u64(..));
    let (client, _) = connect::client(
        conn,
        &cfg.connection,
        &cfg.job.limits,
        &cfg.job.retry,
        &cfg.pacing,
        seed,
        None,
    )?;
    // The deadline bounds runs; a plan of its own is bounded by the retry settings, and
    // whether its estimate fits the deadline is `check_deadline`'s question.
    let limit = load::read_limit(&cfg.limit)?;
    make_plan(&cfg.job, &client, &cfg.notices, None, &limit).await
}

/// Refuses a plan whose best case does not fit its deadline (`plan` checks this so a job
/// that cannot finish is fixed before it is scheduled). When only the worst case (every
/// command wait running to its timeout) passes the deadline, the run may still finish, so
/// it is allowed with a [`Notice::DeadlineMayPass`].
pub fn check_deadline(p: &Plan, notices: &Notices) -> Result<(), RunError> {
    let Some(deadline) = p.deadline_ms else {
        return Ok(());
    };
    let secs = |s: f64| Duration::from_secs(s.ceil() as u64);
    if p.estimate.seconds > deadline.as_secs_f64() {
        return Err(RunError::DeadlineTooShort {
            needs: secs(p.estimate.seconds),
            rate: p.limits.rate,
            deadline,
        });
    }
    if p.estimate.max_seconds > deadline.as_secs_f64() {
        notices.send(Notice::DeadlineMayPass {
            worst: secs(p.estimate.max_seconds),
            deadline,
        });
    }
    Ok(())
}

/// Resolves and compiles `job`. Its reads are retried as the job's `retry:` says, and the
/// whole of planning must fit in `deadline`: a server that keeps failing or never ends a
/// listing cannot hold a run past it.
async fn make_plan(
    job: &Job,
    client: &Client,
    notices: &Notices,
    deadline: Option<Duration>,
    limit: &[String],
) -> Result<Plan, RunError> {
    let server = server_of(client.connection());
    let err = |error| match error {
        PlanError::Inventory(InventoryError::Access(error)) => RunError::Access {
            base_url: client.connection().base_url.clone(),
            error,
        },
        error => RunError::Plan {
            job: job.source.clone(),
            error,
        },
    };
    // A paced listing of a large fleet can take minutes: said before it starts.
    let told = notices.clone();
    let reads = PlanReads::new(client, &job.retry).with_listing_note(
        job.limits.device_list_rate(),
        crate::esper::adapter::ListingNote(Arc::new(move |n| told.send(Notice::PlanNote(n)))),
    );
    let read_at = jiff::Timestamp::now();
    let resolving = plan::resolve(job, &reads);
    let resolving = async {
        let mut resolved = resolving.await?;
        let narrowed = plan::limit::apply(&mut resolved, limit, &reads).await?;
        resolved.warnings.extend(narrowed);
        Ok(resolved)
    };
    let resolved =
        match deadline {
            None => resolving.await,
            Some(d) => tokio::time::timeout(d, resolving).await.map_err(|_| {
                RunError::PlanningDeadline {
                    job: job.source.clone(),
                    deadline: d,
                }
            })?,
        }
        .map_err(err)?;
    for n in &resolved.notes {
        notices.send(Notice::PlanNote(n.clone()));
    }
    for w in &resolved.warnings {
        notices.send(Notice::PlanWarning(w.clone()));
    }
    let snapshot = resolved.rules.is_some() || resolved.contents.is_some();
    let contents = resolved.contents.clone();
    let mut plan = plan::compile_owned(job, resolved, server).map_err(err)?;
    plan.limit = limit.to_vec();
    if let Some(contents) = &contents {
        let size_of = |f: &str| std::fs::metadata(f).ok().map(|m| m.len());
        plan::diff::decide_contents(&mut plan, contents, &size_of);
        plan.reestimate();
    }
    if snapshot {
        plan.snapshot_at = Some(read_at.to_string());
    }
    Ok(plan)
}

/// A saved plan whose snapshot of live state is older than `max_age`, decided again
/// against a fresh bulk read: the run acts on what is there now, and the tasks whose
/// action changed since the plan are reported ("drifted since plan").
async fn refresh_stale(
    plan: Plan,
    client: &Client,
    max_age: Duration,
    notices: &Notices,
) -> Result<Plan, RunError> {
    let Some(at) = plan
        .snapshot_at
        .as_deref()
        .and_then(|t| t.parse::<jiff::Timestamp>().ok())
    else {
        return Ok(plan);
    };
    let now = jiff::Timestamp::now();
    let age = Duration::try_from(now.duration_since(at)).unwrap_or_default();
    if age <= max_age {
        return Ok(plan);
    }
    let reads = PlanReads::new(client, &plan.retry);
    let rules = plan::Inventory::alarm_rules(&reads)
        .await
        .map_err(|error| RunError::Plan {
            job: plan.source.clone(),
            error: error.into(),
        })?;
    let Some(rules) = rules else {
        return Ok(plan);
    };
    let mut fresh = plan.clone();
    plan::diff::decide(&mut fresh, &rules);
    fresh.snapshot_at = Some(now.to_string());
    let drifted = plan::diff::drift(&plan, &fresh)
        .into_iter()
        .map(|(id, a, b)| {
            let label = plan.task(id).map_or_else(|| id.to_string(), |t| t.label());
            (format!("{id} {label}"), a, b)
        })
        .collect();
    notices.send(Notice::Drifted { age, drifted });
    Ok(fresh)
}

/// Before the first write of a run that has read nothing yet: stops it (exit 5) when the
/// API cannot be reached or refuses the key or the enterprise, instead of letting every
/// task fail the same way.
async fn check_access(
    client: &Client,
    retry: &crate::job::RetrySettings,
    cancel: &CancellationToken,
) -> Result<(), RunError> {
    tokio::select! {
        r = crate::esper::adapter::check_access(client, retry) => r.map_err(|error| RunError::Access {
            base_url: client.connection().base_url.clone(),
            error,
        }),
        _ = cancel.cancelled() => Err(RunError::Interrupted),
    }
}

/// Creates `runs/<id>/` with its `plan.json` in one step: the directory is staged under
/// `<state>/tmp/` and renamed into place, so a run killed at any moment leaves either no
/// run directory or one that can be resumed, never an empty one.
fn create_run_dir(dir: &std::path::Path, plan: &Plan) -> Result<(), RunError> {
    let create = |path: &std::path::Path| {
        std::fs::create_dir_all(path).map_err(|source| RunError::CreateDir {
            path: path.to_path_buf(),
            source,
        })
    };
    let runs = dir.parent().unwrap_or(dir);
    let state = runs.parent().unwrap_or(runs);
    let staging = state.join("tmp").join(dir.file_name().unwrap_or_default());
    create(&staging)?;
    create(runs)?;
    write_plan(&staging.join("plan.json"), plan)?;
    std::fs::rename(&staging, dir).map_err(|source| RunError::CreateDir {
        path: dir.to_path_buf(),
        source,
    })
}

/// The server and enterprise a connection points at, as plans record them.
fn server_of(conn: &crate::esper::Connection) -> Server {
    Server {
        base_url: conn.base_url.clone(),
        enterprise_id: conn.enterprise_id.clone(),
    }
}

/// The run `run JOB --resume [RUN_ID]` continues: the named one (which must be of this
/// job), else the job's newest unfinished run on the server it would connect to.
fn continued_run(
    connection: &ConnectionSettings,
    state_dir: &std::path::Path,
    job: &Job,
    wanted: Option<RunId>,
) -> Result<Option<RunId>, RunError> {
    match wanted {
        Some(id) => {
            // Warnings about the plan come when the run is opened, not twice.
            let plan = dir::run_plan(&dir::existing_run(state_dir, &id)?, &Notices::none())?;
            if plan.job != job.name {
                return Err(RunError::NotThisJob {
                    run_id: id.to_string(),
                    run_job: plan.job,
                    job: job.name.clone(),
                });
            }
            Ok(Some(id))
        }
        None => {
            let conn = connect::resolve(connection, Some(&job.esper), None)?;
            Ok(dir::latest_unfinished(
                state_dir,
                &job.name,
                &server_of(&conn),
            ))
        }
    }
}

/// Runs `cfg.source` to the end (or until `cancel`), writing the run directory.
///
/// `Err` means the run could not start or its record could not be written; task failures,
/// deadlines and interruptions are in the `Ok` result's outcome and exit code.
pub async fn run(cfg: RunConfig, cancel: CancellationToken) -> Result<RunResult, RunError> {
    let RunConfig {
        source,
        connection,
        state_dir,
        deadline,
        wait_lock,
        pacing,
        output,
        max_plan_age,
        limit,
        notify,
        coordinator,
    } = cfg;
    // A lost lease stops this run like a signal would, without touching the caller's token.
    let cancel = cancel.child_token();
    let notices = &output.notices;
    // A saved plan's or a resumed run's targets are frozen: narrowing them would make the
    // run differ from what was reviewed (or from what its journal records).
    if !limit.is_empty() {
        match &source {
            Source::Job(_) => {}
            Source::Plan(_) => return Err(RunError::LimitFrozen { with: "--plan" }),
            Source::Resume(_) | Source::Continue { .. } => {
                return Err(RunError::LimitFrozen { with: "--resume" });
            }
        }
    }
    let limit = load::read_limit(&limit)?;
    let job_coordinator = match &source {
        Source::Job(j) | Source::Continue { job: j, .. } => j.coordinator.as_deref(),
        Source::Plan(_) | Source::Resume(_) => None,
    };
    let coordinator = shared::resolve(coordinator, job_coordinator, &connection.env)?;
    let stop = || cancel.is_cancelled();
    let seed = pacing.seed.unwrap_or_else(|| fastrand::u64(..));
    let locking = Locking {
        state_dir: &state_dir,
        coordinator: coordinator.as_ref(),
        wait: wait_lock,
        stop: &stop,
        notices,
    };
    let source = match source {
        Source::Continue { job, run: wanted } => {
            match continued_run(&connection, &state_dir, &job, wanted)? {
                Some(id) => Source::Resume(id),
                None => {
                    notices.send(Notice::NothingToContinue {
                        job: job.name.clone(),
                    });
                    Source::Job(job)
                }
            }
        }
        other => other,
    };
    // Where to connect is settled before the lock (no request is made for it), so the lock
    // covers this job on this server and enterprise; the API is read only once it is held.
    let ready = match source {
        Source::Resume(id) => {
            let r = resume::open(&state_dir, &id, notices)?;
            let conn = connect::resolve(&connection, None, Some(&r.plan.server))?;
            let (lock, shared) = locking
                .take(&r.plan.job, &r.plan.server, &id, &r.plan.limits)
                .await?;
            let (client, gov) = connect::client(
                conn,
                &connection,
                &r.plan.limits,
                &r.plan.retry,
                &pacing,
                seed,
                shared.as_ref().map(|s| s.budget(&r.plan.limits, notices)),
            )?;
            check_access(&client, &r.plan.retry, &cancel).await?;
            Ready {
                id,
                dir: r.dir,
                plan: r.plan,
                prior: Some(r.prior),
                client,
                gov,
                planned_for: Duration::ZERO,
                _lock: lock,
                shared,
            }
        }
        Source::Continue { .. } => unreachable!("settled above into Resume or Job"),
        Source::Job(job) => {
            let id = RunId::new(&job.name);
            let conn = connect::resolve(&connection, Some(&job.esper), None)?;
            let server = server_of(&conn);
            let (lock, shared) = locking.take(&job.name, &server, &id, &job.limits).await?;
            let budget = shared.as_ref().map(|s| s.budget(&job.limits, notices));
            let (client, gov) = connect::client(
                conn,
                &connection,
                &job.limits,
                &job.retry,
                &pacing,
                seed,
                budget,
            )?;
            // Planning only reads, so a cancelled run stops here with nothing to record.
            let planning = tokio::time::Instant::now();
            let plan = tokio::select! {
                p = make_plan(&job, &client, notices, deadline.or(job.deadline), &limit) => p?,
                _ = cancel.cancelled() => return Err(RunError::Interrupted),
            };
            if gov.stats().requests == 0 {
                check_access(&client, &job.retry, &cancel).await?;
            }
            Ready {
                dir: dir::run_dir(&state_dir, &id),
                id,
                plan,
                prior: None,
                client,
                gov,
                planned_for: planning.elapsed(),
                _lock: lock,
                shared,
            }
        }
        Source::Plan(plan) => {
            let id = RunId::new(&plan.job);
            let conn = connect::resolve(&connection, None, Some(&plan.server))?;
            let (lock, shared) = locking
                .take(&plan.job, &plan.server, &id, &plan.limits)
                .await?;
            let budget = shared.as_ref().map(|s| s.budget(&plan.limits, notices));
            let (client, gov) = connect::client(
                conn,
                &connection,
                &plan.limits,
                &plan.retry,
                &pacing,
                seed,
                budget,
            )?;
            check_access(&client, &plan.retry, &cancel).await?;
            let plan = tokio::select! {
                p = refresh_stale(*plan, &client, max_plan_age, notices) => p?,
                _ = cancel.cancelled() => return Err(RunError::Interrupted),
            };
            Ready {
                dir: dir::run_dir(&state_dir, &id),
                id,
                plan,
                prior: None,
                client,
                gov,
                planned_for: Duration::ZERO,
                _lock: lock,
                shared,
            }
        }
    };
    // The deadline counts from the start of the run, planning included.
    let deadline = deadline
        .or(ready.plan.deadline_ms)
        .map(|d| d.saturating_sub(ready.planned_for));
    let finish = Finish {
        output: &output,
        notify: &notify,
        env: &connection.env,
        state_dir: &state_dir,
    };
    let mut ready = ready;
    let shared = ready.shared.take();
    let lost = shared.as_ref().map(|s| s.stop_on_loss(&cancel));
    let result = ready.execute(deadline, &pacing, seed, finish, cancel).await;
    if let Some(s) = shared {
        s.release().await;
    }
    let mut result = result?;
    if lost.is_some_and(|l| l.is_cancelled()) {
        // Another process holds the job now: this run stopped dispatching, and says so
        // with the lock's exit code rather than an interruption's.
        result.exit_code = crate::exit::LOCKED;
    }
    Ok(result)
}

/// How a run takes its lock: the file lock in the state directory, or with a
/// coordinator the Redis lease (which then also shares the budget).
struct Locking<'a> {
    state_dir: &'a std::path::Path,
    coordinator: Option<&'a CoordinatorSettings>,
    wait: Option<Duration>,
    stop: &'a dyn Fn() -> bool,
    notices: &'a Notices,
}

impl Locking<'_> {
    async fn take(
        &self,
        job: &str,
        server: &Server,
        id: &RunId,
        limits: &crate::job::Limits,
    ) -> Result<(Option<crate::lock::RunLock>, Option<shared::SharedRun>), RunError> {
        match self.coordinator {
            None => Ok((
                Some(dir::take_lock(
                    self.state_dir,
                    job,
                    server,
                    id,
                    self.wait,
                    self.stop,
                    self.notices,
                )?),
                None,
            )),
            Some(c) => Ok((
                None,
                Some(
                    shared::SharedRun::take(
                        c,
                        shared::holder(job, server, id),
                        limits.rate,
                        self.wait,
                        self.stop,
                        self.notices,
                    )
                    .await?,
                ),
            )),
        }
    }
}

/// What a run needs at its end, besides its plan: where its output goes, the extra
/// webhooks and the environment their URLs are rendered from, and the state directory
/// (where a success is recorded for `since: last_run`).
struct Finish<'a> {
    output: &'a Output,
    notify: &'a NotifySettings,
    env: &'a Env,
    state_dir: &'a std::path::Path,
}

/// A run that holds its lock and has its client and plan.
struct Ready {
    id: RunId,
    dir: PathBuf,
    plan: Plan,
    /// `Some` when resuming: those tasks are kept, the rest are read back first.
    prior: Option<BTreeMap<u32, Outcome>>,
    client: Client,
    gov: Arc<Governor>,
    /// How long planning took (a job's targets read at the start of this run).
    planned_for: Duration,
    /// Held until the report is written; dropping it releases the lock. `None` with a
    /// coordinator, whose lease is `shared`.
    _lock: Option<crate::lock::RunLock>,
    /// The coordinator's lease and connection, released after the report is written.
    shared: Option<shared::SharedRun>,
}

impl Ready {
    async fn execute(
        self,
        deadline: Option<Duration>,
        pacing: &Pacing,
        seed: u64,
        at_end: Finish<'_>,
        cancel: CancellationToken,
    ) -> Result<RunResult, RunError> {
        let output = at_end.output;
        let state_dir = at_end.state_dir;
        let Ready {
            id,
            dir,
            plan,
            prior,
            client,
            gov,
            planned_for: _,
            _lock,
            shared: _,
        } = self;
        let notices = &output.notices;
        if dir.join("plan.json").exists() {
            write_plan(&dir.join("plan.json"), &plan)?;
        } else {
            create_run_dir(&dir, &plan)?;
        }
        let started_at = jiff::Timestamp::now();
        let plan = Arc::new(plan);
        notices.send(Notice::Started {
            run_id: id.to_string(),
            tasks: plan.task_count,
            dir: dir.clone(),
        });
        let drain = pacing.drain;
        let resumed = prior.is_some();
        let opts = RunOptions {
            deadline: deadline
                .map(|d| tokio::time::Instant::now() + d.saturating_sub(drain.min(d / 10))),
            drain,
            seed,
            prior: prior.unwrap_or_default(),
            reconcile: resumed,
        };
        // Every outcome goes to the journal; if it cannot be written (a full disk), the run
        // stops dispatching rather than doing work it cannot record.
        let mut journal = Journal::open(&dir.join("journal.jsonl"))?;
        journal.append(&Entry::Start {
            format: journal::JOURNAL_FORMAT,
            run_id: id.to_string(),
            job: plan.job.clone(),
            tasks: plan.task_count,
            at: started_at.to_string(),
            resumed,
        })?;
        let mut journal_error: Option<JournalError> = None;
        let stop = cancel.clone();
        let progress = if output.progress {
            Progress::new(&plan, gov.clone())
        } else {
            None
        };
        let step_of: BTreeMap<&str, usize> = plan
            .steps
            .iter()
            .enumerate()
            .map(|(i, s)| (s.id.as_str(), i))
            .collect();
        let progress = progress.map(Arc::new);
        let on_rows = progress.clone().map(|p| {
            let steps = step_of
                .iter()
                .map(|(k, v)| (k.to_string(), *v))
                .collect::<BTreeMap<String, usize>>();
            Arc::new(move |step: &str, rows: u64| {
                if let Some(i) = steps.get(step) {
                    p.export_rows(*i, rows);
                }
            }) as Arc<dyn Fn(&str, u64) + Send + Sync>
        });
        let exports = crate::esper::adapter::ExportEnv {
            run_dir: Some(dir.clone()),
            last_run: dir::last_success(state_dir, &plan.job, &plan.server),
            on_rows,
        };
        let dispatch = EsperDispatch::with_exports(client, pacing.poll.clone(), exports);
        let out = exec::run(plan.clone(), dispatch, opts, cancel, |event| {
            let entry = match event {
                Event::Dispatched(t) => Entry::Intent { task: t.0 },
                Event::Finished(o) => {
                    tracing::info!(task = %o.task, status = o.status.as_str(), "task finished");
                    if let Some(p) = &progress {
                        p.task_done(step_of[plan.step_of(o.task).id.as_str()], o);
                    }
                    Entry::Outcome(o.into())
                }
                Event::Replayed(o) => {
                    if let Some(p) = &progress {
                        p.task_done(step_of[plan.step_of(o.task).id.as_str()], o);
                    }
                    return;
                }
            };
            if journal_error.is_none()
                && let Err(e) = journal.append(&entry)
            {
                tracing::error!(error = %e, "cannot record the run; stopping it");
                journal_error = Some(e);
                stop.cancel();
            }
        })
        .await;
        if let Some(p) = &progress {
            p.finish();
        }
        let gov_stats = gov.stats();
        let report = Report::build(id.as_str(), &plan, &out, gov_stats.clone(), started_at);
        let mut finish = crate::journal::FinishRecord::of_run(
            started_at.to_string(),
            report.run.finished_at.clone(),
            &out,
            &gov_stats,
        );
        finish.exit_code = Some(match journal_error {
            Some(_) => crate::exit::INCOMPLETE,
            None => report.run.exit_code,
        });
        if let Err(e) = journal
            .append(&Entry::Finish(finish))
            .and_then(|_| journal.sync())
        {
            journal_error.get_or_insert(e);
        }
        // The run's history (first start, every resumption) is what its journal says, read
        // back the same way `esper-bulk report` rebuilds it, so the two always agree.
        let report = match journal_error {
            None => match crate::journal::read(&dir.join("journal.jsonl")) {
                Ok(replay) => rebuild::with_history(report, &replay),
                Err(_) => report,
            },
            Some(_) => report,
        };
        let mut report = report;
        let recorded = rebuild::record(
            &dir,
            &report,
            journal_error.is_some(),
            output.renderings,
            &crate::util::atomic_write,
            notices,
        );
        // The webhooks hear of the run once its report is on disk; what they answered is
        // added to `report.json`, and never changes how the run ended.
        let mut summary =
            crate::report::NotifySummary::of(&report, &recorded.report_path.display().to_string());
        // How the run really ended: a journal or report that could not be written makes
        // it incomplete, whatever its tasks did.
        (summary.outcome, summary.exit_code) = (recorded.outcome, recorded.exit_code);
        let sent = notify::send(&plan.notify, at_end.notify, at_end.env, &summary, notices).await;
        if !sent.is_empty() {
            report.notifications = sent;
            if recorded.report_error.is_none()
                && let Err(RunError::Write { path, source }) =
                    write_report(&dir, &report, Format::Json)
            {
                notices.send(Notice::RenderingNotWritten {
                    path,
                    error: source.to_string(),
                });
            }
        }
        if recorded.exit_code == crate::exit::OK
            && let Err(e) = dir::record_success(state_dir, &plan.job, &plan.server, started_at)
        {
            // Only `since: last_run` reads it: the next such export reads further back.
            tracing::warn!(error = %e, "cannot record the run's success in the state directory");
        }
        if let Some(p) = &output.metrics_file
            && let Err(e) = crate::util::atomic_write(p, report.prometheus().as_bytes())
        {
            notices.send(Notice::MetricsNotWritten {
                path: p.clone(),
                error: e.to_string(),
            });
        }
        Ok(RunResult {
            run_id: id,
            run_dir: dir,
            report_path: recorded.report_path,
            report,
            plan,
            outcome: recorded.outcome,
            exit_code: recorded.exit_code,
            journal_error,
            report_error: recorded.report_error,
        })
    }
}
