//! The command line: parses flags, turns them into the library's settings
//! ([`run::RunConfig`], [`run::PlanConfig`], …), prints what comes back and maps it to an
//! exit code. The only module that uses `anyhow`, and the only one that prints; what a
//! command does lives in [`crate::run`].

use std::io::IsTerminal;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand, ValueEnum};
use tokio_util::sync::CancellationToken;

use crate::esper::ClientOptions;
use crate::run::{
    self, ConnectionSettings, Env, KeyOverride, Notices, Output, PlanConfig, RunConfig, RunError,
    RunResult, Source,
};
use crate::{exit, job, mock};

const EXIT_CODES: &str = "Exit codes:
  0    every task succeeded
  1    the run finished with failed tasks
  2    invalid job, plan or usage (nothing was sent)
  3    stopped by a rollout's max_failures threshold
  4    incomplete but resumable (deadline, retry budget, or a full disk)
  75   another run holds the lock
  130  interrupted (SIGINT/SIGTERM)";

/// Run bulk operations against the Esper MDM API safely and fast.
#[derive(Parser, Debug)]
#[command(name = "esper-bulk", version, after_help = EXIT_CODES)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
    /// More log output (-v info, -vv debug)
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// Only errors
    #[arg(short, long, global = true)]
    pub quiet: bool,
    /// Log format on stderr
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

#[derive(Clone, Copy, Debug, ValueEnum, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Start the embedded mock Esper, run jobs/demo.yaml against it and write the report
    Demo(DemoArgs),
    /// Run the embedded mock Esper server for trying jobs without a tenant
    Mock(mock::MockArgs),
    /// Check job files offline; sends nothing and needs no secrets
    Validate {
        /// Job files, directories (their *.yaml and *.yml files, in name order), or - for
        /// standard input
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// Print one JSON document of every diagnostic on stdout
        #[arg(long)]
        json: bool,
    },
    /// Resolve targets (read-only) and show the task graph, requests and duration
    Plan(PlanArgs),
    /// Run a job file or a saved plan
    Run(RunArgs),
    /// Print the JSON Schema of job files (for editors: yaml-language-server)
    Schema,
    /// Rebuild a run's reports from its plan and journal alone
    Report {
        /// The run directory (…/runs/<run id>)
        run_dir: PathBuf,
        /// Which files to write (default: all); also `-` style printing with --stdout
        #[arg(long, value_delimiter = ',', default_value = "json,md,xml,csv,html")]
        format: Vec<String>,
        /// Print the one format given instead of writing files
        #[arg(long)]
        stdout: bool,
    },
    /// Clear the lock record a dead run left behind (a live run is never unlocked)
    Unlock {
        /// The run id, as printed by `run` and named in the "already running" message
        run_id: String,
        /// The state directory the run used
        #[arg(long)]
        state_dir: Option<PathBuf>,
    },
}

#[derive(Args, Debug, Clone)]
pub struct ConnArgs {
    /// Esper API base URL (overrides the job file; else ESPER_BASE_URL)
    #[arg(long)]
    pub base_url: Option<String>,
    /// Tenant name, for https://{tenant}-api.esper.cloud/api (else ESPER_TENANT)
    #[arg(long)]
    pub tenant: Option<String>,
    /// Enterprise id (overrides the job file; else ESPER_ENTERPRISE_ID)
    #[arg(long)]
    pub enterprise_id: Option<String>,
    /// Read the API key from this file (else the job's api_key/api_key_file, else ESPER_API_KEY)
    #[arg(long)]
    pub api_key_file: Option<PathBuf>,
    /// Extra CA certificates (PEM) to trust, e.g. a corporate proxy's
    #[arg(long)]
    pub ca_cert: Option<PathBuf>,
    /// Connect timeout
    #[arg(long, value_parser = parse_duration, default_value = "10s")]
    pub connect_timeout: Duration,
    /// Timeout of one request (uploads get ten times as long)
    #[arg(long, value_parser = parse_duration, default_value = "60s")]
    pub timeout: Duration,
}

#[derive(Args, Debug)]
pub struct PlanArgs {
    /// Job file
    pub file: PathBuf,
    /// Print the plan as JSON
    #[arg(long)]
    pub json: bool,
    /// Write the frozen plan to this file, for `run --plan`
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// List every write (method, path, body) without sending it
    #[arg(long)]
    pub show_requests: bool,
    #[command(flatten)]
    pub conn: ConnArgs,
}

