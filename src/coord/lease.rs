//! The run lock as a Redis lease, and the heartbeat that keeps it and tells
//! `coordinator status` which processes are alive.
//!
//! Taking the lock is `SET NX PX` inside a script that also draws a fencing token from a
//! per-scope counter, so each holder has a number no earlier holder had. A heartbeat task
//! renews the lease every `renew_every`; a renewal that finds another token means another
//! process holds the lock now (our lease ran out while we were cut off), and the lease
//! reports [`LeaseEvent::Lost`] and cancels its token: the run stops dispatching. A
//! renewal that cannot reach Redis is not a loss (the run goes on at its local fallback
//! rate); once Redis answers again, a lease that expired meanwhile is taken back if nobody
//! else took it. The file lock (`crate::lock`) stays the lock without a coordinator; this
//! module uses its [`Holder`] record so a refused run names the holder the same way.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::{CoordError, Coordinator, scripts};
use crate::lock::Holder;

/// How long a lease lasts without renewal, and how often it is renewed.
#[derive(Debug, Clone, Copy)]
pub struct LeaseSettings {
    pub ttl: Duration,
    pub renew_every: Duration,
}

impl LeaseSettings {
    /// A 15 s lease renewed every 3 s: a crashed holder blocks the job for 15 s at most.
    pub fn standard() -> LeaseSettings {
        LeaseSettings {
            ttl: Duration::from_secs(15),
            renew_every: Duration::from_secs(3),
        }
    }
}

/// What the heartbeat tells the run.
#[derive(Debug, Clone, PartialEq)]
pub enum LeaseEvent {
    /// Another process holds the lock now: this run must stop dispatching.
    Lost { holder: Option<Holder> },
}

/// The result of trying to take the lock.
pub enum Taken {
    Ours(Lease),
    /// Held by this run (the holder's record, when readable).
    Held(Option<Holder>),
}

/// A held lease. [`Lease::release`] gives it back; dropping it stops the renewals and
/// leaves the key to expire.
pub struct Lease {
    coord: Coordinator,
    key: String,
    token: i64,
    lost: CancellationToken,
    heartbeat: Heartbeat,
}

/// The background task renewing a lease and recording the process as alive.
pub struct Heartbeat {
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Heartbeat {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The lock's key part for a job: a readable name and a hash of the exact name, so names
/// that read alike once made safe never share a lock (as in `crate::lock`).
fn job_key(job: &str) -> String {
    use sha2::{Digest, Sha256};
    let hash = Sha256::digest(job.as_bytes());
    let hex: String = hash.iter().take(6).map(|b| format!("{b:02x}")).collect();
    format!("lock:{}-{hex}", crate::util::file_name_for(job))
}

/// A process' record in the processes seen (stable for the whole run: it is a set member).
pub(super) fn process_record(holder: &Holder, rate: f64) -> String {
    serde_json::json!({
        "run_id": holder.run_id,
        "job": holder.job,
        "host": holder.host,
        "pid": holder.pid,
        "rate": rate,
    })
    .to_string()
}

/// Parses a lock value `token|record`.
pub(super) fn parse_value(value: &str) -> Option<(i64, Holder)> {
    let (token, record) = value.split_once('|')?;
    Some((token.parse().ok()?, serde_json::from_str(record).ok()?))
}

impl Lease {
    /// Takes the lock of `holder.job` in `coord`'s scope, and starts the heartbeat (which
    /// also records the process, with its `rate`, for `coordinator status`).
    pub async fn acquire(
        coord: &Coordinator,
        holder: &Holder,
        rate: f64,
        settings: LeaseSettings,
        on_event: impl Fn(LeaseEvent) + Send + Sync + 'static,
    ) -> Result<Taken, CoordError> {
        let record = serde_json::to_string(holder).unwrap_or_default();
        let key = coord.key(&job_key(&holder.job));
        let keys = [key.clone(), coord.key("fence")];
        let args = [record.clone(), settings.ttl.as_millis().to_string()];
        let (token, current): (i64, String) = coord
            .invoke(&redis::Script::new(scripts::ACQUIRE), &keys, &args)
            .await
            .map_err(|e| CoordError::Unreachable {
                url: coord.url().to_string(),
                reason: e.to_string(),
            })?;
        if token == 0 {
            return Ok(Taken::Held(parse_value(&current).map(|(_, h)| h)));
        }
        let lost = CancellationToken::new();
        let heartbeat = spawn_heartbeat(
            coord.clone(),
            Some((key.clone(), token, format!("{token}|{record}"))),
            process_record(holder, rate),
            settings,
            lost.clone(),
            Arc::new(on_event),
        );
        Ok(Taken::Ours(Lease {
            coord: coord.clone(),
            key,
            token,
            lost,
            heartbeat,
        }))
    }

    /// The fencing token: higher than any earlier holder's in this scope.
    pub fn token(&self) -> i64 {
        self.token
    }

    /// Cancelled when the lease is lost.
    pub fn lost(&self) -> CancellationToken {
        self.lost.clone()
    }

    /// Stops the renewals and deletes the key if this lease still holds it. A Redis that
    /// cannot be reached leaves the key to expire on its own.
    pub async fn release(self) {
        drop(self.heartbeat);
        let _ = self
            .coord
            .invoke::<i64>(
                &redis::Script::new(scripts::RELEASE),
                &[self.key],
                &[self.token.to_string()],
            )
            .await;
    }
}

/// Starts the task that, every `renew_every`, records the process as alive and renews
/// `lease` (key, token, value) if there is one.
fn spawn_heartbeat(
    coord: Coordinator,
    lease: Option<(String, i64, String)>,
    record: String,
    settings: LeaseSettings,
    lost: CancellationToken,
    on_event: Arc<dyn Fn(LeaseEvent) + Send + Sync>,
) -> Heartbeat {
    let task = tokio::spawn(async move {
        let beat = redis::Script::new(&scripts::heartbeat());
        let renew = redis::Script::new(scripts::RENEW);
        let procs = coord.key("procs");
        loop {
            let _ = coord
                .invoke::<i64>(
                    &beat,
                    std::slice::from_ref(&procs),
                    std::slice::from_ref(&record),
                )
                .await;
            if let Some((key, token, value)) = &lease {
                let args = [
                    token.to_string(),
                    settings.ttl.as_millis().to_string(),
                    value.clone(),
                ];
                match coord
                    .invoke::<i64>(&renew, std::slice::from_ref(key), &args)
                    .await
                {
                    Ok(0) => {
                        let holder = coord
                            .get(key)
                            .await
                            .and_then(|v| parse_value(&v).map(|(_, h)| h));
                        tracing::error!("the run lock's lease was lost: another process holds it");
                        lost.cancel();
                        on_event(LeaseEvent::Lost { holder });
                        return;
                    }
                    Ok(2) => tracing::warn!("the run lock's lease had expired; taken back"),
                    Ok(_) => {}
                    // Unreachable is not lost: the budget reports the degradation.
                    Err(error) => tracing::debug!(%error, "cannot renew the run lock's lease"),
                }
            }
            tokio::time::sleep(settings.renew_every).await;
        }
    });
    Heartbeat { task }
}

impl Coordinator {
    /// `GET key`, `None` on any failure.
    pub(super) async fn get(&self, key: &str) -> Option<String> {
        let mut conn = self.conn.clone();
        let cmd = redis::cmd("GET").arg(key).clone();
        tokio::time::timeout(
            super::CALL_TIMEOUT,
            cmd.query_async::<Option<String>>(&mut conn),
        )
        .await
        .ok()?
        .ok()?
    }
}
