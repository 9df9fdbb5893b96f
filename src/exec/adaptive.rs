//! The adaptive send rate: learns the token bucket behind an unknown server limit from the
//! run's own traffic, holds just under it, and decides when a throttled run may send again.
//!
//! A server limit with a penalty window (every request answered 429 for a while after one
//! overload) punishes a controller that oscillates through 429s: each overload costs the
//! whole penalty. So this controller does not search by trial and error. It logs when each
//! answered request was sent and what it got, and after an overload replays that log
//! against a token bucket `(rate, burst)`: the accepted requests each took a token, and the
//! first 429 of each overload ("trip") found less than one. Two trips pin both unknowns
//! (a nested bisection; the bucket's level only grows with either). The run then holds at
//! [`HOLD`] of the fitted rate, with a client-side burst just under the fitted burst, and
//! creeps up by [`REPROBE_STEP`] every [`REPROBE_EVERY`] so a limit that was raised is
//! found again; the next trip refits.
//!
//! Before the first trip the rate starts at a few batches a second and grows by
//! [`RAMP_GROWTH`] every [`RAMP_STEP`] while the run keeps up with it, up to the ceiling
//! (where pacing switches off), so the first overload arrives at most at 1.5 times the
//! limit, not at the ceiling: every request in flight when it does comes back 429.
//! After a trip the run sends nothing until one probe request is accepted: the first probe
//! goes after the base pause (or the server's `Retry-After`), later ones further apart, and
//! what the probes learn about the penalty's length times the first probe of the next
//! overload. An accepted answer to anything sent after the trip ends the pause at once (a
//! server without a penalty window).
//!
//! Pure arithmetic over caller-supplied instants: the governor owns the clock, the slots
//! and the waiting.

use std::collections::VecDeque;
use std::time::Duration;

use tokio::time::Instant;

mod fit;
pub use fit::{FitJob, Fitted};

/// The rate never drops below this many requests per second.
const MIN_RATE: f64 = 0.5;
/// The startup rate is this many initial batches per second.
const START_BATCHES: f64 = 5.0;
/// Before the first throttle the rate grows by [`RAMP_GROWTH`] this often, while sends
/// keep up with it.
const RAMP_STEP: Duration = Duration::from_millis(100);
const RAMP_GROWTH: f64 = 1.5;
/// Share of the fitted rate the run holds at.
const HOLD: f64 = 0.98;
/// Where overloads cost nothing (no penalty window), the share held instead.
const HOLD_CHEAP: f64 = 0.995;
/// Requests sent this close together may reach the server in either order.
const REORDER: Duration = Duration::from_millis(2);
/// A penalty window no longer than this counts as none.
const CHEAP_PENALTY: Duration = Duration::from_millis(50);
/// Held without a throttle for this long, the rate grows by [`REPROBE_STEP`] of the fit.
const REPROBE_EVERY: Duration = Duration::from_secs(5);
const REPROBE_STEP: f64 = 0.01;
/// After an unfitted overload the run goes back at this share of the rate that tripped…
const SEEK_FROM: f64 = 0.5;
/// …or this share of it when the run was sending at the ceiling (within [`AT_CEILING`])…
const SEEK_FROM_CEILING: f64 = 0.9;
const AT_CEILING: f64 = 0.95;
/// …holds it this long…
const SEEK_HOLD: Duration = Duration::from_millis(500);
/// …then grows by this factor each [`RAMP_STEP`].
const SEEK_GROWTH: f64 = 1.1;
/// Two trips fit a bucket only if the bucket was draining for lengths this far apart
/// before them (with both equal, rate and burst cannot be told apart).
const MIN_SPREAD: f64 = 0.02;
/// Below this spread a fit is provisional: the rate creeps up every [`REPROBE_UNSURE`]
/// instead, so a fit that came out low is corrected by the next overload soon.
const FIRM_SPREAD: f64 = 0.3;
const REPROBE_UNSURE: Duration = Duration::from_secs(1);
/// Overloads the send log keeps for the next fit.
const KEEP_TRIPS: usize = 4;
/// The client-side burst is this share of the fitted server burst.
const CREDIT_SHARE: f64 = 0.8;
/// Each failed probe waits this much longer than the last.
const PROBE_GROWTH: f64 = 1.25;
/// Entries the send log keeps at most (older ones are forgotten; a replay from a later
/// start assumes a full bucket there, which only makes the fit more cautious).
const MAX_LOG: usize = 200_000;
/// Send-rate measurement buckets, for reports and the fallback after an unfittable trip.
const BUCKET: Duration = Duration::from_millis(500);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mark {
    /// Answered anything but 429: the server took a token for it.
    Consumed,
    /// The first 429 of an overload.
    Trip,
    /// Any other 429 (sent into a penalty window or before the run noticed the trip).
    Rejected,
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    /// Microseconds since the controller's origin.
    at: u64,
    mark: Mark,
}

