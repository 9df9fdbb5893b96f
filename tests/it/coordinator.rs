//! `--coordinator`: the shared limiter and the run lock through a real Redis.
//!
//! Tests that need Redis take its URL from `ESPER_BULK_TEST_REDIS` (`.ci/run` starts a
//! `redis-server` on a free loopback port and sets it); the one that kills Redis starts a
//! `redis-server` of its own. Without Redis they fail under CI (`CI` set) and skip with a
//! message elsewhere. Each mock listens on its own port, so each test's keys are its own.

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use esper_bulk::coord::{Budget, Coordinator, tenant_of};
use esper_bulk::exec::SharedBudget;
use esper_bulk::mock::{MockConfig, MockServer};
use esper_bulk::run::{CoordinatorSettings, RunError, Source};
use tokio_util::sync::CancellationToken;

use crate::support::{self, esper_bulk, load, run_config};

/// The shared test Redis, or `None` (after saying why) where the test may skip.
fn redis_url(test: &str) -> Option<String> {
    match std::env::var("ESPER_BULK_TEST_REDIS") {
        Ok(u) if !u.is_empty() => Some(u),
        _ if std::env::var_os("CI").is_some() => {
            panic!("{test}: ESPER_BULK_TEST_REDIS is not set under CI (.ci/run starts Redis)")
        }
        _ => {
            eprintln!(
                "skipping {test}: set ESPER_BULK_TEST_REDIS=redis://127.0.0.1:PORT/0 (or run .ci/run) to test the coordinator"
            );
            None
        }
    }
}

/// A `redis-server` of this test's own, killed on drop.
struct OwnRedis {
    child: Child,
    url: String,
}

impl Drop for OwnRedis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl OwnRedis {
    fn start(test: &str) -> Option<OwnRedis> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("a free port");
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn();
        let child = match child {
            Ok(c) => c,
            Err(_) if std::env::var_os("CI").is_some() => {
                panic!("{test}: redis-server is not installed under CI")
            }
            Err(_) => {
                eprintln!("skipping {test}: redis-server is not installed");
                return None;
            }
        };
        let own = OwnRedis {
            child,
            url: format!("redis://127.0.0.1:{port}/0"),
        };
        // Bounded: Redis listens within milliseconds.
        for _ in 0..200 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return Some(own);
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        panic!("{test}: redis-server did not listen on {port}");
    }
}

/// A mock answering every request after `latency`, with no faults.
async fn mock(seed: u64, groups: usize, latency: Duration) -> MockServer {
    let mut cfg: MockConfig = support::small(seed);
    cfg.groups = groups;
    cfg.devices_per_group = 0;
    cfg.faults.latency = latency;
    support::start(cfg).await
}

fn job(name: &str, rate: &str) -> String {
    format!(
        r#"version: 1
name: {name}
esper: {{ api_key: "${{ESPER_API_KEY}}" }}
limits: {{ rate: {rate}, batch: 2, max_in_flight: 4 }}
targets:
  stores: {{ groups: {{ name: "Stores/*/*" }} }}
steps:
  - id: alarm
    for_each: stores
    alarm_rule:
      name: "Battery low - ${{{{ item.path }}}}"
      metric: battery_level
      conditions: {{ comparator: LessThanThreshold, value: 15, unit: Percent }}
      realert_interval: 3600
      groups: ["${{{{ item.id }}}}"]
      on_exists: skip
"#
    )
}

async fn coordinator(url: &str, server: &MockServer) -> Coordinator {
    Coordinator::connect(url, &tenant_of(&server.base_url()), server.enterprise_id())
        .await
        .expect("the test Redis answers")
}

