//! The command line: parses flags (their grammar is `args.rs`), turns them into the
//! library's settings ([`run::RunConfig`], [`run::PlanConfig`], …), prints what comes back
//! through `console.rs` and maps it to an exit code. The only module that uses `anyhow`,
//! and the only one that prints; what a command does lives in [`crate::run`].

use std::path::PathBuf;

use anyhow::Result;
use clap::{CommandFactory, Parser};
use tokio_util::sync::CancellationToken;

use crate::esper::ClientOptions;
use crate::run::{
    self, ConnectionSettings, Env, KeyOverride, Notices, Output, PlanConfig, RunConfig, RunError,
    RunResult, Source,
};
use crate::{exit, job};

mod args;
mod complete;
mod console;
mod coord;
mod export;
mod ops;

pub use args::*;

/// Parses arguments, runs the command and returns the exit code.
pub fn main() -> u8 {
    // With `COMPLETE=<shell>` set, this prints the shell's registration script, or answers
    // the shell's completion request, and exits; otherwise it does nothing.
    clap_complete::CompleteEnv::with_factory(Cli::command).complete();
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let code = if e.use_stderr() {
                exit::INVALID
            } else {
                exit::OK
            };
            let _ = e.print();
            return code;
        }
    };
    init_logging(&cli);
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            console::error(format!("error: cannot start the async runtime: {e}"));
            return exit::INVALID;
        }
    };
    let globals = Globals {
        config: cli.config,
        context: cli.context,
    };
    match rt.block_on(dispatch(cli.command, &globals)) {
        Ok(code) => code,
        Err(e) => {
            console::error(format!("error: {e:#}"));
            exit::INVALID
        }
    }
}

