//! Table tests of the scheduler: each row is a plan shape, a script of finishes and the
//! transcript the scheduler must produce. One `check` drives them all, so a row reads as
//! the behaviour it pins down.
//!
//! Shape lines: `ID COUNT [over T | to T] [needs A,B] [all] [stages 1,2,4] [max N|N%]`,
//! plus `prior a0 b2` for successes of an earlier attempt (`~a1`: interrupted while its
//! command was followed). `over T` is one task per item of
//! `T`, `to T` one per group (or per 2 devices when `T` starts with `d`, a devices target).
//! Script: `+a0` / `-a0` finish a task (units 0/1 or 1/1), `+a0:1/4` with units, `stop`.
//! Transcript: one line per event, what it decided (`replay`, `skip`), handed out (`run`)
//! and stopped (`halt`), then `end:` with the tasks left undecided.

use std::collections::BTreeMap;

use super::*;
use crate::job::{Amount, Limits, RetrySettings};
use crate::plan::{
    Estimate, Fanout, FrozenTarget, Item, ItemKind, OpTemplate, PlanRollout, PlanStep, Server,
};

fn plan(shape: &str) -> (Plan, BTreeMap<u32, Outcome>) {
    let mut steps: Vec<PlanStep> = Vec::new();
    let mut targets: BTreeMap<String, FrozenTarget> = BTreeMap::new();
    let mut prior_names: Vec<String> = Vec::new();
    let mut first = 0;
    for line in shape.lines().map(str::trim).filter(|l| !l.is_empty()) {
        let mut w = line.split_whitespace();
        let id = w.next().unwrap().to_string();
        if id == "prior" {
            prior_names.extend(w.map(str::to_string));
            continue;
        }
        let count: u32 = w.next().unwrap().parse().unwrap();
        let mut step = PlanStep {
            id,
            kind: "request".into(),
            needs: Vec::new(),
            needs_all: false,
            resolved_needs: Vec::new(),
            first_task: first,
            task_count: count,
            fanout: Fanout::Single,
            op: OpTemplate::Request {
                method: "GET".into(),
                path: "/x/".into(),
                query: BTreeMap::new(),
                body: None,
            },
            rollout: None,
            actions: None,
        };
        while let Some(word) = w.next() {
            let mut arg = || w.next().unwrap().to_string();
            match word {
                "over" | "to" => {
                    let target = arg();
                    let devices = target.starts_with('d');
                    let (kind, items) = match (devices, word) {
                        (true, "to") => (ItemKind::Device, count * 2),
                        (true, _) => (ItemKind::Device, count),
                        (false, _) => (ItemKind::Group, count),
                    };
                    let t = targets.entry(target.clone()).or_insert(FrozenTarget {
                        kind,
                        items: Vec::new(),
                    });
                    while (t.items.len() as u32) < items {
                        let k = t.items.len();
                        t.items.push(Item {
                            kind,
                            id: format!("{target}-{k}"),
                            name: format!("{target}-{k}"),
                            detail: (!devices).then(|| format!("{target}/{k}")),
                        });
                    }
                    step.fanout = if word == "over" {
                        Fanout::PerItem { target }
                    } else {
                        Fanout::Chunks { target, size: 2 }
                    };
                }
                "needs" => step.needs = arg().split(',').map(str::to_string).collect(),
                "all" => step.needs_all = true,
                "stages" => {
                    let stage_ends = arg().split(',').map(|n| n.parse().unwrap()).collect();
                    step.rollout = Some(PlanRollout {
                        stage_ends,
                        max_failures: Amount::Count(0),
                    });
                }
                "max" => {
                    let m = arg();
                    let amount = match m.strip_suffix('%') {
                        Some(p) => Amount::Percent(p.parse().unwrap()),
                        None => Amount::Count(m.parse().unwrap()),
                    };
                    step.rollout
                        .as_mut()
                        .expect("stages before max")
                        .max_failures = amount;
                }
                other => panic!("unknown shape word `{other}` in `{line}`"),
            }
        }
        first += count;
        steps.push(step);
    }
    let mut plan = Plan {
        format: crate::plan::PLAN_FORMAT,
        job: "t".into(),
        description: None,
        source: "t.yaml".into(),
        server: Server {
            base_url: "http://127.0.0.1:1/api".into(),
            enterprise_id: "e".into(),
        },
        limits: Limits::default(),
        retry: RetrySettings::default(),
        deadline_ms: None,
        vars: BTreeMap::new(),
        targets,
        steps,
        task_count: first,
        estimate: Estimate {
            requests: BTreeMap::new(),
            total_requests: 0,
            seconds: 0.0,
            max_seconds: 0.0,
        },
        snapshot_at: None,
        limit: Vec::new(),
        notify: Vec::new(),
        device_groups: BTreeMap::new(),
    };
    plan.link();
    let prior = prior_names
        .iter()
        .map(|n| match n.strip_prefix('~') {
            Some(n) => {
                let t = task_of(&plan, n);
                (t.0, interrupted(t))
            }
            None => {
                let t = task_of(&plan, n);
                (t.0, success(t))
            }
        })
        .collect();
    (plan, prior)
}

