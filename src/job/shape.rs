//! The job language's shape, written once: which keys each map takes, their types, which
//! are required and what they mean.
//!
//! The checker's shape pass (`check/shape_pass.rs`) uses these tables for unknown keys
//! (with did-you-mean), missing keys and type errors, and `esper-bulk schema` turns the
//! same tables into a JSON Schema for editors, so the two cannot drift. Meaning beyond
//! shape (references, cycles, value ranges) is checked by the other passes in `check/`.
//!
//! Each key also says whether its value may hold `${{ … }}` templates and when they are
//! rendered ([`Tpl`]): the checker refuses templates elsewhere, and the planner renders
//! every key marked here.

use serde_json::{Map, Value, json};

use crate::job::{MAX_DURATION, TIME_OF_DAY_PATTERN, duration_pattern};

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
    /// A day of the week, written in full: `Monday`.
    Weekday,
    /// `HH:MM` on a 24-hour clock.
    TimeOfDay,
    /// An RFC 3339 date-time with its offset: `2026-01-01T00:00:00Z`.
    DateTime,
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

/// Whether a key's value may hold `${{ … }}` templates, and when they are rendered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tpl {
    /// Taken literally: the value names targets, files, steps or settings that are used
    /// before any task exists.
    No,
    /// Rendered when a task is made from the plan (`vars`, `item`, `target`); `steps.*`
    /// outputs are filled in when the task runs.
    Task,
    /// Rendered from `vars` when the job loads, because the checker or the planner reads
    /// the value itself (a version looked up at plan time, a schedule's days).
    Load,
}

#[derive(Debug)]
pub struct Field {
    pub name: &'static str,
    pub ty: Ty,
    pub required: bool,
    pub doc: &'static str,
    pub tpl: Tpl,
}

impl Field {
    /// Templates here are rendered into each task.
    const fn templated(self) -> Field {
        Field {
            tpl: Tpl::Task,
            ..self
        }
    }
    /// Templates here may only read `vars`, rendered when the job loads.
    const fn vars_at_load(self) -> Field {
        Field {
            tpl: Tpl::Load,
            ..self
        }
    }
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
        tpl: Tpl::No,
    }
}
const fn req(name: &'static str, ty: Ty, doc: &'static str) -> Field {
    Field {
        name,
        ty,
        required: true,
        doc,
        tpl: Tpl::No,
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

/// Esper's documented device commands (`DeviceCommandEnum` of `POST /commands/v0/commands/`).
/// A command newer than this list is sent with `unchecked: true`.
pub const COMMANDS: &[&str] = &[
    "ADD_TO_WHITELIST",
    "ADD_WIFI_AP",
    "APPLY_APP_CONFIG",
    "CLEAR_APP_DATA",
    "CONVERGE",
    "INSTALL",
    "INSTALL_CERTIFICATE",
    "LIST_INSTALLED_PROFILES",
    "LOCK",
    "REBOOT",
    "REMOVE_FROM_WHITELIST",
    "REMOVE_PROFILE",
    "REMOVE_WIFI_AP",
    "SET_APP_PERMISSION",
    "SET_APP_STATE",
    "SET_BLUETOOTH_STATE",
    "SET_BRIGHTNESS_SCALE",
    "SET_DEVICE_LOCKDOWN_STATE",
    "SET_GPS_STATE",
    "SET_KIOSK_APP",
    "SET_MULTI_APP_MODE",
    "SET_NEW_POLICY",
    "SET_ROTATION_STATE",
    "SET_SCREEN_OFF_TIMEOUT",
    "SET_STREAM_VOLUME",
    "SET_TIMEZONE",
    "SET_WIFI_STATE",
    "UNINSTALL",
    "UNINSTALL_CERTIFICATE",
    "UPDATE_DEVICE_CONFIG",
    "UPDATE_HEARTBEAT",
    "UPDATE_LATEST_DPC",
    "WIPE",
    "RESET_LOCKSCREEN_PASSWORD",
    "UPDATE_BLUEPRINT",
    "NOTIFY_DEVICE",
    "SET_DEVICE_LANGUAGE",
    "SET_ETHERNET_SETTINGS",
    "SET_STATIC_IP",
    "BEEP_DEVICE",
    "SET_APP_NOTIFICATIONS",
    "USE_ONLY_SAVED_WIFI_AP",
    "DEVICE_INFORMATION",
    "VPP_APP_INSTALL",
    "APPLE_APP_UNINSTALL",
    "CLEAR_PASSCODE",
    "INSTALL_PROFILE",
    "RUN_SHELL_SCRIPT",
    "RUN_CUSTOM_ACTION",
    "COLLECT_LOGS",
];

/// Days of the week as a schedule's `days` names them.
pub const DAYS: &[&str] = &[
    "Monday",
    "Tuesday",
    "Wednesday",
    "Thursday",
    "Friday",
    "Saturday",
    "Sunday",
];

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
    "export",
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
        f(
            "notify",
            Ty::ListOf(&Ty::Obj(&NOTIFY)),
            "Webhooks called when the run ends.",
        ),
        f(
            "coordinator",
            Ty::Str,
            "The Redis several hosts share the tenant's rate budget and run lock through, e.g. `${ESPER_BULK_REDIS_URL}` (`run --coordinator` wins over it, it wins over the variable).",
        ),
    ],
};

