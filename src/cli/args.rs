//! The command line's grammar: every subcommand, flag and default, with the help text
//! clap prints, and the parsers for flag values. What a command does with them is
//! `cli/mod.rs`'s; the exit codes listed here are [`crate::exit`]'s.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum, ValueHint};
use clap_complete::engine::ArgValueCompleter;

use crate::mock;

pub const EXIT_CODES: &str = "Exit codes:
  0    every task succeeded
  1    the run finished with failed tasks
  2    invalid job, plan or usage (nothing was sent)
  3    stopped by a rollout's max_failures threshold
  4    incomplete but resumable (deadline, retry budget, or a full disk)
  5    the API could not be reached or refused the key or enterprise (nothing was written)
  6    plan --detailed-exitcode: the plan would write (0: nothing to write)
  75   another run holds the lock
  130  interrupted (SIGINT/SIGTERM)";

/// Run bulk operations against the Esper MDM API safely and fast.
#[derive(Parser, Debug)]
#[command(name = "esper-bulk", version, after_help = EXIT_CODES)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
    /// More log output (-v info, -vv debug)
    #[arg(short, long, global = true, action = clap::ArgAction::Count, conflicts_with = "quiet")]
    pub verbose: u8,
    /// Print nothing on success: only warnings and errors (and a failed run's summary)
    #[arg(short, long, global = true)]
    pub quiet: bool,
    /// Log format on stderr (json: every stderr line is one JSON object)
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// The config file with named contexts (default $XDG_CONFIG_HOME/esper-bulk/config.toml,
    /// else ~/.config/esper-bulk/config.toml)
    #[arg(long, global = true, value_name = "PATH", value_hint = ValueHint::FilePath)]
    pub config: Option<PathBuf>,
    /// The context (server, enterprise, key) to use from the config file (else
    /// $ESPER_BULK_CONTEXT, else the file's default_context)
    #[arg(long, global = true, value_name = "NAME", add = ArgValueCompleter::new(super::complete::contexts))]
    pub context: Option<String>,
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
    Mock(MockCmd),
    /// Check job files offline; sends nothing and needs no secrets
    Validate {
        /// Job files, directories (their *.yaml and *.yml files, in name order), or - for
        /// standard input
        #[arg(required = true, value_hint = ValueHint::FilePath)]
        files: Vec<PathBuf>,
        /// Print one JSON document of every diagnostic on stdout
        #[arg(long)]
        json: bool,
    },
    /// Resolve targets (read-only) and show the task graph, requests and duration
    Plan(PlanArgs),
    /// Run a job file or a saved plan
    Run(RunArgs),
    /// Export devices, groups, apps, installs, alarm rules or commands without a job file
    Export(ExportArgs),
    /// Print the JSON Schema of job files (for editors: yaml-language-server)
    Schema,
    /// Rebuild a run's reports from its plan and journal alone
    Report {
        /// The run: its id (in the state directory) or its directory (…/runs/<run id>)
        #[arg(value_name = "RUN", add = ArgValueCompleter::new(super::complete::run_ids))]
        run: PathBuf,
        /// Which files to write (default: all); also `-` style printing with --stdout
        #[arg(
            long,
            value_delimiter = ',',
            default_value = "json,md,xml,csv,html,devices"
        )]
        format: Vec<String>,
        /// Print the one format given instead of writing files
        #[arg(long)]
        stdout: bool,
        /// The state directory a run id is looked up in
        #[arg(long, value_hint = ValueHint::DirPath)]
        state_dir: Option<PathBuf>,
    },
    /// Clear the lock record a dead run left behind (a live run is never unlocked)
    Unlock {
        /// The run: its id, as printed by `run` and named in the "already running" message,
        /// or its directory
        #[arg(value_name = "RUN", add = ArgValueCompleter::new(super::complete::run_ids))]
        run: String,
        /// The state directory the run used
        #[arg(long, value_hint = ValueHint::DirPath)]
        state_dir: Option<PathBuf>,
    },
    /// The named contexts (server, enterprise, where the key is) in the config file
    #[command(subcommand)]
    Context(ContextCmd),
    /// The runs in the state directory, newest first
    Runs(RunsArgs),
    /// Delete old run directories (never a locked or unfinished run)
    Prune(PruneArgs),
    /// Print a shell completion script (static; see the README for live run-id completion)
    Completions {
        /// The shell
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff)
    Man,
    /// The Redis coordinator several hosts share (`run --coordinator`)
    #[command(subcommand)]
    Coordinator(CoordinatorCmd),
}

