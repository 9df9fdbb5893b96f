//! Stopping while tasks wait for their commands' devices, and resuming such tasks: a wait
//! the stop cuts short is `interrupted` (never `succeeded`), a wait that times out on its
//! own is not, and an interrupted prior outcome is followed by its command id, not sent
//! again.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};

use futures::FutureExt;

use super::*;
use crate::plan::{Resolved, Server};

/// Accepts every write as command `cmd-<task>`; following ends when every device is done
/// after `takes`, or on the stop, like the Esper adapter.
struct Commands {
    takes: Duration,
    attempts: AtomicU32,
    followed: Mutex<Vec<String>>,
}

impl Commands {
    fn new(takes: Duration) -> Arc<Commands> {
        Arc::new(Commands {
            takes,
            attempts: AtomicU32::new(0),
            followed: Mutex::new(Vec::new()),
        })
    }
}

impl Dispatch for Commands {
    fn attempt<'a>(
        &'a self,
        t: &'a Task,
        _cx: &'a AttemptCx,
    ) -> BoxFuture<'a, Result<Done, Failure>> {
        self.attempts.fetch_add(1, Ordering::SeqCst);
        accepted(t)
    }

    fn follow<'a>(
        &'a self,
        _t: &'a Task,
        c: &'a str,
        timeout: Duration,
        stop: &'a CancellationToken,
    ) -> BoxFuture<'a, Followed> {
        self.followed.lock().unwrap().push(c.to_string());
        async move {
            let finished = tokio::select! {
                _ = tokio::time::sleep(self.takes), if self.takes < timeout => true,
                _ = tokio::time::sleep(timeout) => false,
                _ = stop.cancelled() => false,
            };
            let counts = DeviceCounts {
                succeeded: u64::from(finished),
                pending: u64::from(!finished),
                ..DeviceCounts::default()
            };
            Followed {
                command: c.to_string(),
                finished,
                // A stopped run's client is closed, so the rows cannot be read then.
                counts: (!stop.is_cancelled()).then_some(counts),
                devices: Vec::new(),
                install: None,
            }
        }
        .boxed()
    }
}

/// An attempt Esper accepts as command request `cmd-<task>`, to be followed.
pub(super) fn accepted(t: &Task) -> BoxFuture<'static, Result<Done, Failure>> {
    let id = format!("cmd-{}", t.id.0);
    async move {
        Ok(Done {
            summary: String::new(),
            result: serde_json::json!({ "command_id": id }),
            follow: Some(id),
            reconciled: false,
        })
    }
    .boxed()
}

/// Three group tasks of one command step that waits up to `wait`.
fn plan(wait: &str) -> Arc<Plan> {
    plan_with(wait, 40)
}

/// A token that a signal "arrives" on after `after` (of paused tokio time).
fn cancelled_after(after: Duration) -> CancellationToken {
    let cancel = CancellationToken::new();
    let stopper = cancel.clone();
    tokio::spawn(async move {
        tokio::time::sleep(after).await;
        stopper.cancel();
    });
    cancel
}

/// Three group tasks of one REBOOT step waiting up to `wait`, under `max_in_flight`.
pub(super) fn plan_with(wait: &str, max_in_flight: u32) -> Arc<Plan> {
    let text = format!(
        "version: 1\nname: t\nlimits: {{ max_in_flight: {max_in_flight} }}\ntargets:\n  s: {{ groups: {{ name: \"S/*\" }} }}\nsteps:\n  - id: reboot\n    command: {{ to: s, name: REBOOT, wait: {{ timeout: {wait} }} }}\n"
    );
    let env = |_: &str| None;
    let (job, _) = crate::job::load("t.yaml", &text, &crate::job::Host::env_only(&env)).unwrap();
    let group = |i: u32| crate::plan::Item {
        kind: crate::plan::ItemKind::Group,
        id: format!("g{i}"),
        name: format!("{i}"),
        detail: Some(format!("S/{i}")),
    };
    let mut resolved = Resolved::default();
    resolved.targets.insert(
        "s".into(),
        crate::plan::FrozenTarget {
            kind: crate::plan::ItemKind::Group,
            items: (0..3).map(group).collect(),
        },
    );
    let server = Server {
        base_url: "http://127.0.0.1:1/api".into(),
        enterprise_id: "e".into(),
    };
    Arc::new(crate::plan::compile(&job, &resolved, server).unwrap())
}

fn opts(prior: BTreeMap<u32, Outcome>, deadline: Option<Instant>) -> RunOptions {
    RunOptions {
        deadline,
        drain: Duration::from_secs(5),
        seed: 1,
        reconcile: !prior.is_empty(),
        prior,
    }
}