#[derive(Args, Debug)]
pub struct RunArgs {
    /// Job file (or use --plan or --resume); with --resume, continue this job's latest
    /// unfinished run, or start one when there is none
    #[arg(required_unless_present_any = ["plan", "resume"], conflicts_with = "plan")]
    pub file: Option<PathBuf>,
    /// Resume an interrupted run (a run id, or `latest`): finished tasks are kept, the rest
    /// run against the same frozen targets, each read back before any write
    #[arg(long, num_args = 0..=1, default_missing_value = "latest", conflicts_with = "plan", value_name = "RUN_ID")]
    pub resume: Option<String>,
    /// Run a plan saved by `plan --out`, unchanged
    #[arg(long)]
    pub plan: Option<PathBuf>,
    /// Where run directories and locks go (default $STATE_DIRECTORY, else
    /// $XDG_STATE_HOME/esper-bulk, else ~/.local/state/esper-bulk)
    #[arg(long)]
    pub state_dir: Option<PathBuf>,
    /// Stop dispatching after this long (overrides the job's deadline)
    #[arg(long, value_parser = parse_duration)]
    pub deadline: Option<Duration>,
    /// When another run of this job holds the lock, wait up to this long instead of exiting 75
    #[arg(long, value_parser = parse_duration)]
    pub wait_lock: Option<Duration>,
    /// Write Prometheus metrics of the run here (atomically), for node_exporter's textfile collector
    #[arg(long)]
    pub metrics_file: Option<PathBuf>,
    #[command(flatten)]
    pub conn: ConnArgs,
}

#[derive(Args, Debug)]
pub struct DemoArgs {
    /// Job to run instead of the built-in jobs/demo.yaml
    #[arg(long)]
    pub job: Option<PathBuf>,
    /// Where the run directory goes
    #[arg(long)]
    pub state_dir: Option<PathBuf>,
    /// Store groups in the mock
    #[arg(long, default_value_t = 40)]
    pub groups: usize,
    /// Devices per store group
    #[arg(long, default_value_t = 10)]
    pub devices_per_group: usize,
    /// Seed for the mock and the engine's jitter
    #[arg(long, default_value_t = 7)]
    pub seed: u64,
}

/// A duration flag that is not one, or is zero where zero would hang or fail every
/// request at once.
#[derive(Debug, thiserror::Error)]
enum DurationFlagError {
    #[error("`{value}` is not a duration ({why}); write e.g. 30s, 5m, 1h")]
    Invalid { value: String, why: String },
    #[error("`{0}` is zero; give a positive duration such as 30s")]
    Zero(String),
}

fn parse_duration(s: &str) -> Result<Duration, DurationFlagError> {
    match humantime::parse_duration(s) {
        Ok(d) if d.is_zero() => Err(DurationFlagError::Zero(s.to_string())),
        Ok(d) => Ok(d),
        Err(e) => Err(DurationFlagError::Invalid {
            value: s.to_string(),
            why: e.to_string(),
        }),
    }
}

/// Parses arguments, runs the command and returns the exit code.
pub fn main() -> u8 {
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
            eprintln!("error: cannot start the async runtime: {e}");
            return exit::INVALID;
        }
    };
    match rt.block_on(dispatch(cli.command)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            exit::INVALID
        }
    }
}

fn init_logging(cli: &Cli) {
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
        LogFormat::Text => builder
            .with_ansi(std::io::stderr().is_terminal())
            .try_init(),
    };
}

async fn dispatch(cmd: Command) -> Result<u8> {
    let env = Env::process();
    Ok(match cmd {
        Command::Demo(a) => demo(a, &env).await,
        Command::Mock(a) => {
            mock::serve_cli(a)
                .await
                .context("running the mock server")?;
            exit::OK
        }
        Command::Validate { files, json } => validate(&files, json, &env)?,
        Command::Plan(a) => plan_cmd(a, &env).await?,
        Command::Run(a) => run_cmd(a, &env).await,
        Command::Schema => {
            println!(
                "{}",
                serde_json::to_string_pretty(&job::shape::json_schema())?
            );
            exit::OK
        }
        Command::Report {
            run_dir,
            format,
            stdout,
        } => report_cmd(&run_dir, &format, stdout).unwrap_or_else(|e| fail(&e)),
        Command::Unlock { run_id, state_dir } => {
            match run::state_dir(state_dir, &env).and_then(|s| run::unlock(&s, &run_id)) {
                Ok(h) => {
                    println!("cleared the lock left by {h}");
                    exit::OK
                }
                Err(e) => fail(&e),
            }
        }
    })
}

/// Prints why a command could not be done; returns its exit code.
fn fail(e: &RunError) -> u8 {
    if e.is_rendered() {
        eprintln!("{e}");
    } else {
        eprintln!("{}", crate::base::render_error(e));
    }
    e.exit_code()
}

/// Notices go to stderr, like logs; stdout is for results.
fn stderr_notices() -> Notices {
    Notices::new(|n| eprintln!("{n}"))
}

