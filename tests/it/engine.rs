//! Whole jobs through the engine against the mock: faults without duplicates, idempotent
//! re-runs, skipped dependents (per item over the same target, or whole with `needs_all`),
//! device-side failures and interruption.

use std::time::Duration;

use esper_bulk::base::FailureClass;
use esper_bulk::exec::{DeviceState, TaskStatus};
use esper_bulk::mock::{CommandBehaviour, Faults, MockServer, RateLimit};
use esper_bulk::plan::{self, Plan, Server};
use esper_bulk::report::{NeedReport, ReasonReport, Report, RunOutcome};
use esper_bulk::run::Source;
use tokio_util::sync::CancellationToken;

use crate::support::{
    client, job_header, load, run, run_config, run_job, run_job_with, small, start,
};

fn rollout_job(header: &str) -> String {
    format!(
        r#"{header}targets:
  stores: {{ groups: {{ name: "Stores/*/*" }} }}
steps:
  - id: install
    app_install: {{ to: stores, package: com.acme.kiosk, version_code: 410, wait: {{ timeout: 20s }} }}
  - id: alarm
    needs: [install]
    for_each: stores
    alarm_rule:
      name: "Battery low - ${{{{ item.path }}}}"
      metric: battery_level
      conditions: {{ comparator: LessThanThreshold, value: 15, unit: Percent }}
      realert_interval: 3600
      groups: ["${{{{ item.id }}}}"]
"#
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn faults_and_rate_limits_still_give_zero_duplicates() {
    let mut cfg = small(21);
    cfg.groups = 30;
    cfg.faults = Faults {
        rate_limit: Some(RateLimit {
            rate: 150.0,
            burst: 10,
            retry_after: false,
            penalty: Duration::from_millis(100),
        }),
        error_rate: 0.05,
        commit_then_fail_rate: 0.10,
        ..Faults::default()
    };
    let server = start(cfg).await;
    let (plan, report) = run_job(&server, &rollout_job(&job_header(&server, "400/s"))).await;
    assert_eq!(plan.task_count, 60);
    let s = &report.summary;
    assert_eq!(
        s.succeeded,
        60,
        "every task succeeds despite faults: {}",
        report.summary_text()
    );
    let stats = server.stats();
    assert!(
        stats.injected.commit_then_fail > 0 && stats.injected.errors > 0,
        "faults were injected: {stats:?}"
    );
    assert!(
        stats.rate_limited > 0,
        "the server limit was hit: {stats:?}"
    );
    assert_eq!(stats.duplicates.alarm_rules, 0);
    assert_eq!(stats.duplicates.command_requests, 0);
    let snap = server.snapshot();
    assert_eq!(snap.alarm_rules.len(), 30);
    assert!(
        report.tasks.iter().any(|t| t.attempts.len() > 1),
        "some tasks needed retries"
    );
    assert!(
        report
            .tasks
            .iter()
            .all(|t| t.status == TaskStatus::Succeeded)
    );
    let install = &report.tasks[0];
    assert_eq!(
        install.followed.as_ref().unwrap().counts.unwrap().succeeded,
        4,
        "per-device results are kept"
    );
}

#[tokio::test]
async fn rerunning_converges_instead_of_duplicating() {
    let server = start(small(22)).await;
    let job = rollout_job(&job_header(&server, "200/s"));
    let (_, first) = run_job(&server, &job).await;
    assert_eq!(first.summary.succeeded, 12);
    let (_, second) = run_job(&server, &job).await;
    assert_eq!(second.summary.succeeded, 12);
    let actions: Vec<&str> = second
        .tasks
        .iter()
        .filter(|t| t.step == "alarm")
        .map(|t| t.result.as_ref().unwrap()["action"].as_str().unwrap())
        .collect();
    assert!(actions.iter().all(|a| *a == "unchanged"), "{actions:?}");
    assert_eq!(server.stats().duplicates.alarm_rules, 0);
    assert_eq!(server.snapshot().alarm_rules.len(), 6);
}

#[tokio::test]
async fn failed_dependency_skips_dependents() {
    let server = start(small(23)).await;
    let job = rollout_job(&job_header(&server, "200/s")).replace(
        "package: com.acme.kiosk, version_code: 410",
        "version: 00000000-0000-4000-8000-00000000dead",
    );
    let (_, report) = run_job(&server, &job).await;
    let install: Vec<_> = report
        .tasks
        .iter()
        .filter(|t| t.step == "install")
        .collect();
    assert!(
        install.iter().all(|t| t.status == TaskStatus::Failed),
        "INSTALL of an unknown version is refused"
    );
    assert!(
        install.iter().all(|t| t.attempts.len() == 1),
        "a 400 is not retried"
    );
    let failure = install[0].failure().expect("a typed failure");
    assert_eq!(failure.http_status, Some(400));
    assert_eq!(failure.class, FailureClass::Client);
    assert!(
        failure.esper_message.is_some(),
        "Esper's message is kept apart: {failure:?}"
    );
    let alarm: Vec<_> = report.tasks.iter().filter(|t| t.step == "alarm").collect();
    assert!(
        alarm
            .iter()
            .all(|t| t.status == TaskStatus::Skipped && t.attempts.is_empty())
    );
    assert!(
        matches!(&alarm[0].reason, Some(ReasonReport::NeedsFailed { needs }) if needs[0].step == "install"),
        "{:?}",
        alarm[0].reason
    );
    assert_eq!(report.run.exit_code, 1);
    assert!(server.snapshot().alarm_rules.is_empty());
}

#[tokio::test]
async fn device_side_failures_fail_the_task() {
    let mut cfg = small(24);
    cfg.commands = CommandBehaviour {
        failure_rate: 1.0,
        timeout_rate: 0.0,
        min_duration: Duration::from_millis(20),
        max_duration: Duration::from_millis(60),
        install_noop_rate: 0.0,
    };
    let server = start(cfg).await;
    let job = format!(
        "{}targets:\n  one: {{ groups: {{ name: \"Stores/*/0001\" }} }}\nsteps:\n  - id: reboot\n    command: {{ to: one, name: REBOOT, wait: {{ timeout: 10s }} }}\n",
        job_header(&server, "100/s")
    );
    let (_, report) = run_job(&server, &job).await;
    let t = &report.tasks[0];
    assert_eq!(t.status, TaskStatus::Failed);
    match &t.reason {
        Some(ReasonReport::DeviceFailures { counts }) => {
            assert_eq!((counts.failed, counts.total()), (4, 4), "{counts:?}");
        }
        other => panic!("not a device failure: {other:?}"),
    }
    assert_eq!(
        t.error_text().as_deref(),
        Some("4 of 4 devices failed, 0 still pending")
    );
    let followed = t.followed.as_ref().unwrap();
    assert_eq!(followed.devices.len(), 4);
    assert!(
        followed
            .devices
            .iter()
            .all(|d| d.state == DeviceState::Failed && d.reason.is_some())
    );
}

#[tokio::test]
async fn interruption_stops_dispatch_and_is_reported() {
    let mut cfg = small(25);
    cfg.groups = 40;
    cfg.faults.latency = Duration::from_millis(40);
    let server = start(cfg).await;
    let job = rollout_job(&job_header(&server, "20/s"));
    let cancel = CancellationToken::new();
    let c2 = cancel.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(400)).await;
        c2.cancel();
    });
    let (_, report) = run_job_with(&server, &job, cancel).await;
    assert_eq!(report.run.outcome, RunOutcome::Interrupted);
    assert_eq!(report.run.exit_code, 130);
    assert!(report.summary.not_started > 0, "{}", report.summary_text());
    assert!(report.summary.not_started < 80);
}

