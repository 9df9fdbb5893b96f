//! The run's request governor: rate ceiling, adaptive send rate, adaptive in-flight
//! window, and the run-wide pause after a 429.
//!
//! 429s are handled as overload *events*: the first 429 opens one, cuts the rate and halves
//! the window once and pauses the run; 429s for requests sent before the pause ended answer
//! the same overload and change nothing. After the pause a single probe goes out; a probe
//! refused (the server's penalty window is still on) extends the pause without another cut,
//! and the first probe accepted closes the event. The governor learns how long the server's
//! penalty lasts from the refused and accepted probes and pauses that long next time, so a
//! server that refuses everything for half a second after a 429 costs one pause per event,
//! not a string of probes into the penalty.
//!
//! Every HTTP request of a run passes [`Governor::acquire`] (through the client's throttle
//! hook), so retries, pages and status polls are paced like writes. The ceiling is a
//! `governor` GCRA limiter running on tokio's clock, so paused-time tests work and waits
//! never spin. Below the ceiling, [`AdaptiveRate`] paces sends once the API has throttled
//! (cubic regrowth, as the AWS SDKs' adaptive mode). The window is AIMD: it grows by one
//! after a window's worth of accepted requests and halves on a 429, but never drops below
//! what the current rate needs at the observed latency, so at 250 ms per request the window
//! cannot starve a 200 req/s budget. It does not know what the requests are for.

use std::collections::BTreeMap;
use std::num::NonZeroU32;
use std::sync::Mutex;
use std::time::Duration;

use futures::FutureExt;
use futures::future::BoxFuture;
use governor::clock::Clock;
use governor::{Quota, RateLimiter};
use tokio::sync::Notify;
use tokio::time::Instant;

use super::adaptive::AdaptiveRate;
use crate::base::{Observation, RequestKind, Throttle};

/// Tokio's clock as a governor clock: time since the governor was made.
#[derive(Clone, Debug)]
pub struct TokioClock {
    start: Instant,
}

impl Clock for TokioClock {
    type Instant = Duration;
    fn now(&self) -> Duration {
        self.start.elapsed()
    }
}

type Ceiling = RateLimiter<
    governor::state::NotKeyed,
    governor::state::InMemoryState,
    TokioClock,
    governor::middleware::NoOpMiddleware<Duration>,
>;

/// Settings for a governor.
#[derive(Debug, Clone)]
pub struct GovernorConfig {
    /// Ceiling in requests per second.
    pub rate: f64,
    /// Initial in-flight window.
    pub batch: u32,
    pub max_in_flight: u32,
    /// Pause after a 429 without `Retry-After`; doubles with consecutive 429s up to `max_pause`.
    pub base_pause: Duration,
    pub max_pause: Duration,
    /// Cap for a server's `Retry-After`.
    pub max_retry_after: Duration,
    /// Jitter added to each wait so waiting workers do not wake together.
    pub jitter: Duration,
    pub seed: u64,
}

/// Counters for the report (which, like the journal, keeps its own serialized copy).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct GovernorStats {
    pub requests: u64,
    pub by_status: BTreeMap<String, u64>,
    pub rate_limited: u64,
    pub window: u32,
    pub window_max: u32,
    pub window_min: u32,
    pub window_changes: u64,
    /// Total time the run spent paused after 429s.
    pub paused_ms: u64,
    /// The adaptive send rate at the end (absent when the API never throttled).
    pub adaptive_rate: Option<f64>,
    /// One sample per second of the run, for charts.
    pub timeline: Vec<Sample>,
}

/// One second of a run.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Sample {
    /// Seconds since the governor started.
    pub t: u32,
    pub requests: u32,
    pub rate_limited: u32,
    pub window: u32,
    pub rate: Option<f64>,
}

/// Samples kept at most; a longer run keeps every other second, then every fourth, ….
const MAX_SAMPLES: usize = 3600;

