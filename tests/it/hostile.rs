//! Hostile servers (issue #11): the promises that no create is made twice and that the key
//! never leaks hold against answers no real Esper sends — lookups that are not pages,
//! links that circle or leave the host, redirects, echoed keys, huge and slow bodies, and a
//! tenant name that is really a host. The server is [`harness::Hostile`] in front of the
//! mock; each test fails on the engine as it was before these rules.

mod harness;

use std::path::Path;
use std::time::{Duration, Instant};

use esper_bulk::run::{self, RunError};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use crate::support::{job_header, run_job, small, start};
use harness::{Action, Hostile, json as answer, redirect};

fn rule_step(i: usize, name: &str) -> String {
    format!(
        "  - id: a{i}\n    alarm_rule: {{ name: \"{name}\", metric: m, conditions: {{ comparator: Frequency, value: 1, unit: Count }}, realert_interval: 60 }}\n"
    )
}

fn alarm_job(mock: &esper_bulk::mock::MockServer, names: &[&str]) -> String {
    let steps: String = names
        .iter()
        .enumerate()
        .map(|(i, n)| rule_step(i, n))
        .collect();
    format!("{}steps:\n{steps}", job_header(mock, "100/s"))
}

/// A job that plans by listing the groups, with its own retry settings and deadline, and
/// no base URL (the binary gets it from `ESPER_BASE_URL`, library runs from their settings).
fn groups_job(mock: &esper_bulk::mock::MockServer, retry: &str, deadline: Option<&str>) -> String {
    let header = job_header(mock, "1000/s");
    let header = header
        .lines()
        .filter(|l| !l.starts_with("retry:") && !l.starts_with("  base_url:"))
        .collect::<Vec<_>>()
        .join("\n");
    let deadline = deadline
        .map(|d| format!("deadline: {d}\n"))
        .unwrap_or_default();
    format!(
        "{header}\nretry: {retry}\n{deadline}targets:\n  s: {{ groups: {{ name: \"Stores/*/*\" }} }}\nsteps:\n  - id: ping\n    command: {{ to: s, name: UPDATE_HEARTBEAT }}\n"
    )
}

async fn run_through(h: &Hostile, yaml: &str) -> Result<run::RunResult, RunError> {
    let state = tempfile::tempdir().unwrap();
    let cfg = h.run_config(yaml, state.path());
    tokio::time::timeout(
        Duration::from_secs(60),
        run::run(cfg, CancellationToken::new()),
    )
    .await
    .expect("the run ends instead of going on for ever")
}

fn failure_text(r: &run::RunResult) -> String {
    serde_json::to_string(&r.report.tasks).unwrap()
}

const NOT_PAGES: fn() -> Vec<serde_json::Value> = || {
    vec![
        json!({}),
        json!({"count": 1, "next": null, "previous": null, "results": null}),
        json!({"errors": ["database unavailable"], "message": "database unavailable", "status": 500}),
        json!({"count": 1, "next": null, "previous": null, "results": {"id": "x"}}),
        json!({"count": "1", "next": null, "previous": null, "results": []}),
        // More remain, says count, but the page is empty and there is no next.
        json!({"count": 3, "next": null, "previous": null, "results": []}),
        json!([]),
    ]
};

/// The plan's one listing of the rules is not a page: the plan is refused, since
/// "nothing exists" would create every rule again.
#[tokio::test]
async fn a_rule_listing_that_is_not_a_page_refuses_the_plan() {
    let mock = start(small(71)).await;
    let job = alarm_job(&mock, &["r1", "r2", "r3"]);
    let (_, first) = run_job(&mock, &job).await;
    assert_eq!(first.summary.succeeded, 3, "the rules exist");
    let h = Hostile::start(mock).await;
    for body in NOT_PAGES() {
        h.clear();
        let b = body.clone();
        h.set_rule(move |s| {
            if s.is("GET", "/alarmrules/") {
                Action::Reply(answer(200, &b))
            } else {
                Action::Forward
            }
        });
        let e = run_through(&h, &job)
            .await
            .expect_err("the plan is refused");
        assert!(
            e.to_string().contains("the listing cannot be trusted"),
            "{body}: {e}"
        );
        assert_eq!(
            h.count("POST", "/alarmrules/"),
            0,
            "{body}: nothing created"
        );
        assert_eq!(h.count("GET", "/alarmrules/"), 1, "{body}: not retried");
    }
    assert_eq!(h.mock.snapshot().alarm_rules.len(), 3);
}

