//! Esper resource models, decoded tolerantly.
//!
//! Unknown fields are ignored, ids are opaque strings (some endpoints send integers),
//! references that Esper sends as URLs are reduced to the id at their end, and `groups` is
//! accepted both as id/URL strings and as `{id, name, path}` objects. Request bodies the
//! engine sends are built elsewhere (the plan freezes them as JSON), so this file is mostly
//! about reading.

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;

/// Deserializes an id sent as a string or an integer into a string.
pub fn de_id<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    match Value::deserialize(d)? {
        Value::String(s) => Ok(s),
        Value::Number(n) => Ok(n.to_string()),
        other => Err(serde::de::Error::custom(format!(
            "expected an id, found {other}"
        ))),
    }
}

fn de_opt_id<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    match Option::<Value>::deserialize(d)? {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(Value::Number(n)) => Ok(Some(n.to_string())),
        Some(other) => Err(serde::de::Error::custom(format!(
            "expected an id, found {other}"
        ))),
    }
}

fn de_null_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// The id at the end of a resource URL (`…/devicegroup/<id>/`), or the value itself.
pub fn id_from_ref(value: &str) -> String {
    let trimmed = value.trim_end_matches('/');
    if trimmed.contains("://") || trimmed.starts_with('/') {
        trimmed.rsplit('/').next().unwrap_or(trimmed).to_string()
    } else {
        trimmed.to_string()
    }
}

/// A reference to a group: a UUID, a URL, or an expanded object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GroupRef {
    pub id: String,
    pub name: Option<String>,
    pub path: Option<String>,
}

impl<'de> Deserialize<'de> for GroupRef {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        struct Obj {
            #[serde(deserialize_with = "de_id")]
            id: String,
            #[serde(default)]
            name: Option<String>,
            #[serde(default)]
            path: Option<String>,
        }
        match Value::deserialize(d)? {
            Value::String(s) => Ok(GroupRef {
                id: id_from_ref(&s),
                name: None,
                path: None,
            }),
            Value::Number(n) => Ok(GroupRef {
                id: n.to_string(),
                name: None,
                path: None,
            }),
            obj @ Value::Object(_) => {
                let o: Obj = serde_json::from_value(obj).map_err(serde::de::Error::custom)?;
                Ok(GroupRef {
                    id: o.id,
                    name: o.name,
                    path: o.path,
                })
            }
            other => Err(serde::de::Error::custom(format!(
                "expected a group reference, found {other}"
            ))),
        }
    }
}

/// A device group (`DeviceGroup`).
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
pub struct DeviceGroup {
    #[serde(deserialize_with = "de_id")]
    pub id: String,
    pub name: String,
    #[serde(default)]
    pub path: Option<String>,
    /// The parent group's id (Esper sends a URL; reduced to its id).
    #[serde(default, deserialize_with = "de_parent")]
    pub parent: Option<String>,
    #[serde(default, deserialize_with = "de_null_default")]
    pub device_count: u64,
    #[serde(default, deserialize_with = "de_null_default")]
    pub children_count: u64,
}

fn de_parent<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    Ok(de_opt_id(d)?.map(|s| id_from_ref(&s)))
}

/// A device, from either the legacy list (`DeviceInfo`) or `/v2/devices/`.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Device {
    pub id: String,
    pub name: String,
    pub alias: Option<String>,
    pub serial: Option<String>,
    /// `ONLINE`, `OFFLINE` or the raw state (legacy integers are mapped).
    pub state: Option<String>,
    pub groups: Vec<GroupRef>,
    pub tags: Vec<String>,
}

