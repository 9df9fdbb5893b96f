//! `results.csv`: one row per target, in plan order, for spreadsheets and scripts.
//!
//! Every task's problem is its plain one-line text ([`TaskReport::error_text`](crate::report::TaskReport::error_text)); a task
//! over several devices gets a row per device with that device's own command result.
//! What this file owns is the row shape and RFC 4180 quoting.

use serde_json::Value;

use crate::exec::DeviceState;
use crate::report::Report;

/// `results.csv`: one row per target, in plan order, with RFC 4180 quoting: a task that
/// covers several devices gets one row per device, with that device's final command state
/// and reason when the command was followed; a command to a group gets one more row per
/// device that did not succeed (failed or still pending). Records end in
/// `\n` rather than RFC 4180's CRLF: spreadsheets accept both, and shell tools (`cut`,
/// `awk`) would otherwise see a stray `\r` in the last column.
pub fn csv(r: &Report) -> String {
    let mut out = String::from("task,step,target,status,attempts,error,result_id\n");
    for t in &r.tasks {
        let id = result_id(t.result.as_ref()).unwrap_or_default();
        let mut row = |target: &str, status: &str, error: &str| {
            let fields = [
                t.id.to_string(),
                csv_field(&t.step),
                csv_field(target),
                status.to_string(),
                t.attempts.len().to_string(),
                csv_field(error),
                csv_field(&id),
            ];
            out.push_str(&fields.join(","));
            out.push('\n');
        };
        let error = t.error_text().unwrap_or_default();
        let followed = t.followed.as_ref().map_or(&[][..], |f| &f.devices[..]);
        // Devices whose INSTALL reported success but that lack the version.
        let missing = t
            .followed
            .as_ref()
            .and_then(|f| f.install.as_ref())
            .map_or(&[][..], |i| &i.missing[..]);
        // A task over one device is one target (its device's rows are `devices.csv`'s).
        if t.devices.len() <= 1 {
            row(&t.target, t.status.as_str(), &error);
            // A group's command: one more row for each device that did not succeed, so
            // pending and failed devices are listed, not only counted.
            for d in followed {
                if let Some((status, text)) = device_row(d.state, d.reason.as_deref()) {
                    row(&format!("{} device {}", t.target, d.id), status, &text);
                }
            }
            for d in missing {
                row(&format!("{} device {d}", t.target), "failed", NOT_INSTALLED);
            }
            continue;
        }
        // Per-device command results, when the command was followed to its end.
        for d in &t.devices {
            let found = followed.iter().find(|x| x.id == d.id);
            match found.and_then(|x| device_row(x.state, x.reason.as_deref())) {
                Some((status, text)) => row(&d.name, status, &text),
                None if missing.contains(&d.id) => row(&d.name, "failed", NOT_INSTALLED),
                None => row(&d.name, t.status.as_str(), &error),
            }
        }
    }
    out
}

/// The error column of a device a verified install found without the version.
const NOT_INSTALLED: &str = "command succeeded but the version is not installed";

/// The status and error columns of a device that did not succeed; `None` for one that did.
pub(super) fn device_row(
    state: DeviceState,
    reason: Option<&str>,
) -> Option<(&'static str, String)> {
    let what = match state {
        DeviceState::Succeeded => return None,
        DeviceState::Pending => {
            return Some((
                "pending",
                "still queued when the wait ended (offline?)".into(),
            ));
        }
        DeviceState::TimedOut => "command timed out",
        DeviceState::Cancelled => "command cancelled",
        DeviceState::Failed => "command failed",
    };
    Some((
        "failed",
        reason.map_or_else(|| what.to_string(), |r| format!("{what}: {r}")),
    ))
}

/// A field quoted when it holds a comma, a quote or a line break, quotes doubled.
pub(super) fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

/// The id a task created or updated: an alarm rule's `id`, an app's `version_id`, an
/// upload's `content_id`, a command's `command_id`.
fn result_id(result: Option<&Value>) -> Option<String> {
    let obj = result?.as_object()?;
    ["id", "version_id", "content_id", "command_id"]
        .iter()
        .find_map(|k| match obj.get(*k)? {
            Value::String(s) => Some(s.clone()),
            Value::Number(n) => Some(n.to_string()),
            _ => None,
        })
}
