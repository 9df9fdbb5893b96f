//! The command line: parses flags, wires the pipeline stages together and maps results to
//! exit codes. The only module that uses `anyhow`; everything below it returns typed errors
//! or outcomes.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use clap::{Args, Parser, Subcommand, ValueEnum};
use tokio_util::sync::CancellationToken;

use crate::esper::dispatch::{EsperDispatch, PollSettings};
use crate::esper::{ApiKey, Client, ClientOptions, Connection};
use crate::exec::{Governor, GovernorConfig, RunOptions};
use crate::job::{Job, KeySource};
use crate::plan::{Plan, Server};
use crate::report::Report;
use crate::{exit, job, mock, plan};

const EXIT_CODES: &str = "Exit codes:
  0    every task succeeded
  1    the run finished with failed tasks
  2    invalid job, plan or usage (nothing was sent)
  3    stopped by a rollout's max_failures threshold
  4    incomplete but resumable (deadline or retry budget)
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
    /// Check job files offline; sends nothing
    Validate {
        /// Job files
        #[arg(required = true)]
        files: Vec<PathBuf>,
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
    /// Job file (or use --plan or --resume)
    #[arg(required_unless_present_any = ["plan", "resume"], conflicts_with_all = ["plan", "resume"])]
    pub file: Option<PathBuf>,
    /// Resume an interrupted run (a run id, or `latest`): finished tasks are kept, the rest
    /// run against the same frozen targets, each read back before any write
    #[arg(long, num_args = 0..=1, default_missing_value = "latest", conflicts_with = "plan", value_name = "RUN_ID")]
    pub resume: Option<String>,
    /// Run a plan saved by `plan --out`, unchanged
    #[arg(long)]
    pub plan: Option<PathBuf>,
    /// Where run directories go (default $XDG_STATE_HOME/esper-bulk or ./.esper-bulk)
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

fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s)
        .map_err(|e| format!("`{s}` is not a duration ({e}); write e.g. 30s, 5m, 1h"))
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
    match cmd {
        Command::Demo(a) => demo(a).await,
        Command::Mock(a) => {
            mock::serve_cli(a)
                .await
                .context("running the mock server")?;
            Ok(exit::OK)
        }
        Command::Validate { files } => Ok(validate(&files)),
        Command::Plan(a) => plan_cmd(a).await,
        Command::Run(a) => run_cmd(a).await,
        Command::Schema => {
            println!(
                "{}",
                serde_json::to_string_pretty(&job::shape::json_schema())?
            );
            Ok(exit::OK)
        }
        Command::Report {
            run_dir,
            format,
            stdout,
        } => report_cmd(&run_dir, &format, stdout),
        Command::Unlock {
            run_id,
            state_dir: dir,
        } => Ok(unlock_cmd(&run_id, &state_dir(dir))),
    }
}

fn env_lookup(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

/// Loads and validates a job file; prints warnings; `Err` carries the rendered diagnostics.
fn load_job(path: &Path) -> Result<Job, String> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        format!(
            "error: cannot read job file {}: {e}\n  = help: check the path\n",
            path.display()
        )
    })?;
    let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
    load_text(&path.display().to_string(), &text, &base, &env_lookup)
}

