//! Golden report renderers: one hand-built [`Report`] with tasks in every status, a
//! rollout stop, error text that needs escaping in every format, and a 20-second governor
//! timeline with 429s, rendered by `esper_bulk::report::render` and compared byte for byte
//! with `tests/fixtures/reports/{report.md,report.xml,results.csv,report.html}`.
//!
//! After a deliberate change to a renderer, rewrite the goldens with
//! `BLESS=1 cargo test --test it reports` and review the diff like code (open the HTML in
//! a browser). Under `CI=true` nothing is ever written. Structural checks (well-formed XML,
//! CSV that parses back, a self-contained page with one bar per sample, Markdown tables
//! without raw pipes) run on every render, so a blessed golden cannot hide a broken file.

use crate::support::{blessing, diff};

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use esper_bulk::base::FailureClass;
use esper_bulk::exec::{DeviceState, GaveUp, StopReason, TaskStatus};
use esper_bulk::report::render;
use esper_bulk::report::{
    AttemptReport, DeviceCountsReport, DeviceResultReport, FailureReport, FollowedReport,
    GovernorReport, NeedReport, REPORT_FORMAT, ReasonReport, Report, RunInfo, RunOutcome,
    SampleReport, StepReport, StopReport, Summary, TaskReport,
};
use serde_json::{Value, json};

const DIR: &str = "tests/fixtures/reports";
const SERVER: &str = "https://acme-api.esper.cloud/api";
const EID: &str = "8e9d7c6b-0000-4000-8000-000000000001";

/// An Esper error with everything that needs escaping somewhere: `<`, `&`, `"`, `,`, `|`,
/// a newline, non-ASCII text and a BEL, which XML 1.0 cannot carry at all. `{group}`
/// differs per task, so grouping must see through the ids in the path.
const TRICKY_PATH: &str = "POST /v0/enterprise/{eid}/devicegroup/{group}/install/ answered 400";
const TRICKY_MESSAGE: &str = "{\"detail\": \"version_code 410 < installed 412 & \\\"downgrade\\\" refused, see policy|kiosk\"}\n\
    second line, for Grüße\u{7}";

/// The tricky failure of the install to `group`, as the engine records it.
fn tricky_failure(group: &str) -> FailureReport {
    FailureReport {
        class: FailureClass::Client,
        http_status: Some(400),
        esper_message: Some(TRICKY_MESSAGE.into()),
        hint: None,
        description: TRICKY_PATH.replace("{eid}", EID).replace("{group}", group),
        maybe_processed: false,
    }
}

/// Its one-line text, as every renderer shows it.
fn tricky(group: &str) -> String {
    format!(
        "{}: {TRICKY_MESSAGE}",
        TRICKY_PATH.replace("{eid}", EID).replace("{group}", group)
    )
}

/// The rollout stop of the fixture's `reboot` step.
fn threshold() -> StopReport {
    StopReport {
        step: "reboot".into(),
        stage: 1,
        stages: 3,
        failed: 2,
        allowed: 1,
        total: 3,
    }
}

fn http(
    class: FailureClass,
    status: u16,
    description: &str,
    esper_message: &str,
    hint: Option<&str>,
) -> FailureReport {
    FailureReport {
        class,
        http_status: Some(status),
        esper_message: Some(esper_message.into()),
        hint: hint.map(str::to_string),
        description: description.into(),
        maybe_processed: status >= 500,
    }
}

fn throttled(path: &str) -> FailureReport {
    http(
        FailureClass::RateLimited,
        429,
        &format!("POST {path} answered 429"),
        "Request was throttled.",
        Some("rate limited: lower limits.rate"),
    )
}

fn upstream() -> FailureReport {
    http(
        FailureClass::Server,
        503,
        &format!(
            "POST /v0/enterprise/{EID}/devicegroup/0a1b2c3d-0000-4000-8000-00000000000c/install/ answered 503"
        ),
        "upstream timeout",
        None,
    )
}

fn attempt(
    n: u32,
    at_ms: u64,
    took_ms: u64,
    failure: Option<FailureReport>,
    wait_ms: Option<u64>,
) -> AttemptReport {
    AttemptReport {
        n,
        at_ms,
        took_ms,
        failure,
        wait_ms,
        note: None,
    }
}

fn task(
    id: u32,
    step: &str,
    target: &str,
    status: TaskStatus,
    reason: Option<ReasonReport>,
    attempts: Vec<AttemptReport>,
    result: Option<Value>,
) -> TaskReport {
    TaskReport {
        id,
        step: step.into(),
        target: target.into(),
        status,
        reason,
        attempts,
        result,
        followed: None,
        devices: Vec::new(),
        segment: None,
    }
}

fn ok(at_ms: u64, took_ms: u64) -> Vec<AttemptReport> {
    vec![attempt(1, at_ms, took_ms, None, None)]
}

fn failed(failure: FailureReport, gave_up: Option<GaveUp>) -> Option<ReasonReport> {
    Some(ReasonReport::Failed { failure, gave_up })
}

fn one_device_failed() -> Option<ReasonReport> {
    Some(ReasonReport::DeviceFailures {
        counts: DeviceCountsReport {
            failed: 1,
            ..DeviceCountsReport::default()
        },
    })
}

