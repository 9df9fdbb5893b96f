//! The timeline chart of `report.html`: an inline SVG of the run's pacing.
//!
//! Requests per second are bars with the part answered 429 in red, the in-flight window
//! is a step line on the right axis, and the adaptive send rate (when the API throttled)
//! a dashed step line on the left axis. One `req` bar per sample, so the tests can count
//! the data points. The page around it, and its style sheet, are [`super::html`]'s.

use std::fmt::Write as _;

use super::html::esc;
use crate::report::SampleReport;

// Chart geometry, in SVG user units; the SVG scales to the page width.
const W: f64 = 960.0;
const H: f64 = 280.0;
const LEFT: f64 = 52.0;
const RIGHT: f64 = 52.0;
const TOP: f64 = 18.0;
const BOTTOM: f64 = 34.0;
const PW: f64 = W - LEFT - RIGHT;
const PH: f64 = H - TOP - BOTTOM;

/// The chart of a timeline, with its legend.
pub fn chart(timeline: &[SampleReport]) -> String {
    let mut out = String::new();
    if timeline.is_empty() {
        let _ = writeln!(
            out,
            "<svg viewBox=\"0 0 {W} 48\" role=\"img\" aria-label=\"no timeline\">\n\
             <rect x=\"{LEFT}\" y=\"4\" width=\"{PW}\" height=\"40\" fill=\"#f6f8fa\"/>\n\
             <text x=\"{}\" y=\"28\" text-anchor=\"middle\">no requests were sampled in this run</text>\n</svg>",
            LEFT + PW / 2.0
        );
        return out;
    }
    let _ = writeln!(
        out,
        "<svg viewBox=\"0 0 {W} {H}\" role=\"img\" aria-label=\"requests per second, answers 429 and in-flight window over the run\">"
    );
    let s = Scale::of(timeline);
    axes(&mut out, &s);
    bars(&mut out, &s, timeline);
    step_lines(&mut out, &s, timeline);
    out.push_str("</svg>\n<p class=\"legend\"><i style=\"background:#9ec5f0\"></i>requests/s<i style=\"background:#d1242f\"></i>answered 429<i style=\"background:#e16f24;height:3px\"></i>in-flight window (right axis)");
    if timeline.iter().any(|s| s.rate.is_some()) {
        out.push_str("<i style=\"border-top:2px dashed #6639ba;height:0\"></i>adaptive send rate");
    }
    out.push_str("</p>\n");
    out
}

/// From a timeline's values to the chart's coordinates.
struct Scale {
    /// Seconds one sample covers.
    step: f64,
    t0: f64,
    span: f64,
    /// The left axis (per second) and the right one (in flight): tick step and maximum.
    left: (f64, f64),
    right: (f64, f64),
}

impl Scale {
    fn of(timeline: &[SampleReport]) -> Scale {
        // Samples are one second apart until a long run halves their resolution; the
        // smallest gap is the sample length, and values are shown per second whatever it is.
        let step = timeline
            .windows(2)
            .map(|w| w[1].t.saturating_sub(w[0].t))
            .filter(|d| *d > 0)
            .min()
            .unwrap_or(1) as f64;
        let t0 = timeline[0].t as f64;
        let span = (timeline[timeline.len() - 1].t as f64 + step - t0).max(1.0);
        let peak = timeline
            .iter()
            .map(|s| {
                (s.requests as f64 / step)
                    .max(s.rate_limited as f64 / step)
                    .max(s.rate.unwrap_or(0.0))
            })
            .fold(0.0, f64::max);
        let window = timeline.iter().map(|s| s.window).max().unwrap_or(0) as f64;
        Scale {
            step,
            t0,
            span,
            left: nice_axis(peak),
            right: nice_axis(window),
        }
    }

    fn x(&self, t: f64) -> f64 {
        LEFT + (t - self.t0) / self.span * PW
    }

    fn per_s(&self, n: u32) -> f64 {
        n as f64 / self.step
    }

    fn yl(&self, v: f64) -> f64 {
        TOP + PH - v / self.left.1 * PH
    }

    fn yr(&self, v: f64) -> f64 {
        TOP + PH - v / self.right.1 * PH
    }
}

/// Grid lines and labels of both value axes, the time axis and the axis titles.
fn axes(out: &mut String, s: &Scale) {
    let (lstep, lmax) = s.left;
    let mut v = 0.0;
    while v <= lmax + 1e-9 {
        let y = s.yl(v);
        let _ = writeln!(
            out,
            "<line class=\"grid\" x1=\"{LEFT}\" x2=\"{:.1}\" y1=\"{y:.1}\" y2=\"{y:.1}\"/><text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>",
            LEFT + PW,
            LEFT - 6.0,
            y + 4.0,
            num(v)
        );
        v += lstep;
    }
    let (rstep, rmax) = s.right;
    let mut v = 0.0;
    while v <= rmax + 1e-9 {
        let _ = writeln!(
            out,
            "<text x=\"{:.1}\" y=\"{:.1}\" style=\"fill:#e16f24\">{}</text>",
            LEFT + PW + 6.0,
            s.yr(v) + 4.0,
            num(v)
        );
        v += rstep;
    }
    let xstep = time_step(s.span);
    let mut t = (s.t0 / xstep).ceil() * xstep;
    while t <= s.t0 + s.span + 1e-9 {
        let _ = writeln!(
            out,
            "<line class=\"axis\" x1=\"{0:.1}\" x2=\"{0:.1}\" y1=\"{1:.1}\" y2=\"{2:.1}\"/><text x=\"{0:.1}\" y=\"{3:.1}\" text-anchor=\"middle\">{4}</text>",
            s.x(t),
            TOP + PH,
            TOP + PH + 4.0,
            TOP + PH + 16.0,
            clock(t as u64)
        );
        t += xstep;
    }
    let _ = writeln!(
        out,
        "<line class=\"axis\" x1=\"{LEFT}\" x2=\"{right:.1}\" y1=\"{base:.1}\" y2=\"{base:.1}\"/>\n\
         <text x=\"{LEFT}\" y=\"{top:.1}\">req/s</text>\n\
         <text x=\"{edge:.1}\" y=\"{top:.1}\" text-anchor=\"end\" style=\"fill:#e16f24\">in flight</text>\n\
         <text x=\"{mid:.1}\" y=\"{bottom:.1}\" text-anchor=\"middle\">time since the run started</text>",
        right = LEFT + PW,
        base = TOP + PH,
        top = TOP - 6.0,
        edge = W - 4.0,
        mid = LEFT + PW / 2.0,
        bottom = H - 4.0
    );
}

