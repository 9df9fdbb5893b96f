//! The scheduler: which tasks of a plan may start, and which outcomes the plan's structure
//! decides without running anything. It owns the bookkeeping of steps, rollout stages and
//! `needs`: what a finished task unlocks, when a rollout's `max_failures` stops a step
//! ([`RolloutStop`]), which tasks are skipped and why ([`Reason::NeedsFailed`],
//! [`Reason::RolloutStopped`]), and the replay of tasks an earlier attempt of the run
//! already finished (`RunOptions::prior`).
//!
//! It is synchronous and pure: no tokio, no clock, no network. Its inputs are the plan and
//! "task X finished" ([`Finish`]); its outputs are tasks to dispatch ([`Scheduler::pop_ready`])
//! and [`Decision`]s. Permits, workers, cancellation, deadlines and timestamps belong to the
//! async shell in `exec::run`, and so do step outputs (`${{ steps.… }}`): the shell records
//! a finished task's result before telling the scheduler, so whatever the scheduler unlocks
//! can already read it.
//!
//! A need is per item when [`Need::per_item`] says so (both steps fan out one task per item
//! of the same target, and the needing step has no `needs_all`): task `k` then waits only
//! for task `k` of the needed step and is skipped only if that one did not succeed.
//! Otherwise the needing step waits for the whole needed step and is skipped entirely if any
//! of its tasks did not succeed. Stages of the needing step's rollout apply either way:
//! a task waits for its stage to open, then for its per-item needs.

use std::collections::{BTreeMap, VecDeque};

use super::{Outcome, Reason, RolloutStop, Shortfall, TaskStatus};
use crate::plan::{Need, Plan, TaskId};

#[cfg(test)]
mod tests;

/// What a finished task counts for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Finish {
    pub succeeded: bool,
    /// Failure units against a rollout's `max_failures`, and units in all.
    pub failed_units: u64,
    pub total_units: u64,
}

impl Finish {
    /// Units are devices when a command was followed and reported any, else the task;
    /// pending devices count as failed units under the step's `pending: fail`.
    pub fn of(o: &Outcome, plan: &Plan) -> Finish {
        let succeeded = o.status == TaskStatus::Succeeded;
        if let Some(f) = o.followed.as_ref()
            && let Some(c) = f.counts
            && c.total() > 0
        {
            let tolerance = plan.step_of(o.task).op.tolerance();
            return Finish {
                succeeded,
                // Devices a verified install found without the version count as failed.
                failed_units: tolerance.failures(f.unsuccessful().unwrap_or(0), c.pending),
                total_units: c.total(),
            };
        }
        Finish {
            succeeded,
            failed_units: u64::from(!succeeded),
            total_units: 1,
        }
    }

    /// A task that was not run: not a success, and no units, since the failure it
    /// follows from was counted where it happened.
    fn unrun() -> Finish {
        Finish {
            succeeded: false,
            failed_units: 0,
            total_units: 0,
        }
    }
}

/// An outcome decided without running the task.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// Not run: a need did not succeed, or the step's rollout stopped.
    Skipped { task: TaskId, reason: Reason },
    /// Finished in an earlier attempt of this run: kept, not run again (a success, or an
    /// interrupted command a stopped step will not follow now).
    Replayed(Outcome),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TaskState {
    /// Its step has not reached the task's stage.
    Closed,
    /// In an open stage, waiting for per-item needs.
    Waiting,
    /// Handed out (or about to be): the shell reports how it finished.
    Dispatched,
    Done {
        ok: bool,
    },
}

#[derive(Debug, Default, Clone)]
struct StepState {
    /// Whole-step needs not done yet.
    waiting_on: usize,
    done: bool,
    stage: usize,
    /// Tasks of the current stage not finished yet.
    left: u32,
    /// Tasks that did not succeed, run or not.
    bad: u32,
    failed_units: u64,
    total_units: u64,
}

enum Work {
    /// Every whole-step need is done: skip the step or open its first stage.
    Start(usize),
    /// A task whose stage is open, or one of whose per-item needs finished.
    Release(u32),
}

/// The step, stage and `needs` state machine of one run. See the module docs.
pub struct Scheduler<'p> {
    plan: &'p Plan,
    steps: Vec<StepState>,
    tasks: Vec<TaskState>,
    /// Per step: the steps needing all of it, and those needing it per item.
    whole_dependents: Vec<Vec<usize>>,
    item_dependents: Vec<Vec<usize>>,
    prior: BTreeMap<u32, Outcome>,
    work: VecDeque<Work>,
    ready: VecDeque<TaskId>,
    decided: VecDeque<Decision>,
    rollout_stops: Vec<RolloutStop>,
    stopped: bool,
}

