//! The adapter between the engine and the client: the executor's [`Dispatch`] and the
//! planner's [`Inventory`]. It is the one place that knows both sides: it maps the client's
//! [`ApiError`] (and its [`ErrorClass`]) onto the executor's [`Failure`] and Esper's
//! command states onto [`DeviceState`]s.
//!
//! This is where "never create a duplicate" is implemented: alarm rules are always looked
//! up by name before a write, and a command request whose create had an unknown outcome is
//! searched for (same command, arguments, devices and groups, created since the task
//! started) before it is posted again.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use futures::future::BoxFuture;
use futures::{FutureExt, TryStreamExt};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use super::client::{CommandFilter, DeviceFilter};
use super::model::{AlarmRule, CommandRequest, CommandState};
use super::{ApiError, Client, ErrorClass};
use crate::base::{FailureClass, Hint};
use crate::exec::{
    AttemptCx, DeviceCounts, DeviceResult, DeviceState, Dispatch, Done, Failure, Followed,
};
use crate::job::{DeviceSelector, OnExists};
use crate::plan::{GroupInfo, Inventory, InventoryError, Item, ItemKind, Operation, Task};

/// The executor's class for a client error class: the same names, one vocabulary each.
fn failure_class(c: ErrorClass) -> FailureClass {
    match c {
        ErrorClass::RateLimited => FailureClass::RateLimited,
        ErrorClass::Server => FailureClass::Server,
        ErrorClass::Auth => FailureClass::Auth,
        ErrorClass::NotFound => FailureClass::NotFound,
        ErrorClass::Client => FailureClass::Client,
        ErrorClass::Connect => FailureClass::Connect,
        ErrorClass::Timeout => FailureClass::Timeout,
        ErrorClass::Transport => FailureClass::Transport,
        ErrorClass::Decode => FailureClass::Decode,
        ErrorClass::Build => FailureClass::Build,
        ErrorClass::Stopped => FailureClass::Stopped,
    }
}

impl From<&ApiError> for Failure {
    fn from(e: &ApiError) -> Failure {
        Failure {
            class: failure_class(e.class()),
            http_status: e.status(),
            esper_message: e.server_message(),
            hint: e.hint(),
            description: e.description(),
            retry_after: e.retry_after(),
            maybe_processed: e.maybe_processed(),
        }
    }
}

/// Where a device ended up, in the executor's terms. States that are not final
/// (queued, in progress, scheduled, unknown ones) are pending.
fn device_state(s: &CommandState) -> DeviceState {
    match s {
        CommandState::Success => DeviceState::Succeeded,
        CommandState::Failure => DeviceState::Failed,
        CommandState::TimeOut => DeviceState::TimedOut,
        CommandState::Cancelled => DeviceState::Cancelled,
        _ => DeviceState::Pending,
    }
}

/// `ApiError` to `Failure`, for `map_err`.
fn fail(e: ApiError) -> Failure {
    Failure::from(&e)
}

/// How command tracking polls.
#[derive(Debug, Clone)]
pub struct PollSettings {
    pub initial: Duration,
    pub max: Duration,
}

impl Default for PollSettings {
    fn default() -> Self {
        PollSettings {
            initial: Duration::from_secs(2),
            max: Duration::from_secs(30),
        }
    }
}

/// Runs plan operations against Esper.
pub struct EsperDispatch {
    pub client: Client,
    pub poll: PollSettings,
}

/// Server clocks and ours differ; a request created this long before the task started
/// still counts as the task's own when read back.
const CLOCK_SKEW: Duration = Duration::from_secs(120);

impl EsperDispatch {
    pub fn new(client: Client, poll: PollSettings) -> Arc<EsperDispatch> {
        Arc::new(EsperDispatch { client, poll })
    }

