//! The executor: runs a plan's tasks on a bounded tokio pool under the [`Governor`],
//! retrying with backon, skipping dependents of failed steps, and stopping cleanly.
//!
//! It knows nothing about Esper's URLs or JSON and imports nothing from `esper`: it drives
//! a [`Dispatch`] implementation (the Esper adapter in `esper::dispatch`, or a fake in
//! tests) and turns everything that happens into [`Outcome`]s, whose [`Reason`]s and
//! [`Failure`]s are typed all the way to the report. `run` returns `Err` never; failures
//! are outcomes.

mod adaptive;
mod governor;
mod outcome;
mod retry;

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use backon::{ExponentialBuilder, Retryable};
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
    Attempt, DeviceCounts, DeviceResult, DeviceState, Followed, GaveUp, Outcome, Reason,
    RolloutStop, Shortfall, StopReason, TaskStatus,
};
pub use retry::{Failure, RetryBudget, next_delay};

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
    /// Outcomes of tasks a previous attempt of this run finished successfully: they are
    /// kept, not run again (their outputs still feed later steps).
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
}

/// Failure units of an outcome: devices when a command was followed, else the task.
fn units(o: &Outcome) -> (u64, u64) {
    if let Some(c) = o.followed.as_ref().and_then(|f| f.counts)
        && c.total() > 0
    {
        return (c.unsuccessful(), c.total());
    }
    (u64::from(o.status != TaskStatus::Succeeded), 1)
}

