//! The plan as a diff against the tenant's live state, like `terraform plan` for a fleet:
//! every write task gets an [`Action`] — `create`, `update` (with the field-level changes
//! of the fields the job manages), `unchanged`, `skip` (exists, `on_exists: skip`),
//! `conflict` (exists, `on_exists: fail`), or `send` (commands, moves, raw requests and
//! uploads, which the run decides or always sends).
//!
//! Pure: the live state comes in as [`LiveRule`]s, read in bulk (one paged listing) by the
//! inventory at plan time and normalized there (ids for the expanded `groups`, `devices`
//! and `alert_channels` objects of a read). The comparison of a rule with what the job would
//! write ([`rule_changes`]) is also what a read-back after an ambiguous failure uses, so the
//! plan and the run never disagree on "differs". Sending is the executor's; what the run
//! does with an action (a known-absent rule is created without a read) is the Esper
//! adapter's.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::{OpTemplate, Operation, Plan, TaskId};
use crate::job::OnExists;

/// An alarm rule as it is in the tenant: its id, exact name and fields, with expanded
/// objects reduced to their ids.
#[derive(Debug, Clone, PartialEq)]
pub struct LiveRule {
    pub id: String,
    pub name: String,
    pub fields: Map<String, Value>,
}

/// One managed field that would change: what the tenant has, what the job writes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FieldChange {
    pub field: String,
    pub old: Value,
    pub new: Value,
}

/// What a task would do to the tenant, decided from the plan's snapshot.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum Action {
    /// Nothing with this natural key exists: created without a read.
    Create,
    /// It exists and differs in `changes`: a `PATCH` of the managed fields.
    Update {
        id: String,
        changes: Vec<FieldChange>,
    },
    /// It exists as the job describes it: nothing is sent.
    Unchanged { id: String },
    /// It exists and `on_exists: skip` leaves it.
    Skip { id: String },
    /// It exists and `on_exists: fail` fails the task.
    Conflict { id: String },
    /// Always written (commands, moves, raw requests), or decided when the run reads
    /// back (uploads; rules named by a step output).
    Send,
}

impl Action {
    /// The word the plan counts it under.
    pub fn kind(&self) -> &'static str {
        match self {
            Action::Create => "create",
            Action::Update { .. } => "update",
            Action::Unchanged { .. } => "unchanged",
            Action::Skip { .. } => "skip",
            Action::Conflict { .. } => "conflict",
            Action::Send => "send",
        }
    }

    /// Whether the task sends a write.
    pub fn writes(&self) -> bool {
        matches!(self, Action::Create | Action::Update { .. } | Action::Send)
    }
}

/// Tasks by action, as `plan --json` shows them in `changes`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Changes {
    pub create: u64,
    pub update: u64,
    pub unchanged: u64,
    pub skip: u64,
    pub conflict: u64,
    pub send: u64,
}

impl Changes {
    pub fn add(&mut self, a: &Action) {
        *match a {
            Action::Create => &mut self.create,
            Action::Update { .. } => &mut self.update,
            Action::Unchanged { .. } => &mut self.unchanged,
            Action::Skip { .. } => &mut self.skip,
            Action::Conflict { .. } => &mut self.conflict,
            Action::Send => &mut self.send,
        } += 1;
    }

    /// Tasks that send a write: what `plan --detailed-exitcode` reports as pending.
    pub fn writes(&self) -> u64 {
        self.create + self.update + self.send
    }
}

/// The managed fields (every field the job writes but `enterprise` and `name`) whose live
/// value differs; empty when the rule is as the job describes it.
pub fn rule_changes(body: &Value, live: &Map<String, Value>) -> Vec<FieldChange> {
    let Value::Object(want) = body else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for (k, v) in want
        .iter()
        .filter(|(k, _)| !matches!(k.as_str(), "enterprise" | "name"))
    {
        let have = live.get(k).unwrap_or(&Value::Null);
        if matches!(k.as_str(), "groups" | "devices" | "alert_channels") {
            let (old, new) = (id_set(have), id_set(v));
            if old != new {
                out.push(FieldChange {
                    field: k.clone(),
                    old: old.into(),
                    new: new.into(),
                });
            }
        } else {
            leaf_changes(k, v, have, &mut out);
        }
    }
    out
}