/// The fixture: a kiosk rollout that failed in several ways and then hit its deadline.
fn fixture() -> Report {
    use TaskStatus::*;
    let needs = Some(ReasonReport::NeedsFailed {
        needs: vec![NeedReport {
            step: "install".into(),
            not_succeeded: 4,
            item: None,
        }],
    });
    let stopped = Some(ReasonReport::RolloutStopped { stop: threshold() });
    let deadline = Some(ReasonReport::NotStarted {
        stopped: Some(StopReason::Deadline),
    });
    let install_path =
        format!("/v0/enterprise/{EID}/devicegroup/0a1b2c3d-0000-4000-8000-000000000001/install/");
    let invalid_token = http(
        FailureClass::Auth,
        401,
        &format!("GET /v1/enterprise/{EID}/application/ answered 401"),
        "invalid token",
        Some("check ESPER_API_KEY and that the key belongs to this tenant"),
    );
    let timed_out = FailureReport {
        class: FailureClass::Timeout,
        http_status: None,
        esper_message: None,
        hint: Some("raise --timeout or lower limits.rate".into()),
        description: "POST /commands/v0/commands/: timed out waiting for the server".into(),
        maybe_processed: true,
    };
    let mut reboot_ok = task(
        11,
        "reboot",
        "POS-0001",
        Succeeded,
        None,
        ok(7000, 250),
        Some(
            json!({"id": "c0ffee00-0000-4000-8000-000000000001", "command_id": "c0ffee00-0000-4000-8000-000000000001", "action": "created"}),
        ),
    );
    reboot_ok.followed = Some(FollowedReport {
        command: "c0ffee00-0000-4000-8000-000000000001".into(),
        finished: true,
        counts: Some(DeviceCountsReport {
            succeeded: 1,
            ..DeviceCountsReport::default()
        }),
        devices: Vec::new(),
        install: None,
    });
    // A group install within its wait's threshold, with two devices still offline: they
    // are counted and listed as pending, not failed.
    let mut install_pending = task(
        0,
        "install",
        "Stores/Berlin/Mitte",
        Succeeded,
        None,
        ok(120, 340),
        Some(
            json!({"version_id": "5b0e6a7c-1d2e-4f30-9a1b-2c3d4e5f6a70", "application_id": "app-1", "action": "installed"}),
        ),
    );
    install_pending.followed = Some(FollowedReport {
        command: "c0ffee00-0000-4000-8000-0000000000a0".into(),
        finished: false,
        counts: Some(DeviceCountsReport {
            succeeded: 38,
            pending: 2,
            ..DeviceCountsReport::default()
        }),
        devices: ["POS-0031", "POS-0032"]
            .iter()
            .map(|d| DeviceResultReport {
                id: d.to_string(),
                state: DeviceState::Pending,
                reason: None,
            })
            .collect(),
        install: None,
    });
    let tasks = vec![
        install_pending,
        task(
            1,
            "install",
            "Stores/Köln/Süd & Co",
            Succeeded,
            None,
            vec![
                attempt(1, 150, 90, Some(throttled(&install_path)), Some(800)),
                attempt(2, 1040, 310, None, None),
            ],
            Some(
                json!({"version_id": "5b0e6a7c-1d2e-4f30-9a1b-2c3d4e5f6a71", "action": "installed"}),
            ),
        ),
        task(
            2,
            "install",
            "Stores/Paris|Nord",
            Failed,
            failed(tricky_failure("0a1b2c3d-0000-4000-8000-00000000000a"), None),
            vec![attempt(
                1,
                180,
                220,
                Some(tricky_failure("0a1b2c3d-0000-4000-8000-00000000000a")),
                None,
            )],
            None,
        ),
        task(
            3,
            "install",
            "Stores/Roma",
            Failed,
            failed(tricky_failure("0a1b2c3d-0000-4000-8000-00000000000b"), None),
            vec![attempt(
                1,
                210,
                230,
                Some(tricky_failure("0a1b2c3d-0000-4000-8000-00000000000b")),
                None,
            )],
            None,
        ),
        task(
            4,
            "install",
            "Stores/Wien",
            Unknown,
            failed(upstream(), Some(GaveUp::Attempts)),
            vec![
                attempt(1, 240, 1500, Some(upstream()), Some(500)),
                attempt(2, 2240, 1500, Some(upstream()), Some(1000)),
                attempt(3, 4740, 1500, Some(upstream()), None),
            ],
            None,
        ),
        task(
            5,
            "install",
            "Stores/Zürich",
            Failed,
            failed(invalid_token.clone(), None),
            vec![attempt(1, 260, 80, Some(invalid_token), None)],
            None,
        ),
        task(
            6,
            "battery-alarm",
            "Stores/Berlin/Mitte",
            Succeeded,
            None,
            ok(300, 150),
            Some(json!({"id": 9001, "rule_id": 9001, "action": "created"})),
        ),
        task(
            7,
            "battery-alarm",
            "Stores/Roma",
            Succeeded,
            None,
            vec![
                attempt(
                    1,
                    5100,
                    60,
                    Some(throttled(&format!("/v1/enterprise/{EID}/alarmrules/"))),
                    Some(1200),
                ),
                attempt(2, 6400, 140, None, None),
            ],
            Some(json!({"id": 9002, "rule_id": 9002, "action": "updated"})),
        ),
        task(
            8,
            "battery-alarm",
            "Stores/Wien",
            Succeeded,
            None,
            ok(6600, 130),
            Some(json!({"id": "9003", "action": "unchanged"})),
        ),
        task(
            9,
            "kiosk-policy",
            "Stores/Berlin/Mitte",
            Skipped,
            needs.clone(),
            vec![],
            None,
        ),
        task(
            10,
            "kiosk-policy",
            "Stores/Roma",
            Skipped,
            needs,
            vec![],
            None,
        ),
        reboot_ok,
        task(
            12,
            "reboot",
            "POS-0002, back office",
            Failed,
            one_device_failed(),
            ok(7010, 260),
            Some(
                json!({"command_id": "c0ffee00-0000-4000-8000-000000000002", "action": "created"}),
            ),
        ),
        task(
            13,
            "reboot",
            "POS-0003 \"spare\"",
            Failed,
            one_device_failed(),
            vec![
                attempt(1, 7020, 5000, Some(timed_out), Some(700)),
                attempt(2, 12720, 240, None, None),
            ],
            None,
        ),
        task(
            14,
            "reboot",
            "POS-0004",
            Skipped,
            stopped.clone(),
            vec![],
            None,
        ),
        task(
            15,
            "reboot",
            "POS-0005",
            Skipped,
            stopped.clone(),
            vec![],
            None,
        ),
        task(16, "reboot", "POS-0006", Skipped, stopped, vec![], None),
        task(
            17,
            "move-lab",
            "POS-0101",
            NotStarted,
            deadline.clone(),
            vec![],
            None,
        ),
        task(
            18,
            "move-lab",
            "POS-0102",
            NotStarted,
            deadline,
            vec![],
            None,
        ),
    ];
    let steps = [
        ("install", "app_install"),
        ("battery-alarm", "alarm_rule"),
        ("kiosk-policy", "command"),
        ("reboot", "command"),
        ("move-lab", "group_move"),
    ]
    .iter()
    .map(|(id, kind)| {
        let mut by_status = BTreeMap::new();
        let mine: Vec<&TaskReport> = tasks.iter().filter(|t| t.step == *id).collect();
        for t in &mine {
            *by_status.entry(t.status.as_str().to_string()).or_default() += 1;
        }
        StepReport {
            id: id.to_string(),
            kind: kind.to_string(),
            tasks: mine.len() as u64,
            by_status,
        }
    })
    .collect();

    let requests = [
        8, 12, 15, 18, 20, 22, 9, 6, 10, 13, 15, 16, 18, 12, 8, 10, 12, 14, 11, 5,
    ];
    let limited = [0, 0, 0, 0, 0, 9, 6, 0, 0, 0, 0, 0, 7, 5, 0, 0, 0, 0, 0, 0];
    let window = [8, 8, 9, 10, 11, 5, 3, 3, 4, 5, 6, 7, 4, 3, 3, 4, 5, 5, 6, 6];
    let rate = [
        None,
        None,
        None,
        None,
        None,
        Some(15.0),
        Some(11.2),
        Some(12.1),
        Some(13.4),
        Some(14.6),
        Some(15.5),
        Some(16.0),
        Some(11.7),
        Some(9.8),
        Some(11.0),
        Some(12.3),
        Some(13.5),
        Some(14.2),
        Some(14.5),
        Some(14.5),
    ];
    let timeline: Vec<SampleReport> = (0..20)
        .map(|i| SampleReport {
            t: i as u32,
            requests: requests[i],
            rate_limited: limited[i],
            window: window[i],
            rate: rate[i],
        })
        .collect();
    let total: u64 = requests.iter().map(|&n| n as u64).sum();
    let rate_limited: u64 = limited.iter().map(|&n| n as u64).sum();
    let elapsed_ms = 20_400;
    let count = |s: TaskStatus| tasks.iter().filter(|t| t.status == s).count() as u64;
    let summary = Summary {
        tasks: tasks.len() as u64,
        succeeded: count(Succeeded),
        failed: count(Failed),
        skipped: count(Skipped),
        unknown: count(Unknown),
        not_started: count(NotStarted),
        interrupted: count(TaskStatus::Interrupted),
        devices_pending: 2,
        tasks_with_pending: 1,
        requests: total,
        retries: tasks
            .iter()
            .map(|t| t.attempts.len().saturating_sub(1) as u64)
            .sum(),
        rate_limited,
        mean_rate: (total as f64 / (elapsed_ms as f64 / 1000.0) * 10.0).round() / 10.0,
        peak_rate: 40.0,
    };
    let by_status = BTreeMap::from([
        ("200".to_string(), total - rate_limited - 12),
        ("201".to_string(), 5),
        ("400".to_string(), 2),
        ("401".to_string(), 1),
        ("429".to_string(), rate_limited),
        ("503".to_string(), 3),
        ("error".to_string(), 1),
    ]);
    Report {
        format: REPORT_FORMAT,
        run: RunInfo {
            id: "kiosk-rollout-20261128T030000Z-1a2b".into(),
            job: "kiosk-rollout".into(),
            plan_hash: "sha256:0f1e2d3c4b5a69788796a5b4c3d2e1f00f1e2d3c4b5a69788796a5b4c3d2e1f0"
                .into(),
            source: "jobs/kiosk-rollout.yaml".into(),
            server: SERVER.into(),
            started_at: "2026-11-28T03:00:00Z".into(),
            finished_at: "2026-11-28T03:00:20.4Z".into(),
            elapsed_ms,
            outcome: RunOutcome::Deadline,
            exit_code: esper_bulk::exit::INCOMPLETE,
            rollout_stops: vec![threshold()],
            segments: Vec::new(),
            limit: Vec::new(),
        },
        summary,
        governor: GovernorReport {
            requests: total,
            by_status,
            rate_limited,
            window: 6,
            window_max: 11,
            window_min: 3,
            window_changes: 14,
            paused_ms: 4_200,
            adaptive_rate: Some(14.5),
            timeline,
            coordinator: None,
        },
        steps,
        tasks,
        causes: Vec::new(),
        notifications: Vec::new(),
    }
}