impl<'p> Scheduler<'p> {
    /// Starts every step that needs nothing whole. `prior` holds outcomes of tasks an
    /// earlier attempt finished successfully, each replayed when its task would start, and
    /// interrupted ones, handed out when their task would start so the shell follows them.
    pub fn new(plan: &'p Plan, prior: BTreeMap<u32, Outcome>) -> Self {
        let n = plan.steps.len();
        let mut s = Scheduler {
            plan,
            steps: vec![StepState::default(); n],
            tasks: vec![TaskState::Closed; plan.task_count as usize],
            whole_dependents: vec![Vec::new(); n],
            item_dependents: vec![Vec::new(); n],
            prior,
            work: VecDeque::new(),
            ready: VecDeque::new(),
            decided: VecDeque::new(),
            rollout_stops: Vec::new(),
            stopped: false,
        };
        for (si, step) in plan.steps.iter().enumerate() {
            for need in &step.resolved_needs {
                if need.per_item {
                    s.item_dependents[need.step].push(si);
                } else {
                    s.whole_dependents[need.step].push(si);
                    s.steps[si].waiting_on += 1;
                }
            }
        }
        for si in 0..n {
            if s.steps[si].waiting_on == 0 {
                s.work.push_back(Work::Start(si));
            }
        }
        s.pump();
        s
    }

    /// The next task to dispatch, in the order tasks became ready; none once stopped.
    pub fn pop_ready(&mut self) -> Option<TaskId> {
        if self.stopped {
            return None;
        }
        self.ready.pop_front()
    }

    /// Whether [`Scheduler::pop_ready`] would hand out a task.
    pub fn has_ready(&self) -> bool {
        !self.stopped && !self.ready.is_empty()
    }

    /// Outcomes decided since the last call, in the order they were decided.
    pub fn take_decided(&mut self) -> Vec<Decision> {
        self.decided.drain(..).collect()
    }

    /// A dispatched task finished. Reports for tasks not dispatched are ignored, so an
    /// outcome can never be counted twice.
    pub fn finished(&mut self, task: TaskId, f: Finish) {
        if self.tasks.get(task.0 as usize) != Some(&TaskState::Dispatched) {
            tracing::debug!(%task, "finish of a task that was not dispatched; ignored");
            return;
        }
        self.finish(task.0, f);
        self.pump();
    }

    /// The run is stopping: nothing more is handed out or decided. Finishes are still
    /// taken (the stage bookkeeping stays true), but open nothing.
    pub fn stop(&mut self) {
        self.stopped = true;
        self.work.clear();
    }

    /// Rollouts stopped by `max_failures`, in the order they stopped.
    pub fn rollout_stops(&self) -> &[RolloutStop] {
        &self.rollout_stops
    }

    fn pump(&mut self) {
        while !self.stopped
            && let Some(w) = self.work.pop_front()
        {
            match w {
                Work::Start(si) => self.start(si),
                Work::Release(t) => self.release(t),
            }
        }
    }

    fn step_index(&self, t: u32) -> usize {
        self.plan
            .steps
            .partition_point(|s| s.first_task + s.task_count <= t)
    }

    fn stages(&self, si: usize) -> usize {
        self.plan.steps[si]
            .rollout
            .as_ref()
            .map_or(1, |r| r.stage_ends.len())
    }

    /// The task range of a step's stage; empty past the last stage.
    fn stage_range(&self, si: usize, stage: usize) -> (u32, u32) {
        let s = &self.plan.steps[si];
        let end = |i: usize| match &s.rollout {
            // Clamped: a hand-edited plan must not reach into the next step's tasks.
            Some(r) => r
                .stage_ends
                .get(i)
                .map_or(s.task_count, |e| (*e).min(s.task_count)),
            None => s.task_count,
        };
        let from = if stage == 0 { 0 } else { end(stage - 1) };
        let to = end(stage).max(from);
        (s.first_task + from, s.first_task + to)
    }

    fn start(&mut self, si: usize) {
        let plan = self.plan;
        let step = &plan.steps[si];
        let failed: Vec<Shortfall> = step
            .resolved_needs
            .iter()
            .filter(|n| !n.per_item && self.steps[n.step].bad > 0)
            .map(|n| Shortfall {
                step: plan.steps[n.step].id.clone(),
                not_succeeded: self.steps[n.step].bad,
                item: None,
            })
            .collect();
        if !failed.is_empty() {
            let needs: Vec<&str> = failed.iter().map(|f| f.step.as_str()).collect();
            tracing::warn!(step = %step.id, ?needs, "skipped: needed steps did not succeed");
            let why = Reason::NeedsFailed(failed);
            for t in step.tasks() {
                self.decide_unrun(t.0, &why);
            }
            self.step_done(si);
            return;
        }
        if step.task_count == 0 {
            self.step_done(si);
            return;
        }
        tracing::info!(step = %step.id, tasks = step.task_count, stages = self.stages(si), "step started");
        self.open_stage(si, 0);
    }

    fn open_stage(&mut self, si: usize, stage: usize) {
        let (a, b) = self.stage_range(si, stage);
        let st = &mut self.steps[si];
        st.stage = stage;
        st.left = b - a;
        for t in a..b {
            self.tasks[t as usize] = TaskState::Waiting;
            self.work.push_back(Work::Release(t));
        }
        if a == b {
            // Only a hand-edited plan has an empty stage; nothing would ever close it.
            self.stage_complete(si);
        }
    }

