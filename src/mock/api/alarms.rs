//! Alarm rules (`/v1/enterprise/{eid}/alarmrules/`): DRF list, create, read, replace,
//! partial update and delete, with the write/read asymmetry of API.md §8.3 (ids on write,
//! `{id, name, path}` / `{id, device_name, alias_name}` / `{id, name}` objects on read).
//! Duplicate-name counting is left to `inventory`; commit-then-fail to `server`.

use std::time::SystemTime;

use serde_json::{Map, Number, Value, json};
use uuid::Uuid;

use super::super::http::{Ctx, FieldError, PageParams, Reply, classic_page, rfc3339, strict_uuid};
use super::super::inventory::{AlarmRule, Conditions, Inventory, random_uuid};
use super::devices::group_ref;
use super::{Fields, object, resolve_ids};

const DEFAULT_LIMIT: usize = 20;
const UNITS: [&str; 2] = ["Percent", "Count"];
const COMPARATORS: [&str; 5] = [
    "GreaterThanThreshold",
    "GreaterThanOrEqualToThreshold",
    "LessThanThreshold",
    "LessThanOrEqualToThreshold",
    "Frequency",
];

fn render(ctx: &Ctx, inv: &Inventory, r: &AlarmRule) -> Value {
    let devices: Vec<Value> = r
        .devices
        .iter()
        .filter_map(|&d| inv.devices.get(d))
        .map(|d| json!({"id": d.id.to_string(), "device_name": d.device_name, "alias_name": d.alias_name}))
        .collect();
    let groups: Vec<Value> = r.groups.iter().map(|&g| group_ref(inv, g)).collect();
    // The mock has no alert-channel resource, so channels are echoed with a made-up name.
    let channels: Vec<Value> = r
        .alert_channels
        .iter()
        .map(|id| {
            let label = match id {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            json!({"id": id, "name": format!("channel-{label}")})
        })
        .collect();
    let c = &r.conditions;
    let mut conditions = json!({"value": c.value, "unit": c.unit, "comparator": c.comparator});
    if let (Some(t), Some(obj)) = (c.toggle_state, conditions.as_object_mut()) {
        obj.insert("toggle_state".into(), Value::Bool(t));
    }
    json!({
        "id": r.id.to_string(),
        "enterprise": ctx.enterprise_id,
        "devices": devices,
        "groups": groups,
        "name": r.name,
        "description": r.description,
        "metric": r.metric,
        "conditions": conditions,
        "action_emails": r.action_emails,
        "actions": r.actions,
        "alert_channels": channels,
        "created_on": r.created_on,
        "updated_on": r.updated_on,
        "is_active": r.is_active,
        "realert_interval": r.realert_interval,
        "repeat_times": r.repeat_times,
        "trigger_count": 0,
        "daily_trigger_count": 0,
    })
}

/// Validated fields of a create, replace or partial update; `None` means "not sent".
#[derive(Default)]
struct Patch {
    name: Option<String>,
    description: Option<Option<String>>,
    metric: Option<String>,
    conditions: Option<Conditions>,
    devices: Option<Vec<usize>>,
    groups: Option<Vec<usize>>,
    action_emails: Option<Vec<String>>,
    actions: Option<Vec<String>>,
    alert_channels: Option<Vec<Value>>,
    is_active: Option<bool>,
    realert_interval: Option<i64>,
    repeat_times: Option<i64>,
}

fn number(v: &Value) -> Option<Number> {
    match v {
        Value::Number(n) => Some(n.clone()),
        Value::String(s) => s
            .trim()
            .parse::<f64>()
            .ok()
            .filter(|f| f.is_finite())
            .and_then(Number::from_f64),
        _ => None,
    }
}

fn conditions(f: &mut Fields<'_>, required: bool) -> Option<Conditions> {
    let v = f.present("conditions", required)?;
    let Some(map) = v.as_object() else {
        f.fail(
            "conditions",
            "Expected a dictionary of items but got type \"str\".",
        );
        return None;
    };
    let mut ok = true;
    let value = match map.get("value") {
        None | Some(Value::Null) => {
            f.fail("conditions.value", "This field is required.");
            None
        }
        Some(v) => {
            let n = number(v);
            if n.is_none() {
                f.fail("conditions.value", "A valid number is required.");
            }
            n
        }
    };
    let mut choice = |key: &str, allowed: &[&str]| -> Option<String> {
        let field = format!("conditions.{key}");
        match map.get(key) {
            None | Some(Value::Null) => {
                f.fail(&field, "This field is required.");
                None
            }
            Some(Value::String(s)) if allowed.contains(&s.as_str()) => Some(s.clone()),
            Some(other) => {
                let shown = other
                    .as_str()
                    .map_or_else(|| other.to_string(), str::to_string);
                f.fail(&field, format!("\"{shown}\" is not a valid choice."));
                None
            }
        }
    };
    let unit = choice("unit", &UNITS);
    let comparator = choice("comparator", &COMPARATORS);
    let toggle_state = match map.get("toggle_state") {
        None | Some(Value::Null) => None,
        Some(Value::Bool(b)) => Some(*b),
        Some(_) => {
            f.fail("conditions.toggle_state", "Must be a valid boolean.");
            ok = false;
            None
        }
    };
    match (value, unit, comparator, ok) {
        (Some(value), Some(unit), Some(comparator), true) => Some(Conditions {
            value,
            unit,
            comparator,
            toggle_state,
        }),
        _ => None,
    }
}

/// Checks a body; with `required`, the create/replace required set must all be present.
fn validate(
    inv: &Inventory,
    ctx: &Ctx,
    map: &Map<String, Value>,
    required: bool,
) -> Result<Patch, Vec<FieldError>> {
    let mut f = Fields::new(map);
    if let Some(e) = f.string("enterprise", required)
        && !e.eq_ignore_ascii_case(&ctx.enterprise_id)
    {
        let msg = if strict_uuid(&e).is_none() {
            format!("\u{201c}{e}\u{201d} is not a valid UUID.")
        } else {
            format!("Invalid pk \"{e}\" - object does not exist.")
        };
        f.fail("enterprise", msg);
    }
    let mut p = Patch {
        name: f.string("name", required),
        metric: f.string("metric", required),
        conditions: conditions(&mut f, required),
        realert_interval: f.integer("realert_interval", required),
        repeat_times: f.integer("repeat_times", false),
        is_active: f.boolean("is_active"),
        ..Patch::default()
    };
    for (field, v) in [
        ("realert_interval", p.realert_interval),
        ("repeat_times", p.repeat_times),
    ] {
        if v.is_some_and(|n| n < 0) {
            f.fail(field, "Ensure this value is greater than or equal to 0.");
        }
    }
    if let Some(v) = map.get("description") {
        match v {
            Value::Null => p.description = Some(None),
            Value::String(s) => p.description = Some(Some(s.clone())),
            _ => f.fail("description", "Not a valid string."),
        }
    }
    let devices = f.string_list("devices", None);
    let groups = f.string_list("groups", None);
    p.action_emails = f.string_list("action_emails", None);
    p.actions = f.string_list("actions", None);
    p.alert_channels = f.string_list("alert_channels", None).map(|ids| {
        ids.into_iter()
            .map(|id| {
                id.parse::<i64>()
                    .map_or(Value::String(id), |n| Value::Number(n.into()))
            })
            .collect()
    });
    if let Some(emails) = &p.action_emails {
        for e in emails {
            if !e.contains('@') || e.starts_with('@') || e.ends_with('@') {
                f.fail("action_emails", "Enter a valid email address.");
            }
        }
    }
    let mut errors = f.errors;
    p.devices = devices.map(|ids| resolve_ids(&mut errors, "devices", &ids, &inv.device_index));
    p.groups = groups.map(|ids| resolve_ids(&mut errors, "groups", &ids, &inv.group_index));
    if errors.is_empty() {
        Ok(p)
    } else {
        Err(errors)
    }
}

/// Applies a validated patch; the console's rule is devices or groups, never both.
fn apply(rule: &mut AlarmRule, p: Patch) -> Result<(), Vec<FieldError>> {
    let devices = p.devices.unwrap_or_else(|| rule.devices.clone());
    let groups = p.groups.unwrap_or_else(|| rule.groups.clone());
    if !devices.is_empty() && !groups.is_empty() {
        return Err(vec![FieldError::new(
            "non_field_errors",
            "An alert cannot be linked to a combination of devices and groups.",
        )]);
    }
    rule.devices = devices;
    rule.groups = groups;
    if let Some(v) = p.name {
        rule.name = v;
    }
    if let Some(v) = p.description {
        rule.description = v;
    }
    if let Some(v) = p.metric {
        rule.metric = v;
    }
    if let Some(v) = p.conditions {
        rule.conditions = v;
    }
    if let Some(v) = p.action_emails {
        rule.action_emails = v;
    }
    if let Some(v) = p.actions {
        rule.actions = v;
    }
    if let Some(v) = p.alert_channels {
        rule.alert_channels = v;
    }
    if let Some(v) = p.is_active {
        rule.is_active = v;
    }
    if let Some(v) = p.realert_interval {
        rule.realert_interval = v;
    }
    if let Some(v) = p.repeat_times {
        rule.repeat_times = v;
    }
    Ok(())
}

fn find(inv: &Inventory, raw: &str) -> Option<usize> {
    let id: Uuid = strict_uuid(raw)?;
    inv.alarm_rules.iter().position(|r| r.id == id)
}

fn truthy(s: &str) -> Option<bool> {
    match s.to_ascii_lowercase().as_str() {
        "true" | "1" => Some(true),
        "false" | "0" => Some(false),
        _ => None,
    }
}

pub(super) fn list(inv: &Inventory, ctx: &Ctx) -> Reply {
    let p = PageParams::from_ctx(ctx, DEFAULT_LIMIT, None);
    let name = ctx.filter("name");
    let active = match ctx.filter("is_active") {
        Some(s) => match truthy(s) {
            Some(b) => Some(b),
            None => return ctx.bad_field("is_active", "Enter a valid boolean."),
        },
        None => None,
    };
    let matching: Vec<&AlarmRule> = inv
        .alarm_rules
        .iter()
        .filter(|r| name.is_none_or(|n| r.name == n) && active.is_none_or(|a| r.is_active == a))
        .collect();
    let results = p
        .slice(&matching)
        .iter()
        .map(|r| render(ctx, inv, r))
        .collect();
    ctx.ok(classic_page(ctx, matching.len(), p, results))
}

pub(super) fn create(
    inv: &mut Inventory,
    rng: &mut fastrand::Rng,
    ctx: &Ctx,
    body: &Value,
) -> Reply {
    let map = match object(ctx, body) {
        Ok(m) => m,
        Err(r) => return r,
    };
    let patch = match validate(inv, ctx, map, true) {
        Ok(p) => p,
        Err(e) => return ctx.bad_request(e),
    };
    let now = rfc3339(SystemTime::now());
    let mut rule = blank(random_uuid(rng), now);
    if let Err(e) = apply(&mut rule, patch) {
        return ctx.bad_request(e);
    }
    let body = render(ctx, inv, &rule);
    inv.alarm_rules.push(rule);
    inv.created.alarm_rules += 1;
    ctx.created(body)
}

/// A rule with every optional field at its default: what a create starts from, and what
/// a `PUT` replaces the stored rule with (keeping its id and creation time).
fn blank(id: Uuid, now: String) -> AlarmRule {
    AlarmRule {
        id,
        name: String::new(),
        description: None,
        metric: String::new(),
        conditions: Conditions {
            value: Number::from(0),
            unit: String::new(),
            comparator: String::new(),
            toggle_state: None,
        },
        devices: Vec::new(),
        groups: Vec::new(),
        action_emails: Vec::new(),
        actions: Vec::new(),
        alert_channels: Vec::new(),
        is_active: true,
        realert_interval: 0,
        repeat_times: 0,
        created_on: now.clone(),
        updated_on: now,
    }
}

pub(super) fn get(inv: &Inventory, ctx: &Ctx, raw: &str) -> Reply {
    match find(inv, raw) {
        Some(i) => ctx.ok(render(ctx, inv, &inv.alarm_rules[i])),
        None => ctx.not_found(),
    }
}

/// PUT (`partial == false`, required set enforced) or PATCH. As in DRF, optional fields a
/// PUT leaves out keep their values.
pub(super) fn update(
    inv: &mut Inventory,
    ctx: &Ctx,
    raw: &str,
    body: &Value,
    partial: bool,
) -> Reply {
    let Some(i) = find(inv, raw) else {
        return ctx.not_found();
    };
    let map = match object(ctx, body) {
        Ok(m) => m,
        Err(r) => return r,
    };
    let patch = match validate(inv, ctx, map, !partial) {
        Ok(p) => p,
        Err(e) => return ctx.bad_request(e),
    };
    // PATCH merges into the stored rule; PUT replaces it, as Django REST framework does:
    // fields the body leaves out fall back to their defaults.
    let stored = &inv.alarm_rules[i];
    let mut rule = if partial {
        stored.clone()
    } else {
        let mut r = blank(stored.id, stored.created_on.clone());
        r.created_on = stored.created_on.clone();
        r
    };
    if let Err(e) = apply(&mut rule, patch) {
        return ctx.bad_request(e);
    }
    rule.updated_on = rfc3339(SystemTime::now());
    let body = render(ctx, inv, &rule);
    inv.alarm_rules[i] = rule;
    ctx.ok(body)
}

pub(super) fn delete(inv: &mut Inventory, ctx: &Ctx, raw: &str) -> Reply {
    match find(inv, raw) {
        Some(i) => {
            inv.alarm_rules.remove(i);
            Reply::no_content()
        }
        None => ctx.not_found(),
    }
}