/// A run where everything went right: every format must say so plainly.
fn clean() -> Report {
    let mut r = fixture();
    r.tasks.retain(|t| t.status == TaskStatus::Succeeded);
    // Every device finished too.
    for t in &mut r.tasks {
        if let Some(c) = t.followed.as_mut().and_then(|f| f.counts.as_mut()) {
            c.succeeded += std::mem::take(&mut c.pending);
        }
        if let Some(f) = t.followed.as_mut() {
            f.devices.clear();
        }
    }
    for st in &mut r.steps {
        let n = r.tasks.iter().filter(|t| t.step == st.id).count() as u64;
        st.tasks = n;
        st.by_status = BTreeMap::from([("succeeded".to_string(), n)]);
    }
    r.steps.retain(|s| s.tasks > 0);
    r.summary = Summary {
        tasks: r.tasks.len() as u64,
        succeeded: r.tasks.len() as u64,
        requests: 14,
        mean_rate: 2.0,
        peak_rate: 2.0,
        ..Summary::default()
    };
    r.run.outcome = RunOutcome::Succeeded;
    r.run.exit_code = 0;
    r.run.rollout_stops.clear();
    r.governor = GovernorReport {
        requests: 14,
        window: 8,
        window_max: 8,
        window_min: 8,
        timeline: vec![SampleReport {
            t: 0,
            requests: 14,
            rate_limited: 0,
            window: 8,
            rate: None,
        }],
        ..GovernorReport::default()
    };
    r
}

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(DIR)
}

#[test]
fn golden_reports() {
    let r = fixture();
    let bless = blessing();
    let mut failures = Vec::new();
    for (name, actual) in [
        ("report.md", render::markdown(&r)),
        ("report.xml", render::junit(&r)),
        ("results.csv", render::csv(&r)),
        ("report.html", render::html(&r)),
    ] {
        let path = dir().join(name);
        let expected = std::fs::read_to_string(&path).ok();
        if expected.as_deref() == Some(actual.as_str()) {
            continue;
        }
        if bless {
            std::fs::create_dir_all(dir()).unwrap();
            std::fs::write(&path, &actual).unwrap_or_else(|e| panic!("{name}: {e}"));
            eprintln!("blessed {DIR}/{name}");
            continue;
        }
        failures.push(match expected {
            None => format!("{DIR}/{name} is missing"),
            Some(expected) => format!(
                "{DIR}/{name} differs from the rendered report\n{}",
                diff(&expected, &actual)
            ),
        });
    }
    assert!(
        failures.is_empty(),
        "{}\n\nif the new output is right: BLESS=1 cargo test --test it reports",
        failures.join("\n\n")
    );
}

#[test]
fn renders_are_deterministic() {
    let (a, b) = (fixture(), fixture());
    assert_eq!(render::markdown(&a), render::markdown(&b));
    assert_eq!(render::html(&a), render::html(&b));
    assert_eq!(render::junit(&a), render::junit(&b));
    assert_eq!(render::csv(&a), render::csv(&b));
}

#[test]
fn junit_is_well_formed_with_one_case_per_task() {
    let r = fixture();
    let doc = parse_xml(&render::junit(&r), false).unwrap_or_else(|e| panic!("report.xml: {e}"));
    let named = |n: &str| doc.iter().filter(|e| e.name == n).collect::<Vec<_>>();
    assert_eq!(doc[0].name, "testsuites");
    assert_eq!(named("testsuite").len(), r.steps.len());
    assert_eq!(named("testcase").len(), r.tasks.len());
    let s = &r.summary;
    assert_eq!(named("failure").len() as u64, s.failed);
    assert_eq!(named("error").len() as u64, s.unknown);
    assert_eq!(named("skipped").len() as u64, s.skipped + s.not_started);
    // Suite counts agree with the cases they hold.
    for (suite, step) in named("testsuite").iter().zip(&r.steps) {
        assert_eq!(suite.attr("name"), Some(step.id.as_str()));
        assert_eq!(suite.attr("tests"), Some(step.tasks.to_string().as_str()));
        let n = |k: &str| step.by_status.get(k).copied().unwrap_or(0);
        assert_eq!(
            suite.attr("failures"),
            Some(n("failed").to_string().as_str())
        );
        assert_eq!(
            suite.attr("skipped"),
            Some((n("skipped") + n("not_started")).to_string().as_str())
        );
    }
    let case = named("testcase")
        .into_iter()
        .find(|c| c.attr("name") == Some("Stores/Paris|Nord #2"))
        .expect("the case of task 2");
    assert_eq!(
        case.attr("classname"),
        Some("esper-bulk.kiosk-rollout.install")
    );
    // The tricky error survives as the failure message, minus the BEL XML cannot carry.
    let failure = named("failure")[0];
    let want = tricky("0a1b2c3d-0000-4000-8000-00000000000a").replace('\u{7}', "");
    assert_eq!(failure.attr("message"), Some(want.as_str()));
    assert!(failure.text.starts_with(&want), "{}", failure.text);
    assert!(
        failure.text.contains("1. at 0.180s: 400 after 220 ms"),
        "{}",
        failure.text
    );
    let err = named("system-err");
    assert_eq!(err.len(), 1, "the rollout stop lands on its step's suite");
    assert_eq!(err[0].text, threshold().to_string());
}

