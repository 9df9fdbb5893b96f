//! The job language's shape, written once: which keys each map takes, their types, which
//! are required and what they mean.
//!
//! The checker's shape pass (`check/shape_pass.rs`) uses these tables for unknown keys
//! (with did-you-mean), missing keys and type errors, and `esper-bulk schema` turns the
//! same tables into a JSON Schema for editors, so the two cannot drift. Meaning beyond
//! shape (references, cycles, value ranges) is checked by the other passes in `check/`.

use serde_json::{Map, Value, json};

/// The type a key's value must have.
#[derive(Debug, Clone, Copy)]
pub enum Ty {
    Str,
    Int,
    Num,
    Bool,
    /// `500ms`, `30s`, `1h 30m`, or whole seconds.
    Duration,
    /// `20/s`, `600/m`, or a number per second.
    Rate,
    /// A count or a percentage: `5`, `5%`.
    Amount,
    /// Anything (free-form JSON sent to the API).
    Any,
    StrList,
    /// One string or a list of strings.
    StrOrList,
    Enum(&'static [&'static str]),
    Obj(&'static Shape),
    /// A map from names to values of one type.
    MapOf(&'static Ty),
    ListOf(&'static Ty),
}

#[derive(Debug)]
pub struct Field {
    pub name: &'static str,
    pub ty: Ty,
    pub required: bool,
    pub doc: &'static str,
}

#[derive(Debug)]
pub struct Shape {
    pub name: &'static str,
    pub doc: &'static str,
    pub fields: &'static [Field],
}

impl Shape {
    pub fn field(&self, name: &str) -> Option<&'static Field> {
        self.fields.iter().find(|f| f.name == name)
    }
    pub fn names(&self) -> Vec<&'static str> {
        self.fields.iter().map(|f| f.name).collect()
    }
}

const fn f(name: &'static str, ty: Ty, doc: &'static str) -> Field {
    Field {
        name,
        ty,
        required: false,
        doc,
    }
}
const fn req(name: &'static str, ty: Ty, doc: &'static str) -> Field {
    Field {
        name,
        ty,
        required: true,
        doc,
    }
}

pub const COMPARATORS: &[&str] = &[
    "GreaterThanThreshold",
    "GreaterThanOrEqualToThreshold",
    "LessThanThreshold",
    "LessThanOrEqualToThreshold",
    "Frequency",
];
pub const UNITS: &[&str] = &["Percent", "Count"];
pub const ON_EXISTS: &[&str] = &["skip", "update", "fail"];
pub const METHODS: &[&str] = &["GET", "POST", "PUT", "PATCH", "DELETE"];

/// The operations a step can have; exactly one per step.
pub const OPERATIONS: &[&str] = &[
    "app_upload",
    "app_install",
    "app_uninstall",
    "command",
    "alarm_rule",
    "group_move",
    "content_upload",
    "request",
];

pub static JOB: Shape = Shape {
    name: "job",
    doc: "An esper-bulk job file (version 1).",
    fields: &[
        req("version", Ty::Int, "Job language version; always 1."),
        req(
            "name",
            Ty::Str,
            "Job name; names run directories and reports.",
        ),
        f("description", Ty::Str, "What the job is for."),
        f(
            "esper",
            Ty::Obj(&ESPER),
            "Connection; each setting can also come from flags or ESPER_* variables.",
        ),
        f("limits", Ty::Obj(&LIMITS), "Request pacing."),
        f(
            "retry",
            Ty::Obj(&RETRY),
            "Retries of 429, 5xx and network failures.",
        ),
        f(
            "deadline",
            Ty::Duration,
            "Finish, or stop cleanly and resumably, within this time.",
        ),
        f(
            "vars",
            Ty::MapOf(&Ty::Any),
            "Values for `${{ vars.<name> }}`.",
        ),
        f(
            "targets",
            Ty::MapOf(&Ty::Obj(&TARGET)),
            "Named selections of groups or devices.",
        ),
        req(
            "steps",
            Ty::ListOf(&Ty::Obj(&STEP)),
            "What to do, in order of `needs`.",
        ),
    ],
};