struct State {
    window: u32,
    /// Requests accepted since the window last grew; a full window's worth adds one slot.
    acked: u32,
    in_flight: u32,
    writes_waiting: u32,
    pause_until: Option<Instant>,
    consecutive_429: u32,
    /// The open overload event, if any.
    event: Option<Event>,
    /// What probes have shown about the server's penalty window after a 429.
    penalty: PenaltyEstimate,
    rng: fastrand::Rng,
    adaptive: AdaptiveRate,
    /// Smoothed request latency in seconds.
    latency: f64,
    /// The sample being filled.
    current: Sample,
    sample_every: u32,
    stats: GovernorStats,
}

/// One overload: from its first 429 until a request sent after its pause is accepted.
#[derive(Debug, Clone, Copy)]
struct Event {
    start: Instant,
    /// Requests sent from here on are probes: their 429 means the server still refuses.
    resume_at: Instant,
}

/// Bounds on how long the server refuses everything after a 429, as offsets from an event's
/// start: the latest probe refused and the earliest accepted.
#[derive(Debug, Clone, Copy, Default)]
struct PenaltyEstimate {
    refused: Option<Duration>,
    accepted: Option<Duration>,
}

impl PenaltyEstimate {
    /// How long to pause at the start of an event: between the bounds while they are far
    /// apart (one refused probe is cheaper than a pause too long at every event), else the
    /// earliest offset known to work.
    fn first_pause(&self) -> Option<Duration> {
        let hi = self.accepted?;
        let lo = self.refused.unwrap_or(Duration::ZERO).min(hi);
        Some(if hi - lo > hi / 5 {
            lo + (hi - lo) / 2
        } else {
            hi
        })
    }

    fn refused_at(&mut self, offset: Duration) {
        self.refused = Some(self.refused.map_or(offset, |r| r.max(offset)));
        // The server's penalty has grown: forget the old bound.
        if self.accepted.is_some_and(|a| a <= offset) {
            self.accepted = None;
        }
    }

    fn accepted_at(&mut self, offset: Duration) {
        self.accepted = Some(self.accepted.map_or(offset, |a| a.min(offset)));
        if self.refused.is_some_and(|r| r >= offset) {
            self.refused = None;
        }
    }
}

/// Paces every request of a run.
pub struct Governor {
    /// Closed when the run stops: waiting requests give up instead of being sent.
    closed: tokio_util::sync::CancellationToken,
    cfg: GovernorConfig,
    ceiling: Ceiling,
    clock: TokioClock,
    state: Mutex<State>,
    notify: Notify,
}

/// Holds one in-flight slot; dropping it frees the slot.
pub struct Slot<'a> {
    gov: &'a Governor,
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        let mut st = self.gov.lock();
        st.in_flight = st.in_flight.saturating_sub(1);
        drop(st);
        self.gov.notify.notify_waiters();
    }
}

