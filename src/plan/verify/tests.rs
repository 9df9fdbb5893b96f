//! Unit tests of plan verification: a compiled-shaped plan passes, and each kind of edit
//! that would panic, hang or mislead the executor is named.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::json;

use super::*;
use crate::job::{Limits, OnExists, RetrySettings};
use crate::plan::{Estimate, FrozenTarget, Item, PlanRollout, PlanStep, Server};

fn items(kind: ItemKind, n: usize) -> Vec<Item> {
    (0..n)
        .map(|i| Item {
            kind,
            id: format!("id-{i}"),
            name: format!("n{i}"),
            detail: None,
        })
        .collect()
}

fn step(id: &str, first: u32, count: u32, fanout: Fanout, op: OpTemplate) -> PlanStep {
    PlanStep {
        id: id.into(),
        kind: "k".into(),
        needs: Vec::new(),
        needs_all: false,
        resolved_needs: Vec::new(),
        first_task: first,
        task_count: count,
        fanout,
        op,
        rollout: None,
        actions: None,
    }
}

/// Three groups and five devices: an alarm rule per group, a command in chunks of two
/// devices (3 tasks) after it, with a rollout, and one upload.
fn plan() -> Plan {
    let mut targets = BTreeMap::new();
    targets.insert(
        "g".to_string(),
        FrozenTarget {
            kind: ItemKind::Group,
            items: items(ItemKind::Group, 3),
        },
    );
    targets.insert(
        "d".to_string(),
        FrozenTarget {
            kind: ItemKind::Device,
            items: items(ItemKind::Device, 5),
        },
    );
    let alarm = step(
        "alarm",
        0,
        3,
        Fanout::PerItem { target: "g".into() },
        OpTemplate::AlarmRule {
            name: "r".into(),
            body: json!({}),
            on_exists: OnExists::Skip,
        },
    );
    let mut cmd = step(
        "cmd",
        3,
        3,
        Fanout::Chunks {
            target: "d".into(),
            size: 2,
        },
        serde_json::from_value(json!({"kind": "command", "command": "REBOOT", "args": {}}))
            .unwrap(),
    );
    cmd.needs = vec!["alarm".into()];
    cmd.rollout = Some(PlanRollout {
        stage_ends: vec![1, 3],
        max_failures: Amount::Percent(10.0),
    });
    let upload = step(
        "upload",
        6,
        1,
        Fanout::Single,
        OpTemplate::ContentUpload { file: "f".into() },
    );
    let mut p = Plan {
        format: crate::plan::PLAN_FORMAT,
        job: "j".into(),
        description: None,
        source: "j.yaml".into(),
        server: Server {
            base_url: "http://127.0.0.1:1/api".into(),
            enterprise_id: "e".into(),
        },
        limits: Limits::default(),
        retry: RetrySettings::default(),
        deadline_ms: Some(Duration::from_secs(60)),
        vars: BTreeMap::new(),
        targets,
        steps: vec![alarm, cmd, upload],
        task_count: 7,
        estimate: Estimate {
            requests: BTreeMap::new(),
            total_requests: 0,
            seconds: 1.0,
            max_seconds: 0.0,
        },
        snapshot_at: None,
        limit: Vec::new(),
        notify: Vec::new(),
        device_groups: BTreeMap::new(),
    };
    p.link();
    p
}

fn faults(p: &Plan) -> Vec<Fault> {
    verify(p, None).err().map(|f| f.0).unwrap_or_default()
}

#[test]
fn a_consistent_plan_passes_with_or_without_its_hash() {
    let p = plan();
    assert_eq!(verify(&p, None), Ok(()));
    assert_eq!(verify(&p, Some(&integrity(&p))), Ok(()));
    // Every task of it materializes.
    assert!(p.task_ids().all(|t| p.task(t).is_some()));
}

#[test]
fn a_changed_plan_fails_its_recorded_hash() {
    let p = plan();
    let recorded = integrity(&p);
    let mut edited = p.clone();
    edited.targets.get_mut("g").unwrap().items[0].id = "someone-else".into();
    let err = verify(&edited, Some(&recorded)).unwrap_err();
    assert!(err.tampered());
    assert_eq!(err.0.len(), 1, "{err}");
    assert!(err.to_string().starts_with("its integrity hash `sha256:"));
}

