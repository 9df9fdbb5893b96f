//! Job files: load YAML, validate it, and produce a [`Job`] or every problem found.
//!
//! Pure: text (and an environment lookup) in, `Job` or [`Diagnostic`]s out. No network, no
//! clock, no tokio. Parsing goes through serde (`raw`), meaning checks through [`validate`],
//! which keeps going after the first problem so one run of `validate` shows them all.

pub mod model;
pub mod raw;
pub mod template;
mod validate;

use std::fmt;

pub use model::*;
pub use validate::validate;

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
    /// 1-based line and column when known.
    pub line: Option<usize>,
    pub col: Option<usize>,
    /// The YAML path of the offending value, e.g. `steps[1].alarm_rule.realert_interval`.
    pub path: String,
    pub message: String,
    pub help: Option<String>,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sev = match self.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        match (self.line, self.col) {
            (Some(l), Some(c)) => write!(f, "{}:{l}:{c}: {sev}: {}", self.file, self.message)?,
            _ => write!(f, "{}: {sev}: {}", self.file, self.message)?,
        }
        if !self.path.is_empty() {
            write!(f, " (at `{}`)", self.path)?;
        }
        if let Some(h) = &self.help {
            write!(f, "\n  help: {h}")?;
        }
        Ok(())
    }
}

/// All diagnostics of a failed load.
#[derive(Debug, Clone, PartialEq)]
pub struct Diagnostics(pub Vec<Diagnostic>);

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

impl Diagnostics {
    pub fn errors(&self) -> usize {
        self.0
            .iter()
            .filter(|d| d.severity == Severity::Error)
            .count()
    }
}

/// Loads a job from its text. `env` resolves `${NAME}`; pass `|n| std::env::var(n).ok()`
/// at the edge and a fixed map in tests.
pub fn load(
    file: &str,
    text: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<(Job, Vec<Diagnostic>), Diagnostics> {
    let raw: raw::RawJob = match serde_yaml::from_str(text) {
        Ok(r) => r,
        Err(e) => {
            let (line, col) = e
                .location()
                .map(|l| (Some(l.line()), Some(l.column())))
                .unwrap_or((None, None));
            let message = e.to_string();
            // yaml_serde appends " at line L column C"; the location is already in front.
            let message = match message.find(" at line ") {
                Some(i) => message[..i].to_string(),
                None => message,
            };
            let (path, message) = match message.split_once(": ") {
                Some((p, m)) if !p.contains(' ') => (p.to_string(), m.to_string()),
                _ => (String::new(), message),
            };
            let help = unknown_field_help(&message);
            return Err(Diagnostics(vec![Diagnostic {
                severity: Severity::Error,
                file: file.to_string(),
                line,
                col,
                path,
                message,
                help,
            }]));
        }
    };
    validate(file, raw, env)
}

/// Turns serde's "unknown field `x`, expected one of `a`, `b`" into a did-you-mean.
fn unknown_field_help(message: &str) -> Option<String> {
    let rest = message.strip_prefix("unknown field `")?;
    let (field, rest) = rest.split_once('`')?;
    let expected: Vec<&str> = rest.split('`').skip(1).step_by(2).collect();
    match closest(field, &expected) {
        Some(best) => Some(format!("did you mean `{best}`?")),
        None if !expected.is_empty() => Some(format!("valid keys here: {}", expected.join(", "))),
        None => None,
    }
}

/// The candidate closest to `word`, if it is close enough to be a likely typo.
pub fn closest<'a>(word: &str, candidates: &[&'a str]) -> Option<&'a str> {
    candidates
        .iter()
        .map(|c| (levenshtein(word, c), *c))
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
mod tests {
    use super::*;

    #[test]
    fn did_you_mean() {
        assert_eq!(
            closest("realert_intervall", &["realert_interval", "repeat_times"]),
            Some("realert_interval")
        );
        assert_eq!(closest("zzz", &["realert_interval"]), None);
        let h = unknown_field_help(
            "unknown field `limts`, expected one of `version`, `name`, `limits`",
        )
        .unwrap();
        assert_eq!(h, "did you mean `limits`?");
    }
}
