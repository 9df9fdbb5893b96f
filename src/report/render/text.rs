//! What the renderers share below the view model: [`Line`]s made of fragments (prose,
//! and identifiers or commands as code spans) and the small formatting rules every format
//! follows (counts with their noun, durations, timestamps).
//!
//! A [`Line`] is written once and escaped late: Markdown, HTML and plain text each turn
//! its fragments into their own markup, so no sentence is phrased per format and no text
//! from a server or a job file is escaped for the wrong one. Escaping itself, and layout,
//! belong to the format's own file.

/// A piece of a sentence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frag {
    /// Prose, or text from a server or a job file; escaped by every format.
    Text(String),
    /// An identifier, a setting or a command, shown as code where the format can.
    Code(String),
}

/// A sentence, or a cell's text, as fragments.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Line(Vec<Frag>);

impl Line {
    pub fn new() -> Line {
        Line(Vec::new())
    }

    /// Prose appended to the line. Adjacent prose merges, so lines that read the same
    /// compare equal however they were put together (failure groups rely on it).
    pub fn text(mut self, s: impl AsRef<str>) -> Line {
        self.push_text(s);
        self
    }

    /// A code span appended to the line.
    pub fn code(mut self, s: impl Into<String>) -> Line {
        self.0.push(Frag::Code(s.into()));
        self
    }

    pub fn push_text(&mut self, s: impl AsRef<str>) {
        let s = s.as_ref();
        if s.is_empty() {
            return;
        }
        match self.0.last_mut() {
            Some(Frag::Text(t)) => t.push_str(s),
            _ => self.0.push(Frag::Text(s.to_string())),
        }
    }

    /// Another line's fragments appended to this one.
    pub fn append(mut self, other: Line) -> Line {
        for f in other.0 {
            match f {
                Frag::Text(t) => self.push_text(t),
                code => self.0.push(code),
            }
        }
        self
    }

    pub fn frags(&self) -> &[Frag] {
        &self.0
    }

    /// The same line with `f` applied to the text of every fragment.
    pub fn map(&self, f: impl Fn(&str) -> String) -> Line {
        Line(
            self.0
                .iter()
                .map(|frag| match frag {
                    Frag::Text(t) => Frag::Text(f(t)),
                    Frag::Code(c) => Frag::Code(f(c)),
                })
                .collect(),
        )
    }

    /// The line as plain text, for the CSV, JUnit and the terminal: code keeps its
    /// backticks, which read as code in a plain-text cell too.
    pub fn plain(&self) -> String {
        self.0
            .iter()
            .map(|f| match f {
                Frag::Text(t) => t.clone(),
                Frag::Code(c) => format!("`{c}`"),
            })
            .collect()
    }
}

impl From<&str> for Line {
    fn from(s: &str) -> Line {
        Line::new().text(s)
    }
}

impl From<String> for Line {
    fn from(s: String) -> Line {
        Line::new().text(s)
    }
}

pub use crate::base::count;

/// `1 task`, `2 tasks`.
pub fn tasks(n: u64) -> String {
    count(n, "task", "tasks")
}

/// What a list left out: `… and 3 more`.
pub fn and_more(n: usize) -> String {
    format!("… and {n} more")
}

/// How often something happened: `once`, `twice`, `3 times`.
pub fn times(n: u64) -> String {
    match n {
        1 => "once".into(),
        2 => "twice".into(),
        n => format!("{n} times"),
    }
}

/// A human duration: `9.7s` under a minute, `12m 05s` under an hour, then `2h 03m`.
pub fn duration(ms: u64) -> String {
    let s = ms / 1000;
    if ms < 60_000 {
        format!("{:.1}s", ms as f64 / 1000.0)
    } else if s < 3600 {
        format!("{}m {:02}s", s / 60, s % 60)
    } else {
        format!("{}h {:02}m", s / 3600, s % 3600 / 60)
    }
}

/// A run's start or end for people: to the second, as the engine records nanoseconds.
/// Text that is not a timestamp is shown as it is.
pub fn moment(s: &str) -> String {
    match s.parse::<jiff::Timestamp>() {
        Ok(ts) => ts
            .round(jiff::Unit::Second)
            .map_or_else(|_| ts.to_string(), |t| t.to_string()),
        Err(_) => s.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_merge_prose_and_keep_code_apart() {
        let a = Line::new()
            .text("step ")
            .text("")
            .code("x")
            .text(" failed")
            .text(".");
        let b = Line::from("step ").append(Line::new().code("x").text(" failed."));
        assert_eq!(a, b);
        assert_eq!(a.frags().len(), 3);
        assert_eq!(a.plain(), "step `x` failed.");
    }

    #[test]
    fn counts_read_naturally() {
        assert_eq!(tasks(1), "1 task");
        assert_eq!(tasks(0), "0 tasks");
        assert_eq!(count(2, "change", "changes"), "2 changes");
        assert_eq!(times(2), "twice");
        assert_eq!(duration(725_000), "12m 05s");
        assert_eq!(moment("2026-11-28T03:00:00.4Z"), "2026-11-28T03:00:00Z");
    }
}