fn interrupted(task: TaskId) -> Outcome {
    Outcome {
        status: TaskStatus::Interrupted,
        reason: Some(Reason::Interrupted {
            command: format!("c{}", task.0),
            stopped: None,
        }),
        ..success(task)
    }
}

fn success(task: TaskId) -> Outcome {
    Outcome {
        task,
        status: TaskStatus::Succeeded,
        attempts: Vec::new(),
        reason: None,
        result: None,
        followed: None,
        started_ms: 0,
        finished_ms: 0,
    }
}

/// `b2` → the third task of step `b`.
fn task_of(plan: &Plan, name: &str) -> TaskId {
    let at = name.find(|c: char| c.is_ascii_digit()).unwrap();
    let (id, k) = name.split_at(at);
    let step = plan.steps.iter().find(|s| s.id == id).unwrap();
    let k: u32 = k.parse().unwrap();
    assert!(k < step.task_count, "{name} is past the end of {id}");
    TaskId(step.first_task + k)
}

fn name_of(plan: &Plan, t: TaskId) -> String {
    let step = plan.step_of(t);
    format!("{}{}", step.id, t.0 - step.first_task)
}

fn reason(r: &Reason) -> String {
    match r {
        Reason::NeedsFailed(short) => {
            let list: Vec<String> = short
                .iter()
                .map(|s| match &s.item {
                    Some(item) => format!("{}[{item}]", s.step),
                    None => format!("{}:{}", s.step, s.not_succeeded),
                })
                .collect();
            format!("needs({})", list.join(","))
        }
        Reason::RolloutStopped(s) => format!("rollout({} after {})", s.step, s.stage),
        other => format!("{other:?}"),
    }
}

/// Drains what the scheduler decided and handed out since the last event.
fn actions(plan: &Plan, s: &mut Scheduler, halts_seen: &mut usize) -> String {
    let mut out: Vec<String> = Vec::new();
    for d in s.take_decided() {
        out.push(match d {
            Decision::Skipped { task, reason: r } => {
                format!("skip {} {}", name_of(plan, task), reason(&r))
            }
            Decision::Replayed(o) => format!("replay {}", name_of(plan, o.task)),
        });
    }
    let mut run = Vec::new();
    while let Some(t) = s.pop_ready() {
        run.push(name_of(plan, t));
    }
    if !run.is_empty() {
        out.push(format!("run {}", run.join(" ")));
    }
    for h in &s.rollout_stops()[*halts_seen..] {
        out.push(format!(
            "halt {} at {}/{}: {} > {} of {}",
            h.step, h.stage, h.stages, h.failed, h.allowed, h.total
        ));
    }
    *halts_seen = s.rollout_stops().len();
    out.join(", ")
}

