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
    if let Some(plan) = plan_server {
        check_plan_server(settings, plan)?;
    }
    let from_job = job.cloned().unwrap_or_default();
    let flag_tenant = flag_tenant(settings)?;
    let base_url = match settings
        .base_url
        .clone()
        .or(flag_tenant)
        .or_else(|| plan_server.map(|s| s.base_url.clone()))
        .or(from_job.base_url)
        .or_else(|| env.get("ESPER_BASE_URL"))
    {
        Some(url) => url,
        None => env_tenant(settings)?.ok_or(RunError::NoServer)?,
    };
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

/// The base URL `--tenant` names, checked by the rule the job's `esper.tenant` follows
/// (a value such as `127.0.0.1:8080/x?` would otherwise pick the host itself).
fn flag_tenant(settings: &ConnectionSettings) -> Result<Option<String>, RunError> {
    settings
        .tenant
        .as_deref()
        .map(|t| tenant_url(t, "--tenant"))
        .transpose()
}

/// The base URL `ESPER_TENANT` names, by the same rule; empty counts as unset.
fn env_tenant(settings: &ConnectionSettings) -> Result<Option<String>, RunError> {
    settings
        .env
        .get("ESPER_TENANT")
        .filter(|t| !t.is_empty())
        .map(|t| tenant_url(&t, "ESPER_TENANT"))
        .transpose()
}

fn tenant_url(tenant: &str, from: &'static str) -> Result<String, RunError> {
    crate::job::tenant_base_url(tenant).ok_or_else(|| RunError::BadTenant {
        tenant: tenant.to_string(),
        from,
    })
}

