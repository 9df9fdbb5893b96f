//! Benchmarks, run as `cargo run --release --example bench -- <what>`. They print figures
//! and never assert on time (tests do not time things; this does).
//!
//! - `plan`: validate and plan a job that fans out to 1,000,000 tasks (2,000 groups x 500
//!   devices, an in-memory inventory), materialize every task, and report time and peak
//!   memory. `plan random` gives the devices unordered names and serials.
//! - `run`: run 10,000 single-request tasks against the mock Esper in a separate process
//!   (`esper-bulk mock`, so this process's CPU time is the engine's alone) with a
//!   server-side limit of 200 req/s, in three scenarios: the engine not told the limit,
//!   told it, and with 250 ms of server latency. Reports throughput as a share of the
//!   limit, the share of requests answered 429, and engine CPU per 1,000 requests. Both
//!   planning and the run go through `esper_bulk::run`, as the CLI's do; the CPU figure
//!   covers the run with its journal but not report renderings.
//! - `limit`: the 1,500-group alarm-rule job under an unknown 100 req/s limit with penalty
//!   windows and faults, against the physical limit and two baseline strategies (see
//!   `limit.rs`).
//! - `export`: a 100,000-device export's time, requests and peak memory (see `export.rs`).
//! - `shared`: three engine processes sharing one tenant's limit through Redis
//!   (`--coordinator`), with Redis up and with Redis killed mid-run (see `shared.rs`).
//! - `fleet`: a 100,000-device fleet's resolution and a followed REBOOT of all of it
//!   (see `fleet.rs`).

mod export;
mod fleet;
mod limit;
mod shared;

use std::time::Instant;

use esper_bulk::esper::adapter::EsperPaths;
use esper_bulk::job::{self, DeviceSelector};
use esper_bulk::plan::{self, GroupInfo, Inventory, InventoryError, Item, ItemKind, Paths, Server};
use futures::FutureExt;
use futures::future::BoxFuture;

const GROUPS: usize = 2_000;
const PER_GROUP: usize = 500;

/// A fleet held in memory: 2,000 store groups of 500 devices; `random` gives the devices
/// names and serials in no order (a real fleet's), which front coding cannot shorten.
struct Fleet {
    random: bool,
}

/// A small deterministic generator (xorshift), for names without order.
fn scramble(i: usize) -> u64 {
    let mut x = (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    x
}

impl Inventory for Fleet {
    fn groups(&self) -> BoxFuture<'_, Result<Vec<GroupInfo>, InventoryError>> {
        async move {
            let mut g = vec![GroupInfo {
                id: "root-stores".into(),
                name: "Stores".into(),
                path: "Stores".into(),
            }];
            g.extend((0..GROUPS).map(|i| GroupInfo {
                id: format!("00000000-0000-4000-8000-{i:012}"),
                name: format!("{i:04}"),
                path: format!("Stores/Region{}/{i:04}", i % 8),
            }));
            Ok(g)
        }
        .boxed()
    }
    fn devices<'a>(
        &'a self,
        _f: &'a DeviceSelector,
    ) -> BoxFuture<'a, Result<Vec<Item>, InventoryError>> {
        async move {
            let random = self.random;
            Ok((0..GROUPS * PER_GROUP)
                .map(|i| {
                    let (name, serial) = if random {
                        let r = scramble(i);
                        (
                            format!("pos-{:010x}", r >> 24),
                            format!("R58M{:08X}", (r & 0xFFFF_FFFF) as u32),
                        )
                    } else {
                        (
                            format!("ACME-{:04}-{:03}", i / PER_GROUP, i % PER_GROUP),
                            format!("R58M{i:08X}"),
                        )
                    };
                    Item {
                        kind: ItemKind::Device,
                        id: format!("d0000000-0000-4000-8000-{i:012}"),
                        name,
                        detail: Some(serial),
                    }
                })
                .collect())
        }
        .boxed()
    }
    fn app_version<'a>(
        &'a self,
        _p: &'a str,
        _c: &'a str,
    ) -> BoxFuture<'a, Result<Option<String>, InventoryError>> {
        async move { Ok(Some("e1f2a3b4-c5d6-4e7f-8091-a2b3c4d5e6f7".into())) }.boxed()
    }
}

