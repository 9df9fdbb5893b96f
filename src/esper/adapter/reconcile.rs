//! Read-back by natural key: how a retried or resumed task learns that its create already
//! happened, so it never makes a duplicate.
//!
//! **Invariant:** a create whose outcome is unknown is never re-sent before a read-back by
//! its natural key found nothing. The natural keys:
//!
//! - **alarm rule**: the exact `name` (the list's `?name=` filter may match loosely, so
//!   the exact comparison happens here). The read-back runs before every write, certain or
//!   not, because `on_exists` decides what an existing rule means; [`rule_matches`] tells
//!   "created by an earlier attempt" (or "up to date") from "differs".
//! - **command request**: the same `command`, `command_args` (nulls ignored), `devices`
//!   and `groups` (order-insensitive), created no earlier than the task started (less
//!   [`CLOCK_SKEW`]); see [`command_matches`]. Read back only when the outcome of an
//!   earlier attempt is unknown: posting the same command twice on purpose is legitimate.
//!   The list is asked for the `command` and a few of the ids only ([`MAX_FILTER_IDS`]):
//!   500 device ids would not fit in a URL, and the list has no time filter, so the whole
//!   set and the time are compared here.
//! - **app version**: `package_name` and `version_code`. Read back before every upload,
//!   since the answer to an APK upload is easily lost and the version may exist already.
//! - **content file**: the file `name` and its `size` in bytes, before every upload,
//!   compared here over the whole content list (its `search` does not match names).
//!
//! Group moves need no read-back (adding a device to the group it is in changes nothing),
//! and raw `request` POSTs have no natural key, so their dispatch refuses to send one again
//! after an unknown outcome. This file only reads and compares; deciding what to do with
//! what it finds, and sending, is [`super::dispatch`]'s.

use std::time::{Duration, SystemTime};

use futures::TryStreamExt;
use serde_json::Value;

use crate::esper::model::{AlarmRule, AppVersion, Application, CommandRequest, Content};
use crate::esper::{ApiError, Client, CommandFilter};

/// Server clocks and ours differ; a request created this long before the task started
/// still counts as the task's own when read back.
pub(super) const CLOCK_SKEW: Duration = Duration::from_secs(120);

/// The alarm rule named exactly `name`, if any. Names should be unique; if several rules
/// share one, the first is the one the task acts on.
pub(super) async fn find_rule(client: &Client, name: &str) -> Result<Option<AlarmRule>, ApiError> {
    let found: Vec<AlarmRule> = client.list_alarm_rules(Some(name)).try_collect().await?;
    let mut existing = found.into_iter().filter(|r| r.name == name);
    let first = existing.next();
    let more = existing.count();
    if more > 0 {
        tracing::warn!(
            rule = name,
            count = more + 1,
            "several alarm rules share this name; updating the first"
        );
    }
    Ok(first)
}

