//! Notifications: when a run ends, POST its summary to the job's `notify:` webhooks and
//! the `--notify` ones, and record what each answered.
//!
//! Owns when a webhook is called (the run's outcome against its `on:`), rendering its
//! `${NAME}`s from the environment at the moment of sending, the bounded sending (all
//! webhooks at once, two attempts within one timeout per webhook, no redirects) and that
//! the URL never leaves this file: results and notices name a webhook by its place
//! (`webhook 2 (slack)`) and errors say at most its host. A failed notification is a
//! [`Notice`] and a line in `report.json`; it never changes the run's exit code. What the
//! summary says is [`crate::report::NotifySummary`]'s.

use std::time::Duration;

use serde_json::json;

use super::config::Env;
use super::notice::{Notice, Notices};
use crate::job::template::{EnvError, subst_env};
use crate::job::{Notify, NotifyFormat, NotifyOn};
use crate::report::{NotificationReport, NotifyFailure, NotifySummary, RunOutcome};

/// How long one webhook may take, both attempts included.
pub const NOTIFY_TIMEOUT: Duration = Duration::from_secs(10);

/// The webhooks of one run besides the plan's, and how long each may take.
#[derive(Clone)]
pub struct NotifySettings {
    /// `run --notify URL`: JSON, on every outcome, for this run only.
    pub extra: Vec<String>,
    /// Bounds each webhook, both attempts included ([`NOTIFY_TIMEOUT`]).
    pub timeout: Duration,
}

/// The URLs are secrets: `Debug` says how many there are.
impl std::fmt::Debug for NotifySettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NotifySettings")
            .field("extra", &format_args!("{} webhook(s)", self.extra.len()))
            .field("timeout", &self.timeout)
            .finish()
    }
}

impl NotifySettings {
    /// No extra webhooks; the plan's, within [`NOTIFY_TIMEOUT`] each.
    pub fn plan_only() -> NotifySettings {
        NotifySettings {
            extra: Vec::new(),
            timeout: NOTIFY_TIMEOUT,
        }
    }
}

/// The `on:` word of a run's outcome. A run that ended incomplete (deadline, tasks not
/// started, killed) did not do its job, so it counts as a failure.
pub fn notify_on(outcome: RunOutcome) -> NotifyOn {
    match outcome {
        RunOutcome::Succeeded => NotifyOn::Success,
        RunOutcome::Threshold => NotifyOn::Threshold,
        RunOutcome::Interrupted => NotifyOn::Interrupted,
        RunOutcome::FailedTasks
        | RunOutcome::Deadline
        | RunOutcome::Incomplete
        | RunOutcome::Killed => NotifyOn::Failure,
    }
}

/// Calls every webhook that wants this outcome, all at once, and returns what each
/// answered in the order they are listed (the plan's, then `--notify`'s).
pub(super) async fn send(
    plan: &[Notify],
    settings: &NotifySettings,
    env: &Env,
    summary: &NotifySummary,
    notices: &Notices,
) -> Vec<NotificationReport> {
    let extra = settings.extra.iter().map(|url| Notify {
        url: url.clone(),
        on: NotifyOn::ALL.to_vec(),
        format: NotifyFormat::Json,
    });
    let hooks: Vec<(String, Notify)> = plan
        .iter()
        .cloned()
        .map(|n| (String::new(), n))
        .chain(extra.map(|n| (", --notify".to_string(), n)))
        .enumerate()
        .map(|(i, (from, n))| {
            (
                format!("webhook {} ({}{from})", i + 1, n.format.as_str()),
                n,
            )
        })
        .filter(|(_, n)| n.on.contains(&notify_on(summary.outcome)))
        .collect();
    if hooks.is_empty() {
        return Vec::new();
    }
    let http = match reqwest::Client::builder()
        .user_agent(concat!("esper-bulk/", env!("CARGO_PKG_VERSION")))
        // A redirect would send the summary wherever `Location` points.
        .redirect(reqwest::redirect::Policy::none())
        .build()
    {
        Ok(c) => c,
        Err(_) => {
            return hooks
                .into_iter()
                .map(|(target, _)| failed(target, 0, None, NotifyFailure::NoClient, notices))
                .collect();
        }
    };
    let sends = hooks
        .into_iter()
        .map(|(target, hook)| one(&http, target, hook, settings.timeout, env, summary, notices));
    futures::future::join_all(sends).await
}