#[derive(Subcommand, Debug)]
pub enum CoordinatorCmd {
    /// The shared bucket, the shared pause, the lock holders and the processes seen in the
    /// last minute, for one tenant and enterprise (needs no API key)
    Status(CoordStatusArgs),
}

#[derive(Args, Debug)]
pub struct CoordStatusArgs {
    /// A job file whose `esper:` block names the server and enterprise (else the flags,
    /// the context or ESPER_*)
    #[arg(value_hint = ValueHint::FilePath)]
    pub file: Option<PathBuf>,
    /// Print one JSON document
    #[arg(long)]
    pub json: bool,
    /// The Redis URL (else $ESPER_BULK_REDIS_URL)
    #[arg(long, value_name = "URL")]
    pub coordinator: Option<String>,
    #[command(flatten)]
    pub conn: ConnArgs,
}

/// `run --coordinator`: share the tenant's budget and the run lock through Redis.
#[derive(Args, Debug, Clone)]
pub struct CoordArgs {
    /// Share the tenant's rate budget and the run lock with other processes and hosts
    /// through this Redis, redis://[:PASSWORD@]HOST[:PORT][/DB] (else
    /// $ESPER_BULK_REDIS_URL); the run does not start if it cannot be reached
    #[arg(long, value_name = "URL")]
    pub coordinator: Option<String>,
    /// How many processes usually share the tenant: while the coordinator is unreachable
    /// each paces at limits.rate divided by this (else the job's
    /// limits.expected_processes, else 2)
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub expected_processes: Option<u32>,
}

/// `esper-bulk mock`: the mock's own flags and what the command line adds.
#[derive(Args, Debug)]
pub struct MockCmd {
    #[command(flatten)]
    pub args: mock::MockArgs,
    /// Write (or update) context NAME for this mock into the config file, its key into a
    /// file next to it, so `plan`/`run` reach the mock without exports
    #[arg(long, value_name = "NAME")]
    pub write_context: Option<String>,
}

#[derive(Subcommand, Debug)]
pub enum ContextCmd {
    /// Every context: name, server, enterprise and where its key comes from (never the key)
    List {
        /// Print one JSON document
        #[arg(long)]
        json: bool,
    },
    /// One context (default: the one that would be used)
    Show {
        /// The context (default: --context, else ESPER_BULK_CONTEXT, else default_context)
        #[arg(add = ArgValueCompleter::new(super::complete::contexts))]
        name: Option<String>,
        /// Print one JSON document
        #[arg(long)]
        json: bool,
    },
    /// Make NAME the file's default_context
    Use {
        #[arg(add = ArgValueCompleter::new(super::complete::contexts))]
        name: String,
    },
}

#[derive(Args, Debug)]
pub struct RunsArgs {
    /// Only runs of this job (its `name:`)
    #[arg(long, value_name = "NAME")]
    pub job: Option<String>,
    /// At most this many runs (the newest)
    #[arg(long, value_name = "N")]
    pub limit: Option<usize>,
    /// Print one JSON document
    #[arg(long)]
    pub json: bool,
    /// The state directory (default as for `run`)
    #[arg(long, value_hint = ValueHint::DirPath)]
    pub state_dir: Option<PathBuf>,
}

#[derive(Args, Debug)]
#[command(group = clap::ArgGroup::new("policy").required(true).multiple(true).args(["keep", "older_than"]))]
pub struct PruneArgs {
    /// Keep the newest N runs of each job
    #[arg(long, value_name = "N")]
    pub keep: Option<usize>,
    /// Delete runs that ended longer ago than this (e.g. 30d); with --keep, a run goes
    /// only when both say so
    #[arg(long, value_name = "AGE", value_parser = parse_duration)]
    pub older_than: Option<Duration>,
    /// Only runs of this job
    #[arg(long, value_name = "NAME")]
    pub job: Option<String>,
    /// Say what would be deleted, delete nothing
    #[arg(long)]
    pub dry_run: bool,
    /// Print one JSON document
    #[arg(long)]
    pub json: bool,
    /// The state directory (default as for `run`)
    #[arg(long, value_hint = ValueHint::DirPath)]
    pub state_dir: Option<PathBuf>,
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
    /// Largest response body accepted (bigger answers fail the request)
    #[arg(long, value_parser = crate::esper::parse_size, default_value = "32MiB")]
    pub max_body: u64,
}