/// A server token bucket fitted to the run's traffic.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Fit {
    /// Requests per second.
    pub rate: f64,
    /// Tokens.
    pub burst: f64,
    /// Whether the trips behind it came after drains far enough apart to trust it.
    pub firm: bool,
}

#[derive(Debug, Clone)]
enum Pace {
    /// Before the first throttle: growing while the run keeps up.
    Ramp {
        rate: f64,
        step_start: Instant,
        step_sent: u64,
    },
    /// The ceiling alone paces.
    Free,
    /// After an overload that did not fit a bucket: hold `from` (under the limit that
    /// tripped) for [`SEEK_HOLD`], then grow by [`SEEK_GROWTH`] each [`RAMP_STEP`], without a
    /// burst, so the next overload comes after a long, steady drain that shows the rate.
    /// Each seek after one that still did not fit grows more slowly: seeks alike end in
    /// drains alike, which cannot tell rate from burst.
    Seek {
        from: f64,
        since: Instant,
        growth: f64,
    },
    /// Holding at `share` of a fitted limit, creeping up from `since`, every `every`.
    Hold {
        limit: f64,
        share: f64,
        since: Instant,
        every: Duration,
    },
}

#[derive(Debug, Clone)]
enum Gate {
    Open,
    Paused {
        /// When the request that tripped the limit was sent.
        trip: Instant,
        /// No probe before this.
        until: Instant,
        /// The outstanding probe, sent at this instant.
        probe: Option<Instant>,
        failures: u32,
    },
}

/// What the gate allows right now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GateState {
    Open,
    /// Paused: nothing may be sent for this long.
    Wait(Duration),
    /// Paused, and one probe may go now.
    Probe,
    /// Paused with a probe in flight: wait for its answer.
    ProbeOut,
}

#[derive(Debug, Clone)]
pub struct AdaptiveRate {
    ceiling: f64,
    origin: Instant,
    base_pause: Duration,
    max_pause: Duration,
    pace: Pace,
    gate: Gate,
    /// Client-side bucket (GCRA): the theoretical arrival time and the burst it allows.
    tat: Instant,
    credit: f64,
    /// The configured batch: the client's burst never exceeds it.
    batch: f64,
    log: VecDeque<Entry>,
    /// Sent at or after this, a request belongs to the current open period.
    released: Instant,
    fit: Option<Fit>,
    /// What probes have shown about the penalty window's length.
    penalty_lo: Option<Duration>,
    penalty_hi: Option<Duration>,
    throttled: bool,
    /// The rate being sent at when the latest trip was sent.
    trip_rate: f64,
    /// Seeks in a row that ended in an overload no bucket fitted.
    seeks: u32,
    /// How long the latest pause kept the run from sending.
    last_pause: Duration,
    /// The fit the latest release left to run.
    pending: Option<FitJob>,
    overloads: u64,
    /// When the latest pause began (the trip noticed).
    paused_at: Instant,
    measured: f64,
    bucket_start: Instant,
    bucket_count: u64,
    /// The latest instant a caller passed.
    seen: Instant,
}

