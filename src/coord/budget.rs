//! The shared limiter: one GCRA bucket per tenant and enterprise in Redis, and the shared
//! pause every process checks before it sends, as the executor's
//! [`SharedBudget`](crate::exec::SharedBudget).
//!
//! Each permit is one script call (`scripts::permit`) that also answers "paused". When
//! Redis fails or times out the budget answers [`Grant::Degraded`] at once, without
//! asking Redis again until a backoff (250 ms doubling to 5 s) has passed; the governor
//! then paces at the fallback rate (`rate / expected processes`), so a flapping
//! coordinator never stops a run and never lifts the local ceiling. The first failure and
//! every recovery are told through the event callback (the run turns them into notices).
//! Which rate to share and when to build one is the run's business.

use std::sync::Mutex;
use std::time::Duration;

use futures::FutureExt;
use futures::future::BoxFuture;
use tokio::time::Instant;

use super::{Coordinator, scripts};
use crate::exec::{Grant, SharedBudget, SharedStats};

/// What the budget tells the run as it happens.
#[derive(Debug, Clone, PartialEq)]
pub enum BudgetEvent {
    /// Redis failed for the first time this run: pacing locally from now on until it
    /// answers again.
    Degraded { url: String, error: String },
    /// Redis answers again.
    Recovered { url: String },
}

type OnEvent = Box<dyn Fn(BudgetEvent) + Send + Sync>;

const FIRST_BACKOFF: Duration = Duration::from_millis(250);
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// The furthest ahead one permit may be reserved; beyond it the caller asks again.
const LONGEST_RESERVATION: Duration = Duration::from_secs(2);

struct Link {
    /// When Redis may be asked again after a failure; `None` while it answers.
    retry_at: Option<Instant>,
    backoff: Duration,
    warned: bool,
    stats: SharedStats,
}

/// The bucket and pause of one tenant and enterprise.
pub struct Budget {
    coord: Coordinator,
    permit: redis::Script,
    pause: redis::Script,
    interval_us: u64,
    burst: u32,
    fallback_rate: f64,
    link: Mutex<Link>,
    on_event: OnEvent,
}

impl Budget {
    /// A bucket of `rate` requests per second with a burst of `burst`, shared by every
    /// process using `coord`'s scope; `fallback_rate` is this process' pace while Redis is
    /// unreachable.
    pub fn new(
        coord: Coordinator,
        rate: f64,
        burst: u32,
        fallback_rate: f64,
        on_event: impl Fn(BudgetEvent) + Send + Sync + 'static,
    ) -> Budget {
        let stats = SharedStats {
            url: coord.url().to_string(),
            fallback_rate,
            ..SharedStats::default()
        };
        Budget {
            coord,
            permit: redis::Script::new(&scripts::permit()),
            pause: redis::Script::new(&scripts::pause()),
            interval_us: (1_000_000.0 / rate.max(0.001)).round().max(1.0) as u64,
            burst: burst.max(1),
            fallback_rate,
            link: Mutex::new(Link {
                retry_at: None,
                backoff: FIRST_BACKOFF,
                warned: false,
                stats,
            }),
            on_event: Box::new(on_event),
        }
    }

    fn link(&self) -> std::sync::MutexGuard<'_, Link> {
        self.link.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// False while a failure's backoff has not passed: the caller is degraded without
    /// asking Redis.
    fn may_ask(&self) -> bool {
        self.link().retry_at.is_none_or(|t| Instant::now() >= t)
    }

    fn failed(&self, error: String) {
        let mut link = self.link();
        let first = !link.warned;
        link.stats.degraded = true;
        link.warned = true;
        let wait = link.backoff;
        link.backoff = (link.backoff * 2).min(MAX_BACKOFF);
        // Jitter so every process does not knock at the same instant when Redis returns.
        let jitter = Duration::from_millis(fastrand::u64(0..=wait.as_millis() as u64 / 4));
        let was_up = link.retry_at.is_none();
        link.retry_at = Some(Instant::now() + wait + jitter);
        drop(link);
        if was_up {
            tracing::warn!(%error, "coordinator unreachable: pacing at the local fallback rate");
        }
        if first {
            (self.on_event)(BudgetEvent::Degraded {
                url: self.coord.url().to_string(),
                error,
            });
        }
    }

    fn answered(&self) {
        let mut link = self.link();
        if link.retry_at.take().is_some() {
            link.backoff = FIRST_BACKOFF;
            link.stats.reconnects += 1;
            drop(link);
            tracing::info!("coordinator reachable again: back to the shared budget");
            (self.on_event)(BudgetEvent::Recovered {
                url: self.coord.url().to_string(),
            });
        }
    }
}

impl SharedBudget for Budget {
    fn permit(&self) -> BoxFuture<'_, Grant> {
        async move {
            if !self.may_ask() {
                return Grant::Degraded;
            }
            let keys = [self.coord.key("bucket"), self.coord.key("pause")];
            let args = [
                self.interval_us.to_string(),
                self.burst.to_string(),
                (LONGEST_RESERVATION.as_micros() as u64).to_string(),
            ];
            let answer: Result<(i64, i64), super::CallError> =
                self.coord.invoke(&self.permit, &keys, &args).await;
            match answer {
                Ok((code, us)) => {
                    self.answered();
                    let d = Duration::from_micros(us.max(0) as u64);
                    match code {
                        0 | 1 => {
                            self.link().stats.permits_shared += 1;
                            if code == 0 {
                                Grant::Go
                            } else {
                                Grant::After(d)
                            }
                        }
                        2 => Grant::Paused(d),
                        _ => Grant::Retry(d),
                    }
                }
                Err(e) => {
                    self.failed(e.to_string());
                    Grant::Degraded
                }
            }
        }
        .boxed()
    }

    fn publish_pause(&self, pause: Duration) -> BoxFuture<'_, ()> {
        async move {
            if !self.may_ask() {
                return;
            }
            let keys = [self.coord.key("pause")];
            let args = [(pause.as_micros() as u64).to_string()];
            match self.coord.invoke::<i64>(&self.pause, &keys, &args).await {
                Ok(_) => {
                    self.answered();
                    self.link().stats.pauses_published += 1;
                }
                Err(e) => self.failed(e.to_string()),
            }
        }
        .boxed()
    }

    fn pause_seen(&self) {
        self.link().stats.pauses_seen += 1;
    }

    fn local_permit(&self) {
        self.link().stats.permits_local += 1;
    }

    fn stats(&self) -> SharedStats {
        self.link().stats.clone()
    }

    fn fallback_rate(&self) -> f64 {
        self.fallback_rate
    }
}