async fn one(
    http: &reqwest::Client,
    target: String,
    hook: Notify,
    timeout: Duration,
    env: &Env,
    summary: &NotifySummary,
    notices: &Notices,
) -> NotificationReport {
    let url = match subst_env(&hook.url, &|n| env.get(n)) {
        Ok(u) => u,
        Err(EnvError::Unset(name)) => {
            return failed(target, 0, None, NotifyFailure::EnvUnset { name }, notices);
        }
        Err(_) => return failed(target, 0, None, NotifyFailure::BadReference, notices),
    };
    let host = match url::Url::parse(&url) {
        Ok(u) if matches!(u.scheme(), "http" | "https") && u.host_str().is_some() => {
            u.host_str().unwrap_or_default().to_string()
        }
        _ => return failed(target, 0, None, NotifyFailure::NotHttp, notices),
    };
    let body = match hook.format {
        NotifyFormat::Json => serde_json::to_value(summary).unwrap_or_default(),
        NotifyFormat::Slack => json!({ "text": summary.slack_text() }),
    };
    let deadline = tokio::time::Instant::now() + timeout;
    let mut attempts = 0;
    let mut last: (Option<u16>, NotifyFailure) = (None, NotifyFailure::NoClient);
    while attempts < 2 {
        attempts += 1;
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        if left.is_zero() {
            break;
        }
        let sent = tokio::time::timeout(left, http.post(&url).json(&body).send()).await;
        last = match sent {
            Ok(Ok(resp)) if resp.status().is_success() => {
                return NotificationReport {
                    target,
                    ok: true,
                    attempts,
                    http_status: Some(resp.status().as_u16()),
                    failure: None,
                };
            }
            Ok(Ok(resp)) => {
                let code = resp.status().as_u16();
                let answer = (
                    Some(code),
                    NotifyFailure::Status {
                        host: host.clone(),
                        status: code,
                    },
                );
                // Only a server's trouble or its throttling may pass by a second try.
                if !(code == 429 || code >= 500) {
                    return failed(target, attempts, answer.0, answer.1, notices);
                }
                answer
            }
            Ok(Err(e)) if e.is_connect() => (None, NotifyFailure::Connect { host: host.clone() }),
            Ok(Err(_)) => (None, NotifyFailure::Request { host: host.clone() }),
            // The whole of the webhook's time is spent: no second attempt.
            Err(_) => {
                let e = NotifyFailure::Timeout {
                    host,
                    after_ms: timeout.as_millis() as u64,
                };
                return failed(target, attempts, None, e, notices);
            }
        };
    }
    failed(target, attempts, last.0, last.1, notices)
}

fn failed(
    target: String,
    attempts: u32,
    http_status: Option<u16>,
    failure: NotifyFailure,
    notices: &Notices,
) -> NotificationReport {
    notices.send(Notice::NotificationFailed {
        target: target.clone(),
        failure: failure.clone(),
    });
    NotificationReport {
        target,
        ok: false,
        attempts,
        http_status,
        failure: Some(failure),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_outcome_maps_to_an_on_word() {
        let words: Vec<NotifyOn> = RunOutcome::ALL.iter().map(|o| notify_on(*o)).collect();
        use NotifyOn::*;
        assert_eq!(
            words,
            [
                Success,
                Failure,
                Threshold,
                Interrupted,
                Failure,
                Failure,
                Failure
            ]
        );
    }
}