impl AdaptiveRate {
    /// `batch` requests may go at once at the start; `base_pause` is the first probe's wait,
    /// and refused probes wait longer, up to `max_pause`.
    pub fn new(
        ceiling: f64,
        batch: u32,
        base_pause: Duration,
        max_pause: Duration,
        now: Instant,
    ) -> AdaptiveRate {
        let ceiling = ceiling.max(MIN_RATE);
        let start = (f64::from(batch.max(1)) * START_BATCHES).max(MIN_RATE);
        let pace = if start >= ceiling {
            Pace::Free
        } else {
            Pace::Ramp {
                rate: start,
                step_start: now,
                step_sent: 0,
            }
        };
        AdaptiveRate {
            ceiling,
            origin: now,
            base_pause: base_pause.max(Duration::from_millis(1)),
            max_pause: max_pause.max(base_pause),
            pace,
            gate: Gate::Open,
            tat: now,
            credit: f64::from(batch.max(1)),
            batch: f64::from(batch.max(1)),
            log: VecDeque::new(),
            released: now,
            fit: None,
            penalty_lo: None,
            penalty_hi: None,
            throttled: false,
            trip_rate: ceiling,
            seeks: 0,
            last_pause: Duration::ZERO,
            pending: None,
            overloads: 0,
            paused_at: now,
            measured: 0.0,
            bucket_start: now,
            bucket_count: 0,
            seen: now,
        }
    }

    /// The current pacing rate: `None` while the ceiling alone paces, and before the
    /// first throttle (the startup ramp is not a learned rate).
    pub fn rate(&self) -> Option<f64> {
        if !self.throttled {
            return None;
        }
        self.pacing_rate(self.seen)
    }

    fn pacing_rate(&self, now: Instant) -> Option<f64> {
        match &self.pace {
            Pace::Free => None,
            Pace::Ramp { rate, .. } => Some(*rate),
            Pace::Seek {
                from,
                since,
                growth,
            } => {
                let growing = now
                    .saturating_duration_since(*since)
                    .saturating_sub(SEEK_HOLD)
                    .as_secs_f64()
                    / RAMP_STEP.as_secs_f64();
                Some(
                    (from * growth.powf(growing.floor()))
                        .min(self.ceiling)
                        .max(MIN_RATE),
                )
            }
            Pace::Hold {
                limit,
                share,
                since,
                every,
            } => {
                let steps = (now.saturating_duration_since(*since).as_secs_f64()
                    / every.as_secs_f64())
                .floor();
                Some(
                    (limit * (share + REPROBE_STEP * steps))
                        .min(self.ceiling)
                        .max(MIN_RATE),
                )
            }
        }
    }

    /// The rate the window must carry: the pacing rate, else the ceiling.
    pub fn target(&self, now: Instant) -> f64 {
        self.pacing_rate(now).unwrap_or(self.ceiling)
    }

    /// The fitted server bucket, once two overloads have shown it.
    pub fn fit(&self) -> Option<Fit> {
        self.fit
    }

    /// Whether the run may send now.
    pub fn gate(&self, now: Instant) -> GateState {
        match &self.gate {
            Gate::Open => GateState::Open,
            Gate::Paused { probe: Some(_), .. } => GateState::ProbeOut,
            Gate::Paused { until, .. } if *until > now => GateState::Wait(*until - now),
            Gate::Paused { .. } => GateState::Probe,
        }
    }

    /// Overloads so far: each cancels the turns reserved before it.
    pub fn overloads(&self) -> u64 {
        self.overloads
    }

    /// The one probe of a pause is being sent now.
    pub fn probe_sent(&mut self, now: Instant) {
        if let Gate::Paused { probe, .. } = &mut self.gate {
            *probe = Some(now);
        }
        self.count_send(now);
    }