    /// Hands out, replays or skips a waiting task whose per-item needs have all finished.
    fn release(&mut self, t: u32) {
        if self.tasks[t as usize] != TaskState::Waiting {
            return;
        }
        let plan = self.plan;
        let si = self.step_index(t);
        let step = &plan.steps[si];
        let k = t - step.first_task;
        let mut short = Vec::new();
        for &Need { step: d, .. } in step.resolved_needs.iter().filter(|n| n.per_item) {
            let needed = &plan.steps[d];
            match self.tasks[(needed.first_task + k) as usize] {
                TaskState::Done { ok: true } => {}
                TaskState::Done { ok: false } => short.push(Shortfall {
                    step: needed.id.clone(),
                    not_succeeded: 1,
                    item: plan.item_label(needed, k).map(str::to_string),
                }),
                _ => return,
            }
        }
        // An interrupted command is followed again, not replayed: its devices decide.
        if short.is_empty()
            && self
                .prior
                .get(&t)
                .is_some_and(|o| o.interrupted_command().is_some())
        {
            self.prior.remove(&t);
            self.tasks[t as usize] = TaskState::Dispatched;
            self.ready.push_back(TaskId(t));
        // A prior success wins over a skip, as in `decide_unrun`.
        } else if let Some(o) = self.prior.remove(&t) {
            let f = Finish::of(&o, self.plan);
            self.decided.push_back(Decision::Replayed(o));
            self.finish(t, f);
        } else if !short.is_empty() {
            tracing::debug!(step = %step.id, task = t, "skipped: the needed task for its item did not succeed");
            self.decided.push_back(Decision::Skipped {
                task: TaskId(t),
                reason: Reason::NeedsFailed(short),
            });
            self.finish(t, Finish::unrun());
        } else {
            self.tasks[t as usize] = TaskState::Dispatched;
            self.ready.push_back(TaskId(t));
        }
    }

    /// Decides a task that will not run, outside any stage; a prior success still counts
    /// as one, since the report must not call done work skipped.
    fn decide_unrun(&mut self, t: u32, why: &Reason) {
        let ok = match self.prior.remove(&t) {
            // A sent command stays on record as sent, even when its step is not followed now.
            Some(o) => {
                let ok = o.status == TaskStatus::Succeeded;
                self.decided.push_back(Decision::Replayed(o));
                ok
            }
            None => {
                self.decided.push_back(Decision::Skipped {
                    task: TaskId(t),
                    reason: why.clone(),
                });
                false
            }
        };
        self.settle(t, ok);
    }

    /// Records a task's final state and wakes the tasks that need it per item.
    fn settle(&mut self, t: u32, ok: bool) -> usize {
        self.tasks[t as usize] = TaskState::Done { ok };
        let si = self.step_index(t);
        if !ok {
            self.steps[si].bad += 1;
        }
        let k = t - self.plan.steps[si].first_task;
        for &d in &self.item_dependents[si] {
            let dt = self.plan.steps[d].first_task + k;
            if self.tasks.get(dt as usize) == Some(&TaskState::Waiting) {
                self.work.push_back(Work::Release(dt));
            }
        }
        si
    }

    /// A task of the current stage finished (run, replayed or skipped per item).
    fn finish(&mut self, t: u32, f: Finish) {
        let si = self.settle(t, f.succeeded);
        let st = &mut self.steps[si];
        st.failed_units += f.failed_units;
        st.total_units += f.total_units;
        st.left = st.left.saturating_sub(1);
        if st.left == 0 && !st.done && !self.stopped {
            self.stage_complete(si);
        }
    }

    /// The stage is complete: check the rollout threshold, then open the next stage.
    fn stage_complete(&mut self, si: usize) {
        let plan = self.plan;
        let step = &plan.steps[si];
        let st = &self.steps[si];
        let stage = st.stage;
        if let Some(r) = &step.rollout {
            let allowed = r.max_failures.of(st.total_units);
            if st.failed_units > allowed {
                let stop = RolloutStop {
                    step: step.id.clone(),
                    stage: stage + 1,
                    stages: r.stage_ends.len(),
                    failed: st.failed_units,
                    allowed,
                    total: st.total_units,
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
                let (a, _) = self.stage_range(si, stage + 1);
                let why = Reason::RolloutStopped(stop.clone());
                for t in a..step.first_task + step.task_count {
                    self.decide_unrun(t, &why);
                }
                self.rollout_stops.push(stop);
                self.step_done(si);
                return;
            }
        }
        if stage + 1 < self.stages(si) {
            let (a, b) = self.stage_range(si, stage + 1);
            tracing::info!(step = %step.id, stage = stage + 2, tasks = b - a, "rollout stage started");
            self.open_stage(si, stage + 1);
        } else {
            self.step_done(si);
        }
    }

    fn step_done(&mut self, si: usize) {
        self.steps[si].done = true;
        for i in 0..self.whole_dependents[si].len() {
            let d = self.whole_dependents[si][i];
            let st = &mut self.steps[d];
            st.waiting_on = st.waiting_on.saturating_sub(1);
            if st.waiting_on == 0 {
                self.work.push_back(Work::Start(d));
            }
        }
    }
}