/// Loads job text; files the job names (CSV lists, APKs, content) are relative to `base`.
/// Warnings are printed; `Err` carries the rendered diagnostics.
fn load_text(
    file: &str,
    text: &str,
    base: &Path,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Job, String> {
    let read = |p: &str| std::fs::read_to_string(base.join(p)).map_err(|e| e.to_string());
    match job::load(file, text, &job::Host { env, read: &read }) {
        Ok((mut job, warnings)) => {
            for w in warnings {
                eprint!("{}", w.render(Some(text)));
            }
            job.resolve_paths(base);
            Ok(job)
        }
        Err(d) => Err(d.render(text)),
    }
}

fn validate(files: &[PathBuf]) -> u8 {
    let mut bad = 0;
    for f in files {
        match load_job(f) {
            Ok(job) => println!(
                "ok: {} (job `{}`, {} steps)",
                f.display(),
                job.name,
                job.steps.len()
            ),
            Err(e) => {
                bad += 1;
                eprintln!("{e}");
            }
        }
    }
    if bad > 0 {
        eprintln!("{bad} of {} job files are invalid", files.len());
        exit::INVALID
    } else {
        exit::OK
    }
}

/// Builds the connection: flags, then the job file, then ESPER_* variables.
fn connection(
    job: Option<&Job>,
    conn: &ConnArgs,
    plan_server: Option<&Server>,
) -> Result<Connection> {
    let from_job = job.map(|j| j.esper.clone()).unwrap_or_default();
    let base_url = conn
        .base_url
        .clone()
        .or_else(|| conn.tenant.as_deref().map(Connection::tenant_url))
        .or_else(|| plan_server.map(|s| s.base_url.clone()))
        .or(from_job.base_url)
        .or_else(|| env_lookup("ESPER_BASE_URL"))
        .or_else(|| env_lookup("ESPER_TENANT").map(|t| Connection::tenant_url(&t)))
        .ok_or_else(|| anyhow!("no Esper server: set `esper.tenant` in the job, pass --tenant or --base-url, or export ESPER_TENANT"))?;
    let enterprise_id = conn
        .enterprise_id
        .clone()
        .or_else(|| plan_server.map(|s| s.enterprise_id.clone()))
        .or(from_job.enterprise_id)
        .or_else(|| env_lookup("ESPER_ENTERPRISE_ID"))
        .ok_or_else(|| anyhow!("no enterprise id: set `esper.enterprise_id`, pass --enterprise-id or export ESPER_ENTERPRISE_ID"))?;
    let source = match (&conn.api_key_file, from_job.api_key) {
        (Some(f), _) => KeySource::File(f.display().to_string()),
        (None, Some(s)) => s,
        (None, None) => KeySource::Env("ESPER_API_KEY".into()),
    };
    let key = match &source {
        KeySource::Env(name) => env_lookup(name)
            .ok_or_else(|| anyhow!("no API key: environment variable {name} is not set"))?,
        KeySource::File(f) => std::fs::read_to_string(f)
            .with_context(|| format!("reading the API key file {f}"))?
            .trim()
            .to_string(),
    };
    let key = ApiKey::new(key);
    if key.is_empty() {
        bail!("the API key is empty (from {source:?})");
    }
    Ok(Connection::new(&base_url, &enterprise_id, key))
}

fn client_options(conn: &ConnArgs) -> ClientOptions {
    ClientOptions {
        connect_timeout: conn.connect_timeout,
        timeout: conn.timeout,
        upload_timeout: conn.timeout * 10,
        ca_cert: conn.ca_cert.clone(),
    }
}

fn governor_for(
    limits: &crate::job::Limits,
    retry: &crate::job::RetrySettings,
    seed: u64,
) -> Arc<Governor> {
    Arc::new(Governor::new(GovernorConfig {
        rate: limits.rate,
        batch: limits.batch,
        max_in_flight: limits.max_in_flight,
        base_pause: retry.initial_delay.max(Duration::from_millis(100)),
        max_pause: retry.max_delay,
        max_retry_after: retry.max_retry_after,
        jitter: Duration::from_millis(20),
        seed,
    }))
}

/// Resolves targets through a throttled client and compiles the plan.
async fn make_plan(job: &Job, client: &Client) -> Result<Plan, String> {
    let server = Server {
        base_url: client.connection().base_url.clone(),
        enterprise_id: client.connection().enterprise_id.clone(),
    };
    let render = |e: plan::PlanError| match e.help() {
        Some(h) => format!("{}: error: {e}\n  help: {h}", job.source),
        None => format!("{}: error: {e}", job.source),
    };
    let resolved = plan::resolve(job, client).await.map_err(render)?;
    for w in &resolved.warnings {
        eprintln!("warning: {w}");
    }
    plan::compile(job, &resolved, server).map_err(render)
}

fn plan_text(p: &Plan, show_requests: bool) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "plan for job `{}` against {} (enterprise {})",
        p.job, p.server.base_url, p.server.enterprise_id
    );
    for (name, t) in &p.targets {
        let kind = match t.kind {
            plan::ItemKind::Group => "groups",
            plan::ItemKind::Device => "devices",
        };
        let sample: Vec<&str> = t.items.iter().take(3).map(|i| i.label()).collect();
        let more = if t.items.len() > 3 { ", …" } else { "" };
        let _ = writeln!(
            out,
            "target {name}: {} {kind} ({}{more})",
            t.items.len(),
            sample.join(", ")
        );
    }
    let _ = writeln!(out, "steps:");
    for s in &p.steps {
        let needs = if s.needs.is_empty() {
            String::new()
        } else {
            format!(", after {}", s.needs.join(", "))
        };
        let fan = match &s.fanout {
            plan::Fanout::Single => "once".to_string(),
            plan::Fanout::PerItem { target } => format!("once per item of {target}"),
            plan::Fanout::Chunks { target, size } => match p.targets.get(target).map(|t| t.kind) {
                Some(plan::ItemKind::Device) => format!("one per {size} devices of {target}"),
                _ => format!("one per group of {target}"),
            },
        };
        let _ = writeln!(
            out,
            "  {:<20} {:<15} {:>7} tasks ({fan}{needs})",
            s.id, s.kind, s.task_count
        );
        if let Some(r) = &s.rollout {
            let stages: Vec<String> = r.stage_ends.iter().map(|e| e.to_string()).collect();
            let _ = writeln!(
                out,
                "  {:<20} rollout: stages end at task {} of {}; stop when failures exceed {}",
                "",
                stages.join(", "),
                s.task_count,
                r.max_failures
            );
        }
    }
    let _ = writeln!(
        out,
        "requests (estimated; command polls are a lower bound):"
    );
    for (route, n) in &p.estimate.requests {
        let _ = writeln!(out, "  {n:>9}  {route}");
    }
    let _ = writeln!(
        out,
        "total {} requests, about {} at {}/s{}",
        p.estimate.total_requests,
        humantime::format_duration(Duration::from_secs(p.estimate.seconds.ceil() as u64)),
        p.limits.rate,
        p.deadline_ms
            .map(|d| format!(" (deadline {})", humantime::format_duration(d)))
            .unwrap_or_default()
    );
    if show_requests {
        let _ = writeln!(out, "writes (nothing is sent by `plan`):");
        for id in p.task_ids() {
            let Some(t) = p.task(id) else { continue };
            for w in t.op.writes(&p.server.enterprise_id) {
                let note = w.note.map(|n| format!("  # {n}")).unwrap_or_default();
                let _ = writeln!(
                    out,
                    "  {} [{}] {} {} {}{note}",
                    t.id,
                    t.step,
                    w.method,
                    w.path,
                    serde_json::to_string(&w.body).unwrap_or_default()
                );
            }
        }
    }
    out
}

