//! The adaptive send rate: a token-bucket rate below the governor's ceiling that backs off
//! on 429 and grows back along a cubic curve, so a run settles just under a limit nobody
//! told it instead of oscillating through 429s.
//!
//! The shape follows the AWS SDKs' adaptive retry mode (botocore `adaptive.py` and
//! `throttling.py`): the controller stays out of the way until the first throttle; a 429
//! sets the rate to `beta` times the rate actually measured when it happened and remembers
//! that rate as `w_max`; successes then grow the rate as `scale * (t - k)^3 + w_max`, which
//! returns to `w_max` after `k` seconds, lingers there, and only then probes above it.
//! Growth is capped at twice the measured send rate, so an idle run cannot bank a rate it
//! never tested. Pure arithmetic over caller-supplied instants: the governor owns the clock.

use std::time::Duration;

use tokio::time::Instant;

/// Multiplicative decrease on a throttle. Gentler than AWS's 0.7: with a cubic regrowth of
/// about five seconds this keeps the average send rate above 90 % of an unknown limit.
const BETA: f64 = 0.8;
/// Cubic growth constant (AWS: 0.4).
const SCALE: f64 = 0.4;
/// The rate never drops below this many requests per second (AWS: 0.5).
const MIN_RATE: f64 = 0.5;
/// Measured send rate is averaged over buckets of this length…
const BUCKET: Duration = Duration::from_millis(500);
/// …and smoothed with this weight for the newest bucket (AWS: 0.8).
const SMOOTHING: f64 = 0.8;

/// Exponential smoothing; the first sample stands alone.
fn smooth(old: f64, new: f64) -> f64 {
    if old == 0.0 {
        new
    } else {
        SMOOTHING * new + (1.0 - SMOOTHING) * old
    }
}

#[derive(Debug, Clone)]
pub struct AdaptiveRate {
    ceiling: f64,
    /// `None` until the first throttle: then the ceiling alone paces requests.
    rate: Option<f64>,
    w_max: f64,
    k: f64,
    last_throttle: Instant,
    measured: f64,
    /// Smoothed rate of accepted (non-429) answers: what the server actually takes.
    goodput: f64,
    bucket_start: Instant,
    bucket_count: u64,
    /// The accepted-answer bucket has its own clock: answers keep arriving while sends
    /// pause, and closing the send bucket on them would make the send rate look collapsed.
    ok_start: Instant,
    bucket_ok: u64,
    /// When the next request may go under the adaptive rate.
    next_slot: Instant,
}

impl AdaptiveRate {
    pub fn new(ceiling: f64, now: Instant) -> AdaptiveRate {
        AdaptiveRate {
            ceiling,
            rate: None,
            w_max: ceiling,
            k: 0.0,
            last_throttle: now,
            measured: 0.0,
            goodput: 0.0,
            bucket_start: now,
            bucket_count: 0,
            ok_start: now,
            bucket_ok: 0,
            next_slot: now,
        }
    }

    /// The current adaptive rate, if throttling has switched it on.
    pub fn rate(&self) -> Option<f64> {
        self.rate
    }

    /// The smoothed measured send rate.
    pub fn measured(&self) -> f64 {
        self.measured
    }

    /// Reserves the next send slot; returns how long to wait for it.
    pub fn reserve(&mut self, now: Instant) -> Duration {
        self.count_send(now);
        let Some(rate) = self.rate else {
            return Duration::ZERO;
        };
        let at = self.next_slot.max(now);
        self.next_slot = at + Duration::from_secs_f64(1.0 / rate);
        at - now
    }

    fn count_send(&mut self, now: Instant) {
        self.roll(now);
        self.bucket_count += 1;
    }

    /// Closes the send-rate bucket when it is over.
    fn roll(&mut self, now: Instant) {
        let elapsed = now - self.bucket_start;
        if elapsed >= BUCKET {
            self.measured = smooth(
                self.measured,
                self.bucket_count as f64 / elapsed.as_secs_f64(),
            );
            self.bucket_start = now;
            self.bucket_count = 0;
        }
    }

    /// Closes the accepted-rate bucket when it is over.
    fn roll_ok(&mut self, now: Instant) {
        let elapsed = now - self.ok_start;
        if elapsed >= BUCKET {
            self.goodput = smooth(self.goodput, self.bucket_ok as f64 / elapsed.as_secs_f64());
            self.ok_start = now;
            self.bucket_ok = 0;
        }
    }

