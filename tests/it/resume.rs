//! `esper_bulk::run` in process: a run cut short (by its cancellation token or a deadline)
//! and resumed by run id ends with every task succeeded and nothing created twice; and what
//! stops a run before it sends anything (a held lock, cancellation while planning).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use esper_bulk::exec::TaskStatus;
use esper_bulk::mock::{MockConfig, MockServer};
use esper_bulk::run::{Notice, Notices, RunError, RunOutcome, Source};
use tokio_util::sync::CancellationToken;

use crate::support::{job_header, load, run, run_config, small, start};

/// One alarm rule and one reboot per store group, so a duplicate of either shows in the
/// mock's stats.
fn two_step_job(server: &MockServer, rate: &str) -> String {
    format!(
        "{}targets:\n  s: {{ groups: {{ name: \"Stores/*/*\" }} }}\nsteps:\n  - id: alarm\n    for_each: s\n    alarm_rule: {{ name: \"r ${{{{ item.name }}}}\", metric: m, conditions: {{ comparator: Frequency, value: 1, unit: Count }}, realert_interval: 60 }}\n  - id: reboot\n    command: {{ to: s, name: REBOOT }}\n",
        job_header(server, rate)
    )
}

/// A mock with trouble worth resuming through: slow answers, 5xx and writes that commit
/// but answer an error.
fn flaky(seed: u64, groups: usize) -> MockConfig {
    let mut cfg = small(seed);
    cfg.groups = groups;
    cfg.faults.latency = Duration::from_millis(20);
    cfg.faults.error_rate = 0.05;
    cfg.faults.commit_then_fail_rate = 0.05;
    cfg
}

/// Collects a run's notices.
fn recorder() -> (Notices, Arc<Mutex<Vec<Notice>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let sink = seen.clone();
    (
        Notices::new(move |n| sink.lock().unwrap().push(n.clone())),
        seen,
    )
}

