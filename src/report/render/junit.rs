//! `report.xml`: JUnit XML for CI dashboards; one suite per step, one case per task.
//!
//! Failed tasks are `<failure>`s, unknown ones `<error>`s (the write may have been
//! applied), skipped and never-started ones `<skipped>`; a rollout stop lands on its
//! step's suite as `<system-err>`. Messages are the tasks' plain problem text
//! ([`TaskReport::error_text`]); what this file owns is the XML shape and XML 1.0
//! escaping.

use std::fmt::Write as _;

use super::view::{StepRow, span_ms, step_rows};
use crate::exec::TaskStatus;
use crate::report::{Report, TaskReport};

/// `report.xml` of a report.
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
        s.skipped + s.not_started + s.interrupted,
        seconds(r.run.elapsed_ms),
        xml(&r.run.started_at)
    );
    for row in step_rows(r) {
        suite(&mut out, r, &row);
    }
    out.push_str("</testsuites>\n");
    out
}

/// One step's suite: its counts, properties, cases and rollout stops.
fn suite(out: &mut String, r: &Report, row: &StepRow) {
    let tasks: Vec<&TaskReport> = r.tasks.iter().filter(|t| t.step == row.id).collect();
    let n = |st: &[TaskStatus]| tasks.iter().filter(|t| st.contains(&t.status)).count();
    let _ = writeln!(
        out,
        "  <testsuite name=\"{}\" tests=\"{}\" failures=\"{}\" errors=\"{}\" skipped=\"{}\" time=\"{}\" timestamp=\"{}\">",
        xml(&row.id),
        tasks.len(),
        n(&[TaskStatus::Failed]),
        n(&[TaskStatus::Unknown]),
        n(&[
            TaskStatus::Skipped,
            TaskStatus::NotStarted,
            TaskStatus::Interrupted
        ]),
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
        case(out, &class, t);
    }
    let mine: Vec<String> = r
        .run
        .rollout_stops
        .iter()
        .filter(|s| s.step == row.id)
        .map(|s| s.to_string())
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

/// One task's case, with its failure, error or skip.
fn case(out: &mut String, class: &str, t: &TaskReport) {
    let head = format!(
        "    <testcase classname=\"{class}\" name=\"{}\" time=\"{}\"",
        xml(&format!("{} #{}", t.target, t.id)),
        seconds(span_ms(&t.attempts).map_or(0, |(a, b)| b - a))
    );
    let error = t.error_line().plain();
    // The last attempt's answer (`400`, `timeout`); a task whose write was accepted but
    // failed afterwards (devices failing a command) is just `failed`.
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
                xml(&error),
                xml(&kind),
                xml_text(&failure_body(t, &error))
            );
        }
        // Not run to the end, which CI should neither pass nor fail.
        TaskStatus::Skipped | TaskStatus::NotStarted | TaskStatus::Interrupted => {
            let _ = writeln!(
                out,
                "{head}>\n      <skipped message=\"{}\"/>\n    </testcase>",
                xml(&error)
            );
        }
    }
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

/// Milliseconds as JUnit's seconds: `1.250`.
fn seconds(ms: u64) -> String {
    format!("{}.{:03}", ms / 1000, ms % 1000)
}
