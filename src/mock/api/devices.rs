//! Device groups and devices: the legacy group and device routes (DRF pages, references as
//! URLs), the group PATCH that moves devices, and the mixed-fleet `/v2/devices/` list with
//! its offset and cursor pages. Tree queries live in `inventory`; pagination links in `http`.

use serde_json::{Value, json};

use super::super::http::{
    Ctx, FieldError, PageParams, Reply, classic_page, page_links, strict_uuid,
};
use super::super::inventory::Inventory;
use super::{Fields, id_filter, object, resolve_ids};

/// `/v2/devices/` page size rules (API.md §2.3).
const V2_DEFAULT_LIMIT: usize = 10;
const V2_MAX_LIMIT: usize = 1000;
const DEFAULT_LIMIT: usize = 20;

pub(super) fn group_url(ctx: &Ctx, inv: &Inventory, g: usize) -> String {
    let id = inv
        .groups
        .get(g)
        .map(|x| x.id.to_string())
        .unwrap_or_default();
    format!(
        "{}/enterprise/{}/devicegroup/{id}/",
        ctx.api(),
        ctx.enterprise_id
    )
}

fn render_group(
    ctx: &Ctx,
    inv: &Inventory,
    g: usize,
    devices: &[usize],
    children: &[usize],
) -> Value {
    let Some(group) = inv.groups.get(g) else {
        return Value::Null;
    };
    json!({
        "id": group.id.to_string(),
        "name": group.name,
        "created_on": group.created_on,
        "enterprise": ctx.enterprise_url(),
        "parent": group.parent.map(|p| group_url(ctx, inv, p)),
        "device_count": devices.get(g).copied().unwrap_or(0),
        "path": inv.group_path(g),
        "children_count": children.get(g).copied().unwrap_or(0),
        "thumbnail": null,
        "blueprint": null,
    })
}

/// The `{id, name, path}` reference used by v2 devices and alarm rules.
pub(super) fn group_ref(inv: &Inventory, g: usize) -> Value {
    match inv.groups.get(g) {
        Some(group) => {
            json!({"id": group.id.to_string(), "name": group.name, "path": inv.group_path(g)})
        }
        None => Value::Null,
    }
}

fn find_group(inv: &Inventory, raw: &str) -> Option<usize> {
    strict_uuid(raw).and_then(|u| inv.group_index.get(&u).copied())
}

pub(super) fn list_groups(inv: &Inventory, ctx: &Ctx) -> Reply {
    let p = PageParams::from_ctx(ctx, DEFAULT_LIMIT, None);
    let name = ctx.filter("name");
    let matching: Vec<usize> = (0..inv.groups.len())
        .filter(|&g| name.is_none_or(|n| inv.groups[g].name == n))
        .collect();
    let devices = inv.device_counts();
    let children = inv.children_counts();
    let results = p
        .slice(&matching)
        .iter()
        .map(|&g| render_group(ctx, inv, g, &devices, &children))
        .collect();
    ctx.ok(classic_page(ctx, matching.len(), p, results))
}

pub(super) fn get_group(inv: &Inventory, ctx: &Ctx, raw: &str) -> Reply {
    match find_group(inv, raw) {
        Some(g) => ctx.ok(render_group(
            ctx,
            inv,
            g,
            &inv.device_counts(),
            &inv.children_counts(),
        )),
        None => ctx.not_found(),
    }
}