/// The changes of `want` against `have` at `path`, down to the leaves of objects, so an
/// update reads `conditions.value: 15 → 20` rather than two whole objects.
fn leaf_changes(path: &str, want: &Value, have: &Value, out: &mut Vec<FieldChange>) {
    match (want, have) {
        (Value::Object(w), Value::Object(h)) => {
            for (k, v) in w {
                leaf_changes(
                    &format!("{path}.{k}"),
                    v,
                    h.get(k).unwrap_or(&Value::Null),
                    out,
                );
            }
        }
        _ if subset_eq(want, have) => {}
        _ => out.push(FieldChange {
            field: path.to_string(),
            old: have.clone(),
            new: want.clone(),
        }),
    }
}

/// What a rule task does, given the live rule of its name (if any).
pub fn rule_action(body: &Value, on_exists: OnExists, live: Option<&LiveRule>) -> Action {
    let Some(rule) = live else {
        return Action::Create;
    };
    let id = rule.id.clone();
    match on_exists {
        OnExists::Skip => Action::Skip { id },
        OnExists::Fail => Action::Conflict { id },
        OnExists::Update => {
            let changes = rule_changes(body, &rule.fields);
            if changes.is_empty() {
                Action::Unchanged { id }
            } else {
                Action::Update { id, changes }
            }
        }
    }
}

/// Decides every alarm-rule task of `plan` against `rules` (the tenant's rules, listed in
/// bulk) and records the actions in their steps. Rules whose name waits for a step output
/// stay `send` (read back by name at run time). Names should be unique; when several rules
/// share one, the first listed is the one acted on, as at run time.
pub fn decide(plan: &mut Plan, rules: &[LiveRule]) {
    let mut by_name: BTreeMap<&str, &LiveRule> = BTreeMap::new();
    for r in rules {
        by_name.entry(r.name.as_str()).or_insert(r);
    }
    let mut decided: Vec<(usize, Vec<Action>)> = Vec::new();
    for (si, step) in plan.steps.iter().enumerate() {
        if !matches!(step.op, OpTemplate::AlarmRule { .. }) {
            continue;
        }
        let actions = step
            .tasks()
            .map(|id| {
                let op = plan.task(id).map(|t| t.op);
                match &op {
                    Some(
                        o @ Operation::AlarmRule {
                            name,
                            body,
                            on_exists,
                        },
                    ) if !o.needs_outputs() => {
                        rule_action(body, *on_exists, by_name.get(name.as_str()).copied())
                    }
                    _ => Action::Send,
                }
            })
            .collect();
        decided.push((si, actions));
    }
    for (si, actions) in decided {
        plan.steps[si].actions = Some(actions);
    }
}

/// Decides the `app_upload` tasks that name their package and version code from the
/// plan-time lookup of that version: `unchanged` when it exists (the run still reads it
/// back, for its ids), `create` when it does not (uploaded without a read first).
pub fn decide_uploads(plan: &mut Plan, found: &BTreeMap<(String, String), Option<String>>) {
    for step in &mut plan.steps {
        if let OpTemplate::AppUpload {
            package: Some(p),
            version_code: Some(c),
            ..
        } = &step.op
            && let Some(version) = found.get(&(p.clone(), c.clone()))
        {
            let a = match version {
                Some(id) => Action::Unchanged { id: id.clone() },
                None => Action::Create,
            };
            step.actions = Some(vec![a; step.task_count as usize]);
        }
    }
}

/// A content file as it is in the tenant: what a `content_upload` is matched against (its
/// file name and size; the content list's `search` never matches names).
#[derive(Debug, Clone, PartialEq)]
pub struct LiveContent {
    pub id: String,
    pub name: String,
    pub size: Option<u64>,
}