fn check(shape: &str, script: &str, expect: &str) {
    let (plan, prior) = plan(shape);
    let mut s = Scheduler::new(&plan, prior);
    let mut halts = 0;
    let mut got = format!("start: {}\n", actions(&plan, &mut s, &mut halts));
    for ev in script.split_whitespace() {
        if ev == "stop" {
            s.stop();
        } else {
            let (ok, rest) = (ev.starts_with('+'), &ev[1..]);
            let (name, units) = rest.split_once(':').unwrap_or((rest, ""));
            let (failed_units, total_units) = match units.split_once('/') {
                Some((f, t)) => (f.parse().unwrap(), t.parse().unwrap()),
                None => (u64::from(!ok), 1),
            };
            let f = Finish {
                succeeded: ok,
                failed_units,
                total_units,
            };
            s.finished(task_of(&plan, name), f);
        }
        got += &format!("{ev}: {}\n", actions(&plan, &mut s, &mut halts));
    }
    let open: Vec<String> = (0..plan.task_count)
        .filter(|&t| !matches!(s.tasks[t as usize], TaskState::Done { .. }))
        .map(|t| name_of(&plan, TaskId(t)))
        .collect();
    got += &format!("end: {}\n", open.join(" "));
    let want: String = expect
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(|l| format!("{l}\n"))
        .collect();
    let got: String = got.lines().map(|l| format!("{}\n", l.trim_end())).collect();
    assert_eq!(got, want, "\n--- got\n{got}--- want\n{want}");
}

#[test]
fn steps_without_needs_start_at_once_in_plan_order() {
    check(
        "a 2
         b 1",
        "+b0 +a1 +a0",
        "start: run a0 a1 b0
         +b0:
         +a1:
         +a0:
         end:",
    );
}

#[test]
fn a_step_waits_for_the_whole_of_what_it_needs() {
    check(
        "a 2
         b 1 needs a
         c 2 needs b",
        "+a0 +a1 +b0 +c0 +c1",
        "start: run a0 a1
         +a0:
         +a1: run b0
         +b0: run c0 c1
         +c0:
         +c1:
         end:",
    );
}

#[test]
fn a_failed_need_skips_the_step_and_what_needs_it() {
    check(
        "a 2
         b 2 needs a
         c 1 needs b
         d 1",
        "-a0 +a1 +d0",
        "start: run a0 a1 d0
         -a0:
         +a1: skip b0 needs(a:1), skip b1 needs(a:1), skip c0 needs(b:2)
         +d0:
         end:",
    );
}

#[test]
fn every_failed_need_is_named() {
    check(
        "a 1
         b 2
         c 1 needs a,b",
        "-a0 -b0 +b1",
        "start: run a0 b0 b1
         -a0:
         -b0:
         +b1: skip c0 needs(a:1,b:1)
         end:",
    );
}

#[test]
fn empty_steps_are_done_at_once_and_unlock_their_dependents() {
    check(
        "a 0
         b 1 needs a
         c 0 needs b
         d 1 needs c",
        "+b0 +d0",
        "start: run b0
         +b0: run d0
         +d0:
         end:",
    );
}

#[test]
fn a_rollout_opens_stage_by_stage() {
    check(
        "r 5 stages 1,3,5 max 1",
        "+r0 -r1 +r2 +r3 +r4",
        "start: run r0
         +r0: run r1 r2
         -r1:
         +r2: run r3 r4
         +r3:
         +r4:
         end:",
    );
}

#[test]
fn a_rollout_stops_when_failures_pass_its_threshold() {
    check(
        "r 5 stages 1,3,5 max 1
         s 1 needs r",
        "+r0 -r1 -r2",
        "start: run r0
         +r0: run r1 r2
         -r1:
         -r2: skip r3 rollout(r after 2), skip r4 rollout(r after 2), skip s0 needs(r:4), halt r at 2/3: 2 > 1 of 3
         end:",
    );
}

#[test]
fn the_threshold_is_checked_after_the_last_stage_too() {
    check(
        "r 2 stages 1,2",
        "+r0 -r1",
        "start: run r0
         +r0: run r1
         -r1: halt r at 2/2: 1 > 0 of 2
         end:",
    );
}

#[test]
fn units_are_devices_when_a_finish_reports_them() {
    // 3 of 40 devices is within 10% (4); 8 of 80 is exactly 10%, still allowed; 10 of 82
    // is past it (9), though only one of the three tasks failed less than all its devices.
    check(
        "r 4 to g stages 1,2,3,4 max 10%",
        "+r0:3/40 -r1:5/40 -r2:2/2",
        "start: run r0
         +r0:3/40: run r1
         -r1:5/40: run r2
         -r2:2/2: skip r3 rollout(r after 3), halt r at 3/4: 10 > 9 of 82
         end:",
    );
}

