//! A run with a coordinator (`--coordinator redis://…`): its lock is a Redis lease instead
//! of the state directory's file lock, and its governor draws every permit from the
//! tenant's shared budget.
//!
//! Decisions made here: Redis unreachable when the run starts refuses the run (exit 75,
//! nothing read or sent: without the lease it cannot know it is alone); unreachable later
//! only degrades pacing (the budget's fallback rate) and is told once as a notice; a lease
//! found taken by someone else stops dispatching and ends the run with exit 75. The lock is
//! taken before anything reads the API, as with the file lock. What Redis holds and how is
//! [`crate::coord`]'s.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::{Notice, Notices, RunError, RunId};
use crate::coord::{Budget, BudgetEvent, Coordinator, Lease, LeaseEvent, LeaseSettings, Taken};
use crate::exec::SharedBudget;
use crate::job::Limits;
use crate::lock::{self, Holder, LockError};
use crate::plan::Server;

/// `--coordinator` and what goes with it.
#[derive(Debug, Clone)]
pub struct CoordinatorSettings {
    /// `redis://[:password@]host[:port][/db]`.
    pub url: String,
    /// How many processes usually share the tenant: while Redis is unreachable each one
    /// paces at `rate / expected_processes` (`--expected-processes`); `None` takes the
    /// job's `limits.expected_processes`, else 2.
    pub expected_processes: Option<u32>,
    pub lease: LeaseSettings,
    /// Whether `url` came from `ESPER_BULK_REDIS_URL` (a job's `coordinator:` outranks the
    /// environment, as the job's `esper:` block does) or is empty because only
    /// `--expected-processes` was given.
    pub from_env: bool,
}

impl CoordinatorSettings {
    /// `url`, the job's expected processes, the standard lease (15 s, renewed every 3 s).
    pub fn new(url: &str) -> CoordinatorSettings {
        CoordinatorSettings {
            url: url.to_string(),
            expected_processes: None,
            lease: LeaseSettings::standard(),
            from_env: false,
        }
    }
}

/// The coordinator a run uses: `--coordinator`, else the job's `coordinator:` (its
/// `${NAME}`s rendered now, from `env`), else `ESPER_BULK_REDIS_URL`.
pub fn resolve(
    given: Option<CoordinatorSettings>,
    job: Option<&str>,
    env: &super::config::Env,
) -> Result<Option<CoordinatorSettings>, RunError> {
    let named = given.as_ref().is_some_and(|g| !g.url.is_empty());
    match (given, job) {
        (Some(g), _) if named && !g.from_env => Ok(Some(g)),
        (g, Some(written)) => {
            let url = crate::job::template::subst_env(written, &|n| env.get(n))
                .map_err(|e| RunError::CoordinatorFromJob(e.to_string()))?;
            let mut s = CoordinatorSettings::new(&url);
            if let Some(g) = g {
                s.expected_processes = g.expected_processes;
                s.lease = g.lease;
            }
            Ok(Some(s))
        }
        (Some(g), None) if named => Ok(Some(g)),
        _ => Ok(None),
    }
}

/// This process as a lock holder of `job` on `server`.
pub(super) fn holder(job: &str, server: &Server, id: &RunId) -> Holder {
    Holder {
        pid: std::process::id(),
        host: lock::hostname(),
        started: jiff::Timestamp::now().to_string(),
        run_id: id.to_string(),
        job: job.to_string(),
        server: server.base_url.clone(),
        enterprise: server.enterprise_id.clone(),
    }
}

/// A held shared lock and the connection it came from.
pub(super) struct SharedRun {
    coord: Coordinator,
    lease: Lease,
    expected_processes: Option<u32>,
    /// Cancelled when the run releases the lease: the loss watcher ends with it.
    done: CancellationToken,
}

