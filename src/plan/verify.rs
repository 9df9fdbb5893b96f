//! Checking a plan read back from a file before anything runs it: its integrity hash
//! ([`integrity`], recorded when the plan was written) and every structural fact the
//! executor and the reports rely on ([`verify`]).
//!
//! A plan that [`super::compile`] made passes by construction; these checks are for files,
//! which can be edited or damaged. They apply the job checker's ranges to the settings the
//! plan carries (`limits`, `retry`, `deadline_ms`) and check that the steps and counts agree
//! with the frozen targets: steps present, task ids contiguous, each step's `task_count`
//! what its fan-out over its target makes, `needs` naming steps without a cycle, rollout
//! stages within the step. Every problem is collected as a typed [`Fault`]. Pure: reading
//! the file and deciding what a missing hash means are the caller's.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use super::{Fanout, ItemKind, MAX_DEVICES_PER_COMMAND, MAX_DEVICES_PER_MOVE, OpTemplate, Plan};
use crate::job::{ATTEMPTS_RANGE, Amount, IN_FLIGHT_RANGE, MAX_DURATION, RATE_RANGE};

/// `sha256:<hex>` of the plan's canonical serialization (compact JSON, the field order of
/// [`Plan`], without the file's own `integrity` field). Reports record it as `plan_hash`.
pub fn integrity(plan: &Plan) -> String {
    use sha2::{Digest, Sha256};
    /// Hashes the serialization as it is made: a million-task plan's JSON is never held.
    struct Hashing(Sha256);
    impl std::io::Write for Hashing {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.update(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut h = Hashing(Sha256::new());
    // Serializing a plan into memory cannot fail (its maps are keyed by strings).
    let _ = serde_json::to_writer(std::io::BufWriter::with_capacity(1 << 16, &mut h), plan);
    let digest = h.0.finalize();
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256:{hex}")
}

/// One thing wrong with a plan file.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Fault {
    #[error("its integrity hash `{recorded}` does not match its content (`{actual}`)")]
    Integrity { recorded: String, actual: String },
    #[error("it has no steps")]
    NoSteps,
    #[error("`{field}` is {value}, outside {range}")]
    OutOfRange {
        field: String,
        value: String,
        range: String,
    },
    #[error("two steps are called `{0}`")]
    DuplicateStep(String),
    #[error("step `{step}` starts at task {found}, but the steps before it end at {expected}")]
    FirstTask {
        step: String,
        found: u32,
        expected: u64,
    },
    #[error("step `{step}` has `task_count` {found}, but its fan-out makes {expected}")]
    StepTasks {
        step: String,
        found: u32,
        expected: u64,
    },
    #[error("`task_count` is {found}, but the steps hold {expected} tasks")]
    TaskCount { found: u32, expected: u64 },
    #[error("step `{step}` has {found} actions for its {tasks} tasks")]
    Actions {
        step: String,
        found: usize,
        tasks: u32,
    },
    #[error("step `{step}` fans out over `{target}`, which is not a target of the plan")]
    UnknownTarget { step: String, target: String },
    #[error("step `{step}`: a {op} cannot fan out {fanout}")]
    Fanout {
        step: String,
        op: &'static str,
        fanout: &'static str,
    },
    #[error("item {index} of target `{target}` is not a {kind}, as the target is")]
    ItemKind {
        target: String,
        index: usize,
        kind: &'static str,
    },
    #[error("step `{step}` needs `{need}`, which is not a step of the plan")]
    UnknownNeed { step: String, need: String },
    #[error("steps need each other in a cycle: {}", .0.join(" -> "))]
    NeedsCycle(Vec<String>),
    #[error("step `{step}`: rollout stages {stages:?} do not rise to its {tasks} tasks")]
    Stages {
        step: String,
        stages: Vec<u32>,
        tasks: u32,
    },
}

/// Everything wrong with a plan file, in the order checked.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub struct Faults(pub Vec<Fault>);

impl fmt::Display for Faults {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const SHOWN: usize = 5;
        let shown: Vec<String> = self.0.iter().take(SHOWN).map(Fault::to_string).collect();
        f.write_str(&shown.join("; "))?;
        if self.0.len() > SHOWN {
            write!(f, "; and {} more", self.0.len() - SHOWN)?;
        }
        Ok(())
    }
}