    /// Reserves the next send slot under the pacing rate; returns how long to wait for it.
    pub fn reserve(&mut self, now: Instant) -> Duration {
        self.count_send(now);
        self.ramp(now);
        let Some(rate) = self.pacing_rate(now) else {
            return Duration::ZERO;
        };
        let emission = Duration::from_secs_f64(1.0 / rate);
        let tolerance = emission.mul_f64((self.credit - 1.0).max(0.0));
        // GCRA: a request may go once the theoretical arrival time, less the burst
        // tolerance, has come; an idle sender's credit refills up to the burst.
        let earliest = self.tat.checked_sub(tolerance).unwrap_or(self.origin);
        let at = earliest.max(now);
        self.tat = self.tat.max(at) + emission;
        at - now
    }

    fn count_send(&mut self, now: Instant) {
        self.seen = self.seen.max(now);
        let elapsed = now - self.bucket_start;
        if elapsed >= BUCKET {
            let r = self.bucket_count as f64 / elapsed.as_secs_f64();
            self.measured = if self.measured == 0.0 {
                r
            } else {
                0.8 * r + 0.2 * self.measured
            };
            self.bucket_start = now;
            self.bucket_count = 0;
        }
        self.bucket_count += 1;
    }

    /// Grows the startup rate each step the run kept up with it.
    fn ramp(&mut self, now: Instant) {
        let ceiling = self.ceiling;
        let Pace::Ramp {
            rate,
            step_start,
            step_sent,
        } = &mut self.pace
        else {
            return;
        };
        *step_sent += 1;
        let elapsed = now - *step_start;
        if elapsed < RAMP_STEP {
            return;
        }
        // Kept up: sent at least half of what the rate allowed in the step. A run held back
        // by its window or its work must not bank a rate it never tried.
        if *step_sent as f64 >= 0.5 * *rate * elapsed.as_secs_f64() {
            *rate *= RAMP_GROWTH;
        }
        *step_start = now;
        *step_sent = 0;
        if *rate >= ceiling {
            self.pace = Pace::Free;
        }
    }

    fn micros(&self, t: Instant) -> u64 {
        t.saturating_duration_since(self.origin).as_micros() as u64
    }

    fn record(&mut self, sent: Instant, mark: Mark) {
        if self.log.len() >= MAX_LOG {
            self.log.pop_front();
        }
        let at = self.micros(sent);
        self.log.push_back(Entry { at, mark });
    }

    /// An answer other than 429 to a request sent at `sent`, or a lost connection
    /// (`answered` false): the server most likely took a token for it, but only an answer
    /// proves its penalty window was over.
    pub fn accepted(&mut self, sent: Instant, now: Instant, answered: bool) {
        self.record(sent, Mark::Consumed);
        let Gate::Paused { trip, .. } = self.gate else {
            return;
        };
        if !answered {
            return;
        }
        // Anything sent after the trip and accepted proves the penalty had ended by then
        // (a little after: requests on other connections may overtake each other).
        if sent > trip + REORDER {
            let shown = sent - trip;
            self.penalty_hi = Some(self.penalty_hi.map_or(shown, |p| p.min(shown)));
            self.release(now);
        }
    }