/// A create whose answer was lost is read back by name before anything is sent again;
/// a read-back that is not a page fails the task instead of creating a second rule.
#[tokio::test]
async fn lookups_that_are_not_pages_fail_the_task_and_never_create_again() {
    let mock = start(small(71)).await;
    let h = Hostile::start(mock).await;
    for (n, body) in NOT_PAGES().into_iter().enumerate() {
        // New names each round, so each round's plan sees its rules absent.
        let names: Vec<String> = (1..=3).map(|i| format!("round{n}-r{i}")).collect();
        let names: Vec<&str> = names.iter().map(String::as_str).collect();
        let job = alarm_job(&h.mock, &names);
        h.clear();
        let b = body.clone();
        h.set_rule(move |s| {
            if s.is("POST", "/alarmrules/") {
                // Committed, but the answer says otherwise: the outcome is unknown.
                Action::ForwardThen(answer(502, &json!({"message": "bad gateway"})))
            } else if s.is("GET", "/alarmrules/") && s.query.contains("name=") {
                Action::Reply(answer(200, &b))
            } else {
                Action::Forward
            }
        });
        let r = run_through(&h, &job).await.expect("the run is recorded");
        assert_eq!(
            (
                r.report.summary.unknown + r.report.summary.failed,
                r.report.summary.succeeded
            ),
            (3, 0),
            "{body}: no task claims success"
        );
        assert_eq!(
            h.count("POST", "/alarmrules/"),
            3,
            "{body}: one create per task, none sent again"
        );
        assert!(
            failure_text(&r).contains("the listing cannot be trusted"),
            "{body}: {}",
            failure_text(&r)
        );
        assert_eq!(
            h.mock.snapshot().alarm_rules.len(),
            3 * (n + 1),
            "{body}: each rule exactly once"
        );
    }
    assert_eq!(h.mock.stats().duplicates.alarm_rules, 0);
}

#[tokio::test]
async fn app_content_and_command_read_backs_that_are_not_pages_send_nothing_again() {
    let mock = start(small(72)).await;
    let dir = tempfile::tempdir().unwrap();
    let apk = dir.path().join("kiosk.apk");
    std::fs::write(&apk, "package=com.acme.kiosk\nversion_code=410\n").unwrap();
    let manual = dir.path().join("manual.pdf");
    std::fs::write(&manual, "a manual").unwrap();
    let job = format!(
        "{}targets:\n  one: {{ groups: {{ name: \"Stores/*/0001\" }} }}\nsteps:\n  - id: up\n    app_upload: {{ file: {} }}\n  - id: ping\n    command: {{ to: one, name: UPDATE_HEARTBEAT }}\n",
        job_header(&mock, "100/s"),
        apk.display(),
    );
    // Content is listed at plan time: a listing that is not a page refuses the plan.
    let content_job = format!(
        "{}steps:\n  - id: doc\n    content_upload: {{ file: {} }}\n",
        job_header(&mock, "100/s"),
        manual.display()
    );
    let h = Hostile::start(mock).await;
    h.set_rule(|s| {
        if s.is("GET", "/application/") {
            Action::Reply(answer(200, &json!({})))
        } else if s.is("GET", "/content/") {
            Action::Reply(answer(
                200,
                &json!({"count": 0, "next": null, "results": null}),
            ))
        } else if s.is("POST", "/commands/v0/commands/") {
            // The command is created, but its answer is lost: the retry must read back.
            Action::ForwardThen(answer(502, &json!({"message": "bad gateway"})))
        } else if s.is("GET", "/commands/v0/commands/") {
            Action::Reply(answer(
                200,
                &json!({"code": 200, "message": "Success", "content": {}}),
            ))
        } else {
            Action::Forward
        }
    });
    let e = run_through(&h, &content_job)
        .await
        .expect_err("the plan is refused");
    assert!(
        e.to_string().contains("the listing cannot be trusted"),
        "{e}"
    );
    assert_eq!(h.count("POST", "/content/upload/"), 0, "no content upload");
    let r = run_through(&h, &job).await.expect("the run is recorded");
    assert_eq!(r.report.summary.succeeded, 0, "{}", failure_text(&r));
    assert_eq!(h.count("POST", "/application/upload/"), 0, "no APK upload");
    assert_eq!(
        h.count("POST", "/commands/v0/commands/"),
        1,
        "the command was sent once; the read-back that could not tell stopped a second"
    );
    assert_eq!(h.mock.stats().duplicates.command_requests, 0);
    assert_eq!(
        r.report.summary.unknown, 1,
        "the command's outcome is unknown, not failed"
    );
}

