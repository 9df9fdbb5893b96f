//! The view model of a report: what `report.md` and `report.html` both say, computed once
//! from the report's typed data and laid out by each of them.
//!
//! A [`View`] holds the headline sentences, the summary measures, the rollout stops with
//! their failing canaries, the step rows, the failure groups by cause
//! ([`super::groups`]) and the advice ([`super::advice`]). Every sentence in it is a
//! [`Line`], so the two renderers escape it for their format and never phrase it
//! themselves; which measures become cards, which sections come first and what is a
//! table is theirs. Nothing here parses text: a fact comes from a status, a class, a
//! count or an id.

use std::collections::BTreeMap;

use super::advice;
use super::devices::{DeviceRow, device_rows};
use super::groups::{Group, failure_groups};
use super::text::{Line, and_more, count, duration, moment, tasks};
use crate::exec::TaskStatus;
use crate::report::{AttemptReport, Report, StopReport, TaskReport};

/// Example targets shown per group of failures; the full list is in `results.csv`.
pub const EXAMPLES: usize = 5;
/// Groups of failures shown; a run that failed in more ways than this needs the CSV anyway.
const MAX_GROUPS: usize = 20;
/// Failing tasks listed per rollout stop.
const CANARIES: usize = 10;

/// Everything the human-readable reports show, in the order Markdown shows it.
pub struct View<'a> {
    pub report: &'a Report,
    /// What happened, after the outcome word: job `x` exited 1 (…) after 9.7s against
    /// the server.
    pub headline: Line,
    /// Which run this was, and when.
    pub run: Line,
    /// Where the rest of the record is.
    pub records: Line,
    /// The run's segments (first start, then each resumption), when there was more than
    /// one or one was killed: a run that was cut short says so, and when.
    pub segments: Vec<Line>,
    pub measures: Vec<Measure>,
    pub stops: Vec<StopView<'a>>,
    pub steps: Vec<StepRow>,
    /// The failure groups shown, at most [`MAX_GROUPS`].
    pub groups: Vec<Group<'a>>,
    /// What the failure table leaves out or does not cover, or that nothing failed.
    pub failure_notes: Vec<Line>,
    /// Concrete next steps, most urgent first.
    pub advice: Vec<Line>,
    /// Per step (in plan order), the devices that did not succeed.
    pub failed_devices: Vec<StepDevices<'a>>,
    /// The `--limit` the run was narrowed by, when it was.
    pub limit: Option<Line>,
}

/// The failed devices of one step.
pub struct StepDevices<'a> {
    pub step: &'a str,
    pub rows: Vec<DeviceRow<'a>>,
}

/// Per step, in plan order, the device rows that did not succeed.
fn failed_devices(r: &Report) -> Vec<StepDevices<'_>> {
    let mut out: Vec<StepDevices> = Vec::new();
    for row in device_rows(r).into_iter().filter(DeviceRow::failed) {
        let step = row.task.step.as_str();
        match out.iter_mut().find(|s| s.step == step) {
            Some(s) => s.rows.push(row),
            None => out.push(StepDevices {
                step,
                rows: vec![row],
            }),
        }
    }
    let order = |step: &str| r.steps.iter().position(|s| s.id == step);
    out.sort_by_key(|s| order(s.step));
    out
}

/// `Narrowed by --limit `a`, `b`.`
fn limit_line(r: &Report) -> Option<Line> {
    if r.run.limit.is_empty() {
        return None;
    }
    let mut line = Line::from("Narrowed by ").code("--limit").text(" ");
    for (i, p) in r.run.limit.iter().enumerate() {
        if i > 0 {
            line.push_text(", ");
        }
        line = line.code(p.clone());
    }
    Some(line.text(": only the targets it matched were planned and run."))
}