/// A command request equal to `body` created since `since`, if any.
pub(super) async fn find_command(
    client: &Client,
    body: &Value,
    since: SystemTime,
) -> Result<Option<CommandRequest>, ApiError> {
    // A handful of the ids narrows the list enough; the whole set is compared below.
    let filter = CommandFilter {
        devices: some_ids(&str_list(body, "devices")),
        groups: some_ids(&str_list(body, "groups")),
        command: body
            .get("command")
            .and_then(Value::as_str)
            .map(str::to_string),
    };
    let found: Vec<CommandRequest> = client.list_commands(&filter).try_collect().await?;
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

/// The (application id, version id) of a package's version code, if it exists. The plan
/// uses the same lookup to resolve `app_install` versions.
pub(super) async fn find_app_version(
    client: &Client,
    package: &str,
    code: &str,
) -> Result<Option<(String, String)>, ApiError> {
    let apps: Vec<Application> = client.list_apps(Some(package)).try_collect().await?;
    for app in apps.iter().filter(|a| a.package_name == package) {
        // The list embeds recent versions only; older ones need the version list.
        if let Some(v) = app.versions.iter().find(|v| v.version_code == code) {
            return Ok(Some((app.id.clone(), v.id.clone())));
        }
        let versions: Vec<AppVersion> = client
            .list_app_versions(&app.id, Some(code))
            .try_collect()
            .await?;
        if let Some(v) = versions.into_iter().find(|v| v.version_code == code) {
            return Ok(Some((app.id.clone(), v.id)));
        }
    }
    Ok(None)
}

/// The content file named `name` of `size` bytes, if any. The content list's `search`
/// matches tags and description, never the file name (API.md §9.1), so the list is read
/// page by page and compared here, stopping at the first match.
pub(super) async fn find_content(
    client: &Client,
    name: &str,
    size: u64,
) -> Result<Option<Content>, ApiError> {
    let same_size = |c: &Content| content_size(c) == Some(size);
    let mut all = std::pin::pin!(client.list_content(None));
    while let Some(c) = all.try_next().await? {
        if c.name.as_deref() == Some(name) && same_size(&c) {
            return Ok(Some(c));
        }
    }
    Ok(None)
}

/// A content file's size in bytes; servers have sent it both as a number and as a string.
pub(super) fn content_size(c: &Content) -> Option<u64> {
    c.size.as_ref().and_then(|s| {
        s.as_u64()
            .or_else(|| s.as_str().and_then(|t| t.parse().ok()))
    })
}

/// How many characters of ids one command read-back query carries at most: a request
/// has up to 500 devices, whose ids would make a 19 KB URL, and proxies refuse URLs
/// above 8 KB (414). About 50 UUIDs fit.
pub(super) const MAX_FILTER_IDS: usize = 2000;

/// The first ids (sorted, so every attempt asks the same) that fit in
/// [`MAX_FILTER_IDS`] characters once comma-separated and encoded; always at least one.
/// Any command with the whole set has these too, so filtering by them finds it whether
/// the server's filter means "any of" or "all of".
fn some_ids(ids: &[String]) -> Vec<String> {
    let mut out = Vec::new();
    let mut len = 0;
    for id in sorted(ids) {
        // An encoded comma (`%2C`) before every id but the first; ids are UUIDs.
        let add = id.len() + if out.is_empty() { 0 } else { 3 };
        if !out.is_empty() && len + add > MAX_FILTER_IDS {
            break;
        }
        len += add;
        out.push(id);
    }
    out
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
pub(super) fn command_matches(c: &CommandRequest, body: &Value) -> bool {
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

/// Whether the rule as read already has what `body` would write: the planner's own
/// comparison ([`crate::plan::diff::rule_changes`]), so plan and run agree on "differs".
pub(super) fn rule_matches(rule: &AlarmRule, body: &Value) -> bool {
    let live = super::inventory::live_rule(rule.clone());
    crate::plan::diff::rule_changes(body, &live.fields).is_empty()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn read_backs_ask_for_a_bounded_handful_of_ids() {
        let ids: Vec<String> = (0..500)
            .rev()
            .map(|i| format!("00000000-0000-4000-8000-{i:012}"))
            .collect();
        let some = some_ids(&ids);
        let len = some.iter().map(|i| i.len() + 3).sum::<usize>() - 3;
        assert!(len <= MAX_FILTER_IDS && some.len() > 40, "{len}");
        assert_eq!(some[0], "00000000-0000-4000-8000-000000000000", "sorted");
        assert_eq!(some_ids(&ids[..3]).len(), 3, "a short list is sent whole");
        let huge = vec!["x".repeat(MAX_FILTER_IDS + 1)];
        assert_eq!(
            some_ids(&huge),
            huge,
            "one id even when it alone is too long"
        );
        assert!(some_ids(&[]).is_empty());
    }

    #[test]
    fn rules_as_read_compare_as_the_plan_compares_them() {
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
        // The read shape (expanded groups and channels) compares as the plan compares it.
        assert!(rule_matches(&rule, &body));
        let mut moved = body.clone();
        moved["groups"] = json!(["g2"]);
        assert!(!rule_matches(&rule, &moved), "another group is noticed");
    }
}