/// The `offset=` of a query string, as sent.
fn offset_of(query: &str) -> Option<&str> {
    query.split('&').find_map(|kv| kv.strip_prefix("offset="))
}

/// Answers the group list with one group per page and a `next` chosen by `next_of`.
fn paged_groups(h: &Hostile, next_of: impl Fn(&str, u64) -> String + Send + Sync + 'static) {
    let eid = h.mock.enterprise_id().to_string();
    let base = h.base_url();
    h.set_rule(move |s| {
        if !s.is("GET", "/devicegroup/") {
            return Action::Forward;
        }
        let offset: u64 = offset_of(&s.query)
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let next = next_of(&format!("{base}/enterprise/{eid}/devicegroup/"), offset);
        Action::Reply(answer(
            200,
            &json!({"count": 1_000_000, "next": next, "previous": null, "results": [
                {"id": format!("g{offset}"), "name": format!("{offset}"), "path": format!("All devices/Stores/North/{offset}")}
            ]}),
        ))
    });
}

#[tokio::test]
async fn links_that_circle_stall_or_leave_the_host_end_planning_at_once() {
    let mock = start(small(73)).await;
    let job = groups_job(
        &mock,
        "{ attempts: 5, initial_delay: 10ms, max_delay: 20ms }",
        None,
    );
    let h = Hostile::start(mock).await;
    let elsewhere = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    elsewhere.set_nonblocking(true).unwrap();
    let other = elsewhere.local_addr().unwrap();
    type NextOf = Box<dyn Fn(&str, u64) -> String + Send + Sync>;
    let cases: Vec<(&str, NextOf, &str)> = vec![
        (
            "two pages pointing at each other",
            Box::new(|list: &str, o: u64| format!("{list}?limit=100&offset={}", 100 - o.min(100))),
            "a page already read",
        ),
        (
            "a link that always moves on to the same page",
            Box::new(|list: &str, o: u64| format!("{list}?limit=100&offset=0&n={}", o + 1)),
            "repeats the items of page 1",
        ),
        (
            "a link to another port",
            Box::new(move |_: &str, _| format!("http://{other}/api/x/?offset=100")),
            "points away from",
        ),
    ];
    for (what, next_of, says) in cases {
        h.clear();
        paged_groups(&h, next_of);
        let began = Instant::now();
        let err = run_through(&h, &job).await.unwrap_err();
        assert!(matches!(err, RunError::Plan { .. }), "{what}: {err}");
        assert!(err.to_string().contains(says), "{what}: {err}");
        assert!(began.elapsed() < Duration::from_secs(5), "{what}: at once");
        let reads = h.count("GET", "/devicegroup/");
        assert!(
            (1..=2).contains(&reads),
            "{what}: no request repeated and none retried, got {reads}"
        );
    }
    assert!(
        elsewhere.accept().is_err(),
        "nothing was sent to the other port"
    );
}

/// A page that fails once is asked for again alone: the pages before it are not read
/// again (a restarted listing re-reads them all, and a fleet listing's pages are paced
/// seconds apart).
#[tokio::test]
async fn a_listing_page_that_fails_is_read_again_alone() {
    let mut cfg = small(75);
    cfg.groups = 250;
    cfg.devices_per_group = 1;
    let mock = start(cfg).await;
    let job = groups_job(
        &mock,
        "{ attempts: 3, initial_delay: 10ms, max_delay: 20ms }",
        None,
    );
    let h = Hostile::start(mock).await;
    let failed = std::sync::atomic::AtomicBool::new(false);
    h.set_rule(move |s| {
        let second = s.is("GET", "/devicegroup/") && offset_of(&s.query) == Some("100");
        if second && !failed.swap(true, std::sync::atomic::Ordering::SeqCst) {
            Action::Reply(answer(502, &json!({"message": "bad gateway"})))
        } else {
            Action::Forward
        }
    });
    let r = run_through(&h, &job).await.expect("the run plans and runs");
    assert_eq!(r.report.summary.failed, 0, "{}", failure_text(&r));
    let offsets: Vec<String> = h
        .seen()
        .iter()
        .filter(|s| s.is("GET", "/devicegroup/"))
        .filter_map(|s| offset_of(&s.query).map(str::to_string))
        .collect();
    assert!(offsets.len() >= 4, "several pages were listed: {offsets:?}");
    let reads = |o: &str| offsets.iter().filter(|x| x.as_str() == o).count();
    assert_eq!(reads("0"), 1, "the first page is read once: {offsets:?}");
    assert_eq!(reads("100"), 2, "the failed page twice: {offsets:?}");
    let mut distinct = offsets.clone();
    distinct.sort();
    distinct.dedup();
    assert_eq!(
        offsets.len(),
        distinct.len() + 1,
        "one extra read: {offsets:?}"
    );
}