#[test]
fn csv_parses_back_with_the_tricky_error_intact() {
    let r = fixture();
    let text = render::csv(&r);
    let mut rd = csv::Reader::from_reader(text.as_bytes());
    assert_eq!(
        rd.headers().unwrap().iter().collect::<Vec<_>>(),
        [
            "task",
            "step",
            "target",
            "status",
            "attempts",
            "error",
            "result_id"
        ]
    );
    let (pending, rows): (Vec<csv::StringRecord>, Vec<csv::StringRecord>) = rd
        .records()
        .map(Result::unwrap)
        .partition(|row| row[2].contains(" device POS-"));
    // The group install's two offline devices get a row each, after the group's.
    assert_eq!(pending.len(), 2);
    for (row, d) in pending.iter().zip(["POS-0031", "POS-0032"]) {
        assert_eq!((&row[0], &row[3]), ("0", "pending"));
        assert_eq!(&row[2], format!("Stores/Berlin/Mitte device {d}"));
    }
    assert_eq!(rows.len(), r.tasks.len());
    for (row, t) in rows.iter().zip(&r.tasks) {
        assert_eq!(row.len(), 7);
        assert_eq!(&row[0], t.id.to_string());
        assert_eq!(&row[1], t.step);
        assert_eq!(&row[2], t.target);
        assert_eq!(&row[3], t.status.as_str());
        assert_eq!(&row[4], t.attempts.len().to_string());
        assert_eq!(&row[5], t.error_text().unwrap_or_default());
    }
    assert_eq!(&rows[2][5], tricky("0a1b2c3d-0000-4000-8000-00000000000a"));
    let ids: Vec<&str> = rows.iter().map(|r| &r[6]).collect();
    assert_eq!(ids[0], "5b0e6a7c-1d2e-4f30-9a1b-2c3d4e5f6a70", "version_id");
    assert_eq!(ids[6], "9001", "a numeric id");
    assert_eq!(ids[8], "9003", "a string id");
    assert_eq!(
        ids[11], "c0ffee00-0000-4000-8000-000000000001",
        "id before command_id"
    );
    assert_eq!(
        ids[12], "c0ffee00-0000-4000-8000-000000000002",
        "command_id alone"
    );
    assert_eq!(ids[2], "", "no result, no id");
}

#[test]
fn html_is_self_contained_with_one_bar_per_sample() {
    let r = fixture();
    let page = render::html(&r);
    check_page(&page, r.governor.timeline.len());
    assert!(
        page.contains("&lt; installed 412 &amp; \\&quot;downgrade"),
        "escaped error"
    );
    assert!(!page.contains("< installed"), "raw error text in the page");
    assert!(page.contains("class=\"rate\""), "the adaptive rate line");
    // The failures are grouped: both tasks with the tricky error share one row.
    assert_eq!(page.matches("policy|kiosk").count(), 1);

    let mut one = fixture();
    one.governor.timeline.truncate(1);
    check_page(&render::html(&one), 1);
    let mut none = fixture();
    none.governor.timeline.clear();
    none.governor.adaptive_rate = None;
    let page = render::html(&none);
    check_page(&page, 0);
    assert!(page.contains("no requests were sampled"));
}

/// Well-formed, one `req` bar per sample, no reference to anything outside the page.
fn check_page(page: &str, samples: usize) {
    let doc = parse_xml(page, true).unwrap_or_else(|e| panic!("report.html: {e}"));
    assert_eq!(doc.iter().filter(|e| e.name == "svg").count(), 1);
    let bars = doc
        .iter()
        .filter(|e| e.name == "rect" && e.attr("class") == Some("req"))
        .count();
    assert_eq!(bars, samples, "one bar per timeline sample");
    for banned in [
        "src=", "href=", "url(", "@import", "<link", "<img", "xlink", "<script ",
    ] {
        assert!(!page.contains(banned), "the page references {banned}");
    }
    // At most one script, inline, and only with tables of failed devices for it to sort.
    let scripts = page.matches("<script>").count();
    assert!(scripts <= 1, "{scripts} scripts");
    assert_eq!(scripts == 1, page.contains("<section class=\"devs\""));
    // The only URL is the server's, as text.
    assert!(
        !page.replace(SERVER, "").contains("http"),
        "an http URL in the page"
    );
}

#[test]
fn markdown_tables_have_no_raw_pipes() {
    let r = fixture();
    let md = render::markdown(&r);
    let mut header: Option<usize> = None;
    let mut rows = 0;
    for line in md.lines() {
        if !line.starts_with('|') {
            header = None;
            continue;
        }
        let cols = unescaped_pipes(line);
        match header {
            None => header = Some(cols),
            Some(h) => assert_eq!(cols, h, "a cell leaks a `|` or a line break:\n{line}"),
        }
        rows += 1;
    }
    // Summary (2 + 15), steps (2 + 5), failures (2 + 6).
    assert_eq!(rows, 17 + 7 + 8, "{md}");
    assert!(
        md.contains("policy\\|kiosk"),
        "the pipe in the error is escaped"
    );
    assert!(
        md.contains("\\<id\\>"),
        "ids in paths are masked so failures group"
    );
    assert!(md.contains("| 2 | 0 | failed | `install` |"), "{md}");
    for needle in [
        "ESPER_API_KEY",
        "`limits.rate`",
        "re-run the job",
        "before you re-run the job",
        "canary devices",
    ] {
        assert!(md.contains(needle), "advice lacks {needle}:\n{md}");
    }
}

/// Cells per GFM: a backslash escapes the next character, anything else `|` separates.
fn unescaped_pipes(line: &str) -> usize {
    let (mut n, mut chars) = (0, line.chars());
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                chars.next();
            }
            '|' => n += 1,
            _ => {}
        }
    }
    n
}

#[test]
fn a_clean_run_says_so() {
    let r = clean();
    let md = render::markdown(&r);
    assert!(md.contains("Nothing failed."), "{md}");
    assert!(md.contains("Nothing: every task succeeded."), "{md}");
    assert!(!md.contains("Rollout stops"));
    let doc = parse_xml(&render::junit(&r), false).unwrap();
    assert!(
        !doc.iter()
            .any(|e| matches!(e.name.as_str(), "failure" | "error" | "skipped"))
    );
    check_page(&render::html(&r), 1);
    assert_eq!(render::csv(&r).lines().count(), r.tasks.len() + 1);
}

/// The fixture with a command to three named devices, two of which failed: the page then
/// has a table of failed devices for the script to sort and filter.
fn with_failed_devices() -> Report {
    use esper_bulk::exec::DeviceState;
    use esper_bulk::report::{DeviceRef, DeviceResultReport};
    let mut r = fixture();
    let t = r
        .tasks
        .iter_mut()
        .find(|t| t.step == "reboot" && t.status == TaskStatus::Failed)
        .expect("the fixture has a failed reboot");
    t.devices = (1..=3)
        .map(|i| DeviceRef {
            id: format!("d{i}"),
            name: format!("ACME-POS-{i:02}"),
            serial: Some(format!("SER{i:04}")),
            group: Some("Stores/North/0042".into()),
        })
        .collect();
    t.followed = Some(FollowedReport {
        command: "c1".into(),
        finished: true,
        install: None,
        counts: Some(DeviceCountsReport {
            succeeded: 1,
            failed: 1,
            timed_out: 1,
            ..Default::default()
        }),
        devices: vec![
            DeviceResultReport {
                id: "d2".into(),
                state: DeviceState::Failed,
                reason: Some("battery below 10 %".into()),
            },
            DeviceResultReport {
                id: "d3".into(),
                state: DeviceState::TimedOut,
                reason: None,
            },
        ],
    });
    r
}