impl<'a> View<'a> {
    pub fn of(r: &'a Report) -> View<'a> {
        let mut groups = failure_groups(r);
        let stops = stops(r);
        let advice = advice::next_steps(r, &groups, &stops);
        let failure_notes = failure_notes(r, &groups);
        groups.truncate(MAX_GROUPS);
        View {
            segments: segment_lines(r),
            report: r,
            headline: headline(r),
            run: Line::from("Run ")
                .code(r.run.id.clone())
                .text(" of ")
                .code(r.run.source.clone())
                .text(format!(
                    ", started {} and finished {}.",
                    moment(&r.run.started_at),
                    moment(&r.run.finished_at)
                )),
            records: Line::from("Every task is in ")
                .code("results.csv")
                .text("; ")
                .code("report.json")
                .text(" holds the full record."),
            measures: measures(r),
            stops,
            steps: step_rows(r),
            groups,
            failure_notes,
            advice,
            failed_devices: failed_devices(r),
            limit: limit_line(r),
        }
    }
}

fn headline(r: &Report) -> Line {
    Line::from("job ")
        .code(r.run.job.clone())
        .text(format!(
            " exited {} ({}) after {} against ",
            r.run.exit_code,
            r.run.outcome.meaning(),
            duration(r.run.elapsed_ms)
        ))
        .code(r.run.server.clone())
        .text(".")
}

/// The notes under the failure table: the groups it leaves out, the tasks it does not
/// cover (never started), or that there was nothing to list.
fn failure_notes(r: &Report, groups: &[Group]) -> Vec<Line> {
    let mut notes = Vec::new();
    if groups.is_empty() {
        notes.push(Line::from("Nothing failed."));
    } else if groups.len() > MAX_GROUPS {
        let rest = &groups[MAX_GROUPS..];
        let hidden = rest.iter().map(|g| g.tasks.len() as u64).sum();
        notes.push(
            Line::from(format!(
                "… and {} ({}) in ",
                count(
                    rest.len() as u64,
                    "more distinct error",
                    "more distinct errors"
                ),
                tasks(hidden)
            ))
            .code("results.csv")
            .text("."),
        );
    }
    let n = r.summary.not_started;
    if n > 0 {
        notes.push(Line::from(format!(
            "{} not started: the run stopped before {} first request.",
            tasks(n),
            if n == 1 { "its" } else { "their" }
        )));
    }
    let (n, t) = (r.summary.devices_pending, r.summary.tasks_with_pending);
    if n > 0 {
        notes.push(
            Line::from(format!(
                "{} still pending in {} when the wait ended (offline or queued): counted, not failed; each is listed in ",
                count(n, "device", "devices"),
                tasks(t)
            ))
            .code("results.csv")
            .text(". Set ")
            .code("pending: fail")
            .text(" on the step's wait to fail them."),
        );
    }
    let n = r.summary.interrupted;
    if n > 0 {
        notes.push(Line::from(format!(
            "{} interrupted: {} command was sent and the run stopped while waiting for its devices.",
            tasks(n),
            if n == 1 { "its" } else { "each one's" }
        )));
    }
    notes
}

/// A number in the summary.
pub struct Measure {
    pub label: &'static str,
    pub value: String,
    /// What qualifies the value (`in one second`, `(14 changes)`); it follows the value in
    /// a table and the label on a card.
    pub detail: Option<String>,
    pub tone: Tone,
    pub place: Place,
}

/// Whether a number is good or bad news.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tone {
    Neutral,
    Good,
    Bad,
    Warn,
    /// A count of zero: nothing to see.
    Zero,
}

/// What a measure is about, so a layout can group them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Place {
    /// Tasks by status.
    Tasks,
    /// Requests and pacing.
    Requests,
    /// A list too long for a card.
    Aside,
}

impl Measure {
    fn new(place: Place, label: &'static str, value: impl ToString) -> Measure {
        Measure {
            label,
            value: value.to_string(),
            detail: None,
            tone: Tone::Neutral,
            place,
        }
    }

    fn detail(self, detail: impl Into<String>) -> Measure {
        Measure {
            detail: Some(detail.into()),
            ..self
        }
    }

    fn tone(self, tone: Tone) -> Measure {
        Measure { tone, ..self }
    }

    /// The tone of a count: muted when it is zero, whatever news it would be otherwise.
    fn count_tone(self, n: u64, tone: Tone) -> Measure {
        self.tone(if n == 0 { Tone::Zero } else { tone })
    }
}

fn measures(r: &Report) -> Vec<Measure> {
    let (s, g) = (&r.summary, &r.governor);
    let task = |label, n: u64, tone| Measure::new(Place::Tasks, label, n).count_tone(n, tone);
    let req = |label, value: String| Measure::new(Place::Requests, label, value);
    let mut rows = vec![
        Measure::new(Place::Tasks, "tasks", s.tasks),
        task("succeeded", s.succeeded, Tone::Good),
        task("failed", s.failed, Tone::Bad),
        task("unknown", s.unknown, Tone::Bad),
        task("skipped", s.skipped, Tone::Warn),
        task("not started", s.not_started, Tone::Warn),
    ];
    // Only runs stopped mid-wait have these; every other report reads as before.
    if s.interrupted > 0 {
        rows.push(task("interrupted", s.interrupted, Tone::Warn));
    }
    rows.extend([
        req("requests", s.requests.to_string()),
        req("retries", s.retries.to_string()),
        req("answered 429", s.rate_limited.to_string()).count_tone(s.rate_limited, Tone::Warn),
        req("mean rate", format!("{:.1} req/s", s.mean_rate)),
        req("peak rate", format!("{:.0} req/s", s.peak_rate)).detail("in one second"),
        req(
            "in-flight window",
            format!("{}..{}", g.window_min, g.window_max),
        )
        .detail(format!(
            "({})",
            count(g.window_changes, "change", "changes")
        )),
    ]);
    // Pacing the run had to adapt is worth a look even when it went well.
    if let Some(rate) = g.adaptive_rate {
        rows.push(
            req("adaptive send rate", format!("{rate:.1} req/s"))
                .detail("at the end")
                .tone(Tone::Warn),
        );
    }
    if g.paused_ms > 0 {
        rows.push(req("paused after 429s", duration(g.paused_ms)).tone(Tone::Warn));
    }
    if !g.by_status.is_empty() {
        let parts: Vec<String> = g
            .by_status
            .iter()
            .map(|(k, v)| format!("{k}: {v}"))
            .collect();
        rows.push(Measure::new(
            Place::Aside,
            "answers by status",
            parts.join(", "),
        ));
    }
    rows
}

