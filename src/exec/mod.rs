//! The executor: runs a plan's tasks on a bounded tokio pool under the [`Governor`],
//! retrying with backon, skipping dependents of failed steps, and stopping cleanly.
//!
//! It knows nothing about Esper's URLs or JSON and imports nothing from `esper`: it drives
//! a [`Dispatch`] implementation (the Esper adapter in `esper::dispatch`, or a fake in
//! tests) and turns everything that happens into [`Outcome`]s, whose [`Reason`]s and
//! [`Failure`]s are typed all the way to the report. `run` returns `Err` never; failures
//! are outcomes.
//!
//! [`run`] is the async shell: workers, write slots, cancellation, the deadline and the
//! drain. What may start when, and what is skipped or replayed without running, is decided
//! by the synchronous [`Scheduler`] (`scheduler.rs`); one task's attempts are `task.rs`.

mod adaptive;
#[cfg(test)]
mod follow_tests;
mod governor;
#[cfg(test)]
mod limit_tests;
mod outcome;
mod retry;
mod scheduler;
mod shared;
mod slots;
mod task;
#[cfg(test)]
mod tolerance_tests;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use futures::future::BoxFuture;
use serde_json::Value;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::base::FailureClass;
use crate::plan::{Plan, Task, TaskId};

pub use adaptive::AdaptiveRate;
pub use governor::{Governor, GovernorConfig, GovernorStats, Sample, Slot, TokioClock};
pub use outcome::{
    Attempt, DeviceCounts, DeviceResult, DeviceState, Followed, GaveUp, InstallCheck, InstallState,
    MAX_DEVICE_REASON, Outcome, Reason, RolloutStop, Shortfall, StopReason, TaskStatus,
    device_reason,
};
pub use retry::{Failure, RetryBudget, next_delay};
pub use scheduler::{Decision, Finish, Scheduler};
pub use shared::{Grant, SharedBudget, SharedStats};

/// Context of one attempt.
#[derive(Debug, Clone)]
pub struct AttemptCx {
    /// 1-based attempt number.
    pub attempt: u32,
    /// An earlier attempt of this task may have been processed: read back before writing.
    pub uncertain: bool,
    /// When the task's first attempt started; read-backs only consider newer resources.
    pub task_started: SystemTime,
}

/// A successful write.
#[derive(Debug, Clone, PartialEq)]
pub struct Done {
    /// One line for logs and reports, e.g. `created alarm rule 5f3…`.
    pub summary: String,
    pub result: Value,
    /// An asynchronous command to follow to its final state, by id.
    pub follow: Option<String>,
    /// True when the task found its work already done (read-back or `on_exists: skip`).
    pub reconciled: bool,
}

/// How the executor reaches the API. Implementations make their requests through a
/// throttled client, so every request takes a governor permit.
pub trait Dispatch: Send + Sync + 'static {
    /// One attempt of the task's write. When `cx.uncertain`, read back by natural key first
    /// and return `Done { reconciled: true, .. }` if the earlier attempt took effect.
    fn attempt<'a>(
        &'a self,
        task: &'a Task,
        cx: &'a AttemptCx,
    ) -> BoxFuture<'a, Result<Done, Failure>>;
    /// Follows an asynchronous command until every device is final, `timeout` passes or
    /// `stop` is cancelled. Transient errors while polling are absorbed here.
    fn follow<'a>(
        &'a self,
        task: &'a Task,
        command_id: &'a str,
        timeout: Duration,
        stop: &'a CancellationToken,
    ) -> BoxFuture<'a, Followed>;
    /// After a followed INSTALL with `verify`: which of its devices have the version.
    /// `None` (the default) when this dispatch cannot tell.
    fn verify_install<'a>(
        &'a self,
        _task: &'a Task,
        _followed: &'a Followed,
    ) -> BoxFuture<'a, Option<InstallCheck>> {
        Box::pin(async { None })
    }
    /// The run is stopping: requests not yet sent should fail with `FailureClass::Stopped`.
    fn stop(&self) {}
}

/// Settings of one run.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Stop dispatching at this instant; in-flight work gets `drain` to finish.
    pub deadline: Option<Instant>,
    /// How long in-flight tasks may finish after a stop before they are abandoned.
    pub drain: Duration,
    /// Seed for backoff jitter.
    pub seed: u64,
    /// Outcomes of tasks a previous attempt of this run finished: successes are kept, not
    /// run again (their outputs still feed later steps); `interrupted` ones with a command
    /// id are followed by that id, never written again. Other statuses run as usual.
    pub prior: BTreeMap<u32, Outcome>,
    /// Treat every task as possibly already applied: read back before the first write.
    /// Set when resuming, since a crash may have lost the record of a write.
    pub reconcile: bool,
}

