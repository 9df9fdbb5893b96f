//! The vocabulary the engine's layers share and none of them owns: which request
//! ([`Endpoint`]) and what it is for ([`RequestKind`]), what came back ([`Observation`]),
//! the gate every request passes ([`Throttle`]), the coarse classes of failure
//! ([`FailureClass`]), the one way an error carries advice ([`Hint`], rendered by
//! [`render_error`] and [`one_line`]), the one way a secret is shown ([`mask`]), and why
//! the API cannot be used at all ([`AccessError`]).
//!
//! It is a leaf: it imports nothing from the crate, so `exec` (which implements the
//! throttle and decides retries by class) and `esper` (whose client calls the throttle)
//! both depend on it instead of on each other. What the classes mean for retrying is the
//! executor's business; how an HTTP answer maps to a class is the client's, and so is
//! the path an endpoint is sent to.

use std::fmt;
use std::time::Duration;

use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};

/// What a request is for, so a throttle can prioritise writes over status polls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestKind {
    Read,
    Write,
    Poll,
    /// A page of the fleet-wide device listing (`/v2/devices/`), which the API throttles far
    /// harder than other routes: a read that also takes a permit of its own, lower budget.
    DeviceList,
}

/// What came back from one request, for rate adaptation.
#[derive(Debug, Clone, Copy)]
pub struct Observation {
    pub status: Option<u16>,
    pub retry_after: Option<Duration>,
    pub latency: Duration,
}

/// A gate every request passes: `acquire` before sending, `observe` after.
pub trait Throttle: Send + Sync {
    /// Waits for permission to send; the returned guard is held until the response is in.
    /// `None` means the run is stopping: the request must not be sent.
    fn acquire(&self, kind: RequestKind) -> BoxFuture<'_, Option<Box<dyn Send + '_>>>;
    fn observe(&self, kind: RequestKind, observation: Observation);
    /// The run is stopping: refuse to start further requests.
    fn close(&self) {}
}

/// The coarse class of a failed request or task. The snake_case names are part of the
/// journal and report formats: renaming one is a format change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FailureClass {
    RateLimited,
    Server,
    Auth,
    NotFound,
    Client,
    Connect,
    Timeout,
    Transport,
    Decode,
    Build,
    /// The operation refused to act (e.g. `on_exists: fail` found the rule).
    Conflict,
    /// The run stopped before the request was sent.
    Stopped,
    /// Recorded by a version that kept failures as text only (journal format 1).
    Unclassified,
}

impl FailureClass {
    pub const ALL: [FailureClass; 13] = [
        FailureClass::RateLimited,
        FailureClass::Server,
        FailureClass::Auth,
        FailureClass::NotFound,
        FailureClass::Client,
        FailureClass::Connect,
        FailureClass::Timeout,
        FailureClass::Transport,
        FailureClass::Decode,
        FailureClass::Build,
        FailureClass::Conflict,
        FailureClass::Stopped,
        FailureClass::Unclassified,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            FailureClass::RateLimited => "rate_limited",
            FailureClass::Server => "server",
            FailureClass::Auth => "auth",
            FailureClass::NotFound => "not_found",
            FailureClass::Client => "client",
            FailureClass::Connect => "connect",
            FailureClass::Timeout => "timeout",
            FailureClass::Transport => "transport",
            FailureClass::Decode => "decode",
            FailureClass::Build => "build",
            FailureClass::Conflict => "conflict",
            FailureClass::Stopped => "stopped",
            FailureClass::Unclassified => "unclassified",
        }
    }

    /// The class named `s` (as [`FailureClass::as_str`] writes it), if any.
    pub fn parse(s: &str) -> Option<FailureClass> {
        FailureClass::ALL.into_iter().find(|c| c.as_str() == s)
    }
}