pub static ESPER: Shape = Shape {
    name: "esper",
    doc: "Where and as whom to talk to Esper.",
    fields: &[
        f(
            "tenant",
            Ty::Str,
            "Console sub-domain: `acme` means https://acme-api.esper.cloud/api.",
        ),
        f(
            "base_url",
            Ty::Str,
            "Full API base URL, instead of `tenant`.",
        ),
        f(
            "enterprise_id",
            Ty::Str,
            "Enterprise UUID, e.g. `${ESPER_ENTERPRISE_ID}`.",
        ),
        f(
            "api_key",
            Ty::Str,
            "Must be `${SOME_VARIABLE}`; literal keys are rejected.",
        ),
        f(
            "api_key_file",
            Ty::Str,
            "File holding the key, e.g. a systemd credential.",
        ),
    ],
};

pub static LIMITS: Shape = Shape {
    name: "limits",
    doc: "Request pacing for the whole job.",
    fields: &[
        f(
            "rate",
            Ty::Rate,
            "Ceiling for every request: `20/s`, `600/m`. Default 20/s.",
        ),
        f(
            "batch",
            Ty::Int,
            "Requests in flight at the start; grows while accepted, halves on 429. Default 20.",
        ),
        f(
            "max_in_flight",
            Ty::Int,
            "Upper bound of the in-flight window. Default 100.",
        ),
    ],
};

pub static RETRY: Shape = Shape {
    name: "retry",
    doc: "Retries with exponential backoff and full jitter.",
    fields: &[
        f(
            "attempts",
            Ty::Int,
            "Attempts per task, the first included. Default 6.",
        ),
        f(
            "initial_delay",
            Ty::Duration,
            "First backoff step. Default 500ms.",
        ),
        f(
            "max_delay",
            Ty::Duration,
            "Longest backoff step. Default 60s.",
        ),
        f(
            "max_retry_after",
            Ty::Duration,
            "Longest server `Retry-After` honoured. Default 5m.",
        ),
    ],
};

pub static TARGET: Shape = Shape {
    name: "target",
    doc: "One of `groups`, `devices` or `union`.",
    fields: &[
        f("groups", Ty::Obj(&GROUPS), "Device groups."),
        f("devices", Ty::Obj(&DEVICES), "Devices."),
        f(
            "union",
            Ty::StrList,
            "Other targets of the same kind, merged.",
        ),
    ],
};

pub static GROUPS: Shape = Shape {
    name: "groups",
    doc: "Groups by name or path glob (below `All devices`), id, or all.",
    fields: &[
        f(
            "name",
            Ty::StrOrList,
            "Exact names or globs over the path: `Stores/*`, `Stores/**`.",
        ),
        f("id", Ty::StrOrList, "Group ids."),
        f("all", Ty::Bool, "Every group."),
        f("exclude", Ty::StrList, "Names or path globs to leave out."),
    ],
};

pub static DEVICES: Shape = Shape {
    name: "devices",
    doc: "Devices by filters, by a CSV column, or by id.",
    fields: &[
        f(
            "group",
            Ty::Str,
            "Group path, name or id (subgroups included).",
        ),
        f("name", Ty::Str, "Device name."),
        f("serial", Ty::Str, "Serial number."),
        f("state", Ty::Str, "`online` or `offline`."),
        f("tags", Ty::Str, "Tag text."),
        f(
            "csv",
            Ty::Str,
            "CSV file (relative to the job file) listing devices.",
        ),
        f(
            "column",
            Ty::Str,
            "The CSV column holding serial numbers. Default `serial`.",
        ),
        f("ids", Ty::StrList, "Device ids."),
    ],
};