/// What a run produced.
#[derive(Debug)]
pub struct RunOutput {
    /// One outcome per task, in plan order.
    pub outcomes: Vec<Outcome>,
    pub stopped: Option<StopReason>,
    /// Rollouts stopped by `max_failures`.
    pub rollout_stops: Vec<RolloutStop>,
    pub elapsed: Duration,
}

/// What the executor reports as it goes.
#[derive(Debug, Clone, Copy)]
pub enum Event<'a> {
    /// A task is about to make its first request (journals record it as intent).
    Dispatched(TaskId),
    /// A task's outcome is decided.
    Finished(&'a Outcome),
    /// A task an earlier segment of the run already finished, kept as it was: it counts
    /// for progress but is already in the journal, so it is not recorded again.
    Replayed(&'a Outcome),
}

/// Why a task's `${{ steps.… }}` references could not be filled in.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OutputError {
    /// A referenced output has no value (the step produced no such field).
    #[error("step output missing: {0}")]
    Missing(String),
    /// The filled-in operation no longer has the operation's shape.
    #[error("step output has the wrong shape: {0}")]
    Shape(String),
}

impl crate::base::Hint for OutputError {
    fn hint(&self) -> Option<String> {
        Some(match self {
            OutputError::Missing(_) => {
                "check that the needed step produces this output (see the step's outputs in the docs)".into()
            }
            OutputError::Shape(_) => {
                "check that the output referenced here has the type the field expects".into()
            }
        })
    }
}

/// Fills `${{ steps.<id>.<output>… }}` from the outputs of finished steps.
fn fill_outputs(task: &mut Task, outputs: &BTreeMap<String, Value>) -> Result<(), OutputError> {
    let lookup = |r: &[String]| -> Option<Value> {
        if r.first().map(String::as_str) != Some("steps") {
            return None;
        }
        let mut v = outputs.get(r.get(1)?)?;
        for key in &r[2..] {
            v = match v {
                Value::Array(items) => items.get(key.parse::<usize>().ok()?)?,
                other => other.get(key)?,
            };
        }
        Some(v.clone())
    };
    let op = serde_json::to_value(&task.op).map_err(|e| OutputError::Shape(e.to_string()))?;
    let filled =
        crate::job::template::render_value(&op, &lookup).map_err(|e| OutputError::Missing(e.0))?;
    task.op = serde_json::from_value(filled).map_err(|e| OutputError::Shape(e.to_string()))?;
    Ok(())
}

/// Outcomes as they are decided, and the outputs later steps read from them.
struct Books {
    outcomes: Vec<Option<Outcome>>,
    outputs: BTreeMap<String, Value>,
}

