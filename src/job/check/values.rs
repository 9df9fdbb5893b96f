//! Scalar values with units: rates, durations and amounts (counts or percentages).
//!
//! Owns only the parsing and the accepted ranges, returning `None` for anything else; the
//! shape pass turns a `None` into "must be a rate" (with the help text), and the other
//! passes use the parsed values. Public (re-exported from `job`) so that anything reading
//! a job's notation parses it the same way.

use std::time::Duration;

use crate::job::model::Amount;
use crate::job::node::{Kind, Node};

/// `20/s`, `600/m`, `36000/h` or a bare number per second.
pub fn parse_rate(v: &Node) -> Option<f64> {
    let rate = match &v.kind {
        Kind::Int(i) => *i as f64,
        Kind::Float(f) => *f,
        Kind::Str(s) => {
            let s = s.trim();
            let (num, unit) = s.split_once('/').unwrap_or((s, "s"));
            let n: f64 = num.trim().parse().ok()?;
            let per = match unit.trim() {
                "s" | "sec" | "second" => 1.0,
                "m" | "min" | "minute" => 60.0,
                "h" | "hour" => 3600.0,
                _ => return None,
            };
            n / per
        }
        _ => return None,
    };
    (rate.is_finite() && (0.01..=10_000.0).contains(&rate)).then_some(rate)
}

/// `500ms`, `30s`, `50m`, `1h 30m`, or whole seconds; at most 30 days.
pub fn parse_duration(v: &Node) -> Option<Duration> {
    match &v.kind {
        Kind::Int(i) if *i >= 0 => Some(Duration::from_secs(*i as u64)),
        Kind::Str(s) => humantime::parse_duration(s.trim()).ok(),
        _ => None,
    }
    .filter(|d| *d <= Duration::from_secs(30 * 24 * 3600))
}

/// `5` or `5%`.
pub fn parse_amount(v: &Node) -> Option<Amount> {
    match &v.kind {
        Kind::Int(i) if *i >= 0 => Some(Amount::Count(*i as u64)),
        Kind::Str(s) => {
            let p: f64 = s.trim().strip_suffix('%')?.trim().parse().ok()?;
            (p.is_finite() && (0.0..=100.0).contains(&p)).then_some(Amount::Percent(p))
        }
        _ => None,
    }
}
