//! The command request service (`/commands/v0/`): create with the validation rules of
//! API.md §7.1, list and read requests, per-request stats and the per-device status list.
//! Per-device progress is computed on read from the time elapsed since create (see
//! `inventory::progress`), so nothing runs in the background.

use serde_json::{Value, json};

use super::super::http::{Ctx, FieldError, PageParams, Reply, page_links, rfc3339, strict_uuid};
use super::super::inventory::{CommandRequest, CommandStatus, Inventory, Progress, random_uuid};
use super::{Fields, id_filter, object, resolve_ids};

const DEFAULT_LIMIT: usize = 20;
const MAX_DEVICES: usize = 1000;
const MAX_GROUPS: usize = 500;
const DEVICE_TYPE_TEXT: &str =
    "Filtering by device_type is currently not supported. Please specify 'all'.";

/// `DeviceCommandEnum` (API.md §7.1).
const COMMANDS: &[&str] = &[
    "ADD_TO_WHITELIST",
    "ADD_WIFI_AP",
    "APPLY_APP_CONFIG",
    "CLEAR_APP_DATA",
    "CONVERGE",
    "INSTALL",
    "INSTALL_CERTIFICATE",
    "LIST_INSTALLED_PROFILES",
    "LOCK",
    "REBOOT",
    "REMOVE_FROM_WHITELIST",
    "REMOVE_PROFILE",
    "REMOVE_WIFI_AP",
    "SET_APP_PERMISSION",
    "SET_APP_STATE",
    "SET_BLUETOOTH_STATE",
    "SET_BRIGHTNESS_SCALE",
    "SET_DEVICE_LOCKDOWN_STATE",
    "SET_GPS_STATE",
    "SET_KIOSK_APP",
    "SET_MULTI_APP_MODE",
    "SET_NEW_POLICY",
    "SET_ROTATION_STATE",
    "SET_SCREEN_OFF_TIMEOUT",
    "SET_STREAM_VOLUME",
    "SET_TIMEZONE",
    "SET_WIFI_STATE",
    "UNINSTALL",
    "UNINSTALL_CERTIFICATE",
    "UPDATE_DEVICE_CONFIG",
    "UPDATE_HEARTBEAT",
    "UPDATE_LATEST_DPC",
    "WIPE",
    "RESET_LOCKSCREEN_PASSWORD",
    "UPDATE_BLUEPRINT",
    "NOTIFY_DEVICE",
    "SET_DEVICE_LANGUAGE",
    "SET_ETHERNET_SETTINGS",
    "SET_STATIC_IP",
    "BEEP_DEVICE",
    "SET_APP_NOTIFICATIONS",
    "USE_ONLY_SAVED_WIFI_AP",
    "DEVICE_INFORMATION",
    "VPP_APP_INSTALL",
    "APPLE_APP_UNINSTALL",
    "CLEAR_PASSCODE",
    "INSTALL_PROFILE",
    "RUN_SHELL_SCRIPT",
    "RUN_CUSTOM_ACTION",
    "COLLECT_LOGS",
];
const COMMAND_TYPES: [&str; 3] = ["DEVICE", "GROUP", "DYNAMIC"];
const SCHEDULES: [&str; 3] = ["IMMEDIATE", "WINDOW", "RECURRING"];
/// Order used by `stats`; also the valid `state` filter values.
const STATES: [&str; 9] = [
    "Command Queued",
    "Command Initiated",
    "Command Acknowledged",
    "Command In Progress",
    "Command TimeOut",
    "Command Success",
    "Command Failure",
    "Command Scheduled",
    "Command Cancelled",
];

fn render(c: &CommandRequest) -> Value {
    json!({
        "id": c.id.to_string(),
        "command_type": c.command_type,
        "devices": c.devices.iter().map(|d| d.to_string()).collect::<Vec<_>>(),
        "groups": c.groups.iter().map(|g| g.to_string()).collect::<Vec<_>>(),
        "device_type": "all",
        "command": c.command,
        "command_args": c.command_args,
        "schedule": c.schedule,
        "schedule_args": c.schedule_args,
        "alias": c.alias,
        "reason": null,
        "created_by": "mock-api-user",
        "created_at": rfc3339(c.created_at),
    })
}