async fn plan_cmd(a: PlanArgs) -> Result<u8> {
    let job = match load_job(&a.file) {
        Ok(j) => j,
        Err(e) => {
            eprintln!("{e}");
            return Ok(exit::INVALID);
        }
    };
    let conn = connection(Some(&job), &a.conn, None)?;
    let gov = governor_for(&job.limits, &job.retry, 0);
    let client = Client::new(conn, client_options(&a.conn))?.with_throttle(gov);
    let p = match make_plan(&job, &client).await {
        Ok(p) => p,
        Err(e) => {
            eprintln!("{e}");
            return Ok(exit::INVALID);
        }
    };
    if a.json {
        println!("{}", serde_json::to_string_pretty(&p)?);
    } else {
        print!("{}", plan_text(&p, a.show_requests));
    }
    if let Some(out) = &a.out {
        crate::util::atomic_write(out, serde_json::to_string_pretty(&p)?.as_bytes())
            .with_context(|| format!("writing the plan to {}", out.display()))?;
        eprintln!("plan written to {}", out.display());
    }
    if let Some(deadline) = p.deadline_ms
        && p.estimate.seconds > deadline.as_secs_f64()
    {
        eprintln!(
            "error: the plan needs about {} at {}/s but the deadline is {}\n  help: raise limits.rate (if the tenant allows it) or the deadline, or split the job",
            humantime::format_duration(Duration::from_secs(p.estimate.seconds.ceil() as u64)),
            p.limits.rate,
            humantime::format_duration(deadline)
        );
        return Ok(exit::INVALID);
    }
    Ok(exit::OK)
}

