//! `bench export`: a 100,000-device export (`what: devices`, CSV) from the mock Esper in a
//! separate process (`esper-bulk mock`, so this process's memory is the engine's alone),
//! through `esper_bulk::run` as the CLI runs it. It prints rows, requests, time and the
//! process's peak resident memory (`VmHWM`); it never asserts on time. The figure is in
//! the README.

use std::time::{Duration, Instant};

use esper_bulk::esper::ApiKey;
use esper_bulk::run::{self, ConnectionSettings, Pacing, RunConfig, Source};
use tokio_util::sync::CancellationToken;

use super::{peak_rss_mib, start_mock};

const GROUPS: usize = 1_000;
const PER_GROUP: usize = 100;

pub async fn bench_export() {
    let (groups, per_group) = (GROUPS.to_string(), PER_GROUP.to_string());
    let mock = start_mock(&[
        "--port",
        "0",
        "--error-rate",
        "0",
        "--commit-then-fail",
        "0",
        "--groups",
        &groups,
        "--devices-per-group",
        &per_group,
    ]);
    let state = tempfile::tempdir().expect("a state directory");
    let out = state.path().join("devices.csv");
    let text = format!(
        "version: 1\nname: bench-export\nlimits: {{ rate: 1000/s }}\nsteps:\n  - id: devices\n    export: {{ what: devices, file: \"{}\" }}\n",
        out.display()
    );
    let env = run::Env::from_fn(|_| None);
    let job = run::load_job_text("bench.yaml", &text, state.path(), &env)
        .expect("the bench job is valid")
        .job;
    let mut connection =
        ConnectionSettings::direct(&mock.base_url, &mock.eid, ApiKey::new(&mock.key));
    connection.client.timeout = Duration::from_secs(60);
    let mut cfg = RunConfig::new(Source::Job(Box::new(job)), connection, state.path().into());
    cfg.pacing = Pacing {
        seed: Some(1),
        ..Pacing::production()
    };
    let before = peak_rss_mib();
    let t0 = Instant::now();
    let r = run::run(cfg, CancellationToken::new())
        .await
        .expect("the export runs");
    let took = t0.elapsed();
    let rows = r.report.tasks[0]
        .result
        .as_ref()
        .and_then(|v| v["rows"].as_u64())
        .unwrap_or(0);
    let bytes = std::fs::metadata(&out).map(|m| m.len()).unwrap_or(0);
    let peak = peak_rss_mib();
    println!(
        "export of a {}-device fleet (what: devices, csv)",
        GROUPS * PER_GROUP
    );
    println!("  exit code       {}", r.exit_code);
    println!("  rows            {rows}");
    println!("  file            {:.1} MiB", bytes as f64 / 1_048_576.0);
    println!("  requests        {}", r.report.governor.requests);
    println!("  time            {:.1}s", took.as_secs_f64());
    println!("  peak RSS        {peak:.1} MiB (before the run {before:.1} MiB)");
}
