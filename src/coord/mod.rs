//! The coordinator: what several esper-bulk processes on several hosts share through Redis
//! when they work on the same tenant and enterprise (`--coordinator redis://…`).
//!
//! - `budget.rs`: the shared GCRA bucket and the shared "paused until" key, behind the
//!   executor's [`crate::exec::SharedBudget`] trait; degrades to a local fallback rate
//!   when Redis cannot be reached, and reconnects with backoff.
//! - `lease.rs`: the run lock as a Redis lease (`SET NX PX`, a fencing token, heartbeat
//!   renewal), and each process' heartbeat in the processes seen.
//! - `status.rs`: what `esper-bulk coordinator status` shows.
//! - `scripts.rs`: the Lua; every read-modify-write is one script on Redis' own clock.
//!
//! Every key is `esper-bulk:{tenant}:{enterprise}:…` and expires. It uses the `redis`
//! crate's connection manager and never speaks RESP itself. How a run uses it (which
//! errors stop a run, what is reported) is `crate::run`'s; the executor only sees the trait.

mod budget;
mod lease;
mod scripts;
mod status;

use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};

pub use budget::{Budget, BudgetEvent};
pub use lease::{Heartbeat, Lease, LeaseEvent, LeaseSettings, Taken};
pub use status::{LockHolder, Process, Status, status};

/// A coordinator that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum CoordError {
    #[error("invalid coordinator url `{url}`: {reason}")]
    Url { url: String, reason: String },
    #[error("cannot reach the coordinator at {url}: {reason}")]
    Unreachable { url: String, reason: String },
}

impl crate::base::Hint for CoordError {
    fn hint(&self) -> Option<String> {
        match self {
            CoordError::Url { .. } => {
                Some("the form is redis://[:PASSWORD@]HOST[:PORT][/DB] (or rediss:// for TLS)".into())
            }
            CoordError::Unreachable { .. } => Some(
                "start Redis or fix --coordinator / ESPER_BULK_REDIS_URL; a run with a coordinator does not start without it, so two hosts never run the same job"
                    .into(),
            ),
        }
    }
}

/// Why one Redis call failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum CallError {
    #[error("{0}")]
    Redis(String),
    #[error("no answer within {} ms", .0.as_millis())]
    TimedOut(Duration),
}

/// How long one Redis call may take before it counts as a failure: the coordinator is on
/// the send path of every request, so a hung Redis must not hold requests for long.
pub const CALL_TIMEOUT: Duration = Duration::from_millis(300);

/// A connection to Redis, scoped to one tenant and enterprise.
#[derive(Clone)]
pub struct Coordinator {
    conn: ConnectionManager,
    url: String,
    prefix: String,
}

impl std::fmt::Debug for Coordinator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Coordinator")
            .field("url", &self.url)
            .field("prefix", &self.prefix)
            .finish()
    }
}

/// `url` without its password (or user), for reports, notices and errors.
pub fn redacted(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) => {
            if u.password().is_some() {
                let _ = u.set_password(Some("***"));
            }
            u.to_string()
        }
        Err(_) => "<unparsable url>".into(),
    }
}

/// The tenant part of the keys: the API's host (and port), as each process names its
/// server the same way.
pub fn tenant_of(base_url: &str) -> String {
    match url::Url::parse(base_url) {
        Ok(u) => match (u.host_str(), u.port()) {
            (Some(h), Some(p)) => format!("{h}_{p}"),
            (Some(h), None) => h.to_string(),
            _ => base_url.to_string(),
        },
        Err(_) => base_url.to_string(),
    }
}

impl Coordinator {
    /// Connects to `url` for the keys of `tenant` and `enterprise`; fails when Redis does
    /// not answer a PING now.
    pub async fn connect(
        url: &str,
        tenant: &str,
        enterprise: &str,
    ) -> Result<Coordinator, CoordError> {
        let shown = redacted(url);
        let client = redis::Client::open(url).map_err(|e| CoordError::Url {
            url: shown.clone(),
            reason: e.to_string().to_lowercase(),
        })?;
        let unreachable = |reason: String| CoordError::Unreachable {
            url: shown.clone(),
            reason,
        };
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(CALL_TIMEOUT))
            .set_response_timeout(Some(CALL_TIMEOUT))
            .set_number_of_retries(1)
            .set_min_delay(Duration::from_millis(50))
            .set_max_delay(Duration::from_millis(500));
        let mut conn = tokio::time::timeout(
            CALL_TIMEOUT * 4,
            ConnectionManager::new_with_config(client, config),
        )
        .await
        .map_err(|_| unreachable("timed out".into()))?
        .map_err(|e| unreachable(e.to_string().to_lowercase()))?;
        let _: String = redis::cmd("PING")
            .query_async(&mut conn)
            .await
            .map_err(|e| unreachable(e.to_string().to_lowercase()))?;
        Ok(Coordinator {
            conn,
            url: shown,
            prefix: format!("esper-bulk:{tenant}:{enterprise}"),
        })
    }

    /// The url without a password.
    pub fn url(&self) -> &str {
        &self.url
    }

    fn key(&self, what: &str) -> String {
        format!("{}:{what}", self.prefix)
    }

    /// Runs `script` with `keys` and `args`, bounded by [`CALL_TIMEOUT`].
    async fn invoke<T: redis::FromRedisValue>(
        &self,
        script: &redis::Script,
        keys: &[String],
        args: &[String],
    ) -> Result<T, CallError> {
        let mut inv = script.prepare_invoke();
        for k in keys {
            inv.key(k);
        }
        for a in args {
            inv.arg(a);
        }
        let mut conn = self.conn.clone();
        match tokio::time::timeout(CALL_TIMEOUT, inv.invoke_async(&mut conn)).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(CallError::Redis(e.to_string().to_lowercase())),
            Err(_) => Err(CallError::TimedOut(CALL_TIMEOUT)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_shown_without_their_password_and_tenants_by_host() {
        assert_eq!(
            redacted("redis://:s3cret@cache.internal:6380/2"),
            "redis://:***@cache.internal:6380/2"
        );
        assert_eq!(
            redacted("redis://127.0.0.1:6379/0"),
            "redis://127.0.0.1:6379/0"
        );
        assert_eq!(
            tenant_of("https://acme-api.esper.cloud/api"),
            "acme-api.esper.cloud"
        );
        assert_eq!(tenant_of("http://127.0.0.1:4000/api"), "127.0.0.1_4000");
    }
}
