//! Fitting a token bucket `(rate, burst)` to the send log: replaying it against candidate
//! buckets, the least-squares search, and the [`FitJob`] a release hands to the governor so
//! the search runs away from its lock. When to fit and what to do with the result is
//! [`super::AdaptiveRate`]'s.

use super::{Entry, FIRM_SPREAD, Fit, KEEP_TRIPS, MIN_RATE, MIN_SPREAD, Mark};

/// A fit of the send log, taken at a release to run without the governor's lock (it
/// replays the log thousands of times: milliseconds per thousand entries).
#[derive(Debug, Clone)]
pub struct FitJob {
    pub(super) log: Vec<Entry>,
    pub(super) ceiling: f64,
    pub(super) overloads: u64,
}

/// What a [`FitJob`] found, for [`AdaptiveRate::apply`].
#[derive(Debug, Clone)]
pub struct Fitted {
    pub(super) fit: Option<Fit>,
    /// Taken after this many overloads; stale once there are more.
    pub(super) overloads: u64,
    /// Log entries before this can go.
    pub(super) keep_from: Option<u64>,
}

impl FitJob {
    pub fn run(self) -> Fitted {
        let fit = fit(&self.log, self.ceiling);
        let keep_from = fit
            .and_then(|f| full_before(&self.log, f, KEEP_TRIPS))
            .map(|i| self.log[i].at);
        Fitted {
            fit,
            overloads: self.overloads,
            keep_from,
        }
    }
}

/// Token levels just before each trip when the log is replayed against a bucket of `rate`
/// per second and `burst` tokens, full at the log's start, and how far the accepted
/// requests overdrew it (squared tokens below zero after a take: a bucket that could not
/// have accepted them). Unclamped below zero, so the levels only grow with `rate` and
/// `burst`.
pub(super) fn replay(log: &[Entry], rate: f64, burst: f64) -> (Vec<f64>, f64) {
    let per_micro = rate / 1e6;
    let mut tokens = burst;
    let mut last = log.first().map_or(0, |e| e.at);
    let mut at_trips = Vec::new();
    let mut overdrawn = 0.0;
    for e in log {
        tokens = (tokens + (e.at - last) as f64 * per_micro).min(burst);
        last = e.at;
        match e.mark {
            Mark::Consumed => {
                tokens -= 1.0;
                // A millisecond of timing noise is a tenth of a token at 100/s.
                let short = -tokens - 0.25;
                if short > 0.0 {
                    overdrawn += short * short;
                }
            }
            Mark::Trip => at_trips.push(tokens),
            Mark::Rejected => {}
        }
    }
    (at_trips, overdrawn)
}

/// A trip found between zero and one token; aim for the middle.
const AT_TRIP: f64 = 0.5;
/// A fit whose trips miss [`AT_TRIP`] by more than this many tokens (root mean square)
/// does not describe the server (another client shares the bucket, or it is no bucket).
const MAX_MISS: f64 = 1.5;

/// How badly a bucket explains the log: every trip's distance from [`AT_TRIP`] tokens,
/// squared, plus the overdraft of requests it could not have accepted.
fn cost(log: &[Entry], rate: f64, burst: f64) -> f64 {
    let (trips, overdrawn) = replay(log, rate, burst);
    trips
        .iter()
        .map(|l| (l - AT_TRIP) * (l - AT_TRIP))
        .sum::<f64>()
        + overdrawn
}

/// Golden-section search for the minimum of `f` over `[lo, hi]`.
fn minimize(mut lo: f64, mut hi: f64, iterations: u32, f: impl Fn(f64) -> f64) -> (f64, f64) {
    const G: f64 = 0.618_033_988_749_895;
    let (mut a, mut b) = (hi - G * (hi - lo), lo + G * (hi - lo));
    let (mut fa, mut fb) = (f(a), f(b));
    for _ in 0..iterations {
        if fa <= fb {
            hi = b;
            (b, fb) = (a, fa);
            a = hi - G * (hi - lo);
            fa = f(a);
        } else {
            lo = a;
            (a, fa) = (b, fb);
            b = lo + G * (hi - lo);
            fb = f(b);
        }
    }
    if fa <= fb { (a, fa) } else { (b, fb) }
}

