//! Fault scenarios: each file in tests/scenarios describes the mock's faults, a job, and
//! the ranges its outcome must fall in. One test runs them all and lists every statistic
//! out of range, not just the first.

use std::collections::BTreeMap;
use std::time::Duration;

use esper_bulk::mock::{CommandBehaviour, Faults, RateLimit};
use serde::Deserialize;

use crate::support::{job_header, run_job, small, start};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Scenario {
    description: String,
    #[serde(default)]
    mock: MockSpec,
    /// The job's `limits.rate`.
    rate: String,
    /// The job after its header (targets, steps, optional deadline/retry overrides).
    job: String,
    expect: BTreeMap<String, (f64, f64)>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct MockSpec {
    #[serde(default)]
    groups: Option<usize>,
    #[serde(default)]
    devices_per_group: Option<usize>,
    #[serde(default)]
    rate_limit: Option<(f64, u32, bool, u64)>,
    #[serde(default)]
    error_rate: f64,
    #[serde(default)]
    commit_then_fail_rate: f64,
    #[serde(default)]
    drop_rate: f64,
    #[serde(default)]
    latency_ms: u64,
    #[serde(default)]
    command_failure_rate: f64,
}

async fn run(path: &std::path::Path) -> Vec<String> {
    let text = std::fs::read_to_string(path).unwrap();
    let sc: Scenario =
        serde_yaml::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut cfg = small(7);
    if let Some(g) = sc.mock.groups {
        cfg.groups = g;
    }
    if let Some(d) = sc.mock.devices_per_group {
        cfg.devices_per_group = d;
    }
    cfg.faults = Faults {
        rate_limit: sc
            .mock
            .rate_limit
            .map(|(rate, burst, retry_after, penalty_ms)| RateLimit {
                rate,
                burst,
                retry_after,
                penalty: Duration::from_millis(penalty_ms),
            }),
        error_rate: sc.mock.error_rate,
        commit_then_fail_rate: sc.mock.commit_then_fail_rate,
        drop_rate: sc.mock.drop_rate,
        latency: Duration::from_millis(sc.mock.latency_ms),
        latency_jitter: Duration::ZERO,
    };
    cfg.commands = CommandBehaviour {
        failure_rate: sc.mock.command_failure_rate,
        timeout_rate: 0.0,
        min_duration: Duration::from_millis(20),
        max_duration: Duration::from_millis(80),
        install_noop_rate: 0.0,
    };
    let server = start(cfg).await;
    let job = format!("{}{}", job_header(&server, &sc.rate), sc.job);
    let (_, report) = run_job(&server, &job).await;
    let stats = server.stats();
    let s = &report.summary;
    let values: BTreeMap<&str, f64> = [
        ("exit_code", report.run.exit_code as f64),
        ("succeeded", s.succeeded as f64),
        ("failed", s.failed as f64),
        ("skipped", s.skipped as f64),
        ("unknown", s.unknown as f64),
        ("not_started", s.not_started as f64),
        ("retries", s.retries as f64),
        ("requests", stats.requests_total as f64),
        ("rate_limited", stats.rate_limited as f64),
        (
            "rate_limited_share",
            stats.rate_limited as f64 / stats.requests_total.max(1) as f64,
        ),
        ("duplicate_alarm_rules", stats.duplicates.alarm_rules as f64),
        (
            "duplicate_commands",
            stats.duplicates.command_requests as f64,
        ),
        ("injected_errors", stats.injected.errors as f64),
        (
            "injected_commit_then_fail",
            stats.injected.commit_then_fail as f64,
        ),
        ("injected_drops", stats.injected.drops as f64),
        ("peak_1s", stats.peak_1s as f64),
        ("alarm_rules", server.snapshot().alarm_rules.len() as f64),
        ("command_requests", server.snapshot().commands.len() as f64),
        ("elapsed_s", report.run.elapsed_ms as f64 / 1000.0),
    ]
    .into_iter()
    .collect();
    let mut bad = Vec::new();
    for (key, (lo, hi)) in &sc.expect {
        match values.get(key.as_str()) {
            None => bad.push(format!(
                "{}: unknown statistic `{key}` (known: {:?})",
                path.display(),
                values.keys().collect::<Vec<_>>()
            )),
            Some(v) if v < lo || v > hi => bad.push(format!(
                "{}: {key} = {v}, expected {lo}..={hi} ({})",
                path.display(),
                sc.description
            )),
            Some(_) => {}
        }
    }
    if !bad.is_empty() {
        bad.push(format!(
            "{}: report:\n{}",
            path.display(),
            report.summary_text()
        ));
    }
    server.shutdown().await;
    bad
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_scenario_stays_in_range() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/scenarios");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    files.sort();
    assert!(
        files.len() >= 8,
        "the scenario folder holds the fault matrix"
    );
    // Run them side by side: each has its own mock, and time is mostly spent waiting.
    let results = futures::future::join_all(files.iter().map(|f| run(f))).await;
    let bad: Vec<String> = results.into_iter().flatten().collect();
    assert!(
        bad.is_empty(),
        "scenarios out of range:\n{}",
        bad.join("\n")
    );
}
