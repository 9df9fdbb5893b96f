//! Every operation end to end against the mock: uploads that skip existing versions, step
//! outputs feeding later steps, group moves, the request escape hatch, scheduled commands,
//! and rollouts gated on max_failures.

use std::time::Duration;

use esper_bulk::exec::TaskStatus;
use esper_bulk::mock::CommandBehaviour;
use esper_bulk::report::RunOutcome;

use crate::support::{job_header, run_job, small, start};

#[tokio::test]
async fn upload_then_install_by_step_output_and_skip_on_rerun() {
    let server = start(small(41)).await;
    let dir = tempfile::tempdir().unwrap();
    let apk = dir.path().join("kiosk-4.2.0.apk");
    std::fs::write(
        &apk,
        "package=com.acme.kiosk\nversion_code=420\nversion_name=4.2.0\n",
    )
    .unwrap();
    let job = format!(
        "{}targets:\n  stores: {{ groups: {{ name: \"Stores/*/*\" }} }}\nsteps:\n  - id: upload\n    app_upload: {{ file: \"{}\" }}\n  - id: install\n    needs: [upload]\n    app_install: {{ to: stores, version: \"${{{{ steps.upload.version_id }}}}\", wait: {{ timeout: 10s }} }}\n",
        job_header(&server, "200/s"),
        apk.display()
    );
    let (_, report) = run_job(&server, &job).await;
    assert_eq!(report.summary.succeeded, 7, "{}", report.summary_text());
    let upload = &report.tasks[0];
    assert_eq!(upload.result.as_ref().unwrap()["action"], "uploaded");
    let version = upload.result.as_ref().unwrap()["version_id"]
        .as_str()
        .unwrap()
        .to_string();
    let snap = server.snapshot();
    assert!(
        snap.commands
            .iter()
            .all(|c| c.command_args["app_version"] == version.as_str()),
        "installs use the uploaded version"
    );

    let (_, again) = run_job(&server, &job).await;
    assert_eq!(
        again.tasks[0].result.as_ref().unwrap()["action"],
        "exists",
        "the second run finds the version and does not upload"
    );
    assert_eq!(
        server
            .snapshot()
            .apps
            .iter()
            .find(|a| a.package_name == "com.acme.kiosk")
            .unwrap()
            .versions
            .len(),
        3
    );
}

#[tokio::test]
async fn group_move_content_and_request() {
    let server = start(small(42)).await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("menu.pdf");
    std::fs::write(&file, b"%PDF menu").unwrap();
    let job = format!(
        r#"{}targets:
  lab_devices: {{ devices: {{ group: Lab }} }}
steps:
  - id: move
    group_move: {{ devices: lab_devices, to: "Stores/North/0001" }}
  - id: push
    content_upload: {{ file: "{}" }}
  - id: note
    needs: [push]
    request:
      method: GET
      path: /v0/enterprise/{{enterprise_id}}/content/
      query: {{ limit: 10 }}
"#,
        job_header(&server, "200/s"),
        file.display()
    );
    let (_, report) = run_job(&server, &job).await;
    assert_eq!(report.summary.failed, 0, "{}", report.summary_text());
    let snap = server.snapshot();
    let dest = snap
        .groups
        .iter()
        .find(|g| g.path.ends_with("Stores/North/0001"))
        .unwrap();
    let lab = snap
        .groups
        .iter()
        .find(|g| g.path.ends_with("/Lab"))
        .unwrap();
    assert!(
        snap.devices.iter().all(|d| d.group_id != lab.id),
        "the lab is empty"
    );
    assert!(
        snap.devices
            .iter()
            .filter(|d| d.group_id == dest.id)
            .count()
            > 4,
        "lab devices moved in"
    );
    let note = report.tasks.iter().find(|t| t.step == "note").unwrap();
    assert_eq!(note.result.as_ref().unwrap()["status"], 200);
    // The one content file (Esper's `search` matches tags and descriptions, not names).
    assert_eq!(note.result.as_ref().unwrap()["body"]["count"], 1);
    // The lab is empty now, so re-run without the move: the upload must find the file.
    let rerun = job
        .replace(
            "  - id: move\n    group_move: { devices: lab_devices, to: \"Stores/North/0001\" }\n",
            "",
        )
        .replace(
            "  lab_devices: { devices: { group: Lab } }\n",
            "  unused: { groups: { name: Lab } }\n",
        );
    assert_ne!(rerun, job);
    let (_, again) = run_job(&server, &rerun).await;
    assert_eq!(
        again
            .tasks
            .iter()
            .find(|t| t.step == "push")
            .unwrap()
            .result
            .as_ref()
            .unwrap()["action"],
        "exists"
    );
    assert_eq!(
        server.snapshot().contents.len(),
        1,
        "content is not uploaded twice"
    );
}

