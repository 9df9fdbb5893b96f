//! Diagnostics: one problem in a job file, where it is and how to fix it, and how it is
//! shown — rustc-style text with the source line marked, or JSON for tools.
//!
//! Owns what a rendering may show. A diagnostic's source line is shown with every secret
//! on it masked (`sk_l…5c`, or `****` when short): a literal `api_key:` value found in
//! the text, and any value the checker flagged, so CI logs never keep a leaked key; the
//! secret's text is also removed from messages and help. Lines end at `\r\n`, `\n` or a
//! lone `\r`, as they do for the YAML parser that numbered them. Finding the problems is
//! the checker's (`check/`); printing is the caller's.

use std::fmt;

use serde_json::{Value, json};

use super::node::Span;

/// How bad a diagnostic is; warnings never fail validation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    Error,
    Warning,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Error => "error",
            Severity::Warning => "warning",
        }
    }
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
    /// The source line as it may be shown (secrets masked), filled in by `job::load`.
    pub snippet: Option<Snippet>,
}

/// A source line ready to show, and the columns to mark in it (0-based characters,
/// `end` exclusive), which masking may have moved.
#[derive(Debug, Clone, PartialEq)]
pub struct Snippet {
    pub text: String,
    pub start: usize,
    pub end: usize,
}

impl Diagnostic {
    pub fn line(&self) -> Option<usize> {
        self.span.map(|s| s.start.line)
    }

    /// Renders the diagnostic rustc-style; with a source, its line is shown and the span
    /// marked (secrets masked either way).
    pub fn render(&self, source: Option<&str>) -> String {
        use fmt::Write as _;
        let mut out = format!("{}: {}\n", self.severity.as_str(), self.message);
        let Some(span) = self.span else {
            let _ = writeln!(out, "  --> {}", self.file);
            if let Some(h) = &self.help {
                let _ = writeln!(out, "  = help: {h}");
            }
            return out;
        };
        let (line, col) = (span.start.line, span.start.col);
        let gutter = " ".repeat(line.to_string().len());
        let _ = writeln!(out, "{gutter}--> {}:{line}:{col}", self.file);
        let snippet = source.and_then(|s| {
            self.snippet
                .clone()
                .or_else(|| snippet(&source_lines(s), span, &[]))
        });
        if let Some(s) = snippet {
            let len = s.end.saturating_sub(s.start).max(1);
            let _ = writeln!(out, "{gutter} |");
            let _ = writeln!(out, "{line} | {}", s.text);
            let _ = writeln!(out, "{gutter} | {}{}", " ".repeat(s.start), "^".repeat(len));
        }
        if let Some(h) = &self.help {
            let _ = writeln!(out, "{gutter} = help: {h}");
        }
        out
    }