const JOB: &str = r#"
version: 1
name: million
esper: { api_key: "${ESPER_API_KEY}" }
limits: { rate: 200/s }
targets:
  stores: { groups: { name: "Stores/*/*" } }
  fleet: { devices: { group: Stores } }
steps:
  - id: install
    app_install: { to: stores, package: com.acme.kiosk, version_code: 420 }
  - id: tag-every-device
    needs: [install]
    for_each: fleet
    rollout: { stages: [1, 1%, 10%, 100%], max_failures: 1% }
    request:
      method: PATCH
      path: "/enterprise/{enterprise_id}/device/${{ item.id }}/"
      body: { alias_name: "${{ item.name }}", tags: ["migrated", "${{ item.serial }}"] }
"#;

fn peak_rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<f64>().ok())
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

async fn bench_plan(random: bool) {
    let started = Instant::now();
    let env = |n: &str| (n == "ESPER_API_KEY").then(|| "k".to_string());
    let (job, _) =
        job::load("million.yaml", JOB, &job::Host::env_only(&env)).expect("the bench job is valid");
    let loaded = started.elapsed();
    let resolved = plan::resolve(&job, &Fleet { random })
        .await
        .expect("targets resolve");
    let resolved_at = started.elapsed();
    let server = Server {
        base_url: "https://acme-api.esper.cloud/api".into(),
        enterprise_id: "6ec3e3a2-0b3a-4c8e-9a7e-6a1d0d5b2f10".into(),
    };
    let p = plan::compile_owned(&job, resolved, server).expect("plan compiles");
    let compiled = started.elapsed();
    let mut bytes = 0usize;
    let mut writes = 0usize;
    for id in p.task_ids() {
        let t = p.task(id).expect("task exists");
        for w in t.op.writes() {
            writes += 1;
            bytes += EsperPaths.write(&w, &p.server.enterprise_id).len() + w.body.to_string().len();
        }
    }
    let materialized = started.elapsed();
    // Written as `plan --out` writes it: sealed, pretty, streamed into the file.
    let dir = tempfile::tempdir().expect("a directory");
    let file = dir.path().join("plan.json");
    esper_bulk::run::write_plan(&file, &p).expect("plan writes");
    let plan_bytes = std::fs::metadata(&file).map_or(0, |m| m.len());
    let total = started.elapsed();
    println!(
        "plan benchmark: {} groups x {} devices ({} names)",
        GROUPS,
        PER_GROUP,
        if random { "random" } else { "sequential" }
    );
    println!("  tasks                     {:>12}", p.task_count);
    println!(
        "  validate                  {:>9.3} s",
        loaded.as_secs_f64()
    );
    println!(
        "  resolve targets (fake)    {:>9.3} s",
        (resolved_at - loaded).as_secs_f64()
    );
    println!(
        "  compile plan              {:>9.3} s",
        (compiled - resolved_at).as_secs_f64()
    );
    println!(
        "  materialize every task    {:>9.3} s  ({writes} writes, {:.1} MiB of request text)",
        (materialized - compiled).as_secs_f64(),
        bytes as f64 / 1048576.0
    );
    println!(
        "  plan file (format {})      {:>9.1} MiB",
        p.format,
        plan_bytes as f64 / 1048576.0
    );
    println!(
        "  total                     {:>9.3} s  (target < 5 s)",
        total.as_secs_f64()
    );
    println!(
        "  peak memory (VmHWM)       {:>9.1} MiB  (target < 1024 MiB)",
        peak_rss_mib()
    );
}

/// CPU seconds this process has used (user + system), from /proc/self/stat.
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit(')')
        .next()
        .unwrap_or("")
        .split_whitespace()
        .collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // Fields 14 and 15 of the whole line are utime and stime; after ")" they are 11 and 12.
    (ticks(11) + ticks(12)) / 100.0
}

struct Mock {
    child: std::process::Child,
    base_url: String,
    eid: String,
    key: String,
}

