//! Webhooks (`notify:` and `run --notify`), received by a small HTTP server on
//! 127.0.0.1:0 in the test: the JSON and Slack shapes, a webhook that hangs or fails
//! costing at most its timeout and never the exit code, and the URL (a secret) in no file
//! of the run directory.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::post;
use esper_bulk::run::{Env, Notice, Notices, Source};
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use crate::support::{job_header, run, run_config, small, start};

/// What the hook server received: (path, body).
type Received = Arc<Mutex<Vec<(String, Value)>>>;

/// A webhook receiver: `/hang/…` never answers, `/fail/…` answers 500, the rest 200.
async fn hooks() -> (String, Received) {
    let got: Received = Arc::default();
    async fn hook(
        State(got): State<Received>,
        Path(path): Path<String>,
        body: String,
    ) -> StatusCode {
        let body = serde_json::from_str(&body).unwrap_or(Value::String(body));
        got.lock().unwrap().push((path.clone(), body));
        if path.starts_with("hang") {
            std::future::pending::<()>().await;
        }
        if path.starts_with("fail") {
            return StatusCode::INTERNAL_SERVER_ERROR;
        }
        StatusCode::OK
    }
    let app = Router::new()
        .route("/{*path}", post(hook))
        .with_state(got.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (base, got)
}

/// A job of one heartbeat command to a store's devices, with `notify` as its block.
fn job(server: &esper_bulk::mock::MockServer, notify: &str) -> String {
    format!(
        "{}targets:\n  store: {{ devices: {{ group: Stores/North/0001 }} }}\nsteps:\n  - id: ping\n    command: {{ to: store, name: UPDATE_HEARTBEAT }}\nnotify:\n{notify}",
        job_header(server, "500/s")
    )
}

/// Loads `yaml` with `HOOK` (the webhook base, a secret) and the mock's key set.
fn load(
    server: &esper_bulk::mock::MockServer,
    yaml: &str,
    hook: &str,
) -> (esper_bulk::job::Job, Env) {
    let key = server.api_key().to_string();
    let hook = hook.to_string();
    let lookup = move |n: &str| match n {
        "ESPER_API_KEY" => Some(key.clone()),
        "HOOK" => Some(hook.clone()),
        _ => None,
    };
    let job = esper_bulk::job::load("test.yaml", yaml, &esper_bulk::job::Host::env_only(&lookup))
        .unwrap_or_else(|d| panic!("job is valid:\n{d}"))
        .0;
    (job, Env::from_fn(lookup))
}

/// Every file under `dir`, as bytes.
fn files(dir: &std::path::Path) -> Vec<(std::path::PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                todo.push(p);
            } else {
                out.push((p.clone(), std::fs::read(&p).unwrap()));
            }
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhooks_receive_the_summary_as_json_and_as_slack_text() {
    let server = start(small(31)).await;
    let (base, got) = hooks().await;
    // The secret part of a Slack webhook URL is its path.
    let hook = format!("{base}/T0SECRET/B0SECRET");
    let notify = "  - { url: \"${HOOK}/json\" }\n  - { url: \"${HOOK}/slack\", format: slack, on: [success, failure] }\n  - { url: \"${HOOK}/never\", on: [threshold] }\n";
    let (job, env) = load(&server, &job(&server, notify), &hook);
    let state = tempfile::tempdir().unwrap();
    let mut cfg = run_config(&server, Source::Job(Box::new(job)), state.path());
    cfg.connection.env = env;
    cfg.notify.extra = vec![format!("{hook}/extra")];
    let r = run(cfg, CancellationToken::new()).await;
    assert_eq!(r.exit_code, 0);

    let got = got.lock().unwrap().clone();
    let paths: Vec<&str> = got.iter().map(|(p, _)| p.as_str()).collect();
    let mut sorted = paths.clone();
    sorted.sort();
    assert_eq!(
        sorted,
        [
            "T0SECRET/B0SECRET/extra",
            "T0SECRET/B0SECRET/json",
            "T0SECRET/B0SECRET/slack"
        ],
        "the threshold-only webhook is not called on success"
    );
    let body = |p: &str| &got.iter().find(|(x, _)| x.ends_with(p)).unwrap().1;
    let json = body("/json");
    assert_eq!(json["job"], "test");
    assert_eq!(json["run_id"], r.run_id.to_string());
    assert_eq!(json["outcome"], "succeeded");
    assert_eq!(json["exit_code"], 0);
    assert_eq!(json["counts"]["tasks"], 1);
    assert_eq!(json["counts"]["succeeded"], 1);
    assert!(json["elapsed_ms"].is_u64());
    assert_eq!(json["top_causes"], Value::Array(Vec::new()));
    assert_eq!(
        json["report"].as_str().unwrap(),
        r.report_path.display().to_string()
    );
    assert_eq!(body("/extra"), json, "--notify posts the same summary");
    let slack = body("/slack");
    let obj = slack.as_object().unwrap();
    assert_eq!(obj.keys().collect::<Vec<_>>(), ["text"], "{slack}");
    let text = slack["text"].as_str().unwrap();
    assert!(
        text.starts_with("esper-bulk: job `test` succeeded (exit 0) in "),
        "{text}"
    );
    assert!(text.contains(&r.run_id.to_string()), "{text}");

    // What they answered is in report.json, by place, never by URL.
    let report: Value = serde_json::from_slice(&std::fs::read(&r.report_path).unwrap()).unwrap();
    let targets: Vec<(&str, bool)> = report["notifications"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| (n["target"].as_str().unwrap(), n["ok"].as_bool().unwrap()))
        .collect();
    assert_eq!(
        targets,
        [
            ("webhook 1 (json)", true),
            ("webhook 2 (slack)", true),
            ("webhook 4 (json, --notify)", true)
        ]
    );
    // A rebuilt report keeps what the webhooks answered, without calling them again.
    let rebuilt = esper_bulk::run::rebuild(&r.run_dir, &Notices::none()).unwrap();
    assert_eq!(rebuilt.notifications, r.report.notifications);
    assert_eq!(rebuilt.notifications.len(), 3);
    // The plan keeps the template; no file of the run holds the URL or its secret part.
    let plan = std::fs::read_to_string(r.run_dir.join("plan.json")).unwrap();
    assert!(plan.contains("${HOOK}/slack"), "{plan}");
    let all = files(state.path());
    assert!(all.len() >= 8, "{all:?}");
    for (path, bytes) in all {
        let text = String::from_utf8_lossy(&bytes);
        assert!(
            !text.contains("SECRET") && !text.contains(&base),
            "{} holds the webhook URL",
            path.display()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_webhook_that_hangs_or_fails_costs_its_timeout_and_never_the_exit_code() {
    let server = start(small(32)).await;
    let (base, got) = hooks().await;
    let notify = "  - { url: \"${HOOK}/hang\" }\n  - { url: \"${HOOK}/fail\", format: slack }\n";
    let (job, env) = load(&server, &job(&server, notify), &base);
    let state = tempfile::tempdir().unwrap();
    let mut cfg = run_config(&server, Source::Job(Box::new(job)), state.path());
    cfg.connection.env = env;
    cfg.notify.timeout = Duration::from_millis(300);
    let warned = Arc::new(Mutex::new(Vec::new()));
    let w = warned.clone();
    cfg.output.notices = Notices::new(move |n| {
        if let Notice::NotificationFailed { .. } = n {
            w.lock().unwrap().push(n.to_string());
        }
    });
    // The run returns: a webhook that never answers is cut at its timeout.
    let r = tokio::time::timeout(Duration::from_secs(60), run(cfg, CancellationToken::new()))
        .await
        .expect("the run ends although a webhook never answers");
    assert_eq!((r.exit_code, r.report.run.exit_code), (0, 0));

    let report: Value = serde_json::from_slice(&std::fs::read(&r.report_path).unwrap()).unwrap();
    let n = report["notifications"].as_array().unwrap();
    assert_eq!(n.len(), 2, "{n:?}");
    assert_eq!(n[0]["target"], "webhook 1 (json)");
    assert_eq!(n[0]["ok"], false);
    assert_eq!(n[0]["attempts"], 1, "the timeout bounds both attempts");
    assert_eq!(
        n[0]["failure"],
        serde_json::json!({"kind": "timeout", "host": "127.0.0.1", "after_ms": 300})
    );
    assert_eq!(n[1]["target"], "webhook 2 (slack)");
    assert_eq!(n[1]["ok"], false);
    assert_eq!(n[1]["attempts"], 2, "a 500 is tried twice");
    assert_eq!(n[1]["http_status"], 500);
    assert_eq!(
        n[1]["failure"],
        serde_json::json!({"kind": "status", "host": "127.0.0.1", "status": 500})
    );
    let fails = got
        .lock()
        .unwrap()
        .iter()
        .filter(|(p, _)| p == "fail")
        .count();
    assert_eq!(fails, 2);
    let warned = warned.lock().unwrap().clone();
    assert_eq!(warned.len(), 2, "{warned:?}");
    assert!(
        warned.contains(&"warning: webhook 1 (json) was not notified: 127.0.0.1 did not answer within 300ms (the run's exit code is unchanged)".to_string()),
        "{warned:?}"
    );
    assert!(warned.iter().all(|w| !w.contains(&base)), "{warned:?}");
}

#[test]
fn a_webhook_url_is_checked_and_never_shown() {
    let yaml = "version: 1\nname: n\ntargets:\n  t: { groups: { name: Stores } }\nsteps:\n  - id: s\n    command: { to: t, name: REBOOT }\nnotify:\n  - { url: \"ftp://hooks.example/SECRET\" }\n  - { url: \"${UNSET_HOOK}\", on: [] }\n  - { url: \"https://hooks.example/T/SECRET2\", on: [sucess] }\n";
    let env = |_: &str| None;
    let err = esper_bulk::job::load("n.yaml", yaml, &esper_bulk::job::Host::env_only(&env))
        .expect_err("the job is refused")
        .to_string();
    for needle in [
        "webhook 1: the URL is not an http(s) URL",
        "webhook 2: environment variable UNSET_HOOK is not set",
        "webhook 2 is called on no outcome",
        "sucess",
    ] {
        assert!(err.contains(needle), "lacks {needle}:\n{err}");
    }
    assert!(!err.contains("SECRET"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_notify_and_limit_from_the_command_line() {
    let server = start(small(33)).await;
    let (base, got) = hooks().await;
    let dir = tempfile::tempdir().unwrap();
    let job = dir.path().join("job.yaml");
    std::fs::write(
        &job,
        format!(
            "{}targets:\n  stores: {{ groups: {{ name: \"Stores/*/*\" }} }}\nsteps:\n  - id: sync\n    command: {{ to: stores, name: UPDATE_HEARTBEAT }}\n",
            job_header(&server, "500/s")
        ),
    )
    .unwrap();
    let url = format!("{base}/T0CLI/SECRETCLI");
    let out = crate::support::esper_bulk(&server)
        .arg("run")
        .arg(&job)
        .arg("--limit")
        .arg("Stores/North/*")
        .arg("--notify")
        .arg(&url)
        .arg("--notify")
        .arg("${CLI_HOOK}")
        .env("CLI_HOOK", format!("{base}/T0ENV/SECRETENV"))
        .arg("--json")
        .arg("--state-dir")
        .arg(dir.path().join("state"))
        .output()
        .unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    for secret in ["SECRETCLI", "SECRETENV"] {
        assert!(!stdout.contains(secret) && !stderr.contains(secret));
    }
    let doc: Value = serde_json::from_str(&stdout).unwrap();
    let mut got = got.lock().unwrap().clone();
    got.sort_by(|a, b| a.0.cmp(&b.0));
    let paths: Vec<&str> = got.iter().map(|(p, _)| p.as_str()).collect();
    assert_eq!(paths, ["T0CLI/SECRETCLI", "T0ENV/SECRETENV"]);
    assert_eq!(got[0].1["run_id"], doc["run_id"]);
    assert_eq!(
        got[0].1["counts"]["tasks"], 2,
        "the two stores of North only"
    );
    assert_eq!(
        got[1].1, got[0].1,
        "a `${{NAME}}` URL is rendered from the environment"
    );
    let report: Value =
        serde_json::from_slice(&std::fs::read(doc["report"].as_str().unwrap()).unwrap()).unwrap();
    assert_eq!(
        report["run"]["limit"],
        serde_json::json!(["Stores/North/*"])
    );
    assert_eq!(
        report["notifications"][0]["target"],
        "webhook 1 (json, --notify)"
    );
    assert_eq!(doc["notifications"], report["notifications"]);
    assert_eq!(doc["limit"], report["run"]["limit"]);
    for (path, bytes) in files(&dir.path().join("state")) {
        let text = String::from_utf8_lossy(&bytes);
        assert!(
            !text.contains("SECRETCLI") && !text.contains("SECRETENV"),
            "{} holds the webhook URL",
            path.display()
        );
    }
}
