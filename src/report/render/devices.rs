//! `devices.csv`: one row per device of every task over devices, with its name and serial,
//! and the device rows the HTML report's per-step tables of failed devices show.
//!
//! A task over devices is one to a device or a device list (the plan froze their names
//! and serials), or a followed command to a group (its devices are known from the
//! command's status, by id, and only those that did not succeed). What this file owns is
//! which rows exist and their columns; quoting is the CSV renderer's, layout the HTML's.

use super::csv::csv_field;
use crate::exec::{DeviceState, TaskStatus};
use crate::report::{Report, TaskReport};

/// One device of one task.
pub struct DeviceRow<'a> {
    pub task: &'a TaskReport,
    /// The group path of a command to a group, or of a device when the plan read it.
    pub group: String,
    /// The device's name, or its id when the plan did not name it (a group's devices).
    pub device: String,
    pub serial: String,
    pub id: String,
    /// The device's command state when the command was followed (`succeeded`, `failed`,
    /// `timed_out`, `cancelled`, `pending`); `None` when it was not.
    pub command_state: Option<&'static str>,
    /// Why it did not succeed: the device's own reason, else the task's problem.
    pub reason: String,
}

impl DeviceRow<'_> {
    /// Whether the device did not end where the step wanted it.
    pub fn failed(&self) -> bool {
        match self.command_state {
            Some(s) => s != "succeeded",
            None => self.task.status != TaskStatus::Succeeded,
        }
    }
}

pub fn state_word(s: DeviceState) -> &'static str {
    match s {
        DeviceState::Succeeded => "succeeded",
        DeviceState::Failed => "failed",
        DeviceState::TimedOut => "timed_out",
        DeviceState::Cancelled => "cancelled",
        DeviceState::Pending => "pending",
    }
}

/// Every device row of the report, in plan order.
pub fn device_rows(r: &Report) -> Vec<DeviceRow<'_>> {
    let mut out = Vec::new();
    for t in &r.tasks {
        let error = t.error_text().unwrap_or_default();
        let followed = t.followed.as_ref();
        let listed = followed.map_or(&[][..], |f| &f.devices[..]);
        // Devices a verified install found without the version, though the command said
        // it succeeded: not a success here either.
        let missing = followed
            .and_then(|f| f.install.as_ref())
            .map_or(&[][..], |i| &i.missing[..]);
        // The command's status was read: a device it does not list as unsuccessful succeeded.
        let read = followed.is_some_and(|f| f.counts.is_some());
        if !t.devices.is_empty() {
            for d in &t.devices {
                let found = listed.iter().find(|x| x.id == d.id);
                let command_state = match found {
                    Some(x) => Some(state_word(x.state)),
                    None if missing.contains(&d.id) => Some(NOT_INSTALLED_STATE),
                    None if read => Some("succeeded"),
                    None => None,
                };
                let reason = match found {
                    Some(x) => x.reason.clone().unwrap_or_default(),
                    None if command_state == Some(NOT_INSTALLED_STATE) => NOT_INSTALLED.into(),
                    None if command_state == Some("succeeded") => String::new(),
                    None => error.clone(),
                };
                out.push(DeviceRow {
                    task: t,
                    group: d.group.clone().unwrap_or_default(),
                    device: d.name.clone(),
                    serial: d.serial.clone().unwrap_or_default(),
                    id: d.id.clone(),
                    command_state,
                    reason,
                });
            }
            continue;
        }
        for x in listed {
            out.push(DeviceRow {
                task: t,
                group: t.target.clone(),
                device: x.id.clone(),
                serial: String::new(),
                id: x.id.clone(),
                command_state: Some(state_word(x.state)),
                reason: x.reason.clone().unwrap_or_default(),
            });
        }
        // A group's command names only its unsuccessful devices; add those whose success
        // the install check disproved.
        for id in missing
            .iter()
            .filter(|m| !listed.iter().any(|x| x.id == **m))
        {
            out.push(DeviceRow {
                task: t,
                group: t.target.clone(),
                device: id.clone(),
                serial: String::new(),
                id: id.clone(),
                command_state: Some(NOT_INSTALLED_STATE),
                reason: NOT_INSTALLED.into(),
            });
        }
    }
    out
}

/// The command state column of a device whose INSTALL succeeded without installing.
const NOT_INSTALLED_STATE: &str = "succeeded_not_installed";
/// Its reason column (as in `results.csv`).
const NOT_INSTALLED: &str = "command succeeded but the version is not installed";

/// Whether the run had a task over devices, so that `devices.csv` has something to say.
pub fn has_devices(r: &Report) -> bool {
    r.tasks.iter().any(|t| {
        !t.devices.is_empty()
            || t.followed.as_ref().is_some_and(|f| {
                !f.devices.is_empty() || f.install.as_ref().is_some_and(|i| !i.missing.is_empty())
            })
    })
}

/// `devices.csv`: a header and one row per device (see [`device_rows`]), `\n`-terminated
/// like `results.csv`.
pub fn devices_csv(r: &Report) -> String {
    let mut out =
        String::from("step,task,group,device,serial,device_id,status,command_state,reason\n");
    for row in device_rows(r) {
        let fields = [
            csv_field(&row.task.step),
            row.task.id.to_string(),
            csv_field(&row.group),
            csv_field(&row.device),
            csv_field(&row.serial),
            csv_field(&row.id),
            row.task.status.as_str().to_string(),
            row.command_state.unwrap_or_default().to_string(),
            csv_field(&row.reason),
        ];
        out.push_str(&fields.join(","));
        out.push('\n');
    }
    out
}