impl<'de> Deserialize<'de> for Device {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        struct Wire {
            #[serde(deserialize_with = "de_id")]
            id: String,
            #[serde(default)]
            device_name: Option<String>,
            #[serde(default)]
            name: Option<String>,
            #[serde(default)]
            alias_name: Option<String>,
            #[serde(default)]
            alias: Option<String>,
            #[serde(default)]
            serial: Option<String>,
            #[serde(default, rename = "hardwareInfo")]
            hardware_info: Option<Value>,
            #[serde(default)]
            state: Option<Value>,
            #[serde(default, deserialize_with = "de_null_default")]
            groups: Vec<GroupRef>,
            #[serde(default)]
            group: Option<GroupRef>,
            #[serde(default, deserialize_with = "de_null_default")]
            tags: Vec<Value>,
        }
        let w = Wire::deserialize(d)?;
        let serial = w.serial.or_else(|| {
            w.hardware_info
                .as_ref()
                .and_then(|h| h.get("serialNumber"))
                .and_then(Value::as_str)
                .map(str::to_string)
        });
        let state = w.state.and_then(|s| match s {
            Value::Number(n) => Some(match n.as_i64() {
                Some(1) => "ONLINE".to_string(),
                Some(60) => "OFFLINE".to_string(),
                _ => n.to_string(),
            }),
            Value::String(s) => Some(s.to_uppercase()),
            _ => None,
        });
        let mut groups = w.groups;
        if let Some(g) = w.group {
            groups.push(g);
        }
        let tags = w
            .tags
            .into_iter()
            .filter_map(|t| match t {
                Value::String(s) => Some(s),
                Value::Object(o) => o.get("name").and_then(Value::as_str).map(str::to_string),
                _ => None,
            })
            .collect();
        Ok(Device {
            name: w.device_name.or(w.name).unwrap_or_else(|| w.id.clone()),
            id: w.id,
            alias: w.alias_name.or(w.alias),
            serial,
            state,
            groups,
            tags,
        })
    }
}

/// An application with its versions (`Application`).
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
pub struct Application {
    #[serde(deserialize_with = "de_id")]
    pub id: String,
    #[serde(default)]
    pub application_name: Option<String>,
    pub package_name: String,
    #[serde(default, deserialize_with = "de_null_default")]
    pub versions: Vec<AppVersion>,
}

/// One version of an application (`AppVersion`). `version_code` is a string in the API.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
pub struct AppVersion {
    #[serde(deserialize_with = "de_id")]
    pub id: String,
    #[serde(deserialize_with = "de_id")]
    pub version_code: String,
    #[serde(default)]
    pub version_name: Option<String>,
    #[serde(default)]
    pub build_number: Option<String>,
    /// The owning application's id (Esper sends a URL).
    #[serde(default, deserialize_with = "de_parent")]
    pub application: Option<String>,
}

/// `POST /enterprise/{eid}/application/upload/` answers `{"application": {…}}`.
#[derive(Debug, Clone, Deserialize)]
pub struct UploadResponse {
    pub application: Application,
}

/// A command request (`CommandRequest`, commands/v0).
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
pub struct CommandRequest {
    #[serde(deserialize_with = "de_id")]
    pub id: String,
    #[serde(default)]
    pub command_type: Option<String>,
    #[serde(default, deserialize_with = "de_id_list")]
    pub devices: Vec<String>,
    #[serde(default, deserialize_with = "de_id_list")]
    pub groups: Vec<String>,
    #[serde(default)]
    pub command: Option<String>,
    #[serde(default)]
    pub command_args: Option<Value>,
    #[serde(default)]
    pub schedule: Option<String>,
    #[serde(default)]
    pub created_at: Option<String>,
}

fn de_id_list<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    let refs: Option<Vec<GroupRef>> = Option::deserialize(d)?;
    Ok(refs.unwrap_or_default().into_iter().map(|r| r.id).collect())
}

/// The states a device goes through for one command. The strings are Esper's.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(from = "String", into = "String")]
pub enum CommandState {
    Queued,
    Initiated,
    Acknowledged,
    InProgress,
    TimeOut,
    Success,
    Failure,
    Scheduled,
    Cancelled,
    Other(String),
}

impl CommandState {
    /// Success, Failure, TimeOut and Cancelled end a command on a device.
    pub fn is_final(&self) -> bool {
        matches!(
            self,
            CommandState::Success
                | CommandState::Failure
                | CommandState::TimeOut
                | CommandState::Cancelled
        )
    }

    pub fn as_str(&self) -> &str {
        match self {
            CommandState::Queued => "Command Queued",
            CommandState::Initiated => "Command Initiated",
            CommandState::Acknowledged => "Command Acknowledged",
            CommandState::InProgress => "Command In Progress",
            CommandState::TimeOut => "Command TimeOut",
            CommandState::Success => "Command Success",
            CommandState::Failure => "Command Failure",
            CommandState::Scheduled => "Command Scheduled",
            CommandState::Cancelled => "Command Cancelled",
            CommandState::Other(s) => s,
        }
    }
}

