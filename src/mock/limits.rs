//! Time-based bookkeeping for the mock's fault pipeline: the server-side token bucket with
//! its penalty window ([`RateGate`]) and the exact one-second [`SlidingWindow`] behind
//! `peak_1s`. Pure: callers pass `now`, nothing here sleeps or reads a clock, so it is
//! tested with synthetic instants. Whether a 429 carries `Retry-After` is the caller's call.

use std::collections::VecDeque;
use std::time::Duration;

use tokio::time::Instant;

use super::RateLimit;

/// Retry-After values are whole seconds; a client told "0" would hammer the server.
const MIN_RETRY_AFTER: u64 = 1;
/// A misconfigured bucket (rate 0) would otherwise advertise an infinite wait.
const MAX_RETRY_AFTER: u64 = 3600;

/// Counts arrivals in the last second. The busiest one-second window always ends at an
/// arrival, so counting (now - 1 s, now] at each arrival and keeping the maximum is exact.
#[derive(Debug, Default)]
pub(crate) struct SlidingWindow {
    arrivals: VecDeque<Instant>,
}

impl SlidingWindow {
    /// Records an arrival and returns how many arrivals fall in (now - 1 s, now].
    pub fn record(&mut self, now: Instant) -> u64 {
        if let Some(cutoff) = now.checked_sub(Duration::from_secs(1)) {
            while self.arrivals.front().is_some_and(|&t| t <= cutoff) {
                self.arrivals.pop_front();
            }
        }
        self.arrivals.push_back(now);
        self.arrivals.len() as u64
    }
}

/// A classic token bucket: `burst` tokens at most, refilled at `rate` per second.
#[derive(Debug)]
pub(crate) struct TokenBucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    /// Starts full, so a quiet client may send `burst` requests at once.
    pub fn new(rate: f64, burst: u32, now: Instant) -> Self {
        let rate = if rate.is_finite() && rate > 0.0 {
            rate
        } else {
            0.0
        };
        let burst = f64::from(burst.max(1));
        TokenBucket {
            rate,
            burst,
            tokens: burst,
            last: now,
        }
    }

    /// Takes a token, or says how long until one is available.
    pub fn try_take(&mut self, now: Instant) -> Result<(), Duration> {
        let dt = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = self.last.max(now);
        self.tokens = (self.tokens + dt * self.rate).min(self.burst);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            return Ok(());
        }
        let wait = if self.rate > 0.0 {
            (1.0 - self.tokens) / self.rate
        } else {
            MAX_RETRY_AFTER as f64
        };
        Err(Duration::try_from_secs_f64(wait).unwrap_or(Duration::from_secs(MAX_RETRY_AFTER)))
    }
}

/// The rate limit as a whole: bucket plus penalty window.
#[derive(Debug)]
pub(crate) struct RateGate {
    cfg: RateLimit,
    bucket: TokenBucket,
    penalty_until: Option<Instant>,
}

impl RateGate {
    pub fn new(cfg: RateLimit, now: Instant) -> Self {
        let bucket = TokenBucket::new(cfg.rate, cfg.burst, now);
        RateGate {
            cfg,
            bucket,
            penalty_until: None,
        }
    }

    pub fn sends_retry_after(&self) -> bool {
        self.cfg.retry_after
    }

    /// `Ok` to let the request through, or `Err(seconds)` for a 429 whose honest
    /// `Retry-After` would be `seconds`. Penalty 429s do not extend the penalty, so a client
    /// that keeps polling is not locked out forever.
    pub fn check(&mut self, now: Instant) -> Result<(), u64> {
        if let Some(until) = self.penalty_until {
            if now < until {
                return Err(ceil_secs(until - now));
            }
            self.penalty_until = None;
        }
        match self.bucket.try_take(now) {
            Ok(()) => Ok(()),
            Err(wait) => {
                let mut wait = wait;
                if !self.cfg.penalty.is_zero() {
                    self.penalty_until = now.checked_add(self.cfg.penalty);
                    wait = wait.max(self.cfg.penalty);
                }
                Err(ceil_secs(wait))
            }
        }
    }
}

fn ceil_secs(d: Duration) -> u64 {
    let whole = d.as_secs().saturating_add(u64::from(d.subsec_nanos() > 0));
    whole.clamp(MIN_RETRY_AFTER, MAX_RETRY_AFTER)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn window_counts_across_calendar_seconds() {
        // Per calendar second this is 2 + 2; any sliding second sees all four.
        let t0 = Instant::now();
        let mut w = SlidingWindow::default();
        let peaks: Vec<u64> = [900, 950, 1050, 1100]
            .iter()
            .map(|&m| w.record(t0 + ms(m)))
            .collect();
        assert_eq!(peaks, vec![1, 2, 3, 4]);
    }

    #[test]
    fn window_forgets_arrivals_exactly_one_second_old() {
        let t0 = Instant::now();
        let mut w = SlidingWindow::default();
        w.record(t0);
        w.record(t0 + ms(500));
        assert_eq!(w.record(t0 + ms(1000)), 2, "t0 is out of (t0, t0+1s]");
        assert_eq!(w.record(t0 + ms(2600)), 1);
    }

    #[test]
    fn bucket_allows_burst_then_refills_at_rate() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(10.0, 3, t0);
        assert!(b.try_take(t0).is_ok());
        assert!(b.try_take(t0).is_ok());
        assert!(b.try_take(t0).is_ok());
        let wait = b.try_take(t0).unwrap_err();
        assert_eq!(wait, ms(100));
        assert!(b.try_take(t0 + ms(99)).is_err());
        assert!(b.try_take(t0 + ms(200)).is_ok());
        // Refill never exceeds the burst.
        let later = t0 + Duration::from_secs(60);
        assert!((0..3).all(|_| b.try_take(later).is_ok()));
        assert!(b.try_take(later).is_err());
    }

    #[test]
    fn bucket_with_zero_rate_never_panics() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(f64::NAN, 0, t0);
        assert!(b.try_take(t0).is_ok());
        assert_eq!(
            b.try_take(t0).unwrap_err(),
            Duration::from_secs(MAX_RETRY_AFTER)
        );
    }

    #[test]
    fn penalty_blocks_for_its_length_without_extending() {
        let t0 = Instant::now();
        let cfg = RateLimit {
            rate: 100.0,
            burst: 1,
            retry_after: true,
            penalty: ms(1500),
        };
        let mut g = RateGate::new(cfg, t0);
        assert_eq!(g.check(t0), Ok(()));
        assert_eq!(g.check(t0), Err(2), "ceil(1.5 s)");
        // Tokens are back after 10 ms, but the penalty holds until t0 + 1.5 s.
        assert_eq!(g.check(t0 + ms(1000)), Err(1));
        assert_eq!(g.check(t0 + ms(1499)), Err(1));
        assert_eq!(g.check(t0 + ms(1500)), Ok(()));
    }

    #[test]
    fn retry_after_is_whole_seconds_at_least_one() {
        assert_eq!(ceil_secs(Duration::ZERO), 1);
        assert_eq!(ceil_secs(ms(1)), 1);
        assert_eq!(ceil_secs(ms(1000)), 1);
        assert_eq!(ceil_secs(ms(1001)), 2);
        assert_eq!(ceil_secs(Duration::MAX), MAX_RETRY_AFTER);
    }
}
