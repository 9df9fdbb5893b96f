//! Renders a [`Report`] into the files a person or a CI dashboard reads after a run:
//! `report.md` ([`markdown`]), `report.xml` ([`junit`]), `results.csv` ([`csv`]) and
//! `report.html` ([`html`]).
//!
//! Every renderer is a pure function from the report to text: no I/O, no clock, no
//! environment, so one report always renders to the same bytes (the golden tests rely on
//! it). Building the report is [`super::Report::build`]'s job; deciding which files to write
//! and writing them atomically is the caller's. Failures are grouped, and the advice under
//! "What to do next" is derived, from the report's typed data alone (status, failure
//! class, HTTP status, step, reason), never from message text; every text that came from a
//! server, a job file or a tenant is escaped for the format it lands in.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde_json::Value;

mod problem;
mod prometheus;
mod terminal;

use super::{
    AttemptReport, DeviceCountsReport, FailureReport, ReasonReport, Report, RunOutcome,
    SampleReport, StopReport, TaskReport,
};
use crate::base::FailureClass;
use crate::exec::{DeviceState, StopReason, TaskStatus};

/// Example targets shown per group of failures; the full list is in `results.csv`.
const EXAMPLES: usize = 5;
/// Groups of failures shown; a run that failed in more ways than this needs the CSV anyway.
const MAX_GROUPS: usize = 20;
/// Failing tasks listed per rollout stop.
const CANARIES: usize = 10;

// ---------------------------------------------------------------------------------------
// Markdown

/// `report.md`: the summary a person reads the morning after an unattended run.
pub fn markdown(r: &Report) -> String {
    let s = &r.summary;
    let groups = failure_groups(r);
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# {}: {}\n",
        md_text(&r.run.job),
        md_text(r.run.outcome.word())
    );
    let _ = writeln!(
        out,
        "**{}**: job {} exited {} ({}) after {} against {}.\n",
        md_text(r.run.outcome.word()),
        code(&r.run.job, false),
        r.run.exit_code,
        r.run.outcome.meaning(),
        duration(r.run.elapsed_ms),
        code(&r.run.server, false)
    );
    let _ = writeln!(
        out,
        "Run {} of {}, started {} and finished {}. Every task is in `results.csv`; \
         `report.json` holds the full record.\n",
        code(&r.run.id, false),
        code(&r.run.source, false),
        md_text(&moment(&r.run.started_at)),
        md_text(&moment(&r.run.finished_at))
    );

    out.push_str("## Summary\n\n| measure | value |\n| --- | ---: |\n");
    for (label, value) in summary_rows(r) {
        let _ = writeln!(out, "| {label} | {} |", md_text(&value));
    }

    if !r.run.rollout_stops.is_empty() {
        out.push_str("\n## Rollout stops\n\n");
        for stop in stops(r) {
            let _ = writeln!(out, "- {}", md_line(&stop_line(stop.stop)));
            for t in stop.tasks.iter().take(CANARIES) {
                let _ = writeln!(
                    out,
                    "  - {} #{} {}: {}",
                    code(&t.target, false),
                    t.id,
                    t.status.as_str(),
                    md_text(&error_of(t))
                );
            }
            if stop.tasks.len() > CANARIES {
                let _ = writeln!(out, "  - … and {} more", stop.tasks.len() - CANARIES);
            }
        }
    }

    out.push_str(
        "\n## Steps\n\n| step | kind | tasks | succeeded | failed | unknown | skipped | not started | attempts | time |\n\
         | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n",
    );
    for row in step_rows(r) {
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            code(&row.id, true),
            code(&row.kind, true),
            row.tasks,
            row.count("succeeded"),
            row.count("failed"),
            row.count("unknown"),
            row.count("skipped"),
            row.count("not_started"),
            row.attempts,
            row.time()
        );
    }

    out.push_str("\n## What failed and why\n\n");
    if groups.is_empty() {
        out.push_str("Nothing failed.\n");
    } else {
        out.push_str(
            "| tasks | status | step | error | examples |\n| ---: | --- | --- | --- | --- |\n",
        );
        for g in groups.iter().take(MAX_GROUPS) {
            let steps: Vec<String> = g.steps.iter().map(|s| code(s, true)).collect();
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {} |",
                g.tasks.len(),
                g.status.as_str(),
                steps.join(", "),
                md_text(&g.error),
                md_examples(&g.tasks, true)
            );
        }
        if groups.len() > MAX_GROUPS {
            let rest = &groups[MAX_GROUPS..];
            let _ = writeln!(
                out,
                "\n… and {} more distinct errors ({} tasks) in `results.csv`.",
                rest.len(),
                rest.iter().map(|g| g.tasks.len()).sum::<usize>()
            );
        }
    }
    if s.not_started > 0 {
        let _ = writeln!(
            out,
            "\n{} not started: the run stopped before their first request.",
            tasks_word(s.not_started)
        );
    }

    out.push_str("\n## What to do next\n\n");
    for line in advice(r, &groups) {
        let _ = writeln!(out, "- {}", md_line(&line));
    }
    out
}

/// Escapes free text for Markdown, in a table cell or not: every character that could
/// start markup is backslash-escaped (so `|` cannot end a cell), and line breaks become
/// `<br>`, the only HTML this renderer emits, since a raw newline would end the row.
fn md_text(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' | '`' | '*' | '_' | '[' | ']' | '<' | '>' | '|' | '&' | '~' | '#' => {
                out.push('\\');
                out.push(c);
            }
            '\r' => {
                if chars.peek() == Some(&'\n') {
                    chars.next();
                }
                out.push_str("<br>");
            }
            '\n' => out.push_str("<br>"),
            '\t' => out.push(' '),
            c if c.is_control() => {}
            c => out.push(c),
        }
    }
    out
}

/// An identifier as a code span. Text a code span cannot hold verbatim (backticks,
/// backslashes, which GFM tables treat as escapes even inside spans, line breaks) falls
/// back to escaped text. Inside a table, `|` is escaped; GFM unescapes it in spans too.
fn code(s: &str, in_table: bool) -> String {
    if s.is_empty()
        || s.contains(['`', '\\', '\n', '\r'])
        || s.chars().any(char::is_control)
        || s.starts_with(' ')
        || s.ends_with(' ')
    {
        return md_text(s);
    }
    if in_table {
        format!("`{}`", s.replace('|', "\\|"))
    } else {
        format!("`{s}`")
    }
}

