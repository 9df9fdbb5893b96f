//! `report.md`: the summary a person reads the morning after an unattended run.
//!
//! It lays out the [`View`] as GitHub-flavoured Markdown, in reading order: headline,
//! summary table, rollout stops, steps, what failed and why, what to do next. It phrases
//! nothing itself; what it owns is the layout and Markdown's escaping, so that text from
//! a server, a job file or a tenant can never start markup or break a table row.

use std::fmt::Write as _;

use super::text::{Frag, Line};
use super::view::View;
use crate::report::{Report, TaskReport};

/// `report.md` of a report.
pub fn markdown(r: &Report) -> String {
    let v = View::of(r);
    let mut out = String::new();
    head(&mut out, &v);
    summary(&mut out, &v);
    stops(&mut out, &v);
    steps(&mut out, &v);
    failures(&mut out, &v);
    out.push_str("\n## What to do next\n\n");
    for line in &v.advice {
        let _ = writeln!(out, "- {}", md_line(line, false));
    }
    out
}

fn head(out: &mut String, v: &View) {
    let word = md_text(v.report.run.outcome.word());
    let _ = writeln!(out, "# {}: {word}\n", md_text(&v.report.run.job));
    let _ = writeln!(out, "**{word}**: {}\n", md_line(&v.headline, false));
    let _ = writeln!(
        out,
        "{} {}\n",
        md_line(&v.run, false),
        md_line(&v.records, false)
    );
    if let Some(limit) = &v.limit {
        let _ = writeln!(out, "{}\n", md_line(limit, false));
    }
    if !v.segments.is_empty() {
        out.push_str("## Segments\n\n");
        for line in &v.segments {
            let _ = writeln!(out, "- {}", md_line(line, false));
        }
        out.push('\n');
    }
}

fn summary(out: &mut String, v: &View) {
    out.push_str("## Summary\n\n| measure | value |\n| --- | ---: |\n");
    for m in &v.measures {
        let value = match &m.detail {
            Some(d) => format!("{} {d}", m.value),
            None => m.value.clone(),
        };
        let _ = writeln!(out, "| {} | {} |", md_text(m.label), md_text(&value));
    }
}

fn stops(out: &mut String, v: &View) {
    if v.stops.is_empty() {
        return;
    }
    out.push_str("\n## Rollout stops\n\n");
    for stop in &v.stops {
        let _ = writeln!(out, "- {}", md_line(&stop.line, false));
        for c in &stop.canaries {
            let _ = writeln!(
                out,
                "  - {} #{} {}: {}",
                code(&c.task.target, false),
                c.task.id,
                c.task.status.as_str(),
                md_line(&c.error, false)
            );
        }
        if let Some(more) = &stop.more {
            let _ = writeln!(out, "  - {}", md_text(more));
        }
    }
}

fn steps(out: &mut String, v: &View) {
    // The column only appears for runs stopped mid-wait, so other reports read as before.
    let interrupted = v.report.summary.interrupted > 0;
    let (head, rule) = if interrupted {
        (" interrupted |", " ---: |")
    } else {
        ("", "")
    };
    let _ = write!(
        out,
        "\n## Steps\n\n| step | kind | tasks | succeeded | failed | unknown | skipped | not started |{head} attempts | time |\n\
         | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |{rule} ---: | ---: |\n",
    );
    for row in &v.steps {
        let extra = if interrupted {
            format!(" {} |", row.count("interrupted"))
        } else {
            String::new()
        };
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | {} | {} |{extra} {} | {} |",
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
}

fn failures(out: &mut String, v: &View) {
    out.push_str("\n## What failed and why\n\n");
    if !v.groups.is_empty() {
        out.push_str(
            "| tasks | devices | status | step | error | examples | next action |\n| ---: | ---: | --- | --- | --- | --- | --- |\n",
        );
    }
    for g in &v.groups {
        let steps: Vec<String> = g.steps.iter().map(|s| code(s, true)).collect();
        let (shown, more) = g.examples();
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | {} |",
            g.tasks.len(),
            g.devices,
            g.status.as_str(),
            steps.join(", "),
            md_line(&g.error, true),
            examples(shown, more.as_deref()),
            md_line(&g.next, true)
        );
    }
    for (i, note) in v.failure_notes.iter().enumerate() {
        // A paragraph after the table, or after the note before it.
        if i > 0 || !v.groups.is_empty() {
            out.push('\n');
        }
        let _ = writeln!(out, "{}", md_line(note, false));
    }
}

fn examples(tasks: &[&TaskReport], more: Option<&str>) -> String {
    let mut parts: Vec<String> = tasks
        .iter()
        .map(|t| format!("{} #{}", code(&t.target, true), t.id))
        .collect();
    parts.extend(more.map(md_text));
    parts.join(", ")
}

/// A line in Markdown: prose escaped, code as code spans.
fn md_line(line: &Line, in_table: bool) -> String {
    line.frags()
        .iter()
        .map(|f| match f {
            Frag::Text(t) => md_text(t),
            Frag::Code(c) => code(c, in_table),
        })
        .collect()
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
