//! `report.html`: one self-contained page (no external resources) for a browser: summary
//! cards, rollout stops, what to do next, a chart of the run's pacing ([`super::chart`]),
//! the steps, the failures by cause with their next action, and per step a table of the
//! failed devices that sorts and filters with a few lines of inline script.
//!
//! It lays out the same [`View`] as `report.md` and phrases nothing itself; what it owns
//! is the page's layout, its style sheet and HTML escaping. The page is also well-formed
//! XML, which lets the tests check its structure without an HTML parser.

use std::fmt::Write as _;

use super::chart::chart;
use super::text::{Frag, Line};
use super::view::{Measure, Place, Tone, View};
use crate::report::Report;

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
.s-failed,.s-unknown{color:#cf222e;font-weight:600}.s-skipped,.s-not_started,.s-interrupted{color:#9a6700;font-weight:600}
svg{display:block;width:100%;height:auto}
svg text{font-family:system-ui,sans-serif;font-size:11px;fill:#57606a}
.grid{stroke:#eaeef2}.axis{stroke:#8c959f}
.req{fill:#9ec5f0}.rl{fill:#d1242f}
.win{fill:none;stroke:#e16f24;stroke-width:2}
.rate{fill:none;stroke:#6639ba;stroke-width:1.5;stroke-dasharray:6 4}
.legend{font-size:12px;color:#57606a;margin:4px 0 0}
.legend i{display:inline-block;width:14px;height:10px;margin:0 4px 0 14px;vertical-align:middle}
footer{margin:32px 0 16px;font-size:12px;color:#57606a}
h3{font-size:15px;margin:18px 0 6px}
.devs input{font:inherit;padding:3px 8px;margin:0 0 6px;border:1px solid #d0d7de;border-radius:6px;min-width:18em}
.devs th{cursor:pointer;user-select:none}
.devs th[aria-sort=ascending]::after{content:' ▲'}.devs th[aria-sort=descending]::after{content:' ▼'}
";

/// Sorting and filtering of the failed-device tables: a click on a column sorts by it
/// (numbers as numbers), typing in the box hides rows without the text. No `<` or `&` in
/// it, so the page stays well-formed XML without a CDATA section.
const SCRIPT: &str = "\
document.querySelectorAll('section.devs').forEach(function (sec) {
  var table = sec.querySelector('table'), body = table.tBodies[0];
  var input = sec.querySelector('input'), shown = sec.querySelector('.shown');
  var heads = table.tHead.rows[0].cells;
  function update() {
    var q = input.value.toLowerCase(), n = 0;
    Array.prototype.forEach.call(body.rows, function (row) {
      var hit = row.textContent.toLowerCase().indexOf(q) !== -1;
      row.hidden = !hit;
      if (hit) { n += 1; }
    });
    shown.textContent = n + ' of ' + body.rows.length + ' shown';
  }
  input.addEventListener('input', update);
  Array.prototype.forEach.call(heads, function (th, col) {
    th.addEventListener('click', function () {
      var dir = th.getAttribute('aria-sort') === 'ascending' ? -1 : 1;
      Array.prototype.forEach.call(heads, function (h) { h.removeAttribute('aria-sort'); });
      th.setAttribute('aria-sort', dir === 1 ? 'ascending' : 'descending');
      var rows = Array.prototype.slice.call(body.rows);
      rows.sort(function (a, b) {
        var x = a.cells[col].textContent, y = b.cells[col].textContent;
        var nx = Number(x), ny = Number(y);
        if (x !== '' ? (y !== '' ? !isNaN(nx - ny) : false) : false) { return (nx - ny) * dir; }
        return x.localeCompare(y) * dir;
      });
      rows.forEach(function (r) { body.appendChild(r); });
    });
  });
  update();
});
";

/// `report.html` of a report.
pub fn html(r: &Report) -> String {
    let v = View::of(r);
    let word = esc(r.run.outcome.word());
    let mut out = String::new();
    let _ = write!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\"/>\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"/>\n\
         <title>{} {word}: esper-bulk report</title>\n<style>\n{STYLE}</style>\n</head>\n<body>\n",
        esc(&r.run.job)
    );
    let _ = writeln!(
        out,
        "<header>\n<h1>{} <span class=\"badge {word}\">{word}</span></h1>\n\
         <p><b>{word}</b>: {}</p>\n<p class=\"muted\">{} {}</p>\n</header>",
        esc(&r.run.job),
        html_line(&v.headline),
        html_line(&v.run),
        html_line(&v.records)
    );
    if let Some(limit) = &v.limit {
        let _ = writeln!(out, "<p class=\"alert\">{}</p>", html_line(limit));
    }
    if !v.segments.is_empty() {
        out.push_str("<h2>Segments</h2>\n<ul>\n");
        for line in &v.segments {
            let _ = writeln!(out, "<li>{}</li>", html_line(line));
        }
        out.push_str("</ul>\n");
    }
    cards(&mut out, &v.measures);
    stops(&mut out, &v);
    out.push_str("<h2>What to do next</h2>\n<ul>\n");
    for line in &v.advice {
        let _ = writeln!(out, "<li>{}</li>", html_line(line));
    }
    out.push_str("</ul>\n<h2>Requests over time</h2>\n");
    out.push_str(&chart(&r.governor.timeline));
    steps(&mut out, &v);
    failures(&mut out, &v);
    failed_devices(&mut out, &v);
    let _ = writeln!(
        out,
        "<footer>esper-bulk report format {}</footer>\n</body>\n</html>",
        r.format
    );
    out
}

/// The measures as two rows of cards, tasks then requests, and the long ones as lines.
fn cards(out: &mut String, measures: &[Measure]) {
    for place in [Place::Tasks, Place::Requests] {
        out.push_str("<div class=\"cards\">\n");
        for m in measures.iter().filter(|m| m.place == place) {
            let tone = match m.tone {
                Tone::Neutral => "",
                Tone::Good => " ok",
                Tone::Bad => " bad",
                Tone::Warn => " warn",
                Tone::Zero => " zero",
            };
            let label = match &m.detail {
                Some(d) => format!("{} {d}", m.label),
                None => m.label.to_string(),
            };
            let _ = writeln!(
                out,
                "<div class=\"card{tone}\"><b>{}</b><span>{}</span></div>",
                esc(&m.value),
                esc(&label)
            );
        }
        out.push_str("</div>\n");
    }
    for m in measures.iter().filter(|m| m.place == Place::Aside) {
        let _ = writeln!(
            out,
            "<p class=\"muted\">{}: {}</p>",
            esc(m.label),
            esc(&m.value)
        );
    }
}

fn stops(out: &mut String, v: &View) {
    if v.stops.is_empty() {
        return;
    }
    out.push_str("<h2>Rollout stops</h2>\n");
    for stop in &v.stops {
        let _ = writeln!(
            out,
            "<div class=\"alert\">\n<p>{}</p>",
            html_line(&stop.line)
        );
        if !stop.canaries.is_empty() {
            out.push_str("<ul>\n");
            for c in &stop.canaries {
                let status = c.task.status.as_str();
                let _ = writeln!(
                    out,
                    "<li><code>{}</code> #{} <span class=\"s-{status}\">{status}</span>: <span class=\"err\">{}</span></li>",
                    esc(&c.task.target),
                    c.task.id,
                    html_line(&c.error)
                );
            }
            if let Some(more) = &stop.more {
                let _ = writeln!(out, "<li>{}</li>", esc(more));
            }
            out.push_str("</ul>\n");
        }
        out.push_str("</div>\n");
    }
}

fn steps(out: &mut String, v: &View) {
    // The column only appears for runs stopped mid-wait, so other reports read as before.
    let mut statuses = vec!["succeeded", "failed", "unknown", "skipped", "not_started"];
    if v.report.summary.interrupted > 0 {
        statuses.push("interrupted");
    }
    out.push_str(
        "<h2>Steps</h2>\n<table>\n<tr><th>step</th><th>kind</th><th class=\"n\">tasks</th>\
         <th class=\"n\">succeeded</th><th class=\"n\">failed</th><th class=\"n\">unknown</th>\
         <th class=\"n\">skipped</th><th class=\"n\">not started</th>",
    );
    if statuses.len() > 5 {
        out.push_str("<th class=\"n\">interrupted</th>");
    }
    out.push_str("<th class=\"n\">attempts</th><th class=\"n\">time</th></tr>\n");
    for row in &v.steps {
        let _ = write!(
            out,
            "<tr><td class=\"nw\"><code>{}</code></td><td>{}</td><td class=\"n\">{}</td>",
            esc(&row.id),
            esc(&row.kind),
            row.tasks
        );
        for &status in &statuses {
            let n = row.count(status);
            // Only counts that need a look stand out.
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
}

fn failures(out: &mut String, v: &View) {
    out.push_str("<h2>What failed and why</h2>\n");
    if !v.groups.is_empty() {
        out.push_str(
            "<table>\n<tr><th class=\"n\">tasks</th><th class=\"n\">devices</th><th>status</th><th>step</th><th>error</th><th>examples</th><th>next action</th></tr>\n",
        );
        for g in &v.groups {
            let steps: Vec<String> = g
                .steps
                .iter()
                .map(|s| format!("<code>{}</code>", esc(s)))
                .collect();
            let (shown, more) = g.examples();
            let mut examples: Vec<String> = shown
                .iter()
                .map(|t| format!("<code>{}</code> #{}", esc(&t.target), t.id))
                .collect();
            examples.extend(more.as_deref().map(esc));
            let status = g.status.as_str();
            let _ = writeln!(
                out,
                "<tr><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"s-{status}\">{status}</td><td class=\"nw\">{}</td><td class=\"err\">{}</td><td class=\"ex\">{}</td><td>{}</td></tr>",
                g.tasks.len(),
                g.devices,
                steps.join(", "),
                html_line(&g.error),
                examples.join("<br/>"),
                html_line(&g.next)
            );
        }
        out.push_str("</table>\n");
    }
    for note in &v.failure_notes {
        let _ = writeln!(out, "<p>{}</p>", html_line(note));
    }
}

/// Per step, a table of the devices that did not succeed, sortable and filterable in the
/// page (see [`SCRIPT`]); the script is written once, and only when there is a table.
fn failed_devices(out: &mut String, v: &View) {
    if v.failed_devices.is_empty() {
        return;
    }
    out.push_str(
        "<h2>Failed devices</h2>\n<p class=\"muted\">Click a column to sort, type to filter; every device is in <code>devices.csv</code>.</p>\n",
    );
    for (i, s) in v.failed_devices.iter().enumerate() {
        let n = s.rows.len();
        let _ = writeln!(
            out,
            "<section class=\"devs\" id=\"devices-{i}\">\n<h3>step <code>{}</code>: {} <span class=\"muted shown\"></span></h3>\n\
             <input type=\"search\" placeholder=\"filter devices\" aria-label=\"filter the failed devices of step {}\"/>\n\
             <table>\n<thead><tr><th>device</th><th>serial</th><th>group</th><th>state</th><th>reason</th><th class=\"n\">task</th></tr></thead>\n<tbody>",
            esc(s.step),
            esc(&super::text::count(n as u64, "device", "devices")),
            esc(s.step)
        );
        for row in &s.rows {
            let state = row.command_state.unwrap_or(row.task.status.as_str());
            let _ = writeln!(
                out,
                "<tr><td class=\"nw\"><code>{}</code></td><td class=\"nw\">{}</td><td>{}</td><td class=\"s-failed\">{}</td><td class=\"err\">{}</td><td class=\"n\">{}</td></tr>",
                esc(&row.device),
                esc(&row.serial),
                esc(&row.group),
                esc(state),
                esc(&row.reason),
                row.task.id
            );
        }
        out.push_str("</tbody>\n</table>\n</section>\n");
    }
    let _ = writeln!(out, "<script>\n{SCRIPT}</script>");
}

/// A line in HTML: prose escaped, code in `<code>`.
fn html_line(line: &Line) -> String {
    line.frags()
        .iter()
        .map(|f| match f {
            Frag::Text(t) => esc(t),
            Frag::Code(c) => format!("<code>{}</code>", esc(c)),
        })
        .collect()
}

/// Escapes text for HTML element content and quoted attribute values.
pub fn esc(s: &str) -> String {
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