fn choice(f: &mut Fields<'_>, field: &str, allowed: &[&str], required: bool) -> Option<String> {
    let v = f.string(field, required)?;
    if allowed.contains(&v.as_str()) {
        Some(v)
    } else {
        f.fail(field, format!("\"{v}\" is not a valid choice."));
        None
    }
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
    let mut f = Fields::new(map);
    let command = choice(&mut f, "command", COMMANDS, true);
    let command_type = choice(&mut f, "command_type", &COMMAND_TYPES, true);
    match map.get("device_type") {
        None | Some(Value::Null) => {}
        Some(Value::String(s)) if s == "all" => {}
        Some(_) => f.fail("device_type", DEVICE_TYPE_TEXT),
    }
    let device_ids = f
        .string_list("devices", Some(MAX_DEVICES))
        .unwrap_or_default();
    let group_ids = f
        .string_list("groups", Some(MAX_GROUPS))
        .unwrap_or_default();
    let schedule =
        choice(&mut f, "schedule", &SCHEDULES, false).unwrap_or_else(|| "IMMEDIATE".into());
    let schedule_args = match map.get("schedule_args") {
        None | Some(Value::Null) => Value::Null,
        Some(v @ Value::Object(_)) => v.clone(),
        Some(_) => {
            f.fail("schedule_args", "Expected a dictionary of items.");
            Value::Null
        }
    };
    let alias = match map.get("alias") {
        None | Some(Value::Null) => Value::Null,
        Some(v @ Value::String(_)) => v.clone(),
        Some(_) => {
            f.fail("alias", "Not a valid string.");
            Value::Null
        }
    };
    let args = match map.get("command_args") {
        None | Some(Value::Null) => Value::Object(Default::default()),
        Some(v @ Value::Object(_)) => v.clone(),
        Some(_) => {
            f.fail("command_args", "Expected a dictionary of items.");
            Value::Object(Default::default())
        }
    };
    match command_type.as_deref() {
        Some("DEVICE") if device_ids.is_empty() => {
            f.fail(
                "devices",
                "This field is required when command_type is DEVICE.",
            );
        }
        Some("GROUP") if group_ids.is_empty() => {
            f.fail(
                "groups",
                "This field is required when command_type is GROUP.",
            );
        }
        Some("DYNAMIC") if device_ids.is_empty() && group_ids.is_empty() => {
            f.fail(
                "devices",
                "devices or groups are required when command_type is DYNAMIC.",
            );
        }
        _ => {}
    }
    let arg_str = |key: &str| {
        args.get(key)
            .and_then(Value::as_str)
            .filter(|s| !s.trim().is_empty())
    };
    match command.as_deref() {
        Some("INSTALL") => match arg_str("app_version") {
            None => f.fail(
                "command_args.app_version",
                "This field is required for INSTALL.",
            ),
            Some(v)
                if strict_uuid(v)
                    .and_then(|u| inv.version_index.get(&u))
                    .is_none() =>
            {
                f.fail(
                    "command_args.app_version",
                    format!("Invalid app version \"{v}\" - object does not exist."),
                );
            }
            Some(_) => {}
        },
        Some("UNINSTALL") if arg_str("package_name").is_none() => {
            f.fail(
                "command_args.package_name",
                "This field is required for UNINSTALL.",
            );
        }
        _ => {}
    }
    let mut errors: Vec<FieldError> = f.errors;
    let devices = resolve_ids(&mut errors, "devices", &device_ids, &inv.device_index);
    let groups = resolve_ids(&mut errors, "groups", &group_ids, &inv.group_index);
    if !errors.is_empty() {
        return ctx.bad_request(errors);
    }
    let (Some(command), Some(command_type)) = (command, command_type) else {
        return ctx.bad_field("command", "This field is required.");
    };
    let mut targets: Vec<usize> = match command_type.as_str() {
        "DEVICE" => devices.clone(),
        "GROUP" => inv.devices_in_groups(&groups),
        _ => {
            let mut t = devices.clone();
            t.extend(inv.devices_in_groups(&groups));
            t
        }
    };
    let mut seen = vec![false; inv.devices.len()];
    targets.retain(|&d| match seen.get_mut(d) {
        Some(s) if !*s => {
            *s = true;
            true
        }
        _ => false,
    });
    let id = random_uuid(rng);
    let statuses = targets
        .into_iter()
        .filter_map(|d| {
            let dev = inv.devices.get(d)?;
            Some(CommandStatus {
                id: random_uuid(rng),
                device: d,
                plan: Inventory::plan_for(ctx.seed, &ctx.commands, id, dev),
                set: None,
                noop: command == "INSTALL"
                    && Inventory::install_noop(ctx.seed, ctx.commands.install_noop_rate, id, dev),
            })
        })
        .collect();
    let device_uuids: Vec<_> = devices
        .iter()
        .filter_map(|&d| inv.devices.get(d))
        .map(|d| d.id)
        .collect();
    let group_uuids: Vec<_> = groups
        .iter()
        .filter_map(|&g| inv.groups.get(g))
        .map(|g| g.id)
        .collect();
    let key = Inventory::command_key(&command_type, &command, &args, &device_uuids, &group_uuids);
    *inv.command_keys.entry(key).or_default() += 1;
    let request = CommandRequest {
        id,
        command_type,
        devices: device_uuids,
        groups: group_uuids,
        command,
        command_args: args,
        schedule,
        schedule_args,
        alias,
        created_at: ctx.wall,
        created: ctx.now,
        statuses,
    };
    let body = render(&request);
    inv.command_index.insert(id, inv.commands.len());
    inv.commands.push(request);
    inv.created.command_requests += 1;
    ctx.created(body)
}