pub static NOTIFY: Shape = Shape {
    name: "notify",
    doc: "A webhook the run POSTs its summary to when it ends.",
    fields: &[
        req(
            "url",
            Ty::Str,
            "The webhook URL, e.g. `${SLACK_WEBHOOK_URL}`; a secret, rendered only when the run sends.",
        ),
        f(
            "on",
            Ty::ListOf(&Ty::Enum(crate::job::NotifyOn::NAMES)),
            "Outcomes it is called on: failure, success, threshold, interrupted. Default all.",
        ),
        f(
            "format",
            Ty::Enum(crate::job::NotifyFormat::NAMES),
            "`json` (the summary) or `slack` (`{\"text\": …}`). Default json.",
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
        f(
            "device_list_rate",
            Ty::Rate,
            "Budget of the fleet-wide device listing (`/v2/devices/`, used to find many serials), inside `rate`: the API throttles it far harder. Default `12/m` (one page every 5 s).",
        ),
        f(
            "expected_processes",
            Ty::Int,
            "With `run --coordinator`: how many processes usually share the tenant; while Redis is unreachable each paces at `rate` divided by this. Default 2 (`--expected-processes` overrides it).",
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
        f(
            "export",
            Ty::Obj(&EXPORT),
            "Read devices, groups, apps, installs, alarm rules or commands into a file.",
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

pub const PENDING: &[&str] = &["report", "fail"];

pub static WAIT: Shape = Shape {
    name: "wait",
    doc: "Follow the command until every device is in a final state, and say what success means.",
    fields: &[
        f(
            "timeout",
            Ty::Duration,
            "Stop waiting after this long (devices still queued are reported). Default 30m.",
        ),
        f(
            "success",
            Ty::Amount,
            "Share of the task's devices that must not fail, e.g. `95%`. Default 100%.",
        ),
        f(
            "max_device_failures",
            Ty::Int,
            "Devices of the task that may fail (instead of `success`). Default 0.",
        ),
        f(
            "pending",
            Ty::Enum(PENDING),
            "Devices still queued when the wait ends: `report` (counted, not failed; default) or `fail`.",
        ),
    ],
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
        )
        .templated(),
        f("package", Ty::Str, "Package name (with version_code).").vars_at_load(),
        f("version_code", Ty::Str, "Version code (with package).").vars_at_load(),
        f(
            "wait",
            Ty::Obj(&WAIT),
            "Follow to a final state on every device.",
        ),
        f(
            "verify",
            Ty::Bool,
            "After the wait, read which devices have the version installed; a device whose command succeeded without it counts as failed. Default true with `wait`.",
        ),
    ],
};

pub static APP_UNINSTALL: Shape = Shape {
    name: "app_uninstall",
    doc: "UNINSTALL a package.",
    fields: &[
        req("to", Ty::Str, "Target groups or devices."),
        req("package", Ty::Str, "Package name.").templated(),
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
        req(
            "name",
            Ty::Str,
            "Command name from Esper's DeviceCommandEnum, e.g. REBOOT.",
        ),
        f(
            "unchecked",
            Ty::Bool,
            "Send `name` although it is not in Esper's documented list (a newer command).",
        ),
        f("args", Ty::Any, "command_args, sent as given.").templated(),
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
pub const TIME_TYPES: &[&str] = &["console", "device"];

pub static SCHEDULE: Shape = Shape {
    name: "schedule",
    doc: "Esper's command schedule (`schedule` + `schedule_args`); Android devices only.",
    fields: &[
        req(
            "type",
            Ty::Enum(SCHEDULE_TYPES),
            "WINDOW runs once inside the window; RECURRING until it succeeds or expires.",
        ),
        f("name", Ty::Str, "Schedule name shown in the console.").templated(),
        f(
            "start_datetime",
            Ty::DateTime,
            "RFC 3339 date-time the schedule starts, e.g. `2026-01-01T00:00:00Z`.",
        )
        .vars_at_load(),
        f(
            "end_datetime",
            Ty::DateTime,
            "RFC 3339 date-time the schedule ends (expires).",
        )
        .vars_at_load(),
        f(
            "time_type",
            Ty::Enum(TIME_TYPES),
            "Whose time zone the window uses: `device` (each device's own) or `console` (the user's who made it).",
        ),
        f(
            "window_start_time",
            Ty::TimeOfDay,
            "Daily window start, `HH:MM` (24-hour).",
        )
        .vars_at_load(),
        f(
            "window_end_time",
            Ty::TimeOfDay,
            "Daily window end, `HH:MM` (24-hour).",
        )
        .vars_at_load(),
        f(
            "days",
            Ty::ListOf(&Ty::Weekday),
            "Days of the week the window opens, e.g. `[Monday, Tuesday]`.",
        )
        .vars_at_load(),
    ],
};

pub static ALARM_RULE: Shape = Shape {
    name: "alarm_rule",
    doc: "An alarm rule, keyed by name.",
    fields: &[
        req("name", Ty::Str, "Rule name (the natural key).").templated(),
        f("description", Ty::Str, "Description.").templated(),
        req("metric", Ty::Str, "Metric, e.g. battery_level.").templated(),
        req("conditions", Ty::Obj(&CONDITIONS), "When the alarm fires."),
        req(
            "realert_interval",
            Ty::Duration,
            "Time between repeated alerts; sent to Esper in seconds.",
        )
        .vars_at_load(),
        f("repeat_times", Ty::Int, "How often to repeat.").templated(),
        f("is_active", Ty::Bool, "Whether the rule is active."),
        f("action_emails", Ty::StrList, "Emails to notify.").templated(),
        f("actions", Ty::StrList, "Actions.").templated(),
        f("alert_channels", Ty::ListOf(&Ty::Any), "Alert channel ids.").templated(),
        f("groups", Ty::StrList, "Group ids (not with devices).").templated(),
        f("devices", Ty::StrList, "Device ids (not with groups).").templated(),
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
        req("value", Ty::Num, "Threshold.").templated(),
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
        )
        .templated(),
        f("query", Ty::MapOf(&Ty::Str), "Query parameters.").templated(),
        f("body", Ty::Any, "JSON body.").templated(),
    ],
};

pub const EXPORT_WHAT: &[&str] = crate::job::model::ExportWhat::NAMES;
pub const EXPORT_FORMATS: &[&str] = crate::job::model::ExportFormat::NAMES;

pub static EXPORT: Shape = Shape {
    name: "export",
    doc: "Read part of the tenant into a file (csv, json or jsonl); reads only.",
    fields: &[
        req(
            "what",
            Ty::Enum(EXPORT_WHAT),
            "devices, groups, apps, installed, alarm_rules or commands.",
        ),
        f(
            "target",
            Ty::Str,
            "Target whose devices (devices, installed) or groups (groups) are read. Default: all.",
        ),
        f(
            "fields",
            Ty::StrList,
            "Columns (devices, groups): names such as `serial`, `group`, or dotted paths into Esper's object.",
        ),
        f(
            "format",
            Ty::Enum(EXPORT_FORMATS),
            "csv, json or jsonl. Default: from `file`'s extension, else csv.",
        ),
        f(
            "file",
            Ty::Str,
            "Output file, relative to the job file. Default `<run dir>/exports/<step id>.<format>`.",
        ),
        f("package", Ty::Str, "what: installed: the package name.").vars_at_load(),
        f(
            "version_code",
            Ty::Str,
            "what: installed: only this version code of the package.",
        )
        .vars_at_load(),
        f(
            "since",
            Ty::Str,
            "what: commands: `24h` (any duration) or `last_run` (since this job's last successful run).",
        ),
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
            let mut v = ty_schema(&f.ty, f.tpl);
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

/// `schema`, or also a template string where the key takes templates.
fn or_template(schema: Value, tpl: Tpl) -> Value {
    if tpl == Tpl::No {
        return schema;
    }
    let template = json!({"type": "string", "pattern": TEMPLATE});
    match schema {
        Value::Object(mut m) if m.contains_key("anyOf") => {
            if let Some(Value::Array(alts)) = m.get_mut("anyOf") {
                alts.push(template);
            }
            Value::Object(m)
        }
        other => json!({"anyOf": [other, template]}),
    }
}

fn ty_schema(t: &Ty, tpl: Tpl) -> Value {
    match t {
        Ty::Str => json!({"type": "string"}),
        Ty::Int => or_template(json!({"type": "integer"}), tpl),
        Ty::Num => or_template(json!({"type": "number"}), tpl),
        Ty::Bool => json!({"type": "boolean"}),
        Ty::Duration => or_template(
            json!({"anyOf": [
                {"type": "integer", "minimum": 0, "maximum": MAX_DURATION.as_secs()},
                {"type": "string", "pattern": duration_pattern()}
            ]}),
            tpl,
        ),
        Ty::Weekday => or_template(json!({"enum": DAYS}), tpl),
        Ty::TimeOfDay => or_template(
            json!({"type": "string", "pattern": TIME_OF_DAY_PATTERN}),
            tpl,
        ),
        Ty::DateTime => or_template(json!({"type": "string", "format": "date-time"}), tpl),
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
        Ty::MapOf(inner) => {
            json!({"type": "object", "additionalProperties": ty_schema(inner, tpl)})
        }
        Ty::ListOf(inner) => json!({"type": "array", "items": ty_schema(inner, tpl)}),
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