/// Waits (bounded) until `coord` lists a lock holder, and returns its run id.
async fn wait_for_lock(coord: &Coordinator) -> String {
    for _ in 0..400 {
        let s = esper_bulk::coord::status(coord).await.expect("status");
        if let Some(l) = s.locks.first() {
            return l.run_id.clone();
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("the first run never took its lock");
}

// See: #15 — two hosts (two state directories) start the same job: exactly one runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_job_on_two_hosts_runs_once_and_the_other_exits_75() {
    let Some(url) = redis_url("the_same_job_on_two_hosts_runs_once") else {
        return;
    };
    let server = mock(21, 12, Duration::from_millis(50)).await;
    let yaml = job("two-hosts", "4");
    let first_state = tempfile::tempdir().unwrap();
    let mut cfg = run_config(
        &server,
        Source::Job(Box::new(load(&server, &yaml))),
        first_state.path(),
    );
    cfg.coordinator = Some(CoordinatorSettings::new(&url));
    let coord = coordinator(&url, &server).await;
    // The run is not `Send`: it runs beside the checks in this task.
    let (r, holder) = tokio::join!(support::run(cfg, CancellationToken::new()), async {
        let holder = wait_for_lock(&coord).await;
        other_host(&server, &url, &yaml, &holder).await;
        holder
    });
    assert_eq!(r.exit_code, 0, "{:?}", r.report.summary);
    let c = r
        .report
        .governor
        .coordinator
        .expect("a coordinator section");
    assert!(!c.degraded);
    assert_eq!(c.permits_local, 0);
    assert!(c.permits_shared >= r.report.governor.requests);
    assert!(r.run_id.to_string() == holder);
    // Released at the end: the lock is free again.
    let s = esper_bulk_status(&coord).await;
    assert!(s.locks.is_empty(), "{s:?}");
}

/// The other host, while the first run holds the lock: refused with 75, and
/// `coordinator status` lists the holder.
async fn other_host(server: &MockServer, url: &str, yaml: &str, holder: &str) {
    // The other host: the binary, its own state directory, the same coordinator.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("job.yaml"), yaml).unwrap();
    let mut cmd = esper_bulk(server);
    cmd.current_dir(dir.path()).args([
        "run",
        "job.yaml",
        "--state-dir",
        "state",
        "--coordinator",
        url,
    ]);
    let out = blocking(cmd).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(75), "{stderr}");
    assert!(stderr.contains("already running"), "{stderr}");
    assert!(stderr.contains(holder), "names the holder's run: {stderr}");

    // Status while the first runs: its lock, and it as a process seen.
    let mut cmd = esper_bulk(server);
    cmd.args(["coordinator", "status", "--json", "--coordinator", url])
        .env_remove("ESPER_API_KEY");
    let status = blocking(cmd).await;
    assert_eq!(status.status.code(), Some(0), "{status:?}");
    let doc: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    assert_eq!(doc["locks"][0]["run_id"], holder, "{doc:#}");
    assert!(
        doc["processes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["run_id"] == holder),
        "{doc:#}"
    );
    assert!(!doc.to_string().contains(server.api_key()));
}

/// Runs the binary off the async threads, so the run beside it keeps going.
async fn blocking(mut cmd: Command) -> std::process::Output {
    tokio::task::spawn_blocking(move || cmd.output().expect("the binary runs"))
        .await
        .unwrap()
}

async fn esper_bulk_status(coord: &Coordinator) -> esper_bulk::coord::Status {
    esper_bulk::coord::status(coord).await.expect("status")
}

// See: #15 — a 429 one process saw pauses the others before they send.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shared_pause_is_waited_for_by_another_process() {
    let Some(url) = redis_url("a_shared_pause_is_waited_for") else {
        return;
    };
    let server = mock(22, 4, Duration::from_millis(5)).await;
    // "Another process" publishes a pause through the same scope.
    let other = Budget::new(coordinator(&url, &server).await, 10.0, 1, 5.0, |_| {});
    other.publish_pause(Duration::from_millis(800)).await;
    assert_eq!(other.stats().pauses_published, 1);
    let state = tempfile::tempdir().unwrap();
    let mut cfg = run_config(
        &server,
        Source::Job(Box::new(load(&server, &job("paused", "50")))),
        state.path(),
    );
    cfg.coordinator = Some(CoordinatorSettings::new(&url));
    let r = support::run(cfg, CancellationToken::new()).await;
    assert_eq!(r.exit_code, 0);
    let c = r
        .report
        .governor
        .coordinator
        .expect("a coordinator section");
    assert_eq!(c.pauses_seen, 1, "{c:?}");
    assert!(r.report.governor.paused_ms > 0);
    assert_eq!(r.report.governor.rate_limited, 0);
}

// See: #15 — Redis dies mid-run: the run finishes at its local fallback rate and says so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_redis_mid_run_degrades_to_the_local_rate_and_finishes() {
    let Some(mut redis) = OwnRedis::start("killing_redis_mid_run") else {
        return;
    };
    let server = mock(23, 16, Duration::from_millis(20)).await;
    let state = tempfile::tempdir().unwrap();
    let mut cfg = run_config(
        &server,
        // The fallback's divisor from the job this time (the flag is not given).
        Source::Job(Box::new(load(
            &server,
            &job("killed", "8").replace(
                "max_in_flight: 4 }",
                "max_in_flight: 4, expected_processes: 2 }",
            ),
        ))),
        state.path(),
    );
    let notices = Arc::new(std::sync::Mutex::new(Vec::new()));
    let sink = notices.clone();
    cfg.output.notices = esper_bulk::run::Notices::new(move |n| {
        sink.lock().unwrap().push(n.to_string());
    });
    cfg.coordinator = Some(CoordinatorSettings::new(&redis.url));
    let coord = coordinator(&redis.url, &server).await;
    let (r, ()) = tokio::join!(support::run(cfg, CancellationToken::new()), async {
        wait_for_lock(&coord).await;
        // Some permits come from Redis first, then it is gone.
        for _ in 0..400 {
            if server.stats().requests_total >= 6 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let _ = redis.child.kill();
        let _ = redis.child.wait();
    });
    assert_eq!(r.exit_code, 0, "{:?}", r.report.summary);
    assert_eq!(r.report.summary.succeeded, 16);
    let c = r
        .report
        .governor
        .coordinator
        .clone()
        .expect("a coordinator section");
    assert!(c.degraded, "{c:?}");
    assert!(c.permits_shared > 0 && c.permits_local > 0, "{c:?}");
    assert_eq!(c.fallback_rate, 4.0);
    let told = notices.lock().unwrap().clone();
    let degraded: Vec<_> = told.iter().filter(|n| n.contains("unreachable")).collect();
    assert_eq!(degraded.len(), 1, "warned once: {told:?}");
    // The journal keeps it, so a rebuilt report does too.
    let rebuilt =
        esper_bulk::run::rebuild(&r.run_dir, &esper_bulk::run::Notices::none()).expect("rebuilds");
    assert_eq!(rebuilt.governor.coordinator, r.report.governor.coordinator);
}

