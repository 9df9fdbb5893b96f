//! Export steps over the client: each `what:` read page by page, each row turned into
//! its columns and handed to the file sink at once, so no listing is ever held whole.
//!
//! Every request is a read through the client's throttle. Which devices or groups are
//! read, and how `what: installed` reads, was decided by the plan (`plan::export`); how
//! rows reach the file is `crate::export`'s. A failed read fails the attempt and leaves
//! nothing at the destination, so a retry starts the export again from its first page.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::time::SystemTime;

use futures::TryStreamExt;
use serde_json::{Value, json};

use super::fail;
use crate::base::{Endpoint, FailureClass};
use crate::esper::model::id_from_ref;
use crate::esper::{Client, PageStyle};
use crate::exec::{Done, Failure};
use crate::export::{Sink, at_path};
use crate::job::{ExportWhat, Since};
use crate::plan::{ExportPlan, ExportScope, InstalledMethod};

/// What an export needs from the run beyond its plan.
#[derive(Clone, Default)]
pub struct ExportEnv {
    /// The run directory: exports without `file:` go to `exports/<step>.<ext>` in it.
    pub run_dir: Option<PathBuf>,
    /// When this job's last successful run on this server started (`since: last_run`).
    pub last_run: Option<jiff::Timestamp>,
    /// Told (step id, rows written) after every page's worth of rows, for progress.
    pub on_rows: Option<ProgressHook>,
}

/// Told (step id, rows written so far).
pub type ProgressHook = std::sync::Arc<dyn Fn(&str, u64) + Send + Sync>;

impl std::fmt::Debug for ExportEnv {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExportEnv")
            .field("run_dir", &self.run_dir)
            .field("last_run", &self.last_run)
            .finish_non_exhaustive()
    }
}

/// The root group Esper puts every group under; paths are written below it.
const ROOT: &str = "All devices/";

/// Columns of a device export without `fields:`.
pub const DEVICE_COLUMNS: &[&str] = &[
    "id",
    "name",
    "alias",
    "serial",
    "state",
    "group",
    "model",
    "os_version",
    "last_seen",
];
pub const GROUP_COLUMNS: &[&str] = &[
    "id",
    "name",
    "path",
    "parent_id",
    "device_count",
    "children_count",
];
pub const APP_COLUMNS: &[&str] = &[
    "application_id",
    "package",
    "application_name",
    "version_id",
    "version_code",
    "version_name",
    "installed_count",
];
pub const INSTALLED_COLUMNS: &[&str] = &[
    "device_id",
    "device_name",
    "alias",
    "group",
    "package",
    "version_code",
    "version_name",
    "version_id",
];
/// The job language's `alarm_rule` keys, in the order the docs list them.
pub const RULE_COLUMNS: &[&str] = &[
    "name",
    "description",
    "metric",
    "conditions",
    "realert_interval",
    "repeat_times",
    "is_active",
    "action_emails",
    "actions",
    "alert_channels",
    "groups",
    "devices",
];
pub const COMMAND_COLUMNS: &[&str] = &[
    "request_id",
    "command",
    "command_type",
    "created_at",
    "device_id",
    "state",
    "reason",
    "updated_at",
];

fn local(m: String) -> Failure {
    Failure::local(FailureClass::Build, m)
}

fn strip_root(p: &str) -> String {
    p.strip_prefix(ROOT).unwrap_or(p).to_string()
}