pub static STEP: Shape = Shape {
    name: "step",
    doc: "A step: an id, optional needs/for_each/rollout, and exactly one operation.",
    fields: &[
        req("id", Ty::Str, "Unique step id."),
        f(
            "needs",
            Ty::StrList,
            "Steps that must succeed first; per item when both steps fan out over the same target.",
        ),
        f(
            "needs_all",
            Ty::Bool,
            "Wait for every task of the needed steps, even over the same target. Default false.",
        ),
        f(
            "for_each",
            Ty::Str,
            "Target to fan out over: one task per group or device (`${{ item.* }}`).",
        ),
        f(
            "rollout",
            Ty::Obj(&ROLLOUT),
            "Canary stages gated on failures.",
        ),
        f(
            "app_upload",
            Ty::Obj(&APP_UPLOAD),
            "Upload an APK (skipped if that version exists).",
        ),
        f(
            "app_install",
            Ty::Obj(&APP_INSTALL),
            "Install or update an app version on groups or devices.",
        ),
        f(
            "app_uninstall",
            Ty::Obj(&APP_UNINSTALL),
            "Uninstall a package.",
        ),
        f("command", Ty::Obj(&COMMAND), "Any Esper device command."),
        f(
            "alarm_rule",
            Ty::Obj(&ALARM_RULE),
            "Create or update an alarm rule, keyed by name.",
        ),
        f(
            "group_move",
            Ty::Obj(&GROUP_MOVE),
            "Move devices into a group.",
        ),
        f(
            "content_upload",
            Ty::Obj(&CONTENT_UPLOAD),
            "Upload a content file.",
        ),
        f(
            "request",
            Ty::Obj(&REQUEST),
            "Any API request (escape hatch).",
        ),
    ],
};

pub static ROLLOUT: Shape = Shape {
    name: "rollout",
    doc: "Stages of a step's tasks: each starts when the previous finished within max_failures.",
    fields: &[
        req(
            "stages",
            Ty::ListOf(&Ty::Amount),
            "Cumulative stage sizes, e.g. `[1, 10%, 100%]`.",
        ),
        f(
            "max_failures",
            Ty::Amount,
            "Failures (tasks or devices) allowed before the step stops. Default 0.",
        ),
    ],
};

pub static WAIT: Shape = Shape {
    name: "wait",
    doc: "Follow the command until every device is in a final state.",
    fields: &[f(
        "timeout",
        Ty::Duration,
        "Stop waiting after this long (devices still queued are reported). Default 30m.",
    )],
};

pub static APP_UPLOAD: Shape = Shape {
    name: "app_upload",
    doc: "Upload an APK; outputs version_id, application_id.",
    fields: &[
        req("file", Ty::Str, "APK path, relative to the job file."),
        f(
            "package",
            Ty::Str,
            "Package name, if it cannot be read from the APK.",
        ),
        f(
            "version_code",
            Ty::Str,
            "Version code, if it cannot be read from the APK.",
        ),
    ],
};

pub static APP_INSTALL: Shape = Shape {
    name: "app_install",
    doc: "INSTALL an app version: `version`, or `package` + `version_code`.",
    fields: &[
        req(
            "to",
            Ty::Str,
            "Target: one command request per group; devices in chunks of 500.",
        ),
        f(
            "version",
            Ty::Str,
            "App version id, e.g. `${{ steps.upload.version_id }}`.",
        ),
        f("package", Ty::Str, "Package name (with version_code)."),
        f("version_code", Ty::Str, "Version code (with package)."),
        f(
            "wait",
            Ty::Obj(&WAIT),
            "Follow to a final state on every device.",
        ),
    ],
};

pub static APP_UNINSTALL: Shape = Shape {
    name: "app_uninstall",
    doc: "UNINSTALL a package.",
    fields: &[
        req("to", Ty::Str, "Target groups or devices."),
        req("package", Ty::Str, "Package name."),
        f(
            "wait",
            Ty::Obj(&WAIT),
            "Follow to a final state on every device.",
        ),
    ],
};

pub static COMMAND: Shape = Shape {
    name: "command",
    doc: "Any Esper command (REBOOT, UPDATE_HEARTBEAT, SET_DEVICE_LOCKDOWN_STATE, …).",
    fields: &[
        req("to", Ty::Str, "Target groups or devices."),
        req("name", Ty::Str, "Command name."),
        f("args", Ty::Any, "command_args, sent as given."),
        f(
            "schedule",
            Ty::Obj(&SCHEDULE),
            "Run in a maintenance window instead of immediately.",
        ),
        f(
            "wait",
            Ty::Obj(&WAIT),
            "Follow to a final state on every device.",
        ),
    ],
};

