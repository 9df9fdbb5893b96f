//! Content files (`/v0/enterprise/{eid}/content/`): the DRF list, whose `search` matches
//! tags and description only ("Seach by tags, description" in the published spec; never
//! the file name), the multipart upload (field `key`) that answers **200**, not 201, and
//! `GET` / `PATCH` (tags, description) / `DELETE` of one file (API.md §9.1). Reading the
//! multipart body is left to `server`.

use std::time::SystemTime;

use serde_json::{Value, json};

use super::super::http::{Ctx, PageParams, Reply, classic_page, rfc3339};
use super::super::inventory::{Content, Inventory, fnv_hex};
use super::{Fields, Input, object};

const DEFAULT_LIMIT: usize = 20;

fn render(ctx: &Ctx, c: &Content) -> Value {
    json!({
        "id": c.id,
        "download_url": format!("{}/files/content/{}/{}", ctx.origin, c.id, c.name),
        "name": c.name,
        "key": c.name,
        "is_dir": false,
        "kind": c.kind,
        "hash": c.hash,
        "size": c.size.to_string(),
        "path": "/",
        "permissions": "rw-r--r--",
        "tags": c.tags,
        "description": c.description,
        "created": c.created,
        "modified": c.modified,
        "enterprise": ctx.enterprise_url(),
        "owner": {"id": 1, "username": "mock-admin"},
    })
}

pub(super) fn list(inv: &Inventory, ctx: &Ctx) -> Reply {
    let p = PageParams::from_ctx(ctx, DEFAULT_LIMIT, None);
    let search = ctx.filter("search").map(str::to_lowercase);
    let matching: Vec<&Content> = inv
        .contents
        .iter()
        .filter(|c| search.as_deref().is_none_or(|q| searched(c, q)))
        .collect();
    let results = p.slice(&matching).iter().map(|c| render(ctx, c)).collect();
    ctx.ok(classic_page(ctx, matching.len(), p, results))
}

/// Whether `search` (lowercased) finds `c`: a part of a tag or of the description.
fn searched(c: &Content, q: &str) -> bool {
    c.tags.iter().any(|t| t.to_lowercase().contains(q))
        || c.description
            .as_deref()
            .is_some_and(|d| d.to_lowercase().contains(q))
}

/// The index of content `raw` (ids are integers, though the spec calls them UUIDs).
fn find(inv: &Inventory, raw: &str) -> Option<usize> {
    let id: i64 = raw.parse().ok()?;
    inv.contents.iter().position(|c| c.id == id)
}

pub(super) fn get(inv: &Inventory, ctx: &Ctx, raw: &str) -> Reply {
    match find(inv, raw) {
        Some(i) => ctx.ok(render(ctx, &inv.contents[i])),
        None => ctx.not_found(),
    }
}

/// `PATCH`: `tags` (a list of strings) and `description` (a string or null), what
/// `espercli content modify` sends; other fields are read-only and ignored, as DRF does.
pub(super) fn patch(inv: &mut Inventory, ctx: &Ctx, raw: &str, body: &Value) -> Reply {
    let Some(i) = find(inv, raw) else {
        return ctx.not_found();
    };
    let map = match object(ctx, body) {
        Ok(m) => m,
        Err(r) => return r,
    };
    let mut f = Fields::new(map);
    let tags = f.string_list("tags", None);
    let description = match map.get("description") {
        None => None,
        Some(Value::Null) => Some(None),
        Some(Value::String(s)) => Some(Some(s.clone())),
        Some(_) => {
            f.fail("description", "Not a valid string.");
            None
        }
    };
    if !f.errors.is_empty() {
        return ctx.bad_request(f.errors);
    }
    let c = &mut inv.contents[i];
    if let Some(t) = tags {
        c.tags = t;
    }
    if let Some(d) = description {
        c.description = d;
    }
    c.modified = rfc3339(SystemTime::now());
    ctx.ok(render(ctx, &inv.contents[i]))
}

pub(super) fn delete(inv: &mut Inventory, ctx: &Ctx, raw: &str) -> Reply {
    match find(inv, raw) {
        Some(i) => {
            inv.contents.remove(i);
            Reply::no_content()
        }
        None => ctx.not_found(),
    }
}

pub(super) fn upload(inv: &mut Inventory, ctx: &Ctx, input: Input) -> Reply {
    let Input::Multipart(parts) = input else {
        return ctx.bad_field("key", "No file was submitted.");
    };
    let Some(part) = parts.iter().find(|p| p.name == "key") else {
        return ctx.bad_field("key", "No file was submitted.");
    };
    let name = part
        .file_name
        .as_deref()
        .map(|n| n.rsplit(['/', '\\']).next().unwrap_or(n).trim())
        .filter(|n| !n.is_empty())
        .unwrap_or("upload.bin")
        .to_string();
    if part.data.is_empty() {
        return ctx.bad_field("key", "The submitted file is empty.");
    }
    let content = Content {
        id: inv.next_content_id,
        name,
        kind: part
            .content_type
            .clone()
            .unwrap_or_else(|| "application/octet-stream".into()),
        size: part.data.len() as u64,
        hash: fnv_hex(&part.data),
        created: rfc3339(SystemTime::now()),
        tags: Vec::new(),
        description: None,
        modified: rfc3339(SystemTime::now()),
    };
    inv.next_content_id += 1;
    let body = render(ctx, &content);
    inv.contents.push(content);
    inv.created.contents += 1;
    // Content upload is a create that answers 200 (API.md §12 item 12).
    let mut reply = ctx.ok(body);
    reply.created = true;
    reply
}