#[tokio::test]
async fn scheduled_command_carries_schedule_args() {
    let server = start(small(43)).await;
    let job = format!(
        "{}targets:\n  one: {{ groups: {{ name: \"Stores/*/0002\" }} }}\nsteps:\n  - id: reboot\n    command:\n      to: one\n      name: REBOOT\n      schedule: {{ type: WINDOW, name: nightly, window_start_time: \"02:00\", window_end_time: \"04:00\", time_type: device, days: [Monday] }}\n",
        job_header(&server, "100/s")
    );
    let (_, report) = run_job(&server, &job).await;
    assert_eq!(report.summary.succeeded, 1, "{}", report.summary_text());
    let snap = server.snapshot();
    assert_eq!(snap.commands[0].schedule, "WINDOW");
    assert_eq!(snap.commands[0].schedule_args["window_start_time"], "02:00");
}

#[tokio::test]
async fn rollout_stops_at_the_canary_when_devices_fail() {
    let mut cfg = small(44);
    cfg.groups = 20;
    cfg.commands = CommandBehaviour {
        failure_rate: 1.0,
        timeout_rate: 0.0,
        min_duration: Duration::from_millis(20),
        max_duration: Duration::from_millis(60),
        install_noop_rate: 0.0,
    };
    let server = start(cfg).await;
    let job = format!(
        "{}targets:\n  stores: {{ groups: {{ name: \"Stores/*/*\" }} }}\nsteps:\n  - id: reboot\n    command: {{ to: stores, name: REBOOT, wait: {{ timeout: 10s }} }}\n    rollout: {{ stages: [2, 50%, 100%], max_failures: 10% }}\n  - id: after\n    needs: [reboot]\n    command: {{ to: stores, name: UPDATE_HEARTBEAT }}\n",
        job_header(&server, "200/s")
    );
    let (_, report) = run_job(&server, &job).await;
    assert_eq!(report.run.exit_code, 3, "{}", report.summary_text());
    assert_eq!(report.run.outcome, RunOutcome::Threshold);
    let stop = &report.run.rollout_stops[0];
    assert_eq!(
        (stop.step.as_str(), stop.stage, stop.stages),
        ("reboot", 1, 3),
        "stopped after stage 1 of 3: {stop:?}"
    );
    let reboot: Vec<_> = report.tasks.iter().filter(|t| t.step == "reboot").collect();
    assert_eq!(
        reboot.iter().filter(|t| !t.attempts.is_empty()).count(),
        2,
        "only the canary stage ran"
    );
    assert!(reboot[2..].iter().all(|t| t.status == TaskStatus::Skipped));
    assert!(
        report
            .tasks
            .iter()
            .filter(|t| t.step == "after")
            .all(|t| t.status == TaskStatus::Skipped)
    );
    assert_eq!(
        server.snapshot().commands.len(),
        2,
        "nothing beyond the canary was sent"
    );
}

#[tokio::test]
async fn rollout_proceeds_through_every_stage_when_healthy() {
    let mut cfg = small(45);
    cfg.groups = 10;
    let server = start(cfg).await;
    let job = format!(
        "{}targets:\n  stores: {{ groups: {{ name: \"Stores/*/*\" }} }}\nsteps:\n  - id: ping\n    command: {{ to: stores, name: UPDATE_HEARTBEAT, wait: {{ timeout: 10s }} }}\n    rollout: {{ stages: [1, 30%, 100%], max_failures: 0 }}\n",
        job_header(&server, "200/s")
    );
    let (plan, report) = run_job(&server, &job).await;
    assert_eq!(
        plan.steps[0].rollout.as_ref().unwrap().stage_ends,
        vec![1, 3, 10]
    );
    assert_eq!(report.run.exit_code, 0, "{}", report.summary_text());
    // Stages run in order: every task of a later stage starts after the earlier stage ended.
    let end_of_canary = report.tasks[0].attempts.last().unwrap().at_ms;
    assert!(
        report.tasks[3..]
            .iter()
            .all(|t| t.attempts[0].at_ms >= end_of_canary)
    );
}