/// `PATCH …/devicegroup/{id}/?action=add|move|remove|rename`. `add` and `move` with
/// `device_ids` move devices here (a device is in one group); `move` with `parent`
/// re-parents the group; `remove` sends devices back to the root group; `rename` takes
/// `name`. Without `action`, every field present is applied.
pub(super) fn patch_group(inv: &mut Inventory, ctx: &Ctx, raw: &str, body: &Value) -> Reply {
    let Some(g) = find_group(inv, raw) else {
        return ctx.not_found();
    };
    let map = match object(ctx, body) {
        Ok(m) => m,
        Err(r) => return r,
    };
    let action = ctx.param("action").unwrap_or("");
    if !matches!(action, "" | "add" | "move" | "remove" | "rename") {
        return ctx.bad_field("action", format!("\"{action}\" is not a valid choice."));
    }
    let mut f = Fields::new(map);
    let needs_devices =
        matches!(action, "add" | "remove") || (action == "move" && !map.contains_key("parent"));
    let device_ids = f.string_list("device_ids", None);
    if needs_devices && device_ids.is_none() && f.errors.is_empty() {
        f.fail("device_ids", "This field is required.");
    }
    let name = if action == "rename" || (action.is_empty() && map.contains_key("name")) {
        f.string("name", true)
    } else {
        None
    };
    let parent_raw = if matches!(action, "move" | "") {
        f.string("parent", false)
    } else {
        None
    };
    let mut errors = std::mem::take(&mut f.errors);
    let devices = device_ids
        .map(|ids| resolve_ids(&mut errors, "device_ids", &ids, &inv.device_index))
        .unwrap_or_default();
    let parent = parent_raw.and_then(|p| {
        let found = find_group(inv, &p);
        if found.is_none() {
            errors.push(FieldError::new(
                "parent",
                format!("Invalid pk \"{p}\" - object does not exist."),
            ));
        }
        found
    });
    if let Some(p) = parent {
        if inv.groups.get(g).is_some_and(|x| x.parent.is_none()) {
            errors.push(FieldError::new("parent", "The root group cannot be moved."));
        } else if inv.is_within(p, g) {
            errors.push(FieldError::new(
                "parent",
                "A group cannot be moved under itself or its subgroups.",
            ));
        }
    }
    if action == "remove" {
        for &d in &devices {
            if inv.devices.get(d).is_some_and(|x| x.group != g) {
                let id = inv.devices[d].id;
                errors.push(FieldError::new(
                    "device_ids",
                    format!("Device {id} is not in this group."),
                ));
            }
        }
    }
    if !errors.is_empty() {
        return ctx.bad_request(errors);
    }
    // Nothing is applied until every field checks out, so a 400 changes nothing.
    let root = (0..inv.groups.len())
        .find(|&i| inv.groups[i].parent.is_none())
        .unwrap_or(0);
    let target = if action == "remove" { root } else { g };
    for d in devices {
        if let Some(dev) = inv.devices.get_mut(d) {
            dev.group = target;
        }
    }
    if let Some(n) = name
        && let Some(group) = inv.groups.get_mut(g)
    {
        group.name = n;
    }
    if let Some(p) = parent
        && let Some(group) = inv.groups.get_mut(g)
    {
        group.parent = Some(p);
    }
    ctx.ok(render_group(
        ctx,
        inv,
        g,
        &inv.device_counts(),
        &inv.children_counts(),
    ))
}

fn render_device(ctx: &Ctx, inv: &Inventory, d: usize) -> Value {
    let Some(dev) = inv.devices.get(d) else {
        return Value::Null;
    };
    let api = ctx.api();
    let eid = &ctx.enterprise_id;
    json!({
        "id": dev.id.to_string(),
        "url": format!("{api}/enterprise/{eid}/device/{}/", dev.id),
        "device_name": dev.device_name,
        "alias_name": dev.alias_name,
        "policy_name": "Default Policy",
        "status": 1,
        "state": dev.state,
        "current_command": null,
        "suid": dev.suid,
        "fcm_id": null,
        "enterprise": ctx.enterprise_url(),
        "policy": null,
        "user": null,
        "groups": [group_url(ctx, inv, dev.group)],
        "tags": dev.tags,
        "api_level": 30,
        "template_name": "Default Template",
        "mqtt_id": dev.suid,
        "softwareInfo": {"androidVersion": "11", "esperClientVersion": "7.4.0"},
        "hardwareInfo": {"serialNumber": dev.serial, "manufacturer": "samsung", "brand": "samsung", "model": "SM-T500"},
        "displays": {},
        "networkInfo": {"imei1": dev.imei, "imei2": null},
        "memoryInfo": {},
        "audioConstraints": {},
        "provisioned_on": dev.created_on,
        "created_on": dev.created_on,
        "updated_on": dev.created_on,
        "emm_device": null,
        "is_gms": true,
        "is_active": true,
    })
}

