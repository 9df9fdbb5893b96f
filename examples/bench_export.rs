//! The export benchmark, run as `cargo build --release && cargo run --release --example
//! bench_export`: a 100,000-device export (`what: devices`, CSV) from the mock Esper in a
//! separate process (`esper-bulk mock`, so this process's memory is the engine's alone),
//! through `esper_bulk::run` as the CLI runs it. It prints rows, requests, time and the
//! process's peak resident memory (`VmHWM` from `/proc/self/status`); it never asserts on
//! time. The figure is in the README.

use std::io::BufRead;
use std::time::{Duration, Instant};

use esper_bulk::esper::ApiKey;
use esper_bulk::run::{self, ConnectionSettings, Pacing, RunConfig, Source};
use tokio_util::sync::CancellationToken;

const GROUPS: usize = 1_000;
const PER_GROUP: usize = 100;

/// Peak resident set of this process, in KiB (Linux).
fn peak_rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
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

fn start_mock() -> Mock {
    let exe = std::env::current_exe().expect("own path");
    let bin = exe
        .parent()
        .and_then(|p| p.parent())
        .map(|p| p.join("esper-bulk"))
        .expect("target dir");
    let mut child = std::process::Command::new(&bin)
        .args(["mock", "--error-rate", "0", "--commit-then-fail", "0"])
        .args(["--groups", &GROUPS.to_string()])
        .args(["--devices-per-group", &PER_GROUP.to_string()])
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

#[tokio::main]
async fn main() {
    let mock = start_mock();
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
    let before = peak_rss_kib().unwrap_or(0);
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
    let peak = peak_rss_kib().unwrap_or(0);
    println!(
        "export of a {}-device fleet (what: devices, csv)",
        GROUPS * PER_GROUP
    );
    println!("  exit code       {}", r.exit_code);
    println!("  rows            {rows}");
    println!("  file            {:.1} MiB", bytes as f64 / 1_048_576.0);
    println!("  requests        {}", r.report.governor.requests);
    println!("  time            {:.1}s", took.as_secs_f64());
    println!(
        "  peak RSS        {:.1} MiB (before the run {:.1} MiB)",
        peak as f64 / 1024.0,
        before as f64 / 1024.0
    );
}