fn report_cmd(dir: &Path, formats: &[String], stdout: bool) -> Result<u8> {
    let plan: Plan = serde_json::from_str(
        &std::fs::read_to_string(dir.join("plan.json"))
            .with_context(|| format!("{} is not a run directory (no plan.json)", dir.display()))?,
    )
    .map_err(|e| anyhow!("{}: not a plan file: {e}", dir.join("plan.json").display()))?;
    let replay = crate::journal::read(&dir.join("journal.jsonl")).map_err(|e| anyhow!("{e}"))?;
    let id = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let report = crate::journal::rebuild_report(&id, &plan, &replay);
    use crate::report::render;
    let render = |f: &str| -> Result<(&'static str, String)> {
        Ok(match f {
            "json" => ("report.json", report.to_json()),
            "md" => ("report.md", render::markdown(&report)),
            "xml" | "junit" => ("report.xml", render::junit(&report)),
            "csv" => ("results.csv", render::csv(&report)),
            "html" => ("report.html", render::html(&report)),
            other => bail!("unknown report format `{other}`; use json, md, xml, csv or html"),
        })
    };
    if stdout {
        let [one] = formats else {
            bail!("--stdout prints one format; give exactly one with --format")
        };
        print!("{}", render(one)?.1);
        return Ok(exit::OK);
    }
    for f in formats {
        let (name, text) = render(f)?;
        crate::util::atomic_write(&dir.join(name), text.as_bytes())
            .with_context(|| format!("writing {}", dir.join(name).display()))?;
        println!("{}", dir.join(name).display());
    }
    Ok(exit::OK)
}

fn unlock_cmd(run_id: &str, state: &Path) -> u8 {
    match crate::lock::unlock(state, run_id) {
        Ok(crate::lock::Unlock::Cleared(h)) => {
            println!("cleared the lock left by {h}");
            exit::OK
        }
        Ok(crate::lock::Unlock::Running(h)) => {
            eprintln!(
                "error: {h} is still running and holds the lock\n  = help: stop it (kill -TERM {}) instead of unlocking; it will finish cleanly",
                h.pid
            );
            exit::LOCKED
        }
        Ok(crate::lock::Unlock::NotFound) => {
            eprintln!(
                "error: no lock of run `{run_id}` in {}\n  = help: check the run id and --state-dir",
                state.join("locks").display()
            );
            exit::INVALID
        }
        Err(e) => {
            eprintln!("error: {e}");
            exit::INVALID
        }
    }
}

/// Takes the job's run lock, or explains who holds it (exit 75).
fn take_lock(
    state: &Path,
    job: &str,
    run_id: &str,
    wait: Option<Duration>,
) -> Result<crate::lock::RunLock, u8> {
    let holder = crate::lock::Holder {
        pid: std::process::id(),
        host: crate::lock::hostname(),
        started: jiff::Timestamp::now().to_string(),
        run_id: run_id.to_string(),
        job: job.to_string(),
    };
    match crate::lock::acquire(state, &holder, wait) {
        Ok(lock) => {
            if let Some(prev) = &lock.taken_over {
                eprintln!(
                    "warning: {prev} ended without releasing its lock (crashed or killed); taking it over"
                );
            }
            Ok(lock)
        }
        Err(
            e @ (crate::lock::LockError::Held { .. } | crate::lock::LockError::HeldUnknown { .. }),
        ) => {
            eprintln!("error: {e}");
            Err(exit::LOCKED)
        }
        Err(e) => {
            eprintln!("error: {e}");
            Err(exit::INVALID)
        }
    }
}