    async fn alarm_rule(
        &self,
        name: &str,
        body: &Value,
        on_exists: OnExists,
        cx: &AttemptCx,
    ) -> Result<Done, Failure> {
        let found: Vec<AlarmRule> = self
            .client
            .list_alarm_rules(Some(name))
            .try_collect()
            .await
            .map_err(fail)?;
        // The name filter may match loosely; the natural key is the exact name.
        let existing: Vec<&AlarmRule> = found.iter().filter(|r| r.name == name).collect();
        if let Some(rule) = existing.first() {
            if existing.len() > 1 {
                tracing::warn!(
                    rule = name,
                    count = existing.len(),
                    "several alarm rules share this name; updating the first"
                );
            }
            let same = rule_matches(rule, body);
            if cx.uncertain && same {
                return Ok(done(
                    format!("alarm rule {} was created by an earlier attempt", rule.id),
                    rule_result(&rule.id, "created"),
                    true,
                ));
            }
            return match on_exists {
                OnExists::Skip => Ok(done(
                    format!("alarm rule {} exists; skipped", rule.id),
                    rule_result(&rule.id, "skipped"),
                    true,
                )),
                OnExists::Fail => Err(Failure {
                    hint: Some("set on_exists to `update` or `skip` to keep it".into()),
                    ..Failure::local(
                        FailureClass::Conflict,
                        format!(
                            "alarm rule `{name}` already exists (id {}) and on_exists is `fail`",
                            rule.id
                        ),
                    )
                }),
                OnExists::Update if same => Ok(done(
                    format!("alarm rule {} is up to date", rule.id),
                    rule_result(&rule.id, "unchanged"),
                    true,
                )),
                OnExists::Update => {
                    let r = self
                        .client
                        .replace_alarm_rule(&rule.id, body)
                        .await
                        .map_err(fail)?;
                    Ok(done(
                        format!("updated alarm rule {}", r.id),
                        rule_result(&r.id, "updated"),
                        false,
                    ))
                }
            };
        }
        let r = self.client.create_alarm_rule(body).await.map_err(fail)?;
        Ok(done(
            format!("created alarm rule {}", r.id),
            rule_result(&r.id, "created"),
            false,
        ))
    }

    async fn command(&self, body: &Value, cx: &AttemptCx) -> Result<Done, Failure> {
        if cx.uncertain
            && let Some(found) = self.find_command(body, cx.task_started).await?
        {
            return Ok(Done {
                summary: format!(
                    "command request {} was created by an earlier attempt",
                    found.id
                ),
                result: json!({"id": found.id, "command_id": found.id, "action": "created"}),
                follow: Some(found.id),
                reconciled: true,
            });
        }
        let r = self.client.create_command(body).await.map_err(fail)?;
        Ok(Done {
            summary: format!("created command request {}", r.id),
            result: json!({"id": r.id, "command_id": r.id, "action": "created"}),
            follow: Some(r.id),
            reconciled: false,
        })
    }

    /// Uploads an APK unless its package version already exists. The read-back comes
    /// first on every attempt, so an upload whose answer was lost is never repeated.
    async fn app_upload(
        &self,
        file: &str,
        package: Option<&str>,
        version_code: Option<&str>,
    ) -> Result<Done, Failure> {
        let local = |m: String| Failure::local(FailureClass::Build, m);
        let (package, code) = match (package, version_code) {
            (Some(p), Some(c)) => (p.to_string(), c.to_string()),
            _ => {
                let bytes = tokio::fs::read(file)
                    .await
                    .map_err(|e| local(format!("cannot read {file}: {e}")))?;
                let info = crate::apk::read(&bytes).map_err(|e| {
                    local(format!(
                        "{file}: {e}; give `package` and `version_code` in the step"
                    ))
                })?;
                (
                    package.map(str::to_string).unwrap_or(info.package),
                    version_code
                        .map(str::to_string)
                        .unwrap_or(info.version_code),
                )
            }
        };
        if let Some((app, version)) = self.find_version(&package, &code).await? {
            return Ok(done(
                format!("{package} {code} already exists (version {version})"),
                upload_result(&app, &version, &package, &code, "exists"),
                true,
            ));
        }
        let app = self
            .client
            .upload_app(std::path::Path::new(file))
            .await
            .map_err(fail)?;
        let version = app
            .versions
            .iter()
            .find(|v| v.version_code == code)
            .or(app.versions.first())
            .map(|v| v.id.clone())
            .ok_or_else(|| Failure {
                maybe_processed: true,
                ..Failure::local(
                    FailureClass::Decode,
                    format!("the upload of {file} answered without a version"),
                )
            })?;
        Ok(done(
            format!("uploaded {package} {code} (version {version})"),
            upload_result(&app.id, &version, &package, &code, "uploaded"),
            false,
        ))
    }

