//! Retry policy: which failures are retried, how long to wait, and the run-wide budget
//! that keeps a dead API from turning into an endless retry loop.
//!
//! The classification table lives here ([`Failure::retryable`]); the waiting itself is
//! done by backon in the run loop. Delays use full jitter (a uniform draw between zero and
//! the exponential step, as the AWS SDKs do) from a seeded RNG, and a server's
//! `Retry-After` is honoured up to `max_retry_after`.

use std::fmt;
use std::sync::Mutex;
use std::time::Duration;

use crate::base::FailureClass;

/// A failed attempt or task, as data. Everything a report needs to group, explain and
/// advise on it is a field; nothing downstream parses text.
#[derive(Debug, Clone, PartialEq)]
pub struct Failure {
    pub class: FailureClass,
    pub http_status: Option<u16>,
    /// The server's own message text (Esper's error body), when there was one.
    pub esper_message: Option<String>,
    /// How to fix it, when that is known (see [`crate::base::Hint`]).
    pub hint: Option<String>,
    /// What happened, in our words, one line: `POST /x/ answered 400`,
    /// `GET /y/: cannot connect: connection refused`,
    /// `step output missing: steps.upload.version_id has no value`.
    pub description: String,
    /// How long the server asked us to wait; used for the next attempt, never recorded.
    pub retry_after: Option<Duration>,
    /// The server may have acted on a write: re-sending needs a read-back first.
    pub maybe_processed: bool,
}

impl Failure {
    /// A failure decided here, without an answer from a server.
    pub fn local(class: FailureClass, description: impl Into<String>) -> Failure {
        Failure {
            class,
            http_status: None,
            esper_message: None,
            hint: None,
            description: description.into(),
            retry_after: None,
            maybe_processed: false,
        }
    }

    /// The retry table: 429, 500/502/503/504 (and 408), connect errors, timeouts and broken
    /// connections are retried; other 4xx, 501, bad bodies the server accepted and local
    /// problems are not.
    pub fn retryable(&self) -> bool {
        match self.class {
            FailureClass::RateLimited
            | FailureClass::Connect
            | FailureClass::Timeout
            | FailureClass::Transport => true,
            FailureClass::Server => self.http_status != Some(501),
            FailureClass::Decode => self.maybe_processed,
            FailureClass::Auth
            | FailureClass::NotFound
            | FailureClass::Client
            | FailureClass::Build
            | FailureClass::Conflict
            | FailureClass::Stopped
            | FailureClass::Unclassified => false,
        }
    }
}

/// The description, then Esper's message; the hint is separate ([`crate::base::one_line`]
/// puts both on one line).
impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.description)?;
        if let Some(m) = &self.esper_message {
            write!(f, ": {m}")?;
        }
        Ok(())
    }
}

impl crate::base::Hint for Failure {
    fn hint(&self) -> Option<String> {
        self.hint.clone()
    }
}

/// A run-wide retry budget (a token bucket for retries): each retry spends tokens, each
/// success refunds a little. When it runs dry the run stops retrying, so an outage fails
/// fast instead of multiplying load.
#[derive(Debug)]
pub struct RetryBudget {
    tokens: Mutex<f64>,
    capacity: f64,
}

/// Tokens one retry costs; timeouts cost double because they hold a connection longest.
const RETRY_COST: f64 = 5.0;
const TIMEOUT_COST: f64 = 10.0;
const SUCCESS_REFUND: f64 = 1.0;

impl RetryBudget {
    pub fn new(capacity: f64) -> RetryBudget {
        RetryBudget {
            tokens: Mutex::new(capacity),
            capacity,
        }
    }

    /// Budget for a run of `tasks` tasks: enough for every task to retry a few times, at
    /// least 500 tokens (100 retries).
    pub fn for_tasks(tasks: usize) -> RetryBudget {
        RetryBudget::new((tasks as f64 * 2.0 * RETRY_COST).max(500.0))
    }