impl From<String> for CommandState {
    fn from(s: String) -> Self {
        match s.as_str() {
            "Command Queued" => CommandState::Queued,
            "Command Initiated" => CommandState::Initiated,
            "Command Acknowledged" => CommandState::Acknowledged,
            "Command In Progress" => CommandState::InProgress,
            "Command TimeOut" => CommandState::TimeOut,
            "Command Success" => CommandState::Success,
            "Command Failure" => CommandState::Failure,
            "Command Scheduled" => CommandState::Scheduled,
            "Command Cancelled" => CommandState::Cancelled,
            _ => CommandState::Other(s),
        }
    }
}

impl From<CommandState> for String {
    fn from(s: CommandState) -> String {
        s.as_str().to_string()
    }
}

/// `GET /commands/v0/commands/{id}/stats/`: how many devices are in each state.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
pub struct CommandStats {
    #[serde(default, deserialize_with = "de_opt_id")]
    pub id: Option<String>,
    #[serde(default, deserialize_with = "de_null_default")]
    pub status: Vec<StateCount>,
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
pub struct StateCount {
    pub state: CommandState,
    #[serde(default)]
    pub total: u64,
}

impl CommandStats {
    pub fn total(&self) -> u64 {
        self.status.iter().map(|s| s.total).sum()
    }
    /// Devices not yet in a final state.
    pub fn pending(&self) -> u64 {
        self.status
            .iter()
            .filter(|s| !s.state.is_final())
            .map(|s| s.total)
            .sum()
    }
}

/// One device's status for a command request (`CommandStatus`).
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
pub struct CommandStatus {
    #[serde(default, deserialize_with = "de_opt_id")]
    pub id: Option<String>,
    #[serde(default, deserialize_with = "de_parent")]
    pub request: Option<String>,
    #[serde(deserialize_with = "de_device_ref")]
    pub device: String,
    pub state: CommandState,
    #[serde(default)]
    pub reason: Option<String>,
    #[serde(default)]
    pub updated_at: Option<String>,
}

fn de_device_ref<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    Ok(GroupRef::deserialize(d)?.id)
}

/// An alarm rule as read (`AlarmRule`): groups and devices come back as objects.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
pub struct AlarmRule {
    #[serde(deserialize_with = "de_id")]
    pub id: String,
    pub name: String,
    #[serde(default)]
    pub metric: Option<String>,
    #[serde(default)]
    pub conditions: Option<Value>,
    #[serde(default, deserialize_with = "de_null_default")]
    pub groups: Vec<GroupRef>,
    #[serde(default, deserialize_with = "de_null_default")]
    pub devices: Vec<GroupRef>,
    #[serde(default)]
    pub realert_interval: Option<i64>,
    #[serde(default)]
    pub is_active: Option<bool>,
    /// Every other field as sent (description, action_emails, alert_channels, …), so
    /// `on_exists: update` can compare whatever the job manages.
    #[serde(flatten)]
    pub extra: std::collections::BTreeMap<String, Value>,
}

/// An uploaded content file (`Content`); `id` is an integer in practice.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
pub struct Content {
    #[serde(deserialize_with = "de_id")]
    pub id: String,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub hash: Option<String>,
    #[serde(default)]
    pub size: Option<Value>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refs_reduce_to_ids() {
        assert_eq!(
            id_from_ref("https://acme-api.esper.cloud/api/enterprise/e/devicegroup/abc/"),
            "abc"
        );
        assert_eq!(id_from_ref("abc"), "abc");
    }

    #[test]
    fn command_states_round_trip() {
        for s in [
            "Command Queued",
            "Command Success",
            "Command TimeOut",
            "Command Cancelled",
        ] {
            let st = CommandState::from(s.to_string());
            assert!(!matches!(st, CommandState::Other(_)));
            assert_eq!(st.as_str(), s);
        }
        assert!(CommandState::from("Command Failure".to_string()).is_final());
        assert!(!CommandState::from("Command Queued".to_string()).is_final());
        assert_eq!(
            CommandState::from("Weird".to_string()),
            CommandState::Other("Weird".into())
        );
    }
}