    async fn find_version(
        &self,
        package: &str,
        code: &str,
    ) -> Result<Option<(String, String)>, Failure> {
        find_app_version(&self.client, package, code)
            .await
            .map_err(fail)
    }

    /// Uploads a content file unless one with the same name and size exists.
    async fn content_upload(&self, file: &str) -> Result<Done, Failure> {
        let path = std::path::Path::new(file);
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| file.to_string());
        let size = tokio::fs::metadata(path)
            .await
            .map_err(|e| Failure::local(FailureClass::Build, format!("cannot read {file}: {e}")))?
            .len();
        let found: Vec<super::model::Content> = self
            .client
            .list_content(Some(&name))
            .try_collect()
            .await
            .map_err(fail)?;
        let same_size = |c: &super::model::Content| {
            c.size.as_ref().and_then(|s| {
                s.as_u64()
                    .or_else(|| s.as_str().and_then(|t| t.parse().ok()))
            }) == Some(size)
        };
        if let Some(c) = found
            .iter()
            .find(|c| c.name.as_deref() == Some(name.as_str()) && same_size(c))
        {
            return Ok(done(
                format!("{name} already exists (content {})", c.id),
                json!({"content_id": c.id, "action": "exists"}),
                true,
            ));
        }
        let c = self.client.upload_content(path).await.map_err(fail)?;
        Ok(done(
            format!("uploaded {name} (content {})", c.id),
            json!({"content_id": c.id, "action": "uploaded"}),
            false,
        ))
    }

    /// A command request equal to `body` created since the task started, if any.
    async fn find_command(
        &self,
        body: &Value,
        since: SystemTime,
    ) -> Result<Option<CommandRequest>, Failure> {
        let ids = |k: &str| -> Vec<String> {
            body.get(k)
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(|v| v.as_str().map(str::to_string))
                        .collect()
                })
                .unwrap_or_default()
        };
        let filter = CommandFilter {
            devices: ids("devices"),
            groups: ids("groups"),
            command: body
                .get("command")
                .and_then(Value::as_str)
                .map(str::to_string),
        };
        let found: Vec<CommandRequest> = self
            .client
            .list_commands(&filter)
            .try_collect()
            .await
            .map_err(fail)?;
        let since = since
            .checked_sub(CLOCK_SKEW)
            .unwrap_or(SystemTime::UNIX_EPOCH);
        Ok(found.into_iter().find(|c| {
            command_matches(c, body)
                && c.created_at
                    .as_deref()
                    .and_then(parse_time)
                    .is_none_or(|t| t >= since)
        }))
    }
}

fn rule_result(id: &str, action: &str) -> Value {
    json!({"id": id, "rule_id": id, "action": action})
}

fn done(summary: String, result: Value, reconciled: bool) -> Done {
    Done {
        summary,
        result,
        follow: None,
        reconciled,
    }
}

fn upload_result(app: &str, version: &str, package: &str, code: &str, action: &str) -> Value {
    json!({"version_id": version, "application_id": app, "package": package, "version_code": code, "action": action})
}

fn parse_time(s: &str) -> Option<SystemTime> {
    let ts: jiff::Timestamp = s.parse().ok()?;
    Some(SystemTime::from(ts))
}

fn sorted(v: &[String]) -> Vec<String> {
    let mut v = v.to_vec();
    v.sort();
    v
}