#[test]
fn per_item_needs_wait_for_the_same_item_only() {
    check(
        "a 3 to g
         b 3 over g needs a",
        "+a1 -a0 +a2 +b1 +b2",
        "start: run a0 a1 a2
         +a1: run b1
         -a0: skip b0 needs(a[g/0])
         +a2: run b2
         +b1:
         +b2:
         end:",
    );
}

#[test]
fn per_item_failures_carry_down_a_chain() {
    check(
        "a 2 over g
         b 2 to g needs a
         c 2 over g needs b
         d 1 needs c",
        "-a0 +a1 +b1 +c1",
        "start: run a0 a1
         -a0: skip b0 needs(a[g/0]), skip c0 needs(b[g/0])
         +a1: run b1
         +b1: run c1
         +c1: skip d0 needs(c:1)
         end:",
    );
}

#[test]
fn needs_all_keeps_the_whole_step_gate_over_the_same_target() {
    check(
        "a 3 to g
         b 3 over g needs a all",
        "+a1 -a0 +a2",
        "start: run a0 a1 a2
         +a1:
         -a0:
         +a2: skip b0 needs(a:1), skip b1 needs(a:1), skip b2 needs(a:1)
         end:",
    );
}

#[test]
fn other_targets_single_tasks_and_device_chunks_gate_the_whole_step() {
    // Different targets; a single task; chunks of a devices target (a chunk is no item).
    check(
        "a 2 over g
         b 2 over h needs a
         c 1
         e 2 over g needs c
         d 2 to dev
         f 2 to dev needs d",
        "+a0 +c0 +d0 -a1 +e0 +e1 -d1",
        "start: run a0 a1 c0 d0 d1
         +a0:
         +c0: run e0 e1
         +d0:
         -a1: skip b0 needs(a:1), skip b1 needs(a:1)
         +e0:
         +e1:
         -d1: skip f0 needs(d:1), skip f1 needs(d:1)
         end:",
    );
}

#[test]
fn per_item_and_whole_needs_combine() {
    // `c` waits for all of `b`, then item by item for `a`.
    check(
        "a 2 over g
         b 1
         c 2 over g needs a,b",
        "-a0 +a1 +b0 +c1",
        "start: run a0 a1 b0
         -a0:
         +a1:
         +b0: skip c0 needs(a[g/0]), run c1
         +c1:
         end:",
    );
}

#[test]
fn a_rollout_applies_within_per_item_needs() {
    // A stage opens before its items are ready, and its tasks then wait item by item. A
    // skip is no failure of `b`'s own, so it does not count against `b`'s threshold.
    check(
        "a 3 over g
         b 3 over g needs a stages 1,3 max 0",
        "-a0 +a1 +a2 +b1 +b2",
        "start: run a0 a1 a2
         -a0: skip b0 needs(a[g/0])
         +a1: run b1
         +a2: run b2
         +b1:
         +b2:
         end:",
    );
    check(
        "a 3 over g
         b 3 over g needs a stages 1,3 max 0",
        "+a1 +a2 +a0 -b0",
        "start: run a0 a1 a2
         +a1:
         +a2:
         +a0: run b0
         -b0: skip b1 rollout(b after 1), skip b2 rollout(b after 1), halt b at 1/2: 1 > 0 of 1
         end:",
    );
}

#[test]
fn a_stopped_rollout_skips_the_remaining_items_of_per_item_dependents() {
    check(
        "a 3 over g stages 1,3
         b 3 over g needs a",
        "-a0",
        "start: run a0
         -a0: skip a1 rollout(a after 1), skip a2 rollout(a after 1), skip b0 needs(a[g/0]), skip b1 needs(a[g/1]), skip b2 needs(a[g/2]), halt a at 1/2: 1 > 0 of 1
         end:",
    );
}