impl Governor {
    pub fn new(cfg: GovernorConfig) -> Governor {
        let clock = TokioClock {
            start: Instant::now(),
        };
        // A burst of a tenth of a second's worth: small enough to stay "about 20 at a
        // time", large enough that a waiter woken a millisecond late (tokio's timer
        // resolution) does not lose its slot. With a burst of 1, lateness alone cost ~17 %
        // of throughput at 200 req/s.
        let period = Duration::from_secs_f64(1.0 / cfg.rate.max(0.001));
        let burst =
            NonZeroU32::new((cfg.rate / 10.0).clamp(1.0, 1000.0) as u32).unwrap_or(NonZeroU32::MIN);
        let quota = Quota::with_period(period)
            .unwrap_or_else(|| Quota::per_second(NonZeroU32::MIN))
            .allow_burst(burst);
        let ceiling = RateLimiter::direct_with_clock(quota, clock.clone());
        let batch = cfg.batch.clamp(1, cfg.max_in_flight.max(1));
        let state = State {
            window: batch,
            acked: 0,
            in_flight: 0,
            writes_waiting: 0,
            pause_until: None,
            consecutive_429: 0,
            event: None,
            penalty: PenaltyEstimate::default(),
            rng: fastrand::Rng::with_seed(cfg.seed),
            adaptive: AdaptiveRate::new(cfg.rate, Instant::now()),
            latency: 0.0,
            current: Sample {
                window: batch,
                ..Sample::default()
            },
            sample_every: 1,
            stats: GovernorStats {
                window: batch,
                window_max: batch,
                window_min: batch,
                ..Default::default()
            },
        };
        Governor {
            closed: tokio_util::sync::CancellationToken::new(),
            cfg,
            ceiling,
            clock,
            state: Mutex::new(state),
            notify: Notify::new(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while holding this lock cannot leave the counters inconsistent in a way
        // that matters more than stopping the run, so recover the data.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Stops the gate: every waiting and later `acquire` returns `None` at once.
    pub fn close(&self) {
        self.closed.cancel();
        self.notify.notify_waiters();
    }

    /// Sleeps `d`, or less if the gate closes; true when the gate is still open.
    async fn wait(&self, d: Duration) -> bool {
        tokio::select! {
            _ = tokio::time::sleep(d) => !self.closed.is_cancelled(),
            _ = self.closed.cancelled() => false,
        }
    }

    /// Waits for an in-flight slot, the end of any pause, and a rate permit. `None` when
    /// the run is stopping: the caller must not send.
    pub async fn acquire(&self, kind: RequestKind) -> Option<Slot<'_>> {
        let got = self.acquire_open(kind).await;
        if got.is_none() && kind == RequestKind::Write {
            let mut st = self.lock();
            st.writes_waiting = st.writes_waiting.saturating_sub(1);
        }
        got
    }

    async fn acquire_open(&self, kind: RequestKind) -> Option<Slot<'_>> {
        let is_write = kind == RequestKind::Write;
        loop {
            if is_write {
                self.lock().writes_waiting += 1;
            }
            let slot = self.gate(kind).await?;
            let wait = self.lock().adaptive.reserve(Instant::now());
            if !wait.is_zero() && !self.wait(wait).await {
                return None;
            }
            loop {
                match self.ceiling.check() {
                    Ok(()) => break,
                    // No jitter here: the GCRA already hands out slots one period apart.
                    // A run that stops while this request waits for its permit must not
                    // send it: the wait gives up when the gate closes.
                    Err(not_until) => {
                        if !self.wait(not_until.wait_time_from(self.clock.now())).await {
                            return None;
                        }
                    }
                }
            }
            if self.closed.is_cancelled() {
                return None;
            }
            let mut st = self.lock();
            // An overload may have begun while this request waited for its send slot: then
            // it must not go out into the pause, nor beside the one probe after it.
            let now = Instant::now();
            if st.pause_until.is_some_and(|p| p > now) || (st.event.is_some() && st.in_flight > 1) {
                drop(st);
                drop(slot);
                continue;
            }
            st.stats.requests += 1;
            self.tick(&mut st);
            st.current.requests += 1;
            drop(st);
            return Some(slot);
        }
    }

    /// Waits for an in-flight slot and the end of any pause.
    async fn gate(&self, kind: RequestKind) -> Option<Slot<'_>> {
        let is_write = kind == RequestKind::Write;
        loop {
            if self.closed.is_cancelled() {
                return None;
            }
            let notified = self.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let wait = {
                let mut st = self.lock();
                let now = Instant::now();
                match st.pause_until {
                    Some(until) if until > now => Some(until - now),
                    _ => {
                        // After an overload's pause, one probe at a time until one is
                        // accepted: a penalty window would refuse a whole window's worth.
                        let window = if st.event.is_some() {
                            1
                        } else {
                            effective_window(&st, &self.cfg)
                        };
                        let yield_to_writes = kind == RequestKind::Poll && st.writes_waiting > 0;
                        if st.in_flight < window && !yield_to_writes {
                            st.in_flight += 1;
                            if is_write {
                                st.writes_waiting -= 1;
                            }
                            return Some(Slot { gov: self });
                        }
                        None
                    }
                }
            };
            match wait {
                Some(d) => {
                    if !self.wait(d + self.jitter()).await {
                        return None;
                    }
                }
                // Bounded so a missed wake-up costs at most this long.
                None => {
                    let _ = tokio::time::timeout(Duration::from_millis(250), notified).await;
                }
            }
        }
    }