fn find(inv: &Inventory, raw: &str) -> Option<usize> {
    strict_uuid(raw).and_then(|u| inv.command_index.get(&u).copied())
}

/// An envelope page with `previous` (API.md §2.2).
fn envelope_page(ctx: &Ctx, count: usize, p: PageParams, results: Vec<Value>) -> Reply {
    let (next, previous) = page_links(ctx, count, p);
    ctx.ok(json!({"count": count, "next": next, "previous": previous, "results": results}))
}

pub(super) fn list(inv: &Inventory, ctx: &Ctx) -> Reply {
    let p = PageParams::from_ctx(ctx, DEFAULT_LIMIT, None);
    let ids = |key: &str, index| -> Result<Option<Vec<uuid::Uuid>>, Reply> {
        let Some(raw) = ctx.filter(key) else {
            return Ok(None);
        };
        let found = id_filter(ctx, key, raw, index)?;
        Ok(Some(
            found.into_iter().map(|i| uuid_at(inv, key, i)).collect(),
        ))
    };
    let devices = match ids("devices", &inv.device_index) {
        Ok(v) => v,
        Err(r) => return r,
    };
    let groups = match ids("groups", &inv.group_index) {
        Ok(v) => v,
        Err(r) => return r,
    };
    let command = ctx.filter("command");
    let schedule = ctx.filter("schedule");
    let matching: Vec<&CommandRequest> = inv
        .commands
        .iter()
        .filter(|c| {
            devices
                .as_ref()
                .is_none_or(|ds| c.devices.iter().any(|d| ds.contains(d)))
                && groups
                    .as_ref()
                    .is_none_or(|gs| c.groups.iter().any(|g| gs.contains(g)))
                && command.is_none_or(|x| c.command == x)
                && schedule.is_none_or(|x| c.schedule == x)
        })
        .collect();
    let results = p.slice(&matching).iter().map(|c| render(c)).collect();
    envelope_page(ctx, matching.len(), p, results)
}

fn uuid_at(inv: &Inventory, key: &str, i: usize) -> uuid::Uuid {
    let id = if key == "devices" {
        inv.devices.get(i).map(|d| d.id)
    } else {
        inv.groups.get(i).map(|g| g.id)
    };
    id.unwrap_or_default()
}

pub(super) fn get(inv: &Inventory, ctx: &Ctx, raw: &str) -> Reply {
    match find(inv, raw) {
        Some(i) => ctx.ok(render(&inv.commands[i])),
        None => ctx.not_found(),
    }
}

pub(super) fn stats(inv: &Inventory, ctx: &Ctx, raw: &str) -> Reply {
    let Some(i) = find(inv, raw) else {
        return ctx.not_found();
    };
    let c = &inv.commands[i];
    let elapsed = ctx.now.saturating_duration_since(c.created);
    let mut totals = [0u64; STATES.len()];
    for s in &c.statuses {
        let state = s.progress(&c.command, elapsed).state;
        if let Some(k) = STATES.iter().position(|x| *x == state) {
            totals[k] += 1;
        }
    }
    let status: Vec<Value> = STATES
        .iter()
        .zip(totals)
        .filter(|(_, n)| *n > 0)
        .map(|(state, total)| json!({"state": state, "total": total}))
        .collect();
    ctx.ok(json!({"id": c.id.to_string(), "status": status}))
}

