//! Scalar values with a notation of their own: rates, durations, amounts (counts or
//! percentages), times of day and date-times.
//!
//! Owns only the parsing and the accepted ranges, returning `None` (or a [`DurationError`])
//! for anything else; the shape pass turns that into "must be a rate" with the help text,
//! and the other passes use the parsed values. The duration grammar is written once here,
//! as a table of units: the parser walks it and [`duration_pattern`] turns it into the
//! JSON Schema's regular expression, so editors and `validate` accept the same strings.
//! Public (re-exported from `job`) so that anything reading a job's notation parses it the
//! same way.

use std::ops::RangeInclusive;
use std::time::Duration;

use crate::job::model::Amount;
use crate::job::node::{Kind, Node};

/// `limits.rate` in requests per second.
pub const RATE_RANGE: RangeInclusive<f64> = 0.01..=10_000.0;
/// `limits.batch` and `limits.max_in_flight`.
pub const IN_FLIGHT_RANGE: RangeInclusive<u32> = 1..=10_000;
/// `retry.attempts`, the first included.
pub const ATTEMPTS_RANGE: RangeInclusive<u32> = 1..=100;
/// The longest job name: it names the run directory and the lock file.
pub const MAX_NAME_CHARS: usize = 128;

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
    (rate.is_finite() && RATE_RANGE.contains(&rate)).then_some(rate)
}

/// The longest duration a job may name: a job that runs longer is a mistake.
pub const MAX_DURATION: Duration = Duration::from_secs(30 * 24 * 3600);

/// The units of durations, each with its spellings and its length in milliseconds.
/// Lower case only, so `5M` (months? minutes?) is refused rather than guessed.
pub const DURATION_UNITS: &[(&[&str], u64)] = &[
    (&["ms", "millisecond", "milliseconds"], 1),
    (&["s", "sec", "secs", "second", "seconds"], 1_000),
    (&["m", "min", "mins", "minute", "minutes"], 60_000),
    (&["h", "hr", "hrs", "hour", "hours"], 3_600_000),
    (&["d", "day", "days"], 86_400_000),
];

/// Why a duration string was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DurationError {
    /// Not in the grammar at all.
    Syntax,
    /// Well formed but longer than [`MAX_DURATION`].
    TooLong,
}

/// A duration as written in a job: whole seconds (`90`), or one or more parts of a whole
/// number and a unit (`500ms`, `30s`, `10 minutes`, `1h 30m`, `1h30m`). Spaces may
/// separate a number from its unit and one part from the next, nothing else; no leading
/// or trailing spaces.
pub fn parse_duration_str(s: &str) -> Result<Duration, DurationError> {
    let b = s.as_bytes();
    let digits = |at: usize| b[at..].iter().take_while(|c| c.is_ascii_digit()).count();
    let spaces = |at: usize| b[at..].iter().take_while(|c| **c == b' ').count();
    let n = digits(0);
    if n == 0 {
        return Err(DurationError::Syntax);
    }
    if n == b.len() {
        return whole(&s[..n], 1_000);
    }
    let mut total: Option<u128> = Some(0);
    let mut at = 0;
    while at < b.len() {
        let n = digits(at);
        if n == 0 {
            return Err(DurationError::Syntax);
        }
        let number = &s[at..at + n];
        at += n;
        at += spaces(at);
        let letters = b[at..]
            .iter()
            .take_while(|c| c.is_ascii_alphabetic())
            .count();
        let unit = &s[at..at + letters];
        let ms = DURATION_UNITS
            .iter()
            .find(|(names, _)| names.contains(&unit))
            .map(|(_, ms)| *ms)
            .ok_or(DurationError::Syntax)?;
        at += letters;
        let gap = spaces(at);
        // Spaces only between parts: after them, another number must follow.
        if gap > 0 && digits(at + gap) == 0 {
            return Err(DurationError::Syntax);
        }
        at += gap;
        let part = number
            .parse::<u128>()
            .ok()
            .and_then(|v| v.checked_mul(ms as u128));
        total = total.zip(part).and_then(|(t, p)| t.checked_add(p));
    }
    match total {
        Some(ms) if ms <= MAX_DURATION.as_millis() => Ok(Duration::from_millis(ms as u64)),
        // A number too long for any integer type is well formed, just far too long.
        _ => Err(DurationError::TooLong),
    }
}

fn whole(number: &str, ms: u128) -> Result<Duration, DurationError> {
    match number.parse::<u128>().ok().and_then(|v| v.checked_mul(ms)) {
        Some(t) if t <= MAX_DURATION.as_millis() => Ok(Duration::from_millis(t as u64)),
        _ => Err(DurationError::TooLong),
    }
}

/// The grammar of [`parse_duration_str`] as a regular expression (JSON Schema dialect; no
/// look-around), built from [`DURATION_UNITS`]. It cannot count, so it also matches
/// well-formed durations longer than [`MAX_DURATION`].
pub fn duration_pattern() -> String {
    let mut units: Vec<&str> = DURATION_UNITS
        .iter()
        .flat_map(|(names, _)| names.iter().copied())
        .collect();
    // Longest first, so a backtracking engine tries `ms` before `m`.
    units.sort_by(|a, b| b.len().cmp(&a.len()).then(a.cmp(b)));
    let unit = units.join("|");
    format!("^([0-9]+|[0-9]+ *({unit})( *[0-9]+ *({unit}))*)$")
}