    fn jitter(&self) -> Duration {
        if self.cfg.jitter.is_zero() {
            return Duration::ZERO;
        }
        let max = self.cfg.jitter.as_micros() as u64;
        Duration::from_micros(self.lock().rng.u64(0..=max))
    }

    /// Records what a request got back and adapts: the first 429 of an overload halves the
    /// window, cuts the adaptive rate and pauses the whole run; a window's worth of accepted
    /// requests grows the window by one.
    pub fn observe(&self, status: Option<u16>, retry_after: Option<Duration>, latency: Duration) {
        let mut st = self.lock();
        self.tick(&mut st);
        let l = latency.as_secs_f64();
        st.latency = if st.latency == 0.0 {
            l
        } else {
            0.9 * st.latency + 0.1 * l
        };
        let key = status
            .map(|s| s.to_string())
            .unwrap_or_else(|| "error".into());
        *st.stats.by_status.entry(key).or_default() += 1;
        let old = st.window;
        let now = Instant::now();
        // When the request left: what it says is about the server as it was then.
        let sent = now.checked_sub(latency).unwrap_or(now);
        match status {
            Some(429) => {
                st.stats.rate_limited += 1;
                st.current.rate_limited += 1;
                let pause = match st.event {
                    None => {
                        // A new overload: cut once, halve once, pause.
                        st.consecutive_429 = 1;
                        st.adaptive.throttled(now);
                        st.window = (st.window / 2).max(1);
                        st.acked = 0;
                        let pause = retry_after
                            .map(|ra| ra.min(self.cfg.max_retry_after))
                            .or_else(|| st.penalty.first_pause())
                            .unwrap_or_else(|| self.backoff(&mut st));
                        st.event = Some(Event {
                            start: now,
                            resume_at: now + pause,
                        });
                        Some(pause)
                    }
                    // Sent before the pause ended: one more answer to the same overload.
                    Some(ev) if sent < ev.resume_at => None,
                    // A probe refused: the server still refuses. Pause again, no new cut.
                    Some(ev) => {
                        st.penalty.refused_at(sent - ev.start);
                        st.consecutive_429 += 1;
                        let pause = retry_after
                            .map(|ra| ra.min(self.cfg.max_retry_after))
                            .unwrap_or_else(|| self.backoff(&mut st));
                        st.event = Some(Event {
                            start: ev.start,
                            resume_at: now + pause,
                        });
                        Some(pause)
                    }
                };
                if let Some(pause) = pause {
                    let until = now + pause;
                    if st.pause_until.is_none_or(|p| p < until) {
                        let extra = match st.pause_until {
                            Some(p) if p > now => until - p,
                            _ => pause,
                        };
                        st.stats.paused_ms += extra.as_millis() as u64;
                        st.pause_until = Some(until);
                    }
                    tracing::debug!(window = st.window, pause_ms = pause.as_millis() as u64, retry_after = ?retry_after, rate = ?st.adaptive.rate(), level = ?st.adaptive.level(), "rate limited (429): pausing the run");
                }
            }
            // Anything but a 429 got past the server's rate limiter, a 5xx included: for the
            // rate it was accepted (counting only 2xx would read a 5 % error rate as a limit
            // 5 % lower); only non-errors grow the window.
            Some(s) => {
                if let Some(ev) = st.event
                    && sent >= ev.resume_at
                {
                    // A request sent after the pause went through: the overload is over.
                    st.penalty.accepted_at(sent - ev.start);
                    st.event = None;
                    st.consecutive_429 = 0;
                    st.adaptive.resumed(now);
                }
                st.adaptive.accepted(now);
                if s < 500 && st.event.is_none() {
                    st.acked += 1;
                    // Until the API first refuses, the window doubles each round trip (one
                    // more per accepted request, TCP's slow start) from the `batch` it
                    // started at; after that it grows by one per window's worth.
                    let throttled_once = st.adaptive.rate().is_some();
                    if !throttled_once || st.acked >= st.window {
                        st.acked = 0;
                        st.window = (st.window + 1).min(self.cfg.max_in_flight.max(1));
                    }
                }
            }
            None => {}
        }
        let new = st.window;
        if new != old {
            st.stats.window_changes += 1;
            st.stats.window = new;
            st.stats.window_max = st.stats.window_max.max(new);
            st.stats.window_min = st.stats.window_min.min(new);
            tracing::debug!(from = old, to = new, "in-flight window changed");
        }
        drop(st);
        self.notify.notify_waiters();
    }