    /// Spends the cost of retrying `f`; false when the budget cannot pay.
    pub fn try_spend(&self, f: &Failure) -> bool {
        let cost = if f.class == FailureClass::Timeout {
            TIMEOUT_COST
        } else {
            RETRY_COST
        };
        let mut t = self.tokens.lock().unwrap_or_else(|e| e.into_inner());
        if *t >= cost {
            *t -= cost;
            true
        } else {
            false
        }
    }

    pub fn refund(&self) {
        let mut t = self.tokens.lock().unwrap_or_else(|e| e.into_inner());
        *t = (*t + SUCCESS_REFUND).min(self.capacity);
    }

    pub fn remaining(&self) -> f64 {
        *self.tokens.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The wait before the next attempt: full jitter over the backoff step, but never less
/// than a (capped) `Retry-After`.
pub fn next_delay(
    f: &Failure,
    step: Duration,
    max_retry_after: Duration,
    rng: &mut fastrand::Rng,
) -> Duration {
    let jittered = Duration::from_micros(rng.u64(0..=step.as_micros() as u64));
    match f.retry_after {
        Some(ra) => jittered.max(ra.min(max_retry_after)),
        None => jittered,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fail(class: FailureClass, status: Option<u16>) -> Failure {
        Failure {
            http_status: status,
            ..Failure::local(class, "")
        }
    }

    #[test]
    fn classification_table() {
        use FailureClass::*;
        let rows = [
            (RateLimited, Some(429), true),
            (Server, Some(500), true),
            (Server, Some(502), true),
            (Server, Some(503), true),
            (Server, Some(504), true),
            (Server, Some(501), false),
            (Connect, None, true),
            (Timeout, None, true),
            (Transport, None, true),
            (Auth, Some(401), false),
            (NotFound, Some(404), false),
            (Client, Some(400), false),
            (Conflict, None, false),
            (Build, None, false),
            (Decode, None, false),
            (Unclassified, None, false),
        ];
        for (class, status, want) in rows {
            assert_eq!(
                fail(class, status).retryable(),
                want,
                "{class:?} {status:?}"
            );
        }
        let mut d = fail(Decode, None);
        d.maybe_processed = true;
        assert!(
            d.retryable(),
            "a create whose answer was garbled is read back and retried"
        );
    }

    #[test]
    fn jitter_bounds_and_retry_after() {
        let mut rng = fastrand::Rng::with_seed(7);
        let f = fail(FailureClass::Server, Some(503));
        let step = Duration::from_secs(4);
        let draws: Vec<Duration> = (0..10_000)
            .map(|_| next_delay(&f, step, Duration::from_secs(60), &mut rng))
            .collect();
        assert!(draws.iter().all(|d| *d <= step));
        let mean = draws.iter().map(Duration::as_secs_f64).sum::<f64>() / draws.len() as f64;
        assert!(
            (mean - 2.0).abs() < 0.1,
            "full jitter averages half the step, got {mean}"
        );
        let mut ra = fail(FailureClass::RateLimited, Some(429));
        ra.retry_after = Some(Duration::from_secs(30));
        assert_eq!(
            next_delay(&ra, Duration::ZERO, Duration::from_secs(60), &mut rng),
            Duration::from_secs(30)
        );
        assert_eq!(
            next_delay(&ra, Duration::ZERO, Duration::from_secs(10), &mut rng),
            Duration::from_secs(10),
            "capped"
        );
    }

    #[test]
    fn budget_runs_dry_and_refills() {
        let b = RetryBudget::new(12.0);
        let f = fail(FailureClass::Server, Some(500));
        assert!(b.try_spend(&f));
        assert!(b.try_spend(&f));
        assert!(!b.try_spend(&f), "12 tokens pay for two retries");
        for _ in 0..100 {
            b.refund();
        }
        assert_eq!(b.remaining(), 12.0, "refunds never exceed capacity");
        assert!(!b.try_spend(&fail(FailureClass::Timeout, None)) || b.remaining() == 2.0);
    }
}