/// Decides the `content_upload` tasks against the tenant's content files: `unchanged`
/// when one has the file's name and size, `create` when none does. `size_of` gives a
/// local file's size (the caller reads the disk; the plan does not); a file it cannot
/// size stays `send`, decided when the run reads the list again.
pub fn decide_contents(
    plan: &mut Plan,
    contents: &[LiveContent],
    size_of: &dyn Fn(&str) -> Option<u64>,
) {
    for step in &mut plan.steps {
        let OpTemplate::ContentUpload { file } = &step.op else {
            continue;
        };
        let name = std::path::Path::new(file)
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| file.clone());
        let a = match size_of(file) {
            None => Action::Send,
            Some(size) => contents
                .iter()
                .find(|c| c.name == name && c.size == Some(size))
                .map_or(Action::Create, |c| Action::Unchanged { id: c.id.clone() }),
        };
        step.actions = Some(vec![a; step.task_count as usize]);
    }
}

/// Decides the `group_move` tasks against the groups their devices are in: `unchanged`
/// when every device of the chunk is in the destination already (nothing is sent),
/// else an `update` whose change counts the chunk's members of the group before and
/// after.
pub fn decide_moves(plan: &mut Plan, members: &BTreeMap<String, Vec<String>>) {
    let mut decided: Vec<(usize, Vec<Action>)> = Vec::new();
    for (si, step) in plan.steps.iter().enumerate() {
        if !matches!(step.op, OpTemplate::GroupMove { .. }) {
            continue;
        }
        let actions = step
            .tasks()
            .map(|id| match plan.task(id).map(|t| t.op) {
                Some(Operation::GroupMove {
                    group_id,
                    device_ids,
                }) => {
                    let known = device_ids.iter().all(|d| members.contains_key(d));
                    let inside = device_ids
                        .iter()
                        .filter(|d| members.get(*d).is_some_and(|g| g.contains(&group_id)))
                        .count();
                    if !known {
                        Action::Send
                    } else if inside == device_ids.len() {
                        Action::Unchanged { id: group_id }
                    } else {
                        Action::Update {
                            id: group_id,
                            changes: vec![FieldChange {
                                field: "members".into(),
                                old: inside.into(),
                                new: device_ids.len().into(),
                            }],
                        }
                    }
                }
                _ => Action::Send,
            })
            .collect();
        decided.push((si, actions));
    }
    for (si, actions) in decided {
        plan.steps[si].actions = Some(actions);
    }
}

/// The action of task `id`: as decided from the snapshot, or `send` where nothing was
/// decided (every write of a plan without a snapshot).
pub fn action_of(plan: &Plan, id: TaskId) -> Action {
    let step = plan.step_of(id);
    step.actions
        .as_ref()
        .and_then(|a| a.get((id.0 - step.first_task) as usize))
        .cloned()
        .unwrap_or(Action::Send)
}

/// Tasks by action over the whole plan, and per step id.
pub fn changes(plan: &Plan) -> (Changes, BTreeMap<String, Changes>) {
    let mut all = Changes::default();
    let mut per_step = BTreeMap::new();
    for step in &plan.steps {
        let mut c = Changes::default();
        match &step.actions {
            Some(actions) => actions.iter().for_each(|a| c.add(a)),
            // An export changes nothing on the tenant.
            None if matches!(step.op, OpTemplate::Export(_)) => {}
            None => c.send = u64::from(step.task_count),
        }
        all.create += c.create;
        all.update += c.update;
        all.unchanged += c.unchanged;
        all.skip += c.skip;
        all.conflict += c.conflict;
        all.send += c.send;
        per_step.insert(step.id.clone(), c);
    }
    (all, per_step)
}

/// Tasks whose action differs between `planned` and `now` (the same plan decided against
/// a fresh snapshot): `(task, planned, now)`, by kind of action.
pub fn drift(planned: &Plan, now: &Plan) -> Vec<(TaskId, &'static str, &'static str)> {
    planned
        .task_ids()
        .filter_map(|id| {
            let (a, b) = (action_of(planned, id), action_of(now, id));
            (a.kind() != b.kind()).then(|| (id, a.kind(), b.kind()))
        })
        .collect()
}