    /// The pause after a 429 without `Retry-After` or a learned penalty: the base pause
    /// doubled per refused probe of this overload, with jitter over its upper half.
    fn backoff(&self, st: &mut State) -> Duration {
        let exp = st.consecutive_429.saturating_sub(1).min(16);
        let step = (self.cfg.base_pause * 2u32.pow(exp)).min(self.cfg.max_pause);
        let micros = step.as_micros() as u64;
        Duration::from_micros(st.rng.u64(micros / 2..=micros.max(1)))
    }

    /// The current window (requests allowed in flight).
    pub fn window(&self) -> u32 {
        self.lock().window
    }

    /// Requests sent and 429s seen so far; cheap, for progress displays.
    pub fn counts(&self) -> (u64, u64) {
        let st = self.lock();
        (st.stats.requests, st.stats.rate_limited)
    }

    pub fn stats(&self) -> GovernorStats {
        let mut st = self.lock();
        self.tick(&mut st);
        let mut stats = st.stats.clone();
        stats.adaptive_rate = st.adaptive.rate().map(|r| (r * 10.0).round() / 10.0);
        let mut last = st.current.clone();
        last.rate = stats.adaptive_rate;
        stats.timeline.push(last);
        stats
    }

    /// Closes the current sample when its second is over.
    fn tick(&self, st: &mut State) {
        let now = self.clock.now().as_secs() as u32;
        if now < st.current.t + st.sample_every {
            return;
        }
        let mut done = std::mem::take(&mut st.current);
        done.window = st.window;
        done.rate = st.adaptive.rate().map(|r| (r * 10.0).round() / 10.0);
        st.stats.timeline.push(done);
        if st.stats.timeline.len() >= MAX_SAMPLES {
            // Halve the resolution instead of growing without bound.
            let merged: Vec<Sample> = st
                .stats
                .timeline
                .chunks(2)
                .map(|c| Sample {
                    t: c[0].t,
                    requests: c.iter().map(|s| s.requests).sum(),
                    rate_limited: c.iter().map(|s| s.rate_limited).sum(),
                    window: c.iter().map(|s| s.window).max().unwrap_or(0),
                    rate: c.last().and_then(|s| s.rate),
                })
                .collect();
            st.stats.timeline = merged;
            st.sample_every *= 2;
        }
        st.current = Sample {
            t: now - now % st.sample_every,
            window: st.window,
            ..Sample::default()
        };
    }
}