#[test]
fn prior_successes_are_replayed_when_their_task_would_start() {
    check(
        "a 2
         b 2 needs a
         prior a0 b1",
        "+a1 +b0",
        "start: replay a0, run a1
         +a1: replay b1, run b0
         +b0:
         end:",
    );
}

#[test]
fn a_prior_success_in_a_later_stage_waits_for_its_stage() {
    check(
        "r 4 stages 1,2,4
         prior r0 r2 r3",
        "+r1",
        "start: replay r0, run r1
         +r1: replay r2, replay r3
         end:",
    );
}

#[test]
fn replays_alone_can_complete_steps_and_unlock_per_item_work() {
    check(
        "a 2 over g stages 1,2
         b 2 over g needs a
         c 1 needs b
         prior a0 a1 b0",
        "+b1 +c0",
        "start: replay a0, replay b0, replay a1, run b1
         +b1: run c0
         +c0:
         end:",
    );
}

#[test]
fn after_a_stop_nothing_is_handed_out_or_decided() {
    check(
        "a 2
         b 1 needs a
         c 2 stages 1,2",
        "+c0 stop -a0 +a1",
        "start: run a0 a1 c0
         +c0: run c1
         stop:
         -a0:
         +a1:
         end: b0 c1",
    );
}

#[test]
fn finishes_of_tasks_not_handed_out_are_ignored() {
    check(
        "a 1
         b 1 needs a",
        "+b0 +a0 +a0",
        "start: run a0
         +b0:
         +a0: run b0
         +a0:
         end: b0",
    );
}

#[test]
fn finish_units_are_devices_of_a_followed_command_else_the_task() {
    use crate::exec::{DeviceCounts, Followed};
    let (plan, _) = plan("a 1");
    let mut o = success(TaskId(0));
    assert_eq!(
        Finish::of(&o, &plan),
        Finish {
            succeeded: true,
            failed_units: 0,
            total_units: 1
        }
    );
    o.status = TaskStatus::Failed;
    o.followed = Some(Followed {
        command: "c".into(),
        finished: true,
        counts: Some(DeviceCounts {
            succeeded: 5,
            failed: 2,
            timed_out: 1,
            cancelled: 0,
            pending: 2,
        }),
        devices: Vec::new(),
        install: None,
    });
    assert_eq!(
        Finish::of(&o, &plan),
        Finish {
            succeeded: false,
            failed_units: 3,
            total_units: 10
        },
        "pending devices count in the total, not as failures"
    );
    o.followed.as_mut().unwrap().counts = Some(DeviceCounts::default());
    assert_eq!(
        Finish::of(&o, &plan),
        Finish {
            succeeded: false,
            failed_units: 1,
            total_units: 1
        },
        "a command that reached no device counts as its task"
    );
}

#[test]
fn plan_files_link_their_needs_when_loaded() {
    let (plan, _) = plan(
        "a 2 to g
         b 2 over g needs a
         c 2 over g needs a,b all",
    );
    let text = serde_json::to_string(&plan).unwrap();
    assert!(!text.contains("resolved_needs"), "indices are not written");
    let loaded: Plan = serde_json::from_str(&text).unwrap();
    assert_eq!(loaded, plan);
    assert_eq!(
        loaded.steps[2].resolved_needs,
        [
            Need {
                step: 0,
                per_item: false
            },
            Need {
                step: 1,
                per_item: false
            }
        ]
    );
    assert_eq!(
        loaded.steps[1].resolved_needs,
        [Need {
            step: 0,
            per_item: true
        }]
    );
}

#[test]
fn an_interrupted_prior_is_handed_out_again_not_replayed() {
    check(
        "a 2
         b 2 needs a
         prior a0 ~a1",
        "+a1 +b0 +b1",
        "start: replay a0, run a1
         +a1: run b0 b1
         +b0:
         +b1:
         end:",
    );
}

#[test]
fn an_interrupted_prior_past_a_rollout_stop_is_replayed_not_skipped() {
    check(
        "r 3 stages 1,3
         prior ~r2",
        "-r0",
        "start: run r0
         -r0: skip r1 rollout(r after 1), replay r2, halt r at 1/2: 1 > 0 of 1
         end:",
    );
}
