//! `bench shared`: issue #15's acceptance. Three engine processes (`esper-bulk run
//! --coordinator`, each its own job and state directory) share one tenant behind one mock
//! process (server limit R = 100 req/s, burst 20, 0.5 s penalty after a 429, 50 ms
//! latency, no other faults) through one `redis-server`. Each job is told `rate: 100`, the
//! tenant's whole budget, so only the shared bucket keeps the three under R.
//!
//! Two runs: Redis up throughout, and Redis killed a few seconds in (each process then
//! paces at its local fallback, `100 / --expected-processes 3`). Printed: combined
//! throughput (requests the mock accepted per second of wall time, first start to last
//! exit) as a share of R, the share of requests answered 429, each process' requests while
//! all three ran (fairness), permits from the shared bucket and the local fallback, each
//! process' busiest second, and whether every process finished and reported `degraded`.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::{Mock, start_mock};

const R: f64 = 100.0;
const GROUPS: usize = 500;
const PROCESSES: usize = 3;

struct Redis {
    child: Child,
    url: String,
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_redis() -> Redis {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port");
    let child = Command::new("redis-server")
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
        .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("redis-server is installed (apt-get install redis-server)");
    for _ in 0..200 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            break;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    Redis {
        child,
        url: format!("redis://127.0.0.1:{port}/0"),
    }
}

fn job_text(name: &str) -> String {
    format!(
        r#"version: 1
name: {name}
esper: {{ api_key: "${{ESPER_API_KEY}}" }}
limits: {{ rate: 100, batch: 10, max_in_flight: 40 }}
retry: {{ attempts: 10, initial_delay: 100ms, max_delay: 5s }}
targets:
  stores: {{ groups: {{ name: "Stores/*/*" }} }}
steps:
  - id: alarm
    for_each: stores
    alarm_rule:
      name: "{name} - ${{{{ item.path }}}}"
      metric: battery_level
      conditions: {{ comparator: LessThanThreshold, value: 15, unit: Percent }}
      realert_interval: 3600
      groups: ["${{{{ item.id }}}}"]
      on_exists: skip
"#
    )
}

fn mock_stats(mock: &Mock) -> (u64, u64) {
    let base = mock.base_url.trim_end_matches('/');
    let root = base.strip_suffix("/api").unwrap_or(base);
    let url = format!("{root}/__stats");
    // This bench drives processes, not futures: one small runtime for one GET.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let v: Value = rt.block_on(async {
        reqwest::get(url)
            .await
            .expect("the mock answers /__stats")
            .json()
            .await
            .expect("stats are JSON")
    });
    (
        v["requests_total"].as_u64().unwrap_or(0),
        v["rate_limited"].as_u64().unwrap_or(0),
    )
}

struct Proc {
    child: Child,
    started: Instant,
    state: PathBuf,
}

fn report(state: &Path) -> Value {
    let runs = state.join("runs");
    let dir = std::fs::read_dir(&runs)
        .ok()
        .and_then(|mut d| d.next())
        .and_then(Result::ok)
        .map(|e| e.path())
        .expect("a run directory");
    let text = std::fs::read_to_string(dir.join("report.json")).expect("report.json");
    serde_json::from_str(&text).expect("report is JSON")
}

