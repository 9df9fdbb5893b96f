//! The test harness: start the in-process mock on 127.0.0.1:0, build clients for it, and
//! run whole jobs through `esper_bulk::run`, the entry the CLI uses, with test pacing and
//! a throwaway state directory.

use std::time::Duration;

use esper_bulk::esper::adapter::PollSettings;
use esper_bulk::esper::{ApiKey, Client, ClientOptions, Connection};
use esper_bulk::mock::{CommandBehaviour, MockConfig, MockServer};
use esper_bulk::plan::Plan;
use esper_bulk::report::Report;
use esper_bulk::run::{self, ConnectionSettings, Pacing, RunConfig, RunResult, Source};
use tokio_util::sync::CancellationToken;

/// A small, fast mock: commands finish within a few hundred milliseconds.
pub fn small(seed: u64) -> MockConfig {
    let mut cfg = MockConfig::new(seed);
    cfg.groups = 6;
    cfg.devices_per_group = 4;
    cfg.offline_fraction = 0.0;
    cfg.commands = CommandBehaviour {
        failure_rate: 0.0,
        timeout_rate: 0.0,
        min_duration: Duration::from_millis(30),
        max_duration: Duration::from_millis(150),
        install_noop_rate: 0.0,
    };
    cfg
}

pub async fn start(cfg: MockConfig) -> MockServer {
    MockServer::start(cfg)
        .await
        .expect("the mock starts on 127.0.0.1:0")
}

pub fn client(server: &MockServer) -> Client {
    client_with_key(server, server.api_key())
}

pub fn client_with_key(server: &MockServer, key: &str) -> Client {
    let opts = ClientOptions {
        timeout: Duration::from_secs(5),
        ..ClientOptions::default()
    };
    Client::new(
        Connection::new(&server.base_url(), server.enterprise_id(), ApiKey::new(key)),
        opts,
    )
    .expect("client builds")
}

/// Loads a job (with `ESPER_API_KEY` pointing at the mock's key), plans and runs it.
pub async fn run_job(server: &MockServer, yaml: &str) -> (Plan, Report) {
    run_job_with(server, yaml, CancellationToken::new()).await
}

pub async fn run_job_with(
    server: &MockServer,
    yaml: &str,
    cancel: CancellationToken,
) -> (Plan, Report) {
    let state = tempfile::tempdir().expect("a temporary state directory");
    let r = run(
        run_config(
            server,
            Source::Job(Box::new(load(server, yaml))),
            state.path(),
        ),
        cancel,
    )
    .await;
    (r.plan.as_ref().clone(), r.report)
}

/// Validates a job whose `${ESPER_API_KEY}` is the mock's key.
pub fn load(server: &MockServer, yaml: &str) -> esper_bulk::job::Job {
    let key = server.api_key().to_string();
    let env = move |n: &str| (n == "ESPER_API_KEY").then(|| key.clone());
    esper_bulk::job::load("test.yaml", yaml, &esper_bulk::job::Host::env_only(&env))
        .unwrap_or_else(|d| panic!("job is valid:\n{d}"))
        .0
}

/// Fast pacing for the mock: short pauses and polls, a fixed seed.
pub fn test_pacing() -> Pacing {
    Pacing {
        min_pause: Duration::from_millis(50),
        jitter: Duration::from_millis(5),
        poll: PollSettings {
            initial: Duration::from_millis(50),
            max: Duration::from_millis(200),
        },
        drain: Duration::from_secs(5),
        seed: Some(1),
    }
}

/// A run of `source` against the mock, with its state in `state`.
pub fn run_config(server: &MockServer, source: Source, state: &std::path::Path) -> RunConfig {
    let mut connection = ConnectionSettings::direct(
        &server.base_url(),
        server.enterprise_id(),
        ApiKey::new(server.api_key()),
    );
    connection.client.timeout = Duration::from_secs(5);
    let mut cfg = RunConfig::new(source, connection, state.to_path_buf());
    cfg.pacing = test_pacing();
    cfg
}

/// Runs `cfg`, which must start and be recorded (task failures are fine).
pub async fn run(cfg: RunConfig, cancel: CancellationToken) -> RunResult {
    run::run(cfg, cancel)
        .await
        .unwrap_or_else(|e| panic!("the run starts and is recorded: {e}"))
}

/// The binary, pointed at `server` through the environment as a person would after
/// pasting `esper-bulk mock`'s export lines (and nothing else from this process's
/// environment that could point elsewhere).
pub fn esper_bulk(server: &MockServer) -> std::process::Command {
    let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_esper-bulk"));
    c.env("ESPER_BASE_URL", server.base_url())
        .env("ESPER_ENTERPRISE_ID", server.enterprise_id())
        .env("ESPER_API_KEY", server.api_key())
        .env_remove("ESPER_TENANT")
        .env_remove("ESPER_BULK_LOG")
        .env_remove("ESPER_BULK_CONTEXT")
        // A developer's coordinator would make every run share (and lock) through it.
        .env_remove("ESPER_BULK_REDIS_URL")
        // A context in the developer's own config would outrank ESPER_*: none is read.
        .env("XDG_CONFIG_HOME", "/nonexistent/esper-bulk-tests");
    c
}

/// A job header pointing at the mock (the base URL and enterprise come from the server).
pub fn job_header(server: &MockServer, rate: &str) -> String {
    format!(
        "version: 1\nname: test\nesper:\n  base_url: {}\n  enterprise_id: {}\n  api_key: ${{ESPER_API_KEY}}\nlimits: {{ rate: {rate}, batch: 20, max_in_flight: 40 }}\nretry: {{ attempts: 8, initial_delay: 20ms, max_delay: 500ms, max_retry_after: 1s }}\n",
        server.base_url(),
        server.enterprise_id()
    )
}

/// Whether golden files are rewritten: `BLESS=1`, never under `CI=true`.
pub fn blessing() -> bool {
    let bless = std::env::var("BLESS").is_ok_and(|v| v == "1");
    let ci = std::env::var("CI").is_ok_and(|v| v == "true");
    if bless && ci {
        eprintln!("BLESS=1 is ignored under CI=true: goldens are only compared");
    }
    bless && !ci
}

/// A line diff (longest common subsequence), printed `-expected` / `+actual`.
pub fn diff(expected: &str, actual: &str) -> String {
    let a: Vec<&str> = expected.lines().collect();
    let b: Vec<&str> = actual.lines().collect();
    let mut lcs = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for i in (0..a.len()).rev() {
        for j in (0..b.len()).rev() {
            lcs[i][j] = if a[i] == b[j] {
                lcs[i + 1][j + 1] + 1
            } else {
                lcs[i + 1][j].max(lcs[i][j + 1])
            };
        }
    }
    let (mut i, mut j, mut out) = (0, 0, String::from("--- expected\n+++ actual\n"));
    while i < a.len() || j < b.len() {
        if i < a.len() && j < b.len() && a[i] == b[j] {
            out += &format!(" {}\n", a[i]);
            i += 1;
            j += 1;
        } else if i < a.len() && (j == b.len() || lcs[i + 1][j] >= lcs[i][j + 1]) {
            out += &format!("-{}\n", a[i]);
            i += 1;
        } else {
            out += &format!("+{}\n", b[j]);
            j += 1;
        }
    }
    if expected.ends_with('\n') != actual.ends_with('\n') {
        out += "(the files differ in their final newline)\n";
    }
    out
}
