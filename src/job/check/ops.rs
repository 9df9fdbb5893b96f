//! One step's operation: from the operation's map (`app_install: { … }` and the others)
//! to a [`StepOp`].
//!
//! Owns what each operation requires beyond its shape: the targets its `to:` names and the
//! kind of item they yield, `app_install`'s two ways to name a version, command names
//! (against Esper's documented list, unless `unchecked`), alarm rules' groups-or-devices
//! and their `realert_interval` in seconds, a `wait`'s success threshold, and request paths. Every part of an operation
//! is checked even when an earlier part failed, so one run shows every problem. Which
//! keys take `${{ … }}` templates is the shape table's; a command's `schedule` is
//! `schedule`'s; the frame around the operation (`id`, `for_each`, `rollout`) is
//! `steps`'s, and the operation's `${{ … }}` references are `refs`'s.

use std::time::Duration;

use serde_json::Value;

use crate::job::closest;
use crate::job::model::*;
use crate::job::node::{Kind, Node};
use crate::job::shape::COMMANDS;

use super::schedule::check_schedule;
use super::targets::{self, Targets, target_kind};
use super::values::{parse_amount, parse_duration};
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
    Some(match op.kind {
        "app_upload" => StepOp::AppUpload {
            file: op.text("file")?,
            package: op.text("package"),
            version_code: op.text("version_code"),
        },
        "app_install" => app_install(cx, &op)?,
        "app_uninstall" => {
            let to = op.target(cx, "to", None);
            StepOp::AppUninstall {
                to: to?,
                package: op.text("package")?,
                wait: op.wait(cx)?,
            }
        }
        "command" => command(cx, &op)?,
        "alarm_rule" => alarm_rule(cx, &op)?,
        "group_move" => {
            let devices = op.target(cx, "devices", Some("devices"));
            StepOp::GroupMove {
                devices: devices?,
                group: op.text("to")?,
            }
        }
        "content_upload" => StepOp::ContentUpload {
            file: op.text("file")?,
        },
        "request" => request(cx, &op)?,
        "export" => export(cx, &op)?,
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
        // The shape pass refused the template; its text names no target.
        if is_template(n) {
            return None;
        }
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

    /// `wait:` with its defaults; `None` once something in it was reported.
    fn wait(&self, cx: &mut Cx) -> Option<Option<Wait>> {
        let Some(w) = self.node.get("wait") else {
            return Some(None);
        };
        let timeout = w
            .get("timeout")
            .and_then(parse_duration)
            .unwrap_or(DEFAULT_WAIT);
        let path = format!("{}.wait", self.path);
        let mut tolerance = Tolerance {
            pending_fails: w.get("pending").and_then(Node::as_str) == Some("fail"),
            ..Tolerance::default()
        };
        let mut ok = true;
        if let Some(v) = w.get("success") {
            match parse_amount(v) {
                Some(Amount::Percent(p)) => tolerance.success = Some(p),
                Some(Amount::Count(n)) => {
                    cx.error(
                        v,
                        &format!("{path}.success"),
                        format!("`success: {n}` is a count, but success is a share of the task's devices"),
                        Some(format!("write a percentage such as `95%`, or `max_device_failures: {n}` to allow {n} failed devices")),
                    );
                    ok = false;
                }
                // The shape pass reported it.
                None => ok = false,
            }
        }
        if let Some(v) = w.get("max_device_failures") {
            match &v.kind {
                Kind::Int(n) if *n >= 0 => tolerance.max_device_failures = Some(*n as u64),
                Kind::Int(n) => {
                    cx.error(
                        v,
                        &format!("{path}.max_device_failures"),
                        format!("`max_device_failures: {n}` is negative"),
                        Some("write 0 or more devices, e.g. `max_device_failures: 2`".into()),
                    );
                    ok = false;
                }
                _ => ok = false,
            }
        }
        if let (Some(_), Some(v)) = (w.get("success"), w.get("max_device_failures")) {
            cx.error(
                v,
                &format!("{path}.max_device_failures"),
                "`success` and `max_device_failures` both say how many devices may fail",
                Some(
                    "keep one: `success: 95%` (a share) or `max_device_failures: 2` (a count)"
                        .into(),
                ),
            );
            ok = false;
        }
        ok.then_some(Some(Wait { timeout, tolerance }))
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
    let wait = op.wait(cx)?;
    let verify = match op.node.get("verify").map(|n| &n.kind) {
        Some(Kind::Bool(b)) => *b,
        _ => wait.is_some(),
    };
    if verify
        && wait.is_none()
        && let Some((k, _)) = op.node.entry("verify")
    {
        cx.error(
            k,
            &format!("{}.verify", op.path),
            "`verify: true` needs `wait:`: installs are verified once the command settles",
            Some("add `wait: { timeout: 30m }`, or remove `verify`".into()),
        );
        return None;
    }
    Some(StepOp::AppInstall {
        to: to?,
        version,
        wait,
        verify,
    })
}

fn command(cx: &mut Cx, op: &Op) -> Option<StepOp> {
    let to = op.target(cx, "to", None);
    let name = command_name(cx, op);
    let schedule = op.node.get("schedule");
    if let Some(s) = schedule {
        check_schedule(cx, s, &format!("{}.schedule", op.path));
    }
    let wait = op.wait(cx);
    Some(StepOp::Command {
        to: to?,
        name: name?,
        args: op
            .node
            .get("args")
            .map(Node::to_json)
            .unwrap_or(Value::Object(Default::default())),
        schedule: schedule.map(Node::to_json),
        wait: wait?,
    })
}

/// The command's name, upper-cased: one of Esper's documented commands, or any
/// well-formed name with `unchecked: true`.
fn command_name(cx: &mut Cx, op: &Op) -> Option<String> {
    let node = op.node.get("name")?;
    if is_template(node) {
        return None;
    }
    let name = node.scalar_text()?.trim().to_ascii_uppercase();
    let path = format!("{}.name", op.path);
    if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        cx.error(
            node,
            &path,
            format!("`{name}` is not a command name"),
            Some("Esper command names look like REBOOT or UPDATE_HEARTBEAT".into()),
        );
        return None;
    }
    let unchecked = op.node.entry("unchecked");
    let is_unchecked = unchecked.is_some_and(|(_, v)| v.kind == Kind::Bool(true));
    let known = COMMANDS.contains(&name.as_str());
    if !known && !is_unchecked {
        let escape = "a command newer than esper-bulk's list of Esper's commands is sent with `unchecked: true`";
        let help = match closest(&name, COMMANDS) {
            Some(c) => format!("did you mean `{c}`? {escape}"),
            None => format!(
                "Esper documents commands such as REBOOT, UPDATE_HEARTBEAT and SET_DEVICE_LOCKDOWN_STATE; {escape}"
            ),
        };
        cx.error(
            node,
            &path,
            format!("`{name}` is not an Esper command"),
            Some(help),
        );
        return None;
    }
    if let Some((k, _)) = unchecked.filter(|_| known && is_unchecked) {
        cx.warn(
            k,
            &format!("{}.unchecked", op.path),
            format!("`{name}` is a documented Esper command; `unchecked: true` is not needed"),
            Some("remove `unchecked` so that a typo in `name` is caught".into()),
        );
    }
    Some(name)
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
        if let Some(secs) = realert_seconds(cx, op) {
            m.insert("realert_interval".into(), Value::from(secs));
        }
    }
    Some(StepOp::AlarmRule {
        name: op.text("name")?,
        body,
        on_exists,
    })
}

