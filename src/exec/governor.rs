//! The run's request governor: rate ceiling, adaptive send rate, adaptive in-flight
//! window, and the run-wide pause after a 429.
//!
//! Every HTTP request of a run passes [`Governor::acquire`] (through the client's throttle
//! hook), so retries, pages and status polls are paced like writes. The ceiling is a
//! `governor` GCRA limiter running on tokio's clock, so paused-time tests work and waits
//! never spin. Below the ceiling, [`AdaptiveRate`] paces sends: a startup ramp, then a
//! hold just under the server bucket it fits from the run's own overloads, and after a 429
//! a pause that one accepted probe ends (it owns those decisions; this file owns the
//! waiting). The window is AIMD: it grows by one after a window's worth of accepted
//! requests and halves once per overload, but never drops below
//! what the current rate needs at the observed latency, so at 250 ms per request the window
//! cannot starve a 200 req/s budget. It does not know what the requests are for.

use std::collections::BTreeMap;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::FutureExt;
use futures::future::BoxFuture;
use governor::clock::Clock;
use governor::{Quota, RateLimiter};
use tokio::sync::Notify;
use tokio::time::Instant;

use super::adaptive::{AdaptiveRate, FitJob, Fitted, GateState};
use super::shared::{Grant, SharedBudget, SharedStats};
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
    /// Pages per second of the device listing (`RequestKind::DeviceList`), inside `rate`.
    pub device_list_rate: f64,
    /// Initial in-flight window.
    pub batch: u32,
    pub max_in_flight: u32,
    /// After a 429 without `Retry-After`, the wait before the first probe; each refused
    /// probe waits 1.25 times longer, up to `max_pause`.
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
    /// The budget shared with other processes, when a coordinator is configured.
    pub shared: Option<SharedStats>,
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

/// What a request holding its slot does next.
enum Step {
    Go,
    /// A turn under the adaptive rate, reserved before this many overloads.
    Reserved(Duration, u64),
    Sleep(Duration),
    Listen,
}

/// Samples kept at most; a longer run keeps every other second, then every fourth, ….
const MAX_SAMPLES: usize = 3600;

struct State {
    window: u32,
    /// Requests accepted since the window last grew; a full window's worth adds one slot.
    acked: u32,
    in_flight: u32,
    writes_waiting: u32,
    /// The end of the last pause this process published after a 429 of its own, so it
    /// does not react to its own pause a second time.
    own_pause_until: Option<Instant>,
    /// The end of the last shared pause this process waited for, so a pause published
    /// by another process is reacted to once.
    shared_pause_until: Option<Instant>,
    rng: fastrand::Rng,
    adaptive: AdaptiveRate,
    /// Smoothed request latency in seconds.
    latency: f64,
    /// The sample being filled.
    current: Sample,
    sample_every: u32,
    stats: GovernorStats,
}