/// Fits `(rate, burst)` to every trip in the log (least squares of their levels against
/// [`AT_TRIP`], the accepted requests never overdrawing the bucket). `None` with fewer
/// than two trips, when the trips came after drains too alike to tell rate from burst, or
/// when no bucket explains them.
pub(super) fn fit(log: &[Entry], ceiling: f64) -> Option<Fit> {
    let last_trip = log.iter().rposition(|e| e.mark == Mark::Trip)?;
    let upto = &log[..=last_trip];
    let trips = upto.iter().filter(|e| e.mark == Mark::Trip).count();
    if trips < 2 {
        return None;
    }
    let consumed = upto.iter().filter(|e| e.mark == Mark::Consumed).count() as f64;
    // Rates are searched on a log scale: a limit may be 2/s or 2,000/s.
    let (r_lo, r_hi) = (MIN_RATE.ln(), (ceiling * 4.0).ln());
    let best_rate = |burst: f64| minimize(r_lo, r_hi, 48, |lr| cost(upto, lr.exp(), burst));
    // The cost is not convex in the burst (a larger bucket may not refill during a penalty
    // window, so two buckets can explain two trips): scan, then refine the best.
    let top = consumed.max(2.0).ln();
    let grid: Vec<f64> = (0..=40).map(|k| top * f64::from(k) / 40.0).collect();
    let scored: Vec<(f64, f64)> = grid.iter().map(|&lb| (lb, best_rate(lb.exp()).1)).collect();
    // Refine every local minimum; of those that explain the trips about equally well,
    // keep the fastest: guessing too fast costs one more overload, which refits, while
    // guessing too slow holds the run under the limit until it re-probes.
    let mut found: Vec<(f64, f64, f64)> = Vec::new();
    for k in 0..scored.len() {
        let c = scored[k].1;
        let left = k.checked_sub(1).map_or(f64::INFINITY, |j| scored[j].1);
        let right = scored.get(k + 1).map_or(f64::INFINITY, |n| n.1);
        if c <= left && c <= right {
            let (lo, hi) = (grid[k.saturating_sub(1)], grid[(k + 1).min(grid.len() - 1)]);
            let (lb, c) = minimize(lo, hi, 30, |lb| best_rate(lb.exp()).1);
            let burst = lb.exp();
            found.push((best_rate(burst).0.exp(), burst, c));
        }
    }
    let least = found.iter().map(|f| f.2).fold(f64::INFINITY, f64::min);
    let &(rate, burst, c) = found
        .iter()
        .filter(|f| f.2 <= least + 1.0)
        .max_by(|a, b| a.0.total_cmp(&b.0))?;
    if c > MAX_MISS * MAX_MISS * trips as f64 || rate >= ceiling * 3.9 {
        return None;
    }
    // How long the bucket was draining before each trip (a level's growth per unit of
    // rate): if all trips came after drains of about the same length, the fit cannot tell
    // a faster rate from a smaller burst.
    let (a, b) = (
        replay(upto, rate, burst).0,
        replay(upto, rate + 1.0, burst).0,
    );
    let drained: Vec<f64> = a.iter().zip(&b).map(|(x, y)| y - x).collect();
    let spread = drained.iter().copied().fold(f64::MIN, f64::max)
        - drained.iter().copied().fold(f64::MAX, f64::min);
    (spread >= MIN_SPREAD).then_some(Fit {
        rate,
        burst,
        firm: spread >= FIRM_SPREAD,
    })
}

/// The index of the latest entry before the `keep`-th last trip at which `f`'s bucket was
/// full: the log can start there and still be replayed from a full bucket.
pub(super) fn full_before(log: &[Entry], f: Fit, keep: usize) -> Option<usize> {
    let trips: Vec<usize> = log
        .iter()
        .enumerate()
        .filter(|(_, e)| e.mark == Mark::Trip)
        .map(|(i, _)| i)
        .collect();
    let stop = *trips.get(trips.len().checked_sub(keep)?)?;
    let per_micro = f.rate / 1e6;
    let mut tokens = f.burst;
    let mut last = log.first()?.at;
    let mut found = None;
    for (i, e) in log[..stop].iter().enumerate() {
        tokens = (tokens + (e.at - last) as f64 * per_micro).min(f.burst);
        last = e.at;
        if tokens >= f.burst - 1e-9 {
            found = Some(i);
        }
        if e.mark == Mark::Consumed {
            tokens -= 1.0;
        }
    }
    found
}