fn str_list(body: &Value, key: &str) -> Vec<String> {
    body.get(key)
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// Same command, arguments, devices and groups (order-insensitive).
fn command_matches(c: &CommandRequest, body: &Value) -> bool {
    let args = body.get("command_args").cloned().unwrap_or(Value::Null);
    let their_args = c.command_args.clone().unwrap_or(Value::Null);
    c.command.as_deref() == body.get("command").and_then(Value::as_str)
        && strip_nulls(&their_args) == strip_nulls(&args)
        && sorted(&c.devices) == sorted(&str_list(body, "devices"))
        && sorted(&c.groups) == sorted(&str_list(body, "groups"))
}

fn strip_nulls(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| (k.clone(), strip_nulls(v)))
                .collect(),
        ),
        other => other.clone(),
    }
}

/// Whether the rule as read already has what `body` would write. Reads return groups and
/// devices as objects; writes send ids, so compare ids.
fn rule_matches(rule: &AlarmRule, body: &Value) -> bool {
    // Compare every field the job sets (and only those: fields the job leaves out are not
    // managed). Reads expand groups, devices and alert channels to objects; writes send ids.
    let actual = serde_json::to_value(rule).unwrap_or(Value::Null);
    let Value::Object(want) = body else {
        return false;
    };
    want.iter()
        .filter(|(k, _)| !matches!(k.as_str(), "enterprise" | "name"))
        .all(|(k, v)| {
            let have = actual.get(k).unwrap_or(&Value::Null);
            match k.as_str() {
                "groups" | "devices" | "alert_channels" => id_set(v) == id_set(have),
                _ => subset_eq(v, have),
            }
        })
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

impl Dispatch for EsperDispatch {
    fn stop(&self) {
        self.client.close();
    }

    fn attempt<'a>(
        &'a self,
        task: &'a Task,
        cx: &'a AttemptCx,
    ) -> BoxFuture<'a, Result<Done, Failure>> {
        async move {
            match &task.op {
                Operation::Command { body, .. } => self.command(body, cx).await,
                Operation::AlarmRule { name, body, on_exists } => self.alarm_rule(name, body, *on_exists, cx).await,
                Operation::GroupMove { group_id, device_ids } => {
                    // Adding a device to the group it is already in changes nothing, so a
                    // retry after an unknown outcome is safe.
                    self.client.move_devices(group_id, device_ids, "add").await.map_err(fail)?;
                    Ok(done(format!("moved {} devices", device_ids.len()), json!({"moved": device_ids.len(), "group": group_id}), false))
                }
                Operation::AppUpload { file, package, version_code } => self.app_upload(file, package.as_deref(), version_code.as_deref()).await,
                Operation::ContentUpload { file } => self.content_upload(file).await,
                Operation::Request { method, path, query, body } => {
                    if cx.uncertain && method.eq_ignore_ascii_case("POST") {
                        return Err(Failure {
                            maybe_processed: true,
                            ..Failure::local(FailureClass::Conflict, format!("the outcome of POST {path} is unknown and a raw request cannot be read back; not sending it again"))
                        });
                    }
                    let q: Vec<(String, String)> = query.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
                    let r = self.client.raw(method, path, &q, body.clone()).await.map_err(fail)?;
                    Ok(done(format!("{method} {path} answered {}", r.status), json!({"status": r.status, "body": r.body}), false))
                }
            }
        }
        .boxed()
    }

    fn follow<'a>(
        &'a self,
        _task: &'a Task,
        id: &'a str,
        timeout: Duration,
        stop: &'a CancellationToken,
    ) -> BoxFuture<'a, Followed> {
        async move {
            let until = tokio::time::Instant::now() + timeout;
            let mut interval = self.poll.initial;
            let mut finished = false;
            loop {
                match self.client.command_stats(id).await {
                    Ok(s) if s.total() > 0 && s.pending() == 0 => {
                        finished = true;
                        break;
                    }
                    Ok(_) => {}
                    Err(e) => {
                        tracing::debug!(command = id, error = %e, "status poll failed; polling on")
                    }
                }
                let now = tokio::time::Instant::now();
                if now >= until || stop.is_cancelled() {
                    break;
                }
                tokio::select! {
                    _ = tokio::time::sleep(interval.min(until - now)) => {}
                    _ = stop.cancelled() => {}
                }
                interval = (interval.mul_f64(1.5)).min(self.poll.max);
            }
            // One pass over the per-device rows for the report, tolerant of transient errors.
            let mut rows = None;
            for _ in 0..5 {
                match self
                    .client
                    .command_statuses(id, None)
                    .try_collect::<Vec<_>>()
                    .await
                {
                    Ok(r) => {
                        rows = Some(r);
                        break;
                    }
                    Err(e)
                        if e.class() == ErrorClass::RateLimited
                            || e.class() == ErrorClass::Server
                            || e.maybe_processed() =>
                    {
                        tokio::time::sleep(self.poll.initial).await;
                    }
                    Err(_) => break,
                }
            }
            let Some(rows) = rows else {
                tracing::warn!(command = id, "per-device status could not be read");
                return Followed {
                    command: id.to_string(),
                    finished,
                    counts: None,
                    devices: Vec::new(),
                };
            };
            let mut counts = DeviceCounts::default();
            let mut devices = Vec::new();
            for r in &rows {
                let state = device_state(&r.state);
                counts.add(state);
                if state != DeviceState::Succeeded {
                    devices.push(DeviceResult {
                        id: r.device.clone(),
                        state,
                        reason: r.reason.clone(),
                    });
                }
            }
            Followed {
                command: id.to_string(),
                finished,
                counts: Some(counts),
                devices,
            }
        }
        .boxed()
    }
}