impl fmt::Display for FailureClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The crate's one convention for advice on an error: `Display` says what went wrong
/// (lowercase, no trailing period, naming the bad value) and [`Hint::hint`] says how to
/// fix it, as one line, when there is something to say. Advice never goes into `Display`,
/// so it is rendered the same way everywhere: [`render_error`] on a terminal,
/// [`one_line`] where only one line of text fits.
pub trait Hint {
    /// How to fix it, e.g. `check ESPER_API_KEY and that the key belongs to this tenant`.
    fn hint(&self) -> Option<String> {
        None
    }
}

/// An error as the command line prints it: `error: …`, then `  = help: …` when the error
/// has a hint.
pub fn render_error<E: fmt::Display + Hint + ?Sized>(e: &E) -> String {
    match e.hint() {
        Some(h) => format!("error: {e}\n  = help: {h}"),
        None => format!("error: {e}"),
    }
}

/// An error and its hint on one line, `… (hint)`: for report cells, log fields and errors
/// that carry their cause as text.
pub fn one_line<E: fmt::Display + Hint + ?Sized>(e: &E) -> String {
    match e.hint() {
        Some(h) => format!("{e} ({h})"),
        None => e.to_string(),
    }
}

/// How a secret is shown wherever it would otherwise appear (a job's snippet, server text
/// echoing the key): `sk_l…5c`, the first four and last two characters, enough to tell
/// which key leaked; a short value is hidden entirely.
pub fn mask(secret: &str) -> String {
    let chars: Vec<char> = secret.chars().collect();
    if chars.len() < 16 {
        return "****".into();
    }
    let head: String = chars[..4].iter().collect();
    let tail: String = chars[chars.len() - 2..].iter().collect();
    format!("{head}…{tail}")
}

/// An Esper request, named by what it does. Plans count and show requests by endpoint; the
/// client owns the one table that turns an endpoint into its method and path, so no path is
/// written anywhere else. `Raw` is the job's `request` escape hatch: its method and path are
/// the user's own.
///
/// The snake_case names are part of the plan format (the estimate's keys): renaming one is
/// a format change. `Raw` is written `METHOD path`, which is also how plan files before
/// endpoints named every request, so their keys read back as `Raw` and write out unchanged.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Endpoint {
    CreateCommand,
    ListCommands,
    GetCommand,
    CommandStats,
    CommandStatuses,
    ListAlarmRules,
    CreateAlarmRule,
    GetAlarmRule,
    UpdateAlarmRule,
    PatchAlarmRule,
    DeleteAlarmRule,
    ListGroups,
    GetGroup,
    MoveDevices,
    ListDevices,
    GetDevice,
    ListDevicesV2,
    ListApps,
    ListAppVersions,
    UploadApp,
    ListContent,
    UploadContent,
    /// The devices that have one app version installed.
    InstallDevices,
    /// One device's installed apps.
    ListDeviceApps,
    Raw {
        method: String,
        path: String,
    },
}

impl Endpoint {
    /// Every endpoint but `Raw`.
    pub const NAMED: [Endpoint; 24] = [
        Endpoint::CreateCommand,
        Endpoint::ListCommands,
        Endpoint::GetCommand,
        Endpoint::CommandStats,
        Endpoint::CommandStatuses,
        Endpoint::ListAlarmRules,
        Endpoint::CreateAlarmRule,
        Endpoint::GetAlarmRule,
        Endpoint::UpdateAlarmRule,
        Endpoint::PatchAlarmRule,
        Endpoint::DeleteAlarmRule,
        Endpoint::ListGroups,
        Endpoint::GetGroup,
        Endpoint::MoveDevices,
        Endpoint::ListDevices,
        Endpoint::GetDevice,
        Endpoint::ListDevicesV2,
        Endpoint::ListApps,
        Endpoint::ListAppVersions,
        Endpoint::UploadApp,
        Endpoint::ListContent,
        Endpoint::UploadContent,
        Endpoint::InstallDevices,
        Endpoint::ListDeviceApps,
    ];

