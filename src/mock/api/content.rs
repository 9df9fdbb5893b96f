//! Content files (`/v0/enterprise/{eid}/content/`): the DRF list with `search`, and the
//! multipart upload (field `key`) that answers **200**, not 201 (API.md §9.1). Reading the
//! multipart body is left to `server`.

use std::time::SystemTime;

use serde_json::{Value, json};

use super::super::http::{Ctx, PageParams, Reply, classic_page, rfc3339};
use super::super::inventory::{Content, Inventory, fnv_hex};
use super::Input;

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
        "tags": [],
        "description": null,
        "created": c.created,
        "modified": c.created,
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
        .filter(|c| {
            search
                .as_deref()
                .is_none_or(|q| c.name.to_lowercase().contains(q))
        })
        .collect();
    let results = p.slice(&matching).iter().map(|c| render(ctx, c)).collect();
    ctx.ok(classic_page(ctx, matching.len(), p, results))
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
