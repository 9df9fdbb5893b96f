//! `bench limit`: issue #10's job under a limit nobody told the engine. 1,500 store groups
//! get one alarm rule each (`on_exists: skip`) from a mock with a 100 req/s token bucket
//! (burst 20), a 0.5 s penalty of 429-to-everything after any 429, 3 % 500s, 3 %
//! commit-then-fail creates and 1 % dropped connections, in two latency variants.
//!
//! The engine runs the job end to end (`run::run` from the job: plan reads, then the run),
//! and two baseline strategies implemented here do the same work against a fresh mock with
//! the same settings: a token bucket told R, and a pool of 20 at a time (the API docs'
//! advice). The baselines are honest scripts: they list existing rules once, create the
//! missing ones, back off on 429 and, after an ambiguous failure, read the rule back by name
//! before sending it again, so they create no duplicates either.
//!
//! Figures are ratios from one bench run: each strategy's wall time to the physical limit
//! (the engine's necessary requests, i.e. those not answered 429, divided by R) and the
//! engine's time to each baseline's.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::{Mock, start_mock};

const R: f64 = 100.0;
const GROUPS: usize = 1_500;

struct Case {
    name: &'static str,
    latency: &'static str,
    jitter: &'static str,
}

/// What the mock saw during one strategy's run.
#[derive(Debug, Default, Clone)]
struct Seen {
    requests: u64,
    rate_limited: u64,
    duplicates: u64,
    created: u64,
}

struct Outcome {
    strategy: &'static str,
    secs: f64,
    seen: Seen,
    /// Rules the strategy believes it made or found (must be every group).
    done: usize,
}

fn mock_args<'a>(case: &'a Case, groups: &'a str) -> Vec<&'a str> {
    vec![
        "--port",
        "0",
        "--groups",
        groups,
        "--devices-per-group",
        "0",
        "--rate",
        "100",
        "--burst",
        "20",
        "--penalty",
        "500ms",
        "--error-rate",
        "0.03",
        "--commit-then-fail",
        "0.03",
        "--drop-rate",
        "0.01",
        "--latency",
        case.latency,
        "--latency-jitter",
        case.jitter,
        "--seed",
        "3",
    ]
}

async fn seen(client: &reqwest::Client, mock: &Mock) -> Seen {
    let base = mock.base_url.trim_end_matches('/');
    let root = base.strip_suffix("/api").unwrap_or(base);
    let s: Value = client
        .get(format!("{root}/__stats"))
        .send()
        .await
        .expect("the mock answers /__stats")
        .json()
        .await
        .expect("stats are JSON");
    let n = |v: &Value| v.as_u64().unwrap_or(0);
    Seen {
        requests: n(&s["requests_total"]),
        rate_limited: n(&s["rate_limited"]),
        duplicates: n(&s["duplicates"]["alarm_rules"]),
        created: n(&s["created"]["alarm_rules"]),
    }
}

pub async fn bench_limit() {
    let cases = [
        Case {
            name: "5-30 ms latency",
            latency: "5ms",
            jitter: "25ms",
        },
        Case {
            name: "50 ms latency",
            latency: "50ms",
            jitter: "0ms",
        },
    ];
    println!(
        "limit benchmark: {GROUPS} alarm rules (on_exists: skip); server limit {R} req/s not told \
         (burst 20, 0.5 s penalty after a 429, 3 % 500s, 3 % commit-then-fail, 1 % drops)"
    );
    let only = std::env::args().nth(2);
    let http = reqwest::Client::new();
    for case in cases
        .iter()
        .filter(|c| only.as_deref().is_none_or(|o| c.name.contains(o)))
    {
        let groups = GROUPS.to_string();
        let args = mock_args(case, &groups);
        let mut results = Vec::new();
        {
            let mock = start_mock(&args);
            let t0 = Instant::now();
            let done = engine(&mock).await;
            let secs = t0.elapsed().as_secs_f64();
            results.push(Outcome {
                strategy: "esper-bulk (not told R)",
                secs,
                seen: seen(&http, &mock).await,
                done,
            });
        }
        for (name, strategy) in [
            ("token bucket told R", Strategy::TokenBucket),
            ("20 at a time", Strategy::Pool20),
        ] {
            let mock = start_mock(&args);
            let t0 = Instant::now();
            let done = baseline(&mock, strategy).await;
            let secs = t0.elapsed().as_secs_f64();
            results.push(Outcome {
                strategy: name,
                secs,
                seen: seen(&http, &mock).await,
                done,
            });
        }
        let necessary = results[0].seen.requests - results[0].seen.rate_limited;
        let limit = necessary as f64 / R;
        println!(
            "\n  {}: physical limit {limit:.1} s ({necessary} necessary requests / {R} req/s)",
            case.name
        );
        println!(
            "  {:<26} {:>7} {:>9} {:>9} {:>10} {:>8} {:>11} {:>8}",
            "strategy", "time", "÷ limit", "requests", "429s", "429 %", "duplicates", "rules"
        );
        for r in &results {
            println!(
                "  {:<26} {:>6.1}s {:>8.2}x {:>9} {:>10} {:>7.2}% {:>11} {:>8}",
                r.strategy,
                r.secs,
                r.secs / limit,
                r.seen.requests,
                r.seen.rate_limited,
                r.seen.rate_limited as f64 * 100.0 / r.seen.requests.max(1) as f64,
                r.seen.duplicates,
                format!("{}/{}", r.seen.created.min(r.done as u64), GROUPS),
            );
        }
        let engine = results[0].secs;
        println!(
            "  esper-bulk takes {:.2}x the token bucket's time and {:.2}x the 20-at-a-time pool's",
            engine / results[1].secs,
            engine / results[2].secs
        );
    }
}