#[test]
fn settings_get_the_job_checkers_ranges() {
    let mut p = plan();
    p.limits.rate = 0.0;
    p.limits.batch = 0;
    p.retry.attempts = 0;
    p.deadline_ms = Some(Duration::ZERO);
    p.retry.initial_delay = Duration::from_secs(120);
    let f = faults(&p);
    let fields: Vec<&str> = f
        .iter()
        .filter_map(|f| match f {
            Fault::OutOfRange { field, .. } => Some(field.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(
        fields,
        [
            "limits.rate",
            "limits.batch",
            "retry.attempts",
            "deadline_ms"
        ]
    );
    assert_eq!(
        Faults(f).0[0].to_string(),
        "`limits.rate` is 0, outside 0.01..=10000 per second"
    );
    // What the job checker lets through when only one side is written passes too: the
    // governor and the backoff clamp it.
    let mut p = plan();
    p.limits.batch = 200;
    p.retry.initial_delay = Duration::from_secs(120);
    assert_eq!(faults(&p), []);
}

#[test]
fn counts_must_agree_with_the_frozen_targets() {
    let mut p = plan();
    p.task_count = 8;
    assert_eq!(
        faults(&p),
        [Fault::TaskCount {
            found: 8,
            expected: 7
        }]
    );
    let mut p = plan();
    p.steps[0].task_count = 4;
    p.steps[1].first_task = 4;
    p.steps[2].first_task = 7;
    p.task_count = 8;
    assert_eq!(
        faults(&p),
        [Fault::StepTasks {
            step: "alarm".into(),
            found: 4,
            expected: 3
        }]
    );
    let mut p = plan();
    p.steps[1].first_task = 2;
    assert!(matches!(
        &faults(&p)[..],
        [Fault::FirstTask {
            found: 2,
            expected: 3,
            ..
        }]
    ));
    let mut p = plan();
    p.steps.clear();
    p.task_count = 0;
    assert_eq!(faults(&p), [Fault::NoSteps]);
    let mut p = plan();
    p.targets.get_mut("d").unwrap().items.pop();
    p.targets.get_mut("d").unwrap().items.pop();
    assert!(matches!(
        &faults(&p)[..],
        [Fault::StepTasks { expected: 2, .. }]
    ));
}

#[test]
fn fanouts_targets_and_items_must_fit() {
    let mut p = plan();
    p.steps[1].fanout = Fanout::Chunks {
        target: "d".into(),
        size: 0,
    };
    assert!(
        faults(&p).iter().any(
            |f| matches!(f, Fault::OutOfRange { field, .. } if field == "steps.cmd.fanout.size")
        )
    );
    let mut p = plan();
    p.steps[0].fanout = Fanout::PerItem {
        target: "nowhere".into(),
    };
    assert_eq!(
        faults(&p),
        [Fault::UnknownTarget {
            step: "alarm".into(),
            target: "nowhere".into()
        }]
    );
    let mut p = plan();
    p.steps[2].fanout = Fanout::PerItem { target: "g".into() };
    assert!(matches!(faults(&p)[0], Fault::Fanout { .. }));
    let mut p = plan();
    p.targets.get_mut("g").unwrap().items[1].kind = ItemKind::Device;
    assert!(matches!(
        &faults(&p)[..],
        [Fault::ItemKind { index: 1, .. }]
    ));
}

#[test]
fn needs_name_steps_without_cycles_and_stages_rise_to_the_step() {
    let mut p = plan();
    p.steps[0].needs = vec!["cmd".into()];
    p.link();
    assert_eq!(
        faults(&p),
        [Fault::NeedsCycle(vec![
            "alarm".into(),
            "cmd".into(),
            "alarm".into()
        ])]
    );
    let mut p = plan();
    p.steps[1].needs = vec!["ghost".into()];
    assert!(matches!(&faults(&p)[..], [Fault::UnknownNeed { .. }]));
    let mut p = plan();
    p.steps[2].id = "alarm".into();
    assert!(faults(&p).contains(&Fault::DuplicateStep("alarm".into())));
    for bad in [vec![], vec![0, 3], vec![2, 1, 3], vec![1, 4]] {
        let mut p = plan();
        p.steps[1].rollout.as_mut().unwrap().stage_ends = bad.clone();
        assert!(
            matches!(&faults(&p)[..], [Fault::Stages { .. }]),
            "{bad:?}: {:?}",
            faults(&p)
        );
    }
    let mut p = plan();
    p.steps[1].rollout.as_mut().unwrap().max_failures = Amount::Percent(150.0);
    assert!(matches!(&faults(&p)[..], [Fault::OutOfRange { .. }]));
}

#[test]
fn many_faults_are_listed_five_at_a_time() {
    let mut p = plan();
    p.limits.rate = -1.0;
    p.limits.max_in_flight = 0;
    p.retry.attempts = 1000;
    p.task_count = 1;
    p.estimate.seconds = -1.0;
    p.steps[1].needs = vec!["x".into(), "y".into()];
    let err = verify(&p, None).unwrap_err();
    assert!(err.0.len() > 5);
    assert!(
        err.to_string()
            .ends_with(&format!("and {} more", err.0.len() - 5))
    );
}