#[derive(Args, Debug)]
pub struct PlanArgs {
    /// Job file
    #[arg(value_hint = ValueHint::FilePath)]
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
    /// Exit 0 when the plan would write nothing and 6 when it would (2 stays "invalid"),
    /// so cron can detect drift of the tenant against the job
    #[arg(long)]
    pub detailed_exitcode: bool,
    #[command(flatten)]
    pub subset: SubsetArgs,
    #[command(flatten)]
    pub conn: ConnArgs,
}

#[derive(Args, Debug)]
pub struct RunArgs {
    /// Job file (or use --plan or --resume); with --resume, continue this job's latest
    /// unfinished run, or start one when there is none
    #[arg(required_unless_present_any = ["plan", "resume"], conflicts_with = "plan", value_hint = ValueHint::FilePath)]
    pub file: Option<PathBuf>,
    /// Resume an interrupted run (a run id, or `latest`): finished tasks are kept, the rest
    /// run against the same frozen targets, each read back before any write
    #[arg(long, num_args = 0..=1, default_missing_value = "latest", conflicts_with = "plan", value_name = "RUN_ID", add = ArgValueCompleter::new(super::complete::run_ids))]
    pub resume: Option<String>,
    /// Run a plan saved by `plan --out`, unchanged
    #[arg(long, value_hint = ValueHint::FilePath)]
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
    /// Print one JSON document on stdout: the run id, exit code, outcome, summary and report path
    #[arg(long)]
    pub json: bool,
    /// A saved plan whose view of the tenant is older than this is read again before the
    /// run acts on it; tasks whose action changed are reported as drifted since plan
    #[arg(long, value_parser = parse_duration, default_value = "15m")]
    pub max_plan_age: Duration,
    #[command(flatten)]
    pub subset: SubsetArgs,
    #[command(flatten)]
    pub notify: NotifyArgs,
    #[command(flatten)]
    pub coord: CoordArgs,
    #[command(flatten)]
    pub conn: ConnArgs,
}

// ---------------------------------------------------------------- subsets and notifications

/// `--limit`, shared by `plan` and `run`.
#[derive(Args, Debug, Clone, Default)]
pub struct SubsetArgs {
    /// Touch only the targets this matches (repeatable): a group path or glob
    /// (`Stores/North/*`), a group name or id, a device name, serial or id, or @FILE with
    /// one per line. Not with --plan or --resume, whose targets are frozen
    #[arg(long, value_name = "PATTERN")]
    pub limit: Vec<String>,
}

/// `run --notify`.
#[derive(Args, Debug, Clone, Default)]
pub struct NotifyArgs {
    /// Also POST the run's summary as JSON to this webhook when the run ends, whatever the
    /// outcome (repeatable; the URL is never logged or written; a quoted '${NAME}' is read
    /// from the environment when the run sends)
    #[arg(long, value_name = "URL")]
    pub notify: Vec<String>,
}

#[derive(Args, Debug)]
pub struct ExportArgs {
    /// What to export: devices, groups, apps, installed, alarm_rules or commands (also
    /// written `what=devices`)
    pub what: String,
    /// Group names, paths or globs (`Stores/**`) whose devices (or groups) are exported;
    /// repeatable. Default: all
    #[arg(long)]
    pub target: Vec<String>,
    /// Group paths or globs left out of --target; repeatable
    #[arg(long, requires = "target")]
    pub exclude: Vec<String>,
    /// Columns (devices, groups), comma-separated: id,name,serial,group,… or dotted paths
    #[arg(long, value_delimiter = ',')]
    pub fields: Vec<String>,
    /// csv, json or jsonl (default: from --output's extension, else csv)
    #[arg(long)]
    pub format: Option<String>,
    /// Output file (default: exports/<what>.<format> in the run directory)
    #[arg(short, long)]
    pub output: Option<PathBuf>,
    /// `installed`: the package
    #[arg(long)]
    pub package: Option<String>,
    /// `installed`: only this version code
    #[arg(long)]
    pub version_code: Option<String>,
    /// `commands`: since this long ago (24h) or `last_run` (this export's last success)
    #[arg(long)]
    pub since: Option<String>,
    /// Where run directories and locks go (as for `run`)
    #[arg(long)]
    pub state_dir: Option<PathBuf>,
    /// Print one JSON document on stdout: the run id, exit code, file and rows
    #[arg(long)]
    pub json: bool,
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