/// The root group Esper puts every group under; paths in job files are written below it.
const ROOT_GROUP: &str = "All devices";

fn inv_err(e: ApiError) -> InventoryError {
    // The inventory error is one line of text, so the hint goes inline.
    InventoryError(format!(
        "reading targets failed: {}",
        crate::base::one_line(&e)
    ))
}

/// Retries an idempotent read (a whole listing, restarted from its first page) on 429,
/// 5xx and network errors, with the same backoff shape as tasks. Plans are made of reads,
/// and one 502 while listing groups must not sink a plan.
async fn read_retrying<T, F, Fut>(what: F) -> Result<T, InventoryError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, ApiError>>,
{
    use backon::{ExponentialBuilder, Retryable};
    let backoff = ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(250))
        .with_max_delay(Duration::from_secs(10))
        .with_max_times(6)
        .with_jitter();
    what.retry(backoff)
        .sleep(tokio::time::sleep)
        .when(|e: &ApiError| Failure::from(e).retryable())
        .adjust(|e: &ApiError, d| d.map(|d| d.max(e.retry_after().unwrap_or_default().min(Duration::from_secs(60)))))
        .notify(|e: &ApiError, d: Duration| tracing::warn!(error = %e, wait_ms = d.as_millis() as u64, "read failed; retrying"))
        .await
        .map_err(inv_err)
}