// See: #15 — a coordinator that cannot be reached at the start: nothing runs, exit 75.
#[tokio::test]
async fn an_unreachable_coordinator_at_the_start_refuses_the_run() {
    let server = mock(24, 2, Duration::ZERO).await;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap();
    let state = tempfile::tempdir().unwrap();
    let mut cfg = run_config(
        &server,
        Source::Job(Box::new(load(&server, &job("no-redis", "10")))),
        state.path(),
    );
    cfg.coordinator = Some(CoordinatorSettings::new(&format!(
        "redis://:hunter2@127.0.0.1:{port}/0"
    )));
    let err = esper_bulk::run::run(cfg, CancellationToken::new())
        .await
        .expect_err("refused");
    assert!(matches!(err, RunError::Coordinator(_)), "{err:?}");
    assert_eq!(err.exit_code(), 75);
    let text = esper_bulk::base::render_error(&err);
    assert!(text.contains("cannot reach the coordinator"), "{text}");
    assert!(!text.contains("hunter2"), "no password: {text}");
    assert_eq!(server.stats().requests_total, 0, "nothing was read or sent");
}

// See: #15 — a holder whose lease another process took stops dispatching and exits 75.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_whose_lease_is_taken_stops_dispatching() {
    let Some(url) = redis_url("a_run_whose_lease_is_taken_stops_dispatching") else {
        return;
    };
    let server = mock(25, 40, Duration::from_millis(20)).await;
    let state = tempfile::tempdir().unwrap();
    let mut cfg = run_config(
        &server,
        Source::Job(Box::new(load(&server, &job("taken", "10")))),
        state.path(),
    );
    let mut settings = CoordinatorSettings::new(&url);
    settings.lease.renew_every = Duration::from_millis(100);
    cfg.coordinator = Some(settings);
    let coord = coordinator(&url, &server).await;
    let (r, ()) = tokio::join!(support::run(cfg, CancellationToken::new()), async {
        wait_for_lock(&coord).await;
        for _ in 0..400 {
            if server.stats().requests_total >= 5 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        // Another host's lease replaces this one (as after a partition longer than the lease).
        let scope = esper_bulk_status(&coord).await.scope;
        let client = redis::Client::open(url.as_str()).unwrap();
        let mut conn = client.get_multiplexed_async_connection().await.unwrap();
        let keys: Vec<String> = redis::cmd("KEYS")
            .arg(format!("{scope}:lock:*"))
            .query_async(&mut conn)
            .await
            .unwrap();
        let record = r#"{"pid":1,"host":"other-host","started":"2026-12-02T03:00:00Z","run_id":"other-run","job":"taken"}"#;
        let _: () = redis::cmd("SET")
            .arg(&keys[0])
            .arg(format!("999999|{record}"))
            .arg("PX")
            .arg(60_000)
            .query_async(&mut conn)
            .await
            .unwrap();
    });
    assert_eq!(r.exit_code, 75, "{:?}", r.report.summary);
    let s = &r.report.summary;
    assert!(s.not_started > 0, "tasks not sent are not_started: {s:?}");
    assert!(s.succeeded < 40, "{s:?}");
    // The other holder's lease is left alone.
    let after = esper_bulk_status(&coord).await;
    assert_eq!(after.locks[0].run_id, "other-run");
}

fn job_with_coordinator(value: &str) -> String {
    job("job-redis", "10").replace("limits:", &format!("coordinator: \"{value}\"\nlimits:"))
}