/// A reboot of three store groups, and an alarm rule per group that needs it.
fn reboot_then_alarm(server: &MockServer, needs_all: bool) -> String {
    format!(
        r#"{}targets:
  stores: {{ groups: {{ name: "Stores/*/*" }} }}
steps:
  - id: reboot
    command: {{ to: stores, name: REBOOT }}
  - id: alarm
    needs: [reboot]
    needs_all: {needs_all}
    for_each: stores
    alarm_rule:
      name: "Rebooted - ${{{{ item.path }}}}"
      metric: battery_level
      conditions: {{ comparator: LessThanThreshold, value: 15, unit: Percent }}
      realert_interval: 3600
      groups: ["${{{{ item.id }}}}"]
"#,
        job_header(server, "200/s")
    )
}

/// Plans `yaml`, then runs the plan with the second store's group id replaced by one the
/// mock does not know, as if the group was deleted between plan and run: that group's
/// reboot is refused (400) and the others go through.
async fn run_with_a_lost_group(server: &MockServer, yaml: &str) -> (Plan, Report) {
    let job = load(server, yaml);
    let resolved = plan::resolve(&job, &client(server)).await.unwrap();
    let at = Server {
        base_url: server.base_url(),
        enterprise_id: server.enterprise_id().to_string(),
    };
    let mut plan = plan::compile(&job, &resolved, at).unwrap();
    plan.targets.get_mut("stores").unwrap().items[1].id =
        "00000000-0000-4000-8000-00000000dead".into();
    let state = tempfile::tempdir().unwrap();
    let cfg = run_config(server, Source::Plan(Box::new(plan)), state.path());
    let r = run(cfg, CancellationToken::new()).await;
    (r.plan.as_ref().clone(), r.report)
}

