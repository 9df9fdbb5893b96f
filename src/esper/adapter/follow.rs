//! Following a command request to its devices: poll its stats until every device is final
//! (or the wait's timeout passes, or the run stops), then read the per-device rows once for
//! the report, and map Esper's command states onto the executor's [`DeviceState`]s.
//!
//! Polls back off from [`PollSettings::initial`] to [`PollSettings::max`]; a failed poll is
//! logged and polled past, since losing track of a command that was sent must not fail
//! its task. Whether the devices' results make the task a success is the executor's call.

use std::time::Duration;

use futures::TryStreamExt;
use tokio_util::sync::CancellationToken;

use super::PollSettings;
use crate::esper::model::CommandState;
use crate::esper::{Client, ErrorClass};
use crate::exec::{DeviceCounts, DeviceResult, DeviceState, Followed};

/// Where a device ended up, in the executor's terms. States that are not final
/// (queued, in progress, scheduled, unknown ones) are pending.
fn device_state(s: &CommandState) -> DeviceState {
    match s {
        CommandState::Success => DeviceState::Succeeded,
        CommandState::Failure => DeviceState::Failed,
        CommandState::TimeOut => DeviceState::TimedOut,
        CommandState::Cancelled => DeviceState::Cancelled,
        _ => DeviceState::Pending,
    }
}

pub(super) async fn follow(
    client: &Client,
    poll: &PollSettings,
    id: &str,
    timeout: Duration,
    stop: &CancellationToken,
) -> Followed {
    let until = tokio::time::Instant::now() + timeout;
    let mut interval = poll.initial;
    let mut finished = false;
    loop {
        match client.command_stats(id).await {
            Ok(s) if s.total() > 0 && s.pending() == 0 => {
                finished = true;
                break;
            }
            Ok(_) => {}
            Err(e) => {
                tracing::debug!(command = id, error = %e, "status poll failed; polling on")
            }
        }
        let now = tokio::time::Instant::now();
        if now >= until || stop.is_cancelled() {
            break;
        }
        tokio::select! {
            _ = tokio::time::sleep(interval.min(until - now)) => {}
            _ = stop.cancelled() => {}
        }
        interval = (interval.mul_f64(1.5)).min(poll.max);
    }
    // One pass over the per-device rows for the report, tolerant of transient errors.
    let mut rows = None;
    for _ in 0..5 {
        match client
            .command_statuses(id, None)
            .try_collect::<Vec<_>>()
            .await
        {
            Ok(r) => {
                rows = Some(r);
                break;
            }
            Err(e)
                if e.class() == ErrorClass::RateLimited
                    || e.class() == ErrorClass::Server
                    || e.maybe_processed() =>
            {
                tokio::time::sleep(poll.initial).await;
            }
            Err(_) => break,
        }
    }
    let Some(rows) = rows else {
        tracing::warn!(command = id, "per-device status could not be read");
        return Followed {
            command: id.to_string(),
            finished,
            counts: None,
            devices: Vec::new(),
            install: None,
        };
    };
    let mut counts = DeviceCounts::default();
    let mut devices = Vec::new();
    for r in &rows {
        let state = device_state(&r.state);
        counts.add(state);
        if state != DeviceState::Succeeded {
            devices.push(DeviceResult {
                id: r.device.clone(),
                state,
                reason: r.reason.as_deref().map(crate::exec::device_reason),
            });
        }
    }
    Followed {
        command: id.to_string(),
        finished,
        counts: Some(counts),
        devices,
        install: None,
    }
}
