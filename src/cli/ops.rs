//! The day-to-day commands that do not run jobs: `context list|show|use`, `runs`, `prune`,
//! `unlock`'s run argument and `mock --write-context`, and choosing the context `plan` and
//! `run` connect with. They map flags onto
//! [`crate::context`] and [`crate::run`]'s history functions and print what comes back
//! (a table, or one JSON document with `--json`); nothing here decides anything.

use crate::context::{self, Chosen, Config, Context};
use crate::exit;
use crate::run::{self, Env, Kept, PrunePolicy, RunError, RunSummary};

use std::path::PathBuf;

use anyhow::Context as _;

use crate::mock;

use super::{ContextCmd, Globals, MockCmd, PruneArgs, RunsArgs, console, fail};

/// The config file `--config` names (which must exist) or the default one (which may not).
fn config(g: &Globals, env: &Env) -> Result<Config, RunError> {
    let path = context::config_path(g.config.as_deref(), &|n| env.get(n))?;
    Ok(Config::load(&path, g.config.is_some())?)
}

/// The context `--context`, `ESPER_BULK_CONTEXT` or `default_context` chooses, if any.
/// Without a flag, a variable or a config file this is `None`, not an error: contexts are
/// optional.
pub(super) fn chosen_context(g: &Globals, env: &Env) -> Result<Option<Chosen>, RunError> {
    let asked = g.context.is_some() || g.config.is_some();
    let path = match context::config_path(g.config.as_deref(), &|n| env.get(n)) {
        Ok(p) => p,
        Err(_) if !asked && env.get(context::CONTEXT_ENV).is_none() => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    let config = Config::load(&path, g.config.is_some())?;
    Ok(config.choose(g.context.as_deref(), &|n| env.get(n))?)
}

fn context_json(c: &Context, chosen: Option<&Chosen>, env: &Env) -> serde_json::Value {
    let key = match &c.key {
        Some(crate::job::KeySource::File(f)) => serde_json::json!({ "file": f }),
        Some(crate::job::KeySource::Env(v)) => serde_json::json!({ "env": v }),
        None => serde_json::Value::Null,
    };
    let current = chosen.filter(|ch| ch.context.name == c.name);
    serde_json::json!({
        "name": c.name,
        "server": c.base_url,
        "tenant": c.tenant,
        "enterprise_id": c.enterprise_id,
        "key": key,
        "key_origin": c.key_origin(&|n| env.get(n)),
        "current": current.is_some(),
        "chosen_by": current.map(|ch| ch.by),
    })
}

pub(super) fn context_cmd(cmd: ContextCmd, g: &Globals, env: &Env) -> Result<u8, RunError> {
    match cmd {
        ContextCmd::List { json } => {
            let config = config(g, env)?;
            // A broken choice (an unknown --context) does not stop the listing that
            // would show the right name.
            let chosen = config
                .choose(g.context.as_deref(), &|n| env.get(n))
                .ok()
                .flatten();
            if json {
                let doc = serde_json::json!({
                    "config": config.path,
                    "default_context": config.default_context,
                    "contexts": config.contexts.values().map(|c| context_json(c, chosen.as_ref(), env)).collect::<Vec<_>>(),
                });
                console::out(format_args!("{doc:#}\n"));
                return Ok(exit::OK);
            }
            if config.contexts.is_empty() {
                console::info(format_args!(
                    "no contexts in {}; `esper-bulk mock --write-context mock` adds one",
                    config.path.display()
                ));
                return Ok(exit::OK);
            }
            let mut rows = vec![[
                String::new(),
                "NAME".into(),
                "SERVER".into(),
                "ENTERPRISE".into(),
                "KEY".into(),
            ]];
            for c in config.contexts.values() {
                let current = chosen.as_ref().is_some_and(|ch| ch.context.name == c.name);
                rows.push([
                    if current { "*" } else { "" }.into(),
                    c.name.clone(),
                    c.base_url.clone(),
                    c.enterprise_id.clone().unwrap_or_else(|| "-".into()),
                    c.key_origin(&|n| env.get(n)),
                ]);
            }
            console::out(table(&rows));
            Ok(exit::OK)
        }
        ContextCmd::Show { name, json } => {
            let config = config(g, env)?;
            // What `plan` and `run` would use now, whatever NAME asks to see.
            let in_use = config.choose(g.context.as_deref(), &|n| env.get(n));
            let (in_use, c) = match name {
                Some(n) => {
                    let c = config.contexts.get(&n).cloned().ok_or_else(|| {
                        context::ContextError::Unknown {
                            name: n.clone(),
                            by: context::Selection::Named,
                            path: config.path.clone(),
                            known: config.contexts.keys().cloned().collect(),
                        }
                    })?;
                    (in_use.ok().flatten(), c)
                }
                None => {
                    let chosen = in_use?.ok_or_else(|| context::ContextError::NoneChosen {
                        path: config.path.clone(),
                        known: config.contexts.keys().cloned().collect(),
                    })?;
                    let c = chosen.context.clone();
                    (Some(chosen), c)
                }
            };
            let c = &c;
            if json {
                let mut doc = context_json(c, in_use.as_ref(), env);
                doc["config"] = serde_json::json!(config.path);
                console::out(format_args!("{doc:#}\n"));
                return Ok(exit::OK);
            }
            let mut text = format!("name:       {}\nserver:     {}\n", c.name, c.base_url);
            if let Some(t) = &c.tenant {
                text += &format!("tenant:     {t}\n");
            }
            let used = match in_use.as_ref().filter(|ch| ch.context.name == c.name) {
                Some(ch) => format!("yes (by {})", ch.by),
                None => "no".into(),
            };
            text += &format!(
                "enterprise: {}\nkey:        {}\nin use:     {used}\nconfig:     {}\n",
                c.enterprise_id
                    .as_deref()
                    .unwrap_or("- (from the job or ESPER_ENTERPRISE_ID)"),
                c.key_origin(&|n| env.get(n)),
                config.path.display()
            );
            console::out(text);
            Ok(exit::OK)
        }
        ContextCmd::Use { name } => {
            let path = context::config_path(g.config.as_deref(), &|n| env.get(n))?;
            context::use_context(&path, &name)?;
            console::out(format_args!(
                "default_context is now `{name}` in {}\n",
                path.display()
            ));
            Ok(exit::OK)
        }
    }
}

/// Columns padded to their widest cell, two spaces apart; the last is not padded.
fn table<const N: usize>(rows: &[[String; N]]) -> String {
    let mut widths = [0usize; N];
    for r in rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let mut out = String::new();
    for r in rows {
        let mut line = String::new();
        for (i, c) in r.iter().enumerate() {
            if i + 1 == N {
                line += c;
            } else {
                line += &format!("{c:<w$}  ", w = widths[i]);
            }
        }
        out += line.trim_end();
        out += "\n";
    }
    out
}

fn started(r: &RunSummary) -> String {
    r.started_at
        .as_deref()
        .and_then(|t| t.parse::<jiff::Timestamp>().ok())
        .map_or_else(
            || "-".into(),
            |t| t.strftime("%Y-%m-%d %H:%M:%SZ").to_string(),
        )
}

fn duration(ms: u64) -> String {
    humantime::format_duration(std::time::Duration::from_secs(ms.div_ceil(1000))).to_string()
}

pub(super) fn runs_cmd(a: RunsArgs, env: &Env) -> Result<u8, RunError> {
    let state = run::state_dir(a.state_dir, env)?;
    let mut runs = run::list_runs(&state, a.job.as_deref())?;
    if let Some(n) = a.limit {
        runs.truncate(n);
    }
    for r in runs.iter().filter(|r| r.error.is_some()) {
        if let Some(e) = &r.error {
            console::warn(format_args!(
                "warning: run {} is unreadable: {}",
                r.run_id,
                crate::base::one_line(e.as_ref())
            ));
        }
    }
    if a.json {
        let doc = serde_json::json!({ "state_dir": state, "runs": runs });
        console::out(format_args!("{doc:#}\n"));
        return Ok(exit::OK);
    }
    if runs.is_empty() {
        console::info(format_args!("no runs in {}", state.join("runs").display()));
        return Ok(exit::OK);
    }
    let mut rows = vec![[
        "RUN ID".to_string(),
        "JOB".into(),
        "STARTED".into(),
        "DURATION".into(),
        "OUTCOME".into(),
        "EXIT".into(),
        "OK".into(),
        "FAILED".into(),
        "NOT STARTED".into(),
        "SEGMENTS".into(),
    ]];
    for r in &runs {
        rows.push([
            r.run_id.clone(),
            r.job.clone(),
            started(r),
            duration(r.duration_ms),
            r.outcome.clone(),
            r.exit_code.map_or_else(|| "-".into(), |c| c.to_string()),
            r.succeeded.to_string(),
            (r.failed + r.unknown).to_string(),
            r.not_started.to_string(),
            r.segments.to_string(),
        ]);
    }
    console::out(table(&rows));
    Ok(exit::OK)
}

pub(super) fn prune_cmd(a: PruneArgs, env: &Env) -> Result<u8, RunError> {
    let state = run::state_dir(a.state_dir, env)?;
    let policy = PrunePolicy {
        keep: a.keep,
        older_than: a.older_than,
        job: a.job,
    };
    let pruned = run::prune(&state, &policy, a.dry_run, jiff::Timestamp::now())?;
    if a.json {
        let kept: Vec<_> = pruned
            .kept
            .iter()
            .map(|(r, why)| serde_json::json!({ "run_id": r.run_id, "job": r.job, "why": why }))
            .collect();
        let doc = serde_json::json!({
            "state_dir": state,
            "dry_run": pruned.dry_run,
            "deleted": pruned.deleted.iter().map(|r| &r.run_id).collect::<Vec<_>>(),
            "kept": kept,
        });
        console::out(format_args!("{doc:#}\n"));
        return Ok(exit::OK);
    }
    let verb = if a.dry_run { "would delete" } else { "deleted" };
    for r in &pruned.deleted {
        console::out(format_args!(
            "{verb} {} ({}, {}, started {})\n",
            r.run_id,
            r.job,
            r.outcome,
            started(r)
        ));
    }
    for (r, why) in &pruned.kept {
        match why {
            Kept::Locked => console::info(format_args!("kept {}: it is running", r.run_id)),
            Kept::Unfinished => match &r.error {
                Some(e) => console::info(format_args!(
                    "kept {}: unreadable ({}); delete it by hand if it is not needed",
                    r.run_id,
                    crate::base::one_line(e.as_ref())
                )),
                None => console::info(format_args!(
                    "kept {}: unfinished ({}); finish it with `esper-bulk run --resume {}`",
                    r.run_id, r.outcome, r.run_id
                )),
            },
        }
    }
    let n = pruned.deleted.len();
    let runs = if n == 1 { "run" } else { "runs" };
    match pruned.kept.len() {
        0 => console::info(format_args!("{verb} {n} {runs}")),
        k => console::info(format_args!(
            "{verb} {n} {runs}; kept {k} the policy names (locked or unfinished)"
        )),
    }
    Ok(exit::OK)
}

/// The state directory and run id `unlock RUN` means: a run directory names both (its
/// state directory is two levels up, unless --state-dir says otherwise).
pub(super) fn unlock_target(
    run: &str,
    state_dir: Option<PathBuf>,
    env: &Env,
) -> Result<(PathBuf, String), RunError> {
    let path = std::path::Path::new(run);
    if path.join("plan.json").is_file() {
        let (dir, id) = run::find_run(None, path)?;
        let state = match state_dir {
            Some(s) => s,
            None => dir
                .parent()
                .and_then(|runs| runs.parent())
                .map(|s| s.to_path_buf())
                .map_or_else(|| run::state_dir(None, env), Ok)?,
        };
        return Ok((state, id.to_string()));
    }
    Ok((run::state_dir(state_dir, env)?, run.to_string()))
}

/// `esper-bulk mock`, and with `--write-context NAME` the context for it in the config.
pub(super) async fn mock_cmd(a: MockCmd, g: &Globals, env: &Env) -> anyhow::Result<u8> {
    let Some(name) = a.write_context else {
        mock::serve_cli(a.args)
            .await
            .context("running the mock server")?;
        return Ok(exit::OK);
    };
    let path = match crate::context::config_path(g.config.as_deref(), &|n| env.get(n)) {
        Ok(p) => p,
        Err(e) => return Ok(fail(&e.into())),
    };
    let record = |server: &mock::MockServer| {
        let w = crate::context::write_context(
            &path,
            &name,
            &server.base_url(),
            server.enterprise_id(),
            server.api_key(),
        )
        .map_err(|e| std::io::Error::other(crate::base::one_line(&e)))?;
        console::out(format_args!(
            "context `{name}` written to {} (key in {})\n",
            path.display(),
            w.key_file.display()
        ));
        if !w.made_default {
            console::out(format_args!(
                "use it with --context {name}, or make it the default: esper-bulk context use {name}\n"
            ));
        }
        Ok(())
    };
    mock::serve_cli_then(a.args, record)
        .await
        .context("running the mock server")?;
    Ok(exit::OK)
}