fn state_dir(flag: Option<PathBuf>) -> PathBuf {
    flag.or_else(|| {
        env_lookup("XDG_STATE_HOME")
            .filter(|s| !s.is_empty())
            .map(|s| PathBuf::from(s).join("esper-bulk"))
    })
    .unwrap_or_else(|| PathBuf::from(".esper-bulk"))
}

fn run_id(job: &str) -> String {
    let ts = jiff::Timestamp::now()
        .strftime("%Y%m%dT%H%M%SZ")
        .to_string();
    let safe = crate::util::file_name_for(job);
    format!("{safe}-{ts}-{:04x}", fastrand::u16(..))
}

/// The run directory of `id` (or the most recently used one for `latest`).
fn find_run(state: &Path, id: &str) -> Result<PathBuf> {
    let runs = state.join("runs");
    if id != "latest" {
        let dir = runs.join(id);
        return if dir.join("plan.json").exists() {
            Ok(dir)
        } else {
            bail!(
                "no run `{id}` in {}; see the run ids printed by `run`",
                runs.display()
            )
        };
    }
    let newest = std::fs::read_dir(&runs)
        .with_context(|| format!("no runs in {}", runs.display()))?
        .flatten()
        .filter(|e| e.path().join("plan.json").exists())
        .max_by_key(|e| {
            e.path()
                .join("journal.jsonl")
                .metadata()
                .and_then(|m| m.modified())
                .ok()
        });
    newest
        .map(|e| e.path())
        .ok_or_else(|| anyhow!("no run to resume in {}", runs.display()))
}

async fn resume_cmd(a: &RunArgs, which: &str) -> Result<u8> {
    let state = state_dir(a.state_dir.clone());
    let dir = find_run(&state, which)?;
    let id = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let plan: Plan = serde_json::from_str(
        &std::fs::read_to_string(dir.join("plan.json")).context("reading the run's plan.json")?,
    )
    .map_err(|e| anyhow!("{}: not a plan file: {e}", dir.join("plan.json").display()))?;
    let replay = match crate::journal::read(&dir.join("journal.jsonl")) {
        Ok(r) => r,
        Err(crate::journal::JournalError::Read { .. }) => crate::journal::Replay::default(),
        Err(e) => bail!("{e}"),
    };
    if replay.torn {
        eprintln!(
            "warning: the journal's last line was cut short (a crash mid-write); that task will be read back"
        );
    }
    let prior = replay.succeeded();
    if !replay.in_flight.is_empty() {
        eprintln!(
            "{} tasks were in flight when the run stopped; like every unfinished task they are read back before anything is sent",
            replay.in_flight.len()
        );
    }
    eprintln!(
        "resuming run {id}: {} of {} tasks already succeeded; every other task is read back before it writes",
        prior.len(),
        plan.task_count
    );
    let _lock = match take_lock(&state, &plan.job, &id, a.wait_lock) {
        Ok(l) => l,
        Err(code) => return Ok(code),
    };
    let conn = connection(None, &a.conn, Some(&plan.server))?;
    let gov = governor_for(&plan.limits, &plan.retry, fastrand::u64(..));
    let client = Client::new(conn, client_options(&a.conn))?.with_throttle(gov.clone());
    let deadline = a.deadline.or(plan.deadline_ms);
    execute(
        &id,
        plan,
        client,
        gov,
        &state,
        deadline,
        PollSettings::default(),
        fastrand::u64(..),
        Resume {
            prior,
            reconcile: true,
            metrics_file: a.metrics_file.clone(),
        },
    )
    .await
}

/// What a resumed run carries over, and where else its results go.
#[derive(Default)]
struct Resume {
    prior: std::collections::BTreeMap<u32, crate::exec::Outcome>,
    reconcile: bool,
    metrics_file: Option<PathBuf>,
}