    /// A 429 to a request sent at `sent`. Returns whether it was a trip (the first 429 of
    /// an overload) and how much longer the run now pauses.
    pub fn throttled(
        &mut self,
        sent: Instant,
        now: Instant,
        retry_after: Option<Duration>,
    ) -> (bool, Duration) {
        let before = self.pause_end(now);
        let mut trip = false;
        match self.gate.clone() {
            Gate::Open if sent >= self.released => {
                // A trip: the first 429 of a new overload.
                trip = true;
                self.paused_at = now;
                // Turns reserved before are cancelled (their holders reserve again after
                // the pause), so the run's reservations restart from now.
                self.overloads += 1;
                self.tat = now;
                self.trip_rate = match &self.pace {
                    // The ramp may have doubled since this request went.
                    Pace::Ramp {
                        rate, step_start, ..
                    } if *step_start > sent => rate / RAMP_GROWTH,
                    _ => self.sending_rate(sent),
                };
                self.record(sent, Mark::Trip);
                self.throttled = true;
                let first = match (retry_after, self.penalty_lo, self.penalty_hi) {
                    (Some(ra), _, _) => now + ra,
                    (None, lo, Some(hi)) => {
                        let lo = lo.unwrap_or(Duration::ZERO).min(hi);
                        // Bisect the penalty's length across overloads; once it is known
                        // within a tenth of itself, probe just after its known end.
                        let gap = hi - lo;
                        let wait = if gap <= (hi / 10).max(Duration::from_millis(2)) {
                            hi
                        } else {
                            lo + gap / 2
                        };
                        (sent + wait).max(now)
                    }
                    (None, _, None) => now + self.base_pause,
                };
                // Never before the bucket can have refilled a token.
                let first = first.max(sent + self.refill());
                self.gate = Gate::Paused {
                    trip: sent,
                    until: first,
                    probe: None,
                    failures: 0,
                };
            }
            Gate::Paused {
                trip,
                probe: Some(p),
                failures,
                ..
            } if sent >= p => {
                self.record(sent, Mark::Rejected);
                let shown = sent.saturating_duration_since(trip);
                let refill = self.refill();
                if retry_after.is_none() && shown < refill * 2 {
                    // Refused before the bucket can have refilled much: that shows an empty
                    // bucket, not a penalty window, so what is known of the window stands.
                    self.gate = Gate::Paused {
                        trip,
                        until: now + refill,
                        probe: None,
                        failures: failures + 1,
                    };
                    return (false, self.pause_end(now).saturating_sub(before));
                }
                // The probe was refused: the penalty lasts at least this long.
                self.penalty_lo = Some(self.penalty_lo.map_or(shown, |l| l.max(shown)));
                if self.penalty_hi.is_some_and(|h| h <= shown) {
                    // The window is longer than an earlier overload showed: relearn it.
                    self.penalty_hi = None;
                }
                let failures = failures + 1;
                let wait = match (retry_after, self.penalty_hi) {
                    (Some(ra), _) => ra,
                    // An earlier overload's window ended by then: probe just after it.
                    (None, Some(hi)) => (trip + hi)
                        .saturating_duration_since(now)
                        .max(Duration::from_millis(1)),
                    (None, None) => self
                        .base_pause
                        .mul_f64(PROBE_GROWTH.powi(failures.min(30) as i32))
                        .min(self.max_pause),
                };
                self.gate = Gate::Paused {
                    trip,
                    until: now + wait,
                    probe: None,
                    failures,
                };
            }
            Gate::Paused {
                trip: t,
                until,
                probe,
                failures,
            } if sent < t && sent >= self.released => {
                // Answers overtake each other: this request was sent before the one taken
                // for the trip, so it is the trip (the server refused it first).
                if let Some(e) = self.log.iter_mut().rev().find(|e| e.mark == Mark::Trip) {
                    e.mark = Mark::Rejected;
                }
                self.record(sent, Mark::Trip);
                self.gate = Gate::Paused {
                    trip: sent,
                    until,
                    probe,
                    failures,
                };
            }
            _ => self.record(sent, Mark::Rejected),
        }
        (trip, self.pause_end(now).saturating_sub(before))
    }

    /// How long an emptied server bucket takes to refill one token, by the best estimate
    /// of its rate (the fit, else half of what tripped it).
    fn refill(&self) -> Duration {
        let rate = self
            .fit
            .map_or(self.trip_rate * SEEK_FROM, |f| f.rate)
            .max(MIN_RATE);
        Duration::from_secs_f64(1.0 / rate).min(self.max_pause)
    }

    /// How long from `now` the current pause lasts at least.
    fn pause_end(&self, now: Instant) -> Duration {
        match &self.gate {
            Gate::Paused { until, .. } => until.saturating_duration_since(now),
            Gate::Open => Duration::ZERO,
        }
    }

