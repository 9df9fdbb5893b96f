//! Install verification: after a followed INSTALL settles, which of its devices really
//! have the version. A command's "Success" does not prove the version landed, so the
//! devices that reported success are checked against one bulk read: the version's
//! `installdevices`, or, when that listing is longer than the devices to check, each
//! device's app list (whichever costs fewer requests).
//!
//! It reads only, and never fails the task itself: a read that fails leaves the check's
//! `error` set and counts no device against the task. What a mismatch means for the task,
//! its rollout and the exit code is the executor's (`exec::task`, `Finish::of`).

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;

use futures::TryStreamExt;
use serde_json::Value;

use crate::base::Endpoint;
use crate::esper::{ApiError, Client, PageStyle};
use crate::exec::{Followed, InstallCheck};
use crate::plan::{Operation, Task};

/// Where a version lives: its application, package and version code.
#[derive(Debug, Clone)]
pub(super) struct VersionHome {
    app_id: String,
    package: String,
    version_code: String,
}

/// Versions found so far, by id: the apps listing is read once per run (again only for a
/// version it did not hold, e.g. one uploaded by an earlier step).
#[derive(Debug, Default)]
pub(super) struct VersionIndex(Mutex<HashMap<String, VersionHome>>);

impl VersionIndex {
    async fn find(&self, client: &Client, version: &str) -> Result<Option<VersionHome>, ApiError> {
        if let Some(h) = self.get(version) {
            return Ok(Some(h));
        }
        let apps: Vec<Value> = client
            .list_values(Endpoint::ListApps, None, Vec::new(), PageStyle::Drf)
            .try_collect()
            .await?;
        let mut found = HashMap::new();
        for app in &apps {
            let s = |v: &Value, k: &str| {
                v.get(k)
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string()
            };
            for v in app
                .get("versions")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                found.insert(
                    s(v, "id"),
                    VersionHome {
                        app_id: s(app, "id"),
                        package: s(app, "package_name"),
                        version_code: s(v, "version_code"),
                    },
                );
            }
        }
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend(found);
        Ok(self.get(version))
    }

    fn get(&self, version: &str) -> Option<VersionHome> {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(version)
            .cloned()
    }
}

/// Rows a listing page holds.
const PAGE: usize = 100;

pub(super) async fn verify_install(
    client: &Client,
    index: &VersionIndex,
    task: &Task,
    followed: &Followed,
) -> Option<InstallCheck> {
    let Operation::Command { body, .. } = &task.op else {
        return None;
    };
    let version = body
        .get("command_args")
        .and_then(|a| a.get("app_version"))
        .and_then(Value::as_str)?
        .to_string();
    let counts = followed.counts?;
    let mut check = InstallCheck {
        version: version.clone(),
        failed: counts.unsuccessful(),
        pending: counts.pending,
        ..InstallCheck::default()
    };
    match checked(client, index, &followed.command, &version).await {
        Ok((installed, missing)) => {
            check.installed = installed;
            check.not_installed = missing.len() as u64;
            check.missing = missing;
        }
        Err(e) => {
            tracing::warn!(command = %followed.command, error = %e, "install verification could not read the devices");
            // Unchecked, the devices that reported success are taken at their word.
            check.installed = counts.succeeded;
            check.unchecked = Some(super::fail(e));
        }
    }
    Some(check)
}

/// [`check_devices`], read again after a 429, a 5xx or a lost connection (reads are safe to
/// repeat; every attempt takes rate permits like any request), with the default `retry:`
/// backoff: a check that gives up leaves the task's devices unchecked, so one busy second
/// must not.
async fn checked(
    client: &Client,
    index: &VersionIndex,
    command: &str,
    version: &str,
) -> Result<(u64, Vec<String>), ApiError> {
    super::inventory::retry_read(&crate::job::RetrySettings::default(), || {
        check_devices(client, index, command, version)
    })
    .await
}

/// The succeeded devices of `command` that have `version` (counted) and that do not (by
/// id, in status order).
async fn check_devices(
    client: &Client,
    index: &VersionIndex,
    command: &str,
    version: &str,
) -> Result<(u64, Vec<String>), ApiError> {
    let succeeded: Vec<String> = client
        .command_statuses(command, Some("Command Success"))
        .map_ok(|s| s.device)
        .try_collect()
        .await?;
    if succeeded.is_empty() {
        return Ok((0, Vec::new()));
    }
    let home = match index.find(client, version).await? {
        Some(h) => h,
        // A version no app lists any more: none of its devices can have it.
        None => return Ok((0, succeeded)),
    };
    // How long the version's device listing is, to pick the cheaper read.
    let listed: Vec<Value> = client
        .list_values(
            Endpoint::ListAppVersions,
            Some(&home.app_id),
            vec![("version_code".into(), home.version_code.clone())],
            PageStyle::Drf,
        )
        .try_collect()
        .await?;
    let installed_count = listed
        .iter()
        .find(|v| v.get("id").and_then(Value::as_str) == Some(version))
        .and_then(|v| v.get("installed_count"))
        .and_then(Value::as_u64)
        .unwrap_or(u64::MAX);
    let wanted: HashSet<&str> = succeeded.iter().map(String::as_str).collect();
    let mut has: HashSet<String> = HashSet::new();
    let pages = (installed_count as usize).div_ceil(PAGE);
    if pages <= succeeded.len() {
        let mut s = std::pin::pin!(client.install_devices(&home.app_id, version));
        while let Some(d) = s.try_next().await? {
            if let Some(id) = d.get("id").and_then(Value::as_str)
                && wanted.contains(id)
            {
                has.insert(id.to_string());
            }
        }
    } else {
        for d in &succeeded {
            let apps: Vec<Value> = client
                .device_apps(d, Some(&home.package))
                .try_collect()
                .await?;
            let on = apps.iter().any(|a| {
                a.get("package_name").and_then(Value::as_str) == Some(home.package.as_str())
                    && a.get("version_code").and_then(Value::as_str)
                        == Some(home.version_code.as_str())
            });
            if on {
                has.insert(d.clone());
            }
        }
    }
    let missing: Vec<String> = succeeded
        .iter()
        .filter(|d| !has.contains(*d))
        .cloned()
        .collect();
    Ok((has.len() as u64, missing))
}