/// A task named in a list, with its problem.
pub struct TaskLine<'a> {
    pub task: &'a TaskReport,
    pub error: Line,
}

/// A rollout stop and the tasks of its step that failed before it.
pub struct StopView<'a> {
    pub stop: &'a StopReport,
    pub line: Line,
    /// Every failing task of the step, for the advice.
    pub failing: Vec<&'a TaskReport>,
    /// The ones listed under the stop, at most [`CANARIES`].
    pub canaries: Vec<TaskLine<'a>>,
    /// `… and 3 more`, when the list is cut.
    pub more: Option<String>,
}

fn stops(r: &Report) -> Vec<StopView<'_>> {
    r.run
        .rollout_stops
        .iter()
        .map(|stop| {
            let failing: Vec<&TaskReport> = r
                .tasks
                .iter()
                .filter(|t| {
                    t.step == stop.step
                        && matches!(t.status, TaskStatus::Failed | TaskStatus::Unknown)
                })
                .collect();
            StopView {
                stop,
                line: stop.line(),
                canaries: failing
                    .iter()
                    .take(CANARIES)
                    .map(|t| TaskLine {
                        task: t,
                        error: t.error_line(),
                    })
                    .collect(),
                more: (failing.len() > CANARIES).then(|| and_more(failing.len() - CANARIES)),
                failing,
            }
        })
        .collect()
}

/// A step with its tasks by status, attempts and active time.
pub struct StepRow {
    pub id: String,
    pub kind: String,
    pub tasks: u64,
    pub by_status: BTreeMap<String, u64>,
    pub attempts: usize,
    /// From the first attempt's start to the last attempt's end, in ms since the run started.
    pub span: Option<(u64, u64)>,
}

impl StepRow {
    pub fn count(&self, status: &str) -> u64 {
        self.by_status.get(status).copied().unwrap_or(0)
    }

    pub fn time(&self) -> String {
        self.span.map_or("-".into(), |(a, b)| duration(b - a))
    }
}

/// The report's steps with their attempts and active time, plus a row for any step a
/// task names that the step list lacks, so no task drops out of the JUnit file.
pub fn step_rows(r: &Report) -> Vec<StepRow> {
    let mut rows: Vec<StepRow> = r
        .steps
        .iter()
        .map(|s| StepRow {
            id: s.id.clone(),
            kind: s.kind.clone(),
            tasks: s.tasks,
            by_status: s.by_status.clone(),
            attempts: 0,
            span: None,
        })
        .collect();
    for t in &r.tasks {
        let i = match rows.iter().position(|row| row.id == t.step) {
            Some(i) => i,
            None => {
                rows.push(StepRow {
                    id: t.step.clone(),
                    kind: String::new(),
                    tasks: 0,
                    by_status: BTreeMap::new(),
                    attempts: 0,
                    span: None,
                });
                rows.len() - 1
            }
        };
        let row = &mut rows[i];
        if !r.steps.iter().any(|s| s.id == t.step) {
            row.tasks += 1;
            *row.by_status.entry(t.status.as_str().into()).or_default() += 1;
        }
        row.attempts += t.attempts.len();
        if let Some((a, b)) = span_ms(&t.attempts) {
            row.span = Some(match row.span {
                Some((x, y)) => (x.min(a), y.max(b)),
                None => (a, b),
            });
        }
    }
    rows
}

/// From the first attempt's start to the last attempt's end, in ms since the run started.
pub fn span_ms(attempts: &[AttemptReport]) -> Option<(u64, u64)> {
    let start = attempts.iter().map(|a| a.at_ms).min()?;
    let end = attempts.iter().map(|a| a.at_ms + a.took_ms).max()?;
    Some((start, end.max(start)))
}

/// One line per segment, oldest first, or none for a run that ran once to its end.
fn segment_lines(r: &Report) -> Vec<Line> {
    let segs = &r.run.segments;
    if segs.len() < 2 && segs.iter().all(|s| s.ended != "killed") {
        return Vec::new();
    }
    segs.iter()
        .enumerate()
        .map(|(i, s)| {
            let how = match (s.ended.as_str(), s.elapsed_ms, s.exit_code) {
                ("killed", _, _) => "was killed before it recorded an end; resumable".to_string(),
                (ended, Some(ms), Some(code)) => {
                    format!(
                        "ended {ended} after {} (exit {code})",
                        super::text::duration(ms)
                    )
                }
                (ended, Some(ms), None) => {
                    format!("ended {ended} after {}", super::text::duration(ms))
                }
                (ended, None, _) => format!("ended {ended}"),
            };
            Line::from(format!(
                "{} {}: started {}, {how}; {} finished in it.",
                if i == 0 { "Run" } else { "Resumption" },
                i + 1,
                super::text::moment(&s.started_at),
                super::text::tasks(s.tasks_finished as u64),
            ))
        })
        .collect()
}
