//! The plan as a diff against live state (issue #10): rules are read in one listing at
//! plan time, each task gets an action (`create`, `update` with its field diff,
//! `unchanged`, `skip`, `conflict`), the run acts on it without a read per task, `plan
//! --detailed-exitcode` tells drift, and a stale saved plan is read again before it acts.

use std::collections::BTreeMap;

use esper_bulk::mock::MockServer;
use esper_bulk::run::{Notice, Notices, Source};
use futures::TryStreamExt;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use crate::support::{client, esper_bulk, job_header, load, run, run_config, small, start};

/// One battery rule per store group, managed as `on_exists`.
fn rules_job(server: &MockServer, threshold: u32, on_exists: &str) -> String {
    format!(
        "{}targets:\n  stores: {{ groups: {{ name: \"Stores/*/*\" }} }}\nsteps:\n  - id: battery\n    for_each: stores\n    alarm_rule:\n      name: \"Battery - ${{{{ item.path }}}}\"\n      metric: battery_level\n      conditions: {{ comparator: LessThanThreshold, value: {threshold}, unit: Percent }}\n      realert_interval: 1h\n      on_exists: {on_exists}\n",
        job_header(server, "200/s")
    )
}

/// Requests of a run by `"METHOD route"`, from the mock's counters before and after.
async fn counted(
    server: &MockServer,
    yaml: &str,
) -> (esper_bulk::report::Report, BTreeMap<String, u64>) {
    let before = server.stats().by_route;
    let state = tempfile::tempdir().unwrap();
    let r = run(
        run_config(
            server,
            Source::Job(Box::new(load(server, yaml))),
            state.path(),
        ),
        CancellationToken::new(),
    )
    .await;
    let mut delta = server.stats().by_route;
    for (k, v) in before {
        if let Some(n) = delta.get_mut(&k) {
            *n -= v;
        }
    }
    delta.retain(|_, n| *n > 0);
    (r.report, delta)
}