impl SharedRun {
    /// Connects and takes the lease of `job` on `server`, waiting up to `wait` for another
    /// holder to finish (asking `stop` between tries).
    pub(super) async fn take(
        settings: &CoordinatorSettings,
        holder: Holder,
        rate: f64,
        wait: Option<Duration>,
        stop: &dyn Fn() -> bool,
        notices: &Notices,
    ) -> Result<SharedRun, RunError> {
        let coord = Coordinator::connect(
            &settings.url,
            &crate::coord::tenant_of(&holder.server),
            &holder.enterprise,
        )
        .await?;
        let job = holder.job.clone();
        let until = wait.map(|w| tokio::time::Instant::now() + w);
        loop {
            let sink = notices.clone();
            let taken = Lease::acquire(&coord, &holder, rate, settings.lease, move |e| match e {
                LeaseEvent::Lost { holder } => sink.send(Notice::LeaseLost { holder }),
            })
            .await?;
            match taken {
                Taken::Ours(lease) => {
                    return Ok(SharedRun {
                        coord,
                        lease,
                        expected_processes: settings.expected_processes,
                        done: CancellationToken::new(),
                    });
                }
                Taken::Held(h) => {
                    if stop() {
                        return Err(RunError::Interrupted);
                    }
                    if until.is_some_and(|u| tokio::time::Instant::now() < u) {
                        tokio::time::sleep(Duration::from_millis(500)).await;
                        continue;
                    }
                    return Err(RunError::Lock(match h {
                        Some(h) => LockError::Held {
                            job: job.clone(),
                            holder: Box::new(h),
                        },
                        None => LockError::HeldUnknown { job: job.clone() },
                    }));
                }
            }
        }
    }

    /// The tenant's shared budget at `limits.rate`, with the same burst as the local
    /// ceiling; its degradation and recovery go to `notices`.
    pub(super) fn budget(&self, limits: &Limits, notices: &Notices) -> Arc<dyn SharedBudget> {
        let rate = limits.rate;
        let burst = (rate / 10.0).clamp(1.0, 1000.0) as u32;
        let expected = self
            .expected_processes
            .or(limits.expected_processes)
            .unwrap_or(2)
            .max(1);
        let fallback = rate / f64::from(expected);
        let sink = notices.clone();
        Arc::new(Budget::new(
            self.coord.clone(),
            rate,
            burst,
            fallback,
            move |e| match e {
                BudgetEvent::Degraded { url, error } => sink.send(Notice::CoordinatorDegraded {
                    url,
                    error,
                    fallback_rate: fallback,
                }),
                BudgetEvent::Recovered { url } => sink.send(Notice::CoordinatorRecovered { url }),
            },
        ))
    }

    /// Cancels `run` when the lease is lost, so the run stops dispatching.
    pub(super) fn stop_on_loss(&self, run: &CancellationToken) -> CancellationToken {
        let lost = self.lease.lost();
        let run = run.clone();
        let watch = lost.clone();
        let done = self.done.clone();
        tokio::spawn(async move {
            tokio::select! {
                _ = watch.cancelled() => run.cancel(),
                _ = done.cancelled() => {}
            }
        });
        lost
    }

    pub(super) async fn release(self) {
        self.done.cancel();
        self.lease.release().await;
    }
}

/// What `esper-bulk coordinator status` shows for the tenant and enterprise `connection`
/// (and `job`'s `esper:` block) point at. It only talks to Redis, so no API key is needed.
pub async fn coordinator_status(
    url: &str,
    connection: &super::ConnectionSettings,
    job: Option<&crate::job::Job>,
) -> Result<crate::coord::Status, RunError> {
    // The key is resolved with the rest of the connection but never used here.
    let mut settings = connection.clone();
    settings.api_key = Some(super::KeyOverride::Key(crate::esper::ApiKey::new("unused")));
    let conn = super::connect::resolve(&settings, job.map(|j| &j.esper), None)?;
    let coord = Coordinator::connect(
        url,
        &crate::coord::tenant_of(&conn.base_url),
        &conn.enterprise_id,
    )
    .await?;
    Ok(crate::coord::status(&coord).await?)
}
