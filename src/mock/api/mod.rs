//! The mock's resource handlers. Each handler is a synchronous function over the tenant
//! ([`Inventory`]) run under the state lock, so a create is committed entirely or not at all
//! even if the client hangs up. This file dispatches a matched route to its handler, checks
//! the enterprise id in the path, and holds the DRF-style field validators the handlers
//! share. Reading request bodies, auth and faults are left to `server`.

mod alarms;
mod apps;
mod commands;
mod content;
mod devices;

use axum::http::Method;
use bytes::Bytes;
use serde_json::{Map, Value};

use super::http::{Ctx, FieldError, Reply, error, strict_uuid};
use super::inventory::Inventory;
use super::routes::Route;

/// A request body, already read and classified by `server`.
pub(crate) enum Input {
    None,
    /// Parsed JSON; the error text of a body that was not JSON.
    Json(Result<Value, String>),
    Multipart(Vec<Part>),
}

/// One multipart field.
pub(crate) struct Part {
    pub name: String,
    pub file_name: Option<String>,
    pub content_type: Option<String>,
    pub data: Bytes,
}

/// How a route's body must be read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum BodyKind {
    None,
    Json,
    Multipart,
}

pub(crate) fn body_kind(route: &Route, method: &Method) -> BodyKind {
    match route {
        Route::AppUpload { .. } | Route::ContentUpload { .. } => BodyKind::Multipart,
        Route::Group { .. }
        | Route::AlarmRules { .. }
        | Route::AlarmRule { .. }
        | Route::Commands
        | Route::Status { .. }
        | Route::ContentFile { .. }
            if *method == Method::POST || *method == Method::PUT || *method == Method::PATCH =>
        {
            BodyKind::Json
        }
        _ => BodyKind::None,
    }
}

/// Runs the handler for an authorised, method-checked request.
pub(crate) fn handle(
    inv: &mut Inventory,
    rng: &mut fastrand::Rng,
    ctx: &Ctx,
    route: &Route,
    method: &Method,
    input: Input,
) -> Reply {
    if let Some(eid) = route.enterprise()
        && !eid.eq_ignore_ascii_case(&ctx.enterprise_id)
    {
        // Esper answers another enterprise's paths as it answers any unknown resource.
        return ctx.not_found();
    }
    let json = |input: Input| match input {
        Input::Json(Ok(v)) => Ok(v),
        Input::Json(Err(e)) => Err(malformed(ctx, &e)),
        _ => Err(malformed(ctx, "expected a JSON body")),
    };
    let m = method.clone();
    match route {
        Route::Groups { .. } => devices::list_groups(inv, ctx),
        Route::Group { group, .. } if m == Method::GET => devices::get_group(inv, ctx, group),
        Route::Group { group, .. } => match json(input) {
            Ok(body) => devices::patch_group(inv, ctx, group, &body),
            Err(r) => r,
        },
        Route::Devices { .. } => devices::list_devices(inv, ctx),
        Route::Device { device, .. } => devices::get_device(inv, ctx, device),
        Route::V2Devices => devices::list_v2_devices(inv, ctx),
        Route::Apps { .. } => apps::list_apps(inv, ctx),
        Route::App { app, .. } => apps::get_app(inv, ctx, app),
        Route::AppVersions { app, .. } => apps::list_versions(inv, ctx, app),
        Route::AppVersion { app, version, .. } => apps::get_version(inv, ctx, app, version),
        Route::AppUpload { .. } => apps::upload(inv, rng, ctx, input),
        Route::InstallDevices { app, version, .. } => apps::install_devices(inv, ctx, app, version),
        Route::DeviceApps { device, .. } => apps::device_apps(inv, ctx, device),
        Route::AlarmRules { .. } if m == Method::GET => alarms::list(inv, ctx),
        Route::AlarmRules { .. } => match json(input) {
            Ok(body) => alarms::create(inv, rng, ctx, &body),
            Err(r) => r,
        },
        Route::AlarmRule { alarm, .. } if m == Method::GET => alarms::get(inv, ctx, alarm),
        Route::AlarmRule { alarm, .. } if m == Method::DELETE => alarms::delete(inv, ctx, alarm),
        Route::AlarmRule { alarm, .. } => match json(input) {
            Ok(body) => alarms::update(inv, ctx, alarm, &body, m == Method::PATCH),
            Err(r) => r,
        },
        Route::Contents { .. } => content::list(inv, ctx),
        Route::ContentUpload { .. } => content::upload(inv, ctx, input),
        Route::ContentFile { content, .. } if m == Method::GET => content::get(inv, ctx, content),
        Route::ContentFile { content, .. } if m == Method::DELETE => {
            content::delete(inv, ctx, content)
        }
        Route::ContentFile { content, .. } => match json(input) {
            Ok(body) => content::patch(inv, ctx, content, &body),
            Err(r) => r,
        },
        Route::Commands if m == Method::GET => commands::list(inv, ctx),
        Route::Commands => match json(input) {
            Ok(body) => commands::create(inv, rng, ctx, &body),
            Err(r) => r,
        },
        Route::Command { id } => commands::get(inv, ctx, id),
        Route::CommandStats { id } => commands::stats(inv, ctx, id),
        Route::Statuses => commands::statuses(inv, ctx),
        Route::Status { id } if m == Method::GET => commands::status(inv, ctx, id),
        Route::Status { id } => match json(input) {
            Ok(body) => commands::set_status(inv, ctx, id, &body),
            Err(r) => r,
        },
    }
}