fn of(by_route: &BTreeMap<String, u64>, prefix: &str) -> u64 {
    by_route
        .iter()
        .filter(|(k, _)| k.starts_with(prefix))
        .map(|(_, n)| n)
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fault_free_run_sends_writes_and_listing_pages_only() {
    let server = start(small(120)).await;
    let (report, first) = counted(&server, &rules_job(&server, 15, "skip")).await;
    assert_eq!(report.run.exit_code, 0, "{}", report.summary_text());
    let groups = report.tasks.len() as u64;
    let total: u64 = first.values().sum();
    let writes = of(&first, "POST ");
    let pages = of(&first, "GET ");
    assert_eq!(writes, groups, "one create per group: {first:?}");
    assert_eq!(total, writes + pages, "{first:?}");
    assert_eq!(
        of(&first, "GET /v1/enterprise/{enterprise_id}/alarmrules/"),
        1,
        "one listing of the rules, not one read per task: {first:?}"
    );

    // Again: every rule exists, so nothing is written and nothing is read per task.
    let (again, second) = counted(&server, &rules_job(&server, 15, "skip")).await;
    assert_eq!(again.run.exit_code, 0);
    assert_eq!(of(&second, "POST "), 0, "{second:?}");
    assert_eq!(
        second.values().sum::<u64>(),
        of(&second, "GET "),
        "reads are listing pages only: {second:?}"
    );
    assert!(
        again
            .tasks
            .iter()
            .all(|t| t.result.as_ref().is_some_and(|r| r["action"] == "skipped")),
        "every task says it skipped an existing rule"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plan_shows_creates_updates_and_unchanged_and_the_detailed_exit_code() {
    let server = start(small(121)).await;
    let dir = tempfile::tempdir().unwrap();
    let job = dir.path().join("rules.yaml");
    std::fs::write(&job, rules_job(&server, 15, "update")).unwrap();
    let plan = |extra: &[&str]| {
        esper_bulk(&server)
            .arg("plan")
            .arg(&job)
            .args(extra)
            .output()
            .unwrap()
    };
    let fresh = plan(&["--detailed-exitcode"]);
    let text = String::from_utf8_lossy(&fresh.stdout);
    assert_eq!(fresh.status.code(), Some(6), "creates pending:\n{text}");
    assert!(text.contains("changes: 6 to create"), "{text}");
    assert!(text.contains("+ #0 Stores/"), "{text}");

    let (report, _) = counted(&server, &rules_job(&server, 15, "update")).await;
    assert_eq!(report.run.exit_code, 0);
    let same = plan(&["--detailed-exitcode"]);
    let text = String::from_utf8_lossy(&same.stdout);
    assert_eq!(same.status.code(), Some(0), "nothing to write:\n{text}");
    assert!(text.contains("changes: 6 unchanged"), "{text}");

    // Someone raises one threshold in the console.
    let c = client(&server);
    let rules: Vec<esper_bulk::esper::model::AlarmRule> =
        c.list_alarm_rules(None).try_collect().await.unwrap();
    let edited = &rules[2];
    c.patch_alarm_rule(
        &edited.id,
        &serde_json::json!({"conditions": {"comparator": "LessThanThreshold", "value": 30, "unit": "Percent"}}),
    )
    .await
    .unwrap();
    let drift = plan(&["--detailed-exitcode", "--show-requests"]);
    let text = String::from_utf8_lossy(&drift.stdout);
    assert_eq!(drift.status.code(), Some(6), "{text}");
    assert!(text.contains("changes: 1 to update, 5 unchanged"), "{text}");
    let line = text
        .lines()
        .find(|l| l.trim_start().starts_with("~ "))
        .unwrap_or_else(|| panic!("an update line:\n{text}"));
    assert!(
        line.contains("conditions.value: 30 → 15"),
        "field: old → new: {line}"
    );
    let writes: Vec<&str> = text
        .lines()
        .skip_while(|l| !l.starts_with("writes"))
        .skip(1)
        .collect();
    assert_eq!(
        writes.len(),
        1,
        "--show-requests lists the real writes only: {writes:?}"
    );
    assert!(
        writes[0].contains("PATCH") && writes[0].contains(&edited.id),
        "{writes:?}"
    );

    let json = plan(&["--json"]);
    let v: Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(v["changes"]["update"], 1);
    assert_eq!(v["changes"]["unchanged"], 5);
    assert_eq!(v["step_changes"]["battery"]["update"], 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_plan_is_read_again_and_drift_is_reported() {
    let server = start(small(122)).await;
    let (report, _) = counted(&server, &rules_job(&server, 15, "update")).await;
    assert_eq!(report.run.exit_code, 0);
    let dir = tempfile::tempdir().unwrap();
    let job = dir.path().join("rules.yaml");
    std::fs::write(&job, rules_job(&server, 15, "update")).unwrap();
    let saved = dir.path().join("plan.json");
    let out = esper_bulk(&server)
        .arg("plan")
        .arg(&job)
        .arg("--out")
        .arg(&saved)
        .output()
        .unwrap();
    assert!(out.status.success());
    // The plan says "all unchanged"; then a rule is deleted behind its back.
    let c = client(&server);
    let rules: Vec<esper_bulk::esper::model::AlarmRule> =
        c.list_alarm_rules(None).try_collect().await.unwrap();
    c.delete_alarm_rule(&rules[0].id).await.unwrap();

    let plan = esper_bulk::run::read_plan(&saved, &Notices::none()).unwrap();
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let sink = seen.clone();
    let mut cfg = run_config(&server, Source::Plan(Box::new(plan)), dir.path());
    cfg.output.notices = Notices::new(move |n| sink.lock().unwrap().push(n.clone()));
    cfg.max_plan_age = std::time::Duration::ZERO;
    let r = run(cfg, CancellationToken::new()).await;
    assert_eq!(r.report.run.exit_code, 0, "{}", r.report.summary_text());
    let drifted: Vec<_> = seen
        .lock()
        .unwrap()
        .iter()
        .filter_map(|n| match n {
            Notice::Drifted { drifted, .. } => Some(drifted.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(drifted.len(), 1, "one re-read");
    assert_eq!(drifted[0].len(), 1, "{drifted:?}");
    assert_eq!((drifted[0][0].1, drifted[0][0].2), ("unchanged", "create"));
    let now: Vec<esper_bulk::esper::model::AlarmRule> =
        c.list_alarm_rules(None).try_collect().await.unwrap();
    assert_eq!(
        now.len(),
        rules.len(),
        "the deleted rule was created again, acting on now"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_known_absent_at_plan_time_is_sent_without_a_read() {
    let server = start(small(123)).await;
    let dir = tempfile::tempdir().unwrap();
    let apk = dir.path().join("fresh.apk");
    std::fs::write(
        &apk,
        esper_bulk::apk::write::minimal_apk("com.acme.fresh", 7, "0.7"),
    )
    .unwrap();
    let yaml = format!(
        "{}steps:\n  - id: upload\n    app_upload: {{ file: \"{}\", package: com.acme.fresh, version_code: 7 }}\n",
        job_header(&server, "200/s"),
        apk.display()
    );
    let lookups = "GET /enterprise/{enterprise_id}/application/";
    let (first, by_route) = counted(&server, &yaml).await;
    assert_eq!(first.run.exit_code, 0, "{}", first.summary_text());
    assert_eq!(
        of(
            &by_route,
            "POST /enterprise/{enterprise_id}/application/upload/"
        ),
        1
    );
    assert_eq!(
        of(&by_route, lookups),
        1,
        "the plan's lookup only: {by_route:?}"
    );

    let (again, by_route) = counted(&server, &yaml).await;
    assert_eq!(again.run.exit_code, 0);
    assert_eq!(of(&by_route, "POST "), 0, "it exists: {by_route:?}");
    assert_eq!(
        again.tasks[0].result.as_ref().unwrap()["action"],
        "exists",
        "{:?}",
        again.tasks[0].result
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn content_is_decided_from_one_listing_by_name_and_size() {
    let server = start(small(124)).await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("menu-board.pdf");
    std::fs::write(&file, b"%PDF-1.4 menu").unwrap();
    let yaml = format!(
        "{}steps:\n  - id: push\n    content_upload: {{ file: \"{}\" }}\n",
        job_header(&server, "200/s"),
        file.display()
    );
    let listing = "GET /v0/enterprise/{enterprise_id}/content/";
    let (first, by_route) = counted(&server, &yaml).await;
    assert_eq!(first.run.exit_code, 0, "{}", first.summary_text());
    assert_eq!(of(&by_route, "POST "), 1, "{by_route:?}");
    assert_eq!(
        of(&by_route, listing),
        1,
        "the plan's listing only: {by_route:?}"
    );
    let (again, by_route) = counted(&server, &yaml).await;
    assert_eq!(again.run.exit_code, 0);
    assert_eq!(of(&by_route, "POST "), 0, "{by_route:?}");
    assert_eq!(of(&by_route, listing), 1, "{by_route:?}");
    assert_eq!(again.tasks[0].result.as_ref().unwrap()["action"], "exists");
    // Another file of the same name but another size is new.
    std::fs::write(&file, b"%PDF-1.4 menu, week 49").unwrap();
    let (third, by_route) = counted(&server, &yaml).await;
    assert_eq!(third.run.exit_code, 0);
    assert_eq!(of(&by_route, "POST "), 1, "{by_route:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_move_of_devices_already_in_the_group_sends_nothing() {
    let server = start(small(125)).await;
    let snap = server.snapshot();
    let lab = snap
        .groups
        .iter()
        .find(|g| g.name == "Lab")
        .unwrap()
        .id
        .clone();
    let ids: Vec<String> = snap
        .devices
        .iter()
        .filter(|d| d.group_id == lab)
        .take(2)
        .map(|d| d.id.clone())
        .collect();
    assert_eq!(ids.len(), 2);
    let yaml = format!(
        "{}targets:\n  two: {{ devices: {{ ids: [{}] }} }}\nsteps:\n  - id: move\n    group_move: {{ devices: two, to: \"Stores/North/0001\" }}\n",
        job_header(&server, "200/s"),
        ids.join(", ")
    );
    let moves = "PATCH /enterprise/{enterprise_id}/devicegroup/";
    let (first, by_route) = counted(&server, &yaml).await;
    assert_eq!(first.run.exit_code, 0, "{}", first.summary_text());
    assert_eq!(of(&by_route, moves), 1, "{by_route:?}");
    let (again, by_route) = counted(&server, &yaml).await;
    assert_eq!(again.run.exit_code, 0, "{}", again.summary_text());
    assert_eq!(
        of(&by_route, moves),
        0,
        "both are there already: {by_route:?}"
    );
    assert_eq!(
        again.tasks[0].result.as_ref().unwrap()["action"],
        "unchanged"
    );
}