    /// The format name of a named endpoint; `None` for `Raw`.
    pub fn name(&self) -> Option<&'static str> {
        Some(match self {
            Endpoint::CreateCommand => "create_command",
            Endpoint::ListCommands => "list_commands",
            Endpoint::GetCommand => "get_command",
            Endpoint::CommandStats => "command_stats",
            Endpoint::CommandStatuses => "command_statuses",
            Endpoint::ListAlarmRules => "list_alarm_rules",
            Endpoint::CreateAlarmRule => "create_alarm_rule",
            Endpoint::GetAlarmRule => "get_alarm_rule",
            Endpoint::UpdateAlarmRule => "update_alarm_rule",
            Endpoint::PatchAlarmRule => "patch_alarm_rule",
            Endpoint::DeleteAlarmRule => "delete_alarm_rule",
            Endpoint::ListGroups => "list_groups",
            Endpoint::GetGroup => "get_group",
            Endpoint::MoveDevices => "move_devices",
            Endpoint::ListDevices => "list_devices",
            Endpoint::GetDevice => "get_device",
            Endpoint::ListDevicesV2 => "list_devices_v2",
            Endpoint::ListApps => "list_apps",
            Endpoint::ListAppVersions => "list_app_versions",
            Endpoint::UploadApp => "upload_app",
            Endpoint::ListContent => "list_content",
            Endpoint::UploadContent => "upload_content",
            Endpoint::InstallDevices => "install_devices",
            Endpoint::ListDeviceApps => "list_device_apps",
            Endpoint::Raw { .. } => return None,
        })
    }

    /// The endpoint a key of the plan format names: a name, or `METHOD path` (a raw
    /// request, or any request as older plan files wrote it).
    pub fn parse(key: &str) -> Option<Endpoint> {
        if let Some(e) = Endpoint::NAMED.into_iter().find(|e| e.name() == Some(key)) {
            return Some(e);
        }
        let (method, path) = key.split_once(' ')?;
        Some(Endpoint::Raw {
            method: method.to_string(),
            path: path.to_string(),
        })
    }

    /// The key of the plan format: see [`Endpoint::parse`].
    pub fn key(&self) -> String {
        match self {
            Endpoint::Raw { method, path } => format!("{method} {path}"),
            named => named.name().unwrap_or_default().to_string(),
        }
    }
}

// A string rather than serde's enum shape, so endpoints can key a JSON map.
impl Serialize for Endpoint {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.key())
    }
}

impl<'de> Deserialize<'de> for Endpoint {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Endpoint, D::Error> {
        let key = String::deserialize(d)?;
        Endpoint::parse(&key).ok_or_else(|| {
            serde::de::Error::custom(format!(
                "`{key}` is neither an endpoint name nor `METHOD path`"
            ))
        })
    }
}

/// The API cannot be used with these settings at all: it could not be reached, or it
/// refused the key or the enterprise. The client classes an error as one
/// (`esper::ApiError::access`); a run that meets one before it wrote anything stops with
/// exit code 5 instead of failing every task the same way.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AccessError {
    /// No connection: DNS failure, connection refused, TLS failure.
    #[error("cannot reach the Esper API: {detail}")]
    Unreachable { detail: String },
    /// 401: the key is not one the server knows.
    #[error("the API key was refused: {detail}")]
    KeyRefused { detail: String },
    /// 403: the key may not do this here.
    #[error("the API key is not allowed to use this enterprise: {detail}")]
    Forbidden { detail: String },
    /// 404 on a list every enterprise has: the enterprise id is not one this key sees.
    #[error("enterprise `{enterprise_id}` was not found for this API key")]
    NoEnterprise { enterprise_id: String },
}