fn assert_exactly_one_of_everything(server: &MockServer, groups: usize) {
    let stats = server.stats();
    assert_eq!(
        (
            stats.duplicates.alarm_rules,
            stats.duplicates.command_requests
        ),
        (0, 0),
        "nothing was created twice: {stats:?}"
    );
    let snap = server.snapshot();
    assert_eq!(snap.alarm_rules.len(), groups, "one alarm rule per group");
    assert_eq!(snap.commands.len(), groups, "one reboot per group");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_run_resumes_by_id_without_duplicates() {
    const GROUPS: usize = 30;
    let server = start(flaky(81, GROUPS)).await;
    let state = tempfile::tempdir().unwrap();
    let job = load(&server, &two_step_job(&server, "20/s"));
    let cancel = CancellationToken::new();
    let first = run(
        run_config(&server, Source::Job(Box::new(job)), state.path()),
        cancel.clone(),
    );
    // Cancel once the run is well under way; the bound keeps a stuck run from hanging.
    let cut = async {
        for _ in 0..1000 {
            if server.snapshot().alarm_rules.len() >= 4 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        cancel.cancel();
    };
    let (first, ()) = tokio::join!(first, cut);
    assert_eq!(first.outcome, RunOutcome::Interrupted);
    assert_eq!(first.exit_code, 130);
    let s = &first.report.summary;
    assert!(
        s.succeeded > 0 && s.not_started > 0,
        "cut part way: {}",
        first.report.summary_text()
    );

    let (notices, seen) = recorder();
    let mut cfg = run_config(&server, Source::Resume(first.run_id.clone()), state.path());
    cfg.output.notices = notices;
    let second = run(cfg, CancellationToken::new()).await;
    assert_eq!(
        second.run_id, first.run_id,
        "a resumption continues the run"
    );
    assert_eq!(second.run_dir, first.run_dir);
    assert_eq!(
        second.outcome,
        RunOutcome::Succeeded,
        "{}",
        second.report.summary_text()
    );
    assert_eq!(second.exit_code, 0);
    assert_eq!(second.report.summary.succeeded, 2 * GROUPS as u64);
    assert!(
        second
            .report
            .tasks
            .iter()
            .all(|t| t.status == TaskStatus::Succeeded)
    );
    assert!(
        seen.lock().unwrap().iter().any(|n| matches!(
            n,
            Notice::Resuming { succeeded, .. } if *succeeded as u64 == first.report.summary.succeeded
        )),
        "the resumption says what it keeps: {:?}",
        seen.lock().unwrap()
    );
    assert_exactly_one_of_everything(&server, GROUPS);
    assert_eq!(
        std::fs::read_dir(state.path().join("runs"))
            .unwrap()
            .count(),
        1,
        "one run directory for the run and its resumption"
    );
    // The journal of both attempts rebuilds the final report.
    let rebuilt =
        esper_bulk::run::rebuild(&second.run_dir, &esper_bulk::run::Notices::none()).unwrap();
    assert_eq!(rebuilt.summary.succeeded, 2 * GROUPS as u64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_past_its_deadline_is_incomplete_and_resumes() {
    const GROUPS: usize = 20;
    let server = start(flaky(82, GROUPS)).await;
    let state = tempfile::tempdir().unwrap();
    let job = load(&server, &two_step_job(&server, "10/s"));
    let mut cfg = run_config(&server, Source::Job(Box::new(job)), state.path());
    cfg.deadline = Some(Duration::from_secs(1));
    let first = run(cfg, CancellationToken::new()).await;
    assert_eq!(first.outcome, RunOutcome::Deadline);
    assert_eq!(first.exit_code, 4);
    assert!(first.report.summary.not_started > 0);

    let second = run(
        run_config(&server, Source::Resume(first.run_id.clone()), state.path()),
        CancellationToken::new(),
    )
    .await;
    assert_eq!(
        second.outcome,
        RunOutcome::Succeeded,
        "{}",
        second.report.summary_text()
    );
    assert_eq!(second.report.summary.succeeded, 2 * GROUPS as u64);
    assert_exactly_one_of_everything(&server, GROUPS);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_held_lock_refuses_a_second_run_before_it_reads_the_api() {
    let mut cfg = small(83);
    cfg.faults.latency = Duration::from_millis(50);
    let server = start(cfg).await;
    let state = tempfile::tempdir().unwrap();
    let text = two_step_job(&server, "5/s");
    let first = run(
        run_config(
            &server,
            Source::Job(Box::new(load(&server, &text))),
            state.path(),
        ),
        CancellationToken::new(),
    );
    let second = async {
        let locked = || {
            std::fs::read_dir(state.path().join("locks"))
                .into_iter()
                .flatten()
                .flatten()
                .any(|e| std::fs::read_to_string(e.path()).is_ok_and(|r| !r.is_empty()))
        };
        for _ in 0..500 {
            if locked() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        // The mock refuses this key: had the refused run read the API, planning would
        // fail with a 401 instead of the lock error. (The lock's scope is the job, server
        // and enterprise, not the key.)
        let mut cfg = run_config(
            &server,
            Source::Job(Box::new(load(&server, &text))),
            state.path(),
        );
        cfg.connection.api_key = Some(esper_bulk::run::KeyOverride::Key(
            esper_bulk::esper::ApiKey::new("not-the-mock-key"),
        ));
        esper_bulk::run::run(cfg, CancellationToken::new()).await
    };
    let (first, refused) = tokio::join!(first, second);
    let err = refused.expect_err("the second run is refused");
    assert!(matches!(err, RunError::Lock(_)), "{err}");
    assert_eq!(err.exit_code(), 75);
    assert!(err.to_string().contains("already running"), "{err}");
    assert_eq!(
        first.outcome,
        RunOutcome::Succeeded,
        "the holder is unaffected"
    );
}

#[tokio::test]
async fn cancelling_while_planning_stops_before_anything_is_written() {
    let server = start(small(84)).await;
    let state = tempfile::tempdir().unwrap();
    let job = load(&server, &two_step_job(&server, "50/s"));
    let cancel = CancellationToken::new();
    cancel.cancel();
    let err = esper_bulk::run::run(
        run_config(&server, Source::Job(Box::new(job)), state.path()),
        cancel,
    )
    .await
    .expect_err("a cancelled run does not start");
    assert!(matches!(err, RunError::Interrupted), "{err}");
    assert_eq!(err.exit_code(), 130);
    assert!(!state.path().join("runs").exists(), "no run directory");
    assert!(server.snapshot().alarm_rules.is_empty());
}

/// A reboot per store group that waits up to two minutes for its devices.
fn waiting_job(server: &MockServer) -> String {
    format!(
        "{}targets:\n  s: {{ groups: {{ name: \"Stores/*/*\" }} }}\nsteps:\n  - id: reboot\n    command: {{ to: s, name: REBOOT, wait: {{ timeout: 2m }} }}\n",
        job_header(server, "50/s")
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_cancelled_while_waiting_for_devices_resumes_by_following_not_resending() {
    const GROUPS: usize = 4;
    let mut cfg = small(85);
    cfg.groups = GROUPS;
    // Long enough that the cancel lands mid-wait, short enough for the resumption to see
    // every device finish.
    cfg.commands.min_duration = Duration::from_secs(2);
    cfg.commands.max_duration = Duration::from_secs(3);
    let server = start(cfg).await;
    let state = tempfile::tempdir().unwrap();
    let job = load(&server, &waiting_job(&server));
    let cancel = CancellationToken::new();
    let first = run(
        run_config(&server, Source::Job(Box::new(job)), state.path()),
        cancel.clone(),
    );
    let cut = async {
        for _ in 0..1000 {
            if server.stats().created.command_requests >= GROUPS as u64 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        // A few polls into the wait, well before any device is done.
        tokio::time::sleep(Duration::from_millis(300)).await;
        cancel.cancel();
    };
    let (first, ()) = tokio::join!(first, cut);
    assert_eq!(first.outcome, RunOutcome::Interrupted);
    assert_eq!(first.exit_code, 130);
    assert_eq!(
        first.report.summary.interrupted,
        GROUPS as u64,
        "{}",
        first.report.summary_text()
    );
    assert_eq!(first.report.summary.succeeded, 0, "nothing claims success");
    for t in &first.report.tasks {
        assert_eq!(t.status, TaskStatus::Interrupted, "{t:?}");
        let command = t.followed.as_ref().map(|f| f.command.clone());
        assert!(
            matches!(&t.reason, Some(esper_bulk::report::ReasonReport::Interrupted { command: c, .. }) if Some(c) == command.as_ref()),
            "the command request id is on record: {t:?}"
        );
    }
    let markdown = esper_bulk::report::render::markdown(&first.report);
    assert!(
        markdown.contains(&format!("esper-bulk run --resume {}", first.run_id)),
        "the advice is to resume, not to re-run: {markdown}"
    );

    let (notices, seen) = recorder();
    let mut cfg = run_config(&server, Source::Resume(first.run_id.clone()), state.path());
    cfg.output.notices = notices;
    let second = run(cfg, CancellationToken::new()).await;
    assert_eq!(
        second.outcome,
        RunOutcome::Succeeded,
        "{}",
        second.report.summary_text()
    );
    assert!(
        second
            .report
            .tasks
            .iter()
            .all(|t| t.status == TaskStatus::Succeeded)
    );
    assert!(
        seen.lock().unwrap().iter().any(|n| matches!(
            n,
            Notice::Resuming { following, .. } if *following == GROUPS
        )),
        "{:?}",
        seen.lock().unwrap()
    );
    let stats = server.stats();
    assert_eq!(stats.duplicates.command_requests, 0, "{stats:?}");
    assert_eq!(
        stats.created.command_requests, GROUPS as u64,
        "each command was sent once: {stats:?}"
    );
}