async fn run_cmd(a: RunArgs) -> Result<u8> {
    if let Some(which) = a.resume.clone() {
        return resume_cmd(&a, &which).await;
    }
    let (job, saved) = match (&a.file, &a.plan) {
        (Some(f), None) => match load_job(f) {
            Ok(j) => (Some(j), None),
            Err(e) => {
                eprintln!("{e}");
                return Ok(exit::INVALID);
            }
        },
        (None, Some(p)) => {
            let text = std::fs::read_to_string(p)
                .with_context(|| format!("reading plan {}", p.display()))?;
            let plan: Plan = serde_json::from_str(&text)
                .map_err(|e| anyhow!("{} is not a plan file: {e}", p.display()))?;
            if plan.format != plan::PLAN_FORMAT {
                bail!(
                    "plan {} has format {}, this esper-bulk reads format {}",
                    p.display(),
                    plan.format,
                    plan::PLAN_FORMAT
                );
            }
            (None, Some(plan))
        }
        _ => bail!("give a job file or --plan"),
    };
    // The lock comes first: a run refused for overlapping must not even read the API.
    let state = state_dir(a.state_dir.clone());
    let job_name = job
        .as_ref()
        .map(|j| j.name.clone())
        .or_else(|| saved.as_ref().map(|p| p.job.clone()))
        .unwrap_or_default();
    let id = run_id(&job_name);
    let _lock = match take_lock(&state, &job_name, &id, a.wait_lock) {
        Ok(l) => l,
        Err(code) => return Ok(code),
    };
    let conn = connection(job.as_ref(), &a.conn, saved.as_ref().map(|p| &p.server))?;
    let opts = client_options(&a.conn);
    let (limits, retry) = match (&job, &saved) {
        (Some(j), _) => (j.limits.clone(), j.retry.clone()),
        (_, Some(p)) => (p.limits.clone(), p.retry.clone()),
        _ => unreachable!("one of job or plan is set above"),
    };
    let gov = governor_for(&limits, &retry, fastrand::u64(..));
    let client = Client::new(conn, opts)?.with_throttle(gov.clone());
    let plan = match (job, saved) {
        (Some(j), _) => match make_plan(&j, &client).await {
            Ok(p) => p,
            Err(e) => {
                eprintln!("{e}");
                return Ok(exit::INVALID);
            }
        },
        (_, Some(p)) => p,
        _ => unreachable!("one of job or plan is set above"),
    };
    let deadline = a.deadline.or(plan.deadline_ms);
    execute(
        &id,
        plan,
        client,
        gov,
        &state,
        deadline,
        PollSettings::default(),
        fastrand::u64(..),
        Resume {
            metrics_file: a.metrics_file.clone(),
            ..Resume::default()
        },
    )
    .await
}