fn md_line(line: &[Frag]) -> String {
    line.iter()
        .map(|f| match f {
            Frag::Text(t) => md_text(t),
            Frag::Code(c) => code(c, false),
        })
        .collect()
}

fn md_examples(tasks: &[&TaskReport], in_table: bool) -> String {
    let mut parts: Vec<String> = tasks
        .iter()
        .take(EXAMPLES)
        .map(|t| format!("{} #{}", code(&t.target, in_table), t.id))
        .collect();
    if tasks.len() > EXAMPLES {
        parts.push(format!("… and {} more", tasks.len() - EXAMPLES));
    }
    parts.join(", ")
}

// ---------------------------------------------------------------------------------------
// JUnit XML

/// `report.xml`: JUnit XML for CI dashboards; one suite per step, one case per task.
pub fn junit(r: &Report) -> String {
    let s = &r.summary;
    let mut out = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let _ = writeln!(
        out,
        "<testsuites name=\"{}\" tests=\"{}\" failures=\"{}\" errors=\"{}\" skipped=\"{}\" time=\"{}\" timestamp=\"{}\">",
        xml(&format!("esper-bulk {}", r.run.job)),
        s.tasks,
        s.failed,
        s.unknown,
        s.skipped + s.not_started,
        seconds(r.run.elapsed_ms),
        xml(&r.run.started_at)
    );
    let stops = stops(r);
    for row in step_rows(r) {
        let tasks: Vec<&TaskReport> = r.tasks.iter().filter(|t| t.step == row.id).collect();
        let n = |st: &[TaskStatus]| tasks.iter().filter(|t| st.contains(&t.status)).count();
        let _ = writeln!(
            out,
            "  <testsuite name=\"{}\" tests=\"{}\" failures=\"{}\" errors=\"{}\" skipped=\"{}\" time=\"{}\" timestamp=\"{}\">",
            xml(&row.id),
            tasks.len(),
            n(&[TaskStatus::Failed]),
            n(&[TaskStatus::Unknown]),
            n(&[TaskStatus::Skipped, TaskStatus::NotStarted]),
            seconds(row.span.map_or(0, |(a, b)| b - a)),
            xml(&r.run.started_at)
        );
        out.push_str("    <properties>\n");
        for (name, value) in [
            ("kind", row.kind.as_str()),
            ("run", r.run.id.as_str()),
            ("server", r.run.server.as_str()),
            ("outcome", r.run.outcome.word()),
        ] {
            let _ = writeln!(
                out,
                "      <property name=\"{name}\" value=\"{}\"/>",
                xml(value)
            );
        }
        out.push_str("    </properties>\n");
        let class = xml(&format!("esper-bulk.{}.{}", r.run.job, row.id));
        for t in &tasks {
            let head = format!(
                "    <testcase classname=\"{class}\" name=\"{}\" time=\"{}\"",
                xml(&format!("{} #{}", t.target, t.id)),
                seconds(span_ms(&t.attempts).map_or(0, |(a, b)| b - a))
            );
            let error = error_of(t);
            let error = error.as_str();
            // The last attempt's answer (`400`, `timeout`); a task whose write was accepted
            // but failed afterwards (devices failing a command) is just `failed`.
            let kind = match t.attempts.last() {
                Some(a) if a.failure.is_some() => a.short(),
                _ => t.status.as_str().to_string(),
            };
            match t.status {
                TaskStatus::Succeeded => {
                    let _ = writeln!(out, "{head}/>");
                }
                TaskStatus::Failed | TaskStatus::Unknown => {
                    let tag = if t.status == TaskStatus::Failed {
                        "failure"
                    } else {
                        "error"
                    };
                    let _ = writeln!(
                        out,
                        "{head}>\n      <{tag} message=\"{}\" type=\"{}\">{}</{tag}>\n    </testcase>",
                        xml(error),
                        xml(&kind),
                        xml_text(&failure_body(t, error))
                    );
                }
                TaskStatus::Skipped | TaskStatus::NotStarted => {
                    let _ = writeln!(
                        out,
                        "{head}>\n      <skipped message=\"{}\"/>\n    </testcase>",
                        xml(error)
                    );
                }
            }
        }
        let mine: Vec<String> = stops
            .iter()
            .filter(|s| s.stop.step == row.id)
            .map(|s| s.stop.to_string())
            .collect();
        if !mine.is_empty() {
            let _ = writeln!(
                out,
                "    <system-err>{}</system-err>",
                xml_text(&mine.join("\n"))
            );
        }
        out.push_str("  </testsuite>\n");
    }
    out.push_str("</testsuites>\n");
    out
}

/// The text of a `<failure>`/`<error>`: the error, then every attempt, which is what a CI
/// reader needs to tell a flaky server from a bad job.
fn failure_body(t: &TaskReport, error: &str) -> String {
    let mut body = format!("{error}\n\ntarget: {}\nattempts:", t.target);
    if t.attempts.is_empty() {
        body.push_str(" none");
    }
    for a in &t.attempts {
        let _ = write!(
            body,
            "\n  {}. at {}s: {} after {} ms",
            a.n,
            seconds(a.at_ms),
            a.short(),
            a.took_ms
        );
        if let Some(w) = a.wait_ms {
            let _ = write!(body, ", waited {w} ms");
        }
        let note = a
            .failure
            .as_ref()
            .map(crate::base::one_line)
            .or(a.note.clone());
        if let Some(n) = note {
            let _ = write!(body, " ({n})");
        }
    }
    body
}

/// Escapes text for an XML 1.0 attribute value, and drops the characters XML 1.0 cannot
/// carry at all (most C0 controls, U+FFFE, U+FFFF): a well-formed file without them beats
/// a faithful one no parser will read. Line breaks and tabs become character references,
/// since attribute-value normalization would turn them into spaces.
fn xml(s: &str) -> String {
    xml_escape(s, true)
}

/// Escapes character data: as [`xml`], but line breaks and tabs stay as they are so the
/// text of a `<failure>` reads well in the file too (a CR is still a reference: parsers
/// would fold CRLF into LF).
fn xml_text(s: &str) -> String {
    xml_escape(s, false)
}

fn xml_escape(s: &str, attr: bool) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\n' | '\t' if !attr => out.push(c),
            '\n' => out.push_str("&#10;"),
            '\r' => out.push_str("&#13;"),
            '\t' => out.push_str("&#9;"),
            c if (c as u32) < 0x20 || c == '\u{FFFE}' || c == '\u{FFFF}' => {}
            c => out.push(c),
        }
    }
    out
}

