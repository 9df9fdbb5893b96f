//! Journal format 1, read and converted to current records. Format 1 kept a task's
//! failure as one string (`error`) and an attempt's answer as a short code (`result`:
//! `ok`, an HTTP status, or a failure class). A string error becomes a failure of class
//! `unclassified` with the text as its description. The sentences format 1 wrote for
//! tasks that did not run came from fixed templates, so they are recognised and turned
//! back into their reasons; followed commands' device results came as JSON under
//! `result.devices` and become typed counts again.

use serde::Deserialize;
use serde_json::Value;

use super::records::*;
use crate::base::FailureClass;
use crate::exec::{DeviceState, StopReason, TaskStatus};

/// The format 1 suffix of an `unknown` task's error; the report adds it from the status.
const UNKNOWN_SUFFIX: &str =
    "; an earlier attempt may have been applied and no read-back confirmed it";

#[derive(Deserialize)]
#[serde(tag = "entry", rename_all = "snake_case")]
pub(super) enum Entry {
    Start {
        format: u32,
        run_id: String,
        job: String,
        tasks: u32,
        at: String,
        resumed: bool,
    },
    Intent {
        task: u32,
    },
    Outcome(Outcome1),
    Finish {
        started_at: String,
        finished_at: String,
        elapsed_ms: u64,
        #[serde(default)]
        stopped: Option<StopReason>,
        #[serde(default)]
        thresholds: Vec<String>,
        governor: GovernorRecord,
    },
}

#[derive(Deserialize)]
pub(super) struct Outcome1 {
    task: u32,
    status: TaskStatus,
    attempts: Vec<Attempt1>,
    #[serde(default)]
    error: Option<String>,
    #[serde(default)]
    result: Option<Value>,
    started_ms: u64,
    finished_ms: u64,
}

#[derive(Deserialize)]
struct Attempt1 {
    n: u32,
    at_ms: u64,
    took_ms: u64,
    result: String,
    #[serde(default)]
    wait_ms: Option<u64>,
    #[serde(default)]
    note: Option<String>,
}

impl From<Entry> for super::Entry {
    fn from(e: Entry) -> super::Entry {
        match e {
            Entry::Start {
                format,
                run_id,
                job,
                tasks,
                at,
                resumed,
            } => super::Entry::Start {
                format,
                run_id,
                job,
                tasks,
                at,
                resumed,
            },
            Entry::Intent { task } => super::Entry::Intent { task },
            Entry::Outcome(o) => super::Entry::Outcome(o.into()),
            Entry::Finish {
                started_at,
                finished_at,
                elapsed_ms,
                stopped,
                thresholds,
                governor,
            } => super::Entry::Finish(FinishRecord {
                started_at,
                finished_at,
                elapsed_ms,
                stopped,
                rollout_stops: thresholds
                    .iter()
                    .filter_map(|t| {
                        let stop = rollout_stop(t);
                        if stop.is_none() {
                            tracing::warn!(threshold = %t, "a format 1 rollout stop is not in the form format 1 wrote; ignored");
                        }
                        stop
                    })
                    .collect(),
                governor,
                exit_code: None,
            }),
        }
    }
}

impl From<Outcome1> for OutcomeRecord {
    fn from(o: Outcome1) -> OutcomeRecord {
        let attempts: Vec<AttemptRecord> = o.attempts.into_iter().map(attempt).collect();
        let (result, followed) = split_devices(o.result);
        let last_status = attempts
            .last()
            .and_then(|a| a.failure.as_ref())
            .and_then(|f| f.http_status);
        let reason = o
            .error
            .map(|text| reason(o.status, text, last_status, followed.as_ref()));
        OutcomeRecord {
            task: o.task,
            status: o.status,
            attempts,
            reason,
            result,
            followed,
            started_ms: o.started_ms,
            finished_ms: o.finished_ms,
        }
    }
}

/// `ok`, or a failure: an HTTP status keeps its number, a class name its class, and the
/// attempt's note (format 1 put the failure's message there) becomes the description.
fn attempt(a: Attempt1) -> AttemptRecord {
    let (failure, note) = if a.result == "ok" {
        (None, a.note)
    } else {
        let http_status = a.result.parse::<u16>().ok();
        let class = FailureClass::parse(&a.result).unwrap_or(FailureClass::Unclassified);
        let failure = FailureRecord {
            class,
            http_status,
            esper_message: None,
            hint: None,
            description: a.note.unwrap_or_else(|| a.result.clone()),
            maybe_processed: false,
        };
        (Some(failure), None)
    };
    AttemptRecord {
        n: a.n,
        at_ms: a.at_ms,
        took_ms: a.took_ms,
        failure,
        wait_ms: a.wait_ms,
        note,
    }
}

fn unclassified(text: String, http_status: Option<u16>) -> ReasonRecord {
    ReasonRecord::Failed {
        failure: FailureRecord {
            class: FailureClass::Unclassified,
            http_status,
            esper_message: None,
            hint: None,
            description: text,
            maybe_processed: false,
        },
        gave_up: None,
    }
}