fn one_run(kill_after: Option<Duration>) {
    let mut redis = start_redis();
    let groups = GROUPS.to_string();
    let mock = start_mock(&[
        "--port",
        "0",
        "--groups",
        &groups,
        "--devices-per-group",
        "0",
        "--rate",
        "100",
        "--burst",
        "20",
        "--penalty",
        "500ms",
        "--error-rate",
        "0",
        "--commit-then-fail",
        "0",
        "--drop-rate",
        "0",
        "--latency",
        "50ms",
        "--seed",
        "5",
    ]);
    let dir = tempfile::tempdir().expect("a temporary directory");
    let t0 = Instant::now();
    let mut procs: Vec<Proc> = (0..PROCESSES)
        .map(|i| {
            let name = format!("shared-{}", (b'a' + i as u8) as char);
            let job = dir.path().join(format!("{name}.yaml"));
            std::fs::write(&job, job_text(&name)).expect("job written");
            let state = dir.path().join(format!("state-{i}"));
            let child = Command::new(super::esper_bulk_bin())
                .arg("run")
                .arg(&job)
                .arg("--state-dir")
                .arg(&state)
                .args([
                    "--coordinator",
                    &redis.url,
                    "--expected-processes",
                    "3",
                    "-q",
                ])
                .env("ESPER_BASE_URL", &mock.base_url)
                .env("ESPER_ENTERPRISE_ID", &mock.eid)
                .env("ESPER_API_KEY", &mock.key)
                .env_remove("ESPER_BULK_REDIS_URL")
                .env_remove("ESPER_BULK_CONTEXT")
                .env("XDG_CONFIG_HOME", dir.path())
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .expect("esper-bulk runs (cargo build --release)");
            Proc {
                child,
                started: Instant::now(),
                state,
            }
        })
        .collect();
    if let Some(after) = kill_after {
        std::thread::sleep(after);
        let _ = redis.child.kill();
        let _ = redis.child.wait();
    }
    let mut finished = Vec::new();
    let mut warned = Vec::new();
    for p in &mut procs {
        let out = p.child.wait().expect("waits");
        finished.push((p.started.elapsed(), out.code()));
        let mut err = String::new();
        if let Some(mut e) = p.child.stderr.take() {
            use std::io::Read;
            let _ = e.read_to_string(&mut err);
        }
        warned.push(err.contains("unreachable"));
    }
    let wall = t0.elapsed().as_secs_f64();
    let (total, limited) = mock_stats(&mock);
    let accepted = (total - limited) as f64;
    println!(
        "  combined: {:.1} % of R ({} requests accepted in {wall:.1} s), 429s {:.2} % of {total} requests",
        100.0 * accepted / wall / R,
        total - limited,
        100.0 * limited as f64 / total.max(1) as f64
    );
    // Fairness: each process' requests in the seconds all three were running.
    let overlap = finished.iter().map(|(d, _)| d.as_secs()).min().unwrap_or(0);
    let mut shares = Vec::new();
    for (i, p) in procs.iter().enumerate() {
        let r = report(&p.state);
        let g = &r["governor"];
        let c = &g["coordinator"];
        let in_overlap: u64 = g["timeline"]
            .as_array()
            .map(|t| {
                t.iter()
                    .filter(|s| s["t"].as_u64().unwrap_or(0) < overlap)
                    .map(|s| s["requests"].as_u64().unwrap_or(0))
                    .sum()
            })
            .unwrap_or(0);
        let busiest = g["timeline"]
            .as_array()
            .and_then(|t| t.iter().map(|s| s["requests"].as_u64().unwrap_or(0)).max())
            .unwrap_or(0);
        shares.push(in_overlap);
        println!(
            "  process {}: exit {:?} after {:.1} s, {} tasks succeeded, {} requests ({} while all ran), permits shared {} / local {}, busiest second {} (ceiling 100), degraded {}, warned {}",
            i + 1,
            finished[i].1,
            finished[i].0.as_secs_f64(),
            r["summary"]["succeeded"],
            g["requests"],
            in_overlap,
            c["permits_shared"],
            c["permits_local"],
            busiest,
            c["degraded"],
            warned[i]
        );
    }
    let max = shares.iter().copied().max().unwrap_or(1).max(1) as f64;
    let min = shares.iter().copied().min().unwrap_or(0) as f64;
    println!(
        "  fairness: the smallest share is {:.0} % of the largest (while all three ran, {overlap} s)",
        100.0 * min / max
    );
}

pub fn bench_shared() {
    println!(
        "shared: {PROCESSES} processes x {GROUPS} alarm rules, one tenant (R = {R} req/s, burst 20, 0.5 s penalty, 50 ms latency), one Redis"
    );
    println!("Redis up throughout:");
    one_run(None);
    println!("Redis killed 4 s in (fallback 100/3 req/s per process):");
    one_run(Some(Duration::from_secs(4)));
}
