//! Job files: load YAML, check it, and produce a [`Job`] or every problem found.
//!
//! Pure: text in, `Job` or [`Diagnostic`]s out. The environment and file reads (for CSV
//! device lists) come through [`Host`], so tests pass fixed values and the CLI passes the
//! real ones; nothing here touches the network, the clock or tokio. The language's shape
//! lives in `shape`, the checks in `check`, positions in `node`, and how a diagnostic is
//! shown (never with a secret in it) in `diagnostic`.

mod check;
mod diagnostic;
pub mod model;
pub mod node;
pub mod shape;
pub mod template;

pub use check::{
    ATTEMPTS_RANGE, DURATION_UNITS, DurationError, IN_FLIGHT_RANGE, MAX_DURATION, MAX_NAME_CHARS,
    RATE_RANGE, TIME_OF_DAY_PATTERN, csv_column, duration_pattern, parse_amount, parse_date_time,
    parse_duration, parse_duration_str, parse_rate, parse_time_of_day, tenant_base_url,
};
pub use diagnostic::{Diagnostic, Diagnostics, Severity, Snippet, mask, source_lines};
pub use model::*;
pub use node::{Pos, Span};

/// What loading may read from outside: environment variables and files (paths as written
/// in the job; the host resolves them, normally against the job file's directory).
pub struct Host<'a> {
    pub env: &'a dyn Fn(&str) -> Option<String>,
    pub read: &'a dyn Fn(&str) -> Result<String, ReadError>,
}

/// A file the job names could not be read; the host phrases why (`not found`,
/// `permission denied`, "reading files is not available here").
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ReadError(pub String);

impl From<std::io::Error> for ReadError {
    fn from(e: std::io::Error) -> ReadError {
        ReadError(e.to_string())
    }
}

impl<'a> Host<'a> {
    /// A host that can read the environment but no files.
    pub fn env_only(env: &'a dyn Fn(&str) -> Option<String>) -> Host<'a> {
        Host {
            env,
            read: &|p| {
                Err(ReadError(format!(
                    "reading files is not available here ({p})"
                )))
            },
        }
    }
}

/// Loads and checks a job from its text, for planning or running it: every `${NAME}`
/// must be set.
pub fn load(file: &str, text: &str, host: &Host) -> Result<(Job, Vec<Diagnostic>), Diagnostics> {
    load_with(file, text, host, check::EnvMode::Strict)
}

/// Loads and checks a job as `esper-bulk validate` does: `${NAME}` in the `esper:` block
/// may be unset (a warning, and that setting stays unset), since validating connects to
/// nothing; everything else is checked as [`load`] checks it.
pub fn validate(
    file: &str,
    text: &str,
    host: &Host,
) -> Result<(Job, Vec<Diagnostic>), Diagnostics> {
    load_with(file, text, host, check::EnvMode::Lint)
}

fn load_with(
    file: &str,
    text: &str,
    host: &Host,
    env_mode: check::EnvMode,
) -> Result<(Job, Vec<Diagnostic>), Diagnostics> {
    // Editors on some systems save a byte-order mark; it is not part of the YAML.
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let at = |line: usize, col: usize| {
        Some(Span {
            start: Pos { line, col },
            end: Pos { line, col },
        })
    };
    let one = |span, message: String, help: String| {
        let mut d = vec![Diagnostic {
            severity: Severity::Error,
            file: file.to_string(),
            span,
            path: String::new(),
            message,
            help: Some(help),
            snippet: None,
        }];
        diagnostic::finish(text, &[], &mut d);
        Diagnostics(d)
    };
    let root = node::parse(text).map_err(|e| {
        let span = e
            .span
            .or_else(|| e.pos.map(|p| Span { start: p, end: p }))
            .or_else(|| at(1, 1));
        let help = e
            .help
            .clone()
            .unwrap_or_else(|| "check the indentation and quoting around this position".into());
        one(span, e.message, help)
    })?;
    if root.kind == node::Kind::Null {
        return Err(one(
            at(1, 1),
            "the job file is empty".into(),
            "start with `version: 1`, a `name:` and `steps:`".into(),
        ));
    }
    let checked = check::check(file, &root, host, env_mode);
    match checked.result {
        Ok((job, mut warnings)) => {
            diagnostic::finish(text, &checked.secrets, &mut warnings);
            Ok((job, warnings))
        }
        Err(Diagnostics(mut d)) => {
            diagnostic::finish(text, &checked.secrets, &mut d);
            Err(Diagnostics(d))
        }
    }
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