    /// The penalty is over: open the gate at a rate that cannot be too fast (the last fit,
    /// never above what just tripped, or a seek), and leave a fit of the whole log as a
    /// [`FitJob`] for the caller to run away from its lock and [`apply`](Self::apply).
    fn release(&mut self, now: Instant) {
        self.gate = Gate::Open;
        let sending = self.trip_rate;
        // Not `sent`: everything sent before this moment went out during the overload
        // (the run had not noticed it yet), and its 429s still answer that overload.
        self.released = now;
        // From when the run stopped sending (it noticed the trip a round trip late).
        self.last_pause = now.saturating_duration_since(self.paused_at);
        match self.fit {
            // Until the new fit is in, the last one holds, but never above what tripped.
            Some(old) => {
                self.pace = Pace::Hold {
                    limit: old.rate.min(sending).clamp(MIN_RATE, self.ceiling),
                    share: HOLD,
                    since: now,
                    every: REPROBE_UNSURE,
                };
            }
            // No fit yet: seek the next overload slowly (one overload cannot separate
            // rate from burst; two alike cannot either).
            None => {
                self.credit = 1.0;
                // Tripped at the ceiling, the limit is most likely the ceiling itself (a
                // job told the tenant's rate): seek from just under it, not from half.
                let share = if sending >= AT_CEILING * self.ceiling {
                    SEEK_FROM_CEILING
                } else {
                    SEEK_FROM
                };
                self.pace = Pace::Seek {
                    from: (sending * share).clamp(MIN_RATE, self.ceiling),
                    since: now,
                    growth: 1.0 + (SEEK_GROWTH - 1.0) / f64::from(1u32 << self.seeks.min(4)),
                };
                self.seeks += 1;
            }
        }
        self.spend_refill();
        self.tat = now;
        let trips = self.log.iter().filter(|e| e.mark == Mark::Trip).count();
        self.pending = (trips >= 2).then(|| FitJob {
            log: self.log_sorted(),
            ceiling: self.ceiling,
            overloads: self.overloads,
        });
    }

    /// A fit the last release left to run, if any.
    pub fn take_fit_job(&mut self) -> Option<FitJob> {
        self.pending.take()
    }

    /// A finished [`FitJob`]: hold under the fitted bucket, unless the run has been
    /// throttled again since (that overload's own fit follows).
    pub fn apply(&mut self, done: Fitted, now: Instant) {
        if done.overloads != self.overloads || !matches!(self.gate, Gate::Open) {
            return;
        }
        // The latest overload came at a rate the fit does not explain: the pace set at the
        // release stands.
        let Some(f) = done.fit else {
            return;
        };
        self.fit = Some(f);
        self.seeks = 0;
        let (share, every) = match (self.cheap_overloads(), f.firm) {
            (true, _) => (HOLD_CHEAP, REPROBE_UNSURE),
            (false, true) => (HOLD, REPROBE_EVERY),
            (false, false) => (HOLD, REPROBE_UNSURE),
        };
        self.pace = Pace::Hold {
            limit: f.rate.clamp(MIN_RATE, self.ceiling),
            share,
            since: now,
            every,
        };
        self.spend_refill();
        // Keep what the next fits need: the last few overloads, from a moment the fitted
        // bucket was full (a replay starts from a full bucket).
        if let Some(keep) = done.keep_from {
            while self.log.front().is_some_and(|e| e.at < keep) {
                self.log.pop_front();
            }
        }
    }

    /// The server's bucket refilled while the run waited: spend what of the client's
    /// burst the wait can have refilled (nothing after a 429 without a penalty window).
    fn spend_refill(&mut self) {
        if let Some(f) = self.fit {
            let paused = self.last_pause.as_secs_f64();
            self.credit = (f.burst * CREDIT_SHARE)
                .min(f.rate * paused * CREDIT_SHARE)
                .clamp(1.0, self.batch);
        }
    }