fn init_logging(cli: &Cli) {
    console::init(cli.quiet, cli.log_format == LogFormat::Json);
    let level = if cli.quiet {
        "error"
    } else {
        match cli.verbose {
            0 => "warn",
            1 => "info",
            _ => "debug",
        }
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("ESPER_BULK_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(format!("esper_bulk={level},warn")));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(crate::progress::LogWriter);
    let _ = match cli.log_format {
        LogFormat::Json => builder.json().try_init(),
        LogFormat::Text => builder.with_ansi(console::colour()).try_init(),
    };
}

/// The global flags every command that connects reads.
struct Globals {
    config: Option<PathBuf>,
    context: Option<String>,
}

async fn dispatch(cmd: Command, g: &Globals) -> Result<u8> {
    let env = Env::process();
    Ok(match cmd {
        Command::Demo(a) => demo(a, &env).await,
        Command::Mock(a) => ops::mock_cmd(a, g, &env).await?,
        Command::Validate { files, json } => validate(&files, json, &env)?,
        Command::Plan(a) => plan_cmd(a, g, &env).await?,
        Command::Run(a) => run_cmd(a, g, &env).await,
        Command::Export(a) => export::export_cmd(a, g, &env).await,
        Command::Schema => {
            console::out(format_args!(
                "{}\n",
                serde_json::to_string_pretty(&job::shape::json_schema())?
            ));
            exit::OK
        }
        Command::Report {
            run,
            format,
            stdout,
            state_dir,
        } => report_cmd(&run, state_dir, &format, stdout, &env).unwrap_or_else(|e| fail(&e)),
        Command::Unlock { run, state_dir } => {
            match ops::unlock_target(&run, state_dir, &env).and_then(|(s, id)| run::unlock(&s, &id))
            {
                Ok(h) => {
                    console::out(format_args!("cleared the lock left by {h}\n"));
                    exit::OK
                }
                Err(e) => fail(&e),
            }
        }
        Command::Coordinator(CoordinatorCmd::Status(a)) => coord::status_cmd(a, g, &env).await,
        Command::Context(c) => ops::context_cmd(c, g, &env).unwrap_or_else(|e| fail(&e)),
        Command::Runs(a) => ops::runs_cmd(a, &env).unwrap_or_else(|e| fail(&e)),
        Command::Prune(a) => ops::prune_cmd(a, &env).unwrap_or_else(|e| fail(&e)),
        Command::Completions { shell } => {
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut Cli::command(), "esper-bulk", &mut script);
            console::out(String::from_utf8_lossy(&script));
            exit::OK
        }
        Command::Man => {
            let mut page = Vec::new();
            clap_mangen::Man::new(Cli::command()).render(&mut page)?;
            console::out(String::from_utf8_lossy(&page));
            exit::OK
        }
    })
}

/// Prints why a command could not be done; returns its exit code.
fn fail(e: &RunError) -> u8 {
    if e.is_rendered() {
        console::error(e);
    } else {
        console::error(crate::base::render_error(e));
    }
    e.exit_code()
}

/// [`fail`], and with `--json` also the error as the one JSON document on stdout.
fn fail_json(e: &RunError) -> u8 {
    let code = fail(e);
    let doc = serde_json::json!({
        "exit_code": code,
        "error": e.to_string(),
        "hint": crate::base::Hint::hint(e),
    });
    console::out(format_args!("{doc:#}\n"));
    code
}

/// Notices go to stderr, like logs; stdout is for results.
fn stderr_notices() -> Notices {
    Notices::new(|n| {
        if n.is_warning() {
            console::warn(n);
        } else {
            console::info(n);
        }
    })
}

/// Loads a job file, printing its warnings.
fn load(path: &std::path::Path, env: &Env) -> Result<job::Job, RunError> {
    let loaded = run::load_job(path, env)?;
    for w in &loaded.warnings {
        console::warn(w);
    }
    Ok(loaded.job)
}

fn validate(files: &[PathBuf], json: bool, env: &Env) -> Result<u8> {
    let v = run::validate_paths(files, env, &mut std::io::stdin());
    if json {
        console::out(format_args!(
            "{}\n",
            serde_json::to_string_pretty(&v.to_json())?
        ));
    } else {
        let (out, err) = v.text();
        // The `ok:` lines are what -q silences; the problems are not.
        if !console::quiet() {
            console::out(out);
        }
        if v.exit_code() != exit::OK {
            console::error(err);
        } else if v.warnings() > 0 {
            console::warn(err);
        } else {
            console::info(err);
        }
    }
    Ok(v.exit_code())
}

/// The connection settings of `plan` and `run`: the flags, and the context chosen by
/// `--context`, `ESPER_BULK_CONTEXT` or the config file's `default_context`.
fn connection(conn: &ConnArgs, g: &Globals, env: &Env) -> Result<ConnectionSettings, RunError> {
    Ok(ConnectionSettings {
        base_url: conn.base_url.clone(),
        tenant: conn.tenant.clone(),
        enterprise_id: conn.enterprise_id.clone(),
        api_key: conn.api_key_file.clone().map(KeyOverride::File),
        context: ops::chosen_context(g, env)?,
        client: ClientOptions {
            connect_timeout: conn.connect_timeout,
            timeout: conn.timeout,
            upload_timeout: conn.timeout * 10,
            ca_cert: conn.ca_cert.clone(),
            max_body: conn.max_body,
        },
        env: env.clone(),
    })
}

async fn plan_cmd(a: PlanArgs, g: &Globals, env: &Env) -> Result<u8> {
    let json = a.json;
    let fail = |e: &RunError| if json { fail_json(e) } else { fail(e) };
    let job = match load(&a.file, env) {
        Ok(j) => j,
        Err(e) => return Ok(fail(&e)),
    };
    let connection = match connection(&a.conn, g, env) {
        Ok(c) => c,
        Err(e) => return Ok(fail(&e)),
    };
    let mut cfg = PlanConfig::new(job, connection);
    cfg.notices = stderr_notices();
    cfg.limit = a.subset.limit.clone();
    let p = match run::plan(cfg).await {
        Ok(p) => p,
        Err(e) => return Ok(fail(&e)),
    };
    if a.json {
        console::out(format_args!("{}\n", run::sealed_plan(&p)));
    } else {
        console::out(crate::plan::plan_text(
            &p,
            a.show_requests,
            &crate::esper::adapter::EsperPaths,
        ));
    }
    if let Some(out) = &a.out {
        if let Err(e) = run::write_plan(out, &p) {
            return Ok(fail(&e));
        }
        console::info(format_args!("plan written to {}", out.display()));
    }
    if let Err(e) = run::check_deadline(&p, &stderr_notices()) {
        return Ok(self::fail(&e));
    }
    let pending = crate::plan::diff::changes(&p).0.writes();
    Ok(if a.detailed_exitcode && pending > 0 {
        exit::CHANGES_PENDING
    } else {
        exit::OK
    })
}

async fn run_cmd(a: RunArgs, g: &Globals, env: &Env) -> u8 {
    let json = a.json;
    let fail = |e: &RunError| if json { fail_json(e) } else { fail(e) };
    let state = match run::state_dir(a.state_dir.clone(), env) {
        Ok(s) => s,
        Err(e) => return fail(&e),
    };
    // Refused before a run to resume is looked for, as the library would refuse it.
    let frozen = match (&a.resume, &a.plan) {
        (Some(_), _) => Some("--resume"),
        (None, Some(_)) => Some("--plan"),
        (None, None) => None,
    };
    if let Some(with) = frozen.filter(|_| !a.subset.limit.is_empty()) {
        return fail(&RunError::LimitFrozen { with });
    }
    let named = |which: &str| (which != "latest").then(|| which.into());
    let source = match (&a.resume, &a.file, &a.plan) {
        (Some(which), Some(f), _) => load(f, env).map(|j| Source::Continue {
            job: Box::new(j),
            run: named(which),
        }),
        (Some(which), None, _) => match named(which) {
            Some(id) => Ok(Source::Resume(id)),
            None => run::latest_run(&state).map(Source::Resume),
        },
        (None, Some(f), _) => load(f, env).map(|j| Source::Job(Box::new(j))),
        (None, None, Some(p)) => {
            run::read_plan(p, &stderr_notices()).map(|p| Source::Plan(Box::new(p)))
        }
        // clap requires one of them.
        (None, None, None) => return exit::INVALID,
    };
    let source = match source {
        Ok(s) => s,
        Err(e) => return fail(&e),
    };
    let connection = match connection(&a.conn, g, env) {
        Ok(c) => c,
        Err(e) => return fail(&e),
    };
    let mut cfg = RunConfig::new(source, connection, state);
    cfg.deadline = a.deadline;
    cfg.wait_lock = a.wait_lock;
    cfg.max_plan_age = a.max_plan_age;
    cfg.limit = a.subset.limit;
    cfg.notify.extra = a.notify.notify;
    cfg.coordinator = coord::settings(&a.coord, env);
    cfg.output = Output {
        progress: console::progress(),
        renderings: true,
        metrics_file: a.metrics_file,
        notices: stderr_notices(),
    };
    match run::run(cfg, signal_token()).await {
        Ok(r) => print_result(&r, a.json),
        Err(e) => fail(&e),
    }
}

/// A token the first SIGINT/SIGTERM cancels (the second exits at once).
fn signal_token() -> CancellationToken {
    let cancel = CancellationToken::new();
    run::cancel_on_signals(cancel.clone(), stderr_notices());
    cancel
}

/// The run's result on stdout: the summary and the report's path, or with `--json` one
/// JSON document of both. `-q` keeps a successful run silent.
fn print_result(r: &RunResult, json: bool) -> u8 {
    if let Some(e) = &r.journal_error {
        console::error(format_args!(
            "error: {e}\n  = help: free space and resume with `esper-bulk run --resume {}`",
            r.run_id
        ));
    }
    if json {
        let mut doc = serde_json::json!({
            "run_id": r.run_id.to_string(),
            "exit_code": r.exit_code,
            "outcome": r.report.run.outcome,
            "summary": r.report.summary,
            "report": r.report_path,
        });
        // Only runs that had them say so, so other runs' documents read as before.
        if !r.report.notifications.is_empty() {
            doc["notifications"] = serde_json::json!(r.report.notifications);
        }
        if !r.report.run.limit.is_empty() {
            doc["limit"] = serde_json::json!(r.report.run.limit);
        }
        console::out(format_args!("{doc:#}\n"));
    } else if !(console::quiet() && r.exit_code == exit::OK) {
        console::out(r.report.summary_text());
        if r.report_error.is_none() {
            console::out(format_args!("report: {}\n", r.report_path.display()));
        }
    }
    if let Some(e) = &r.report_error {
        console::error(format_args!(
            "{}\n  = help: free space and rebuild it with `esper-bulk report {}`",
            crate::base::render_error(e),
            r.run_dir.display()
        ));
    }
    r.exit_code
}

fn report_cmd(
    run: &std::path::Path,
    state_dir: Option<PathBuf>,
    formats: &[String],
    stdout: bool,
    env: &Env,
) -> Result<u8, RunError> {
    // A run id needs the state directory; a directory does not (and may be anywhere).
    let state = run::state_dir(state_dir, env).ok();
    let (dir, _) = run::find_run(state.as_deref(), run)?;
    let dir = dir.as_path();
    let report = run::rebuild(dir, &stderr_notices())?;
    let formats = formats
        .iter()
        .map(|f| f.parse())
        .collect::<Result<Vec<run::Format>, _>>()?;
    if stdout {
        let [one] = formats[..] else {
            return Err(RunError::StdoutFormats(formats.len()));
        };
        console::out(one.render(&report));
        return Ok(exit::OK);
    }
    for f in formats {
        console::out(format_args!(
            "{}\n",
            run::write_report(dir, &report, f)?.display()
        ));
    }
    Ok(exit::OK)
}

async fn demo(a: DemoArgs, env: &Env) -> u8 {
    let state = match run::state_dir(a.state_dir, env) {
        Ok(s) => s,
        Err(e) => return fail(&e),
    };
    let mut cfg = run::demo::DemoConfig::new(state);
    cfg.job = a.job;
    cfg.groups = a.groups;
    cfg.devices_per_group = a.devices_per_group;
    cfg.seed = a.seed;
    cfg.output = Output {
        progress: console::progress(),
        renderings: true,
        metrics_file: None,
        notices: stderr_notices(),
    };
    match run::demo::demo(cfg, signal_token()).await {
        Ok(d) => {
            let code = print_result(&d.run, false);
            if !console::quiet() {
                console::out(format_args!("{}\n", d.mock_summary()));
            }
            code
        }
        Err(e) => fail(&e),
    }
}