    /// The diagnostic for tools: file, position (1-based; `null` without one), severity,
    /// message, help and the YAML path.
    pub fn to_json(&self) -> Value {
        let pos = |f: fn(&Span) -> usize| self.span.as_ref().map(f);
        json!({
            "file": self.file,
            "line": pos(|s| s.start.line),
            "col": pos(|s| s.start.col),
            "end_line": pos(|s| s.end.line),
            "end_col": pos(|s| s.end.col),
            "severity": self.severity.as_str(),
            "message": self.message,
            "help": self.help,
            "path": self.path,
        })
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

/// The lines of a text, ending at `\r\n`, `\n` or a lone `\r` (YAML's line breaks).
pub fn source_lines(text: &str) -> Vec<&str> {
    let mut lines = Vec::new();
    let mut rest = text;
    while let Some(i) = rest.find(['\r', '\n']) {
        lines.push(&rest[..i]);
        let skip = if rest[i..].starts_with("\r\n") { 2 } else { 1 };
        rest = &rest[i + skip..];
    }
    if !rest.is_empty() {
        lines.push(rest);
    }
    lines
}

/// Gives every diagnostic its masked snippet, and removes secrets from its words.
/// `secrets` are the spans the checker flagged; literal `api_key:` values are found here.
pub(super) fn finish(text: &str, secrets: &[Span], diags: &mut [Diagnostic]) {
    let lines = source_lines(text);
    let mut words: Vec<String> = secrets
        .iter()
        .flat_map(|s| (s.start.line..=s.end.line).map(move |l| (l, *s)))
        .filter_map(|(l, s)| {
            let line = lines.get(l.checked_sub(1)?)?;
            let (a, b) = flagged_range(line, l, &s)?;
            Some(unquoted(&line.chars().collect::<Vec<_>>()[a..b]))
        })
        .chain(lines.iter().flat_map(|l| {
            let chars: Vec<char> = l.chars().collect();
            api_key_values(&chars)
                .into_iter()
                .map(move |(a, b)| unquoted(&chars[a..b]))
        }))
        // Replacing a very short "secret" would garble the message and hide nothing.
        .filter(|w| w.chars().count() >= 8)
        .collect();
    words.sort();
    words.dedup();
    for d in diags.iter_mut() {
        if let Some(span) = d.span {
            d.snippet = snippet(&lines, span, secrets);
        }
        for w in &words {
            d.message = d.message.replace(w.as_str(), &mask(w));
            if let Some(h) = &mut d.help {
                *h = h.replace(w.as_str(), &mask(w));
            }
        }
    }
}

/// The line a span starts on, masked, with the span's columns moved to match.
fn snippet(lines: &[&str], span: Span, secrets: &[Span]) -> Option<Snippet> {
    let line_no = span.start.line;
    let line = *lines.get(line_no.checked_sub(1)?)?;
    let chars: Vec<char> = line.chars().collect();
    let mut ranges: Vec<(usize, usize)> = secrets
        .iter()
        .filter(|s| (s.start.line..=s.end.line).contains(&line_no))
        .filter_map(|s| flagged_range(line, line_no, s))
        .chain(api_key_values(&chars))
        .collect();
    ranges.sort();
    let mut merged: Vec<(usize, usize)> = Vec::new();
    for (a, b) in ranges {
        match merged.last_mut() {
            Some(last) if a <= last.1 => last.1 = last.1.max(b),
            _ => merged.push((a, b)),
        }
    }
    let width = chars.len();
    let start = span.start.col.saturating_sub(1).min(width);
    let mut end = if span.end.line == line_no && span.end.col > span.start.col {
        (span.end.col - 1).min(width)
    } else {
        width
    };
    // The parser's spans of quoted values run on over the spaces after them.
    while end > start + 1 && chars[end - 1].is_whitespace() {
        end -= 1;
    }
    let mut out = String::new();
    // Each masked range: where it was and how long its replacement is.
    let mut shift: Vec<(usize, usize, usize)> = Vec::new();
    let mut at = 0;
    for &(a, b) in &merged {
        out.extend(&chars[at..a]);
        let replaced = masked(&chars[a..b]);
        shift.push((a, b, replaced.chars().count()));
        out.push_str(&replaced);
        at = b;
    }
    out.extend(&chars[at..]);
    let s = moved(start, false, &shift);
    let e = moved(end, true, &shift);
    Some(Snippet {
        text: out,
        start: s,
        end: e.max(s),
    })
}

/// Where an original column lands once `shift`'s ranges are replaced; a column inside a
/// masked range goes to the replacement's start (or, for a span's end, its end).
fn moved(c: usize, at_end: bool, shift: &[(usize, usize, usize)]) -> usize {
    let mut offset: isize = 0;
    for &(a, b, len) in shift {
        if c >= b {
            offset += len as isize - (b - a) as isize;
        } else if c > a {
            let base = a as isize + offset;
            return (base + if at_end { len as isize } else { 0 }).max(0) as usize;
        } else {
            break;
        }
    }
    (c as isize + offset).max(0) as usize
}

/// The columns of a flagged span on one line of it (all of it past the indentation on
/// the lines of a multi-line value).
fn flagged_range(line: &str, line_no: usize, s: &Span) -> Option<(usize, usize)> {
    let chars: Vec<char> = line.chars().collect();
    let indent = chars.iter().take_while(|c| c.is_whitespace()).count();
    let a = if s.start.line == line_no {
        s.start.col.saturating_sub(1)
    } else {
        indent
    };
    let b = if s.end.line == line_no {
        s.end.col.saturating_sub(1)
    } else {
        chars.len()
    };
    let (a, mut b) = (a.min(chars.len()), b.min(chars.len()));
    while b > a && chars[b - 1].is_whitespace() {
        b -= 1;
    }
    (a < b).then_some((a, b))
}

/// Where `api_key:` lines hold a literal value (not `${NAME}`), as column ranges.
fn api_key_values(chars: &[char]) -> Vec<(usize, usize)> {
    const KEY: &[char] = &['a', 'p', 'i', '_', 'k', 'e', 'y'];
    let ident = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == '-';
    let mut out = Vec::new();
    let mut i = 0;
    while i + KEY.len() <= chars.len() {
        let hit = chars[i..i + KEY.len()] == *KEY
            && (i == 0 || !ident(chars[i - 1]))
            && chars.get(i + KEY.len()).is_none_or(|c| !ident(*c));
        if !hit {
            i += 1;
            continue;
        }
        let mut j = i + KEY.len();
        if matches!(chars.get(j), Some('"' | '\'')) {
            j += 1;
        }
        while chars.get(j) == Some(&' ') {
            j += 1;
        }
        if chars.get(j) != Some(&':') {
            i += 1;
            continue;
        }
        j += 1;
        while chars.get(j) == Some(&' ') {
            j += 1;
        }
        let start = j;
        let end = match chars.get(j) {
            Some(q @ ('"' | '\'')) => chars[j + 1..]
                .iter()
                .position(|c| c == q)
                .map_or(chars.len(), |p| j + 1 + p + 1),
            _ => {
                let mut e = j;
                // `${NAME}` and `${{ … }}` hold braces that do not end a flow value.
                if chars[j..].starts_with(&['$', '{']) {
                    let close: &[char] = if chars.get(j + 2) == Some(&'{') {
                        &['}', '}']
                    } else {
                        &['}']
                    };
                    e = (j..chars.len())
                        .find(|&k| chars[k..].starts_with(close))
                        .map_or(chars.len(), |k| k + close.len());
                }
                while e < chars.len()
                    && !matches!(chars[e], ',' | '}' | ']')
                    && !(chars[e] == '#' && e > 0 && chars[e - 1] == ' ')
                {
                    e += 1;
                }
                while e > start && chars[e - 1] == ' ' {
                    e -= 1;
                }
                e
            }
        };
        let value = unquoted(&chars[start..end]);
        let env_ref = value
            .strip_prefix("${")
            .and_then(|v| v.strip_suffix('}'))
            .is_some_and(|n| {
                !n.is_empty() && n.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
            });
        let block = matches!(value.as_str(), "|" | ">" | "|-" | ">-" | "|+" | ">+");
        if !value.is_empty() && !env_ref && !block && !value.starts_with("${{") {
            out.push((start, end));
        }
        i = end.max(i + 1);
    }
    out
}

/// The text of a value without its quotes.
fn unquoted(chars: &[char]) -> String {
    match chars {
        [q @ ('"' | '\''), inner @ .., last] if last == q => inner.iter().collect(),
        _ => chars.iter().collect(),
    }
}

/// A value masked, its quotes kept.
fn masked(chars: &[char]) -> String {
    match chars {
        [q @ ('"' | '\''), inner @ .., last] if last == q => {
            format!("{q}{}{q}", mask(&inner.iter().collect::<String>()))
        }
        _ => mask(&chars.iter().collect::<String>()),
    }
}

/// The one way a secret is shown, shared with the client's scrubbing of server text.
pub use crate::base::mask;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::job::node::Pos;

    fn span(line: usize, a: usize, b: usize) -> Span {
        Span {
            start: Pos { line, col: a },
            end: Pos { line, col: b },
        }
    }

    #[test]
    fn lines_end_at_every_kind_of_break() {
        assert_eq!(source_lines("a\r\nb\nc\rd"), ["a", "b", "c", "d"]);
        assert_eq!(source_lines("a\r\rb\n"), ["a", "", "b"]);
    }

    #[test]
    fn api_keys_are_masked_and_marks_move_with_them() {
        let text = "esper: { api_key: sk_live_0123456789abcdef5c, tenat: acme }\n";
        // A diagnostic after the key on the same line: its mark moves left.
        let s = snippet(&source_lines(text), span(1, 47, 52), &[]).unwrap();
        assert_eq!(s.text, "esper: { api_key: sk_l…5c, tenat: acme }");
        assert_eq!(
            &s.text.chars().collect::<Vec<_>>()[s.start..s.end]
                .iter()
                .collect::<String>(),
            "tenat"
        );
        // The key's own diagnostic marks the masked text.
        let s = snippet(&source_lines(text), span(1, 19, 45), &[]).unwrap();
        assert_eq!(
            &s.text.chars().collect::<Vec<_>>()[s.start..s.end]
                .iter()
                .collect::<String>(),
            "sk_l…5c"
        );
        let s = snippet(&["  api_key: \"short\""], span(1, 12, 19), &[]).unwrap();
        assert_eq!(s.text, "  api_key: \"****\"");
        assert_eq!((s.start, s.end), (11, 17));
        for kept in [
            "  api_key: ${ESPER_API_KEY}",
            "  api_key_file: /run/key",
            "  x_api_key2: k",
        ] {
            assert_eq!(snippet(&[kept], span(1, 1, 2), &[]).unwrap().text, kept);
        }
    }

    #[test]
    fn flagged_spans_are_masked_on_every_line() {
        let text = "api_key: |\n  abcdefghijklmnopqrstuvwxyz\nname: x\n";
        let flagged = [Span {
            start: Pos { line: 1, col: 10 },
            end: Pos { line: 3, col: 1 },
        }];
        let s = snippet(&source_lines(text), span(2, 3, 29), &flagged).unwrap();
        assert_eq!(s.text, "  abcd…yz");
        let mut d = vec![Diagnostic {
            severity: Severity::Error,
            file: "f".into(),
            span: Some(span(2, 3, 29)),
            path: String::new(),
            message: "bad key abcdefghijklmnopqrstuvwxyz".into(),
            help: None,
            snippet: None,
        }];
        finish(text, &flagged, &mut d);
        assert_eq!(d[0].message, "bad key abcd…yz");
        assert!(!d[0].render(Some(text)).contains("efgh"));
    }
}