#[tokio::test]
async fn planning_retries_as_the_job_says_and_stops_at_its_deadline() {
    let mock = start(small(74)).await;
    let few = groups_job(
        &mock,
        "{ attempts: 3, initial_delay: 10ms, max_delay: 20ms }",
        None,
    );
    let many = groups_job(
        &mock,
        "{ attempts: 100, initial_delay: 100ms, max_delay: 200ms }",
        Some("1s"),
    );
    let h = Hostile::start(mock).await;
    h.set_rule(|s| {
        if s.is("GET", "/devicegroup/") {
            Action::Reply(answer(503, &json!({"message": "try later"})))
        } else {
            Action::Forward
        }
    });
    let err = run_through(&h, &few).await.unwrap_err();
    assert!(matches!(err, RunError::Plan { .. }), "{err}");
    assert_eq!(h.count("GET", "/devicegroup/"), 3, "retry.attempts reads");

    h.clear();
    let began = Instant::now();
    let err = run_through(&h, &many).await.unwrap_err();
    let took = began.elapsed();
    assert!(
        matches!(err, RunError::PlanningDeadline { .. }),
        "the deadline ends planning: {err}"
    );
    assert_eq!(err.exit_code(), esper_bulk::exit::INCOMPLETE);
    assert!(
        took < Duration::from_secs(3),
        "within the 1s deadline, took {took:?}"
    );
    assert!(h.count("GET", "/devicegroup/") < 20);
}

#[tokio::test]
async fn a_redirected_post_fails_and_the_redirect_target_gets_nothing() {
    let target = Hostile::start(start(small(76)).await).await;
    target.set_rule(|_| {
        Action::Reply(answer(
            201,
            &json!({"id": "evil", "name": "fresh", "metric": "m", "realert_interval": 60}),
        ))
    });
    let mock = start(small(75)).await;
    let job = alarm_job(&mock, &["fresh"]);
    let h = Hostile::start(mock).await;
    let location = format!(
        "{}/v1/enterprise/{}/alarmrules/",
        target.base_url(),
        h.mock.enterprise_id()
    );
    let loc = location.clone();
    h.set_rule(move |s| {
        if s.is("POST", "/alarmrules/") {
            Action::Reply(redirect(307, &loc))
        } else {
            Action::Forward
        }
    });
    let r = run_through(&h, &job).await.expect("the run is recorded");
    assert_eq!(
        (r.report.summary.failed, r.report.summary.succeeded),
        (1, 0)
    );
    assert!(target.seen().is_empty(), "the redirect was not followed");
    assert_eq!(h.count("POST", "/alarmrules/"), 1, "not retried");
    let text = failure_text(&r);
    assert!(
        text.contains(&format!("answered 307 redirecting to {location}")),
        "{text}"
    );
    assert!(h.mock.snapshot().alarm_rules.is_empty());
}

/// Every file below `dir`, as text.
fn files_below(dir: &Path, out: &mut Vec<(String, String)>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            files_below(&p, out);
        } else {
            let text = String::from_utf8_lossy(&std::fs::read(&p).unwrap()).into_owned();
            out.push((p.display().to_string(), text));
        }
    }
}