#[tokio::test(start_paused = true)]
async fn a_signal_during_the_wait_interrupts_the_task_with_its_command_id() {
    let cancel = cancelled_after(Duration::from_secs(4));
    let d = Commands::new(Duration::from_secs(60));
    let out = run(
        plan("2m"),
        d.clone(),
        opts(BTreeMap::new(), None),
        cancel,
        |_| {},
    )
    .await;
    assert_eq!(out.stopped, Some(StopReason::Interrupted));
    for o in &out.outcomes {
        assert_eq!(o.status, TaskStatus::Interrupted, "{o:?}");
        assert_eq!(
            o.reason,
            Some(Reason::Interrupted {
                command: format!("cmd-{}", o.task.0),
                stopped: Some(StopReason::Interrupted),
            })
        );
        assert_eq!(
            o.interrupted_command(),
            Some(format!("cmd-{}", o.task.0).as_str())
        );
    }
}

#[tokio::test(start_paused = true)]
async fn the_deadline_during_the_wait_interrupts_the_task_too() {
    let d = Commands::new(Duration::from_secs(60));
    let deadline = Some(Instant::now() + Duration::from_secs(4));
    let out = run(
        plan("2m"),
        d,
        opts(BTreeMap::new(), deadline),
        CancellationToken::new(),
        |_| {},
    )
    .await;
    assert_eq!(out.stopped, Some(StopReason::Deadline));
    assert!(
        out.outcomes
            .iter()
            .all(|o| o.status == TaskStatus::Interrupted
                && matches!(
                    o.reason,
                    Some(Reason::Interrupted {
                        stopped: Some(StopReason::Deadline),
                        ..
                    })
                ))
    );
}

#[tokio::test(start_paused = true)]
async fn a_wait_that_times_out_without_a_stop_is_not_interrupted() {
    let d = Commands::new(Duration::from_secs(600));
    let out = run(
        plan("10s"),
        d,
        opts(BTreeMap::new(), None),
        CancellationToken::new(),
        |_| {},
    )
    .await;
    assert_eq!(out.stopped, None);
    assert!(
        out.outcomes
            .iter()
            .all(|o| o.status == TaskStatus::Succeeded),
        "devices still queued at the timeout keep today's meaning: {:?}",
        out.outcomes
    );
}

#[tokio::test(start_paused = true)]
async fn an_interrupted_prior_outcome_is_followed_by_id_and_not_sent_again() {
    let cancel = cancelled_after(Duration::from_secs(4));
    let first = Commands::new(Duration::from_secs(60));
    let cut = run(
        plan("2m"),
        first.clone(),
        opts(BTreeMap::new(), None),
        cancel,
        |_| {},
    )
    .await;
    assert_eq!(first.attempts.load(Ordering::SeqCst), 3);
    let prior: BTreeMap<u32, Outcome> = cut.outcomes.into_iter().map(|o| (o.task.0, o)).collect();

    let again = Commands::new(Duration::from_secs(5));
    let mut dispatched = Vec::new();
    let out = run(
        plan("2m"),
        again.clone(),
        opts(prior, None),
        CancellationToken::new(),
        |e| {
            if let Event::Dispatched(t) = e {
                dispatched.push(t.0);
            }
        },
    )
    .await;
    assert_eq!(
        again.attempts.load(Ordering::SeqCst),
        0,
        "no write is sent again"
    );
    let mut followed = again.followed.lock().unwrap().clone();
    followed.sort();
    assert_eq!(
        followed,
        ["cmd-0", "cmd-1", "cmd-2"],
        "each command is followed by its id"
    );
    assert_eq!(
        dispatched,
        [0, 1, 2],
        "the journal still sees each task start"
    );
    for o in &out.outcomes {
        assert_eq!(o.status, TaskStatus::Succeeded, "{o:?}");
        assert_eq!(o.attempts.len(), 1, "the earlier attempt stays on record");
        assert_eq!(
            o.result,
            Some(serde_json::json!({"command_id": format!("cmd-{}", o.task.0)}))
        );
    }
}

#[tokio::test(start_paused = true)]
async fn an_interrupted_task_a_stopped_resumption_never_reached_stays_interrupted() {
    let cancel = cancelled_after(Duration::from_secs(4));
    let first = Commands::new(Duration::from_secs(60));
    let cut = run(
        plan("2m"),
        first,
        opts(BTreeMap::new(), None),
        cancel,
        |_| {},
    )
    .await;
    let prior: BTreeMap<u32, Outcome> = cut.outcomes.into_iter().map(|o| (o.task.0, o)).collect();
    // One write slot and a stop at the first dispatch: tasks 1 and 2 are never reached.
    let stop = CancellationToken::new();
    let again = Commands::new(Duration::from_secs(5));
    let out = run(
        plan_with("2m", 1),
        again.clone(),
        opts(prior.clone(), None),
        stop.clone(),
        |e| {
            if let Event::Dispatched(_) = e {
                stop.cancel();
            }
        },
    )
    .await;
    assert_eq!(again.attempts.load(Ordering::SeqCst), 0);
    assert!(
        again.followed.lock().unwrap().len() < 3,
        "some task was never reached: {:?}",
        again.followed.lock().unwrap()
    );
    for o in &out.outcomes {
        assert_eq!(
            o.status,
            TaskStatus::Interrupted,
            "not `not_started`: {o:?}"
        );
        assert_eq!(
            o.interrupted_command(),
            prior[&o.task.0].interrupted_command()
        );
    }
}
