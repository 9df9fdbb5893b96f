//! The job file as written: serde structs mirroring the YAML, unknown keys rejected.
//!
//! Nothing here checks meaning (references, ranges, required combinations); that is
//! [`super::validate`]'s work. Free-form values (vars, command args, request bodies) stay
//! as `serde_json::Value` so they can be templated and sent verbatim.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::Value;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawJob {
    pub version: Option<Value>,
    pub name: Option<String>,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub esper: Option<RawEsper>,
    #[serde(default)]
    pub limits: Option<RawLimits>,
    #[serde(default)]
    pub retry: Option<RawRetry>,
    #[serde(default)]
    pub deadline: Option<Value>,
    #[serde(default)]
    pub vars: BTreeMap<String, Value>,
    #[serde(default)]
    pub targets: BTreeMap<String, RawTarget>,
    #[serde(default)]
    pub steps: Vec<RawStep>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawEsper {
    pub tenant: Option<String>,
    pub base_url: Option<String>,
    pub enterprise_id: Option<String>,
    pub api_key: Option<String>,
    pub api_key_file: Option<String>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawLimits {
    pub rate: Option<Value>,
    pub batch: Option<Value>,
    pub max_in_flight: Option<Value>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawRetry {
    pub attempts: Option<Value>,
    pub initial_delay: Option<Value>,
    pub max_delay: Option<Value>,
    pub max_retry_after: Option<Value>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawTarget {
    pub groups: Option<RawGroups>,
    pub devices: Option<RawDevices>,
    pub union: Option<Vec<String>>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawGroups {
    pub name: Option<OneOrMany>,
    pub id: Option<OneOrMany>,
    pub all: Option<bool>,
    #[serde(default)]
    pub exclude: Vec<String>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawDevices {
    pub group: Option<String>,
    pub name: Option<String>,
    pub serial: Option<String>,
    pub state: Option<String>,
    pub tags: Option<String>,
    pub csv: Option<String>,
    pub column: Option<String>,
    pub ids: Option<Vec<String>>,
}

#[derive(Debug, Deserialize, Clone)]
#[serde(untagged)]
pub enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl OneOrMany {
    pub fn into_vec(self) -> Vec<String> {
        match self {
            OneOrMany::One(s) => vec![s],
            OneOrMany::Many(v) => v,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawStep {
    pub id: Option<String>,
    #[serde(default)]
    pub needs: Vec<String>,
    pub for_each: Option<String>,
    pub rollout: Option<Value>,
    pub app_install: Option<RawAppInstall>,
    pub alarm_rule: Option<RawAlarmRule>,
    pub command: Option<RawCommand>,
    pub app_upload: Option<Value>,
    pub app_uninstall: Option<Value>,
    pub group_move: Option<Value>,
    pub content_upload: Option<Value>,
    pub request: Option<Value>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAppInstall {
    pub to: Option<String>,
    pub version: Option<String>,
    pub package: Option<String>,
    pub version_code: Option<Value>,
    pub wait: Option<RawWait>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCommand {
    pub to: Option<String>,
    pub name: Option<String>,
    #[serde(default)]
    pub args: Option<Value>,
    pub wait: Option<RawWait>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawWait {
    pub timeout: Option<Value>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAlarmRule {
    pub name: Option<String>,
    pub description: Option<String>,
    pub metric: Option<String>,
    pub conditions: Option<Value>,
    pub realert_interval: Option<Value>,
    pub repeat_times: Option<Value>,
    pub is_active: Option<bool>,
    pub action_emails: Option<Vec<String>>,
    pub actions: Option<Vec<String>>,
    pub alert_channels: Option<Vec<Value>>,
    pub groups: Option<Vec<String>>,
    pub devices: Option<Vec<String>>,
    pub on_exists: Option<String>,
}