pub const SCHEDULE_TYPES: &[&str] = &["IMMEDIATE", "WINDOW", "RECURRING"];

pub static SCHEDULE: Shape = Shape {
    name: "schedule",
    doc: "Esper's command schedule (`schedule` + `schedule_args`); Android devices only.",
    fields: &[
        req(
            "type",
            Ty::Enum(SCHEDULE_TYPES),
            "WINDOW runs once inside the window; RECURRING until it succeeds or expires.",
        ),
        f("name", Ty::Str, "Schedule name shown in the console."),
        f(
            "start_datetime",
            Ty::Str,
            "ISO date-time the schedule starts.",
        ),
        f("end_datetime", Ty::Str, "ISO date-time the schedule ends."),
        f(
            "time_type",
            Ty::Enum(&["console", "device"]),
            "Whose clock the window uses.",
        ),
        f("window_start_time", Ty::Str, "Daily window start, `HH:MM`."),
        f("window_end_time", Ty::Str, "Daily window end, `HH:MM`."),
        f(
            "days",
            Ty::StrList,
            "Days of the week, e.g. `[Monday, Tuesday]`.",
        ),
    ],
};

pub static ALARM_RULE: Shape = Shape {
    name: "alarm_rule",
    doc: "An alarm rule, keyed by name.",
    fields: &[
        req("name", Ty::Str, "Rule name (the natural key)."),
        f("description", Ty::Str, "Description."),
        req("metric", Ty::Str, "Metric, e.g. battery_level."),
        req("conditions", Ty::Obj(&CONDITIONS), "When the alarm fires."),
        req(
            "realert_interval",
            Ty::Int,
            "Interval between repeated alerts.",
        ),
        f("repeat_times", Ty::Int, "How often to repeat."),
        f("is_active", Ty::Bool, "Whether the rule is active."),
        f("action_emails", Ty::StrList, "Emails to notify."),
        f("actions", Ty::StrList, "Actions."),
        f("alert_channels", Ty::ListOf(&Ty::Any), "Alert channel ids."),
        f("groups", Ty::StrList, "Group ids (not with devices)."),
        f("devices", Ty::StrList, "Device ids (not with groups)."),
        f(
            "on_exists",
            Ty::Enum(ON_EXISTS),
            "When a rule with this name exists. Default update.",
        ),
    ],
};

pub static CONDITIONS: Shape = Shape {
    name: "conditions",
    doc: "Alarm conditions.",
    fields: &[
        req(
            "comparator",
            Ty::Enum(COMPARATORS),
            "How value is compared.",
        ),
        req("value", Ty::Num, "Threshold."),
        req("unit", Ty::Enum(UNITS), "Unit of value."),
        f("toggle_state", Ty::Bool, "Toggle state."),
    ],
};

pub static GROUP_MOVE: Shape = Shape {
    name: "group_move",
    doc: "Move the devices of a target into a group (PATCH ?action=add, 500 per request).",
    fields: &[
        req("devices", Ty::Str, "A devices target."),
        req("to", Ty::Str, "Destination group path, name or id."),
    ],
};

pub static CONTENT_UPLOAD: Shape = Shape {
    name: "content_upload",
    doc: "Upload a content file; outputs content_id.",
    fields: &[req("file", Ty::Str, "File path, relative to the job file.")],
};

pub static REQUEST: Shape = Shape {
    name: "request",
    doc: "Any API request; outputs status and body.",
    fields: &[
        req("method", Ty::Enum(METHODS), "HTTP method."),
        req(
            "path",
            Ty::Str,
            "Path below the base URL; `{enterprise_id}` is filled in.",
        ),
        f("query", Ty::MapOf(&Ty::Str), "Query parameters."),
        f("body", Ty::Any, "JSON body."),
    ],
};