/// Devices passing the legacy list's filters.
pub(super) fn list_devices(inv: &Inventory, ctx: &Ctx) -> Reply {
    let p = PageParams::from_ctx(ctx, DEFAULT_LIMIT, None);
    let mut errors = Vec::new();
    let in_group = match ctx.filter("group") {
        Some(raw) => match find_group(inv, raw) {
            Some(g) => Some(inv.subtree(g)),
            None => {
                let msg = if strict_uuid(raw).is_none() {
                    format!("\u{201c}{raw}\u{201d} is not a valid UUID.")
                } else {
                    "Select a valid choice. That choice is not one of the available choices.".into()
                };
                errors.push(FieldError::new("group", msg));
                None
            }
        },
        None => None,
    };
    let state = match ctx.filter("state") {
        Some(s) => match s.trim().parse::<i64>() {
            Ok(n) => Some(n),
            Err(_) => {
                errors.push(FieldError::new("state", "Enter a whole number."));
                None
            }
        },
        None => None,
    };
    if !errors.is_empty() {
        return ctx.bad_request(errors);
    }
    let name = ctx.filter("name");
    let serial = ctx.filter("serial");
    let imei = ctx.filter("imei");
    let search = ctx.filter("search").map(str::to_lowercase);
    let matching: Vec<usize> = (0..inv.devices.len())
        .filter(|&d| {
            let dev = &inv.devices[d];
            in_group
                .as_ref()
                .is_none_or(|m| m.get(dev.group).copied().unwrap_or(false))
                && state.is_none_or(|s| dev.state == s)
                && name.is_none_or(|n| dev.device_name == n)
                && serial.is_none_or(|s| dev.serial == s)
                && imei.is_none_or(|i| dev.imei == i)
                && search.as_deref().is_none_or(|q| {
                    dev.device_name.to_lowercase().contains(q) || dev.imei.contains(q)
                })
        })
        .collect();
    let results = p
        .slice(&matching)
        .iter()
        .map(|&d| render_device(ctx, inv, d))
        .collect();
    ctx.ok(classic_page(ctx, matching.len(), p, results))
}

pub(super) fn get_device(inv: &Inventory, ctx: &Ctx, raw: &str) -> Reply {
    match strict_uuid(raw).and_then(|u| inv.device_index.get(&u).copied()) {
        Some(d) => ctx.ok(render_device(ctx, inv, d)),
        None => ctx.not_found(),
    }
}

fn state_name(state: i64) -> &'static str {
    if state == 1 { "ONLINE" } else { "OFFLINE" }
}

fn render_v2_device(ctx: &Ctx, inv: &Inventory, d: usize) -> Value {
    let Some(dev) = inv.devices.get(d) else {
        return Value::Null;
    };
    json!({
        "id": dev.id.to_string(),
        "name": dev.device_name,
        "alias_name": dev.alias_name,
        "serial": dev.serial,
        "imei": dev.imei,
        "state": state_name(dev.state),
        "platform": "ANDROID",
        "os": "Android",
        "os_version": "11",
        "tenant_id": ctx.enterprise_id,
        "groups": [group_ref(inv, dev.group)],
        "tags": dev.tags,
        "created_at": dev.created_on,
        "updated_at": dev.created_on,
        "is_gms": true,
    })
}