pub(super) fn statuses(inv: &Inventory, ctx: &Ctx) -> Reply {
    let p = PageParams::from_ctx(ctx, DEFAULT_LIMIT, None);
    let requests = match ctx.filter("request") {
        Some(raw) => match id_filter(ctx, "request", raw, &inv.command_index) {
            Ok(v) => Some(v),
            Err(r) => return r,
        },
        None => None,
    };
    let devices = match ctx.filter("device") {
        Some(raw) => match id_filter(ctx, "device", raw, &inv.device_index) {
            Ok(v) => Some(v),
            Err(r) => return r,
        },
        None => None,
    };
    let state = ctx.filter("state");
    if let Some(s) = state
        && !STATES.contains(&s)
    {
        return ctx.bad_field("state", format!("\"{s}\" is not a valid choice."));
    }
    let mut rows: Vec<Value> = Vec::new();
    let mut count = 0usize;
    let wanted = p.offset..p.offset.saturating_add(p.limit);
    for (ci, c) in inv.commands.iter().enumerate() {
        if requests.as_ref().is_some_and(|r| !r.contains(&ci)) {
            continue;
        }
        let elapsed = ctx.now.saturating_duration_since(c.created);
        for s in &c.statuses {
            if devices.as_ref().is_some_and(|d| !d.contains(&s.device)) {
                continue;
            }
            let prog = s.progress(&c.command, elapsed);
            if state.is_some_and(|x| x != prog.state) {
                continue;
            }
            if wanted.contains(&count) {
                rows.push(status_row(inv, c, s, &prog));
            }
            count += 1;
        }
    }
    envelope_page(ctx, count, p, rows)
}

/// One `CommandStatus` row.
fn status_row(inv: &Inventory, c: &CommandRequest, s: &CommandStatus, prog: &Progress) -> Value {
    let device = inv.devices.get(s.device).map(|d| d.id.to_string());
    json!({
        "id": s.id.to_string(),
        "request": c.id.to_string(),
        "device": device,
        "state": prog.state,
        "reason": prog.reason,
        "created_at": rfc3339(c.created_at),
        "updated_at": rfc3339(c.created_at.checked_add(prog.since).unwrap_or(c.created_at)),
    })
}

/// The command and status index of status row `raw`.
fn find_status(inv: &Inventory, raw: &str) -> Option<(usize, usize)> {
    let id = strict_uuid(raw)?;
    inv.commands.iter().enumerate().find_map(|(ci, c)| {
        c.statuses
            .iter()
            .position(|s| s.id == id)
            .map(|si| (ci, si))
    })
}

/// `GET /commands/v0/status/{id}/`: one device's row.
pub(super) fn status(inv: &Inventory, ctx: &Ctx, raw: &str) -> Reply {
    let Some((ci, si)) = find_status(inv, raw) else {
        return ctx.not_found();
    };
    let c = &inv.commands[ci];
    let s = &c.statuses[si];
    let prog = s.progress(&c.command, ctx.now.saturating_duration_since(c.created));
    ctx.ok(status_row(inv, c, s, &prog))
}

/// `PUT /commands/v0/status/{id}/` with `{"state", "reason"}`: sets one device's state,
/// as the console's cancel does.
pub(super) fn set_status(inv: &mut Inventory, ctx: &Ctx, raw: &str, body: &Value) -> Reply {
    let Some((ci, si)) = find_status(inv, raw) else {
        return ctx.not_found();
    };
    let Some(state) = body
        .get("state")
        .and_then(Value::as_str)
        .and_then(|s| STATES.iter().find(|x| **x == s))
    else {
        let got = body
            .get("state")
            .map_or("nothing".to_string(), Value::to_string);
        return ctx.bad_field("state", format!("{got} is not a valid choice."));
    };
    let reason = body
        .get("reason")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    inv.commands[ci].statuses[si].set = Some((state, reason));
    status(inv, ctx, raw)
}