#[tokio::test]
async fn a_server_that_echoes_the_key_never_gets_it_into_any_output() {
    const KEY: &str = "sk-live-HOSTILE-ECHO-0123456789abcdef";
    let mut cfg = small(77);
    cfg.api_key = KEY.to_string();
    let mock = start(cfg).await;
    let eid = mock.enterprise_id().to_string();
    let dir = tempfile::tempdir().unwrap();
    let job = dir.path().join("echo.yaml");
    let steps = [
        rule_step(0, "echo-refused"),
        rule_step(1, "echo-garbled"),
        "  - id: body\n    request: { method: GET, path: \"/v1/enterprise/{enterprise_id}/echo/\" }\n".into(),
        "  - id: html\n    request: { method: GET, path: \"/v1/enterprise/{enterprise_id}/echo-html/\" }\n".into(),
        "  - id: moved\n    request: { method: POST, path: \"/v1/enterprise/{enterprise_id}/echo-moved/\", body: {} }\n".into(),
    ]
    .concat();
    let header = job_header(&mock, "100/s")
        .replace("attempts: 8", "attempts: 2")
        .lines()
        .filter(|l| !l.starts_with("  base_url:"))
        .collect::<Vec<_>>()
        .join("\n");
    std::fs::write(&job, format!("{header}\nsteps:\n{steps}")).unwrap();
    let h = Hostile::start(mock).await;
    h.set_rule(move |s| {
        let auth = s.auth.clone();
        if s.is("POST", "/alarmrules/") && s.body.contains("echo-refused") {
            Action::Reply(answer(
                400,
                &json!({"errors": [format!("header was {auth}")], "message": format!("refused {auth}"), "status": 400}),
            ))
        } else if s.is("POST", "/alarmrules/") {
            // A type error quotes the offending value.
            Action::Reply(answer(201, &json!({"id": "r", "name": "echo-garbled", "realert_interval": auth})))
        } else if s.is("GET", "/echo/") {
            Action::Reply(answer(200, &json!({"you_sent": auth, "again": [KEY]})))
        } else if s.is("GET", "/echo-html/") {
            let mut r = axum::response::Response::new(axum::body::Body::from(format!(
                "<html><body>proxy error for {auth}</body></html>"
            )));
            *r.status_mut() = axum::http::StatusCode::BAD_GATEWAY;
            Action::Reply(r)
        } else if s.is("POST", "/echo-moved/") {
            Action::Reply(redirect(
                302,
                &format!("http://127.0.0.1:9/api/v1/enterprise/{eid}/?token={KEY}"),
            ))
        } else {
            Action::Forward
        }
    });
    let state = dir.path().join("state");
    let out = tokio::task::spawn_blocking({
        let mut cmd = h.bin();
        cmd.args(["-vv", "run"])
            .arg(&job)
            .arg("--state-dir")
            .arg(&state);
        move || cmd.output().unwrap()
    })
    .await
    .unwrap();
    assert_eq!(out.status.code(), Some(1), "the tasks fail");
    let mut texts = vec![
        (
            "stdout".to_string(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        ),
        (
            "stderr".to_string(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        ),
    ];
    files_below(&state, &mut texts);
    let names: Vec<&str> = texts.iter().map(|(n, _)| n.as_str()).collect();
    for f in [
        "report.json",
        "report.md",
        "report.xml",
        "report.html",
        "results.csv",
        "journal.jsonl",
    ] {
        assert!(
            names.iter().any(|n| n.ends_with(f)),
            "{f} was written: {names:?}"
        );
    }
    for (name, text) in &texts {
        assert!(!text.contains(KEY), "the key leaked into {name}");
        assert!(
            !text.contains("HOSTILE-ECHO"),
            "part of the key leaked into {name}"
        );
    }
    // The echoes did arrive, masked: the assertions above could not pass by accident.
    let report = texts
        .iter()
        .find(|(n, _)| n.ends_with("report.json"))
        .map(|(_, t)| t.clone())
        .unwrap();
    for echoed in [
        "refused Bearer sk-l…ef",
        "token=sk-l…ef",
        "proxy error for Bearer sk-l…ef",
        "\"you_sent\": \"Bearer sk-l…ef\"",
        "string \\\"Bearer sk-l…ef\\\"",
    ] {
        assert!(
            report.contains(echoed),
            "report.json shows `{echoed}`:\n{report}"
        );
    }
}

/// A group page of about `n` bytes.
fn big_page(n: usize) -> Value {
    json!({"count": 1, "next": null, "previous": null, "results": [
        {"id": "g", "name": "0001", "path": "All devices/Stores/North/0001", "padding": "x".repeat(n)}
    ]})
}

#[tokio::test]
async fn bodies_over_the_limit_fail_without_being_read_whole() {
    let mock = start(small(78)).await;
    let job = groups_job(
        &mock,
        "{ attempts: 4, initial_delay: 10ms, max_delay: 20ms }",
        None,
    );
    let h = Hostile::start(mock).await;
    // A body announced by Content-Length, and one streamed without it.
    for streamed in [false, true] {
        h.clear();
        h.set_rule(move |s| {
            if !s.is("GET", "/devicegroup/") {
                return Action::Forward;
            }
            let text = big_page(1 << 20).to_string();
            let body = if streamed {
                let chunks: Vec<Result<String, std::io::Error>> = text
                    .as_bytes()
                    .chunks(8192)
                    .map(|c| Ok(String::from_utf8_lossy(c).into_owned()))
                    .collect();
                axum::body::Body::from_stream(futures::stream::iter(chunks))
            } else {
                axum::body::Body::from(text)
            };
            Action::Reply(axum::response::Response::new(body))
        });
        let state = tempfile::tempdir().unwrap();
        let mut cfg = h.run_config(&job, state.path());
        cfg.connection.client.max_body = 64 * 1024;
        let err = run::run(cfg, CancellationToken::new()).await.unwrap_err();
        let text = esper_bulk::base::render_error(&err);
        assert!(
            text.contains("the response body is larger than the limit of 64 KiB"),
            "streamed {streamed}: {text}"
        );
        assert!(text.contains("--max-body"), "says how to raise it: {text}");
        assert_eq!(h.count("GET", "/devicegroup/"), 1, "not retried");
    }
    // The same through the binary's flag, and the default lets a 1 MiB page through.
    h.clear();
    h.set_rule(|s| {
        if s.is("GET", "/devicegroup/") {
            Action::Reply(answer(200, &big_page(1 << 20)))
        } else {
            Action::Forward
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("groups.yaml");
    std::fs::write(&file, &job).unwrap();
    let plan = |extra: &[&str]| {
        let mut cmd = h.bin();
        cmd.arg("plan").arg(&file).args(extra);
        cmd
    };
    let small_cap = tokio::task::spawn_blocking({
        let mut c = plan(&["--max-body", "64KiB"]);
        move || c.output().unwrap()
    })
    .await
    .unwrap();
    let stderr = String::from_utf8_lossy(&small_cap.stderr);
    assert_eq!(small_cap.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("larger than the limit of 64 KiB"),
        "{stderr}"
    );
    let default = tokio::task::spawn_blocking({
        let mut c = plan(&[]);
        move || c.output().unwrap()
    })
    .await
    .unwrap();
    assert_eq!(
        default.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&default.stderr)
    );
}

#[tokio::test]
async fn a_body_that_trickles_in_ends_with_a_timeout_in_bounded_time() {
    let mock = start(small(79)).await;
    let job = groups_job(
        &mock,
        "{ attempts: 2, initial_delay: 10ms, max_delay: 20ms }",
        None,
    );
    let h = Hostile::start(mock).await;
    h.set_rule(|s| {
        if !s.is("GET", "/devicegroup/") {
            return Action::Forward;
        }
        let drip = futures::stream::unfold(0u32, |n| async move {
            tokio::time::sleep(Duration::from_millis(100)).await;
            let chunk: Result<&'static str, std::io::Error> = Ok(if n == 0 {
                "{\"count\": 1, \"results\": ["
            } else {
                " "
            });
            (n < 600).then_some((chunk, n + 1))
        });
        Action::Reply(axum::response::Response::new(
            axum::body::Body::from_stream(drip),
        ))
    });
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("groups.yaml");
    std::fs::write(&file, &job).unwrap();
    let began = Instant::now();
    let out = tokio::task::spawn_blocking({
        let mut c = h.bin();
        c.arg("plan").arg(&file).args(["--timeout", "300ms"]);
        move || c.output().unwrap()
    })
    .await
    .unwrap();
    let took = began.elapsed();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("timed out"), "{stderr}");
    assert!(
        took < Duration::from_secs(6),
        "two attempts of 300ms, took {took:?}"
    );
    assert_eq!(h.count("GET", "/devicegroup/"), 2, "retry.attempts reads");
}

#[tokio::test]
async fn a_tenant_that_names_a_host_is_refused_before_anything_connects() {
    let mock = start(small(80)).await;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let port = listener.local_addr().unwrap().port();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("t.yaml");
    std::fs::write(&file, groups_job(&mock, "{ attempts: 1 }", None)).unwrap();
    let bad = format!("127.0.0.1:{port}/x?");
    for (flag, env) in [(Some(bad.as_str()), None), (None, Some(bad.as_str()))] {
        let mut c = crate::support::esper_bulk(&mock);
        c.env_remove("ESPER_BASE_URL").arg("plan").arg(&file);
        if let Some(t) = flag {
            c.args(["--tenant", t]);
        }
        if let Some(t) = env {
            c.env("ESPER_TENANT", t);
        }
        let out = tokio::task::spawn_blocking(move || c.output().unwrap())
            .await
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{stderr}");
        assert!(
            stderr.contains(&format!("`{bad}` from")) && stderr.contains("is not a tenant name"),
            "{stderr}"
        );
    }
    assert!(listener.accept().is_err(), "nothing connected to the port");
}
