//! One step's operation: from the operation's map (`app_install: { … }` and the others)
//! to a [`StepOp`].
//!
//! Owns what each operation requires beyond its shape: the targets its `to:` names and the
//! kind of item they yield, the values that must be written literally because they are
//! used before any task exists, `app_install`'s two ways to name a version, command names,
//! alarm rules' groups-or-devices, and request paths. The frame around the operation
//! (`id`, `for_each`, `rollout`) is `steps`'s, and its `${{ … }}` references are `refs`'s.

use std::time::Duration;

use serde_json::Value;

use crate::job::model::*;
use crate::job::node::Node;

use super::targets::{self, Targets, target_kind};
use super::values::parse_duration;
use super::{Cx, help_names, is_template, text};

/// How long a `wait:` without `timeout` waits.
const DEFAULT_WAIT: Duration = Duration::from_secs(30 * 60);

/// One operation being built: its key, its map and where it is.
struct Op<'a, 'n> {
    key: &'a Node,
    node: &'a Node,
    kind: &'a str,
    path: &'a str,
    targets: &'a Targets<'n>,
}

/// The operation as a [`StepOp`], or `None` once something in it was reported.
pub(super) fn operation(
    cx: &mut Cx,
    key: &Node,
    node: &Node,
    path: &str,
    targets: &Targets,
) -> Option<StepOp> {
    let op = Op {
        key,
        node,
        kind: key.as_str().unwrap_or_default(),
        path,
        targets,
    };
    check_literals(cx, &op);
    Some(match op.kind {
        "app_upload" => StepOp::AppUpload {
            file: op.text("file")?,
            package: op.text("package"),
            version_code: op.text("version_code"),
        },
        "app_install" => app_install(cx, &op)?,
        "app_uninstall" => StepOp::AppUninstall {
            to: op.target(cx, "to", None)?,
            package: op.text("package")?,
            wait: op.wait(),
        },
        "command" => command(cx, &op)?,
        "alarm_rule" => alarm_rule(cx, &op)?,
        "group_move" => StepOp::GroupMove {
            devices: op.target(cx, "devices", Some("devices"))?,
            group: op.text("to")?,
        },
        "content_upload" => StepOp::ContentUpload {
            file: op.text("file")?,
        },
        "request" => request(cx, &op)?,
        _ => return None,
    })
}

impl Op<'_, '_> {
    fn text(&self, key: &str) -> Option<String> {
        text(self.node, key)
    }

    /// The target named under `key`, if it exists and yields `want` (any kind if `None`).
    fn target(&self, cx: &mut Cx, key: &str, want: Option<&str>) -> Option<String> {
        let (n, t) = self
            .node
            .get(key)
            .and_then(|n| Some((n, n.scalar_text()?)))?;
        let path = format!("{}.{key}", self.path);
        match target_kind(self.targets, &t) {
            None => {
                cx.error(
                    n,
                    &path,
                    format!("unknown target `{t}`"),
                    help_names(&t, &targets::names(self.targets)),
                );
                None
            }
            Some(k) if want.is_some_and(|w| w != k) => {
                cx.error(
                    n,
                    &path,
                    format!("`{t}` selects {k}, but {}.{key} needs devices", self.kind),
                    Some("define a `devices:` target".into()),
                );
                None
            }
            Some(_) => Some(t),
        }
    }

    fn wait(&self) -> Option<Duration> {
        self.node.get("wait").map(|w| {
            w.get("timeout")
                .and_then(parse_duration)
                .unwrap_or(DEFAULT_WAIT)
        })
    }
}

/// These values pick targets, files or names before any task exists, so templates in
/// them would be sent literally; say so instead of failing later.
fn check_literals(cx: &mut Cx, op: &Op) {
    let literal: &[&str] = match op.kind {
        "app_upload" => &["file", "package", "version_code"],
        "content_upload" => &["file"],
        "group_move" => &["devices", "to"],
        "command" => &["to", "name"],
        "app_install" | "app_uninstall" => &["to"],
        _ => &[],
    };
    for key in literal {
        if let Some(n) = op.node.get(key)
            && is_template(n)
        {
            cx.error(
                n,
                &format!("{}.{key}", op.path),
                format!("`{}.{key}` does not take `${{{{ … }}}}` templates", op.kind),
                Some("write the value itself, or an environment variable as `${NAME}`".into()),
            );
        }
    }
}

fn app_install(cx: &mut Cx, op: &Op) -> Option<StepOp> {
    let to = op.target(cx, "to", None);
    let version = match (
        op.text("version"),
        op.text("package"),
        op.text("version_code"),
    ) {
        (Some(v), None, None) => VersionRef::Id(v),
        (None, Some(p), Some(c)) => VersionRef::Package {
            package: p,
            version_code: c,
        },
        _ => {
            cx.error(op.key, op.path, "app_install needs `version` (a version id), or `package` with `version_code`", Some("e.g. `version: ${{ steps.upload.version_id }}`, or `package: com.acme.kiosk` + `version_code: 420`".into()));
            return None;
        }
    };
    Some(StepOp::AppInstall {
        to: to?,
        version,
        wait: op.wait(),
    })
}

fn command(cx: &mut Cx, op: &Op) -> Option<StepOp> {
    let name = op.text("name")?.trim().to_ascii_uppercase();
    if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        cx.error(
            op.node.get("name")?,
            &format!("{}.name", op.path),
            format!("`{name}` is not a command name"),
            Some("Esper command names look like REBOOT or UPDATE_HEARTBEAT".into()),
        );
    }
    Some(StepOp::Command {
        to: op.target(cx, "to", None)?,
        name,
        args: op
            .node
            .get("args")
            .map(Node::to_json)
            .unwrap_or(Value::Object(Default::default())),
        schedule: op.node.get("schedule").map(Node::to_json),
        wait: op.wait(),
    })
}

fn alarm_rule(cx: &mut Cx, op: &Op) -> Option<StepOp> {
    if let (Some(_), Some((k, _))) = (op.node.get("groups"), op.node.entry("devices")) {
        cx.error(
            k,
            op.path,
            "an alarm rule cannot target both groups and devices",
            Some("Esper links a rule to devices only or to groups only".into()),
        );
    }
    let on_exists = match op.text("on_exists").as_deref() {
        Some("skip") => OnExists::Skip,
        Some("fail") => OnExists::Fail,
        _ => OnExists::Update,
    };
    // The rest of the map is the rule as Esper takes it; `on_exists` is ours alone.
    let mut body = op.node.to_json();
    if let Value::Object(m) = &mut body {
        m.remove("on_exists");
    }
    Some(StepOp::AlarmRule {
        name: op.text("name")?,
        body,
        on_exists,
    })
}

fn request(cx: &mut Cx, op: &Op) -> Option<StepOp> {
    let path = op.text("path")?;
    if !path.starts_with('/') {
        cx.error(
            op.node.get("path")?,
            &format!("{}.path", op.path),
            format!("`{path}` must start with `/`"),
            Some(
                "paths are below the base URL, e.g. `/v1/enterprise/{enterprise_id}/alarmrules/`"
                    .into(),
            ),
        );
    }
    let query = op
        .node
        .get("query")
        .and_then(Node::as_map)
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| Some((k.scalar_text()?, v.scalar_text()?)))
                .collect()
        })
        .unwrap_or_default();
    Some(StepOp::Request {
        method: op.text("method")?,
        path,
        query,
        body: op.node.get("body").map(Node::to_json),
    })
}
