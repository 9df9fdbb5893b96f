//! `bench fleet`: a 100,000-device fleet against the mock Esper in a separate process
//! (`esper-bulk mock --groups 1000 --devices-per-group 100`, so this process's memory is
//! the engine's alone), through `esper_bulk::run` as the CLI runs it: (1) resolving a
//! target of every device (`/v2/devices/` cursor pages of 1,000), (2) a followed REBOOT
//! of all of them (1,000 devices a command request), with time, requests, peak resident
//! memory (`VmHWM`), plan file and journal sizes. It never asserts on time. The figures
//! are in the README ("Large fleets").

use std::time::{Duration, Instant};

use esper_bulk::esper::ApiKey;
use esper_bulk::run::{
    self, ConnectionSettings, Notice, Notices, Pacing, PlanConfig, RunConfig, Source,
};
use tokio_util::sync::CancellationToken;

use super::{peak_rss_mib, start_mock};

const GROUPS: usize = 1_000;
const PER_GROUP: usize = 100;

pub async fn bench_fleet() {
    let (groups, per_group) = (GROUPS.to_string(), PER_GROUP.to_string());
    let mock = start_mock(&[
        "--port",
        "0",
        "--rate",
        "0",
        "--error-rate",
        "0",
        "--commit-then-fail",
        "0",
        "--groups",
        &groups,
        "--devices-per-group",
        &per_group,
        "--command-min-duration",
        "100ms",
        "--command-max-duration",
        "500ms",
    ]);
    let state = tempfile::tempdir().expect("a state directory");
    // The listing's own budget raised for the mock: at the default 12/m the 100 pages
    // take about 8 minutes, which the plan says up front.
    let text = "version: 1\nname: bench-fleet\nlimits: { rate: 1000/s, device_list_rate: 1000/s, max_in_flight: 100 }\ntargets:\n  fleet: { devices: { state: online } }\nsteps:\n  - id: reboot\n    command: { to: fleet, name: REBOOT, wait: { timeout: 5m } }\n";
    let env = run::Env::from_fn(|_| None);
    let job = run::load_job_text("bench.yaml", text, state.path(), &env)
        .expect("the bench job is valid")
        .job;
    // Made afresh for each use: a cloned key is not carried over.
    let connection = || {
        let mut c = ConnectionSettings::direct(&mock.base_url, &mock.eid, ApiKey::new(&mock.key));
        c.client.timeout = Duration::from_secs(60);
        c
    };
    let pacing = Pacing {
        seed: Some(1),
        ..Pacing::production()
    };

    // (1) Resolution alone.
    let notes = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = notes.clone();
    let mut pc = PlanConfig::new(job.clone(), connection());
    pc.pacing = pacing.clone();
    pc.notices = Notices::new(move |n: &Notice| {
        if let Notice::PlanNote(t) = n {
            seen.lock().unwrap().push(t.clone());
        }
    });
    let t0 = Instant::now();
    let plan = run::plan(pc).await.expect("the fleet plans");
    let resolved_in = t0.elapsed();
    let devices = plan.targets.get("fleet").map_or(0, |t| t.items.len());
    let resolve_peak = peak_rss_mib();
    println!("fleet of {} devices against the mock", GROUPS * PER_GROUP);
    println!("  (1) resolution: {devices} devices");
    for n in notes.lock().unwrap().iter() {
        println!("      plan note: {n}");
    }
    println!("      time            {:.1}s", resolved_in.as_secs_f64());
    println!("      peak RSS        {resolve_peak:.1} MiB");
    drop(plan);

    // (2) The REBOOT of every device, planned again and run.
    let mut cfg = RunConfig::new(
        Source::Job(Box::new(job)),
        connection(),
        state.path().into(),
    );
    cfg.pacing = pacing;
    let t0 = Instant::now();
    let r = run::run(cfg, CancellationToken::new())
        .await
        .expect("the reboot runs");
    let took = t0.elapsed();
    let peak = peak_rss_mib();
    let size = |p: &std::path::Path| std::fs::metadata(p).map_or(0, |m| m.len());
    let run_dir = r.run_dir.clone();
    let succeeded: u64 = r
        .report
        .tasks
        .iter()
        .filter_map(|t| t.followed.as_ref()?.counts.as_ref())
        .map(|c| c.succeeded)
        .sum();
    println!("  (2) REBOOT of every device (followed)");
    println!("      exit code       {}", r.exit_code);
    println!(
        "      tasks           {} (command requests of up to 1000 devices)",
        r.report.tasks.len()
    );
    println!("      devices ok      {succeeded}");
    println!(
        "      requests        {} (planning included)",
        r.report.governor.requests
    );
    println!(
        "      time            {:.1}s (planning included)",
        took.as_secs_f64()
    );
    println!("      peak RSS        {peak:.1} MiB (the whole process so far)");
    println!(
        "      plan.json       {:.1} MiB",
        size(&run_dir.join("plan.json")) as f64 / 1_048_576.0
    );
    println!(
        "      journal         {:.1} KiB",
        size(&run_dir.join("journal.jsonl")) as f64 / 1024.0
    );
}