/// Paces every request of a run.
pub struct Governor {
    /// Closed when the run stops: waiting requests give up instead of being sent.
    closed: tokio_util::sync::CancellationToken,
    cfg: GovernorConfig,
    ceiling: Ceiling,
    /// The device listing's own budget (burst 1: one page at a time).
    device_list: Ceiling,
    clock: TokioClock,
    state: Mutex<State>,
    notify: Notify,
    /// Woken by an overload only: requests asleep until a reserved turn wake to wait for
    /// the pause instead, so no turn reserved before it holds a slot past it.
    overload: Notify,
    /// A fit finished on a blocking thread, for the next caller holding the lock to apply;
    /// the flag says one is there, so the send path takes no second lock to find out.
    fitted: Arc<(AtomicBool, Mutex<Option<Fitted>>)>,
    /// The budget shared with other processes, asked after the local ceiling.
    shared: Option<Arc<dyn SharedBudget>>,
    /// The local fallback rate used while the shared budget is unreachable.
    fallback: Option<Ceiling>,
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
        let list_period = Duration::from_secs_f64(1.0 / cfg.device_list_rate.max(0.0001));
        let device_list = RateLimiter::direct_with_clock(
            Quota::with_period(list_period).unwrap_or_else(|| Quota::per_second(NonZeroU32::MIN)),
            clock.clone(),
        );
        let batch = cfg.batch.clamp(1, cfg.max_in_flight.max(1));
        let state = State {
            window: batch,
            acked: 0,
            in_flight: 0,
            writes_waiting: 0,
            own_pause_until: None,
            shared_pause_until: None,
            rng: fastrand::Rng::with_seed(cfg.seed),
            adaptive: AdaptiveRate::new(
                cfg.rate,
                batch,
                cfg.base_pause,
                cfg.max_pause,
                Instant::now(),
            ),
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
            device_list,
            clock,
            state: Mutex::new(state),
            notify: Notify::new(),
            overload: Notify::new(),
            fitted: Arc::default(),
            shared: None,
            fallback: None,
        }
    }

    /// A governor that also draws every permit from `shared` (after its own ceiling,
    /// which stays the per-process maximum), and paces at the budget's fallback rate
    /// whenever the shared budget is unreachable.
    pub fn with_shared(cfg: GovernorConfig, shared: Arc<dyn SharedBudget>) -> Governor {
        let mut gov = Governor::new(cfg);
        let rate = shared.fallback_rate().min(gov.cfg.rate).max(0.001);
        let period = Duration::from_secs_f64(1.0 / rate);
        let burst =
            NonZeroU32::new((rate / 10.0).clamp(1.0, 1000.0) as u32).unwrap_or(NonZeroU32::MIN);
        let quota = Quota::with_period(period)
            .unwrap_or_else(|| Quota::per_second(NonZeroU32::MIN))
            .allow_burst(burst);
        gov.fallback = Some(RateLimiter::direct_with_clock(quota, gov.clock.clone()));
        gov.shared = Some(shared);
        gov
    }

    /// Takes a permit of the shared budget, or of the local fallback rate while it is
    /// unreachable; false when the gate closed meanwhile.
    async fn shared_permit(&self, shared: &dyn SharedBudget) -> bool {
        loop {
            if self.closed.is_cancelled() {
                return false;
            }
            match shared.permit().await {
                Grant::Go => return true,
                // The slot is reserved: waiting it out is the whole permit.
                Grant::After(d) => return self.wait(d).await,
                Grant::Retry(d) => {
                    if !self.wait(d + self.jitter()).await {
                        return false;
                    }
                }
                Grant::Paused(d) => {
                    self.shared_pause(d);
                    if !self.wait(d + self.jitter()).await {
                        return false;
                    }
                }
                Grant::Degraded => {
                    let Some(fallback) = &self.fallback else {
                        return true;
                    };
                    loop {
                        match fallback.check() {
                            Ok(()) => break,
                            Err(not_until) => {
                                if !self.wait(not_until.wait_time_from(self.clock.now())).await {
                                    return false;
                                }
                            }
                        }
                    }
                    shared.local_permit();
                    return true;
                }
            }
        }
    }

    /// A shared pause this process has not waited for yet (another process saw a 429):
    /// the local pause and window react as to a 429 of its own, once per pause.
    fn shared_pause(&self, d: Duration) {
        let mut st = self.lock();
        let now = Instant::now();
        let until = now + d;
        // Pauses end within a few milliseconds of each other across calls; a new one starts
        // after the last has ended.
        if st
            .shared_pause_until
            .is_some_and(|u| u + Duration::from_millis(5) >= now)
        {
            st.shared_pause_until = Some(until.max(st.shared_pause_until.unwrap_or(until)));
            return;
        }
        st.shared_pause_until = Some(until);
        // This process' own 429 published it: the 429 branch has reacted already.
        if st
            .own_pause_until
            .is_some_and(|p| p + Duration::from_millis(100) >= until)
        {
            return;
        }
        if let Some(s) = &self.shared {
            s.pause_seen();
        }
        // The wait itself happens where the pause was met (`shared_permit`); the local
        // rate keeps its own fit, which only this process' own overloads inform.
        st.stats.paused_ms += d.as_millis() as u64;
        let old = st.window;
        st.window = (st.window / 2).max(1);
        st.acked = 0;
        if st.window != old {
            st.stats.window_changes += 1;
            st.stats.window = st.window;
            st.stats.window_min = st.stats.window_min.min(st.window);
        }
        tracing::debug!(
            pause_ms = d.as_millis() as u64,
            "shared pause: another process was rate limited"
        );
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
        if kind == RequestKind::DeviceList {
            // The route's own budget first, holding no in-flight slot while it waits.
            while let Err(not_until) = self.device_list.check() {
                if !self.wait(not_until.wait_time_from(self.clock.now())).await {
                    return None;
                }
            }
        }
        if is_write {
            self.lock().writes_waiting += 1;
        }
        let slot = loop {
            if self.closed.is_cancelled() {
                return None;
            }
            let notified = self.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            {
                let mut st = self.lock();
                let window = effective_window(&st, &self.cfg);
                let yield_to_writes = kind == RequestKind::Poll && st.writes_waiting > 0;
                if st.in_flight < window && !yield_to_writes {
                    st.in_flight += 1;
                    if is_write {
                        st.writes_waiting -= 1;
                    }
                    break Slot { gov: self };
                }
            }
            // Bounded so a missed wake-up costs at most this long.
            let _ = tokio::time::timeout(Duration::from_millis(250), notified).await;
        };
        // Holding the slot: the pause after a 429 (one probe at a time) and the adaptive rate.
        loop {
            if self.closed.is_cancelled() {
                return None;
            }
            let notified = self.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let step = {
                let mut st = self.lock();
                self.apply_fitted(&mut st);
                let now = Instant::now();
                match st.adaptive.gate(now) {
                    GateState::Open => {
                        Step::Reserved(st.adaptive.reserve(now), st.adaptive.overloads())
                    }
                    GateState::Probe => {
                        st.adaptive.probe_sent(now);
                        Step::Go
                    }
                    GateState::Wait(d) => Step::Sleep(d),
                    GateState::ProbeOut => Step::Listen,
                }
            };
            match step {
                Step::Go => break,
                Step::Reserved(wait, overloads) => {
                    if wait.is_zero() {
                        break;
                    }
                    let overload = self.overload.notified();
                    tokio::pin!(overload);
                    overload.as_mut().enable();
                    if self.lock().adaptive.overloads() == overloads {
                        tokio::select! {
                            _ = tokio::time::sleep(wait) => {}
                            _ = overload => {}
                            _ = self.closed.cancelled() => {}
                        }
                    }
                    if self.closed.is_cancelled() {
                        return None;
                    }
                    // An overload while this request waited for its turn cancelled every
                    // reserved turn: it waits for the pause and reserves anew, or it would
                    // go out beside the turns reserved after the pause (and hold its slot
                    // until a turn that no longer exists).
                    let st = self.lock();
                    if st.adaptive.overloads() == overloads
                        && st.adaptive.gate(Instant::now()) == GateState::Open
                    {
                        break;
                    }
                }
                Step::Sleep(d) => {
                    if !self.wait(d + self.jitter()).await {
                        return None;
                    }
                }
                Step::Listen => {
                    let _ = tokio::time::timeout(Duration::from_millis(250), notified).await;
                }
            }
        }
        loop {
            match self.ceiling.check() {
                Ok(()) => break,
                // No jitter here: the GCRA already hands out slots one period apart.
                // A run that stops while this request waits for its permit must not send
                // it: the wait gives up when the gate closes.
                Err(not_until) => {
                    if !self.wait(not_until.wait_time_from(self.clock.now())).await {
                        return None;
                    }
                }
            }
        }
        if let Some(shared) = &self.shared
            && !self.shared_permit(shared.as_ref()).await
        {
            return None;
        }
        if self.closed.is_cancelled() {
            return None;
        }
        let mut st = self.lock();
        st.stats.requests += 1;
        self.tick(&mut st);
        st.current.requests += 1;
        drop(st);
        Some(slot)
    }

    fn jitter(&self) -> Duration {
        if self.cfg.jitter.is_zero() {
            return Duration::ZERO;
        }
        let max = self.cfg.jitter.as_micros() as u64;
        Duration::from_micros(self.lock().rng.u64(0..=max))
    }

    /// Records what a request got back and adapts: a 429 halves the window and pauses the
    /// whole run; a window's worth of accepted requests grows it by one.
    pub fn observe(&self, status: Option<u16>, retry_after: Option<Duration>, latency: Duration) {
        let mut st = self.lock();
        self.apply_fitted(&mut st);
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
        let sent = now.checked_sub(latency).unwrap_or(now);
        match status {
            Some(429) => {
                st.stats.rate_limited += 1;
                st.current.rate_limited += 1;
                let retry_after = retry_after.map(|ra| ra.min(self.cfg.max_retry_after));
                let (trip, paused) = st.adaptive.throttled(sent, now, retry_after);
                st.stats.paused_ms += paused.as_millis() as u64;
                // One overload returns many 429s (everything in flight, then a penalty
                // window's worth); the window halves once for it.
                if trip {
                    self.overload.notify_waiters();
                    st.window = (st.window / 2).max(1);
                    st.acked = 0;
                    if let Some(shared) = &self.shared {
                        // Every other process pauses too, for as long as this one waits
                        // before its first probe; the send path does not wait for Redis.
                        let pause = if paused.is_zero() {
                            self.cfg.base_pause
                        } else {
                            paused
                        };
                        st.own_pause_until = Some(now + pause);
                        let shared = shared.clone();
                        tokio::spawn(async move { shared.publish_pause(pause).await });
                    }
                    tracing::debug!(window = st.window, retry_after = ?retry_after, "rate limited (429): pausing the run until a probe is accepted");
                }
            }
            Some(s) if s < 500 => {
                st.adaptive.accepted(sent, now, true);
                st.acked += 1;
                if st.acked >= st.window {
                    st.acked = 0;
                    st.window = (st.window + 1).min(self.cfg.max_in_flight.max(1));
                }
            }
            Some(_) => st.adaptive.accepted(sent, now, true),
            None => st.adaptive.accepted(sent, now, false),
        }
        let job = st.adaptive.take_fit_job();
        let new = st.window;
        if new != old {
            st.stats.window_changes += 1;
            st.stats.window = new;
            st.stats.window_max = st.stats.window_max.max(new);
            st.stats.window_min = st.stats.window_min.min(new);
            tracing::debug!(from = old, to = new, "in-flight window changed");
        }
        drop(st);
        if let Some(job) = job {
            self.fit_away(job);
        }
        self.notify.notify_waiters();
    }

    /// Runs a fit without the lock: replaying a long send log takes a good part of a
    /// second, and under the lock no request could be sent meanwhile. On a runtime with
    /// blocking threads it runs on one and the run goes on at the release's cautious pace;
    /// on a single thread (the simulations' paused clock) it runs here, at the same
    /// instant.
    fn fit_away(&self, job: FitJob) {
        use tokio::runtime::{Handle, RuntimeFlavor};
        let threaded =
            Handle::try_current().is_ok_and(|h| h.runtime_flavor() != RuntimeFlavor::CurrentThread);
        if !threaded {
            let done = job.run();
            self.lock().adaptive.apply(done, Instant::now());
            return;
        }
        let slot = self.fitted.clone();
        tokio::task::spawn_blocking(move || {
            let done = job.run();
            *slot.1.lock().unwrap_or_else(|e| e.into_inner()) = Some(done);
            slot.0.store(true, Ordering::Release);
        });
    }

    /// Applies a fit a blocking thread finished, if there is one.
    fn apply_fitted(&self, st: &mut State) {
        if !self.fitted.0.swap(false, Ordering::Acquire) {
            return;
        }
        let done = self
            .fitted
            .1
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some(done) = done {
            st.adaptive.apply(done, Instant::now());
        }
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
        stats.shared = self.shared.as_ref().map(|s| s.stats());
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

/// The window the gate enforces: the AIMD window, but at least what the current send rate
/// needs at the observed latency (with headroom), within `[1, max_in_flight]`.
fn effective_window(st: &State, cfg: &GovernorConfig) -> u32 {
    let rate = st.adaptive.target(Instant::now());
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
            device_list_rate: rate,
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
    async fn the_device_listing_has_its_own_lower_budget() {
        let g = Governor::new(GovernorConfig {
            device_list_rate: 0.5,
            ..cfg(100.0, 4)
        });
        let start = Instant::now();
        for _ in 0..3 {
            drop(g.acquire(RequestKind::DeviceList).await.unwrap());
        }
        // Three pages at 0.5/s: the first at once, then two seconds apart.
        assert_eq!(start.elapsed(), Duration::from_secs(4));
        // Other reads are not held back by it: ten at the listing's budget would take 20 s;
        // the startup ramp (from five batches of 4 a second) takes well under one.
        let start = Instant::now();
        for _ in 0..10 {
            drop(g.acquire(RequestKind::Read).await.unwrap());
        }
        assert!(
            start.elapsed() < Duration::from_secs(1),
            "{:?}",
            start.elapsed()
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_request_waiting_for_its_permit_is_not_sent_once_the_gate_closes() {
        let g = std::sync::Arc::new(Governor::new(cfg(1.0, 4)));
        drop(g.acquire(RequestKind::Write).await.unwrap());
        let g2 = g.clone();
        // The next permit is a second away: this request waits for it.
        let waiter = tokio::spawn(async move { g2.acquire(RequestKind::Write).await.is_none() });
        tokio::time::sleep(Duration::from_millis(100)).await;
        g.close();
        assert!(
            waiter.await.unwrap(),
            "closed while waiting for the ceiling"
        );
        assert_eq!(g.stats().requests, 1);
    }

    #[tokio::test(start_paused = true)]
    async fn aimd_window() {
        let g = Governor::new(cfg(1000.0, 4));
        for _ in 0..4 {
            g.observe(Some(200), None, Duration::ZERO);
        }
        assert_eq!(g.window(), 5);
        g.observe(Some(429), None, Duration::ZERO);
        assert_eq!(g.window(), 2);
        // More 429s of the same overload (sent before the pause) cut nothing more.
        g.observe(Some(429), None, Duration::from_millis(1));
        g.observe(Some(429), None, Duration::from_millis(1));
        assert_eq!(g.window(), 2);
        // An answer to something sent after the overload ends the pause; the next 429
        // is a new overload.
        tokio::time::advance(Duration::from_millis(10)).await;
        g.observe(Some(200), None, Duration::ZERO);
        g.observe(Some(429), None, Duration::ZERO);
        assert_eq!(g.window(), 1, "never below 1");
        for _ in 0..1000 {
            g.observe(Some(201), None, Duration::ZERO);
        }
        assert_eq!(g.window(), 8, "never above max_in_flight");
        let s = g.stats();
        assert_eq!((s.rate_limited, s.window_min, s.window_max), (4, 1, 8));
    }

    #[tokio::test(start_paused = true)]
    async fn a_429_pauses_everyone() {
        let g = Governor::new(cfg(1000.0, 4));
        g.observe(Some(429), Some(Duration::from_secs(30)), Duration::ZERO);
        let start = Instant::now();
        drop(g.acquire(RequestKind::Write).await.unwrap());
        // Retry-After 30 s is capped at max_retry_after (5 s).
        assert_eq!(start.elapsed().as_secs(), 5);
        // That request was the pause's one probe: until it is answered, nothing else goes.
        let g = std::sync::Arc::new(g);
        let g2 = g.clone();
        let second = tokio::spawn(async move { drop(g2.acquire(RequestKind::Read).await) });
        tokio::time::sleep(Duration::from_secs(3)).await;
        assert!(!second.is_finished(), "one probe at a time");
        // The probe is refused too: the next probe waits 1.25 x the base pause (500 ms).
        g.observe(Some(429), None, Duration::ZERO);
        let start = Instant::now();
        second.await.unwrap();
        assert_eq!(start.elapsed().as_millis(), 625);
        // Accepted, it opens the gate for everyone (at half the rate that tripped).
        g.observe(Some(200), None, Duration::ZERO);
        let start = Instant::now();
        for _ in 0..4 {
            drop(g.acquire(RequestKind::Read).await.unwrap());
        }
        assert!(start.elapsed() < Duration::from_secs(1));
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

    /// A shared budget answering from a script of grants (then `Go`), counting calls.
    struct Scripted {
        grants: Mutex<std::collections::VecDeque<Grant>>,
        then: Grant,
        counts: Mutex<(u64, u64, u64)>,
    }

    impl Scripted {
        fn new(grants: &[Grant], then: Grant) -> Arc<Scripted> {
            Arc::new(Scripted {
                grants: Mutex::new(grants.iter().copied().collect()),
                then,
                counts: Mutex::new((0, 0, 0)),
            })
        }
    }

    impl SharedBudget for Scripted {
        fn permit(&self) -> BoxFuture<'_, Grant> {
            let g = self.grants.lock().unwrap().pop_front().unwrap_or(self.then);
            async move { g }.boxed()
        }
        fn publish_pause(&self, _pause: Duration) -> BoxFuture<'_, ()> {
            self.counts.lock().unwrap().0 += 1;
            async {}.boxed()
        }
        fn pause_seen(&self) {
            self.counts.lock().unwrap().1 += 1;
        }
        fn local_permit(&self) {
            self.counts.lock().unwrap().2 += 1;
        }
        fn stats(&self) -> SharedStats {
            let (published, seen, local) = *self.counts.lock().unwrap();
            SharedStats {
                pauses_published: published,
                pauses_seen: seen,
                permits_local: local,
                ..SharedStats::default()
            }
        }
        fn fallback_rate(&self) -> f64 {
            5.0
        }
    }

    // See: #15 — an unreachable coordinator: the local fallback rate paces, under the ceiling.
    #[tokio::test(start_paused = true)]
    async fn a_degraded_shared_budget_paces_at_the_fallback_rate() {
        let shared = Scripted::new(&[], Grant::Degraded);
        let g = Governor::with_shared(cfg(100.0, 4), shared.clone());
        let start = Instant::now();
        for _ in 0..11 {
            drop(g.acquire(RequestKind::Write).await.unwrap());
        }
        // 11 permits at the fallback 5/s (burst 1): the first at once, then 200 ms apart.
        assert_eq!(start.elapsed(), Duration::from_secs(2));
        assert_eq!(g.stats().shared.unwrap().permits_local, 11);
    }

    // See: #15 — another process' 429: wait out the shared pause, react to it once.
    #[tokio::test(start_paused = true)]
    async fn a_shared_pause_is_waited_for_and_reacted_to_once() {
        let pause = Grant::Paused(Duration::from_secs(1));
        let shared = Scripted::new(&[pause, pause], Grant::Go);
        let g = Governor::with_shared(cfg(1000.0, 4), shared.clone());
        let start = Instant::now();
        drop(g.acquire(RequestKind::Write).await.unwrap());
        assert!(start.elapsed() >= Duration::from_secs(1));
        let s = g.stats();
        assert_eq!(s.shared.unwrap().pauses_seen, 1, "one pause, seen once");
        assert_eq!(g.window(), 2, "the window halves as for a 429 of its own");
        // A reserved slot is waited out without asking again.
        let shared = Scripted::new(&[Grant::After(Duration::from_millis(300))], Grant::Go);
        let g = Governor::with_shared(cfg(1000.0, 4), shared);
        let start = Instant::now();
        drop(g.acquire(RequestKind::Read).await.unwrap());
        assert_eq!(start.elapsed(), Duration::from_millis(300));
    }

    // See: #15 — a 429 here pauses the other processes too.
    #[tokio::test(start_paused = true)]
    async fn a_429_is_published_as_a_shared_pause() {
        let shared = Scripted::new(&[], Grant::Go);
        let g = Governor::with_shared(cfg(1000.0, 4), shared.clone());
        g.observe(Some(429), None, Duration::ZERO);
        tokio::task::yield_now().await;
        assert_eq!(g.stats().shared.unwrap().pauses_published, 1);
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
