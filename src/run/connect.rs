//! From settings to a throttled client: resolving where to connect and with which key
//! (overrides, then a plan's server, then the job, then the environment), and building the
//! run's governor and the client that every request passes through.
//!
//! The key is read here and goes straight into [`ApiKey`], which never prints. What the
//! client then sends is the executor's and the planner's business.

use std::sync::Arc;

use crate::esper::{ApiKey, Client, Connection};
use crate::exec::Governor;
use crate::job::{EsperSettings, KeySource, Limits, RetrySettings};
use crate::plan::Server;

use super::RunError;
use super::config::{ConnectionSettings, KeyOverride, Pacing, governor_config};

/// The connection for a run of a job (`job`) or a plan (`plan_server`).
pub(super) fn resolve(
    settings: &ConnectionSettings,
    job: Option<&EsperSettings>,
    plan_server: Option<&Server>,
) -> Result<Connection, RunError> {
    let env = &settings.env;
    let from_job = job.cloned().unwrap_or_default();
    let base_url = settings
        .base_url
        .clone()
        .or_else(|| settings.tenant.as_deref().map(Connection::tenant_url))
        .or_else(|| plan_server.map(|s| s.base_url.clone()))
        .or(from_job.base_url)
        .or_else(|| env.get("ESPER_BASE_URL"))
        .or_else(|| env.get("ESPER_TENANT").map(|t| Connection::tenant_url(&t)))
        .ok_or(RunError::NoServer)?;
    let enterprise_id = settings
        .enterprise_id
        .clone()
        .or_else(|| plan_server.map(|s| s.enterprise_id.clone()))
        .or(from_job.enterprise_id)
        .or_else(|| env.get("ESPER_ENTERPRISE_ID"))
        .ok_or(RunError::NoEnterprise)?;
    let (key, from) = match (&settings.api_key, from_job.api_key) {
        (Some(KeyOverride::Key(k)), _) => (k.clone(), "the connection settings".to_string()),
        (Some(KeyOverride::File(f)), _) => {
            let source = KeySource::File(f.display().to_string());
            (read_key(&source, settings)?, format!("{source:?}"))
        }
        (None, Some(source)) => (read_key(&source, settings)?, format!("{source:?}")),
        (None, None) => {
            let source = KeySource::Env("ESPER_API_KEY".into());
            (read_key(&source, settings)?, format!("{source:?}"))
        }
    };
    if key.is_empty() {
        return Err(RunError::EmptyKey(from));
    }
    Ok(Connection::new(&base_url, &enterprise_id, key))
}

fn read_key(source: &KeySource, settings: &ConnectionSettings) -> Result<ApiKey, RunError> {
    let key = match source {
        KeySource::Env(name) => settings
            .env
            .get(name)
            .ok_or_else(|| RunError::NoKey(name.clone()))?,
        KeySource::File(f) => std::fs::read_to_string(f)
            .map_err(|source| RunError::ReadKey {
                path: f.clone(),
                source,
            })?
            .trim()
            .to_string(),
    };
    Ok(ApiKey::new(key))
}

/// The governor for a job's limits and a client whose every request passes it.
pub(super) fn client(
    conn: Connection,
    settings: &ConnectionSettings,
    limits: &Limits,
    retry: &RetrySettings,
    pacing: &Pacing,
    seed: u64,
) -> Result<(Client, Arc<Governor>), RunError> {
    let gov = Arc::new(Governor::new(governor_config(limits, retry, pacing, seed)));
    let client = Client::new(conn, settings.client.clone())?.with_throttle(gov.clone());
    Ok((client, gov))
}