/// Runs a plan, writes the run directory, prints the summary; returns the exit code.
#[allow(clippy::too_many_arguments)]
async fn execute(
    id: &str,
    plan: Plan,
    client: Client,
    gov: Arc<Governor>,
    state: &Path,
    deadline: Option<Duration>,
    poll: PollSettings,
    seed: u64,
    resume: Resume,
) -> Result<u8> {
    let dir = state.join("runs").join(id);
    std::fs::create_dir_all(&dir)
        .with_context(|| format!("creating the run directory {}", dir.display()))?;
    crate::util::atomic_write(
        &dir.join("plan.json"),
        serde_json::to_string_pretty(&plan)?.as_bytes(),
    )
    .context("writing plan.json")?;
    let cancel = CancellationToken::new();
    spawn_signal_handler(cancel.clone());
    let started_at = jiff::Timestamp::now();
    let plan = Arc::new(plan);
    let dispatch = EsperDispatch::new(client, poll);
    eprintln!(
        "run {id}: {} tasks; report in {}",
        plan.task_count,
        dir.display()
    );
    // Stop dispatching early enough to drain in-flight work before the deadline.
    let drain = Duration::from_secs(30);
    let opts = RunOptions {
        deadline: deadline
            .map(|d| tokio::time::Instant::now() + d.saturating_sub(drain.min(d / 10))),
        drain,
        seed,
        prior: resume.prior,
        reconcile: resume.reconcile,
    };
    // Every outcome goes to the journal; if it cannot be written (a full disk), the run
    // stops dispatching rather than doing work it cannot record.
    let mut journal =
        crate::journal::Journal::open(&dir.join("journal.jsonl")).context("opening the journal")?;
    journal
        .append(&crate::journal::Entry::Start {
            format: crate::journal::JOURNAL_FORMAT,
            run_id: id.to_string(),
            job: plan.job.clone(),
            tasks: plan.task_count,
            at: started_at.to_string(),
            resumed: resume.reconcile,
        })
        .context("writing the journal")?;
    let mut journal_error: Option<String> = None;
    let stop = cancel.clone();
    let progress = crate::progress::Progress::new(&plan, gov.clone());
    let step_of: std::collections::BTreeMap<&str, usize> = plan
        .steps
        .iter()
        .enumerate()
        .map(|(i, s)| (s.id.as_str(), i))
        .collect();
    let out = crate::exec::run(plan.clone(), dispatch, opts, cancel, |event| {
        let entry = match event {
            crate::exec::Event::Dispatched(t) => crate::journal::Entry::Intent { task: t.0 },
            crate::exec::Event::Finished(o) => {
                tracing::info!(task = %o.task, status = o.status.as_str(), "task finished");
                if let Some(p) = &progress {
                    p.task_done(step_of[plan.step_of(o.task).id.as_str()], o);
                }
                crate::journal::Entry::Outcome(o.into())
            }
        };
        if journal_error.is_none()
            && let Err(e) = journal.append(&entry)
        {
            tracing::error!(error = %e, "cannot record the run; stopping it");
            journal_error = Some(e.to_string());
            stop.cancel();
        }
    })
    .await;
    if let Some(p) = &progress {
        p.finish();
    }
    let gov_stats = gov.stats();
    let finish = crate::journal::Entry::Finish(crate::journal::FinishRecord::of_run(
        started_at.to_string(),
        jiff::Timestamp::now().to_string(),
        &out,
        &gov_stats,
    ));
    if let Err(e) = journal.append(&finish).and_then(|_| journal.sync()) {
        journal_error.get_or_insert(e.to_string());
    }
    let report = Report::build(id, &plan, &out, gov_stats, started_at);
    let path = dir.join("report.json");
    crate::util::atomic_write(&path, report.to_json().as_bytes())
        .with_context(|| format!("writing {}", path.display()))?;
    use crate::report::render;
    for (name, text) in [
        ("report.md", render::markdown(&report)),
        ("report.xml", render::junit(&report)),
        ("results.csv", render::csv(&report)),
        ("report.html", render::html(&report)),
    ] {
        // report.json is the record; a failure here costs a rendering, not the run.
        if let Err(e) = crate::util::atomic_write(&dir.join(name), text.as_bytes()) {
            eprintln!("warning: cannot write {}: {e}", dir.join(name).display());
        }
    }
    if let Some(p) = &resume.metrics_file
        && let Err(e) = crate::util::atomic_write(p, report.prometheus().as_bytes())
    {
        eprintln!("warning: cannot write metrics to {}: {e}", p.display());
    }
    print!("{}", report.summary_text());
    if let Some(e) = journal_error {
        eprintln!(
            "error: {e}\n  = help: free space and resume with `esper-bulk run --resume {id}`"
        );
        println!("report: {}", path.display());
        return Ok(exit::INCOMPLETE);
    }
    println!("report: {}", path.display());
    Ok(report.run.exit_code)
}