/// The README's complaint: one failed device out of 25, or an offline one, failed its
/// group's task and skipped what came after. Strict by default (and only that group's
/// dependent is skipped, since `needs` over one target is per item); with `success: 80%`
/// every group succeeds, its offline devices counted and listed as pending.
#[tokio::test]
async fn a_success_threshold_decides_a_group_task_and_pending_devices_are_listed() {
    let mut cfg = small(45);
    cfg.groups = 8;
    cfg.devices_per_group = 25;
    cfg.offline_fraction = 0.04;
    cfg.commands = CommandBehaviour {
        failure_rate: 0.04,
        timeout_rate: 0.0,
        min_duration: Duration::from_millis(20),
        max_duration: Duration::from_millis(60),
        install_noop_rate: 0.0,
    };
    let server = start(cfg).await;
    let job = |wait: &str| {
        format!(
            "{}targets:\n  stores: {{ groups: {{ name: \"Stores/*/*\" }} }}\nsteps:\n  - id: reboot\n    command: {{ to: stores, name: REBOOT, wait: {{ timeout: 2s{wait} }} }}\n  - id: after\n    needs: [reboot]\n    command: {{ to: stores, name: UPDATE_HEARTBEAT }}\n",
            job_header(&server, "200/s")
        )
    };
    let of = |r: &esper_bulk::report::Report, step: &str, s: TaskStatus| {
        r.tasks
            .iter()
            .filter(|t| t.step == step && t.status == s)
            .count()
    };

    let (_, strict) = run_job(&server, &job("")).await;
    let failed = of(&strict, "reboot", TaskStatus::Failed);
    assert!(
        (1..8).contains(&failed),
        "some groups have a failed device, not all: {}",
        strict.summary_text()
    );
    assert_eq!(of(&strict, "after", TaskStatus::Skipped), failed);
    assert_eq!(of(&strict, "after", TaskStatus::Succeeded), 8 - failed);

    let (_, lenient) = run_job(&server, &job(", success: 80%")).await;
    assert_eq!(lenient.run.exit_code, 0, "{}", lenient.summary_text());
    assert_eq!(of(&lenient, "after", TaskStatus::Succeeded), 8);
    let pending: u64 = lenient
        .tasks
        .iter()
        .filter_map(|t| t.followed.as_ref()?.counts)
        .map(|c| c.pending)
        .sum();
    assert!(pending > 0, "the offline devices stay queued");
    assert_eq!(lenient.summary.devices_pending, pending);
    assert!(
        lenient
            .summary_text()
            .contains(&format!("devices: {pending} ")),
        "{}",
        lenient.summary_text()
    );
    let csv = esper_bulk::report::render::csv(&lenient);
    assert_eq!(
        csv.lines().filter(|l| l.contains(",pending,")).count() as u64,
        pending,
        "each pending device has its row"
    );

    let (_, pending_fail) = run_job(&server, &job(", pending: fail")).await;
    let mut offline = 0;
    for t in pending_fail.tasks.iter().filter(|t| t.step == "reboot") {
        if t.followed
            .as_ref()
            .and_then(|f| f.counts)
            .is_some_and(|c| c.pending > 0)
        {
            offline += 1;
            assert_eq!(t.status, TaskStatus::Failed, "{t:?}");
        }
    }
    assert!(offline > 0, "{}", pending_fail.summary_text());
}

/// `on_exists: update` patches the fields the job manages and keeps what the console set:
/// the mock replaces on PUT, as Esper's Django servers do, so a PUT would lose them.
#[tokio::test]
async fn updating_a_rule_keeps_the_fields_the_job_does_not_manage() {
    use esper_bulk::esper::model::AlarmRule;
    use futures::TryStreamExt;
    let server = start(small(46)).await;
    let job = |threshold: u32| {
        format!(
            "{}targets:\n  stores: {{ groups: {{ name: \"Stores/*/*\" }} }}\nsteps:\n  - id: rule\n    for_each: stores\n    alarm_rule:\n      name: \"Battery - ${{{{ item.path }}}}\"\n      metric: battery_level\n      conditions: {{ comparator: LessThanThreshold, value: {threshold}, unit: Percent }}\n      realert_interval: 1h\n      on_exists: update\n",
            job_header(&server, "200/s")
        )
    };
    let (_, first) = run_job(&server, &job(15)).await;
    assert_eq!(first.run.exit_code, 0, "{}", first.summary_text());
    let c = crate::support::client(&server);
    let rules: Vec<AlarmRule> = c.list_alarm_rules(None).try_collect().await.unwrap();
    let console = &rules[0];
    c.patch_alarm_rule(
        &console.id,
        &serde_json::json!({"description": "set in the console", "action_emails": ["oncall@acme.example"]}),
    )
    .await
    .unwrap();

    let (_, second) = run_job(&server, &job(20)).await;
    assert_eq!(second.run.exit_code, 0, "{}", second.summary_text());
    assert!(
        server
            .stats()
            .by_route
            .keys()
            .all(|r| !r.starts_with("PUT ")),
        "nothing is replaced: {:?}",
        server.stats().by_route
    );
    assert!(
        server
            .stats()
            .by_route
            .keys()
            .any(|r| r.starts_with("PATCH ")),
        "the changed rules were patched: {:?}",
        server.stats().by_route
    );
    let after = c.get_alarm_rule(&console.id).await.unwrap();
    assert_eq!(after.extra["description"], "set in the console");
    assert_eq!(
        after.extra["action_emails"],
        serde_json::json!(["oncall@acme.example"])
    );
    assert_eq!(
        after.conditions.unwrap()["value"],
        20,
        "the managed field changed"
    );
}