fn load_with(
    server: &MockServer,
    yaml: &str,
    vars: &[(&'static str, String)],
) -> Result<esper_bulk::job::Job, esper_bulk::job::Diagnostics> {
    let key = server.api_key().to_string();
    let vars = vars.to_vec();
    let env = move |n: &str| {
        if n == "ESPER_API_KEY" {
            return Some(key.clone());
        }
        vars.iter().find(|(k, _)| *k == n).map(|(_, v)| v.clone())
    };
    esper_bulk::job::load("test.yaml", yaml, &esper_bulk::job::Host::env_only(&env)).map(|j| j.0)
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap()
}

// See: #15 — `coordinator:` in the job names the Redis when no flag does; its `${NAME}`s
// stay as written in the job and are rendered from the run's environment when it connects.
#[tokio::test]
async fn the_jobs_coordinator_key_is_used_when_no_flag_names_one() {
    let server = mock(25, 2, Duration::ZERO).await;
    let url = format!("redis://:hunter2@127.0.0.1:{}/0", free_port());
    let yaml = job_with_coordinator("${JOB_REDIS}");
    let job = load_with(&server, &yaml, &[("JOB_REDIS", url.clone())]).expect("valid");
    assert_eq!(
        job.coordinator.as_deref(),
        Some("${JOB_REDIS}"),
        "kept as written"
    );
    let state = tempfile::tempdir().unwrap();
    let mut cfg = run_config(&server, Source::Job(Box::new(job.clone())), state.path());
    let rendered = url.clone();
    cfg.connection.env =
        esper_bulk::run::Env::from_fn(move |n| (n == "JOB_REDIS").then(|| rendered.clone()));
    // That Redis does not answer: the run is refused, which shows the job's key was used.
    let err = esper_bulk::run::run(cfg, CancellationToken::new())
        .await
        .expect_err("refused");
    assert!(matches!(err, RunError::Coordinator(_)), "{err:?}");
    assert!(!esper_bulk::base::render_error(&err).contains("hunter2"));
    assert_eq!(server.stats().requests_total, 0, "nothing was read or sent");

    // The environment's URL ranks below the job's key, the flag above it.
    let named = |url: &str, from_env: bool| {
        let mut s = CoordinatorSettings::new(url);
        s.from_env = from_env;
        Some(s)
    };
    let env =
        esper_bulk::run::Env::from_fn(|n| (n == "JOB_REDIS").then(|| "redis://job:1/0".into()));
    let pick = |given, job: Option<&str>| {
        esper_bulk::run::resolve_coordinator(given, job, &env)
            .unwrap()
            .map(|s| s.url)
    };
    let job_key = Some("${JOB_REDIS}");
    assert_eq!(
        pick(named("redis://flag:1/0", false), job_key).as_deref(),
        Some("redis://flag:1/0")
    );
    assert_eq!(
        pick(named("redis://env:1/0", true), job_key).as_deref(),
        Some("redis://job:1/0")
    );
    assert_eq!(
        pick(named("redis://env:1/0", true), None).as_deref(),
        Some("redis://env:1/0")
    );
    assert_eq!(pick(None, None), None);
    // `--expected-processes` alone names no Redis but is kept for the job's.
    let mut only_n = CoordinatorSettings::new("");
    only_n.from_env = true;
    only_n.expected_processes = Some(5);
    let s = esper_bulk::run::resolve_coordinator(Some(only_n.clone()), job_key, &env)
        .unwrap()
        .unwrap();
    assert_eq!(
        (s.url.as_str(), s.expected_processes),
        ("redis://job:1/0", Some(5))
    );
    assert!(
        esper_bulk::run::resolve_coordinator(Some(only_n), None, &env)
            .unwrap()
            .is_none()
    );
}

// See: #15 — a bad `coordinator:` is a validation error at its line, and never quoted.
#[tokio::test]
async fn a_bad_coordinator_key_is_refused_without_showing_it() {
    let server = mock(26, 1, Duration::ZERO).await;
    let cases = [
        (
            job_with_coordinator("redis://:hunter2@cache7.corp:6379/0"),
            "holds a password written in the job file",
        ),
        (
            job_with_coordinator("http://cache7.corp:6379"),
            "is not a redis:// URL",
        ),
        (
            job_with_coordinator("${NOT_SET_ANYWHERE}"),
            "environment variable NOT_SET_ANYWHERE is not set",
        ),
    ];
    for (yaml, want) in cases {
        let d = load_with(&server, &yaml, &[])
            .expect_err("refused")
            .to_string();
        assert!(d.contains(want), "{want}: {d}");
        assert!(d.contains("test.yaml:4:14"), "at its line: {d}");
        assert!(
            !d.contains("hunter2") && !d.contains("cache7.corp"),
            "not quoted: {d}"
        );
    }
    // A password from a variable is fine.
    let yaml = job_with_coordinator("${JOB_REDIS}");
    load_with(
        &server,
        &yaml,
        &[("JOB_REDIS", "redis://:pw@r:6379/0".into())],
    )
    .expect("valid");
}