/// The JSON Schema (draft 2020-12) of job files.
pub fn json_schema() -> Value {
    let mut root = match shape_schema(&JOB) {
        Value::Object(m) => m,
        _ => Map::new(),
    };
    root.insert(
        "$schema".into(),
        json!("https://json-schema.org/draft/2020-12/schema"),
    );
    root.insert(
        "$id".into(),
        json!("https://esper-bulk.invalid/job.schema.json"),
    );
    root.insert("title".into(), json!("esper-bulk job"));
    Value::Object(root)
}

fn shape_schema(s: &Shape) -> Value {
    let props: Map<String, Value> = s
        .fields
        .iter()
        .map(|f| {
            let mut v = ty_schema(&f.ty);
            if let Value::Object(m) = &mut v {
                m.insert("description".into(), json!(f.doc));
            }
            (f.name.to_string(), v)
        })
        .collect();
    let required: Vec<&str> = s
        .fields
        .iter()
        .filter(|f| f.required)
        .map(|f| f.name)
        .collect();
    let mut m = Map::new();
    m.insert("type".into(), json!("object"));
    m.insert("description".into(), json!(s.doc));
    m.insert("properties".into(), Value::Object(props));
    m.insert("additionalProperties".into(), json!(false));
    if !required.is_empty() {
        m.insert("required".into(), json!(required));
    }
    if s.name == "step" {
        m.insert(
            "oneOf".into(),
            Value::Array(
                OPERATIONS
                    .iter()
                    .map(|op| json!({"required": [op]}))
                    .collect(),
            ),
        );
    }
    Value::Object(m)
}

const TEMPLATE: &str = "^.*\\$\\{\\{.*\\}\\}.*$";

fn ty_schema(t: &Ty) -> Value {
    match t {
        Ty::Str => json!({"type": "string"}),
        Ty::Int => json!({"anyOf": [{"type": "integer"}, {"type": "string", "pattern": TEMPLATE}]}),
        Ty::Num => json!({"anyOf": [{"type": "number"}, {"type": "string", "pattern": TEMPLATE}]}),
        Ty::Bool => json!({"type": "boolean"}),
        Ty::Duration => {
            json!({"anyOf": [{"type": "integer", "minimum": 0}, {"type": "string", "pattern": "^[0-9]+ ?(ms|s|m|h|d|sec|min|hour|days?)( ?[0-9]+ ?(ms|s|m|h|d))*$"}]})
        }
        Ty::Rate => {
            json!({"anyOf": [{"type": "number", "exclusiveMinimum": 0}, {"type": "string", "pattern": "^[0-9.]+ ?/ ?(s|m|h)$"}]})
        }
        Ty::Amount => {
            json!({"anyOf": [{"type": "integer", "minimum": 0}, {"type": "string", "pattern": "^[0-9.]+%$"}]})
        }
        Ty::Any => json!({}),
        Ty::StrList => json!({"type": "array", "items": {"type": "string"}}),
        Ty::StrOrList => {
            json!({"anyOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}]})
        }
        Ty::Enum(values) => json!({"enum": values}),
        Ty::Obj(s) => shape_schema(s),
        Ty::MapOf(inner) => json!({"type": "object", "additionalProperties": ty_schema(inner)}),
        Ty::ListOf(inner) => json!({"type": "array", "items": ty_schema(inner)}),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_operation_has_a_step_key() {
        for op in OPERATIONS {
            assert!(STEP.field(op).is_some(), "{op}");
        }
    }

    #[test]
    fn schema_is_closed_and_complete() {
        let s = json_schema();
        assert_eq!(s["additionalProperties"], false);
        assert_eq!(
            s["properties"]["steps"]["items"]["properties"]["alarm_rule"]["required"],
            json!(["name", "metric", "conditions", "realert_interval"])
        );
        assert_eq!(
            s["properties"]["steps"]["items"]["oneOf"]
                .as_array()
                .unwrap()
                .len(),
            OPERATIONS.len()
        );
    }
}
