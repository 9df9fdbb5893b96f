//! What a followed command's devices make of its task: the strict default, `success: N%`,
//! `max_device_failures`, pending devices reported (or failed under `pending: fail`), and
//! a status that could not be read ending `unknown` and being read again on resume rather
//! than sent again.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};

use futures::FutureExt;

use super::follow_tests::{accepted, plan_with};
use super::*;

/// Accepts every write as command `cmd-<task>`; following finds `counts` (`None`: the
/// per-device status could not be read) for every task.
struct Devices {
    counts: Option<DeviceCounts>,
    attempts: AtomicU32,
    followed: Mutex<Vec<String>>,
}

impl Devices {
    fn new(counts: Option<DeviceCounts>) -> Arc<Devices> {
        Arc::new(Devices {
            counts,
            attempts: AtomicU32::new(0),
            followed: Mutex::new(Vec::new()),
        })
    }
}

impl Dispatch for Devices {
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
        _timeout: Duration,
        _stop: &'a CancellationToken,
    ) -> BoxFuture<'a, Followed> {
        self.followed.lock().unwrap().push(c.to_string());
        let counts = self.counts;
        async move {
            Followed {
                command: c.to_string(),
                finished: counts.is_some_and(|c| c.pending == 0),
                counts,
                devices: Vec::new(),
                install: None,
            }
        }
        .boxed()
    }
}

fn devices(succeeded: u64, failed: u64, pending: u64) -> Option<DeviceCounts> {
    Some(DeviceCounts {
        succeeded,
        failed,
        pending,
        ..DeviceCounts::default()
    })
}

fn opts(prior: BTreeMap<u32, Outcome>) -> RunOptions {
    RunOptions {
        deadline: None,
        drain: Duration::from_secs(5),
        seed: 1,
        reconcile: !prior.is_empty(),
        prior,
    }
}

/// The status every task of a three-task step ends with when its devices end as `counts`
/// under the step's `wait: { timeout: 1m, <wait> }`.
async fn status(wait: &str, counts: Option<DeviceCounts>) -> (TaskStatus, RunOutput) {
    let plan = plan_with(&format!("1m{wait}"), 40);
    let out = run(
        plan,
        Devices::new(counts),
        opts(BTreeMap::new()),
        CancellationToken::new(),
        |_| {},
    )
    .await;
    let first = out.outcomes[0].status;
    assert!(out.outcomes.iter().all(|o| o.status == first), "{out:?}");
    (first, out)
}

#[tokio::test(start_paused = true)]
async fn by_default_one_failed_device_fails_the_task() {
    let (s, out) = status("", devices(49, 1, 0)).await;
    assert_eq!(s, TaskStatus::Failed);
    assert!(matches!(
        out.outcomes[0].reason,
        Some(Reason::DeviceFailures(c)) if c.failed == 1
    ));
}

#[tokio::test(start_paused = true)]
async fn a_success_share_allows_the_devices_it_leaves() {
    // 95% of 50 is 47.5, so 48 must not fail: 2 may.
    assert_eq!(
        status(", success: 95%", devices(48, 2, 0)).await.0,
        TaskStatus::Succeeded
    );
    assert_eq!(
        status(", success: 95%", devices(47, 3, 0)).await.0,
        TaskStatus::Failed
    );
}

#[tokio::test(start_paused = true)]
async fn max_device_failures_is_a_count() {
    assert_eq!(
        status(", max_device_failures: 2", devices(48, 2, 0))
            .await
            .0,
        TaskStatus::Succeeded
    );
    assert_eq!(
        status(", max_device_failures: 2", devices(47, 3, 0))
            .await
            .0,
        TaskStatus::Failed
    );
}

#[tokio::test(start_paused = true)]
async fn pending_devices_are_counted_not_failed_unless_pending_fail() {
    let (s, out) = status("", devices(48, 0, 2)).await;
    assert_eq!(s, TaskStatus::Succeeded);
    assert_eq!(
        out.outcomes[0]
            .followed
            .as_ref()
            .unwrap()
            .counts
            .unwrap()
            .pending,
        2
    );
    assert_eq!(
        status(", pending: fail", devices(48, 0, 2)).await.0,
        TaskStatus::Failed
    );
    // Pending ones spend the allowance like failed ones.
    assert_eq!(
        status(", pending: fail, max_device_failures: 2", devices(48, 0, 2))
            .await
            .0,
        TaskStatus::Succeeded
    );
}

#[tokio::test(start_paused = true)]
async fn pending_devices_count_against_a_rollout_only_under_pending_fail() {
    let (_, out) = status("", devices(48, 0, 2)).await;
    let plan = plan_with("1m", 40);
    assert_eq!(Finish::of(&out.outcomes[0], &plan).failed_units, 0);
    let plan = plan_with("1m, pending: fail, max_device_failures: 5", 40);
    let f = Finish::of(&out.outcomes[0], &plan);
    assert_eq!((f.failed_units, f.total_units), (2, 50));
}

#[tokio::test(start_paused = true)]
async fn an_unread_status_is_unknown_and_resuming_reads_it_again_without_sending() {
    let (s, out) = status("", None).await;
    assert_eq!(s, TaskStatus::Unknown);
    assert_eq!(
        out.outcomes[0].reason,
        Some(Reason::StatusUnread {
            command: "cmd-0".into()
        })
    );
    let prior: BTreeMap<u32, Outcome> = out.outcomes.into_iter().map(|o| (o.task.0, o)).collect();
    let d = Devices::new(devices(50, 0, 0));
    let again = run(
        plan_with("1m", 40),
        d.clone(),
        opts(prior),
        CancellationToken::new(),
        |_| {},
    )
    .await;
    assert_eq!(
        d.attempts.load(Ordering::SeqCst),
        0,
        "a command was sent again"
    );
    assert_eq!(d.followed.lock().unwrap().len(), 3);
    assert!(
        again
            .outcomes
            .iter()
            .all(|o| o.status == TaskStatus::Succeeded),
        "{again:?}"
    );
}