/// A saved plan (or a run being resumed) was resolved against one server and enterprise;
/// its frozen targets are ids there. A flag or `ESPER_*` variable naming another one is a
/// mistake to stop at, not a preference to follow or to ignore silently.
fn check_plan_server(settings: &ConnectionSettings, plan: &Server) -> Result<(), RunError> {
    let env = &settings.env;
    let same = |a: &str, b: &str| a.trim_end_matches('/') == b.trim_end_matches('/');
    let asked_server = [
        settings.base_url.clone().map(|u| (u, "--base-url")),
        flag_tenant(settings)?.map(|u| (u, "--tenant")),
        env.get("ESPER_BASE_URL").map(|u| (u, "ESPER_BASE_URL")),
        env_tenant(settings)?.map(|u| (u, "ESPER_TENANT")),
    ]
    .into_iter()
    .flatten()
    .find(|(u, _)| !u.is_empty());
    if let Some((asked, from)) = asked_server
        && !same(&asked, &plan.base_url)
    {
        return Err(RunError::PlanElsewhere {
            what: "server",
            planned: plan.base_url.clone(),
            asked,
            from,
        });
    }
    let asked_enterprise = [
        settings
            .enterprise_id
            .clone()
            .map(|e| (e, "--enterprise-id")),
        env.get("ESPER_ENTERPRISE_ID")
            .map(|e| (e, "ESPER_ENTERPRISE_ID")),
    ]
    .into_iter()
    .flatten()
    .find(|(e, _)| !e.is_empty());
    if let Some((asked, from)) = asked_enterprise
        && asked != plan.enterprise_id
    {
        return Err(RunError::PlanElsewhere {
            what: "enterprise",
            planned: plan.enterprise_id.clone(),
            asked,
            from,
        });
    }
    Ok(())
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::run::config::Env;

    fn settings(vars: &'static [(&'static str, &'static str)]) -> ConnectionSettings {
        ConnectionSettings {
            env: Env::from_fn(|n| {
                vars.iter()
                    .find(|(k, _)| *k == n)
                    .map(|(_, v)| v.to_string())
            }),
            ..ConnectionSettings::from_env()
        }
    }

    #[test]
    fn flags_then_job_then_environment_and_plans_stay_where_they_were_made() {
        let env = &[
            ("ESPER_TENANT", "acme"),
            ("ESPER_ENTERPRISE_ID", "e-env"),
            ("ESPER_API_KEY", "k"),
        ];
        let job = EsperSettings {
            base_url: Some("https://job/api".into()),
            enterprise_id: Some("e-job".into()),
            api_key: None,
        };
        let plan = Server {
            base_url: "https://plan/api".into(),
            enterprise_id: "e-plan".into(),
        };
        let c = resolve(&settings(env), None, None).unwrap();
        assert_eq!(
            (c.base_url.as_str(), c.enterprise_id.as_str()),
            ("https://acme-api.esper.cloud/api", "e-env")
        );
        let c = resolve(&settings(env), Some(&job), None).unwrap();
        assert_eq!(c.enterprise_id, "e-job");
        let mut flags = settings(env);
        flags.tenant = Some("other".into());
        flags.enterprise_id = Some("e-flag".into());
        let c = resolve(&flags, Some(&job), None).unwrap();
        assert_eq!(
            (c.base_url.as_str(), c.enterprise_id.as_str()),
            ("https://other-api.esper.cloud/api", "e-flag")
        );
        // A plan runs where it was made; flags or variables naming elsewhere are refused.
        let only_key = settings(&[("ESPER_API_KEY", "k")]);
        let c = resolve(&only_key, None, Some(&plan)).unwrap();
        assert_eq!(
            (c.base_url.as_str(), c.enterprise_id.as_str()),
            ("https://plan/api", "e-plan")
        );
        for s in [settings(env), flags] {
            assert!(matches!(
                resolve(&s, None, Some(&plan)),
                Err(RunError::PlanElsewhere { .. })
            ));
        }
        let mut same = settings(&[("ESPER_API_KEY", "k"), ("ESPER_ENTERPRISE_ID", "e-plan")]);
        same.base_url = Some("https://plan/api/".into());
        assert!(resolve(&same, None, Some(&plan)).is_ok());
    }

    #[test]
    fn tenants_from_flags_and_the_environment_follow_the_job_rule() {
        let bad = "127.0.0.1:8080/x?";
        let mut flag = settings(&[("ESPER_ENTERPRISE_ID", "e"), ("ESPER_API_KEY", "k")]);
        flag.tenant = Some(bad.into());
        let err = resolve(&flag, None, None).unwrap_err();
        assert_eq!(
            err.to_string(),
            "`127.0.0.1:8080/x?` from --tenant is not a tenant name"
        );
        assert_eq!(err.exit_code(), crate::exit::INVALID);
        let env = settings(&[
            ("ESPER_TENANT", "evil.example/"),
            ("ESPER_ENTERPRISE_ID", "e"),
            ("ESPER_API_KEY", "k"),
        ]);
        assert!(matches!(
            resolve(&env, None, None),
            Err(RunError::BadTenant {
                from: "ESPER_TENANT",
                ..
            })
        ));
        let plan = Server {
            base_url: "https://plan/api".into(),
            enterprise_id: "e".into(),
        };
        assert!(matches!(
            resolve(&env, None, Some(&plan)),
            Err(RunError::BadTenant { .. })
        ));
        let empty = settings(&[("ESPER_TENANT", ""), ("ESPER_API_KEY", "k")]);
        assert!(matches!(
            resolve(&empty, None, None),
            Err(RunError::NoServer)
        ));
    }

    #[test]
    fn missing_and_empty_keys_are_named() {
        let job = EsperSettings {
            base_url: Some("https://job/api".into()),
            enterprise_id: Some("e".into()),
            api_key: Some(KeySource::Env("MY_KEY".into())),
        };
        let err = resolve(&settings(&[]), Some(&job), None).unwrap_err();
        assert_eq!(
            err.to_string(),
            "no API key: environment variable MY_KEY is not set"
        );
        let err = resolve(&settings(&[("MY_KEY", "")]), Some(&job), None).unwrap_err();
        assert!(matches!(err, RunError::EmptyKey(_)), "{err}");
        assert!(matches!(
            resolve(&settings(&[]), None, None),
            Err(RunError::NoServer)
        ));
    }
}
