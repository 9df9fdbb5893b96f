//! Compiling a validated job and its resolved targets into the frozen task graph.
//!
//! Pure and deterministic: tasks are numbered in file order (step by step, item by item in
//! listing order), templates are rendered here so nothing is first discovered at run time,
//! and the request estimate is computed from the tasks themselves.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use super::resolve::Resolved;
use super::{
    Estimate, Item, ItemKind, Operation, PLAN_FORMAT, Plan, PlanError, PlanStep, Server, Task,
    TaskId,
};
use crate::job::{Job, StepOp, VersionRef, template};

/// Esper accepts at most 500 groups and (now) 1000 devices per command request; 500 is
/// safe on every generation of the endpoint.
pub const MAX_DEVICES_PER_COMMAND: usize = 500;

/// Builds the plan. `server` is where the targets were resolved.
pub fn compile(job: &Job, resolved: &Resolved, server: Server) -> Result<Plan, PlanError> {
    let mut tasks: Vec<Task> = Vec::new();
    let mut steps = Vec::new();
    for step in &job.steps {
        let first = tasks.len();
        let push = |item: Option<Item>, op: Operation, tasks: &mut Vec<Task>| {
            let id = TaskId(tasks.len() as u32);
            tasks.push(Task {
                id,
                step: step.id.clone(),
                item,
                op,
            });
        };
        let items: Vec<Option<Item>> = match &step.for_each {
            Some(t) => resolved
                .targets
                .get(t)
                .map(|t| t.items.iter().cloned().map(Some).collect())
                .unwrap_or_default(),
            None => vec![None],
        };
        let terr = |message: String| PlanError::Template {
            step: step.id.clone(),
            message,
        };
        for item in items {
            let lookup = |r: &[String]| lookup(job, item.as_ref(), r);
            match &step.op {
                StepOp::AppInstall { to, version, wait } => {
                    let version_id = match version {
                        VersionRef::Id(v) => template::render_str(v, &lookup).map_err(terr)?,
                        VersionRef::Package {
                            package,
                            version_code,
                        } => Value::String(
                            resolved
                                .versions
                                .get(&(package.clone(), version_code.clone()))
                                .cloned()
                                .unwrap_or_default(),
                        ),
                    };
                    let args = json!({ "app_version": version_id });
                    for (it, body) in command_bodies(resolved, to, item.as_ref(), "INSTALL", &args)
                    {
                        push(
                            it,
                            Operation::Command {
                                body,
                                wait_ms: *wait,
                            },
                            &mut tasks,
                        );
                    }
                }
                StepOp::Command {
                    to,
                    name,
                    args,
                    wait,
                } => {
                    let args = template::render_value(args, &lookup).map_err(terr)?;
                    for (it, body) in command_bodies(resolved, to, item.as_ref(), name, &args) {
                        push(
                            it,
                            Operation::Command {
                                body,
                                wait_ms: *wait,
                            },
                            &mut tasks,
                        );
                    }
                }
                StepOp::AlarmRule {
                    name,
                    body,
                    on_exists,
                } => {
                    let mut body = template::render_value(body, &lookup).map_err(terr)?;
                    let name = template::render_str(name, &lookup)
                        .map_err(terr)?
                        .as_str()
                        .unwrap_or_default()
                        .to_string();
                    if let Value::Object(map) = &mut body {
                        map.insert(
                            "enterprise".into(),
                            Value::String(server.enterprise_id.clone()),
                        );
                    }
                    push(
                        item.clone(),
                        Operation::AlarmRule {
                            name,
                            body,
                            on_exists: *on_exists,
                        },
                        &mut tasks,
                    );
                }
            }
        }
        steps.push(PlanStep {
            id: step.id.clone(),
            kind: step.op.kind().to_string(),
            needs: step.needs.clone(),
            tasks: (first..tasks.len()).map(|i| TaskId(i as u32)).collect(),
        });
    }
    let estimate = estimate(&tasks, job.limits.rate);
    Ok(Plan {
        format: PLAN_FORMAT,
        job: job.name.clone(),
        description: job.description.clone(),
        source: job.source.clone(),
        server,
        limits: job.limits.clone(),
        retry: job.retry.clone(),
        deadline_ms: job.deadline,
        targets: resolved.targets.clone(),
        steps,
        tasks,
        estimate,
    })
}

/// One command body per group (the API's GROUP request), or per chunk of devices.
fn command_bodies(
    resolved: &Resolved,
    to: &str,
    for_item: Option<&Item>,
    command: &str,
    args: &Value,
) -> Vec<(Option<Item>, Value)> {
    let Some(target) = resolved.targets.get(to) else {
        return Vec::new();
    };
    let body = |kind: &str, key: &str, ids: Vec<&str>| {
        json!({
            "command_type": kind,
            key: ids,
            "device_type": "all",
            "command": command,
            "command_args": args,
            "schedule": "IMMEDIATE",
        })
    };
    match target.kind {
        ItemKind::Group => target
            .items
            .iter()
            .map(|g| {
                (
                    Some(g.clone()),
                    body("GROUP", "groups", vec![g.id.as_str()]),
                )
            })
            .collect(),
        ItemKind::Device => target
            .items
            .chunks(MAX_DEVICES_PER_COMMAND)
            .map(|chunk| {
                let label = match chunk {
                    [one] => Some(one.clone()),
                    _ => for_item.cloned().or_else(|| {
                        Some(Item {
                            kind: ItemKind::Device,
                            id: chunk[0].id.clone(),
                            name: format!("{} devices from {}", chunk.len(), chunk[0].name),
                            detail: None,
                        })
                    }),
                };
                (
                    label,
                    body(
                        "DEVICE",
                        "devices",
                        chunk.iter().map(|d| d.id.as_str()).collect(),
                    ),
                )
            })
            .collect(),
    }
}

fn lookup(job: &Job, item: Option<&Item>, r: &[String]) -> Option<Value> {
    match (r.first().map(String::as_str), r.get(1).map(String::as_str)) {
        (Some("vars"), Some(k)) => job.vars.get(k).cloned(),
        (Some("item"), Some(field)) => {
            let item = item?;
            match field {
                "id" => Some(Value::String(item.id.clone())),
                "name" => Some(Value::String(item.name.clone())),
                "path" | "serial" => item.detail.clone().map(Value::String),
                "alias" => Some(Value::String(item.name.clone())),
                _ => None,
            }
        }
        _ => None,
    }
}

fn estimate(tasks: &[Task], rate: f64) -> Estimate {
    let mut requests: BTreeMap<String, u64> = BTreeMap::new();
    for t in tasks {
        for (route, n) in t.op.expected_requests() {
            *requests.entry(route.to_string()).or_default() += n;
        }
    }
    let total_requests = requests.values().sum();
    Estimate {
        requests,
        total_requests,
        seconds: total_requests as f64 / rate,
    }
}