/// Runs headless Chromium with `args` on `page`, stdout into `out`, within 90 s.
fn chromium(browser: &Path, profile: &Path, page: &Path, args: &[String], out: &Path) {
    let mut child = std::process::Command::new(browser)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(args)
        .arg(format!("file://{}", page.display()))
        .stdout(std::fs::File::create(out).unwrap())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start chromium");
    let start = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if start.elapsed() > Duration::from_secs(90) {
            let _ = child.kill();
            let _ = child.wait();
            panic!("chromium did not finish within 90 s");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(status.success(), "chromium exited with {status}");
}

/// Renders the page in headless Chromium: a screenshot that is not blank, and the DOM
/// after the page's script ran, with the failed devices in their table. Without Chromium
/// the check fails under CI (`.ci/run` installs it) and is skipped, saying so, elsewhere.
#[test]
fn html_renders_in_a_browser() {
    let browser = ["/usr/bin/chromium", "/usr/bin/chromium-browser"]
        .iter()
        .map(Path::new)
        .find(|p| p.exists());
    let Some(browser) = browser else {
        assert!(
            std::env::var_os("CI").is_none(),
            "chromium is not installed, and CI needs the browser check of report.html: install Debian's `chromium` (.ci/run does)"
        );
        eprintln!("browser check skipped: chromium is not installed (under CI it fails)");
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let page = tmp.path().join("report.html");
    let html = render::html(&with_failed_devices());
    assert!(
        !html.contains("2 of 2 shown"),
        "the count is the script's to fill in"
    );
    std::fs::write(&page, &html).unwrap();
    let png = tmp.path().join("r.png");
    let profile = tmp.path().join("profile");
    chromium(
        browser,
        &profile,
        &page,
        &[
            format!("--screenshot={}", png.display()),
            "--window-size=1200,1600".into(),
        ],
        &tmp.path().join("screenshot.out"),
    );
    let bytes = std::fs::read(&png).expect("chromium wrote no screenshot");
    assert!(bytes.starts_with(b"\x89PNG\r\n\x1a\n"), "not a PNG");
    // IHDR holds the size; a blank page compresses to a few kilobytes.
    let be = |i: usize| u32::from_be_bytes(bytes[i..i + 4].try_into().unwrap());
    assert_eq!((be(16), be(20)), (1200, 1600));
    assert!(
        bytes.len() > 20_000,
        "a {}-byte screenshot is blank",
        bytes.len()
    );
    let dom_file = tmp.path().join("dom.html");
    chromium(
        browser,
        &profile,
        &page,
        &["--dump-dom".into(), "--virtual-time-budget=5000".into()],
        &dom_file,
    );
    let dom = std::fs::read_to_string(&dom_file).unwrap();
    let table = dom
        .split("<section class=\"devs\"")
        .skip(1)
        .find(|s| s.contains("<h3>step <code>reboot</code>"))
        .and_then(|s| s.split("</section>").next())
        .expect("a table of the reboot's failed devices");
    // The script ran: it counted the rows its filter shows.
    assert!(
        table.contains("2 of 2 shown"),
        "the script did not run:\n{table}"
    );
    for needle in [
        "ACME-POS-02",
        "SER0002",
        "battery below 10 %",
        "ACME-POS-03",
        "timed_out",
    ] {
        assert!(table.contains(needle), "the table lacks {needle}:\n{table}");
    }
    assert!(
        !table.contains("ACME-POS-01"),
        "the device that succeeded is not a failed device"
    );
    for needle in [
        "Failed devices",
        "What failed and why",
        "next action",
        "look at these 2 devices",
    ] {
        assert!(dom.contains(needle), "the page lacks {needle}");
    }

    // Sorting and filtering, driven as a person would: two clicks on the device column
    // (descending), then text typed into the filter box.
    let driver = "<script>\n\
        var sec = Array.prototype.slice.call(document.querySelectorAll('section.devs'))\n\
          .filter(function (s) { return s.querySelector('h3 code').textContent === 'reboot'; })[0];\n\
        var th = sec.querySelector('th');\n\
        th.click(); th.click();\n\
        var input = sec.querySelector('input');\n\
        input.value = 'BATTERY';\n\
        input.dispatchEvent(new Event('input'));\n\
        </script>\n</body>";
    let driven = tmp.path().join("driven.html");
    std::fs::write(&driven, html.replace("</body>", driver)).unwrap();
    let dom_file = tmp.path().join("driven-dom.html");
    chromium(
        browser,
        &profile,
        &driven,
        &["--dump-dom".into(), "--virtual-time-budget=5000".into()],
        &dom_file,
    );
    let dom = std::fs::read_to_string(&dom_file).unwrap();
    let table = dom
        .split("<section class=\"devs\"")
        .skip(1)
        .find(|s| s.contains("<h3>step <code>reboot</code>"))
        .and_then(|s| s.split("</section>").next())
        .expect("a table of the reboot's failed devices");
    assert!(
        table.contains("1 of 2 shown"),
        "the filter hides a row:\n{table}"
    );
    assert!(
        table.contains("aria-sort=\"descending\""),
        "the second click sorts descending:\n{table}"
    );
    let (three, two) = (
        table.find("ACME-POS-03").unwrap(),
        table.find("ACME-POS-02").unwrap(),
    );
    assert!(three < two, "sorted by device, descending:\n{table}");
    let kept = table[..two].rfind("<tr").unwrap();
    assert!(
        !table[kept..two].contains("hidden"),
        "the row with the text stays:\n{table}"
    );
    let gone = table[..three].rfind("<tr").unwrap();
    assert!(
        table[gone..three].contains("hidden"),
        "the row without the text is hidden:\n{table}"
    );
}

// ---------------------------------------------------------------------------------------
// A small XML 1.0 well-formedness checker: enough for the files the renderers write
// (elements, attributes, character and entity references, comments, a prolog, and for
// HTML a doctype), strict about everything else.

struct Element {
    name: String,
    attrs: Vec<(String, String)>,
    /// The element's own character data, decoded.
    text: String,
}

impl Element {
    fn attr(&self, name: &str) -> Option<&str> {
        self.attrs
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

fn xml_char(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\r' | '\u{20}'..='\u{D7FF}' | '\u{E000}'..='\u{FFFD}' | '\u{10000}'..)
}

fn name_char(c: char, first: bool) -> bool {
    c.is_alphabetic()
        || c == '_'
        || c == ':'
        || (!first && (c.is_ascii_digit() || c == '-' || c == '.'))
}

/// Decodes character data or an attribute value; a raw `<` or a bad reference is an error.
fn decode(s: &str, at: usize) -> Result<String, String> {
    let mut out = String::new();
    let mut rest = s;
    while let Some(i) = rest.find(['&', '<']) {
        out.push_str(&rest[..i]);
        if rest[i..].starts_with('<') {
            return Err(format!("raw `<` near byte {at}"));
        }
        let end = rest[i..]
            .find(';')
            .ok_or_else(|| format!("unterminated reference near byte {at}"))?;
        let ent = &rest[i + 1..i + end];
        let c = match ent {
            "amp" => '&',
            "lt" => '<',
            "gt" => '>',
            "quot" => '"',
            "apos" => '\'',
            _ => {
                let n = if let Some(h) = ent.strip_prefix("#x") {
                    u32::from_str_radix(h, 16).ok()
                } else if let Some(d) = ent.strip_prefix('#') {
                    d.parse().ok()
                } else {
                    None
                };
                n.and_then(char::from_u32)
                    .filter(|c| xml_char(*c))
                    .ok_or_else(|| format!("bad reference &{ent}; near byte {at}"))?
            }
        };
        out.push(c);
        rest = &rest[i + end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// Checks `doc` and returns its elements in document order. With `html`, a leading
/// `<!DOCTYPE html>` is allowed in place of the XML declaration.
fn parse_xml(doc: &str, html: bool) -> Result<Vec<Element>, String> {
    if let Some(c) = doc.chars().find(|c| !xml_char(*c)) {
        return Err(format!(
            "character U+{:04X} is not allowed in XML 1.0",
            c as u32
        ));
    }
    let mut rest = doc;
    if let Some(r) = rest.strip_prefix("<?xml ") {
        rest = &r[r.find("?>").ok_or("unterminated XML declaration")? + 2..];
    } else if !html {
        return Err("no XML declaration".into());
    }
    if html {
        rest = rest
            .trim_start()
            .strip_prefix("<!DOCTYPE html>")
            .ok_or("no <!DOCTYPE html>")?;
    }
    let mut out: Vec<Element> = Vec::new();
    let mut open: Vec<(String, usize)> = Vec::new();
    let mut roots = 0;
    loop {
        let at = doc.len() - rest.len();
        let lt = rest.find('<').unwrap_or(rest.len());
        let text = decode(&rest[..lt], at)?;
        match open.last() {
            Some((_, i)) => out[*i].text.push_str(&text),
            None if !text.trim().is_empty() => {
                return Err(format!("text outside the root element near byte {at}"));
            }
            None => {}
        }
        rest = &rest[lt..];
        if rest.is_empty() {
            break;
        }
        let at = doc.len() - rest.len();
        if let Some(r) = rest.strip_prefix("<!--") {
            let end = r.find("-->").ok_or("unterminated comment")?;
            rest = &r[end + 3..];
        } else if let Some(r) = rest.strip_prefix("</") {
            let end = r.find('>').ok_or("unterminated end tag")?;
            let name = r[..end].trim_end();
            match open.pop() {
                Some((n, _)) if n == name => {}
                Some((n, _)) => return Err(format!("</{name}> closes <{n}> near byte {at}")),
                None => return Err(format!("</{name}> without an open element near byte {at}")),
            }
            rest = &r[end + 1..];
        } else {
            let r = &rest[1..];
            let name_len = r
                .char_indices()
                .find(|(i, c)| !name_char(*c, *i == 0))
                .map_or(r.len(), |(i, _)| i);
            if name_len == 0 {
                return Err(format!("bad tag near byte {at}"));
            }
            let name = r[..name_len].to_string();
            let mut r = &r[name_len..];
            let mut attrs: Vec<(String, String)> = Vec::new();
            let closed = loop {
                let t = r.trim_start();
                let had_space = t.len() < r.len();
                r = t;
                if let Some(t) = r.strip_prefix("/>") {
                    r = t;
                    break true;
                }
                if let Some(t) = r.strip_prefix('>') {
                    r = t;
                    break false;
                }
                if !had_space {
                    return Err(format!(
                        "<{name}>: attributes need a space before them near byte {at}"
                    ));
                }
                let n = r
                    .char_indices()
                    .find(|(i, c)| !name_char(*c, *i == 0))
                    .map_or(r.len(), |(i, _)| i);
                if n == 0 {
                    return Err(format!("<{name}>: bad attribute near byte {at}"));
                }
                let attr = r[..n].to_string();
                r = r[n..]
                    .strip_prefix('=')
                    .ok_or_else(|| format!("<{name} {attr}> has no value"))?;
                let q = r.chars().next().filter(|q| *q == '"' || *q == '\'');
                let q = q.ok_or_else(|| format!("<{name} {attr}=…> is not quoted"))?;
                let end = r[1..]
                    .find(q)
                    .ok_or_else(|| format!("<{name} {attr}=…> is unterminated"))?;
                let value = decode(&r[1..1 + end], at)?;
                if attrs.iter().any(|(a, _)| *a == attr) {
                    return Err(format!("<{name}> repeats {attr}"));
                }
                attrs.push((attr, value));
                r = &r[end + 2..];
            };
            if open.is_empty() {
                roots += 1;
                if roots > 1 {
                    return Err(format!("a second root element <{name}> near byte {at}"));
                }
            }
            out.push(Element {
                name: name.clone(),
                attrs,
                text: String::new(),
            });
            if !closed {
                open.push((name, out.len() - 1));
            }
            rest = r;
        }
    }
    if let Some((n, _)) = open.last() {
        return Err(format!("<{n}> is never closed"));
    }
    if roots == 0 {
        return Err("no root element".into());
    }
    Ok(out)
}

#[test]
fn the_xml_checker_rejects_what_it_should() {
    let ok = "<?xml version=\"1.0\"?>\n<a x=\"1 &amp; &#10;\"><b/>t &lt; u</a>\n";
    assert!(parse_xml(ok, false).is_ok());
    for bad in [
        "<?xml version=\"1.0\"?><a><b></a></b>",
        "<?xml version=\"1.0\"?><a>x & y</a>",
        "<?xml version=\"1.0\"?><a x=\"<\"/>",
        "<?xml version=\"1.0\"?><a x=1/>",
        "<?xml version=\"1.0\"?><a x=\"1\" x=\"2\"/>",
        "<?xml version=\"1.0\"?><a/><b/>",
        "<?xml version=\"1.0\"?><a>\u{7}</a>",
        "<?xml version=\"1.0\"?><a>&#7;</a>",
        "<?xml version=\"1.0\"?><a>",
    ] {
        assert!(parse_xml(bad, false).is_err(), "accepted {bad:?}");
    }
}

/// Golden reports rebuilt from a fixed run directory (`plan.json` + `journal.jsonl` of a
/// real run against the mock: a failing step, a skipped dependent, a step that needed
/// retries), exactly as `esper-bulk report RUN_DIR` renders them.
#[test]
fn golden_reports_from_a_fixed_journal() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/journal");
    let plan: esper_bulk::plan::Plan =
        serde_json::from_str(&std::fs::read_to_string(dir.join("plan.json")).unwrap()).unwrap();
    let replay = esper_bulk::journal::read(&dir.join("journal.jsonl")).unwrap();
    assert!(replay.finish.is_some() && !replay.torn);
    let report = esper_bulk::run::rebuild_report("fixture-run", &plan, &replay);
    assert_eq!(
        (
            report.summary.failed,
            report.summary.skipped,
            report.summary.succeeded
        ),
        (4, 4, 4),
        "{}",
        report.summary_text()
    );
    assert_eq!(report.run.exit_code, 1);
    let outputs = [
        ("report.json", report.to_json()),
        ("report.md", render::markdown(&report)),
        ("report.xml", render::junit(&report)),
        ("results.csv", render::csv(&report)),
        ("report.html", render::html(&report)),
    ];
    let mut bad = Vec::new();
    for (name, text) in outputs {
        let path = dir.join(format!("golden-{name}"));
        if blessing() {
            std::fs::write(&path, &text).unwrap();
            continue;
        }
        let expected = std::fs::read_to_string(&path).unwrap_or_default();
        if expected != text {
            bad.push(format!("{name}:\n{}", diff(&expected, &text)));
        }
    }
    assert!(
        bad.is_empty(),
        "rebuilt reports differ (BLESS=1 cargo test --test it reports to update):\n{}",
        bad.join("\n")
    );

    // A torn last line (a crash mid-write) changes nothing that was complete.
    let tmp = tempfile::tempdir().unwrap();
    let mut text = std::fs::read_to_string(dir.join("journal.jsonl")).unwrap();
    text.push_str("{\"entry\":\"outcome\",\"task\":0,\"sta");
    std::fs::write(tmp.path().join("journal.jsonl"), text).unwrap();
    let torn = esper_bulk::journal::read(&tmp.path().join("journal.jsonl")).unwrap();
    assert!(torn.torn);
    assert_eq!(
        esper_bulk::run::rebuild_report("fixture-run", &plan, &torn).summary,
        report.summary
    );
}

#[test]
fn a_task_over_several_devices_gets_a_csv_row_per_device() {
    use esper_bulk::report::DeviceRef;
    let mut r = clean();
    let mut t = r.tasks[0].clone();
    t.devices = ["d1", "d2", "d3"]
        .iter()
        .map(|d| DeviceRef {
            id: d.to_string(),
            name: format!("ACME-{d}"),
            serial: None,
            group: None,
        })
        .collect();
    t.result = Some(json!({"id": "c1"}));
    t.followed = Some(FollowedReport {
        command: "c1".into(),
        finished: false,
        counts: Some(DeviceCountsReport {
            succeeded: 1,
            failed: 1,
            pending: 1,
            ..DeviceCountsReport::default()
        }),
        devices: vec![
            DeviceResultReport {
                id: "d2".into(),
                state: DeviceState::Failed,
                reason: Some("disk full".into()),
            },
            DeviceResultReport {
                id: "d3".into(),
                state: DeviceState::Pending,
                reason: None,
            },
        ],
        install: None,
    });
    r.tasks = vec![t];
    let text = render::csv(&r);
    let rows: Vec<&str> = text.lines().skip(1).collect();
    assert_eq!(rows.len(), 3, "{text}");
    assert!(
        rows[0].contains("ACME-d1") && rows[0].contains(",succeeded,"),
        "{text}"
    );
    assert!(
        rows[1].contains("ACME-d2")
            && rows[1].contains(",failed,")
            && rows[1].contains("command failed: disk full"),
        "{text}"
    );
    assert!(
        rows[2].contains("ACME-d3") && rows[2].contains(",pending,"),
        "{text}"
    );
}

/// 156 tasks refused with a 400 whose messages name 24 different versions, and 2 with a
/// 404: two causes, not 26 ways, and the advice counts them from the statuses.
#[test]
fn failures_group_by_cause_not_by_message_text() {
    let mut r = clean();
    r.tasks.clear();
    let refused = |k: u32| FailureReport {
        class: FailureClass::Client,
        http_status: Some(400),
        esper_message: Some(format!("Invalid app version \"4.{}\"", k % 24)),
        hint: None,
        description: "POST /commands/v0/commands/ answered 400".into(),
        maybe_processed: false,
    };
    for k in 0..158 {
        let failure = if k < 156 {
            refused(k)
        } else {
            http(
                FailureClass::NotFound,
                404,
                "GET /v1/enterprise/e/application/ answered 404",
                "Not found.",
                Some("check the enterprise id, the tenant and the ids in the job"),
            )
        };
        r.tasks.push(task(
            k,
            "install",
            &format!("POS-{k:04}"),
            TaskStatus::Failed,
            failed(failure.clone(), None),
            vec![attempt(1, 10, 20, Some(failure), None)],
            None,
        ));
    }
    r.summary = Summary {
        tasks: 158,
        failed: 158,
        ..Summary::default()
    };
    r.steps = vec![StepReport {
        id: "install".into(),
        kind: "command".into(),
        tasks: 158,
        by_status: BTreeMap::from([("failed".to_string(), 158)]),
    }];
    r.run.outcome = RunOutcome::FailedTasks;
    r.run.exit_code = RunOutcome::FailedTasks.exit_code();
    let md = render::markdown(&r);
    let rows: Vec<&str> = md
        .lines()
        .filter(|l| l.starts_with("| 156 ") || l.starts_with("| 2 "))
        .collect();
    assert_eq!(rows.len(), 2, "{md}");
    assert!(
        rows[0].contains("answered 400") && rows[0].contains("and 23 other messages"),
        "{}",
        rows[0]
    );
    assert!(rows[1].contains("answered 404"), "{}", rows[1]);
    assert!(md.contains("158 tasks failed in 2 distinct ways"), "{md}");
    assert!(md.contains("2 tasks failed with 404"), "{md}");
    let page = render::html(&r);
    check_page(&page, 1);
    assert_eq!(page.matches("<td class=\"n\">156</td>").count(), 1);
}

/// One task of each kind of trouble, so every count in the prose is a singular.
fn singular() -> Report {
    let mut r = clean();
    let needs = Some(ReasonReport::NeedsFailed {
        needs: vec![NeedReport {
            step: "install".into(),
            not_succeeded: 2,
            item: None,
        }],
    });
    let deadline = Some(ReasonReport::NotStarted {
        stopped: Some(StopReason::Deadline),
    });
    let tried = || vec![attempt(1, 100, 50, Some(upstream()), None)];
    r.tasks.extend([
        task(
            100,
            "install",
            "Stores/Wien",
            TaskStatus::Unknown,
            failed(upstream(), Some(GaveUp::Attempts)),
            tried(),
            None,
        ),
        task(
            101,
            "install",
            "Stores/Graz",
            TaskStatus::Failed,
            failed(upstream(), Some(GaveUp::Attempts)),
            tried(),
            None,
        ),
        task(
            102,
            "kiosk",
            "Stores/Linz",
            TaskStatus::Skipped,
            needs,
            vec![],
            None,
        ),
        task(
            103,
            "move",
            "Stores/Bern",
            TaskStatus::NotStarted,
            deadline,
            vec![],
            None,
        ),
    ]);
    r.summary.tasks += 4;
    r.summary.unknown = 1;
    r.summary.failed = 1;
    r.summary.skipped = 1;
    r.summary.not_started = 1;
    r.governor.window_changes = 1;
    r.run.outcome = RunOutcome::Deadline;
    r.run.exit_code = RunOutcome::Deadline.exit_code();
    r
}

#[test]
fn counts_of_one_read_in_the_singular() {
    let r = singular();
    let md = render::markdown(&r);
    for needle in [
        "| in-flight window | 8..8 (1 change) |",
        "(gave up after 1 attempt)",
        "1 task ended unknown",
        "Check this target in the tenant",
        "1 task failed on a server error (5xx) after its retries",
        "1 task failed in 1 distinct way (",
        "1 task skipped because a step it needs did not succeed; it runs when",
        "1 task not started: resume the run with `esper-bulk run --resume ",
        "to finish it (not a new run of the job);",
        "1 task not started: the run stopped before its first request.",
    ] {
        assert!(md.contains(needle), "report.md lacks {needle:?}:\n{md}");
    }
    for bad in ["1 tasks", "1 attempts", "1 ways", "1 changes", "1 devices"] {
        assert!(!md.contains(bad), "report.md says {bad:?}:\n{md}");
    }
    check_page(&render::html(&r), 1);
}

/// More distinct failures than the table shows: the rest is counted, in the singular too.
#[test]
fn failures_beyond_the_table_are_counted() {
    let mut r = clean();
    for k in 0..21 {
        r.tasks.push(task(
            200 + k,
            &format!("step-{k:02}"),
            &format!("POS-{k:04}"),
            TaskStatus::Failed,
            failed(upstream(), None),
            vec![attempt(1, 10, 20, Some(upstream()), None)],
            None,
        ));
    }
    r.summary.tasks += 21;
    r.summary.failed = 21;
    r.run.outcome = RunOutcome::FailedTasks;
    r.run.exit_code = RunOutcome::FailedTasks.exit_code();
    let md = render::markdown(&r);
    assert!(
        md.contains("\n… and 1 more distinct error (1 task) in `results.csv`.\n"),
        "{md}"
    );
    assert!(md.contains("21 tasks failed in 21 distinct ways"), "{md}");
    let page = render::html(&r);
    check_page(&page, 1);
    assert!(
        page.contains("<p>… and 1 more distinct error (1 task) in <code>results.csv</code>.</p>"),
        "{page}"
    );
}

/// Markdown and HTML lay out one view model: once their markup is stripped, the
/// sentences and cells they share read the same, word for word.
#[test]
fn markdown_and_html_say_the_same_things() {
    for r in [fixture(), clean(), singular()] {
        let (md, page) = (render::markdown(&r), render::html(&r));
        let md_lines: Vec<&str> = md.lines().collect();
        let headline = md_lines.iter().find(|l| l.starts_with("**")).unwrap();
        let run = md_lines.iter().find(|l| l.starts_with("Run ")).unwrap();
        let html_p = |prefix: &str| {
            page.lines()
                .find(|l| l.starts_with(prefix))
                .unwrap_or_else(|| panic!("no {prefix} in the page"))
                .to_string()
        };
        assert_eq!(md_plain(headline), html_plain(&html_p("<p><b>")));
        assert_eq!(
            md_plain(run),
            html_plain(&html_p("<p class=\"muted\">Run "))
        );

        let md_section = |title: &str| -> Vec<String> {
            md.split(&format!("## {title}\n\n"))
                .nth(1)
                .map(|s| s.split("\n## ").next().unwrap().to_string())
                .unwrap_or_default()
                .lines()
                .map(str::to_string)
                .collect()
        };
        let html_section = |title: &str| -> Vec<String> {
            page.split(&format!("<h2>{title}</h2>\n"))
                .nth(1)
                .map(|s| {
                    s.split("<h2>")
                        .next()
                        .unwrap()
                        .split("<footer>")
                        .next()
                        .unwrap()
                        .to_string()
                })
                .unwrap_or_default()
                .lines()
                .map(str::to_string)
                .collect()
        };

        // The advice, item for item.
        let md_advice: Vec<String> = md_section("What to do next")
            .iter()
            .filter_map(|l| l.strip_prefix("- ").map(md_plain))
            .collect();
        let html_advice: Vec<String> = html_section("What to do next")
            .iter()
            .filter(|l| l.starts_with("<li>"))
            .map(|l| html_plain(l))
            .collect();
        assert!(!md_advice.is_empty());
        assert_eq!(md_advice, html_advice);

        // Rollout stops and their canaries.
        let md_stops: Vec<String> = md_section("Rollout stops")
            .iter()
            .filter(|l| !l.is_empty())
            .map(|l| md_plain(l.trim_start().trim_start_matches("- ")))
            .collect();
        let html_stops: Vec<String> = html_section("Rollout stops")
            .iter()
            .filter(|l| l.starts_with("<p>") || l.starts_with("<li>"))
            .map(|l| html_plain(l))
            .collect();
        assert_eq!(md_stops, html_stops);

        // The failure groups' errors, and the notes under the table.
        let failures_md = md_section("What failed and why");
        let md_errors: Vec<String> = failures_md
            .iter()
            .filter(|l| l.starts_with("| ") && !l.starts_with("| tasks") && !l.starts_with("| -"))
            .map(|l| md_plain(&md_cells(l)[4]))
            .collect();
        let md_notes: Vec<String> = failures_md
            .iter()
            .filter(|l| !l.is_empty() && !l.starts_with('|'))
            .map(|l| md_plain(l))
            .collect();
        let failures_html = html_section("What failed and why").join("\n");
        let html_errors: Vec<String> = failures_html
            .split("<td class=\"err\">")
            .skip(1)
            .map(|s| html_plain(s.split("</td>").next().unwrap()))
            .collect();
        let html_notes: Vec<String> = failures_html
            .lines()
            .filter(|l| l.starts_with("<p>"))
            .map(html_plain)
            .collect();
        let troubled = r.summary.failed + r.summary.unknown + r.summary.skipped;
        assert_eq!(md_errors.is_empty(), troubled == 0, "{md}");
        assert_eq!(md_stops.is_empty(), r.run.rollout_stops.is_empty(), "{md}");
        assert!(!md_notes.is_empty(), "{md}");
        assert_eq!(md_errors, html_errors);
        assert_eq!(md_notes, html_notes);
    }
}

/// The cells of a Markdown table row, split at unescaped pipes, escapes kept.
fn md_cells(line: &str) -> Vec<String> {
    let (mut cells, mut cell, mut chars) = (Vec::new(), String::new(), line.chars());
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                cell.push(c);
                cell.extend(chars.next());
            }
            '|' => cells.push(std::mem::take(&mut cell).trim().to_string()),
            c => cell.push(c),
        }
    }
    cells.remove(0);
    cells
}

/// What a Markdown line says: escapes undone, code spans and emphasis unmarked.
fn md_plain(s: &str) -> String {
    let s = s.replace("<br>", "\n");
    let (mut out, mut chars) = (String::new(), s.chars());
    while let Some(c) = chars.next() {
        match c {
            '\\' => out.extend(chars.next()),
            '`' | '*' => {}
            c => out.push(c),
        }
    }
    out
}

/// What an HTML line says: tags dropped, entities decoded.
fn html_plain(s: &str) -> String {
    let (mut out, mut in_tag) = (String::new(), false);
    for c in s.chars() {
        match c {
            '<' => in_tag = true,
            '>' if in_tag => in_tag = false,
            c if !in_tag => out.push(c),
            _ => {}
        }
    }
    out.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&amp;", "&")
}