    /// Whether an overload costs next to nothing here: the server has shown it has no
    /// penalty window (an answer came within [`CHEAP_PENALTY`] of a trip), so holding
    /// closer to the limit and probing it often loses less than a safety margin would.
    fn cheap_overloads(&self) -> bool {
        self.penalty_hi.is_some_and(|p| p <= CHEAP_PENALTY)
    }

    /// The rate being sent at: the pacing rate, else the measured rate.
    fn sending_rate(&self, now: Instant) -> f64 {
        let open = now
            .saturating_duration_since(self.bucket_start)
            .as_secs_f64();
        let measured = if self.measured > 0.0 {
            self.measured
        } else if open > 0.05 {
            self.bucket_count as f64 / open
        } else {
            self.ceiling
        };
        self.pacing_rate(now)
            .unwrap_or(measured)
            .clamp(MIN_RATE, self.ceiling)
    }

    fn log_sorted(&self) -> Vec<Entry> {
        let mut v: Vec<Entry> = self.log.iter().copied().collect();
        // Answers arrive out of order; the server saw the requests in sending order.
        v.sort_by_key(|e| e.at);
        v
    }
}

#[cfg(test)]
mod tests {
    use super::fit::*;
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    /// A server bucket as `mock::limits` has it, to generate logs.
    struct Bucket {
        rate: f64,
        burst: f64,
        tokens: f64,
        last: Instant,
        penalty_until: Option<Instant>,
        penalty: Duration,
    }

    impl Bucket {
        fn new(rate: f64, burst: f64, penalty: Duration, now: Instant) -> Bucket {
            Bucket {
                rate,
                burst,
                tokens: burst,
                last: now,
                penalty_until: None,
                penalty,
            }
        }
        fn take(&mut self, now: Instant) -> bool {
            if self.penalty_until.is_some_and(|p| now < p) {
                return false;
            }
            self.tokens =
                (self.tokens + (now - self.last).as_secs_f64() * self.rate).min(self.burst);
            self.last = now;
            if self.tokens >= 1.0 {
                self.tokens -= 1.0;
                true
            } else {
                self.penalty_until = Some(now + self.penalty);
                false
            }
        }
    }

    /// Drives the controller against a bucket with every request answered after
    /// `latency`, `sends` requests in all; returns the controller and the 429 count.
    fn drive(
        rate: f64,
        burst: f64,
        penalty: Duration,
        latency: Duration,
        sends: usize,
    ) -> (AdaptiveRate, usize, Instant) {
        let t0 = Instant::now();
        let mut a = AdaptiveRate::new(1000.0, 20, ms(100), ms(10_000), t0);
        let mut server = Bucket::new(rate, burst, penalty, t0);
        let mut now = t0;
        let mut answers: VecDeque<(Instant, Instant, bool)> = VecDeque::new();
        let (mut sent, mut rejected) = (0, 0);
        let deliver = |a: &mut AdaptiveRate,
                       answers: &mut VecDeque<(Instant, Instant, bool)>,
                       now: Instant,
                       rejected: &mut usize| {
            while answers.front().is_some_and(|(due, _, _)| *due <= now) {
                let (due, at, ok) = answers.pop_front().unwrap();
                if ok {
                    a.accepted(at, due, true);
                    // As the governor does, at the same instant.
                    if let Some(job) = a.take_fit_job() {
                        a.apply(job.run(), due);
                    }
                } else {
                    *rejected += 1;
                    a.throttled(at, due, None);
                }
            }
        };
        while sent < sends {
            deliver(&mut a, &mut answers, now, &mut rejected);
            match a.gate(now) {
                GateState::Open => {
                    let wait = a.reserve(now);
                    if !wait.is_zero() {
                        now += wait;
                        // As the governor does: a pause that began meanwhile holds it.
                        deliver(&mut a, &mut answers, now, &mut rejected);
                        if a.gate(now) != GateState::Open {
                            continue;
                        }
                    }
                }
                GateState::Probe => a.probe_sent(now),
                GateState::Wait(d) => {
                    now += d.min(ms(1));
                    continue;
                }
                GateState::ProbeOut => {
                    now += ms(1);
                    continue;
                }
            }
            let ok = server.take(now);
            answers.push_back((now + latency, now, ok));
            sent += 1;
            now += Duration::from_micros(100);
        }
        (a, rejected, now)
    }

