//! The test harness: start the in-process mock on 127.0.0.1:0, build clients for it, and
//! run whole jobs through the same pipeline the CLI uses, without touching the disk.

use std::sync::Arc;
use std::time::Duration;

use esper_bulk::esper::dispatch::{EsperDispatch, PollSettings};
use esper_bulk::esper::{ApiKey, Client, ClientOptions, Connection};
use esper_bulk::exec::{self, Governor, GovernorConfig, RunOptions};
use esper_bulk::mock::{CommandBehaviour, MockConfig, MockServer};
use esper_bulk::plan::{self, Plan, Server};
use esper_bulk::report::Report;
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
    let key = server.api_key().to_string();
    let env = move |n: &str| (n == "ESPER_API_KEY").then(|| key.clone());
    let (job, _) = esper_bulk::job::load("test.yaml", yaml, &esper_bulk::job::Host::env_only(&env))
        .unwrap_or_else(|d| panic!("job is valid:\n{d}"));
    let gov = Arc::new(Governor::new(GovernorConfig {
        rate: job.limits.rate,
        batch: job.limits.batch,
        max_in_flight: job.limits.max_in_flight,
        base_pause: Duration::from_millis(50),
        max_pause: Duration::from_secs(2),
        max_retry_after: job.retry.max_retry_after,
        jitter: Duration::from_millis(5),
        seed: 1,
    }));
    let client = client(server).with_throttle(gov.clone());
    let server_info = Server {
        base_url: server.base_url(),
        enterprise_id: server.enterprise_id().to_string(),
    };
    let resolved = plan::resolve(&job, &client).await.expect("targets resolve");
    let plan = plan::compile(&job, &resolved, server_info).expect("plan compiles");
    let dispatch = EsperDispatch::new(
        client,
        PollSettings {
            initial: Duration::from_millis(50),
            max: Duration::from_millis(200),
        },
    );
    let started = jiff::Timestamp::now();
    let out = exec::run(
        Arc::new(plan.clone()),
        dispatch,
        RunOptions {
            deadline: job.deadline.map(|d| tokio::time::Instant::now() + d),
            drain: Duration::from_secs(5),
            seed: 3,
            prior: Default::default(),
            reconcile: false,
        },
        cancel,
        |_| {},
    )
    .await;
    let report = Report::build("test-run", &plan, &out, gov.stats(), started);
    (plan, report)
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
