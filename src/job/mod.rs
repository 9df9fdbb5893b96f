//! Job files: load YAML, check it, and produce a [`Job`] or every problem found.
//!
//! Pure: text in, `Job` or [`Diagnostic`]s out. The environment and file reads (for CSV
//! device lists) come through [`Host`], so tests pass fixed values and the CLI passes the
//! real ones; nothing here touches the network, the clock or tokio. The language's shape
//! lives in `shape`, the checks in `check`, positions in `node`.

mod check;
pub mod model;
pub mod node;
pub mod shape;
pub mod template;

use std::fmt;

pub use check::{csv_column, parse_amount, parse_duration, parse_rate};
pub use model::*;
pub use node::{Pos, Span};

/// What loading may read from outside: environment variables and files (paths as written
/// in the job; the host resolves them, normally against the job file's directory).
pub struct Host<'a> {
    pub env: &'a dyn Fn(&str) -> Option<String>,
    pub read: &'a dyn Fn(&str) -> Result<String, String>,
}

impl<'a> Host<'a> {
    /// A host that can read the environment but no files.
    pub fn env_only(env: &'a dyn Fn(&str) -> Option<String>) -> Host<'a> {
        Host {
            env,
            read: &|p| Err(format!("reading files is not available here ({p})")),
        }
    }
}

/// How bad a diagnostic is; warnings never fail validation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    Error,
    Warning,
}

/// One problem in a job file, with where it is and how to fix it.
#[derive(Debug, Clone, PartialEq)]
pub struct Diagnostic {
    pub severity: Severity,
    pub file: String,
    pub span: Option<Span>,
    /// The YAML path of the offending value, e.g. `steps[1].alarm_rule.realert_interval`.
    pub path: String,
    pub message: String,
    pub help: Option<String>,
}

impl Diagnostic {
    pub fn line(&self) -> Option<usize> {
        self.span.map(|s| s.start.line)
    }

    /// Renders the diagnostic rustc-style, with the source line and the span marked.
    pub fn render(&self, source: Option<&str>) -> String {
        use fmt::Write as _;
        let sev = match self.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        let mut out = format!("{sev}: {}\n", self.message);
        let Some(span) = self.span else {
            let _ = writeln!(out, "  --> {}", self.file);
            if let Some(h) = &self.help {
                let _ = writeln!(out, "  = help: {h}");
            }
            return out;
        };
        let (line, col) = (span.start.line, span.start.col);
        let text = source.and_then(|s| s.lines().nth(line.saturating_sub(1)));
        let gutter = " ".repeat(line.to_string().len());
        let _ = writeln!(out, "{gutter}--> {}:{line}:{col}", self.file);
        if let Some(text) = text {
            let width = text.chars().count();
            let start = col.saturating_sub(1).min(width);
            let end = if span.end.line == line && span.end.col > col {
                span.end.col - 1
            } else {
                width
            };
            let len = end.saturating_sub(start).max(1);
            let _ = writeln!(out, "{gutter} |");
            let _ = writeln!(out, "{line} | {text}");
            let _ = writeln!(out, "{gutter} | {}{}", " ".repeat(start), "^".repeat(len));
        }
        if let Some(h) = &self.help {
            let _ = writeln!(out, "{gutter} = help: {h}");
        }
        out
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.render(None).trim_end())
    }
}

/// All diagnostics of a failed load.
#[derive(Debug, Clone, PartialEq)]
pub struct Diagnostics(pub Vec<Diagnostic>);

impl Diagnostics {
    pub fn errors(&self) -> usize {
        self.0
            .iter()
            .filter(|d| d.severity == Severity::Error)
            .count()
    }

    /// Every diagnostic with source snippets, then a count.
    pub fn render(&self, source: &str) -> String {
        let mut out: String = self
            .0
            .iter()
            .map(|d| d.render(Some(source)) + "\n")
            .collect();
        let (e, w) = (self.errors(), self.0.len() - self.errors());
        out.push_str(&format!(
            "{e} error{}{}\n",
            if e == 1 { "" } else { "s" },
            if w > 0 {
                format!(", {w} warning{}", if w == 1 { "" } else { "s" })
            } else {
                String::new()
            }
        ));
        out
    }
}

impl fmt::Display for Diagnostics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, d) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{d}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Diagnostics {}

/// Loads and checks a job from its text.
pub fn load(file: &str, text: &str, host: &Host) -> Result<(Job, Vec<Diagnostic>), Diagnostics> {
    // Editors on some systems save a byte-order mark; it is not part of the YAML.
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let at = |line: usize, col: usize| {
        Some(Span {
            start: Pos { line, col },
            end: Pos { line, col },
        })
    };
    let one = |span, message: String, help: &str| {
        Diagnostics(vec![Diagnostic {
            severity: Severity::Error,
            file: file.to_string(),
            span,
            path: String::new(),
            message,
            help: Some(help.to_string()),
        }])
    };
    let root = node::parse(text).map_err(|e| {
        let span = e
            .pos
            .map(|p| Span { start: p, end: p })
            .or_else(|| at(1, 1));
        one(
            span,
            format!("invalid YAML: {}", e.message),
            "check the indentation and quoting around this position",
        )
    })?;
    if root.kind == node::Kind::Null {
        return Err(one(
            at(1, 1),
            "the job file is empty".into(),
            "start with `version: 1`, a `name:` and `steps:`",
        ));
    }
    check::check(file, &root, host)
}

/// The candidate closest to `word`, if it is close enough to be a likely typo.
pub fn closest<'a>(word: &str, candidates: &[&'a str]) -> Option<&'a str> {
    candidates
        .iter()
        .map(|c| (levenshtein(&word.to_lowercase(), &c.to_lowercase()), *c))
        .filter(|(d, c)| *d <= 2.max(c.len() / 3))
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

fn levenshtein(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != *cb);
            cur.push((prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1));
        }
        prev = cur;
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests;
