//! Where the command line's words go, and how: results on stdout, everything else
//! (notices, warnings, errors) on stderr, as text or as one JSON object a line under
//! `--log-format json`, nothing but warnings and errors under `-q`, no ANSI colour under
//! `NO_COLOR` or off a terminal.
//!
//! No write here panics. A closed stdout (`esper-bulk validate jobs/ | head -1`) ends
//! the program quietly with 141, the status a shell reports for SIGPIPE; a closed stderr
//! is ignored, so a run never stops because nobody reads its chatter. What is said, and
//! when, is the caller's.

use std::fmt::Display;
use std::io::{ErrorKind, IsTerminal, Write};
use std::sync::OnceLock;

/// The exit status of a process ended by SIGPIPE (128 + 13).
pub const BROKEN_PIPE: u8 = 141;

#[derive(Debug, Clone, Copy, Default)]
struct Style {
    quiet: bool,
    json: bool,
}

static STYLE: OnceLock<Style> = OnceLock::new();

fn style() -> Style {
    STYLE.get().copied().unwrap_or_default()
}

/// Sets how the rest of the process speaks; the first call wins.
pub fn init(quiet: bool, json: bool) {
    let _ = STYLE.set(Style { quiet, json });
}

/// Whether `-q` asked for silence on success.
pub fn quiet() -> bool {
    style().quiet
}

/// Whether progress bars may be drawn: not under `-q`, and not between JSON log lines.
pub fn progress() -> bool {
    let s = style();
    !s.quiet && !s.json
}

/// Whether stderr may carry ANSI colour: a terminal, and `NO_COLOR` unset or empty
/// (<https://no-color.org>).
pub fn colour() -> bool {
    std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty()) && std::io::stderr().is_terminal()
}

/// Writes a result to stdout. A reader that went away ends the program quietly.
pub fn out(text: impl Display) {
    let mut o = std::io::stdout().lock();
    if let Err(e) = write!(o, "{text}").and_then(|()| o.flush())
        && e.kind() == ErrorKind::BrokenPipe
    {
        std::process::exit(i32::from(BROKEN_PIPE));
    }
}

/// Something worth telling the person watching: dropped under `-q`.
pub fn info(text: impl Display) {
    if !quiet() {
        say("INFO", &text.to_string());
    }
}

/// A warning: shown under `-q` too.
pub fn warn(text: impl Display) {
    say("WARN", &text.to_string());
}

/// Why a command failed.
pub fn error(text: impl Display) {
    say("ERROR", &text.to_string());
}

fn say(level: &str, text: &str) {
    let text = text.trim_end_matches('\n');
    let line = if style().json {
        json_line(level, text)
    } else {
        format!("{text}\n")
    };
    let mut w = crate::progress::LogWriter;
    let _ = w.write_all(line.as_bytes());
}

/// One line in the shape tracing-subscriber's JSON formatter writes, so a log shipper sees
/// a single format on stderr.
fn json_line(level: &str, text: &str) -> String {
    let v = serde_json::json!({
        "timestamp": jiff::Timestamp::now().to_string(),
        "level": level,
        "fields": { "message": text },
        "target": "esper_bulk::cli",
    });
    format!("{v}\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_lines_are_single_json_objects() {
        let line = json_line("WARN", "error: `x` is bad\n  = help: fix it");
        assert!(line.ends_with('\n') && line.matches('\n').count() == 1);
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["level"], "WARN");
        assert_eq!(
            v["fields"]["message"],
            "error: `x` is bad\n  = help: fix it"
        );
    }
}