    /// A 429: cut the rate to `BETA` times what was actually being sent. `rtt` is the
    /// observed latency: every request already in flight when the limit was hit comes back
    /// 429 within about one round trip, and those all answer one overload, so they cut once.
    pub fn throttled(&mut self, now: Instant, rtt: Duration) {
        // Before the first bucket closes there is no measurement; assume the ceiling rather
        // than zero, or one early 429 would drop the run to the minimum rate.
        // Cut from what the server accepted when that was measured: at ten times the limit,
        // 0.8 x the send rate takes ten round trips to converge; 0.8 x the accepted rate
        // lands near the limit at once.
        // Before the first bucket closes, the open bucket's counts are the best estimate
        // (after 50 ms; earlier they are noise).
        let estimate = |closed: f64, count: u64, since: Instant| match (
            closed > 0.0,
            (now - since).as_secs_f64(),
        ) {
            (true, _) => closed,
            (false, open) if open > 0.05 => count as f64 / open,
            _ => 0.0,
        };
        let (sent, accepted) = (
            estimate(self.measured, self.bucket_count, self.bucket_start),
            estimate(self.goodput, self.bucket_ok, self.ok_start),
        );
        // Once a send-rate bucket has closed, cut from the measured send rate. The accepted
        // rate is a better basis only for the startup burst (before any measurement, when
        // the server may take a tenth of what is sent); later it lags the send rate by a
        // bucket plus a round trip and, at high latency, cut too deep (measured: 86 % vs
        // 94 % of an unknown limit at 250 ms).
        let measured = match (self.measured > 0.0, sent > 0.0, accepted > 0.0) {
            (true, _, _) => self.measured,
            (false, true, true) => sent.min(accepted.max(MIN_RATE)),
            (false, true, false) => sent,
            (false, false, _) => self.ceiling,
        };
        let sending = match self.rate {
            Some(r) => r.min(measured),
            None => measured.min(self.ceiling),
        }
        .max(MIN_RATE);
        if self.rate.is_some()
            && now - self.last_throttle < rtt.mul_f64(1.5).max(Duration::from_millis(200))
        {
            return;
        }
        self.w_max = sending;
        self.k = (self.w_max * (1.0 - BETA) / SCALE).cbrt();
        self.last_throttle = now;
        self.rate = Some((sending * BETA).max(MIN_RATE));
    }

    /// An accepted request: grow along the cubic.
    pub fn accepted(&mut self, now: Instant) {
        self.roll_ok(now);
        self.bucket_ok += 1;
        if self.rate.is_none() {
            return;
        }
        let t = (now - self.last_throttle).as_secs_f64();
        let cubic = SCALE * (t - self.k).powi(3) + self.w_max;
        // Growth is capped at twice what was actually sent, but never below the rate the
        // last throttle left, and not at all before a first measurement exists (else one
        // early 429 would pin the run at the minimum rate).
        let cap = if self.measured > 0.0 {
            (2.0 * self.measured).max(BETA * self.w_max)
        } else {
            self.ceiling
        };
        self.rate = Some(cubic.min(cap).min(self.ceiling).max(MIN_RATE));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Sends and gets accepted at `rate` from `from` for `secs` seconds, honouring waits.
    fn traffic(a: &mut AdaptiveRate, from: Instant, secs: f64, rate: f64) -> Instant {
        let step = Duration::from_secs_f64(1.0 / rate);
        let mut t = from;
        while t < from + Duration::from_secs_f64(secs) {
            t += a.reserve(t);
            a.accepted(t);
            t += step;
        }
        t
    }

    #[tokio::test(start_paused = true)]
    async fn off_until_throttled_then_cubic() {
        let t0 = Instant::now();
        let mut a = AdaptiveRate::new(1000.0, t0);
        let at = traffic(&mut a, t0, 2.0, 200.0);
        assert_eq!(a.rate(), None, "no pacing before a throttle");
        a.throttled(at, Duration::ZERO);
        let cut = a.rate().unwrap();
        assert!(
            (cut - 160.0).abs() < 10.0,
            "80% of the 200/s accepted, got {cut}"
        );
        // A burst of 429s in the same instant cuts once.
        a.throttled(at + Duration::from_millis(10), Duration::ZERO);
        assert_eq!(a.rate().unwrap(), cut);
        // Sending at whatever it allows, the rate climbs back near w_max within k seconds
        // and then probes above it, never beyond twice what was sent.
        let k = a.k;
        let t = traffic(&mut a, at, k, 1000.0);
        assert!(
            (a.rate().unwrap() - 200.0).abs() < 15.0,
            "{:?} after {k:.1}s",
            a.rate()
        );
        traffic(&mut a, t, 6.0, 1000.0);
        assert!(a.rate().unwrap() > 215.0, "{:?}", a.rate());
        assert!(a.rate().unwrap() <= 2.0 * a.measured() + 1.0);
    }

    #[tokio::test(start_paused = true)]
    async fn a_startup_overload_cuts_to_what_the_server_accepts() {
        let t0 = Instant::now();
        let mut a = AdaptiveRate::new(1000.0, t0);
        // The first 300 ms: sending 400/s of which the server accepts 40/s.
        let mut t = t0;
        for i in 0..120u32 {
            a.reserve(t);
            if i % 10 == 0 {
                a.accepted(t);
            }
            t += Duration::from_micros(2500);
        }
        a.throttled(t, Duration::ZERO);
        assert!(
            a.rate().unwrap() < 40.0,
            "one cut lands under the accepted rate: {:?}",
            a.rate()
        );
    }

    #[tokio::test(start_paused = true)]
    async fn an_early_throttle_cuts_from_the_ceiling() {
        let t0 = Instant::now();
        let mut a = AdaptiveRate::new(100.0, t0);
        a.throttled(t0, Duration::ZERO);
        assert_eq!(a.rate(), Some(80.0));
        // Successes before any measurement must not collapse the rate.
        a.accepted(t0 + Duration::from_millis(10));
        assert!(a.rate().unwrap() >= 80.0 * BETA, "{:?}", a.rate());
    }

    #[tokio::test(start_paused = true)]
    async fn reserve_spaces_requests_at_the_rate() {
        let t0 = Instant::now();
        let mut a = AdaptiveRate::new(1000.0, t0);
        a.rate = Some(10.0);
        let waits: Vec<Duration> = (0..5).map(|_| a.reserve(t0)).collect();
        assert_eq!(waits[4], Duration::from_millis(400));
    }
}