/// The ids in a list of ids or `{id, …}` objects, sorted.
fn id_set(v: &Value) -> Vec<String> {
    let mut ids: Vec<String> = v
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|x| match x {
                    Value::String(s) => Some(s.clone()),
                    Value::Number(n) => Some(n.to_string()),
                    Value::Object(o) => o.get("id").map(|i| {
                        i.as_str()
                            .map(str::to_string)
                            .unwrap_or_else(|| i.to_string())
                    }),
                    _ => None,
                })
                .collect()
        })
        .unwrap_or_default();
    ids.sort();
    ids
}

/// `want` is contained in `have`: objects key by key (extra keys in `have` are fine),
/// numbers by value (15 equals 15.0), everything else exactly.
fn subset_eq(want: &Value, have: &Value) -> bool {
    match (want, have) {
        (Value::Null, _) => true,
        (Value::Object(w), Value::Object(h)) => w
            .iter()
            .all(|(k, v)| subset_eq(v, h.get(k).unwrap_or(&Value::Null))),
        (Value::Number(a), Value::Number(b)) => a.as_f64() == b.as_f64(),
        (Value::Array(a), Value::Array(b)) => {
            a.len() == b.len() && a.iter().zip(b).all(|(x, y)| subset_eq(x, y))
        }
        (a, b) => a == b,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn live(fields: Value) -> LiveRule {
        LiveRule {
            id: "r1".into(),
            name: "n".into(),
            fields: fields.as_object().unwrap().clone(),
        }
    }

    #[test]
    fn rules_compare_on_every_managed_field_and_only_those() {
        let rule = live(json!({
            "metric": "battery_level",
            "conditions": {"value": 15.0, "unit": "Percent", "comparator": "LessThanThreshold", "toggle_state": false},
            "groups": [{"id": "g1", "name": "0001", "path": "All devices/Stores/North/0001"}],
            "alert_channels": [{"id": 12, "name": "ops"}],
            "realert_interval": 3600, "is_active": true, "action_emails": ["a@x"],
            "description": "set in the console"
        }));
        let body = json!({
            "enterprise": "e", "name": "n", "metric": "battery_level",
            "conditions": {"value": 15, "unit": "Percent", "comparator": "LessThanThreshold"},
            "groups": ["g1"], "alert_channels": [12], "realert_interval": 3600, "action_emails": ["a@x"]
        });
        assert_eq!(rule_changes(&body, &rule.fields), []);
        assert_eq!(
            rule_action(&body, OnExists::Update, Some(&rule)),
            Action::Unchanged { id: "r1".into() }
        );
        for (k, v) in [
            ("is_active", json!(false)),
            ("action_emails", json!(["b@x"])),
            ("description", json!("other")),
            ("alert_channels", json!([13])),
            ("groups", json!(["g2"])),
        ] {
            let mut changed = body.clone();
            changed[k] = v.clone();
            let c = rule_changes(&changed, &rule.fields);
            assert_eq!(c.len(), 1, "a change of `{k}` is noticed: {c:?}");
            assert_eq!(c[0].field, k);
        }
        let mut raised = body.clone();
        raised["conditions"]["value"] = json!(20);
        assert_eq!(
            rule_action(&raised, OnExists::Update, Some(&rule)),
            Action::Update {
                id: "r1".into(),
                changes: vec![FieldChange {
                    field: "conditions.value".into(),
                    old: json!(15.0),
                    new: json!(20),
                }]
            }
        );
        assert_eq!(
            rule_action(&raised, OnExists::Skip, Some(&rule)),
            Action::Skip { id: "r1".into() }
        );
        assert_eq!(
            rule_action(&body, OnExists::Fail, Some(&rule)),
            Action::Conflict { id: "r1".into() }
        );
        assert_eq!(rule_action(&body, OnExists::Fail, None), Action::Create);
    }

    #[test]
    fn changes_count_writes() {
        let mut c = Changes::default();
        for a in [
            Action::Create,
            Action::Send,
            Action::Unchanged { id: "x".into() },
            Action::Skip { id: "y".into() },
        ] {
            c.add(&a);
        }
        assert_eq!((c.writes(), c.unchanged, c.skip), (2, 1, 1));
    }
}