/// Cursors encode an offset; hex keeps them opaque-looking and URL-safe.
fn encode_cursor(offset: usize) -> String {
    format!("o={offset}")
        .bytes()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn decode_cursor(s: &str) -> Option<usize> {
    if s == "start" {
        return Some(0);
    }
    if !s.len().is_multiple_of(2) || s.len() > 64 {
        return None;
    }
    let bytes: Option<Vec<u8>> = (0..s.len())
        .step_by(2)
        .map(|i| s.get(i..i + 2).and_then(|h| u8::from_str_radix(h, 16).ok()))
        .collect();
    let text = String::from_utf8(bytes?).ok()?;
    text.strip_prefix("o=")?.parse().ok()
}

/// `GET /v2/devices/`: offset page (`{count, next, prev, results}`) or, with `cursor`,
/// cursor page (`{results, next_cursor, prev_cursor}`).
pub(super) fn list_v2_devices(inv: &Inventory, ctx: &Ctx) -> Reply {
    let mut p = PageParams::from_ctx(ctx, V2_DEFAULT_LIMIT, Some(V2_MAX_LIMIT));
    let mut errors = Vec::new();
    let cursor = match ctx.filter("cursor") {
        Some(c) => match decode_cursor(c) {
            Some(o) => Some(o),
            None => {
                errors.push(FieldError::new("cursor", "Invalid cursor"));
                None
            }
        },
        None => None,
    };
    let mut groups_filter = |key: &str, with_subgroups: bool| -> Option<Vec<bool>> {
        let raw = ctx.filter(key)?;
        match id_filter(ctx, key, raw, &inv.group_index) {
            Ok(gs) => {
                let mut marks = vec![false; inv.groups.len()];
                for g in gs {
                    if with_subgroups {
                        for (m, inside) in marks.iter_mut().zip(inv.subtree(g)) {
                            *m |= inside;
                        }
                    } else if let Some(m) = marks.get_mut(g) {
                        *m = true;
                    }
                }
                Some(marks)
            }
            Err(_) => {
                errors.push(FieldError::new(key, format!("Invalid group id(s): {raw}")));
                None
            }
        }
    };
    let multi = groups_filter("group_multi", true);
    let immediate = groups_filter("group_multi_immediate", false);
    let state = match ctx.filter("state") {
        Some(s) => match s.trim().to_ascii_uppercase().as_str() {
            "ONLINE" | "1" => Some(1),
            "OFFLINE" | "60" => Some(60),
            _ => {
                errors.push(FieldError::new(
                    "state",
                    format!("\"{s}\" is not a valid choice. Use ONLINE or OFFLINE."),
                ));
                None
            }
        },
        None => None,
    };
    if !errors.is_empty() {
        return ctx.bad_request(errors);
    }
    let serial = ctx.filter("serial");
    let search = ctx.filter("search").map(str::to_lowercase);
    let matching: Vec<usize> = (0..inv.devices.len())
        .filter(|&d| {
            let dev = &inv.devices[d];
            let in_marks = |m: &Option<Vec<bool>>| {
                m.as_ref()
                    .is_none_or(|m| m.get(dev.group).copied().unwrap_or(false))
            };
            in_marks(&multi)
                && in_marks(&immediate)
                && state.is_none_or(|s| dev.state == s)
                && serial.is_none_or(|s| dev.serial == s)
                && search.as_deref().is_none_or(|q| {
                    dev.device_name.to_lowercase().contains(q)
                        || dev.serial.to_lowercase().contains(q)
                        || dev.imei.contains(q)
                })
        })
        .collect();
    if let Some(offset) = cursor {
        p.offset = offset;
        let results: Vec<Value> = p
            .slice(&matching)
            .iter()
            .map(|&d| render_v2_device(ctx, inv, d))
            .collect();
        let next = p.offset.saturating_add(p.limit);
        let next_cursor = (next < matching.len()).then(|| encode_cursor(next));
        let prev_cursor = (p.offset > 0).then(|| encode_cursor(p.offset.saturating_sub(p.limit)));
        return ctx.ok(
            json!({"results": results, "next_cursor": next_cursor, "prev_cursor": prev_cursor}),
        );
    }
    let results: Vec<Value> = p
        .slice(&matching)
        .iter()
        .map(|&d| render_v2_device(ctx, inv, d))
        .collect();
    let (next, prev) = page_links(ctx, matching.len(), p);
    ctx.ok(json!({"count": matching.len(), "next": next, "prev": prev, "results": results}))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_reject_garbage() {
        for o in [0, 1, 10, 123_456] {
            assert_eq!(decode_cursor(&encode_cursor(o)), Some(o));
        }
        assert_eq!(decode_cursor("start"), Some(0));
        for bad in ["", "x", "zz", "6f3d", "6f3d2d31", &"ab".repeat(40)] {
            assert_eq!(decode_cursor(bad), None, "{bad}");
        }
    }
}
