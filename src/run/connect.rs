//! From settings to a throttled client: resolving where to connect and with which key
//! (overrides, then a plan's server, then the job, then the context, then the
//! environment; see [`resolve`]), and building the
//! run's governor and the client that every request passes through.
//!
//! The key is read here and goes straight into [`ApiKey`], which never prints. What the
//! client then sends is the executor's and the planner's business.

use std::sync::Arc;

use crate::context::Chosen;
use crate::esper::{ApiKey, Client, Connection};
use crate::exec::Governor;
use crate::job::{EsperSettings, KeySource, Limits, RetrySettings};
use crate::plan::Server;

use super::RunError;
use super::config::{ConnectionSettings, KeyOverride, Pacing, governor_config};

/// The connection for a run of a job (`job`) or a plan (`plan_server`).
///
/// Each value comes from the first of these that gives it: the flags, the saved plan or
/// resumed run, the job's `esper:` block, the chosen context, `ESPER_*`. Two refinements
/// keep a key from being sent to the wrong server: a context is one unit (its enterprise
/// and key are used only with its own server), and a job's key reference counts before
/// the context's key only when the job names its server too (most jobs only say
/// `api_key: ${ESPER_API_KEY}`, which is where the environment's key is, not a choice of
/// tenant). A context named for this command (`--context`, `ESPER_BULK_CONTEXT`) that
/// contradicts the job or the plan is refused; the default context steps aside.
pub(super) fn resolve(
    settings: &ConnectionSettings,
    job: Option<&EsperSettings>,
    plan_server: Option<&Server>,
) -> Result<Connection, RunError> {
    let env = &settings.env;
    let chosen = settings.context.as_ref();
    if let Some(plan) = plan_server {
        check_plan_server(settings, plan)?;
    }
    let from_job = job.cloned().unwrap_or_default();
    if let Some(c) = chosen {
        check_job_context(settings, &from_job, c)?;
    }
    let flag_tenant = flag_tenant(settings)?;
    let base_url = match settings
        .base_url
        .clone()
        .or(flag_tenant)
        .or_else(|| plan_server.map(|s| s.base_url.clone()))
        .or(from_job.base_url.clone())
        .or_else(|| chosen.map(|c| c.context.base_url.clone()))
        .or_else(|| env.get("ESPER_BASE_URL"))
    {
        Some(url) => url,
        None => env_tenant(settings)?.ok_or(RunError::NoServer)?,
    };
    let context = chosen
        .map(|c| &c.context)
        .filter(|c| same_server(&c.base_url, &base_url));
    let enterprise_id = settings
        .enterprise_id
        .clone()
        .or_else(|| plan_server.map(|s| s.enterprise_id.clone()))
        .or(from_job.enterprise_id)
        .or_else(|| context.and_then(|c| c.enterprise_id.clone()))
        .or_else(|| env.get("ESPER_ENTERPRISE_ID"))
        .ok_or(RunError::NoEnterprise)?;
    let job_key = from_job.api_key;
    let pinned_key = job_key.clone().filter(|_| from_job.base_url.is_some());
    let key_source = pinned_key
        .or_else(|| context.and_then(|c| c.key.clone()))
        .or(job_key);
    let (key, from) = match (&settings.api_key, key_source) {
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

fn same_server(a: &str, b: &str) -> bool {
    a.trim_end_matches('/') == b.trim_end_matches('/')
}

/// A context named for this command that names another server or enterprise than the
/// job's `esper:` block (and no flag settles it) is a mistake to stop at.
fn check_job_context(
    settings: &ConnectionSettings,
    job: &EsperSettings,
    chosen: &Chosen,
) -> Result<(), RunError> {
    // A flag naming the server decides where the run goes, so nothing is left to
    // contradict.
    let flag_server = settings.base_url.is_some() || settings.tenant.is_some();
    if !chosen.by.is_explicit() || flag_server {
        return Ok(());
    }
    let c = &chosen.context;
    if let Some(j) = &job.base_url
        && !same_server(j, &c.base_url)
    {
        return Err(RunError::ContextElsewhere {
            what: "server",
            job: j.clone(),
            context: c.base_url.clone(),
            from: chosen.label(),
        });
    }
    if let (Some(j), Some(e), None) = (
        &job.enterprise_id,
        &c.enterprise_id,
        &settings.enterprise_id,
    ) && j != e
    {
        return Err(RunError::ContextElsewhere {
            what: "enterprise",
            job: j.clone(),
            context: e.clone(),
            from: chosen.label(),
        });
    }
    Ok(())
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
    let same = same_server;
    let named = settings
        .context
        .as_ref()
        .filter(|c| c.by.is_explicit())
        .map(|c| (&c.context, c.label()));
    let asked_server = [
        settings.base_url.clone().map(|u| (u, "--base-url".into())),
        flag_tenant(settings)?.map(|u| (u, "--tenant".into())),
        named.clone().map(|(c, label)| (c.base_url.clone(), label)),
        env.get("ESPER_BASE_URL")
            .map(|u| (u, "ESPER_BASE_URL".into())),
        env_tenant(settings)?.map(|u| (u, "ESPER_TENANT".into())),
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
            .map(|e| (e, "--enterprise-id".to_string())),
        named.and_then(|(c, label)| c.enterprise_id.clone().map(|e| (e, label))),
        env.get("ESPER_ENTERPRISE_ID")
            .map(|e| (e, "ESPER_ENTERPRISE_ID".into())),
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
    shared: Option<Arc<dyn crate::exec::SharedBudget>>,
) -> Result<(Client, Arc<Governor>), RunError> {
    let cfg = governor_config(limits, retry, pacing, seed);
    let gov = Arc::new(match shared {
        Some(shared) => Governor::with_shared(cfg, shared),
        None => Governor::new(cfg),
    });
    let client = Client::new(conn, settings.client.clone())?.with_throttle(gov.clone());
    Ok((client, gov))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::context::{Context, Selection};
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

    fn chosen(by: Selection, key: &str) -> Chosen {
        Chosen {
            context: Context {
                name: "stg".into(),
                base_url: "https://ctx/api".into(),
                tenant: None,
                enterprise_id: Some("e-ctx".into()),
                key: Some(KeySource::Env(key.into())),
            },
            by,
            file: "/cfg/config.toml".into(),
        }
    }

    /// Which of the tests' keys a connection carries, found by masking (the key itself is
    /// only ever exposed to build the `Authorization` header).
    fn key_of(c: &Connection) -> String {
        ["k-env", "k-ctx", "k-job", "k-flag"]
            .into_iter()
            .find(|k| {
                let header = format!("Bearer {k}");
                c.api_key.scrub(&header) != header
            })
            .unwrap_or("another key")
            .to_string()
    }

    // See: #13 — contexts rank below the job's `esper:` block and above `ESPER_*`; a
    // context's enterprise and key go with its own server only.
    #[test]
    fn a_context_fills_in_what_the_job_leaves_out_and_keeps_its_key_to_its_server() {
        let env = &[
            ("ESPER_BASE_URL", "https://env/api"),
            ("ESPER_ENTERPRISE_ID", "e-env"),
            ("ESPER_API_KEY", "k-env"),
            ("CTX_KEY", "k-ctx"),
            ("JOB_KEY", "k-job"),
        ];
        // Most jobs only say `api_key: ${ESPER_API_KEY}`: the context's key wins then.
        let unpinned = EsperSettings {
            api_key: Some(KeySource::Env("ESPER_API_KEY".into())),
            ..EsperSettings::default()
        };
        let mut s = settings(env);
        s.context = Some(chosen(Selection::Default, "CTX_KEY"));
        let c = resolve(&s, Some(&unpinned), None).unwrap();
        assert_eq!(
            (
                c.base_url.as_str(),
                c.enterprise_id.as_str(),
                key_of(&c).as_str()
            ),
            ("https://ctx/api", "e-ctx", "k-ctx")
        );
        // A job that names its server keeps its own key and steps over a default context.
        let pinned = EsperSettings {
            base_url: Some("https://job/api".into()),
            enterprise_id: None,
            api_key: Some(KeySource::Env("JOB_KEY".into())),
        };
        let c = resolve(&s, Some(&pinned), None).unwrap();
        assert_eq!(
            (
                c.base_url.as_str(),
                c.enterprise_id.as_str(),
                key_of(&c).as_str()
            ),
            ("https://job/api", "e-env", "k-job"),
            "the context's enterprise is not used with another server"
        );
        // Named for this command, a context that contradicts the job is refused...
        s.context = Some(chosen(Selection::Flag, "CTX_KEY"));
        let err = resolve(&s, Some(&pinned), None).unwrap_err();
        assert_eq!(
            err.to_string(),
            "the job names server `https://job/api` but context `stg` (--context) says `https://ctx/api`"
        );
        // ...unless a flag settles it.
        s.base_url = Some("https://flag/api".into());
        let c = resolve(&s, Some(&pinned), None).unwrap();
        assert_eq!(
            (c.base_url.as_str(), key_of(&c).as_str()),
            ("https://flag/api", "k-job")
        );
        // The same for an enterprise the job names.
        let mut only_enterprise = unpinned.clone();
        only_enterprise.enterprise_id = Some("e-job".into());
        let mut named = settings(env);
        named.context = Some(chosen(Selection::Env, "CTX_KEY"));
        assert!(matches!(
            resolve(&named, Some(&only_enterprise), None),
            Err(RunError::ContextElsewhere {
                what: "enterprise",
                ..
            })
        ));
        named.context = Some(chosen(Selection::Default, "CTX_KEY"));
        let c = resolve(&named, Some(&only_enterprise), None).unwrap();
        assert_eq!(
            (c.base_url.as_str(), c.enterprise_id.as_str()),
            ("https://ctx/api", "e-job"),
            "the job's enterprise ranks above a default context's"
        );
        // Flags beat the context for every value.
        let mut f = settings(env);
        f.context = Some(chosen(Selection::Env, "CTX_KEY"));
        f.enterprise_id = Some("e-flag".into());
        f.api_key = Some(KeyOverride::Key(ApiKey::new("k-flag")));
        let c = resolve(&f, Some(&unpinned), None).unwrap();
        assert_eq!(
            (
                c.base_url.as_str(),
                c.enterprise_id.as_str(),
                key_of(&c).as_str()
            ),
            ("https://ctx/api", "e-flag", "k-flag")
        );
    }

    #[test]
    fn a_plan_stays_where_it_was_made_whatever_the_context() {
        let env = &[("ESPER_API_KEY", "k-env"), ("CTX_KEY", "k-ctx")];
        let plan = Server {
            base_url: "https://plan/api".into(),
            enterprise_id: "e-plan".into(),
        };
        let mut s = settings(env);
        s.context = Some(chosen(Selection::Flag, "CTX_KEY"));
        match resolve(&s, None, Some(&plan)) {
            Err(RunError::PlanElsewhere { from, asked, .. }) => {
                assert_eq!(
                    (from.as_str(), asked.as_str()),
                    ("context `stg` (--context)", "https://ctx/api")
                );
            }
            other => panic!("a named context elsewhere is refused: {other:?}"),
        }
        // The default context steps aside, and its key is not sent to the plan's server.
        s.context = Some(chosen(Selection::Default, "CTX_KEY"));
        let c = resolve(&s, None, Some(&plan)).unwrap();
        assert_eq!(
            (
                c.base_url.as_str(),
                c.enterprise_id.as_str(),
                key_of(&c).as_str()
            ),
            ("https://plan/api", "e-plan", "k-env")
        );
        // A context for the plan's own server lends it its key.
        let mut same = chosen(Selection::Flag, "CTX_KEY");
        same.context.base_url = "https://plan/api/".into();
        same.context.enterprise_id = Some("e-plan".into());
        s.context = Some(same);
        let c = resolve(&s, None, Some(&plan)).unwrap();
        assert_eq!(key_of(&c), "k-ctx");
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