fn statuses(report: &Report, step: &str) -> Vec<TaskStatus> {
    report
        .tasks
        .iter()
        .filter(|t| t.step == step)
        .map(|t| t.status)
        .collect()
}

#[tokio::test]
async fn a_need_over_the_same_target_is_per_item() {
    let mut cfg = small(26);
    cfg.groups = 3;
    let server = start(cfg).await;
    let (plan, report) = run_with_a_lost_group(&server, &reboot_then_alarm(&server, false)).await;
    use TaskStatus::*;
    assert_eq!(statuses(&report, "reboot"), [Succeeded, Failed, Succeeded]);
    assert_eq!(
        statuses(&report, "alarm"),
        [Succeeded, Skipped, Succeeded],
        "only the lost group's alarm waits on a failed reboot: {}",
        report.summary_text()
    );
    let lost = plan.targets["stores"].items[1].label().to_string();
    let skipped = report
        .tasks
        .iter()
        .find(|t| t.step == "alarm" && t.status == Skipped)
        .unwrap();
    assert_eq!(
        skipped.reason,
        Some(ReasonReport::NeedsFailed {
            needs: vec![NeedReport {
                step: "reboot".into(),
                not_succeeded: 1,
                item: Some(lost.clone()),
            }]
        })
    );
    assert_eq!(
        skipped.error_text().as_deref(),
        Some(format!("skipped: needed step `reboot` for {lost} did not succeed").as_str())
    );
    assert!(skipped.attempts.is_empty(), "a skipped task sends nothing");
    let rules = server.snapshot().alarm_rules;
    assert_eq!(rules.len(), 2, "{rules:?}");
    assert!(rules.iter().all(|r| !r.name.contains(&lost)));
    assert_eq!(report.run.exit_code, 1);
}

#[tokio::test]
async fn needs_all_waits_for_the_whole_needed_step() {
    let mut cfg = small(27);
    cfg.groups = 3;
    let server = start(cfg).await;
    let (_, report) = run_with_a_lost_group(&server, &reboot_then_alarm(&server, true)).await;
    use TaskStatus::*;
    assert_eq!(statuses(&report, "reboot"), [Succeeded, Failed, Succeeded]);
    assert_eq!(statuses(&report, "alarm"), [Skipped, Skipped, Skipped]);
    let whole = Some(ReasonReport::NeedsFailed {
        needs: vec![NeedReport {
            step: "reboot".into(),
            not_succeeded: 1,
            item: None,
        }],
    });
    assert!(
        report
            .tasks
            .iter()
            .filter(|t| t.step == "alarm")
            .all(|t| t.reason == whole)
    );
    assert!(server.snapshot().alarm_rules.is_empty());
}