impl Inventory for Client {
    fn groups(&self) -> BoxFuture<'_, Result<Vec<GroupInfo>, InventoryError>> {
        async move {
            let groups: Vec<super::model::DeviceGroup> =
                read_retrying(|| self.list_groups(None).try_collect()).await?;
            Ok(groups
                .into_iter()
                .map(|g| {
                    let path = g.path.clone().unwrap_or_else(|| g.name.clone());
                    let path = path
                        .strip_prefix(&format!("{ROOT_GROUP}/"))
                        .map(str::to_string)
                        .unwrap_or(path);
                    GroupInfo {
                        id: g.id,
                        name: g.name,
                        path,
                    }
                })
                .collect())
        }
        .boxed()
    }

    fn devices<'a>(
        &'a self,
        sel: &'a DeviceSelector,
    ) -> BoxFuture<'a, Result<Vec<Item>, InventoryError>> {
        async move {
            let to_item = |d: super::model::Device| Item {
                kind: ItemKind::Device,
                id: d.id,
                name: d.name,
                detail: d.serial,
            };
            if !sel.ids.is_empty() {
                let mut out = Vec::new();
                for id in &sel.ids {
                    out.push(to_item(read_retrying(|| self.get_device(id)).await?));
                }
                return Ok(out);
            }
            if !sel.serials.is_empty() {
                // One cursor scan of the fleet (1,000 a page) beats a request per serial.
                let wanted: std::collections::BTreeSet<&str> =
                    sel.serials.iter().map(String::as_str).collect();
                let all: Vec<super::model::Device> =
                    read_retrying(|| self.list_devices_v2(Vec::new()).try_collect()).await?;
                return Ok(all
                    .into_iter()
                    .filter(|d| d.serial.as_deref().is_some_and(|s| wanted.contains(s)))
                    .map(to_item)
                    .collect());
            }
            // The legacy list filters state by Esper's integers.
            let state = sel
                .state
                .as_deref()
                .map(|s| match s.to_ascii_lowercase().as_str() {
                    "online" => "1".to_string(),
                    "offline" => "60".to_string(),
                    other => other.to_string(),
                });
            let filter = DeviceFilter {
                group: sel.group.clone(),
                name: sel.name.clone(),
                serial: sel.serial.clone(),
                state,
                tags: sel.tags.clone(),
            };
            let devices: Vec<super::model::Device> =
                read_retrying(|| self.list_devices(&filter).try_collect()).await?;
            Ok(devices.into_iter().map(to_item).collect())
        }
        .boxed()
    }

    fn app_version<'a>(
        &'a self,
        package: &'a str,
        version_code: &'a str,
    ) -> BoxFuture<'a, Result<Option<String>, InventoryError>> {
        async move {
            Ok(
                read_retrying(|| find_app_version(self, package, version_code))
                    .await?
                    .map(|(_, v)| v),
            )
        }
        .boxed()
    }
}

/// The (application id, version id) of a package's version code, if it exists.
async fn find_app_version(
    client: &Client,
    package: &str,
    code: &str,
) -> Result<Option<(String, String)>, ApiError> {
    let apps: Vec<super::model::Application> =
        client.list_apps(Some(package)).try_collect().await?;
    for app in apps.iter().filter(|a| a.package_name == package) {
        if let Some(v) = app.versions.iter().find(|v| v.version_code == code) {
            return Ok(Some((app.id.clone(), v.id.clone())));
        }
        let versions: Vec<super::model::AppVersion> = client
            .list_app_versions(&app.id, Some(code))
            .try_collect()
            .await?;
        if let Some(v) = versions.into_iter().find(|v| v.version_code == code) {
            return Ok(Some((app.id.clone(), v.id)));
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_compare_on_every_managed_field() {
        let rule: AlarmRule = serde_json::from_value(json!({
            "id": "r1", "name": "n", "metric": "battery_level",
            "conditions": {"value": 15.0, "unit": "Percent", "comparator": "LessThanThreshold", "toggle_state": false},
            "groups": [{"id": "g1", "name": "0001", "path": "All devices/Stores/North/0001"}],
            "alert_channels": [{"id": 12, "name": "ops"}],
            "realert_interval": 3600, "is_active": true, "action_emails": ["a@x"], "description": "d"
        }))
        .unwrap();
        let body = json!({
            "enterprise": "e", "name": "n", "metric": "battery_level",
            "conditions": {"value": 15, "unit": "Percent", "comparator": "LessThanThreshold"},
            "groups": ["g1"], "alert_channels": [12], "realert_interval": 3600, "action_emails": ["a@x"]
        });
        assert!(rule_matches(&rule, &body));
        for (k, v) in [
            ("is_active", json!(false)),
            ("action_emails", json!(["b@x"])),
            ("description", json!("other")),
            ("alert_channels", json!([13])),
            ("groups", json!(["g2"])),
        ] {
            let mut changed = body.clone();
            changed[k] = v;
            assert!(
                !rule_matches(&rule, &changed),
                "a change of `{k}` must be noticed"
            );
        }
    }
}
