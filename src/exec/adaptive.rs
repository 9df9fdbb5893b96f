//! The adaptive send rate: a token-bucket rate below the governor's ceiling that learns the
//! level at which the API starts answering 429, holds just below it and probes above it only
//! rarely, so a run settles under a limit nobody told it instead of cycling through 429s.
//!
//! The shape follows the AWS SDKs' adaptive retry mode (botocore `adaptive.py` and
//! `throttling.py`) and TCP CUBIC, tuned for servers that punish a 429 with a penalty window
//! (every request refused for a while): there, each overload costs the whole window, so the
//! controller must overload rarely. The controller stays out of the way until the first
//! throttle. One overload *event* (the governor calls [`AdaptiveRate::throttled`] once per
//! event, not once per 429) records the rate actually being sent as the `level` and cuts the
//! rate to `BETA` times it; once the event is over ([`AdaptiveRate::resumed`]) the rate grows
//! back along a cubic that is concave up to `HOLD` times the level in about `K` seconds,
//! stays flat there, and only then probes above. Every event whose level repeats the last
//! one within `SAME_LEVEL` lengthens the plateau, so a limit that has been confirmed is
//! probed ever more rarely. Growth is capped at twice the measured send rate, so an idle run
//! cannot bank a rate it never tested. Pure arithmetic over caller-supplied instants: the
//! governor owns the clock.

use std::time::Duration;

use tokio::time::Instant;