fn spawn_signal_handler(cancel: CancellationToken) {
    tokio::spawn(async move {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => Some(s),
                Err(e) => {
                    tracing::warn!(error = %e, "cannot listen for SIGTERM");
                    None
                }
            };
        let mut seen = 0;
        loop {
            tokio::select! {
                r = tokio::signal::ctrl_c() => if r.is_err() { return },
                _ = async { match term.as_mut() { Some(t) => { t.recv().await; } None => std::future::pending().await } } => {}
            }
            seen += 1;
            if seen == 1 {
                eprintln!("stopping: finishing in-flight requests (signal again to stop at once)");
                cancel.cancel();
            } else {
                eprintln!("stopped at once");
                std::process::exit(exit::INTERRUPTED as i32);
            }
        }
    });
}

/// The built-in demo job, so `demo` works from any directory.
pub const DEMO_JOB: &str = include_str!("../jobs/demo.yaml");

async fn demo(a: DemoArgs) -> Result<u8> {
    let (file, text) = match &a.job {
        Some(p) => (
            p.display().to_string(),
            std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?,
        ),
        None => ("jobs/demo.yaml".to_string(), DEMO_JOB.to_string()),
    };
    let mut cfg = mock::MockConfig::new(a.seed);
    cfg.groups = a.groups;
    cfg.devices_per_group = a.devices_per_group;
    cfg.offline_fraction = 0.0;
    cfg.faults = mock::Faults {
        rate_limit: Some(mock::RateLimit {
            rate: 30.0,
            burst: 10,
            retry_after: false,
            penalty: Duration::from_millis(500),
        }),
        error_rate: 0.02,
        commit_then_fail_rate: 0.02,
        drop_rate: 0.0,
        latency: Duration::from_millis(5),
        latency_jitter: Duration::from_millis(10),
    };
    cfg.commands = mock::CommandBehaviour {
        failure_rate: 0.0,
        timeout_rate: 0.0,
        min_duration: Duration::from_millis(300),
        max_duration: Duration::from_millis(1500),
    };
    let server = mock::MockServer::start(cfg)
        .await
        .context("starting the mock Esper server")?;
    eprintln!(
        "mock Esper at {} ({} store groups x {} devices; server limit 30 req/s, 2% 5xx, 2% commit-then-fail)",
        server.base_url(),
        a.groups,
        a.devices_per_group
    );
    let key = server.api_key().to_string();
    let env = |n: &str| {
        if n == "ESPER_API_KEY" {
            Some(key.clone())
        } else {
            env_lookup(n)
        }
    };
    // The built-in job names no files; a --job file's paths are relative to it.
    let base = a
        .job
        .as_deref()
        .and_then(Path::parent)
        .map(Path::to_path_buf)
        .unwrap_or_default();
    let job = match load_text(&file, &text, &base, &env) {
        Ok(j) => j,
        Err(e) => {
            eprint!("{e}");
            return Ok(exit::INVALID);
        }
    };
    let conn = Connection::new(
        &server.base_url(),
        server.enterprise_id(),
        ApiKey::new(key.clone()),
    );
    let gov = governor_for(&job.limits, &job.retry, a.seed);
    let client = Client::new(conn, ClientOptions::default())?.with_throttle(gov.clone());
    let plan = match make_plan(&job, &client).await {
        Ok(p) => p,
        Err(e) => {
            eprintln!("{e}");
            return Ok(exit::INVALID);
        }
    };
    let poll = PollSettings {
        initial: Duration::from_millis(500),
        max: Duration::from_secs(3),
    };
    let demo_id = run_id(&plan.job);
    let code = execute(
        &demo_id,
        plan,
        client,
        gov,
        &state_dir(a.state_dir),
        job.deadline,
        poll,
        a.seed,
        Resume::default(),
    )
    .await?;
    let stats = server.stats();
    println!(
        "mock saw {} requests, {} answered 429, peak {} in one second; duplicates created: {} alarm rules, {} command requests",
        stats.requests_total,
        stats.rate_limited,
        stats.peak_1s,
        stats.duplicates.alarm_rules,
        stats.duplicates.command_requests
    );
    server.shutdown().await;
    Ok(code)
}