impl Faults {
    /// Whether the file's content was changed after its hash was recorded.
    pub fn tampered(&self) -> bool {
        self.0.iter().any(|f| matches!(f, Fault::Integrity { .. }))
    }
}

impl crate::base::Hint for Faults {
    fn hint(&self) -> Option<String> {
        Some(if self.tampered() {
            "the file was changed after esper-bulk wrote it; make the plan again (`esper-bulk plan JOB --out FILE`) and review it".into()
        } else {
            "the file was edited or damaged; make the plan again (`esper-bulk plan JOB --out FILE`)"
                .into()
        })
    }
}

/// Checks a plan read from a file. `recorded` is the file's `integrity` field, `None` for
/// files written before plans carried one (they get every other check).
pub fn verify(plan: &Plan, recorded: Option<&str>) -> Result<(), Faults> {
    let mut faults = Vec::new();
    if let Some(recorded) = recorded {
        let actual = integrity(plan);
        if actual != recorded {
            faults.push(Fault::Integrity {
                recorded: recorded.to_string(),
                actual,
            });
        }
    }
    settings(plan, &mut faults);
    steps(plan, &mut faults);
    needs(plan, &mut faults);
    if faults.is_empty() {
        Ok(())
    } else {
        Err(Faults(faults))
    }
}

fn out_of_range(field: &str, value: impl fmt::Display, range: impl fmt::Display) -> Fault {
    Fault::OutOfRange {
        field: field.to_string(),
        value: value.to_string(),
        range: range.to_string(),
    }
}

/// The job checker's ranges, applied to what the plan carries of the job's settings.
fn settings(plan: &Plan, faults: &mut Vec<Fault>) {
    let l = &plan.limits;
    if !(l.rate.is_finite() && RATE_RANGE.contains(&l.rate)) {
        let r = &RATE_RANGE;
        faults.push(out_of_range(
            "limits.rate",
            l.rate,
            format!("{}..={} per second", r.start(), r.end()),
        ));
    }
    let ints = |field: &str, v: u32, r: &std::ops::RangeInclusive<u32>| {
        (!r.contains(&v)).then(|| out_of_range(field, v, format!("{}..={}", r.start(), r.end())))
    };
    faults.extend(ints("limits.batch", l.batch, &IN_FLIGHT_RANGE));
    faults.extend(ints(
        "limits.max_in_flight",
        l.max_in_flight,
        &IN_FLIGHT_RANGE,
    ));
    // `batch` above `max_in_flight` and `initial_delay` above `max_delay` are not checked:
    // the job checker refuses them only when both are written, so a default on one side
    // compiles into such a plan, and the governor and the backoff clamp them.
    let r = &plan.retry;
    faults.extend(ints("retry.attempts", r.attempts, &ATTEMPTS_RANGE));
    let longest = format!("0..={} ms", MAX_DURATION.as_millis());
    for (field, d) in [
        ("retry.initial_delay", r.initial_delay),
        ("retry.max_delay", r.max_delay),
        ("retry.max_retry_after", r.max_retry_after),
    ] {
        if d > MAX_DURATION {
            faults.push(out_of_range(field, d.as_millis(), &longest));
        }
    }
    if let Some(d) = plan.deadline_ms
        && (d.is_zero() || d > MAX_DURATION)
    {
        faults.push(out_of_range(
            "deadline_ms",
            d.as_millis(),
            format!("1..={} ms", MAX_DURATION.as_millis()),
        ));
    }
    for (field, s) in [
        ("estimate.seconds", plan.estimate.seconds),
        ("estimate.max_seconds", plan.estimate.max_seconds),
    ] {
        if !(s.is_finite() && s >= 0.0) {
            faults.push(out_of_range(field, s, "0 and up"));
        }
    }
}