fn reason(
    status: TaskStatus,
    text: String,
    last_status: Option<u16>,
    followed: Option<&FollowedRecord>,
) -> ReasonRecord {
    match status {
        TaskStatus::Skipped => {
            if let Some(needs) = needs(&text) {
                return ReasonRecord::NeedsFailed { needs };
            }
            if let Some(stop) = rollout_stop(&text) {
                return ReasonRecord::RolloutStopped { stop };
            }
            unclassified(text, None)
        }
        TaskStatus::NotStarted => ReasonRecord::NotStarted {
            stopped: if text.contains("interrupted") {
                Some(StopReason::Interrupted)
            } else if text.contains("deadline") {
                Some(StopReason::Deadline)
            } else {
                None
            },
        },
        TaskStatus::Unknown if text.starts_with("abandoned while in flight") => {
            ReasonRecord::Abandoned
        }
        _ => match followed.and_then(|f| f.counts) {
            Some(counts)
                if status == TaskStatus::Failed
                    && counts.failed + counts.timed_out + counts.cancelled > 0 =>
            {
                ReasonRecord::DeviceFailures { counts }
            }
            _ => {
                let text = match text.strip_suffix(UNKNOWN_SUFFIX) {
                    Some(t) if status == TaskStatus::Unknown => t.to_string(),
                    _ => text,
                };
                unclassified(text, last_status)
            }
        },
    }
}

/// `skipped: needed step `a` (2 not succeeded), `b` (1 not succeeded) did not succeed`.
fn needs(text: &str) -> Option<Vec<ShortfallRecord>> {
    let list = text
        .strip_prefix("skipped: needed step ")?
        .strip_suffix(" did not succeed")?;
    list.split("), ")
        .map(|part| {
            let (step, n) = part.strip_prefix('`')?.split_once("` (")?;
            let n = n.trim_end_matches(')').strip_suffix(" not succeeded")?;
            Some(ShortfallRecord {
                step: step.to_string(),
                not_succeeded: n.parse().ok()?,
                item: None,
            })
        })
        .collect()
}

/// `[skipped: ]rollout of step `x` stopped after stage 1 of 3: 2 failures exceed
/// max_failures 10% (1 of 3)`.
fn rollout_stop(text: &str) -> Option<StopRecord> {
    let rest = text.strip_prefix("skipped: ").unwrap_or(text);
    let (step, rest) = rest
        .strip_prefix("rollout of step `")?
        .split_once("` stopped after stage ")?;
    let (stage, rest) = rest.split_once(" of ")?;
    let (stages, rest) = rest.split_once(": ")?;
    let (failed, rest) = rest.split_once(" failures exceed max_failures ")?;
    let (_, counts) = rest.rsplit_once(" (")?;
    let (allowed, total) = counts.strip_suffix(')')?.split_once(" of ")?;
    Some(StopRecord {
        step: step.to_string(),
        stage: stage.parse().ok()?,
        stages: stages.parse().ok()?,
        failed: failed.parse().ok()?,
        allowed: allowed.parse().ok()?,
        total: total.parse().ok()?,
    })
}

/// Format 1 merged a followed command's device results into the task's result as
/// `devices: {command, finished, counts: {<Esper state>: n}, failed: [{device, state,
/// reason}], pending: [id]}`; they move back out into a typed record.
fn split_devices(result: Option<Value>) -> (Option<Value>, Option<FollowedRecord>) {
    let Some(Value::Object(mut map)) = result else {
        return (result, None);
    };
    let Some(devices) = map.remove("devices") else {
        return (Some(Value::Object(map)), None);
    };
    let text = |v: &Value, k: &str| v.get(k).and_then(Value::as_str).map(str::to_string);
    // The Esper command states format 1 recorded verbatim.
    let state = |s: &str| match s {
        "Command Success" => DeviceState::Succeeded,
        "Command Failure" => DeviceState::Failed,
        "Command TimeOut" => DeviceState::TimedOut,
        "Command Cancelled" => DeviceState::Cancelled,
        _ => DeviceState::Pending,
    };
    let counts = devices.get("counts").and_then(Value::as_object).map(|m| {
        let mut c = CountsRecord::default();
        for (k, n) in m {
            let n = n.as_u64().unwrap_or(0);
            match state(k) {
                DeviceState::Succeeded => c.succeeded += n,
                DeviceState::Failed => c.failed += n,
                DeviceState::TimedOut => c.timed_out += n,
                DeviceState::Cancelled => c.cancelled += n,
                DeviceState::Pending => c.pending += n,
            }
        }
        c
    });
    let list = |k: &str| {
        devices
            .get(k)
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default()
    };
    let mut records: Vec<DeviceRecord> = list("failed")
        .iter()
        .filter_map(|d| {
            Some(DeviceRecord {
                id: text(d, "device")?,
                state: text(d, "state").map_or(DeviceState::Failed, |s| state(&s)),
                reason: text(d, "reason"),
            })
        })
        .collect();
    records.extend(list("pending").iter().filter_map(|d| {
        Some(DeviceRecord {
            id: d.as_str()?.to_string(),
            state: DeviceState::Pending,
            reason: None,
        })
    }));
    let followed = FollowedRecord {
        command: text(&devices, "command").unwrap_or_default(),
        finished: devices
            .get("finished")
            .and_then(Value::as_bool)
            .unwrap_or(false),
        // A format 1 record without counts could not read the per-device status.
        counts: counts.filter(|_| devices.get("error").is_none()),
        devices: records,
        install: None,
    };
    (Some(Value::Object(map)), Some(followed))
}