/// Runs one export step: reads, writes the file, and answers with its path and row count.
pub(super) async fn export(
    client: &Client,
    env: &ExportEnv,
    step: &str,
    plan: &ExportPlan,
    started: SystemTime,
) -> Result<Done, Failure> {
    let spec = &plan.spec;
    let dest = match (&spec.file, &env.run_dir) {
        (Some(f), _) => PathBuf::from(f),
        (None, Some(dir)) => dir
            .join("exports")
            .join(format!("{step}.{}", spec.format.extension())),
        (None, None) => {
            return Err(local(format!(
                "export `{step}` has no file and no run directory"
            )));
        }
    };
    let columns: Vec<String> = match spec.what {
        ExportWhat::Devices if !spec.fields.is_empty() => spec.fields.clone(),
        ExportWhat::Groups if !spec.fields.is_empty() => spec.fields.clone(),
        ExportWhat::Devices => owned(DEVICE_COLUMNS),
        ExportWhat::Groups => owned(GROUP_COLUMNS),
        ExportWhat::Apps => owned(APP_COLUMNS),
        ExportWhat::Installed => owned(INSTALLED_COLUMNS),
        ExportWhat::AlarmRules => owned(RULE_COLUMNS),
        ExportWhat::Commands => owned(COMMAND_COLUMNS),
    };
    let shown = dest.display().to_string();
    let io = |e: std::io::Error| local(format!("cannot write {shown}: {e}"));
    let mut sink = Sink::create(&dest, spec.format, columns).map_err(io)?;
    // Alarm rules are written as `alarm_rule` blocks: keys they do not set are left out,
    // so the block pastes back into a job as it is.
    if spec.what == ExportWhat::AlarmRules {
        sink.sparse();
    }
    if let Some(hook) = env.on_rows.clone() {
        let step = step.to_string();
        sink.on_rows(crate::plan::export::PAGE, move |n| hook(&step, n));
    }
    let mut note = None;
    match spec.what {
        ExportWhat::Devices => devices(client, plan, &mut sink).await?,
        ExportWhat::Groups => groups(client, plan, &mut sink).await?,
        ExportWhat::Apps => apps(client, &mut sink).await?,
        ExportWhat::Installed => installed(client, plan, &mut sink).await?,
        ExportWhat::AlarmRules => rules(client, &mut sink).await?,
        ExportWhat::Commands => {
            let since = match spec.since {
                None => None,
                Some(Since::Ago(d)) => {
                    Some(jiff::Timestamp::try_from(started - d).unwrap_or_default())
                }
                Some(Since::LastRun) => {
                    if env.last_run.is_none() {
                        note = Some("no earlier successful run: every command request");
                    }
                    env.last_run
                }
            };
            commands(client, since, &mut sink).await?
        }
    }
    let (path, rows) = sink.finish().map_err(io)?;
    let path = path.display().to_string();
    Ok(Done {
        summary: match note {
            Some(n) => format!("exported {rows} {} to {path} ({n})", spec.what.as_str()),
            None => format!("exported {rows} {} to {path}", spec.what.as_str()),
        },
        result: json!({"file": path, "rows": rows, "what": spec.what.as_str(), "action": "exported"}),
        follow: None,
        reconciled: false,
    })
}

fn owned(c: &[&str]) -> Vec<String> {
    c.iter().map(|s| s.to_string()).collect()
}

fn put(sink: &mut Sink, row: &[Value]) -> Result<(), Failure> {
    sink.row(row)
        .map_err(|e| local(format!("cannot write the export: {e}")))
}

/// Group id → path below the root.
type GroupPaths = HashMap<String, String>;

/// [`GroupPaths`] from one listing of every group.
async fn group_paths(client: &Client) -> Result<GroupPaths, Failure> {
    let mut out = HashMap::new();
    let mut s =
        std::pin::pin!(client.list_values(Endpoint::ListGroups, None, Vec::new(), PageStyle::Drf));
    while let Some(g) = s.try_next().await.map_err(fail)? {
        let id = g.get("id").map(text).unwrap_or_default();
        let path = g
            .get("path")
            .and_then(Value::as_str)
            .or_else(|| g.get("name").and_then(Value::as_str))
            .unwrap_or_default();
        out.insert(id, strip_root(path));
    }
    Ok(out)
}

fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// The group ids a legacy device names (URLs reduced to ids).
fn device_groups(d: &Value) -> Vec<String> {
    match d.get("groups") {
        Some(Value::Array(gs)) => gs
            .iter()
            .filter_map(|g| match g {
                Value::String(s) => Some(id_from_ref(s)),
                Value::Object(o) => o.get("id").map(text),
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    }
}

fn serial_of(d: &Value) -> Value {
    d.get("serial")
        .filter(|v| !v.is_null())
        .or_else(|| at_path(d, "hardwareInfo.serialNumber"))
        .cloned()
        .unwrap_or(Value::Null)
}

/// A device field by the names the docs list, else by dotted path.
fn device_field(d: &Value, field: &str, paths: &HashMap<String, String>) -> Value {
    let first = |ps: &[&str]| {
        ps.iter()
            .find_map(|p| at_path(d, p).filter(|v| !v.is_null()))
            .cloned()
            .unwrap_or(Value::Null)
    };
    match field {
        "id" => first(&["id"]),
        "name" => first(&["device_name", "name"]),
        "alias" => first(&["alias_name", "alias"]),
        "serial" => serial_of(d),
        "state" => match d.get("state") {
            Some(Value::Number(n)) => Value::String(match n.as_i64() {
                Some(1) => "ONLINE".into(),
                Some(60) => "OFFLINE".into(),
                _ => n.to_string(),
            }),
            Some(v) => v.clone(),
            None => Value::Null,
        },
        "group" => device_groups(d)
            .first()
            .and_then(|g| paths.get(g))
            .map_or(Value::Null, |p| Value::String(p.clone())),
        "group_id" => device_groups(d)
            .first()
            .map_or(Value::Null, |g| Value::String(g.clone())),
        "model" => first(&["hardwareInfo.model", "model"]),
        "os_version" => first(&["softwareInfo.androidVersion", "os_version"]),
        "last_seen" => first(&["last_seen", "updated_on"]),
        "imei" => first(&["networkInfo.imei1", "imei"]),
        other => first(&[other]),
    }
}

/// Streams the devices of the plan's scope to `each`, pages as they come.
async fn each_device(
    client: &Client,
    scope: &ExportScope,
    mut each: impl FnMut(&Value) -> Result<(), Failure>,
) -> Result<(), Failure> {
    let (skip, ids, serials): (HashSet<&str>, HashSet<&str>, HashSet<&str>) = match scope {
        ExportScope::Groups { skip, .. } => (
            skip.iter().map(String::as_str).collect(),
            HashSet::new(),
            HashSet::new(),
        ),
        ExportScope::Devices { ids, serials, .. } => (
            HashSet::new(),
            ids.iter().map(String::as_str).collect(),
            serials.iter().map(String::as_str).collect(),
        ),
        ExportScope::All => Default::default(),
    };
    for sel in scope.listings() {
        let mut s =
            std::pin::pin!(client.list_device_values(&super::inventory::device_filter(&sel)));
        while let Some(d) = s.try_next().await.map_err(fail)? {
            if !skip.is_empty() && device_groups(&d).iter().any(|g| skip.contains(g.as_str())) {
                continue;
            }
            let listed = ids.is_empty() && serials.is_empty()
                || d.get("id")
                    .and_then(Value::as_str)
                    .is_some_and(|i| ids.contains(i))
                || serial_of(&d).as_str().is_some_and(|s| serials.contains(s));
            if listed {
                each(&d)?;
            }
        }
    }
    Ok(())
}

async fn devices(client: &Client, plan: &ExportPlan, sink: &mut Sink) -> Result<(), Failure> {
    let paths = group_paths(client).await?;
    let columns = sink.columns().to_vec();
    each_device(client, &plan.scope, |d| {
        let row: Vec<Value> = columns.iter().map(|c| device_field(d, c, &paths)).collect();
        put(sink, &row)
    })
    .await
}

async fn groups(client: &Client, plan: &ExportPlan, sink: &mut Sink) -> Result<(), Failure> {
    let keep: Option<HashSet<&str>> = match &plan.scope {
        ExportScope::Groups { groups, .. } => Some(groups.iter().map(|g| g.id.as_str()).collect()),
        _ => None,
    };
    let columns = sink.columns().to_vec();
    let mut s =
        std::pin::pin!(client.list_values(Endpoint::ListGroups, None, Vec::new(), PageStyle::Drf));
    while let Some(g) = s.try_next().await.map_err(fail)? {
        let id = g.get("id").map(text).unwrap_or_default();
        if keep.as_ref().is_some_and(|k| !k.contains(id.as_str())) {
            continue;
        }
        let row: Vec<Value> = columns
            .iter()
            .map(|c| match c.as_str() {
                "path" => g
                    .get("path")
                    .and_then(Value::as_str)
                    .map_or(Value::Null, |p| Value::String(strip_root(p))),
                "parent_id" => g
                    .get("parent")
                    .and_then(Value::as_str)
                    .map_or(Value::Null, |p| Value::String(id_from_ref(p))),
                other => at_path(&g, other).cloned().unwrap_or(Value::Null),
            })
            .collect();
        put(sink, &row)?;
    }
    Ok(())
}

async fn apps(client: &Client, sink: &mut Sink) -> Result<(), Failure> {
    let mut s =
        std::pin::pin!(client.list_values(Endpoint::ListApps, None, Vec::new(), PageStyle::Drf));
    while let Some(app) = s.try_next().await.map_err(fail)? {
        let app_id = app.get("id").map(text).unwrap_or_default();
        let mut vs = std::pin::pin!(client.list_values(
            Endpoint::ListAppVersions,
            Some(&app_id),
            Vec::new(),
            PageStyle::Drf
        ));
        while let Some(v) = vs.try_next().await.map_err(fail)? {
            let field = |k: &str| v.get(k).cloned().unwrap_or(Value::Null);
            put(
                sink,
                &[
                    Value::String(app_id.clone()),
                    app.get("package_name").cloned().unwrap_or(Value::Null),
                    app.get("application_name").cloned().unwrap_or(Value::Null),
                    field("id"),
                    field("version_code"),
                    field("version_name"),
                    field("installed_count"),
                ],
            )?;
        }
    }
    Ok(())
}

async fn installed(client: &Client, plan: &ExportPlan, sink: &mut Sink) -> Result<(), Failure> {
    let package = Value::String(plan.spec.package.clone().unwrap_or_default());
    match plan.method.unwrap_or(InstalledMethod::PerVersion) {
        InstalledMethod::PerVersion => {
            // The target's devices, when it is not the whole fleet: only their ids are kept.
            let wanted: Option<HashSet<String>> = if plan.scope.is_all() {
                None
            } else {
                let mut ids = HashSet::new();
                each_device(client, &plan.scope, |d| {
                    ids.insert(d.get("id").map(text).unwrap_or_default());
                    Ok(())
                })
                .await?;
                Some(ids)
            };
            for v in &plan.versions {
                let mut s = std::pin::pin!(client.install_devices(&v.app_id, &v.id));
                while let Some(d) = s.try_next().await.map_err(fail)? {
                    let id = d.get("id").map(text).unwrap_or_default();
                    if wanted.as_ref().is_some_and(|w| !w.contains(&id)) {
                        continue;
                    }
                    let field = |k: &str| d.get(k).cloned().unwrap_or(Value::Null);
                    put(
                        sink,
                        &[
                            Value::String(id),
                            field("device_name"),
                            field("alias_name"),
                            field("group_name"),
                            package.clone(),
                            Value::String(v.version_code.clone()),
                            v.version_name.clone().map_or(Value::Null, Value::String),
                            Value::String(v.id.clone()),
                        ],
                    )?;
                }
            }
        }
        InstalledMethod::PerDevice => {
            let paths = group_paths(client).await?;
            // The device listing is walked first (ids and labels only), then each device's
            // app list; a page of devices is small next to the app reads it leads to.
            let mut found: Vec<[Value; 4]> = Vec::new();
            each_device(client, &plan.scope, |d| {
                found.push([
                    d.get("id").cloned().unwrap_or(Value::Null),
                    device_field(d, "name", &paths),
                    device_field(d, "alias", &paths),
                    device_field(d, "group", &paths),
                ]);
                Ok(())
            })
            .await?;
            let by_code: HashMap<&str, &crate::plan::PackageVersion> = plan
                .versions
                .iter()
                .map(|v| (v.version_code.as_str(), v))
                .collect();
            for [id, name, alias, group] in found {
                let did = text(&id);
                let mut s = std::pin::pin!(client.device_apps(&did, plan.spec.package.as_deref()));
                while let Some(a) = s.try_next().await.map_err(fail)? {
                    if a.get("package_name") != Some(&package) {
                        continue;
                    }
                    let code = a.get("version_code").map(text).unwrap_or_default();
                    let Some(v) = by_code.get(code.as_str()) else {
                        // Another version than the one exported.
                        if plan.spec.version_code.is_some() {
                            continue;
                        }
                        put(
                            sink,
                            &[
                                id.clone(),
                                name.clone(),
                                alias.clone(),
                                group.clone(),
                                package.clone(),
                                Value::String(code),
                                a.get("version_name").cloned().unwrap_or(Value::Null),
                                Value::Null,
                            ],
                        )?;
                        continue;
                    };
                    put(
                        sink,
                        &[
                            id.clone(),
                            name.clone(),
                            alias.clone(),
                            group.clone(),
                            package.clone(),
                            Value::String(v.version_code.clone()),
                            v.version_name.clone().map_or(Value::Null, Value::String),
                            Value::String(v.id.clone()),
                        ],
                    )?;
                }
            }
        }
    }
    Ok(())
}

/// A rule as the job language's `alarm_rule` block: ids where Esper expands objects,
/// nothing for what the rule does not set.
pub fn rule_block(r: &Value) -> Vec<Value> {
    let ids = |k: &str| -> Value {
        match r.get(k) {
            Some(Value::Array(items)) if !items.is_empty() => Value::Array(
                items
                    .iter()
                    .map(|i| match i {
                        Value::Object(o) => o.get("id").cloned().unwrap_or(Value::Null),
                        other => other.clone(),
                    })
                    .collect(),
            ),
            _ => Value::Null,
        }
    };
    let list = |k: &str| match r.get(k) {
        Some(Value::Array(items)) if !items.is_empty() => Value::Array(items.clone()),
        _ => Value::Null,
    };
    let conditions = r.get("conditions").map(|c| {
        let mut m = serde_json::Map::new();
        for k in ["comparator", "value", "unit", "toggle_state"] {
            if let Some(v) = c.get(k).filter(|v| !v.is_null()) {
                m.insert(k.to_string(), v.clone());
            }
        }
        Value::Object(m)
    });
    let plain = |k: &str| r.get(k).cloned().unwrap_or(Value::Null);
    vec![
        plain("name"),
        plain("description"),
        plain("metric"),
        conditions.unwrap_or(Value::Null),
        plain("realert_interval"),
        plain("repeat_times"),
        plain("is_active"),
        list("action_emails"),
        list("actions"),
        ids("alert_channels"),
        ids("groups"),
        ids("devices"),
    ]
}

async fn rules(client: &Client, sink: &mut Sink) -> Result<(), Failure> {
    let mut s = std::pin::pin!(client.list_values(
        Endpoint::ListAlarmRules,
        None,
        Vec::new(),
        PageStyle::Drf
    ));
    while let Some(r) = s.try_next().await.map_err(fail)? {
        put(sink, &rule_block(&r))?;
    }
    Ok(())
}

/// How many command requests one status listing asks about.
const REQUESTS_PER_STATUS_READ: usize = 50;

async fn commands(
    client: &Client,
    since: Option<jiff::Timestamp>,
    sink: &mut Sink,
) -> Result<(), Failure> {
    // Esper's listing has no time filter: requests are kept by their `created_at`.
    let mut requests: Vec<Value> = Vec::new();
    let mut s = std::pin::pin!(client.list_values(
        Endpoint::ListCommands,
        None,
        Vec::new(),
        PageStyle::Envelope
    ));
    while let Some(c) = s.try_next().await.map_err(fail)? {
        let created = c
            .get("created_at")
            .and_then(Value::as_str)
            .and_then(|t| t.parse::<jiff::Timestamp>().ok());
        if let (Some(since), Some(created)) = (since, created)
            && created < since
        {
            continue;
        }
        if since.is_some() && created.is_none() {
            continue;
        }
        requests.push(json!({
            "id": c.get("id").cloned().unwrap_or(Value::Null),
            "command": c.get("command").cloned().unwrap_or(Value::Null),
            "command_type": c.get("command_type").cloned().unwrap_or(Value::Null),
            "created_at": c.get("created_at").cloned().unwrap_or(Value::Null),
        }));
    }
    for batch in requests.chunks(REQUESTS_PER_STATUS_READ) {
        let by_id: HashMap<String, &Value> = batch.iter().map(|r| (text(&r["id"]), r)).collect();
        let ids: Vec<String> = batch.iter().map(|r| text(&r["id"])).collect();
        let q = vec![("request".to_string(), ids.join(","))];
        let mut s = std::pin::pin!(client.list_values(
            Endpoint::CommandStatuses,
            None,
            q,
            PageStyle::Envelope
        ));
        while let Some(st) = s.try_next().await.map_err(fail)? {
            let rid = st.get("request").map(text).unwrap_or_default();
            let Some(r) = by_id.get(&rid) else { continue };
            let field = |k: &str| st.get(k).cloned().unwrap_or(Value::Null);
            put(
                sink,
                &[
                    Value::String(rid.clone()),
                    r["command"].clone(),
                    r["command_type"].clone(),
                    r["created_at"].clone(),
                    field("device"),
                    field("state"),
                    field("reason"),
                    field("updated_at"),
                ],
            )?;
        }
    }
    Ok(())
}