/// Targets, steps and their counts: what `Plan::task`, the scheduler and the reports index by.
fn steps(plan: &Plan, faults: &mut Vec<Fault>) {
    for (name, t) in &plan.targets {
        if let Some(index) = t.items.iter().position(|i| i.kind != t.kind) {
            faults.push(Fault::ItemKind {
                target: name.clone(),
                index,
                kind: kind_name(t.kind),
            });
        }
    }
    if plan.steps.is_empty() {
        faults.push(Fault::NoSteps);
    }
    let mut seen = BTreeSet::new();
    let mut next: u64 = 0;
    for s in &plan.steps {
        if !seen.insert(s.id.as_str()) {
            faults.push(Fault::DuplicateStep(s.id.clone()));
        }
        if u64::from(s.first_task) != next {
            faults.push(Fault::FirstTask {
                step: s.id.clone(),
                found: s.first_task,
                expected: next,
            });
        }
        next += u64::from(s.task_count);
        let op = op_name(&s.op);
        let fanout_fault = |fanout: &'static str| Fault::Fanout {
            step: s.id.clone(),
            op,
            fanout,
        };
        let (target, size) = match &s.fanout {
            Fanout::Single => (None, None),
            Fanout::PerItem { target } => (Some(target), None),
            Fanout::Chunks { target, size } => (Some(target), Some(*size)),
        };
        let fits = match (&s.op, &s.fanout) {
            (OpTemplate::Command { .. }, Fanout::Chunks { .. }) => true,
            (OpTemplate::GroupMove { .. }, Fanout::Chunks { .. }) => true,
            (OpTemplate::AlarmRule { .. } | OpTemplate::Request { .. }, f) => {
                !matches!(f, Fanout::Chunks { .. })
            }
            (
                OpTemplate::AppUpload { .. }
                | OpTemplate::ContentUpload { .. }
                | OpTemplate::Export(_),
                f,
            ) => matches!(f, Fanout::Single),
            _ => false,
        };
        if !fits {
            faults.push(fanout_fault(fanout_name(&s.fanout)));
        }
        let max_chunk = match &s.op {
            OpTemplate::GroupMove { .. } => MAX_DEVICES_PER_MOVE,
            _ => MAX_DEVICES_PER_COMMAND,
        };
        if let Some(size) = size
            && !(1..=max_chunk).contains(&size)
        {
            faults.push(out_of_range(
                &format!("steps.{}.fanout.size", s.id),
                size,
                format!("1..={max_chunk}"),
            ));
        }
        let expected = match target {
            None => Some(1),
            Some(name) => match plan.targets.get(name) {
                None => {
                    faults.push(Fault::UnknownTarget {
                        step: s.id.clone(),
                        target: name.clone(),
                    });
                    None
                }
                Some(t) => {
                    if matches!(s.op, OpTemplate::GroupMove { .. }) && t.kind != ItemKind::Device {
                        faults.push(fanout_fault("over groups"));
                    }
                    let n = t.items.len() as u64;
                    match size {
                        Some(size) if t.kind == ItemKind::Device => {
                            Some(n.div_ceil(u64::from(size.max(1))))
                        }
                        _ => Some(n),
                    }
                }
            },
        };
        if let Some(expected) = expected
            && u64::from(s.task_count) != expected
        {
            faults.push(Fault::StepTasks {
                step: s.id.clone(),
                found: s.task_count,
                expected,
            });
        }
        if let Some(a) = &s.actions
            && a.len() != s.task_count as usize
        {
            faults.push(Fault::Actions {
                step: s.id.clone(),
                found: a.len(),
                tasks: s.task_count,
            });
        }
        if let Some(r) = &s.rollout {
            rollout(
                s.id.as_str(),
                &r.stage_ends,
                r.max_failures,
                s.task_count,
                faults,
            );
        }
    }
    if u64::from(plan.task_count) != next {
        faults.push(Fault::TaskCount {
            found: plan.task_count,
            expected: next,
        });
    }
}

