//! One task's life on a worker: its attempts with backon's exponential backoff and full
//! jitter (honouring `Retry-After` up to its cap, spending the run-wide retry budget), the
//! read-back flag after an attempt that may have been processed, and following an
//! accepted command to its devices' final states.
//!
//! It holds the task's write slot only while writing. Which task runs when, and what its
//! outcome unlocks, is the scheduler's; stopping and draining are `exec::run`'s.

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use backon::{ExponentialBuilder, Retryable};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::slots::WriteSlot;
use super::{
    Attempt, AttemptCx, Dispatch, Failure, GaveUp, Outcome, Reason, RetryBudget, TaskStatus,
    next_delay,
};
use crate::base::FailureClass;
use crate::plan::Task;

#[allow(clippy::too_many_arguments)]
pub(super) async fn run_task(
    task: Task,
    dispatch: Arc<dyn Dispatch>,
    retry: crate::job::RetrySettings,
    budget: Arc<RetryBudget>,
    slot: WriteSlot,
    stop_followers: CancellationToken,
    seed: u64,
    t0: Instant,
    reconcile: bool,
    interrupted: Option<Outcome>,
) -> Outcome {
    let ms = || t0.elapsed().as_millis() as u64;
    let started_ms = ms();
    // An export only reads: it holds no write slot, so writes are never held up by it.
    let slot = if matches!(task.op, crate::plan::Operation::Export { .. }) {
        drop(slot);
        None
    } else {
        Some(slot)
    };
    let task_started = SystemTime::now();
    // A command an earlier attempt of the run sent and was following when it stopped:
    // following it again by id is the only way not to send it twice.
    let resumed = interrupted.and_then(|o| {
        let cmd = o.interrupted_command()?.to_string();
        Some((cmd, o))
    });
    let attempts: Mutex<Vec<Attempt>> = Mutex::new(
        resumed
            .as_ref()
            .map(|(_, o)| o.attempts.clone())
            .unwrap_or_default(),
    );
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
    let result = if let Some((cmd, o)) = resumed {
        Ok(super::Done {
            summary: format!("following command request {cmd} sent by an earlier attempt"),
            result: o.result.unwrap_or(serde_json::Value::Null),
            follow: Some(cmd),
            reconciled: true,
        })
    } else {
        once.retry(backoff)
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
        .await
    };
    // Following holds no slot: a command may take minutes to reach its devices.
    drop(slot);
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
                    tolerance,
                    verify,
                    ..
                },
            ) = (&done.follow, &task.op)
            {
                let mut f = dispatch.follow(&task, cmd, *wait, &stop_followers).await;
                // The command settled (or its wait ended): which devices really have the
                // version is one more bulk read, and a device that "succeeded" without it
                // counts as failed from here on.
                if *verify && f.counts.is_some() && !stop_followers.is_cancelled() {
                    f.install = dispatch.verify_install(&task, &f).await.map(Box::new);
                }
                let failed = f.unsuccessful().unwrap_or(0);
                match f.counts {
                    _ if !f.finished && stop_followers.is_cancelled() => {
                        // The stop cut the wait short, not the wait's timeout: the devices
                        // may still succeed, so this is neither a success nor a failure.
                        status = TaskStatus::Interrupted;
                        reason = Some(Reason::Interrupted {
                            command: cmd.clone(),
                            stopped: None,
                        });
                    }
                    None => {
                        // Accepted, but where its devices ended is not known: resuming
                        // reads the command's status again instead of sending it again.
                        status = TaskStatus::Unknown;
                        reason = Some(Reason::StatusUnread {
                            command: cmd.clone(),
                        });
                    }
                    Some(c) if !tolerance.accepts(failed, c.pending, c.total()) => {
                        status = TaskStatus::Failed;
                        reason = Some(Reason::DeviceFailures(c));
                    }
                    // Within the step's threshold; pending devices stay listed in `followed`.
                    Some(_) => {}
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