/// The window the gate enforces: the AIMD window, but once the adaptive rate paces sends at
/// least what that rate needs at the observed latency (with headroom), within
/// `[1, max_in_flight]`.
fn effective_window(st: &State, cfg: &GovernorConfig) -> u32 {
    // Before the first 429 the window alone bounds a run ("start near 20 at a time"): the
    // ceiling is no evidence of what the server takes, and a floor from it would put a
    // hundred requests in flight into the first overload.
    let Some(rate) = st.adaptive.rate() else {
        return st.window.clamp(1, cfg.max_in_flight.max(1));
    };
    let needed = (rate * st.latency * 1.5).ceil() as u32;
    st.window.max(needed).clamp(1, cfg.max_in_flight.max(1))
}

/// The governor is the throttle of the run's client: every request the client sends takes
/// a permit here and reports its answer back.
impl Throttle for Governor {
    fn acquire(&self, kind: RequestKind) -> BoxFuture<'_, Option<Box<dyn Send + '_>>> {
        async move {
            Governor::acquire(self, kind)
                .await
                .map(|s| Box::new(s) as Box<dyn Send + '_>)
        }
        .boxed()
    }
    fn observe(&self, _kind: RequestKind, o: Observation) {
        Governor::observe(self, o.status, o.retry_after, o.latency);
    }
    fn close(&self) {
        Governor::close(self);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(rate: f64, batch: u32) -> GovernorConfig {
        GovernorConfig {
            rate,
            batch,
            max_in_flight: 8,
            base_pause: Duration::from_millis(500),
            max_pause: Duration::from_secs(10),
            max_retry_after: Duration::from_secs(5),
            jitter: Duration::ZERO,
            seed: 1,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn ceiling_spaces_requests() {
        let g = Governor::new(cfg(10.0, 4));
        let start = Instant::now();
        for _ in 0..21 {
            drop(g.acquire(RequestKind::Write).await.unwrap());
        }
        // 21 permits at 10/s with burst 1: the first is free, then 100 ms apart.
        assert_eq!(start.elapsed(), Duration::from_secs(2));
    }

    #[tokio::test(start_paused = true)]
    async fn aimd_window() {
        let g = Governor::new(cfg(1000.0, 4));
        // Before any 429 the window grows by one per accepted request (slow start).
        for _ in 0..2 {
            g.observe(Some(200), None, Duration::ZERO);
        }
        assert_eq!(g.window(), 6);
        // One overload halves it once, however many 429s it brings.
        g.observe(Some(429), None, Duration::from_millis(50));
        assert_eq!(g.window(), 3);
        g.observe(Some(429), None, Duration::from_millis(50));
        assert_eq!(g.window(), 3, "a second 429 of the same overload");
        // After the pause, a probe is accepted: the overload is over; then one slot per
        // window's worth of accepted requests, never above max_in_flight.
        tokio::time::sleep(Duration::from_secs(2)).await;
        g.observe(Some(200), None, Duration::ZERO);
        for _ in 0..2 {
            g.observe(Some(200), None, Duration::ZERO);
        }
        assert_eq!(g.window(), 4);
        for _ in 0..1000 {
            g.observe(Some(201), None, Duration::ZERO);
        }
        assert_eq!(g.window(), 8, "never above max_in_flight");
        let s = g.stats();
        assert_eq!((s.rate_limited, s.window_min, s.window_max), (2, 3, 8));
    }

    #[tokio::test(start_paused = true)]
    async fn retry_after_is_honoured_up_to_its_cap() {
        let g = Governor::new(cfg(1000.0, 4));
        g.observe(Some(429), Some(Duration::from_secs(30)), Duration::ZERO);
        let start = Instant::now();
        drop(g.acquire(RequestKind::Write).await.unwrap());
        // Retry-After 30 s is capped at max_retry_after (5 s).
        assert_eq!(start.elapsed().as_secs(), 5);
    }

    #[tokio::test(start_paused = true)]
    async fn one_overload_pauses_once_and_a_refused_probe_pauses_longer() {
        let g = Governor::new(cfg(1000.0, 4));
        g.observe(Some(429), None, Duration::from_millis(20));
        // Answers to requests sent before the pause ended belong to the same overload.
        g.observe(Some(429), None, Duration::from_millis(20));
        let start = Instant::now();
        drop(g.acquire(RequestKind::Read).await.unwrap());
        let first = start.elapsed().as_millis();
        assert!(
            (250..=500).contains(&first),
            "base 500 ms, jittered: {first}"
        );
        // The probe sent after the pause is refused too: the server still refuses, so the
        // pause doubles, without a second cut of the rate.
        let rate = g.lock().adaptive.rate();
        g.observe(Some(429), None, Duration::ZERO);
        assert_eq!(g.lock().adaptive.rate(), rate);
        let start = Instant::now();
        drop(g.acquire(RequestKind::Read).await.unwrap());
        let second = start.elapsed().as_millis();
        // Plus at most one slot of the restarted rate (10/s).
        assert!((500..=1100).contains(&second), "{second}");
    }

    #[tokio::test(start_paused = true)]
    async fn after_an_overload_one_probe_goes_out_at_a_time() {
        let g = std::sync::Arc::new(Governor::new(cfg(1000.0, 4)));
        g.observe(Some(429), None, Duration::ZERO);
        let probe = g.acquire(RequestKind::Write).await.unwrap();
        let g2 = g.clone();
        let second = tokio::spawn(async move {
            drop(g2.acquire(RequestKind::Write).await.unwrap());
        });
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert!(!second.is_finished(), "no second request beside the probe");
        // The probe is accepted: the overload is over and the window opens again.
        g.observe(Some(201), None, Duration::ZERO);
        drop(probe);
        tokio::time::timeout(Duration::from_secs(2), second)
            .await
            .unwrap()
            .unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn the_penalty_learned_from_probes_sets_the_next_pause() {
        let g = Governor::new(cfg(1000.0, 4));
        // First overload: probes refused until one sent 1.5 s after it was accepted.
        g.observe(Some(429), None, Duration::ZERO);
        tokio::time::sleep(Duration::from_millis(1000)).await;
        g.observe(Some(429), None, Duration::ZERO);
        tokio::time::sleep(Duration::from_millis(500)).await;
        g.lock().pause_until = None;
        g.observe(Some(200), None, Duration::ZERO);
        // The next overload pauses between the last refused probe and the accepted one.
        tokio::time::sleep(Duration::from_secs(5)).await;
        g.observe(Some(429), None, Duration::ZERO);
        let start = Instant::now();
        drop(g.acquire(RequestKind::Read).await.unwrap());
        let waited = start.elapsed().as_millis();
        assert!((1000..=1500).contains(&waited), "{waited}");
    }

    #[tokio::test(start_paused = true)]
    async fn closing_releases_every_waiter() {
        let g = std::sync::Arc::new(Governor::new(cfg(1.0, 1)));
        let _held = g.acquire(RequestKind::Write).await.unwrap();
        let g2 = g.clone();
        let waiter = tokio::spawn(async move { g2.acquire(RequestKind::Write).await.is_none() });
        tokio::time::sleep(Duration::from_millis(10)).await;
        g.close();
        assert!(
            waiter.await.unwrap(),
            "a waiting request gives up when the run stops"
        );
        assert!(g.acquire(RequestKind::Read).await.is_none());
    }

    #[tokio::test(start_paused = true)]
    async fn window_bounds_in_flight() {
        let g = std::sync::Arc::new(Governor::new(cfg(1000.0, 2)));
        let a = g.acquire(RequestKind::Write).await.unwrap();
        let _b = g.acquire(RequestKind::Write).await.unwrap();
        let g2 = g.clone();
        let third = tokio::spawn(async move {
            drop(g2.acquire(RequestKind::Write).await.unwrap());
        });
        tokio::time::sleep(Duration::from_secs(5)).await;
        assert!(!third.is_finished(), "a third request must wait for a slot");
        drop(a);
        tokio::time::timeout(Duration::from_secs(1), third)
            .await
            .unwrap()
            .unwrap();
    }
}