/// A duration node: a whole number of seconds or a string in the grammar of
/// [`parse_duration_str`]; at most 30 days.
pub fn parse_duration(v: &Node) -> Option<Duration> {
    match &v.kind {
        Kind::Int(i) if *i >= 0 => {
            Some(Duration::from_secs(*i as u64)).filter(|d| *d <= MAX_DURATION)
        }
        Kind::Str(s) => parse_duration_str(s).ok(),
        _ => None,
    }
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

/// The regular expression of [`parse_time_of_day`].
pub const TIME_OF_DAY_PATTERN: &str = "^([01][0-9]|2[0-3]):[0-5][0-9]$";

/// `HH:MM` on a 24-hour clock, as minutes after midnight.
pub fn parse_time_of_day(s: &str) -> Option<u32> {
    let (h, m) = s.split_once(':')?;
    let two = |p: &str| (p.len() == 2 && p.bytes().all(|c| c.is_ascii_digit())).then_some(());
    two(h)?;
    two(m)?;
    let (h, m): (u32, u32) = (h.parse().ok()?, m.parse().ok()?);
    (h < 24 && m < 60).then_some(h * 60 + m)
}

/// What a loosely written time of day (`2am`, `2:00`, `14h`, `0200`, `2 pm`) most likely
/// means, as `HH:MM`, for a did-you-mean.
pub fn suggest_time_of_day(s: &str) -> Option<String> {
    let t = s.trim().to_ascii_lowercase();
    let (t, shift) = if let Some(x) = t.strip_suffix("am") {
        (x.trim_end(), Some(0))
    } else if let Some(x) = t.strip_suffix("pm") {
        (x.trim_end(), Some(12))
    } else {
        (t.strip_suffix('h').unwrap_or(&t), None)
    };
    let (h, m) = match t.split_once([':', '.']) {
        Some((h, m)) => (h, m),
        None if t.len() == 4 => t.split_at(2),
        None => (t, "0"),
    };
    let (mut h, m): (u32, u32) = (h.parse().ok()?, m.parse().ok()?);
    if let Some(shift) = shift {
        if !(1..=12).contains(&h) {
            return None;
        }
        h = h % 12 + shift;
    }
    (h < 24 && m < 60).then(|| format!("{h:02}:{m:02}"))
}

/// An RFC 3339 date-time with its offset (`2026-01-01T00:00:00Z`).
pub fn parse_date_time(s: &str) -> Option<jiff::Timestamp> {
    // jiff also reads a few ISO 8601 variants; the schema's `date-time` is RFC 3339, which
    // always has a `T`, seconds and an offset.
    let shaped = s.len() >= 20 && s.as_bytes().get(10) == Some(&b'T') && s.get(16..17) == Some(":");
    shaped.then(|| s.parse().ok()).flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        let ok = |s: &str, secs: u64| {
            assert_eq!(parse_duration_str(s), Ok(Duration::from_secs(secs)), "{s}")
        };
        ok("90", 90);
        ok("30s", 30);
        ok("10 minutes", 600);
        ok("3 minutes", 180);
        ok("1h 30m", 5400);
        ok("1h30m", 5400);
        ok("2 hours 5 mins", 7500);
        ok("30d", 30 * 86400);
        assert_eq!(parse_duration_str("500ms"), Ok(Duration::from_millis(500)));
        for bad in [
            "",
            " 5m",
            "5m ",
            "5 m x",
            "5M",
            "1.5h",
            "m",
            "5m,3s",
            "10 minuets",
            "1h 30",
        ] {
            assert_eq!(
                parse_duration_str(bad),
                Err(DurationError::Syntax),
                "{bad:?}"
            );
        }
        assert_eq!(parse_duration_str("31d"), Err(DurationError::TooLong));
        assert_eq!(
            parse_duration_str("99999999999999999999999999999999999999999s"),
            Err(DurationError::TooLong)
        );
    }

    #[test]
    fn times_and_dates() {
        assert_eq!(parse_time_of_day("02:30"), Some(150));
        assert_eq!(parse_time_of_day("2:30"), None);
        assert_eq!(parse_time_of_day("24:00"), None);
        assert_eq!(suggest_time_of_day("2am").as_deref(), Some("02:00"));
        assert_eq!(suggest_time_of_day("2 pm").as_deref(), Some("14:00"));
        assert_eq!(suggest_time_of_day("12am").as_deref(), Some("00:00"));
        assert_eq!(suggest_time_of_day("2:00").as_deref(), Some("02:00"));
        assert_eq!(suggest_time_of_day("0415").as_deref(), Some("04:15"));
        assert_eq!(suggest_time_of_day("noon"), None);
        assert!(parse_date_time("2026-01-01T00:00:00Z").is_some());
        assert!(parse_date_time("2026-01-01T00:00:00+01:00").is_some());
        assert!(parse_date_time("2026-01-01").is_none());
        assert!(parse_date_time("2026-01-01T00:00:00").is_none());
    }
}