fn seconds(ms: u64) -> String {
    format!("{}.{:03}", ms / 1000, ms % 1000)
}

// ---------------------------------------------------------------------------------------
// CSV

/// `results.csv`: one row per target, in plan order, with RFC 4180 quoting: a task that
/// covers several devices gets one row per device, with that device's final command state
/// and reason when the command was followed. Records end in
/// `\n` rather than RFC 4180's CRLF: spreadsheets accept both, and shell tools (`cut`,
/// `awk`) would otherwise see a stray `\r` in the last column.
pub fn csv(r: &Report) -> String {
    let mut out = String::from("task,step,target,status,attempts,error,result_id\n");
    for t in &r.tasks {
        let id = result_id(t.result.as_ref()).unwrap_or_default();
        let mut row = |target: &str, status: &str, error: &str| {
            let fields = [
                t.id.to_string(),
                csv_field(&t.step),
                csv_field(target),
                status.to_string(),
                t.attempts.len().to_string(),
                csv_field(error),
                csv_field(&id),
            ];
            out.push_str(&fields.join(","));
            out.push('\n');
        };
        let error = t.error_text().unwrap_or_default();
        if t.devices.is_empty() {
            row(&t.target, t.status.as_str(), &error);
            continue;
        }
        // Per-device command results, when the command was followed to its end.
        let followed = t.followed.as_ref().map_or(&[][..], |f| &f.devices[..]);
        for d in &t.devices {
            let found = followed.iter().find(|x| x.id == d.id);
            match found.map(|x| (x.state, x.reason.as_deref())) {
                Some((DeviceState::Pending, _)) => row(
                    &d.name,
                    "pending",
                    "still queued when the wait ended (offline?)",
                ),
                Some((state, reason)) if state != DeviceState::Succeeded => {
                    let what = match state {
                        DeviceState::TimedOut => "command timed out",
                        DeviceState::Cancelled => "command cancelled",
                        _ => "command failed",
                    };
                    let text = reason.map_or_else(|| what.to_string(), |r| format!("{what}: {r}"));
                    row(&d.name, "failed", &text);
                }
                _ => row(&d.name, t.status.as_str(), &error),
            }
        }
    }
    out
}

/// A field quoted when it holds a comma, a quote or a line break, quotes doubled.
fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

/// The id a task created or updated: an alarm rule's `id`, an app's `version_id`, an
/// upload's `content_id`, a command's `command_id`.
fn result_id(result: Option<&Value>) -> Option<String> {
    let obj = result?.as_object()?;
    ["id", "version_id", "content_id", "command_id"]
        .iter()
        .find_map(|k| match obj.get(*k)? {
            Value::String(s) => Some(s.clone()),
            Value::Number(n) => Some(n.to_string()),
            _ => None,
        })
}

// ---------------------------------------------------------------------------------------
// HTML