    #[tokio::test(start_paused = true)]
    async fn two_overloads_fit_the_servers_bucket() {
        let (a, _, _) = drive(100.0, 20.0, ms(500), ms(10), 600);
        let f = a.fit().expect("fitted after two overloads");
        assert!((f.rate - 100.0).abs() < 3.0, "{f:?}");
        assert!((f.burst - 20.0).abs() < 3.0, "{f:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn the_run_settles_under_the_limit_with_few_429s() {
        let (a, rejected, end) = drive(100.0, 20.0, ms(500), ms(10), 2_000);
        let r = a.rate().unwrap();
        // Held at 98 % of the fit and creeping up by 1 % every 5 s.
        assert!((95.0..102.0).contains(&r), "holds near the limit: {r}");
        assert!(rejected < 40, "{rejected} 429s for 2,000 requests");
        // 2,000 requests at 100/s take 20 s at best (the first 20 free).
        let secs = (end - a.origin).as_secs_f64();
        assert!(secs < 20.0 * 1.12, "took {secs:.1}s");
    }

    #[tokio::test(start_paused = true)]
    async fn a_server_without_penalty_releases_on_the_first_accepted_answer() {
        let t0 = Instant::now();
        let mut a = AdaptiveRate::new(1000.0, 20, ms(100), ms(10_000), t0);
        a.throttled(t0, t0 + ms(5), None);
        assert_eq!(a.gate(t0 + ms(5)), GateState::Wait(ms(100)));
        a.accepted(t0 + ms(3), t0 + ms(6), true);
        assert_eq!(a.gate(t0 + ms(6)), GateState::Open);
    }

    #[tokio::test(start_paused = true)]
    async fn one_probe_at_a_time_and_refused_probes_wait_longer() {
        let t0 = Instant::now();
        let mut a = AdaptiveRate::new(1000.0, 20, ms(100), ms(10_000), t0);
        a.throttled(t0, t0, Some(Duration::from_secs(2)));
        assert_eq!(a.gate(t0), GateState::Wait(Duration::from_secs(2)));
        let t = t0 + Duration::from_secs(2);
        assert_eq!(a.gate(t), GateState::Probe);
        a.probe_sent(t);
        assert_eq!(a.gate(t), GateState::ProbeOut);
        // A late 429 to something sent before the probe changes nothing.
        a.throttled(t0 + ms(1), t + ms(1), None);
        assert_eq!(a.gate(t + ms(1)), GateState::ProbeOut);
        a.throttled(t, t + ms(10), None);
        assert_eq!(a.gate(t + ms(10)), GateState::Wait(ms(125)));
    }

    #[tokio::test(start_paused = true)]
    async fn startup_ramps_only_while_the_run_keeps_up() {
        let t0 = Instant::now();
        let mut a = AdaptiveRate::new(1000.0, 20, ms(100), ms(10_000), t0);
        // One request every 50 ms is far below 100/s: the ramp must not double.
        for i in 0..10 {
            a.reserve(t0 + ms(50 * i));
        }
        assert_eq!(a.pacing_rate(t0 + ms(500)), Some(100.0));
    }

    #[test]
    fn fit_needs_two_trips() {
        let log = [
            Entry {
                at: 0,
                mark: Mark::Consumed,
            },
            Entry {
                at: 10,
                mark: Mark::Trip,
            },
        ];
        assert_eq!(fit(&log, 1000.0), None);
    }
}