fn rollout(step: &str, ends: &[u32], max_failures: Amount, tasks: u32, faults: &mut Vec<Fault>) {
    let rising = ends.windows(2).all(|w| w[0] < w[1]);
    let first_ok = ends.first().is_some_and(|f| *f > 0 || tasks == 0);
    if !(rising && first_ok && ends.last() == Some(&tasks)) {
        faults.push(Fault::Stages {
            step: step.to_string(),
            stages: ends.to_vec(),
            tasks,
        });
    }
    if let Amount::Percent(p) = max_failures
        && !(p.is_finite() && (0.0..=100.0).contains(&p))
    {
        faults.push(out_of_range(
            &format!("steps.{step}.rollout.max_failures"),
            format!("{p}%"),
            "0%..=100%",
        ));
    }
}

/// Every `needs` entry names a step, and the graph has no cycle (the scheduler would wait
/// forever). Iterative, so tens of thousands of chained steps cost linear time.
fn needs(plan: &Plan, faults: &mut Vec<Fault>) {
    let index: BTreeMap<&str, usize> = plan
        .steps
        .iter()
        .enumerate()
        .map(|(i, s)| (s.id.as_str(), i))
        .collect();
    let mut edges: Vec<Vec<usize>> = vec![Vec::new(); plan.steps.len()];
    for (i, s) in plan.steps.iter().enumerate() {
        for n in &s.needs {
            match index.get(n.as_str()) {
                Some(d) => edges[i].push(*d),
                None => faults.push(Fault::UnknownNeed {
                    step: s.id.clone(),
                    need: n.clone(),
                }),
            }
        }
    }
    // Depth-first with an explicit stack: 1 = on the path, 2 = done.
    let mut state = vec![0u8; edges.len()];
    for start in 0..edges.len() {
        if state[start] != 0 {
            continue;
        }
        let mut path: Vec<(usize, usize)> = vec![(start, 0)];
        state[start] = 1;
        while let Some((node, next)) = path.last_mut() {
            let node = *node;
            match edges[node].get(*next).copied() {
                Some(n) => {
                    *next += 1;
                    match state[n] {
                        0 => {
                            state[n] = 1;
                            path.push((n, 0));
                        }
                        1 => {
                            let from = path.iter().position(|(m, _)| *m == n).unwrap_or(0);
                            let mut cycle: Vec<String> = path[from..]
                                .iter()
                                .map(|(m, _)| plan.steps[*m].id.clone())
                                .collect();
                            cycle.push(plan.steps[n].id.clone());
                            faults.push(Fault::NeedsCycle(cycle));
                            return;
                        }
                        _ => {}
                    }
                }
                None => {
                    state[node] = 2;
                    path.pop();
                }
            }
        }
    }
}

fn kind_name(k: ItemKind) -> &'static str {
    match k {
        ItemKind::Group => "group",
        ItemKind::Device => "device",
    }
}

fn op_name(op: &OpTemplate) -> &'static str {
    match op {
        OpTemplate::Command { .. } => "command",
        OpTemplate::AlarmRule { .. } => "alarm rule",
        OpTemplate::GroupMove { .. } => "group move",
        OpTemplate::AppUpload { .. } => "app upload",
        OpTemplate::ContentUpload { .. } => "content upload",
        OpTemplate::Request { .. } => "request",
        OpTemplate::Export(_) => "export",
    }
}

fn fanout_name(f: &Fanout) -> &'static str {
    match f {
        Fanout::Single => "as a single task",
        Fanout::PerItem { .. } => "per item",
        Fanout::Chunks { .. } => "in chunks",
    }
}

#[cfg(test)]
mod tests;