impl Drop for Mock {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The `esper-bulk` binary next to this bench, or `ESPER_BULK_BIN` (e.g. a release build
/// driven by a debug build of the bench).
fn esper_bulk_bin() -> std::path::PathBuf {
    if let Some(p) = std::env::var_os("ESPER_BULK_BIN") {
        return p.into();
    }
    let exe = std::env::current_exe().expect("own path");
    exe.parent()
        .and_then(|p| p.parent())
        .map(|p| p.join("esper-bulk"))
        .expect("target dir")
}

fn start_mock(args: &[&str]) -> Mock {
    use std::io::BufRead;
    let bin = esper_bulk_bin();
    let mut child = std::process::Command::new(&bin)
        .arg("mock")
        .args(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap_or_else(|e| {
            panic!(
                "cannot start {} (build it with `cargo build --release`): {e}",
                bin.display()
            )
        });
    let mut lines = std::io::BufReader::new(child.stdout.take().expect("stdout")).lines();
    let mut next = || lines.next().and_then(Result::ok).unwrap_or_default();
    let base_url = next();
    let eid = next().trim_start_matches("enterprise_id: ").to_string();
    let key = next().trim_start_matches("api_key: ").to_string();
    // Keep reading: a closed pipe would kill the mock on its next line of output.
    std::thread::spawn(move || for _ in lines {});
    Mock {
        child,
        base_url,
        eid,
        key,
    }
}

struct Scenario {
    name: &'static str,
    ceiling: &'static str,
    latency: &'static str,
    max_in_flight: u32,
    target_share: f64,
}

async fn bench_run() {
    use esper_bulk::esper::ApiKey;
    use esper_bulk::run::{self, ConnectionSettings, Pacing, PlanConfig, RunConfig, Source};
    const R: f64 = 200.0;
    const TASKS: usize = 10_000;
    let scenarios = [
        Scenario {
            name: "limit not told (ceiling 1000/s)",
            ceiling: "1000/s",
            latency: "0ms",
            max_in_flight: 100,
            target_share: 0.90,
        },
        Scenario {
            name: "limit told (ceiling 200/s)",
            ceiling: "200/s",
            latency: "0ms",
            max_in_flight: 100,
            target_share: 0.97,
        },
        Scenario {
            name: "250 ms latency, not told",
            ceiling: "1000/s",
            latency: "250ms",
            max_in_flight: 200,
            target_share: 0.90,
        },
    ];
    println!(
        "run benchmark: {TASKS} tasks, one GET each; server limit {R} req/s (token bucket, burst 20, no Retry-After)"
    );
    // `bench run <word>` runs only the scenarios whose name contains it.
    let only = std::env::args().nth(2);
    for sc in scenarios
        .into_iter()
        .filter(|s| only.as_deref().is_none_or(|o| s.name.contains(o)))
    {
        let groups = TASKS.to_string();
        let mock = start_mock(&[
            "--port",
            "0",
            "--groups",
            &groups,
            "--devices-per-group",
            "0",
            "--rate",
            "200",
            "--burst",
            "20",
            "--latency",
            sc.latency,
            "--seed",
            "3",
            "--error-rate",
            "0",
            "--commit-then-fail",
            "0",
            "--drop-rate",
            "0",
            "--penalty",
            "0s",
        ]);
        let job = format!(
            "version: 1\nname: bench\nesper: {{ api_key: \"${{ESPER_API_KEY}}\" }}\nlimits: {{ rate: {}, batch: 20, max_in_flight: {} }}\nretry: {{ attempts: 10, initial_delay: 100ms, max_delay: 5s }}\ntargets:\n  stores: {{ groups: {{ name: \"Stores/*/*\" }} }}\nsteps:\n  - id: read\n    for_each: stores\n    request: {{ method: GET, path: \"/enterprise/{{enterprise_id}}/devicegroup/${{{{ item.id }}}}/\" }}\n",
            sc.ceiling, sc.max_in_flight
        );
        let key = mock.key.clone();
        let env = move |n: &str| (n == "ESPER_API_KEY").then(|| key.clone());
        let (job, _) =
            job::load("bench.yaml", &job, &job::Host::env_only(&env)).expect("bench job is valid");
        let conn =
            || ConnectionSettings::direct(&mock.base_url, &mock.eid, ApiKey::new(mock.key.clone()));
        // Planning has a governor of its own, so its reads do not count below.
        let p = run::plan(PlanConfig::new(job, conn()))
            .await
            .expect("the bench job plans");
        assert_eq!(p.task_count as usize, TASKS);
        // The plan's own estimate, printed next to what happened so a wrong one shows.
        let (est, est_max) = (
            p.estimate.seconds,
            p.estimate.max_seconds.max(p.estimate.seconds),
        );
        // Let the server's bucket refill after the planning reads.
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
        let state = tempfile::tempdir().expect("a state directory");
        let mut cfg = RunConfig::new(
            Source::Plan(Box::new(p)),
            conn(),
            state.path().to_path_buf(),
        );
        cfg.pacing = Pacing {
            jitter: std::time::Duration::from_millis(2),
            drain: std::time::Duration::from_secs(5),
            seed: Some(9),
            ..Pacing::production()
        };
        // Renderings are report formatting, not engine work; the journal is counted.
        cfg.output.renderings = false;
        let cpu0 = cpu_seconds();
        let result = run::run(cfg, tokio_util::sync::CancellationToken::new())
            .await
            .expect("the bench run starts");
        let cpu = cpu_seconds() - cpu0;
        let stats = &result.report.governor;
        // `BENCH_TIMELINE=1` prints the governor's per-second samples.
        if std::env::var_os("BENCH_TIMELINE").is_some() {
            for t in &stats.timeline {
                eprintln!(
                    "t={:>3}s requests={:>4} 429={:>3} window={:>3} rate={:?}",
                    t.t, t.requests, t.rate_limited, t.window, t.rate
                );
            }
        }
        let ok = result.report.summary.succeeded as usize;
        let secs = result.report.run.elapsed_ms as f64 / 1000.0;
        let share = ok as f64 / secs / R;
        let limited = stats.rate_limited as f64 / stats.requests as f64;
        println!(
            "  {:<34} {:>6.1} req/s accepted = {:>5.1}% of R (target {:>3.0}%), {:>4.2}% of {} requests answered 429, {} ok in {:.1}s, window {}..{}, final rate {}, engine CPU {:.1} ms per 1,000 requests",
            sc.name,
            ok as f64 / secs,
            share * 100.0,
            sc.target_share * 100.0,
            limited * 100.0,
            stats.requests,
            ok,
            secs,
            stats.window_min,
            stats.window_max,
            stats
                .adaptive_rate
                .map(|r| format!("{r:.0}/s"))
                .unwrap_or_else(|| "-".into()),
            cpu * 1000.0 / stats.requests as f64 * 1000.0 / 1000.0
        );
        let range = if est_max > est {
            format!("{est:.1}s to {est_max:.1}s")
        } else {
            format!("{est:.1}s")
        };
        println!(
            "  {:<34} plan estimate {range} at the job's rate vs {secs:.1}s actual",
            ""
        );
    }
}

fn main() {
    // `BENCH_LOG=esper_bulk::exec=debug` shows the governor's decisions.
    if let Ok(filter) = std::env::var("BENCH_LOG") {
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
            .with_writer(std::io::stderr)
            .init();
    }
    let what = std::env::args().nth(1).unwrap_or_else(|| "plan".into());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    match what.as_str() {
        "plan" => rt.block_on(bench_plan(
            std::env::args().nth(2).as_deref() == Some("random"),
        )),
        "run" => rt.block_on(bench_run()),
        "limit" => rt.block_on(limit::bench_limit()),
        "export" => rt.block_on(export::bench_export()),
        "shared" => shared::bench_shared(),
        "fleet" => rt.block_on(fleet::bench_fleet()),
        other => {
            eprintln!("unknown benchmark `{other}`; try: plan, run, limit, export, shared, fleet");
            std::process::exit(2);
        }
    }
}