fn job_text(ceiling: &str) -> String {
    format!(
        r#"version: 1
name: bench-limit
esper: {{ api_key: "${{ESPER_API_KEY}}" }}
limits: {{ rate: {ceiling}, batch: 20, max_in_flight: 100 }}
retry: {{ attempts: 10, initial_delay: 100ms, max_delay: 5s }}
targets:
  stores: {{ groups: {{ name: "Stores/*/*" }} }}
steps:
  - id: battery-alarm
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

/// The engine, from the job file through plan and run, as `esper-bulk run` does it.
async fn engine(mock: &Mock) -> usize {
    use esper_bulk::esper::ApiKey;
    use esper_bulk::job;
    use esper_bulk::run::{self, ConnectionSettings, Pacing, RunConfig, Source};
    let text = job_text("1000/s");
    let key = mock.key.clone();
    let env = move |n: &str| (n == "ESPER_API_KEY").then(|| key.clone());
    let (job, _) = job::load("bench-limit.yaml", &text, &job::Host::env_only(&env))
        .expect("the bench job is valid");
    let conn = ConnectionSettings::direct(&mock.base_url, &mock.eid, ApiKey::new(mock.key.clone()));
    let state = tempfile::tempdir().expect("a state directory");
    let mut cfg = RunConfig::new(Source::Job(Box::new(job)), conn, state.path().to_path_buf());
    cfg.pacing = Pacing {
        seed: Some(9),
        ..Pacing::production()
    };
    cfg.output.renderings = false;
    let result = run::run(cfg, tokio_util::sync::CancellationToken::new())
        .await
        .expect("the bench run starts");
    if std::env::var_os("BENCH_LOG").is_some() {
        for t in &result.report.governor.timeline {
            eprintln!(
                "t={:>3}s requests={:>4} 429={:>3} window={:>3} rate={:?}",
                t.t, t.requests, t.rate_limited, t.window, t.rate
            );
        }
    }
    let s = &result.report.summary;
    if s.succeeded as usize != GROUPS {
        eprintln!(
            "  engine: only {} of {GROUPS} tasks succeeded ({} failed, {} unknown)",
            s.succeeded, s.failed, s.unknown
        );
    }
    s.succeeded as usize
}

#[derive(Clone, Copy, PartialEq)]
enum Strategy {
    /// Paced by a token bucket set to the server's real rate, unbounded concurrency.
    TokenBucket,
    /// Twenty workers, no pacing: "start near 20 at a time".
    Pool20,
}

struct Api {
    http: reqwest::Client,
    base: String,
    eid: String,
    key: String,
    pacer: Option<governor::DefaultDirectRateLimiter>,
    attempts: AtomicU64,
}

/// What one attempt got back.
enum Got {
    Ok(Value),
    Throttled,
    /// A 5xx or a lost connection: the server may or may not have acted.
    Ambiguous,
    Rejected(u16),
}

impl Api {
    async fn send(&self, method: reqwest::Method, path: &str, body: Option<&Value>) -> Got {
        if let Some(p) = &self.pacer {
            p.until_ready().await;
        }
        self.attempts.fetch_add(1, Ordering::Relaxed);
        let url = if path.starts_with("http") {
            path.to_string()
        } else {
            format!("{}{path}", self.base.trim_end_matches('/'))
        };
        let mut req = self
            .http
            .request(method, url)
            .bearer_auth(&self.key)
            .timeout(Duration::from_secs(10));
        if let Some(b) = body {
            req = req.json(b);
        }
        match req.send().await {
            Err(_) => Got::Ambiguous,
            Ok(resp) => match resp.status().as_u16() {
                429 => Got::Throttled,
                s if s >= 500 => Got::Ambiguous,
                s if s >= 400 => Got::Rejected(s),
                _ => resp.json().await.map(Got::Ok).unwrap_or(Got::Ambiguous),
            },
        }
    }

    /// Sends until it gets an answer, backing off exponentially with full jitter on 429
    /// and retrying reads on anything ambiguous (reads are safe to repeat).
    async fn read(&self, path: &str) -> Value {
        let mut n = 0u32;
        loop {
            match self.send(reqwest::Method::GET, path, None).await {
                Got::Ok(v) => return v,
                Got::Throttled => backoff(&mut n).await,
                Got::Ambiguous => n = 0,
                Got::Rejected(s) => panic!("baseline read {path} rejected with {s}"),
            }
        }
    }

    async fn list(&self, first: &str) -> Vec<Value> {
        let mut out = Vec::new();
        let mut next = Some(first.to_string());
        while let Some(url) = next {
            let page = self.read(&url).await;
            out.extend(page["results"].as_array().cloned().unwrap_or_default());
            next = page["next"].as_str().map(str::to_string);
        }
        out
    }

    /// Creates one rule: retries 429s, and after an ambiguous answer reads the rule back
    /// by name before sending it again.
    async fn create(&self, name: &str, body: &Value) {
        let rules = format!("/v1/enterprise/{}/alarmrules/", self.eid);
        let mut n = 0u32;
        loop {
            match self.send(reqwest::Method::POST, &rules, Some(body)).await {
                Got::Ok(_) => return,
                Got::Throttled => backoff(&mut n).await,
                Got::Rejected(s) => panic!("baseline create rejected with {s}"),
                Got::Ambiguous => {
                    let q = format!("{rules}?name={}", urlencode(name));
                    let found = self.read(&q).await;
                    if found["count"].as_u64().unwrap_or(0) > 0 {
                        return;
                    }
                }
            }
        }
    }
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// 0.5 s doubling up to 8 s, full jitter: the AWS SDKs' standard retry delay.
async fn backoff(n: &mut u32) {
    let cap = (0.5 * 2f64.powi(*n as i32)).min(8.0);
    *n = (*n + 1).min(8);
    tokio::time::sleep(Duration::from_secs_f64(fastrand::f64() * cap)).await;
}

async fn baseline(mock: &Mock, strategy: Strategy) -> usize {
    use std::num::NonZeroU32;
    let pacer = (strategy == Strategy::TokenBucket).then(|| {
        governor::RateLimiter::direct(
            governor::Quota::per_second(NonZeroU32::new(R as u32).expect("R > 0"))
                .allow_burst(NonZeroU32::MIN),
        )
    });
    let api = Arc::new(Api {
        http: reqwest::Client::new(),
        base: mock.base_url.clone(),
        eid: mock.eid.clone(),
        key: mock.key.clone(),
        pacer,
        attempts: AtomicU64::new(0),
    });
    let groups = api
        .list(&format!(
            "/enterprise/{}/devicegroup/?limit=500&offset=0",
            api.eid
        ))
        .await;
    let existing: std::collections::HashSet<String> = api
        .list(&format!(
            "/v1/enterprise/{}/alarmrules/?limit=500&offset=0",
            api.eid
        ))
        .await
        .iter()
        .filter_map(|r| r["name"].as_str().map(str::to_string))
        .collect();
    // Store groups are the leaves two levels below Stores.
    let stores: Vec<(String, String)> = groups
        .iter()
        .filter_map(|g| {
            // Paths start at the root group; the job language's `item.path` does not.
            let path = g["path"].as_str()?.strip_prefix("All devices/")?;
            let depth = path.split('/').count();
            (path.starts_with("Stores/") && depth == 3).then(|| {
                (
                    g["id"].as_str().unwrap_or_default().to_string(),
                    path.to_string(),
                )
            })
        })
        .collect();
    let todo: Vec<(String, Value)> = stores
        .iter()
        .map(|(id, path)| {
            let name = format!("Battery low - {path}");
            let body = json!({
                "enterprise": api.eid,
                "name": name,
                "metric": "battery_level",
                "conditions": {"comparator": "LessThanThreshold", "value": 15, "unit": "Percent"},
                "realert_interval": 3600,
                "groups": [id],
            });
            (name, body)
        })
        .filter(|(name, _)| !existing.contains(name))
        .collect();
    let total = stores.len();
    match strategy {
        Strategy::TokenBucket => {
            let tasks: Vec<_> = todo
                .into_iter()
                .map(|(name, body)| {
                    let api = api.clone();
                    tokio::spawn(async move { api.create(&name, &body).await })
                })
                .collect();
            for t in tasks {
                t.await.expect("a baseline task");
            }
        }
        Strategy::Pool20 => {
            let queue = Arc::new(std::sync::Mutex::new(todo));
            let workers: Vec<_> = (0..20)
                .map(|_| {
                    let (api, queue) = (api.clone(), queue.clone());
                    tokio::spawn(async move {
                        loop {
                            let next = queue.lock().expect("queue").pop();
                            let Some((name, body)) = next else { break };
                            api.create(&name, &body).await;
                        }
                    })
                })
                .collect();
            for w in workers {
                w.await.expect("a baseline worker");
            }
        }
    }
    total
}