/// Bars: requests, then the 429s over them (at least 2 units high so one is visible).
fn bars(out: &mut String, s: &Scale, timeline: &[SampleReport]) {
    let slot = s.step / s.span * PW;
    let bar = (slot * 0.8).max(0.5);
    let lmax = s.left.1;
    // A tooltip per bar helps while bars are wide enough to point at; on a long run they
    // are a pixel wide and the titles would be most of the page's weight.
    let titled = timeline.len() <= 600;
    for sample in timeline {
        let bx = s.x(sample.t as f64) + (slot - bar) / 2.0;
        let h = s.per_s(sample.requests) / lmax * PH;
        let _ = write!(
            out,
            "<rect class=\"req\" x=\"{bx:.1}\" y=\"{:.1}\" width=\"{bar:.1}\" height=\"{h:.1}\"",
            TOP + PH - h
        );
        if titled {
            let _ = writeln!(out, "><title>{}</title></rect>", esc(&title(sample)));
        } else {
            out.push_str("/>\n");
        }
        if sample.rate_limited > 0 {
            let h = (s.per_s(sample.rate_limited) / lmax * PH).max(2.0);
            let _ = writeln!(
                out,
                "<rect class=\"rl\" x=\"{bx:.1}\" y=\"{:.1}\" width=\"{bar:.1}\" height=\"{h:.1}\"/>",
                TOP + PH - h
            );
        }
    }
}

/// A bar's tooltip: what the sample holds.
fn title(s: &SampleReport) -> String {
    let mut title = format!(
        "{}: {} requests, window {}",
        clock(s.t as u64),
        s.requests,
        s.window
    );
    if s.rate_limited > 0 {
        let _ = write!(title, ", {} answered 429", s.rate_limited);
    }
    if let Some(rate) = s.rate {
        let _ = write!(title, ", adaptive rate {rate:.1}/s");
    }
    title
}

/// The in-flight window and the adaptive rate as step lines: a value holds for its whole
/// sample, and the rate line breaks where the rate was unset.
fn step_lines(out: &mut String, s: &Scale, timeline: &[SampleReport]) {
    let mut win = String::new();
    for (i, sample) in timeline.iter().enumerate() {
        let (a, b) = (s.x(sample.t as f64), s.x(sample.t as f64 + s.step));
        let cmd = if i == 0 { 'M' } else { 'L' };
        let _ = write!(
            win,
            "{cmd}{a:.1} {:.1} H{b:.1} ",
            s.yr(sample.window as f64)
        );
    }
    let _ = writeln!(out, "<path class=\"win\" d=\"{}\"/>", win.trim_end());
    let mut rate = String::new();
    let mut open = false;
    for sample in timeline {
        match sample.rate {
            Some(v) => {
                let (a, b) = (s.x(sample.t as f64), s.x(sample.t as f64 + s.step));
                let cmd = if open { 'L' } else { 'M' };
                let _ = write!(rate, "{cmd}{a:.1} {:.1} H{b:.1} ", s.yl(v));
                open = true;
            }
            None => open = false,
        }
    }
    if !rate.is_empty() {
        let _ = writeln!(out, "<path class=\"rate\" d=\"{}\"/>", rate.trim_end());
    }
}

/// A tick step of 1, 2 or 5 × 10ⁿ giving at most five ticks, and the axis maximum.
fn nice_axis(max: f64) -> (f64, f64) {
    let max = max.max(1.0);
    let mut step = 1.0;
    loop {
        for m in [1.0, 2.0, 5.0] {
            if max / (step * m) <= 5.0 {
                let s = step * m;
                return (s, (max / s).ceil() * s);
            }
        }
        step *= 10.0;
    }
}

/// A time-axis step in whole seconds or minutes giving at most eight ticks.
fn time_step(span: f64) -> f64 {
    const STEPS: [f64; 14] = [
        1.0, 2.0, 5.0, 10.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 900.0, 1800.0, 3600.0, 7200.0,
    ];
    STEPS
        .iter()
        .copied()
        .find(|s| span / s <= 8.0)
        .unwrap_or_else(|| (span / 8.0 / 3600.0).ceil() * 3600.0)
}

fn num(v: f64) -> String {
    if v.fract() == 0.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.1}")
    }
}

/// Seconds since the start as a short axis label: `45s`, `2m`, `2m30s`, `1h5m`.
fn clock(t: u64) -> String {
    match (t / 3600, t % 3600 / 60, t % 60) {
        (0, 0, s) => format!("{s}s"),
        (0, m, 0) => format!("{m}m"),
        (0, m, s) => format!("{m}m{s:02}s"),
        (h, 0, _) => format!("{h}h"),
        (h, m, _) => format!("{h}h{m:02}m"),
    }
}