/// DRF's answer to a body that is not valid JSON.
fn malformed(ctx: &Ctx, detail: &str) -> Reply {
    error(
        ctx.family,
        400,
        &format!("JSON parse error - {detail}"),
        vec![format!("JSON parse error - {detail}")],
    )
}

/// The body as an object, or DRF's 400 for anything else.
fn object<'a>(ctx: &Ctx, body: &'a Value) -> Result<&'a Map<String, Value>, Reply> {
    body.as_object().ok_or_else(|| {
        let got = match body {
            Value::Array(_) => "list",
            Value::String(_) => "str",
            Value::Number(_) => "int",
            Value::Bool(_) => "bool",
            _ => "NoneType",
        };
        ctx.bad_field(
            "non_field_errors",
            format!("Invalid data. Expected a dictionary, but got {got}."),
        )
    })
}

/// Collects field errors the way a DRF serializer does, so one 400 names every problem.
struct Fields<'a> {
    map: &'a Map<String, Value>,
    errors: Vec<FieldError>,
}

impl<'a> Fields<'a> {
    fn new(map: &'a Map<String, Value>) -> Self {
        Fields {
            map,
            errors: Vec::new(),
        }
    }

    fn fail(&mut self, field: &str, msg: impl Into<String>) {
        self.errors.push(FieldError::new(field, msg));
    }

    /// The raw value, reporting "required" / "may not be null" as DRF does.
    fn present(&mut self, field: &str, required: bool) -> Option<&'a Value> {
        match self.map.get(field) {
            None => {
                if required {
                    self.fail(field, "This field is required.");
                }
                None
            }
            Some(Value::Null) => {
                if required {
                    self.fail(field, "This field may not be null.");
                }
                None
            }
            Some(v) => Some(v),
        }
    }

    fn string(&mut self, field: &str, required: bool) -> Option<String> {
        match self.present(field, required)? {
            Value::String(s) if s.trim().is_empty() => {
                self.fail(field, "This field may not be blank.");
                None
            }
            Value::String(s) => Some(s.clone()),
            _ => {
                self.fail(field, "Not a valid string.");
                None
            }
        }
    }

    fn boolean(&mut self, field: &str) -> Option<bool> {
        match self.present(field, false)? {
            Value::Bool(b) => Some(*b),
            _ => {
                self.fail(field, "Must be a valid boolean.");
                None
            }
        }
    }

    /// DRF's `IntegerField`: integers, integral floats and digit strings.
    fn integer(&mut self, field: &str, required: bool) -> Option<i64> {
        let v = self.present(field, required)?;
        let n = match v {
            Value::Number(n) => n.as_i64().or_else(|| {
                n.as_f64()
                    .filter(|f| f.fract() == 0.0 && f.abs() < 9e15)
                    .map(|f| f as i64)
            }),
            Value::String(s) => s.trim().parse::<i64>().ok(),
            _ => None,
        };
        if n.is_none() {
            self.fail(field, "A valid integer is required.");
        }
        n
    }

    /// A list of strings; ids may also arrive as numbers, which are kept as their text.
    fn string_list(&mut self, field: &str, max: Option<usize>) -> Option<Vec<String>> {
        let v = self.present(field, false)?;
        let Value::Array(items) = v else {
            self.fail(field, "Expected a list of items but got type \"str\".");
            return None;
        };
        if let Some(max) = max
            && items.len() > max
        {
            self.fail(
                field,
                format!("Ensure this field has no more than {max} elements."),
            );
            return None;
        }
        let mut out = Vec::with_capacity(items.len());
        for item in items {
            match item {
                Value::String(s) => out.push(s.clone()),
                Value::Number(n) => out.push(n.to_string()),
                _ => {
                    self.fail(field, "Not a valid string.");
                    return None;
                }
            }
        }
        Some(out)
    }
}

/// Resolves id strings against an index, naming each bad one (at most a few, so a huge bad
/// list does not make a huge answer).
fn resolve_ids(
    errors: &mut Vec<FieldError>,
    field: &str,
    ids: &[String],
    index: &std::collections::HashMap<uuid::Uuid, usize>,
) -> Vec<usize> {
    const MAX_REPORTED: usize = 10;
    let mut out = Vec::with_capacity(ids.len());
    let mut bad = 0usize;
    for id in ids {
        let found = strict_uuid(id).and_then(|u| index.get(&u).copied());
        match found {
            Some(i) => {
                if !out.contains(&i) {
                    out.push(i);
                }
            }
            None => {
                bad += 1;
                if bad <= MAX_REPORTED {
                    let msg = if strict_uuid(id).is_none() {
                        format!("\u{201c}{id}\u{201d} is not a valid UUID.")
                    } else {
                        format!("Invalid pk \"{id}\" - object does not exist.")
                    };
                    errors.push(FieldError::new(field, msg));
                }
            }
        }
    }
    if bad > MAX_REPORTED {
        errors.push(FieldError::new(
            field,
            format!("{} more invalid ids not shown.", bad - MAX_REPORTED),
        ));
    }
    out
}

/// Parses a csv query filter of ids; `Err` names the first bad one.
fn id_filter(
    ctx: &Ctx,
    field: &str,
    raw: &str,
    index: &std::collections::HashMap<uuid::Uuid, usize>,
) -> Result<Vec<usize>, Reply> {
    let ids: Vec<String> = super::http::csv(raw)
        .into_iter()
        .map(String::from)
        .collect();
    let mut errors = Vec::new();
    let found = resolve_ids(&mut errors, field, &ids, index);
    if errors.is_empty() {
        Ok(found)
    } else {
        Err(ctx.bad_request(errors))
    }
}