#[derive(Default, Clone)]
struct StepState {
    started: bool,
    done: bool,
    stage: usize,
    /// Tasks of the current stage not finished yet.
    left: u32,
    bad: u32,
    failed_units: u64,
    total_units: u64,
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

/// Runs every task of `plan`. `on_event` sees each dispatch and each outcome as it happens
/// (the journal and progress hook in here); the returned outcomes are in plan order.
pub async fn run(
    plan: Arc<Plan>,
    dispatch: Arc<dyn Dispatch>,
    opts: RunOptions,
    cancel: CancellationToken,
    mut on_event: impl FnMut(Event<'_>),
) -> RunOutput {
    let t0 = Instant::now();
    let ms = move || t0.elapsed().as_millis() as u64;
    let n = plan.task_count as usize;
    let mut outcomes: Vec<Option<Outcome>> = vec![None; n];
    // Prior successes are replayed through the normal bookkeeping when their stage opens.
    let mut prior = opts.prior.clone();
    let mut preset_done: Vec<Outcome> = Vec::new();
    let budget = Arc::new(RetryBudget::for_tasks(n));
    // Tasks in their write phase; followers (command tracking) do not count against it.
    let slots = Arc::new(tokio::sync::Semaphore::new(
        plan.limits.max_in_flight.max(1) as usize,
    ));
    let stop_followers = CancellationToken::new();

    let step_index: BTreeMap<&str, usize> = plan
        .steps
        .iter()
        .enumerate()
        .map(|(i, s)| (s.id.as_str(), i))
        .collect();
    let mut st: Vec<StepState> = vec![StepState::default(); plan.steps.len()];
    let mut outputs: BTreeMap<String, Value> = BTreeMap::new();
    let mut rollout_stops: Vec<RolloutStop> = Vec::new();
    let mut queue: VecDeque<TaskId> = VecDeque::new();
    let mut running: JoinSet<Outcome> = JoinSet::new();
    let mut in_flight: std::collections::BTreeSet<u32> = Default::default();
    let mut stopped: Option<StopReason> = None;

    // The task range of a step's stage.
    let stage_range = |si: usize, stage: usize| -> (u32, u32) {
        let s = &plan.steps[si];
        let ends: Vec<u32> = s
            .rollout
            .as_ref()
            .map(|r| r.stage_ends.clone())
            .unwrap_or_else(|| vec![s.task_count]);
        let from = if stage == 0 { 0 } else { ends[stage - 1] };
        (
            s.first_task + from,
            s.first_task + ends.get(stage).copied().unwrap_or(s.task_count),
        )
    };
    let stages_of = |si: usize| {
        plan.steps[si]
            .rollout
            .as_ref()
            .map_or(1, |r| r.stage_ends.len())
    };

    loop {
        // Start every step whose needs are done; skip those whose needs did not succeed.
        if stopped.is_none() {
            let mut changed = true;
            while changed {
                changed = false;
                for (si, step) in plan.steps.iter().enumerate() {
                    if st[si].started {
                        continue;
                    }
                    let needs: Vec<usize> = step
                        .needs
                        .iter()
                        .filter_map(|n| step_index.get(n.as_str()).copied())
                        .collect();
                    if needs.iter().any(|&d| !st[d].done) {
                        continue;
                    }
                    st[si].started = true;
                    changed = true;
                    let failed: Vec<Shortfall> = needs
                        .iter()
                        .filter(|&&d| st[d].bad > 0)
                        .map(|&d| Shortfall {
                            step: plan.steps[d].id.clone(),
                            not_succeeded: st[d].bad,
                        })
                        .collect();
                    if !failed.is_empty() || step.task_count == 0 {
                        if !failed.is_empty() {
                            let needs: Vec<&str> = failed.iter().map(|f| f.step.as_str()).collect();
                            tracing::warn!(step = %step.id, ?needs, "skipped: needed steps did not succeed");
                        }
                        let why = Reason::NeedsFailed(failed);
                        for t in step.tasks() {
                            let o = Outcome::not_run(t, TaskStatus::Skipped, why.clone(), ms());
                            on_event(Event::Finished(&o));
                            outcomes[t.0 as usize] = Some(o);
                        }
                        st[si].bad = step.task_count;
                        st[si].done = true;
                        continue;
                    }
                    let (a, b) = stage_range(si, 0);
                    st[si].left = b - a;
                    for t in a..b {
                        match prior.remove(&t) {
                            Some(o) => preset_done.push(o),
                            None => queue.push_back(TaskId(t)),
                        }
                    }
                    tracing::info!(step = %step.id, tasks = step.task_count, stages = stages_of(si), "step started");
                }
            }
        }
        // Replayed outcomes are handled before anything can wait or end the loop.
        let mut finished: Vec<Outcome> = std::mem::take(&mut preset_done);
        if finished.is_empty() {
            if stopped.is_none() {
                while let Some(&tid) = queue.front() {
                    let Ok(permit) = slots.clone().try_acquire_owned() else {
                        break;
                    };
                    queue.pop_front();
                    let Some(mut task) = plan.task(tid) else {
                        continue;
                    };
                    if task.op.needs_outputs()
                        && let Err(e) = fill_outputs(&mut task, &outputs)
                    {
                        drop(permit);
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
                    running.spawn(async move {
                        run_task(
                            task,
                            dispatch,
                            retry,
                            budget,
                            permit,
                            stop_followers,
                            seed,
                            t0,
                            reconcile,
                        )
                        .await
                    });
                }
            }
            if running.is_empty() && (queue.is_empty() || stopped.is_some()) {
                break;
            }
            let deadline = opts.deadline;
            let joined = tokio::select! {
                joined = running.join_next(), if !running.is_empty() => joined,
                _ = cancel.cancelled(), if stopped.is_none() => {
                    tracing::warn!("interrupted: no new tasks are started; waiting for in-flight requests");
                    stopped = Some(StopReason::Interrupted);
                    stop_followers.cancel();
                    dispatch.stop();
                    None
                }
                _ = async { tokio::time::sleep_until(deadline.unwrap_or_else(Instant::now)).await }, if stopped.is_none() && deadline.is_some() => {
                    tracing::warn!("deadline reached: no new tasks are started; the run can be resumed");
                    stopped = Some(StopReason::Deadline);
                    stop_followers.cancel();
                    dispatch.stop();
                    None
                }
                // Wakes the loop when a slot frees up without a task finishing (a follower
                // released its write slot).
                _ = tokio::time::sleep(Duration::from_millis(50)), if !queue.is_empty() && stopped.is_none() => None,
            };
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
        }
        for mut o in finished {
            in_flight.remove(&o.task.0);
            // A task refused by the closing gate does not know why the run stopped; the
            // loop does.
            if let Some(Reason::NotStarted(by @ None)) = &mut o.reason {
                *by = stopped;
            }
            let si = step_index[plan.step_of(o.task).id.as_str()];
            let step = &plan.steps[si];
            if o.status == TaskStatus::Succeeded
                && step.task_count == 1
                && let Some(r) = &o.result
            {
                outputs.insert(step.id.clone(), r.clone());
            }
            let (f, t) = units(&o);
            let s = &mut st[si];
            s.failed_units += f;
            s.total_units += t;
            if o.status != TaskStatus::Succeeded {
                s.bad += 1;
            }
            s.left = s.left.saturating_sub(1);
            on_event(Event::Finished(&o));
            let idx = o.task.0 as usize;
            outcomes[idx] = Some(o);
            if s.left > 0 || stopped.is_some() {
                continue;
            }
            // The stage is complete: check the rollout threshold, then open the next stage.
            let stage = s.stage;
            if let Some(r) = &step.rollout {
                let allowed = r.max_failures.of(s.total_units);
                if s.failed_units > allowed {
                    let stop = RolloutStop {
                        step: step.id.clone(),
                        stage: stage + 1,
                        stages: r.stage_ends.len(),
                        failed: s.failed_units,
                        allowed,
                        total: s.total_units,
                    };
                    tracing::warn!(
                        step = %step.id,
                        stage = stop.stage,
                        stages = stop.stages,
                        failed = stop.failed,
                        allowed,
                        total = stop.total,
                        max_failures = %r.max_failures,
                        "rollout stopped at its max_failures threshold"
                    );
                    let (a, _) = stage_range(si, stage + 1);
                    for t in a..step.first_task + step.task_count {
                        let o = Outcome::not_run(
                            TaskId(t),
                            TaskStatus::Skipped,
                            Reason::RolloutStopped(stop.clone()),
                            ms(),
                        );
                        on_event(Event::Finished(&o));
                        outcomes[t as usize] = Some(o);
                        s.bad += 1;
                    }
                    rollout_stops.push(stop);
                    s.done = true;
                    continue;
                }
            }
            if stage + 1 < stages_of(si) {
                s.stage += 1;
                let (a, b) = stage_range(si, stage + 1);
                s.left = b - a;
                for t in a..b {
                    match prior.remove(&t) {
                        Some(o) => preset_done.push(o),
                        None => queue.push_back(TaskId(t)),
                    }
                }
                tracing::info!(step = %step.id, stage = stage + 2, tasks = b - a, "rollout stage started");
            } else {
                s.done = true;
            }
        }
    }
    running.abort_all();
    let now = ms();
    let outcomes = outcomes
        .into_iter()
        .enumerate()
        .map(|(i, o)| {
            o.unwrap_or_else(|| {
                if in_flight.contains(&(i as u32)) {
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
        rollout_stops,
        elapsed: t0.elapsed(),
    }
}

#[allow(clippy::too_many_arguments)]
async fn run_task(
    task: Task,
    dispatch: Arc<dyn Dispatch>,
    retry: crate::job::RetrySettings,
    budget: Arc<RetryBudget>,
    permit: tokio::sync::OwnedSemaphorePermit,
    stop_followers: CancellationToken,
    seed: u64,
    t0: Instant,
    reconcile: bool,
) -> Outcome {
    let ms = || t0.elapsed().as_millis() as u64;
    let started_ms = ms();
    let task_started = SystemTime::now();
    let attempts: Mutex<Vec<Attempt>> = Mutex::new(Vec::new());
    let uncertain = AtomicBool::new(reconcile);
    let counter = AtomicU32::new(0);
    let rng = Mutex::new(fastrand::Rng::with_seed(seed));
    let lock = |m: &Mutex<Vec<Attempt>>| -> Vec<Attempt> {
        m.lock().unwrap_or_else(|e| e.into_inner()).clone()
    };

    let once = || async {
        let n = counter.fetch_add(1, Ordering::SeqCst) + 1;
        let cx = AttemptCx {
            attempt: n,
            uncertain: uncertain.load(Ordering::SeqCst),
            task_started,
        };
        let at = ms();
        let began = Instant::now();
        let r = dispatch.attempt(&task, &cx).await;
        let (result, note) = match &r {
            Ok(d) => (Ok(()), d.reconciled.then(|| d.summary.clone())),
            Err(f) => (Err(f.clone()), None),
        };
        if let Err(f) = &r
            && f.maybe_processed
        {
            uncertain.store(true, Ordering::SeqCst);
        }
        attempts
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(Attempt {
                n,
                at_ms: at,
                took_ms: began.elapsed().as_millis() as u64,
                result,
                wait_ms: None,
                note,
            });
        r
    };
    let backoff = ExponentialBuilder::default()
        .with_min_delay(retry.initial_delay)
        .with_max_delay(retry.max_delay)
        .with_factor(2.0)
        .with_max_times(retry.attempts.saturating_sub(1) as usize);
    let result = once
        .retry(backoff)
        .sleep(tokio::time::sleep)
        .when(|f: &Failure| f.retryable() && !stop_followers.is_cancelled() && budget.try_spend(f))
        .adjust(|f: &Failure, step: Option<Duration>| {
            step.map(|s| next_delay(f, s, retry.max_retry_after, &mut rng.lock().unwrap_or_else(|e| e.into_inner())))
        })
        .notify(|f: &Failure, wait: Duration| {
            tracing::debug!(task = %task.id, error = %f, wait_ms = wait.as_millis() as u64, "retrying");
            if let Some(last) = attempts.lock().unwrap_or_else(|e| e.into_inner()).last_mut() {
                last.wait_ms = Some(wait.as_millis() as u64);
            }
        })
        .await;
    drop(permit);
    let outcome = |status, reason, result, followed| Outcome {
        task: task.id,
        status,
        attempts: lock(&attempts),
        reason,
        result,
        followed,
        started_ms,
        finished_ms: ms(),
    };
    match result {
        Ok(done) => {
            budget.refund();
            let (mut status, mut reason, mut followed) = (TaskStatus::Succeeded, None, None);
            if let (
                Some(cmd),
                crate::plan::Operation::Command {
                    wait_ms: Some(wait),
                    ..
                },
            ) = (&done.follow, &task.op)
            {
                let f = dispatch.follow(&task, cmd, *wait, &stop_followers).await;
                if let Some(c) = f.counts
                    && c.unsuccessful() > 0
                {
                    status = TaskStatus::Failed;
                    reason = Some(Reason::DeviceFailures(c));
                }
                followed = Some(f);
            }
            outcome(status, reason, Some(done.result), followed)
        }
        Err(f) if f.class == FailureClass::Stopped && !uncertain.load(Ordering::SeqCst) => {
            // Nothing was written: the stop came before this task's write went out.
            outcome(
                TaskStatus::NotStarted,
                Some(Reason::NotStarted(None)),
                None,
                None,
            )
        }
        Err(failure) => {
            let status = if uncertain.load(Ordering::SeqCst) {
                TaskStatus::Unknown
            } else {
                TaskStatus::Failed
            };
            let n = counter.load(Ordering::SeqCst);
            let gave_up =
                if failure.retryable() && n < retry.attempts && !stop_followers.is_cancelled() {
                    Some(GaveUp::Budget)
                } else if failure.retryable() && n >= retry.attempts {
                    Some(GaveUp::Attempts)
                } else {
                    None
                };
            outcome(
                status,
                Some(Reason::Failed { failure, gave_up }),
                None,
                None,
            )
        }
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
}