impl Books {
    /// Keeps an outcome, and its result as the step's output when the step is one task.
    fn record(
        &mut self,
        plan: &Plan,
        o: Outcome,
        replayed: bool,
        on_event: &mut dyn FnMut(Event<'_>),
    ) {
        let step = plan.step_of(o.task);
        if o.status == TaskStatus::Succeeded
            && step.task_count == 1
            && let Some(r) = &o.result
        {
            self.outputs.insert(step.id.clone(), r.clone());
        }
        on_event(if replayed {
            Event::Replayed(&o)
        } else {
            Event::Finished(&o)
        });
        let i = o.task.0 as usize;
        self.outcomes[i] = Some(o);
    }

    /// Records what the scheduler decided without running anything.
    fn record_decided(
        &mut self,
        plan: &Plan,
        sched: &mut Scheduler,
        at_ms: u64,
        on_event: &mut dyn FnMut(Event<'_>),
    ) {
        for d in sched.take_decided() {
            let (o, replayed) = match d {
                Decision::Skipped { task, reason } => (
                    Outcome::not_run(task, TaskStatus::Skipped, reason, at_ms),
                    false,
                ),
                Decision::Replayed(o) => (o, true),
            };
            self.record(plan, o, replayed, on_event);
        }
    }
}

/// Runs every task of `plan`. `on_event` sees each dispatch and each outcome as it happens
/// (the journal and progress hook in here); the returned outcomes are in plan order.
pub async fn run(
    plan: Arc<Plan>,
    dispatch: Arc<dyn Dispatch>,
    opts: RunOptions,
    cancel: CancellationToken,
    mut on_event: impl FnMut(Event<'_>),
) -> RunOutput {
    let on_event: &mut dyn FnMut(Event<'_>) = &mut on_event;
    let t0 = Instant::now();
    let ms = move || t0.elapsed().as_millis() as u64;
    let n = plan.task_count as usize;
    let mut books = Books {
        outcomes: vec![None; n],
        outputs: BTreeMap::new(),
    };
    let budget = Arc::new(RetryBudget::for_tasks(n));
    // Tasks in their write phase; followers (command tracking) do not count against it.
    let slots = slots::WriteSlots::new(plan.limits.max_in_flight as usize);
    let stop_followers = CancellationToken::new();
    let mut sched = Scheduler::new(&plan, opts.prior.clone());
    // The scheduler hands these out like any task; the worker follows instead of writing.
    let mut follow_only: BTreeMap<u32, Outcome> = opts
        .prior
        .iter()
        .filter(|(_, o)| o.interrupted_command().is_some())
        .map(|(t, o)| (*t, o.clone()))
        .collect();
    // What a follow-only task still is if this run stops before it is followed again.
    let resumable = follow_only.clone();
    let mut running: JoinSet<Outcome> = JoinSet::new();
    let mut in_flight: BTreeSet<u32> = BTreeSet::new();
    let mut stopped: Option<StopReason> = None;

    loop {
        // Decided outcomes go first: a replayed success may hold an output that a task
        // dispatched below reads.
        books.record_decided(&plan, &mut sched, ms(), on_event);
        while sched.has_ready() {
            let Some(slot) = slots.try_take() else {
                break;
            };
            let Some(tid) = sched.pop_ready() else {
                break;
            };
            let Some(mut task) = plan.task(tid) else {
                continue;
            };
            if task.op.needs_outputs()
                && let Err(e) = fill_outputs(&mut task, &books.outputs)
            {
                drop(slot);
                let failure = Failure {
                    hint: crate::base::Hint::hint(&e),
                    ..Failure::local(FailureClass::Build, e.to_string())
                };
                let why = Reason::Failed {
                    failure,
                    gave_up: None,
                };
                let o = Outcome::not_run(tid, TaskStatus::Failed, why, ms());
                running.spawn(async move { o });
                continue;
            }
            in_flight.insert(tid.0);
            on_event(Event::Dispatched(tid));
            let (dispatch, budget, stop_followers) =
                (dispatch.clone(), budget.clone(), stop_followers.clone());
            let retry = plan.retry.clone();
            let seed = opts.seed ^ (tid.0 as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
            let reconcile = opts.reconcile;
            let interrupted = follow_only.remove(&tid.0);
            running.spawn(async move {
                task::run_task(
                    task,
                    dispatch,
                    retry,
                    budget,
                    slot,
                    stop_followers,
                    seed,
                    t0,
                    reconcile,
                    interrupted,
                )
                .await
            });
        }
        if running.is_empty() && !sched.has_ready() {
            break;
        }
        let deadline = opts.deadline;
        let joined = tokio::select! {
            joined = running.join_next(), if !running.is_empty() => joined,
            _ = cancel.cancelled(), if stopped.is_none() => {
                tracing::warn!("interrupted: no new tasks are started; waiting for in-flight requests");
                stopped = Some(StopReason::Interrupted);
                sched.stop();
                stop_followers.cancel();
                dispatch.stop();
                None
            }
            _ = async { tokio::time::sleep_until(deadline.unwrap_or_else(Instant::now)).await }, if stopped.is_none() && deadline.is_some() => {
                tracing::warn!("deadline reached: no new tasks are started; the run can be resumed");
                stopped = Some(StopReason::Deadline);
                sched.stop();
                stop_followers.cancel();
                dispatch.stop();
                None
            }
            // A slot came back without a task finishing: a follower let go of its slot.
            _ = slots.released(), if sched.has_ready() => None,
        };
        let mut finished: Vec<Outcome> = Vec::new();
        match joined {
            Some(Ok(o)) => finished.push(o),
            Some(Err(e)) => tracing::error!(error = %e, "a task worker ended abnormally"),
            None => {}
        }
        if stopped.is_some() && !running.is_empty() {
            // Drain in-flight work, bounded; whatever is left is abandoned.
            let drain_until = Instant::now() + opts.drain;
            loop {
                tokio::select! {
                    joined = running.join_next() => match joined {
                        Some(Ok(o)) => finished.push(o),
                        Some(Err(_)) => {}
                        None => break,
                    },
                    _ = tokio::time::sleep_until(drain_until) => {
                        tracing::warn!(abandoned = running.len(), "in-flight tasks did not finish in time; their outcome is unknown");
                        running.abort_all();
                        break;
                    }
                }
            }
        }
        for mut o in finished {
            in_flight.remove(&o.task.0);
            // A task refused by the closing gate does not know why the run stopped; the
            // loop does.
            if let Some(
                Reason::NotStarted(by @ None)
                | Reason::Interrupted {
                    stopped: by @ None, ..
                },
            ) = &mut o.reason
            {
                *by = stopped;
            }
            let (task, f) = (o.task, Finish::of(&o, &plan));
            // Recorded before the scheduler hears of it, so what it unlocks can read the
            // output.
            books.record(&plan, o, false, on_event);
            sched.finished(task, f);
            books.record_decided(&plan, &mut sched, ms(), on_event);
        }
    }
    running.abort_all();
    let now = ms();
    let outcomes = books
        .outcomes
        .into_iter()
        .enumerate()
        .map(|(i, o)| {
            o.unwrap_or_else(|| {
                // Still interrupted, with its command id: a later resumption follows it.
                if let Some(prior) = resumable.get(&(i as u32)) {
                    prior.clone()
                } else if in_flight.contains(&(i as u32)) {
                    Outcome::not_run(
                        TaskId(i as u32),
                        TaskStatus::Unknown,
                        Reason::Abandoned,
                        now,
                    )
                } else {
                    Outcome::not_run(
                        TaskId(i as u32),
                        TaskStatus::NotStarted,
                        Reason::NotStarted(stopped),
                        now,
                    )
                }
            })
        })
        .collect();
    RunOutput {
        outcomes,
        stopped,
        rollout_stops: sched.rollout_stops().to_vec(),
        elapsed: t0.elapsed(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::{Resolved, Server};
    use futures::FutureExt;

    /// Always fails the same way.
    struct Failing(Failure);

    impl Dispatch for Failing {
        fn attempt<'a>(
            &'a self,
            _t: &'a Task,
            _cx: &'a AttemptCx,
        ) -> BoxFuture<'a, Result<Done, Failure>> {
            async move { Err(self.0.clone()) }.boxed()
        }
        fn follow<'a>(
            &'a self,
            _t: &'a Task,
            _c: &'a str,
            _d: Duration,
            _s: &'a CancellationToken,
        ) -> BoxFuture<'a, Followed> {
            async move {
                Followed {
                    command: String::new(),
                    finished: true,
                    counts: None,
                    devices: Vec::new(),
                    install: None,
                }
            }
            .boxed()
        }
    }

    fn plan(retry: &str) -> Arc<Plan> {
        let text = format!(
            "version: 1\nname: t\nretry: {retry}\nsteps:\n  - id: r\n    request: {{ method: GET, path: /x/ }}\n"
        );
        let env = |_: &str| None;
        let (job, _) =
            crate::job::load("t.yaml", &text, &crate::job::Host::env_only(&env)).unwrap();
        let server = Server {
            base_url: "http://127.0.0.1:1/api".into(),
            enterprise_id: "e".into(),
        };
        Arc::new(crate::plan::compile(&job, &Resolved::default(), server).unwrap())
    }

    fn failure(status: u16, retry_after: Option<Duration>) -> Failure {
        let class = if status == 429 {
            FailureClass::RateLimited
        } else {
            FailureClass::Server
        };
        Failure {
            http_status: Some(status),
            retry_after,
            ..Failure::local(class, format!("GET /x/ answered {status}"))
        }
    }

    async fn run_one(p: Arc<Plan>, f: Failure) -> (Outcome, Duration) {
        let t0 = Instant::now();
        let out = run(
            p,
            Arc::new(Failing(f)),
            RunOptions {
                deadline: None,
                drain: Duration::from_secs(1),
                seed: 42,
                prior: BTreeMap::new(),
                reconcile: false,
            },
            CancellationToken::new(),
            |_| {},
        )
        .await;
        (out.outcomes[0].clone(), t0.elapsed())
    }

    #[tokio::test(start_paused = true)]
    async fn backoff_grows_exponentially_with_full_jitter() {
        let (o, elapsed) = run_one(
            plan("{ attempts: 6, initial_delay: 1s, max_delay: 8s }"),
            failure(503, None),
        )
        .await;
        assert_eq!(o.status, TaskStatus::Failed);
        assert_eq!(o.attempts.len(), 6, "retry.attempts counts the first try");
        assert!(
            matches!(
                &o.reason,
                Some(Reason::Failed { failure, gave_up: Some(GaveUp::Attempts) })
                    if failure.http_status == Some(503)
            ),
            "{:?}",
            o.reason
        );
        let waits: Vec<u64> = o.attempts.iter().filter_map(|a| a.wait_ms).collect();
        assert_eq!(waits.len(), 5);
        // Full jitter: each wait lies in [0, min(1s x 2^n, 8s)].
        for (n, w) in waits.iter().enumerate() {
            let cap = (1000u64 << n).min(8000);
            assert!(*w <= cap, "wait {n} = {w} ms exceeds its step {cap} ms");
        }
        assert!(
            waits.iter().sum::<u64>() > 2000,
            "the jittered waits are not all tiny: {waits:?}"
        );
        let slept = elapsed.as_millis() as u64;
        assert!(
            slept >= waits.iter().sum::<u64>(),
            "the task really waited ({slept} ms)"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn retry_after_is_honoured_up_to_its_cap() {
        let (o, _) = run_one(
            plan("{ attempts: 3, initial_delay: 100ms, max_delay: 1s, max_retry_after: 5s }"),
            failure(429, Some(Duration::from_secs(600))),
        )
        .await;
        let waits: Vec<u64> = o.attempts.iter().filter_map(|a| a.wait_ms).collect();
        assert_eq!(
            waits,
            vec![5000, 5000],
            "a 10-minute Retry-After is capped at max_retry_after"
        );
        assert!(
            o.attempts
                .iter()
                .all(|a| matches!(&a.result, Err(f) if f.http_status == Some(429)))
        );
    }

    #[tokio::test(start_paused = true)]
    async fn client_errors_are_not_retried() {
        let f = Failure {
            http_status: Some(400),
            ..Failure::local(FailureClass::Client, "bad")
        };
        let (o, _) = run_one(plan("{ attempts: 5 }"), f.clone()).await;
        assert_eq!(o.attempts.len(), 1);
        assert_eq!(o.status, TaskStatus::Failed);
        assert_eq!(
            o.reason,
            Some(Reason::Failed {
                failure: f,
                gave_up: None
            }),
            "a failure that is not retried did not give up on anything"
        );
    }

    /// Accepts every write as a command to follow, and follows each for its whole timeout.
    struct SlowFollow;

    impl Dispatch for SlowFollow {
        fn attempt<'a>(
            &'a self,
            t: &'a Task,
            _cx: &'a AttemptCx,
        ) -> BoxFuture<'a, Result<Done, Failure>> {
            async move {
                Ok(Done {
                    summary: String::new(),
                    result: Value::Null,
                    follow: Some(format!("cmd-{}", t.id.0)),
                    reconciled: false,
                })
            }
            .boxed()
        }
        fn follow<'a>(
            &'a self,
            _t: &'a Task,
            c: &'a str,
            d: Duration,
            _s: &'a CancellationToken,
        ) -> BoxFuture<'a, Followed> {
            async move {
                tokio::time::sleep(d).await;
                Followed {
                    command: c.to_string(),
                    finished: true,
                    counts: Some(DeviceCounts {
                        succeeded: 1,
                        ..DeviceCounts::default()
                    }),
                    devices: Vec::new(),
                    install: None,
                }
            }
            .boxed()
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_slot_given_back_by_a_follower_dispatches_the_next_task_at_once() {
        let plan = super::follow_tests::plan_with("10s", 1);
        let t0 = Instant::now();
        let mut dispatched = Vec::new();
        let out = run(
            plan,
            Arc::new(SlowFollow),
            RunOptions {
                deadline: None,
                drain: Duration::from_secs(1),
                seed: 1,
                prior: BTreeMap::new(),
                reconcile: false,
            },
            CancellationToken::new(),
            |e| {
                if let Event::Dispatched(t) = e {
                    dispatched.push((t.0, t0.elapsed()));
                }
            },
        )
        .await;
        assert!(
            out.outcomes
                .iter()
                .all(|o| o.status == TaskStatus::Succeeded)
        );
        assert_eq!(
            dispatched,
            [
                (0, Duration::ZERO),
                (1, Duration::ZERO),
                (2, Duration::ZERO)
            ],
            "one write slot, yet no task waits for another's follow (nor for a poll)"
        );
        assert_eq!(out.elapsed, Duration::from_secs(10), "the follows overlap");
    }
}