const STYLE: &str = "\
body{font:14px/1.45 system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;color:#1f2328;max-width:1100px;margin:24px auto;padding:0 16px}
h1{font-size:22px;margin:0 0 6px}
h2{font-size:17px;margin:28px 0 10px;padding-bottom:4px;border-bottom:1px solid #d0d7de}
p{margin:4px 0}
.muted{color:#57606a}
.badge{font-size:13px;font-weight:600;padding:2px 10px;border-radius:12px;color:#fff;background:#6e7781;vertical-align:middle}
.badge.succeeded{background:#1a7f37}.badge.failed{background:#cf222e}.badge.stopped{background:#bc4c00}
.cards{display:flex;flex-wrap:wrap;gap:8px;margin:10px 0}
.card{border:1px solid #d0d7de;border-left:4px solid #8c959f;border-radius:6px;padding:6px 12px;min-width:96px}
.card b{display:block;font-size:20px;font-variant-numeric:tabular-nums}
.card span{color:#57606a;font-size:12px}
.card.ok{border-left-color:#1a7f37}.card.bad{border-left-color:#cf222e}.card.warn{border-left-color:#bf8700}.card.zero{opacity:.5}
.alert{border:1px solid #ffb77c;background:#fff4e5;border-radius:6px;padding:8px 12px;margin:8px 0}
.alert ul{margin:6px 0}
table{border-collapse:collapse;width:100%}
th,td{border-bottom:1px solid #d0d7de;padding:5px 8px;text-align:left;vertical-align:top}
th{font-size:12px;color:#57606a;font-weight:600}
.n{text-align:right;font-variant-numeric:tabular-nums}
.nw{white-space:nowrap}.ex{min-width:15em}
.err{white-space:pre-wrap;overflow-wrap:anywhere;font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;font-size:12px}
code{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;font-size:12px;background:#f6f8fa;padding:1px 4px;border-radius:4px;overflow-wrap:anywhere}
.s-failed,.s-unknown{color:#cf222e;font-weight:600}.s-skipped,.s-not_started{color:#9a6700;font-weight:600}
svg{display:block;width:100%;height:auto}
svg text{font-family:system-ui,sans-serif;font-size:11px;fill:#57606a}
.grid{stroke:#eaeef2}.axis{stroke:#8c959f}
.req{fill:#9ec5f0}.rl{fill:#d1242f}
.win{fill:none;stroke:#e16f24;stroke-width:2}
.rate{fill:none;stroke:#6639ba;stroke-width:1.5;stroke-dasharray:6 4}
.legend{font-size:12px;color:#57606a;margin:4px 0 0}
.legend i{display:inline-block;width:14px;height:10px;margin:0 4px 0 14px;vertical-align:middle}
footer{margin:32px 0 16px;font-size:12px;color:#57606a}
";

/// `report.html`: one self-contained page (no external resources): summary cards, what
/// to do, a chart of the run's pacing, the steps and the failures. It is also well-formed
/// XML, which lets the tests check its structure without an HTML parser.
pub fn html(r: &Report) -> String {
    let s = &r.summary;
    let g = &r.governor;
    let groups = failure_groups(r);
    let mut out = String::new();
    let _ = write!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\"/>\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"/>\n\
         <title>{} {}: esper-bulk report</title>\n<style>\n{STYLE}</style>\n</head>\n<body>\n",
        esc(&r.run.job),
        esc(r.run.outcome.word())
    );
    let _ = writeln!(
        out,
        "<header>\n<h1>{} <span class=\"badge {}\">{}</span></h1>",
        esc(&r.run.job),
        esc(r.run.outcome.word()),
        esc(r.run.outcome.word())
    );
    let _ = writeln!(
        out,
        "<p>Exit code <b>{}</b>: {} · {} · <code>{}</code></p>",
        r.run.exit_code,
        esc(r.run.outcome.meaning()),
        esc(&duration(r.run.elapsed_ms)),
        esc(&r.run.server)
    );
    let _ = writeln!(
        out,
        "<p class=\"muted\">run <code>{}</code> of <code>{}</code> · started {} · finished {}</p>\n</header>",
        esc(&r.run.id),
        esc(&r.run.source),
        esc(&moment(&r.run.started_at)),
        esc(&moment(&r.run.finished_at))
    );

    // Zero counts are muted; the colour says whether a non-zero count is good or bad.
    let tone = |n: u64, hue: &'static str| if n == 0 { "zero" } else { hue };
    let mut cards: Vec<(&str, String, &str)> = vec![
        ("", s.tasks.to_string(), "tasks"),
        (
            tone(s.succeeded, "ok"),
            s.succeeded.to_string(),
            "succeeded",
        ),
        (tone(s.failed, "bad"), s.failed.to_string(), "failed"),
        (tone(s.unknown, "bad"), s.unknown.to_string(), "unknown"),
        (tone(s.skipped, "warn"), s.skipped.to_string(), "skipped"),
        (
            tone(s.not_started, "warn"),
            s.not_started.to_string(),
            "not started",
        ),
    ];
    out.push_str("<div class=\"cards\">\n");
    for (class, value, label) in cards.drain(..) {
        card(&mut out, class, &value, label);
    }
    cards.extend([
        ("", s.requests.to_string(), "requests"),
        ("", s.retries.to_string(), "retries"),
        (
            tone(s.rate_limited, "warn"),
            s.rate_limited.to_string(),
            "answered 429",
        ),
        ("", format!("{:.1}/s", s.mean_rate), "mean rate"),
        (
            "",
            format!("{}..{}", g.window_min, g.window_max),
            "in-flight window",
        ),
    ]);
    if let Some(rate) = g.adaptive_rate {
        cards.push(("warn", format!("{rate:.1}/s"), "adaptive rate"));
    }
    if g.paused_ms > 0 {
        cards.push(("warn", duration(g.paused_ms), "paused after 429s"));
    }
    out.push_str("</div>\n<div class=\"cards\">\n");
    for (class, value, label) in cards {
        card(&mut out, class, &value, label);
    }
    out.push_str("</div>\n");

    if !r.run.rollout_stops.is_empty() {
        out.push_str("<h2>Rollout stops</h2>\n");
        for stop in stops(r) {
            let _ = writeln!(
                out,
                "<div class=\"alert\">\n<p>{}</p>",
                html_line(&stop_line(stop.stop))
            );
            if !stop.tasks.is_empty() {
                out.push_str("<ul>\n");
                for t in stop.tasks.iter().take(CANARIES) {
                    let _ = writeln!(
                        out,
                        "<li><code>{}</code> #{} <span class=\"s-{}\">{}</span>: <span class=\"err\">{}</span></li>",
                        esc(&t.target),
                        t.id,
                        t.status.as_str(),
                        t.status.as_str(),
                        esc(&error_of(t))
                    );
                }
                if stop.tasks.len() > CANARIES {
                    let _ = writeln!(out, "<li>… and {} more</li>", stop.tasks.len() - CANARIES);
                }
                out.push_str("</ul>\n");
            }
            out.push_str("</div>\n");
        }
    }

    out.push_str("<h2>What to do next</h2>\n<ul>\n");
    for line in advice(r, &groups) {
        let _ = writeln!(out, "<li>{}</li>", html_line(&line));
    }
    out.push_str("</ul>\n");

    out.push_str("<h2>Requests over time</h2>\n");
    out.push_str(&chart(&g.timeline));

    out.push_str(
        "<h2>Steps</h2>\n<table>\n<tr><th>step</th><th>kind</th><th class=\"n\">tasks</th>\
         <th class=\"n\">succeeded</th><th class=\"n\">failed</th><th class=\"n\">unknown</th>\
         <th class=\"n\">skipped</th><th class=\"n\">not started</th><th class=\"n\">attempts</th>\
         <th class=\"n\">time</th></tr>\n",
    );
    for row in step_rows(r) {
        let _ = write!(
            out,
            "<tr><td class=\"nw\"><code>{}</code></td><td>{}</td><td class=\"n\">{}</td>",
            esc(&row.id),
            esc(&row.kind),
            row.tasks
        );
        for status in ["succeeded", "failed", "unknown", "skipped", "not_started"] {
            let n = row.count(status);
            if n == 0 || status == "succeeded" {
                let _ = write!(out, "<td class=\"n\">{n}</td>");
            } else {
                let _ = write!(out, "<td class=\"n s-{status}\">{n}</td>");
            }
        }
        let _ = writeln!(
            out,
            "<td class=\"n\">{}</td><td class=\"n\">{}</td></tr>",
            row.attempts,
            row.time()
        );
    }
    out.push_str("</table>\n");

    out.push_str("<h2>What failed and why</h2>\n");
    if groups.is_empty() {
        out.push_str("<p>Nothing failed.</p>\n");
    } else {
        out.push_str(
            "<table>\n<tr><th class=\"n\">tasks</th><th>status</th><th>step</th><th>error</th><th>examples</th></tr>\n",
        );
        for grp in groups.iter().take(MAX_GROUPS) {
            let steps: Vec<String> = grp
                .steps
                .iter()
                .map(|s| format!("<code>{}</code>", esc(s)))
                .collect();
            let mut examples: Vec<String> = grp
                .tasks
                .iter()
                .take(EXAMPLES)
                .map(|t| format!("<code>{}</code> #{}", esc(&t.target), t.id))
                .collect();
            if grp.tasks.len() > EXAMPLES {
                examples.push(format!("… and {} more", grp.tasks.len() - EXAMPLES));
            }
            let _ = writeln!(
                out,
                "<tr><td class=\"n\">{}</td><td class=\"s-{}\">{}</td><td class=\"nw\">{}</td><td class=\"err\">{}</td><td class=\"ex\">{}</td></tr>",
                grp.tasks.len(),
                grp.status.as_str(),
                grp.status.as_str(),
                steps.join(", "),
                esc(&grp.error),
                examples.join("<br/>")
            );
        }
        out.push_str("</table>\n");
        if groups.len() > MAX_GROUPS {
            let rest = &groups[MAX_GROUPS..];
            let _ = writeln!(
                out,
                "<p>… and {} more distinct errors ({} tasks) in <code>results.csv</code>.</p>",
                rest.len(),
                rest.iter().map(|g| g.tasks.len()).sum::<usize>()
            );
        }
    }
    if s.not_started > 0 {
        let _ = writeln!(
            out,
            "<p>{} not started: the run stopped before their first request.</p>",
            tasks_word(s.not_started)
        );
    }
    let _ = writeln!(
        out,
        "<footer>esper-bulk report format {} · every task is in <code>results.csv</code>; \
         <code>report.json</code> holds the full record</footer>\n</body>\n</html>",
        r.format
    );
    out
}

fn html_line(line: &[Frag]) -> String {
    line.iter()
        .map(|f| match f {
            Frag::Text(t) => esc(t),
            Frag::Code(c) => format!("<code>{}</code>", esc(c)),
        })
        .collect()
}

fn card(out: &mut String, class: &str, value: &str, label: &str) {
    let _ = writeln!(
        out,
        "<div class=\"card {class}\"><b>{}</b><span>{}</span></div>",
        esc(value),
        esc(label)
    );
}

/// Escapes text for HTML element content and quoted attribute values.
fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            // Kept out so the page stays well-formed XML too (see `html`).
            c if (c as u32) < 0x20 && !matches!(c, '\n' | '\r' | '\t') => {}
            '\u{FFFE}' | '\u{FFFF}' => {}
            c => out.push(c),
        }
    }
    out
}

// Chart geometry, in SVG user units; the SVG scales to the page width.
const W: f64 = 960.0;
const H: f64 = 280.0;
const LEFT: f64 = 52.0;
const RIGHT: f64 = 52.0;
const TOP: f64 = 18.0;
const BOTTOM: f64 = 34.0;

/// The timeline as an inline SVG: requests per second as bars with the part answered 429
/// in red, the in-flight window as a step line on the right axis, and the adaptive send
/// rate (when the API throttled) as a dashed step line on the left axis. One `req` bar per
/// sample, so the number of data points can be checked.
fn chart(timeline: &[SampleReport]) -> String {
    let mut out = String::new();
    let (pw, ph) = (W - LEFT - RIGHT, H - TOP - BOTTOM);
    if timeline.is_empty() {
        let _ = writeln!(
            out,
            "<svg viewBox=\"0 0 {W} 48\" role=\"img\" aria-label=\"no timeline\">\n\
             <rect x=\"{LEFT}\" y=\"4\" width=\"{pw}\" height=\"40\" fill=\"#f6f8fa\"/>\n\
             <text x=\"{}\" y=\"28\" text-anchor=\"middle\">no requests were sampled in this run</text>\n</svg>",
            LEFT + pw / 2.0
        );
        return out;
    }
    let _ = writeln!(
        out,
        "<svg viewBox=\"0 0 {W} {H}\" role=\"img\" aria-label=\"requests per second, answers 429 and in-flight window over the run\">"
    );
    // Samples are one second apart until a long run halves their resolution; the smallest
    // gap is the sample length, and values are shown per second whatever it is.
    let step = timeline
        .windows(2)
        .map(|w| w[1].t.saturating_sub(w[0].t))
        .filter(|d| *d > 0)
        .min()
        .unwrap_or(1) as f64;
    let t0 = timeline[0].t as f64;
    let span = (timeline[timeline.len() - 1].t as f64 + step - t0).max(1.0);
    let x = |t: f64| LEFT + (t - t0) / span * pw;
    let per_s = |n: u32| n as f64 / step;
    let peak = timeline
        .iter()
        .map(|s| {
            per_s(s.requests)
                .max(per_s(s.rate_limited))
                .max(s.rate.unwrap_or(0.0))
        })
        .fold(0.0, f64::max);
    let (lstep, lmax) = nice_axis(peak);
    let (rstep, rmax) = nice_axis(timeline.iter().map(|s| s.window).max().unwrap_or(0) as f64);
    let yl = |v: f64| TOP + ph - v / lmax * ph;
    let yr = |v: f64| TOP + ph - v / rmax * ph;

    // Grid and axes.
    let mut v = 0.0;
    while v <= lmax + 1e-9 {
        let y = yl(v);
        let _ = writeln!(
            out,
            "<line class=\"grid\" x1=\"{LEFT}\" x2=\"{:.1}\" y1=\"{y:.1}\" y2=\"{y:.1}\"/><text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>",
            LEFT + pw,
            LEFT - 6.0,
            y + 4.0,
            num(v)
        );
        v += lstep;
    }
    let mut v = 0.0;
    while v <= rmax + 1e-9 {
        let _ = writeln!(
            out,
            "<text x=\"{:.1}\" y=\"{:.1}\" style=\"fill:#e16f24\">{}</text>",
            LEFT + pw + 6.0,
            yr(v) + 4.0,
            num(v)
        );
        v += rstep;
    }
    let xstep = time_step(span);
    let mut t = (t0 / xstep).ceil() * xstep;
    while t <= t0 + span + 1e-9 {
        let _ = writeln!(
            out,
            "<line class=\"axis\" x1=\"{0:.1}\" x2=\"{0:.1}\" y1=\"{1:.1}\" y2=\"{2:.1}\"/><text x=\"{0:.1}\" y=\"{3:.1}\" text-anchor=\"middle\">{4}</text>",
            x(t),
            TOP + ph,
            TOP + ph + 4.0,
            TOP + ph + 16.0,
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
        right = LEFT + pw,
        base = TOP + ph,
        top = TOP - 6.0,
        edge = W - 4.0,
        mid = LEFT + pw / 2.0,
        bottom = H - 4.0
    );

    // Bars: requests, then the 429s over them (at least 2 units high so one is visible).
    let bar = (step / span * pw * 0.8).max(0.5);
    // A tooltip per bar helps while bars are wide enough to point at; on a long run they
    // are a pixel wide and the titles would be most of the page's weight.
    let titled = timeline.len() <= 600;
    for s in timeline {
        let bx = x(s.t as f64) + (step / span * pw - bar) / 2.0;
        let h = per_s(s.requests) / lmax * ph;
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
        let _ = write!(
            out,
            "<rect class=\"req\" x=\"{bx:.1}\" y=\"{:.1}\" width=\"{bar:.1}\" height=\"{h:.1}\"",
            TOP + ph - h
        );
        if titled {
            let _ = writeln!(out, "><title>{}</title></rect>", esc(&title));
        } else {
            out.push_str("/>\n");
        }
        if s.rate_limited > 0 {
            let h = (per_s(s.rate_limited) / lmax * ph).max(2.0);
            let _ = writeln!(
                out,
                "<rect class=\"rl\" x=\"{bx:.1}\" y=\"{:.1}\" width=\"{bar:.1}\" height=\"{h:.1}\"/>",
                TOP + ph - h
            );
        }
    }

    // Step lines: a value holds for its whole sample.
    let mut win = String::new();
    for (i, s) in timeline.iter().enumerate() {
        let (a, b) = (x(s.t as f64), x(s.t as f64 + step));
        let cmd = if i == 0 { 'M' } else { 'L' };
        let _ = write!(win, "{cmd}{a:.1} {:.1} H{b:.1} ", yr(s.window as f64));
    }
    let _ = writeln!(out, "<path class=\"win\" d=\"{}\"/>", win.trim_end());
    let mut rate = String::new();
    let mut open = false;
    for s in timeline {
        match s.rate {
            Some(v) => {
                let (a, b) = (x(s.t as f64), x(s.t as f64 + step));
                let cmd = if open { 'L' } else { 'M' };
                let _ = write!(rate, "{cmd}{a:.1} {:.1} H{b:.1} ", yl(v));
                open = true;
            }
            None => open = false,
        }
    }
    if !rate.is_empty() {
        let _ = writeln!(out, "<path class=\"rate\" d=\"{}\"/>", rate.trim_end());
    }
    out.push_str("</svg>\n<p class=\"legend\"><i style=\"background:#9ec5f0\"></i>requests/s<i style=\"background:#d1242f\"></i>answered 429<i style=\"background:#e16f24;height:3px\"></i>in-flight window (right axis)");
    if timeline.iter().any(|s| s.rate.is_some()) {
        out.push_str("<i style=\"border-top:2px dashed #6639ba;height:0\"></i>adaptive send rate");
    }
    out.push_str("</p>\n");
    out
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

// ---------------------------------------------------------------------------------------
// What every format shares: derived facts and advice.

/// A run's start or end for people: to the second, as the engine records nanoseconds.
/// Text that is not a timestamp is shown as it is.
fn moment(s: &str) -> String {
    match s.parse::<jiff::Timestamp>() {
        Ok(ts) => ts
            .round(jiff::Unit::Second)
            .map_or_else(|_| ts.to_string(), |t| t.to_string()),
        Err(_) => s.to_string(),
    }
}

/// A human duration: `9.7s` under a minute, `12m 05s` under an hour, then `2h 03m`.
fn duration(ms: u64) -> String {
    let s = ms / 1000;
    if ms < 60_000 {
        format!("{:.1}s", ms as f64 / 1000.0)
    } else if s < 3600 {
        format!("{}m {:02}s", s / 60, s % 60)
    } else {
        format!("{}h {:02}m", s / 3600, s % 3600 / 60)
    }
}

fn times(n: u64) -> String {
    match n {
        1 => "once".into(),
        2 => "twice".into(),
        n => format!("{n} times"),
    }
}

fn tasks_word(n: u64) -> String {
    if n == 1 {
        "1 task".into()
    } else {
        format!("{n} tasks")
    }
}

/// From the first attempt's start to the last attempt's end, in ms since the run started.
fn span_ms(attempts: &[AttemptReport]) -> Option<(u64, u64)> {
    let start = attempts.iter().map(|a| a.at_ms).min()?;
    let end = attempts.iter().map(|a| a.at_ms + a.took_ms).max()?;
    Some((start, end.max(start)))
}

fn summary_rows(r: &Report) -> Vec<(&'static str, String)> {
    let (s, g) = (&r.summary, &r.governor);
    let mut rows = vec![
        ("tasks", s.tasks.to_string()),
        ("succeeded", s.succeeded.to_string()),
        ("failed", s.failed.to_string()),
        ("unknown", s.unknown.to_string()),
        ("skipped", s.skipped.to_string()),
        ("not started", s.not_started.to_string()),
        ("requests", s.requests.to_string()),
        ("retries", s.retries.to_string()),
        ("answered 429", s.rate_limited.to_string()),
        ("mean rate", format!("{:.1} req/s", s.mean_rate)),
        (
            "peak rate",
            format!("{:.0} req/s in one second", s.peak_rate),
        ),
        (
            "in-flight window",
            format!(
                "{}..{} ({} changes)",
                g.window_min, g.window_max, g.window_changes
            ),
        ),
    ];
    if let Some(rate) = g.adaptive_rate {
        rows.push(("adaptive send rate", format!("{rate:.1} req/s at the end")));
    }
    if g.paused_ms > 0 {
        rows.push(("paused after 429s", duration(g.paused_ms)));
    }
    if !g.by_status.is_empty() {
        let parts: Vec<String> = g
            .by_status
            .iter()
            .map(|(k, v)| format!("{k}: {v}"))
            .collect();
        rows.push(("answers by status", parts.join(", ")));
    }
    rows
}

struct StepRow {
    id: String,
    kind: String,
    tasks: u64,
    by_status: BTreeMap<String, u64>,
    attempts: usize,
    span: Option<(u64, u64)>,
}

impl StepRow {
    fn count(&self, status: &str) -> u64 {
        self.by_status.get(status).copied().unwrap_or(0)
    }

    fn time(&self) -> String {
        self.span.map_or("-".into(), |(a, b)| duration(b - a))
    }
}

/// The report's steps with their attempts and active time, plus a row for any step a
/// task names that the step list lacks, so no task drops out of the JUnit file.
fn step_rows(r: &Report) -> Vec<StepRow> {
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

/// Tasks that did not succeed for the same cause: one status, one step, and one failure
/// class and HTTP status (or one kind of reason for tasks that did not run).
struct Group<'a> {
    status: TaskStatus,
    /// What the group's tasks have in common, for people: the first task's error with
    /// ids masked, or the devices of every task added up.
    error: String,
    steps: Vec<&'a str>,
    tasks: Vec<&'a TaskReport>,
}

/// The kind of a task's reason, with the failure's class and HTTP status: what groups it.
fn cause(t: &TaskReport) -> (u8, Option<FailureClass>, Option<u16>) {
    match &t.reason {
        Some(ReasonReport::Failed { failure, .. }) => (0, Some(failure.class), failure.http_status),
        Some(ReasonReport::DeviceFailures { .. }) => (1, None, None),
        Some(ReasonReport::NeedsFailed { .. }) => (2, None, None),
        Some(ReasonReport::RolloutStopped { .. }) => (3, None, None),
        Some(ReasonReport::NotStarted { .. }) => (4, None, None),
        Some(ReasonReport::NotRecorded) => (5, None, None),
        Some(ReasonReport::Abandoned) => (6, None, None),
        None => (7, None, None),
    }
}

/// A task's error for people, or a placeholder when none was recorded.
fn error_of(t: &TaskReport) -> String {
    t.error_text()
        .unwrap_or_else(|| "no error recorded".to_string())
}

/// Failed, unknown and skipped tasks grouped by status, step and cause (failure class and
/// HTTP status, or the kind of reason): failed first, then unknown, then skipped; the
/// largest groups first, ties in plan order. Message text never splits a group: the
/// group shows its first message and says how many others there are.
fn failure_groups(r: &Report) -> Vec<Group<'_>> {
    type Key<'a> = (TaskStatus, &'a str, (u8, Option<FailureClass>, Option<u16>));
    let mut members: Vec<(Key, Vec<&TaskReport>)> = Vec::new();
    let mut index: BTreeMap<Key, usize> = BTreeMap::new();
    for t in &r.tasks {
        if !matches!(
            t.status,
            TaskStatus::Failed | TaskStatus::Unknown | TaskStatus::Skipped
        ) {
            continue;
        }
        let key = (t.status, t.step.as_str(), cause(t));
        let i = *index.entry(key).or_insert_with(|| {
            members.push((key, Vec::new()));
            members.len() - 1
        });
        members[i].1.push(t);
    }
    let mut groups: Vec<Group> = members
        .into_iter()
        .map(|((status, step, _), tasks)| Group {
            status,
            error: group_error(&tasks),
            steps: vec![step],
            tasks,
        })
        .collect();
    let rank = |s: TaskStatus| match s {
        TaskStatus::Failed => 0,
        TaskStatus::Unknown => 1,
        _ => 2,
    };
    groups.sort_by_key(|g| (rank(g.status), std::cmp::Reverse(g.tasks.len())));
    groups
}

/// What a group's tasks share, in words: their devices added up for device failures,
/// else the first message (ids masked) and how many other messages there are.
fn group_error(tasks: &[&TaskReport]) -> String {
    let counts: Vec<&DeviceCountsReport> = tasks
        .iter()
        .filter_map(|t| match &t.reason {
            Some(ReasonReport::DeviceFailures { counts }) => Some(counts),
            _ => None,
        })
        .collect();
    if !counts.is_empty() && counts.len() == tasks.len() {
        let mut sum = DeviceCountsReport::default();
        for c in counts {
            sum.add(c);
        }
        return sum.to_string();
    }
    let mut messages: Vec<String> = Vec::new();
    for t in tasks {
        let m = mask_ids(&error_of(t));
        if !messages.contains(&m) {
            messages.push(m);
        }
    }
    let mut error = messages.first().cloned().unwrap_or_default();
    match messages.len() {
        0 | 1 => {}
        2 => error.push_str(" (and 1 other message in results.csv)"),
        n => {
            let _ = write!(error, " (and {} other messages in results.csv)", n - 1);
        }
    }
    error
}

/// Replaces UUIDs (Esper's group, device, app and enterprise ids, which appear in request
/// paths) with `<id>`, so tasks that differ only in their ids show one message.
fn mask_ids(s: &str) -> String {
    fn is_uuid(b: &[u8]) -> bool {
        b.iter().enumerate().all(|(k, c)| {
            if matches!(k, 8 | 13 | 18 | 23) {
                *c == b'-'
            } else {
                c.is_ascii_hexdigit()
            }
        })
    }
    let b = s.as_bytes();
    let (mut out, mut i, mut last) = (String::with_capacity(s.len()), 0, 0);
    while i + 36 <= b.len() {
        let bounded = (i == 0 || !b[i - 1].is_ascii_alphanumeric())
            && b.get(i + 36).is_none_or(|c| !c.is_ascii_alphanumeric());
        if bounded && is_uuid(&b[i..i + 36]) {
            out.push_str(&s[last..i]);
            out.push_str("<id>");
            i += 36;
            last = i;
        } else {
            i += 1;
        }
    }
    out.push_str(&s[last..]);
    out
}

/// A rollout stop and the tasks of its step that failed before it.
struct Stop<'a> {
    stop: &'a StopReport,
    tasks: Vec<&'a TaskReport>,
}

/// The rollout stops with their failing canary tasks.
fn stops(r: &Report) -> Vec<Stop<'_>> {
    r.run
        .rollout_stops
        .iter()
        .map(|stop| Stop {
            stop,
            tasks: r
                .tasks
                .iter()
                .filter(|t| {
                    t.step == stop.step
                        && matches!(t.status, TaskStatus::Failed | TaskStatus::Unknown)
                })
                .collect(),
        })
        .collect()
}

/// A rollout stop as a line, its step as code.
fn stop_line(s: &StopReport) -> Vec<Frag> {
    vec![
        t("rollout of step "),
        c(s.step.clone()),
        t(format!(
            " stopped after stage {} of {}: {} failures exceed max_failures ({} of {} allowed)",
            s.stage, s.stages, s.failed, s.allowed, s.total
        )),
    ]
}

/// A piece of advice text: prose, or an identifier/command shown as code.
enum Frag {
    Text(String),
    Code(String),
}

fn t(s: impl Into<String>) -> Frag {
    Frag::Text(s.into())
}

fn c(s: impl Into<String>) -> Frag {
    Frag::Code(s.into())
}

/// Concrete next steps, most urgent first, each derived from the report's data.
fn advice(r: &Report, groups: &[Group]) -> Vec<Vec<Frag>> {
    let s = &r.summary;
    let g = &r.governor;
    let mut out: Vec<Vec<Frag>> = Vec::new();
    let bad: Vec<&TaskReport> = r
        .tasks
        .iter()
        .filter(|t| matches!(t.status, TaskStatus::Failed | TaskStatus::Unknown))
        .collect();
    let failing = |is: &dyn Fn(&FailureReport) -> bool| {
        bad.iter().filter(|t| t.failure().is_some_and(is)).count() as u64
    };
    let with_status = |code: u16| failing(&|f| f.http_status == Some(code));
    let with_class = |class: FailureClass| failing(&|f| f.class == class);
    let examples = |tasks: &[&TaskReport]| -> Vec<Frag> {
        let mut v = Vec::new();
        for (i, t) in tasks.iter().take(EXAMPLES).enumerate() {
            v.push(self::t(if i == 0 { " (" } else { ", " }));
            v.push(c(t.target.clone()));
        }
        if tasks.len() > EXAMPLES {
            v.push(self::t(format!(" and {} more", tasks.len() - EXAMPLES)));
        }
        if !tasks.is_empty() {
            v.push(self::t(")"));
        }
        v
    };

    if s.unknown > 0 {
        let unknown: Vec<&TaskReport> = r
            .tasks
            .iter()
            .filter(|t| t.status == TaskStatus::Unknown)
            .collect();
        let mut line = vec![t(format!(
            "{} ended unknown: the write may have been applied without an answer reaching the engine. \
             Check these targets in the tenant (Esper console or API) before you re-run the job, \
             so nothing is created twice",
            tasks_word(s.unknown)
        ))];
        line.extend(examples(&unknown));
        line.push(t("."));
        out.push(line);
    }
    for stop in stops(r) {
        let mut line = vec![
            t("A rollout stopped at its threshold in step "),
            c(stop.stop.step.clone()),
        ];
        line.push(t(
            ": investigate the failing canary devices listed under Rollout stops before you re-run the job; \
             its later stages were skipped and nothing was sent to them",
        ));
        line.extend(examples(&stop.tasks));
        line.push(t("."));
        out.push(line);
    }
    let auth = with_status(401).max(g.by_status.get("401").copied().unwrap_or(0));
    if auth > 0 {
        out.push(vec![
            t(format!(
                "The API answered 401 (unauthorized) {}: check that ",
                times(auth)
            )),
            c("ESPER_API_KEY"),
            t(" (or "),
            c("esper.api_key_file"),
            t(") holds a valid key for "),
            c(r.run.server.clone()),
            t(", then re-run the job."),
        ]);
    }
    let forbidden = with_status(403);
    if forbidden > 0 {
        out.push(vec![t(format!(
            "{} failed with 403: the API key lacks the permission for these calls; widen its scope in the Esper console.",
            tasks_word(forbidden)
        ))]);
    }
    let missing = with_status(404);
    if missing > 0 {
        out.push(vec![
            t(format!(
                "{} failed with 404: check the enterprise id (",
                tasks_word(missing)
            )),
            c("ESPER_ENTERPRISE_ID"),
            t("), the tenant and the ids in the job file."),
        ]);
    }
    if s.rate_limited >= 10 && s.rate_limited * 10 >= s.requests {
        // What the server let through: the adaptive rate can end above it after regrowing,
        // the mean includes the pauses; the lower of the two is a safe setting.
        let target = g
            .adaptive_rate
            .map_or(s.mean_rate, |a| a.min(s.mean_rate))
            .floor()
            .max(1.0);
        out.push(vec![
            t(format!(
                "{} of {} requests ({:.0} %) were answered 429 and the run paused {} for them: lower ",
                s.rate_limited,
                s.requests,
                s.rate_limited as f64 * 100.0 / s.requests.max(1) as f64,
                duration(g.paused_ms)
            )),
            c("limits.rate"),
            t(" in the job to about "),
            c(format!("{target:.0}/s")),
            t(", the rate the server actually sustained."),
        ]);
    }
    let timeouts = with_class(FailureClass::Timeout);
    if timeouts > 0 {
        out.push(vec![
            t(format!("{} timed out: raise ", tasks_word(timeouts))),
            c("--timeout"),
            t(" or lower "),
            c("limits.rate"),
            t("."),
        ]);
    }
    let connect = with_class(FailureClass::Connect);
    if connect > 0 {
        out.push(vec![
            t(format!(
                "{} could not connect: check the base URL, proxy settings (",
                tasks_word(connect)
            )),
            c("HTTPS_PROXY"),
            t(") and the network."),
        ]);
    }
    // Unknown tasks also carry their 5xx, but re-running them blindly is what the
    // advice above warns against; only failed ones are safe to call transient.
    let server = bad
        .iter()
        .filter(|t| {
            t.status == TaskStatus::Failed
                && t.failure()
                    .and_then(|f| f.http_status)
                    .is_some_and(|s| s >= 500)
        })
        .count() as u64;
    if server > 0 {
        out.push(vec![t(format!(
            "{} failed on server errors (5xx) after their retries; these are often transient: re-run the job later.",
            tasks_word(server)
        ))]);
    }
    if s.failed > 0 {
        let ways = groups
            .iter()
            .filter(|g| g.status == TaskStatus::Failed)
            .count();
        out.push(vec![
            t(format!(
                "{} failed in {ways} distinct {} (see What failed and why; every task is in ",
                tasks_word(s.failed),
                if ways == 1 { "way" } else { "ways" }
            )),
            c("results.csv"),
            t("): fix the cause, in the job or on the devices, then re-run the job."),
        ]);
    }
    let needs = r
        .tasks
        .iter()
        .filter(|t| {
            t.status == TaskStatus::Skipped
                && matches!(t.reason, Some(ReasonReport::NeedsFailed { .. }))
        })
        .count() as u64;
    if needs > 0 {
        out.push(vec![t(format!(
            "{} skipped because a step they need did not succeed; they run when you re-run the job once that step succeeds.",
            tasks_word(needs)
        ))]);
    }
    if s.not_started > 0 {
        let why = |stop: StopReason| {
            r.tasks.iter().any(|t| {
                t.status == TaskStatus::NotStarted
                    && t.reason
                        == Some(ReasonReport::NotStarted {
                            stopped: Some(stop),
                        })
            })
        };
        let mut line = vec![t(format!(
            "{} not started: re-run the job to finish them",
            tasks_word(s.not_started)
        ))];
        if why(StopReason::Deadline) || r.run.outcome == RunOutcome::Deadline {
            line.extend([
                t("; the run reached its deadline, so if that keeps happening raise "),
                c("deadline"),
                t(" or split the job"),
            ]);
        } else if why(StopReason::Interrupted) || r.run.outcome == RunOutcome::Interrupted {
            line.push(t("; the run was interrupted"));
        }
        line.push(t("."));
        out.push(line);
    }
    let clean = r.run.outcome == RunOutcome::Succeeded;
    if out.is_empty() {
        out.push(vec![t(if clean {
            "Nothing: every task succeeded."
        } else {
            "Nothing the report can point to; read report.json and the logs of the run."
        })]);
    } else if clean {
        out.insert(0, vec![t("Every task succeeded; for a smoother next run:")]);
    }
    out
}