/// Multiplicative decrease on an overload event (AWS: 0.7). The level is the rate that was
/// being sent when the API refused, which is at most a little above its limit, so a small cut
/// is enough to get under it.
const BETA: f64 = 0.9;
/// The plateau the rate returns to, as a share of the level: just under where 429s began.
const HOLD: f64 = 0.97;
/// Seconds from the cut back up to the plateau.
const K: f64 = 2.0;
/// Seconds on the plateau after an event that did not confirm the last level, before
/// probing above it; confirmations stretch it.
const PLATEAU: f64 = 1.5;
/// Probing above the plateau grows the rate by this share of the level per second: slow,
/// so the server's bucket drains slowly and the next event's level is close to its limit.
const PROBE: f64 = 0.015;
/// After this many seconds of probing the convex term has added the whole level again.
const PROBE_CUBE: f64 = 8.0;
/// The accepted rate over this long before an event bounds its level: while the server
/// refused nothing it took all that was sent, and once its bucket ran dry it took only its
/// limit, so over a few seconds this is close to the limit from above.
const GOODPUT_SPAN: usize = 8;
/// After a first overload the limit is unknown: the rate restarts from what the server let
/// through (as if that were this many seconds' worth of its limit)…
const STARTUP_GUESS: f64 = 0.25;
/// …and doubles every this many seconds until the next overload, whose level is then the
/// accepted rate over the last second.
const DOUBLING: f64 = 0.35;
/// The slow start begins no lower than this (unless the send rate itself was lower).
const STARTUP_FLOOR: f64 = 10.0;
/// Two events whose levels differ by less than this share confirm the level…
const SAME_LEVEL: f64 = 0.08;
/// …and each confirmation stretches the plateau by this factor, up to `MAX_STRETCH`.
const STRETCH: f64 = 1.6;
const MAX_STRETCH: f64 = 6.0;
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
    /// The send rate when the last overload began.
    level: f64,
    /// The plateau: `HOLD * level`.
    w_max: f64,
    /// The rate right after the last cut.
    start: f64,
    /// Seconds from the cut to the plateau.
    k: f64,
    /// Where the cubic starts: the end of the last overload event.
    last_throttle: Instant,
    /// Growth is paused while an overload event is open (between `throttled` and `resumed`).
    in_event: bool,
    /// How far the plateau is stretched: grows while events confirm the same level.
    stretch: f64,
    /// Accepted answers in the last `GOODPUT_SPAN` closed buckets, oldest first, with the
    /// length of each.
    recent_ok: std::collections::VecDeque<(u64, f64)>,
    /// Between a first overload and the next: the rate doubles from `slow_start_from`.
    slow_start: bool,
    slow_start_from: f64,
    first_send: Option<Instant>,
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
            level: ceiling,
            w_max: ceiling,
            start: ceiling,
            k: 0.0,
            last_throttle: now,
            in_event: false,
            stretch: 1.0,
            recent_ok: std::collections::VecDeque::new(),
            slow_start: false,
            slow_start_from: 0.0,
            first_send: None,
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
        if self.first_send.is_none() {
            // Rates are per second of sending: time before the first request (planning,
            // opening the journal) is not time the server was asked to work.
            self.first_send = Some(now);
            self.bucket_start = now;
            self.ok_start = now;
        }
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
            if self.recent_ok.len() == GOODPUT_SPAN {
                self.recent_ok.pop_front();
            }
            self.recent_ok
                .push_back((self.bucket_ok, elapsed.as_secs_f64()));
            self.ok_start = now;
            self.bucket_ok = 0;
        }
    }

    /// An overload event began (the governor calls this once per event, however many 429s
    /// it brings): remember the rate being sent as the level and cut below it.
    pub fn throttled(&mut self, now: Instant) {
        let last_closed_ok = self.recent_ok.back().copied();
        // Before the first bucket closes there is no measurement; assume the ceiling rather
        // than zero, or one early 429 would drop the run to the minimum rate.
        // Cut from what the server accepted when that was measured: at ten times the limit,
        // a cut from the send rate takes many events to converge; one from the accepted rate
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
            // A first overload usually ends a burst that began inside the open bucket, after
            // slower reads: the open bucket's rate, when higher, is what overloaded.
            (true, _, _) if self.rate.is_none() => {
                let open = (now - self.bucket_start).as_secs_f64();
                let burst = if open > 0.02 {
                    self.bucket_count as f64 / open
                } else {
                    0.0
                };
                self.measured.max(burst)
            }
            (true, _, _) => self.measured,
            (false, true, true) => sent.min(accepted.max(MIN_RATE)),
            (false, true, false) => sent,
            (false, false, _) => self.ceiling,
        };
        let mut sending = match self.rate {
            Some(r) => r.min(measured),
            None => measured.min(self.ceiling),
        }
        .max(MIN_RATE);
        // Over the seconds before the event, the server took at most about its limit.
        let (ok, span) = self
            .recent_ok
            .iter()
            .fold((0u64, 0.0), |(n, t), &(c, d)| (n + c, t + d));
        // Whether the level is what the server took rather than what was sent: then it is
        // already at the limit, and holding just under it needs no deeper cut.
        let mut took = false;
        if self.slow_start {
            // The rate was doubling: the send rate measured lags far behind, and the
            // seconds before were mostly below the limit. The last full bucket, when the
            // server was already refusing some, shows what it takes.
            let open = (now - self.ok_start).as_secs_f64();
            let last = self
                .recent_ok
                .back()
                .map(|&(c, d)| c as f64 / d)
                .unwrap_or(0.0);
            let open_rate = if open >= 0.2 {
                self.bucket_ok as f64 / open
            } else {
                0.0
            };
            let seen = last.max(open_rate);
            if seen > 0.0 {
                sending = seen.max(MIN_RATE);
                took = true;
            }
        } else if span >= 0.99 && self.rate.is_some() && ok as f64 / span < sending {
            sending = (ok as f64 / span).max(MIN_RATE);
            took = true;
        }
        let first = self.rate.is_none();
        let same = self.rate.is_some() && (sending - self.level).abs() <= SAME_LEVEL * self.level;
        self.stretch = if same {
            (self.stretch * STRETCH).min(MAX_STRETCH)
        } else {
            1.0
        };
        self.level = sending;
        self.w_max = HOLD * sending;
        self.k = K;
        self.last_throttle = now;
        self.in_event = true;
        self.recent_ok.clear();
        // Slots reserved at the old rate must not outlive the cut.
        self.next_slot = now;
        self.start = if took { self.w_max } else { BETA * sending };
        self.rate = Some(self.start.max(MIN_RATE));
        self.slow_start = first;
        if first {
            // Nothing says where the limit is yet: restart from what the server took, read
            // as a fraction of a second of its limit, and climb fast until it refuses again.
            // Accepted in the open bucket and the one before it, over their span.
            let open = (now - self.ok_start).as_secs_f64();
            let (last_ok, last_span) = last_closed_ok.unwrap_or((0, 0.0));
            let took = (self.bucket_ok + last_ok) as f64 / (open + last_span).max(STARTUP_GUESS);
            // A server that refused at once says nothing about its limit; restart no lower
            // than a slow but workable rate (Esper's own tools run near 27 req/s).
            let guess = took.max(STARTUP_FLOOR).min(sending).max(MIN_RATE);
            self.slow_start_from = guess;
            self.rate = Some(guess);
        }
    }

    /// The overload event is over (a request sent after it was accepted): regrowth starts
    /// now, so time spent paused does not count as time at the cut rate.
    pub fn resumed(&mut self, now: Instant) {
        if self.in_event {
            self.in_event = false;
            self.last_throttle = now;
        }
    }

    /// The level at which the API last started refusing, once it has.
    pub fn level(&self) -> Option<f64> {
        self.rate.map(|_| self.level)
    }

    /// The rate `t` seconds after the last event: from `BETA * level` up a concave curve to
    /// `w_max` at `k`, flat there for the (stretched) plateau, then a slow linear probe.
    fn cubic(&self, t: f64) -> f64 {
        let start = self.start;
        if t < self.k {
            let left = 1.0 - t / self.k;
            return self.w_max - (self.w_max - start) * left.powi(3);
        }
        let probing = t - self.k - PLATEAU * self.stretch;
        if probing <= 0.0 {
            return self.w_max;
        }
        // Linear at first, then convex, so a level learned too low is left within seconds.
        self.w_max + self.level * (PROBE * probing + (probing / PROBE_CUBE).powi(3))
    }

    /// An accepted request: grow along the cubic.
    pub fn accepted(&mut self, now: Instant) {
        self.roll_ok(now);
        self.bucket_ok += 1;
        if self.rate.is_none() || self.in_event {
            return;
        }
        let t = (now - self.last_throttle).as_secs_f64();
        let cubic = if self.slow_start {
            self.slow_start_from * 2f64.powf(t / DOUBLING)
        } else {
            self.cubic(t)
        };
        // Growth is capped at twice what was actually sent, but never below the rate the
        // last throttle left, and not at all before a first measurement exists (else one
        // early 429 would pin the run at the minimum rate).
        let cap = if self.slow_start {
            // The doubling is the test, but it may not run further ahead of what the server
            // is seen to take than one doubling: the server's bucket hides an overshoot
            // until it runs dry, and the level read then must still be near the limit.
            2.0 * self.goodput.max(self.slow_start_from)
        } else if self.measured > 0.0 {
            (2.0 * self.measured).max(self.start)
        } else {
            self.ceiling
        };
        self.rate = Some(cubic.min(cap).min(self.ceiling).max(MIN_RATE));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Sends at `rate` from `from` for `secs` seconds, honouring waits; the server accepts
    /// `accept` of every request (1.0: all).
    fn traffic(a: &mut AdaptiveRate, from: Instant, secs: f64, rate: f64, accept: f64) -> Instant {
        let step = Duration::from_secs_f64(1.0 / rate);
        let mut t = from;
        let mut credit = 0.0;
        while t < from + Duration::from_secs_f64(secs) {
            t += a.reserve(t);
            credit += accept;
            if credit >= 1.0 {
                credit -= 1.0;
                a.accepted(t);
            }
            t += step;
        }
        t
    }

    /// An event and its end one pause later.
    fn overload(a: &mut AdaptiveRate, at: Instant, pause: Duration) -> Instant {
        a.throttled(at);
        a.resumed(at + pause);
        at + pause
    }

    #[tokio::test(start_paused = true)]
    async fn off_until_throttled_then_a_slow_start_from_what_the_server_took() {
        let t0 = Instant::now();
        let mut a = AdaptiveRate::new(1000.0, t0);
        let at = traffic(&mut a, t0, 2.0, 200.0, 1.0);
        assert_eq!(a.rate(), None, "no pacing before a throttle");
        let t = overload(&mut a, at, Duration::from_millis(500));
        let guess = a.rate().unwrap();
        assert!(guess > 0.0 && guess <= 200.0, "{guess}");
        // While nothing is refused the rate doubles about every DOUBLING seconds, but no
        // further than one doubling ahead of what the server is seen to take.
        let t = traffic(&mut a, t, 1.0, 1000.0, 1.0);
        assert!(
            a.rate().unwrap() > 1.5 * guess,
            "{:?} from {guess}",
            a.rate()
        );
        assert!(a.rate().unwrap() <= 2.0 * a.goodput.max(guess) + 1.0);
        // The next overload ends the slow start at what the server took in the last bucket.
        let t = traffic(&mut a, t, 1.0, 400.0, 0.25);
        a.throttled(t);
        let level = a.level().unwrap();
        assert!(
            (level - 100.0).abs() < 15.0,
            "the server took 100/s: {level}"
        );
        assert!(!a.slow_start);
        assert!(
            (a.rate().unwrap() - HOLD * level).abs() < 1.0,
            "a level the server took needs no deeper cut: {:?}",
            a.rate()
        );
    }

    #[tokio::test(start_paused = true)]
    async fn an_overload_cuts_once_holds_under_the_level_and_probes_slowly() {
        let t0 = Instant::now();
        let mut a = AdaptiveRate::new(1000.0, t0);
        let at = traffic(&mut a, t0, 1.0, 200.0, 1.0);
        let t = overload(&mut a, at, Duration::from_millis(100));
        a.slow_start = false;
        a.rate = Some(100.0);
        // Sending 100/s, all accepted, then refused: the level is the send rate.
        let t = traffic(&mut a, t, 3.0, 100.0, 1.0);
        a.throttled(t);
        let level = a.level().unwrap();
        assert!((level - 100.0).abs() < 5.0, "{level}");
        let cut = a.rate().unwrap();
        assert!((cut - BETA * level).abs() < 1.0, "{cut}");
        // Accepted answers while the event is open do not grow the rate.
        a.accepted(t + Duration::from_millis(50));
        assert_eq!(a.rate().unwrap(), cut);
        let t = t + Duration::from_millis(500);
        a.resumed(t);
        // Back on the plateau after K seconds, and still there during PLATEAU.
        let t = traffic(&mut a, t, K + PLATEAU * 0.9, 1000.0, 1.0);
        let held = a.rate().unwrap();
        assert!((held - HOLD * level).abs() < 1.0, "{held}");
        // Then it probes above the level, slowly at first.
        traffic(&mut a, t, PLATEAU * 0.1 + 2.0, 1000.0, 1.0);
        let probe = a.rate().unwrap();
        assert!(probe > held && probe < 1.1 * level, "{probe}");
    }

    #[tokio::test(start_paused = true)]
    async fn the_level_is_what_the_server_took_when_that_was_less_than_was_sent() {
        let t0 = Instant::now();
        let mut a = AdaptiveRate::new(1000.0, t0);
        let at = traffic(&mut a, t0, 1.0, 200.0, 1.0);
        let t = overload(&mut a, at, Duration::from_millis(100));
        a.slow_start = false;
        a.rate = Some(150.0);
        // Sending 150/s for 3 s of which the server took 100/s.
        let t = traffic(&mut a, t, 3.0, 150.0, 2.0 / 3.0);
        a.throttled(t);
        let level = a.level().unwrap();
        assert!((level - 100.0).abs() < 15.0, "{level}");
        assert!((a.rate().unwrap() - HOLD * level).abs() < 1.0);
    }

    #[tokio::test(start_paused = true)]
    async fn a_confirmed_level_is_probed_ever_more_rarely() {
        let t0 = Instant::now();
        let mut a = AdaptiveRate::new(1000.0, t0);
        let at = traffic(&mut a, t0, 1.0, 200.0, 1.0);
        let mut t = overload(&mut a, at, Duration::from_millis(100));
        a.slow_start = false;
        a.rate = Some(100.0);
        t = traffic(&mut a, t, 2.0, 100.0, 1.0);
        let mut stretches = Vec::new();
        for _ in 0..4 {
            t = overload(&mut a, t, Duration::from_millis(100));
            stretches.push(a.stretch);
            a.rate = Some(100.0);
            t = traffic(&mut a, t, 2.0, 100.0, 1.0);
        }
        // The first of these still compares with the startup's level.
        assert!(
            stretches[1..].windows(2).all(|w| w[1] > w[0]),
            "{stretches:?}"
        );
        assert!(*stretches.last().unwrap() <= MAX_STRETCH);
    }

    #[tokio::test(start_paused = true)]
    async fn an_early_throttle_cuts_from_the_ceiling() {
        let t0 = Instant::now();
        let mut a = AdaptiveRate::new(100.0, t0);
        a.throttled(t0);
        assert!(a.rate().unwrap() > 0.0 && a.rate().unwrap() <= 100.0);
        // Successes before any measurement must not collapse the rate.
        let r = a.rate().unwrap();
        a.resumed(t0);
        a.accepted(t0 + Duration::from_millis(10));
        assert!(a.rate().unwrap() >= r, "{:?}", a.rate());
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