/// Esper takes `realert_interval` as whole seconds; the job may write any duration.
fn realert_seconds(cx: &mut Cx, op: &Op) -> Option<u64> {
    let n = op.node.get("realert_interval")?;
    let d = parse_duration(n)?;
    if d.subsec_millis() != 0 {
        cx.error(
            n,
            &format!("{}.realert_interval", op.path),
            format!(
                "`realert_interval` must be whole seconds, found `{}`",
                n.scalar_text().unwrap_or_default()
            ),
            Some("Esper takes it in seconds: write e.g. `600`, `10m` or `1h`".into()),
        );
        return None;
    }
    Some(d.as_secs())
}

fn request(cx: &mut Cx, op: &Op) -> Option<StepOp> {
    let path = op.text("path");
    if let (Some(p), Some(n)) = (&path, op.node.get("path"))
        && !p.starts_with('/')
    {
        cx.error(
            n,
            &format!("{}.path", op.path),
            format!("`{p}` must start with `/`"),
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
        path: path?,
        query,
        body: op.node.get("body").map(Node::to_json),
    })
}

/// `export:`: what to read and where, with the keys that make sense only for some `what`s
/// refused for the others, and the format taken from the file name when not given.
fn export(cx: &mut Cx, op: &Op) -> Option<StepOp> {
    let what = ExportWhat::parse(&op.text("what")?)?;
    let mut ok = true;
    let refuse = |cx: &mut Cx, key: &str, applies: &str| {
        if let Some((k, _)) = op.node.entry(key) {
            cx.error(
                k,
                &format!("{}.{key}", op.path),
                format!("`{key}` does not apply to `what: {}`", what.as_str()),
                Some(format!("`{key}` is for {applies}")),
            );
            true
        } else {
            false
        }
    };
    use ExportWhat as W;
    if !matches!(what, W::Devices | W::Groups | W::Installed) {
        ok &= !refuse(cx, "target", "`what: devices`, `groups` and `installed`");
    }
    if !matches!(what, W::Devices | W::Groups) {
        ok &= !refuse(cx, "fields", "`what: devices` and `groups`");
    }
    if what != W::Installed {
        ok &= !refuse(cx, "package", "`what: installed`");
        ok &= !refuse(cx, "version_code", "`what: installed`");
    }
    if what != W::Commands {
        ok &= !refuse(cx, "since", "`what: commands`");
    }
    let want = match what {
        W::Groups => Some("groups"),
        W::Devices | W::Installed => None,
        _ => None,
    };
    let target = if op.node.get("target").is_some() {
        let t = op.target(cx, "target", want);
        ok &= t.is_some();
        t
    } else {
        None
    };
    if let (Some(t), Some(n)) = (&target, op.node.get("target"))
        && op
            .targets
            .get(t)
            .is_some_and(|(_, s)| matches!(s, TargetSpec::Union(_)))
    {
        cx.error(
            n,
            &format!("{}.target", op.path),
            format!("`{t}` is a union; an export reads one target"),
            Some("export each member in its own step".into()),
        );
        ok = false;
    }
    if what == W::Installed && op.node.get("package").is_none() {
        cx.error(
            op.key,
            op.path,
            "`what: installed` needs `package`",
            Some("e.g. `package: com.acme.kiosk`, and `version_code: 420` for one version".into()),
        );
        ok = false;
    }
    let file = op.text("file");
    let named = op.text("format").and_then(|f| ExportFormat::parse(&f));
    let by_ext = file.as_deref().and_then(ExportFormat::of_path);
    let format = match (named, by_ext) {
        (Some(a), Some(b)) if a != b => {
            if let Some(n) = op.node.get("format") {
                cx.error(
                    n,
                    &format!("{}.format", op.path),
                    format!(
                        "`format: {}` but `file` ends in `.{}`",
                        a.extension(),
                        b.extension()
                    ),
                    Some("drop `format` (the extension decides), or rename the file".into()),
                );
            }
            ok = false;
            a
        }
        (Some(a), _) => a,
        (None, Some(b)) => b,
        (None, None) => ExportFormat::Csv,
    };
    let since = match op.node.get("since") {
        None => None,
        Some(n) => {
            let text = n.scalar_text().unwrap_or_default();
            if text.trim() == "last_run" {
                Some(Since::LastRun)
            } else {
                match super::values::parse_duration(n) {
                    Some(d) if !d.is_zero() => Some(Since::Ago(d)),
                    _ => {
                        cx.error(
                            n,
                            &format!("{}.since", op.path),
                            format!("`since: {text}` is neither a duration nor `last_run`"),
                            Some("write e.g. `since: 24h`, or `since: last_run` for the commands since this job last succeeded".into()),
                        );
                        ok = false;
                        None
                    }
                }
            }
        }
    };
    let fields: Vec<String> = op
        .node
        .get("fields")
        .and_then(Node::as_seq)
        .map(|l| l.iter().filter_map(Node::scalar_text).collect())
        .unwrap_or_default();
    ok.then(|| {
        StepOp::Export(ExportSpec {
            what,
            target,
            fields,
            format,
            file,
            package: op.text("package"),
            version_code: op.text("version_code"),
            since,
        })
    })
}