impl Hint for AccessError {
    fn hint(&self) -> Option<String> {
        Some(
            match self {
                AccessError::Unreachable { .. } => {
                    "check the base URL (ESPER_BASE_URL, ESPER_TENANT, --base-url or the job's esper.tenant), DNS, proxy settings (HTTPS_PROXY, --ca-cert) and the network"
                }
                AccessError::KeyRefused { .. } => {
                    "check ESPER_API_KEY (or the job's esper.api_key): the key must belong to this tenant and be unexpired"
                }
                AccessError::Forbidden { .. } => {
                    "check the key's role in the console (API Key Management) and ESPER_ENTERPRISE_ID / esper.enterprise_id"
                }
                AccessError::NoEnterprise { .. } => {
                    "check ESPER_ENTERPRISE_ID / esper.enterprise_id (or --enterprise-id): the console shows the enterprise id under API Key Management"
                }
            }
            .to_string(),
        )
    }
}

/// A count with its noun, singular for one: `1 task`, `0 tasks`, `3 tasks`.
pub fn count(n: u64, one: &str, many: &str) -> String {
    if n == 1 {
        format!("1 {one}")
    } else {
        format!("{n} {many}")
    }
}

/// A rate as a job file would write it: `20/s`, or per minute below one a second (`12/m`).
pub fn per_second(rate: f64) -> String {
    let trim = |x: f64| {
        let t = format!("{x:.2}");
        t.trim_end_matches('0').trim_end_matches('.').to_string()
    };
    if rate >= 1.0 {
        format!("{}/s", trim(rate))
    } else {
        format!("{}/m", trim(rate * 60.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_read_as_a_job_writes_them() {
        assert_eq!(per_second(20.0), "20/s");
        assert_eq!(per_second(2.5), "2.5/s");
        assert_eq!(per_second(0.2), "12/m");
    }

    #[derive(Debug, thiserror::Error)]
    #[error("group `{0}` does not exist")]
    struct NoGroup(String, Option<String>);

    impl Hint for NoGroup {
        fn hint(&self) -> Option<String> {
            self.1.clone()
        }
    }

    #[test]
    fn hints_render_in_one_shape() {
        let with = NoGroup("x".into(), Some("check the group path".into()));
        assert_eq!(
            render_error(&with),
            "error: group `x` does not exist\n  = help: check the group path"
        );
        assert_eq!(
            one_line(&with),
            "group `x` does not exist (check the group path)"
        );
        let without = NoGroup("x".into(), None);
        assert_eq!(render_error(&without), "error: group `x` does not exist");
        assert_eq!(one_line(&without), "group `x` does not exist");
    }

    #[test]
    fn class_names_round_trip() {
        for c in FailureClass::ALL {
            assert_eq!(FailureClass::parse(c.as_str()), Some(c));
            assert_eq!(
                serde_json::to_value(c).unwrap(),
                serde_json::Value::String(c.as_str().into())
            );
        }
        assert_eq!(FailureClass::parse("ok"), None);
    }

    #[test]
    fn endpoint_keys_round_trip() {
        for e in Endpoint::NAMED {
            assert_eq!(Endpoint::parse(&e.key()), Some(e.clone()));
        }
        let raw = Endpoint::Raw {
            method: "PATCH".into(),
            path: "/v1/enterprise/{enterprise_id}/alarmrules/x/".into(),
        };
        assert_eq!(Endpoint::parse(&raw.key()), Some(raw.clone()));
        // Keys as plan files before endpoints wrote them read as raw requests, unchanged.
        let old = "POST /commands/v0/commands/";
        assert_eq!(Endpoint::parse(old).map(|e| e.key()).as_deref(), Some(old));
        assert_eq!(Endpoint::parse("no_such_endpoint"), None);
        let map: std::collections::BTreeMap<Endpoint, u64> =
            [(Endpoint::CreateCommand, 2), (raw, 1)]
                .into_iter()
                .collect();
        let json = serde_json::to_string(&map).unwrap();
        assert_eq!(
            serde_json::from_str::<std::collections::BTreeMap<Endpoint, u64>>(&json).unwrap(),
            map
        );
    }
}