/// Loads a job file, printing its warnings.
fn load(path: &std::path::Path, env: &Env) -> Result<job::Job, RunError> {
    let loaded = run::load_job(path, env)?;
    for w in &loaded.warnings {
        eprint!("{w}");
    }
    Ok(loaded.job)
}

fn validate(files: &[PathBuf], json: bool, env: &Env) -> Result<u8> {
    let v = run::validate_paths(files, env, &mut std::io::stdin());
    if json {
        println!("{}", serde_json::to_string_pretty(&v.to_json())?);
    } else {
        let (out, err) = v.text();
        print!("{out}");
        eprint!("{err}");
    }
    Ok(v.exit_code())
}

fn connection(conn: &ConnArgs, env: &Env) -> ConnectionSettings {
    ConnectionSettings {
        base_url: conn.base_url.clone(),
        tenant: conn.tenant.clone(),
        enterprise_id: conn.enterprise_id.clone(),
        api_key: conn.api_key_file.clone().map(KeyOverride::File),
        client: ClientOptions {
            connect_timeout: conn.connect_timeout,
            timeout: conn.timeout,
            upload_timeout: conn.timeout * 10,
            ca_cert: conn.ca_cert.clone(),
        },
        env: env.clone(),
    }
}

async fn plan_cmd(a: PlanArgs, env: &Env) -> Result<u8> {
    let job = match load(&a.file, env) {
        Ok(j) => j,
        Err(e) => return Ok(fail(&e)),
    };
    let mut cfg = PlanConfig::new(job, connection(&a.conn, env));
    cfg.notices = stderr_notices();
    let p = match run::plan(cfg).await {
        Ok(p) => p,
        Err(e) => return Ok(fail(&e)),
    };
    if a.json {
        println!("{}", serde_json::to_string_pretty(&p)?);
    } else {
        print!(
            "{}",
            crate::plan::plan_text(&p, a.show_requests, &crate::esper::adapter::EsperPaths)
        );
    }
    if let Some(out) = &a.out {
        if let Err(e) = run::write_plan(out, &p) {
            return Ok(fail(&e));
        }
        eprintln!("plan written to {}", out.display());
    }
    Ok(run::check_deadline(&p, &stderr_notices())
        .err()
        .map_or(exit::OK, |e| fail(&e)))
}

async fn run_cmd(a: RunArgs, env: &Env) -> u8 {
    let state = match run::state_dir(a.state_dir.clone(), env) {
        Ok(s) => s,
        Err(e) => return fail(&e),
    };
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
    let mut cfg = RunConfig::new(source, connection(&a.conn, env), state);
    cfg.deadline = a.deadline;
    cfg.wait_lock = a.wait_lock;
    cfg.output = Output {
        progress: true,
        renderings: true,
        metrics_file: a.metrics_file,
        notices: stderr_notices(),
    };
    match run::run(cfg, signal_token()).await {
        Ok(r) => print_result(&r),
        Err(e) => fail(&e),
    }
}

/// A token the first SIGINT/SIGTERM cancels (the second exits at once).
fn signal_token() -> CancellationToken {
    let cancel = CancellationToken::new();
    run::cancel_on_signals(cancel.clone(), stderr_notices());
    cancel
}

fn print_result(r: &RunResult) -> u8 {
    print!("{}", r.report.summary_text());
    if let Some(e) = &r.journal_error {
        eprintln!(
            "error: {e}\n  = help: free space and resume with `esper-bulk run --resume {}`",
            r.run_id
        );
    }
    match &r.report_error {
        Some(e) => eprintln!(
            "{}\n  = help: free space and rebuild it with `esper-bulk report {}`",
            crate::base::render_error(e),
            r.run_dir.display()
        ),
        None => println!("report: {}", r.report_path.display()),
    }
    r.exit_code
}

fn report_cmd(dir: &std::path::Path, formats: &[String], stdout: bool) -> Result<u8, RunError> {
    let report = run::rebuild(dir, &stderr_notices())?;
    let formats = formats
        .iter()
        .map(|f| f.parse())
        .collect::<Result<Vec<run::Format>, _>>()?;
    if stdout {
        let [one] = formats[..] else {
            return Err(RunError::StdoutFormats(formats.len()));
        };
        print!("{}", one.render(&report));
        return Ok(exit::OK);
    }
    for f in formats {
        println!("{}", run::write_report(dir, &report, f)?.display());
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
        progress: true,
        renderings: true,
        metrics_file: None,
        notices: stderr_notices(),
    };
    match run::demo::demo(cfg, signal_token()).await {
        Ok(d) => {
            let code = print_result(&d.run);
            println!("{}", d.mock_summary());
            code
        }
        Err(e) => fail(&e),
    }
}
