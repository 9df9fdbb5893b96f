//! Renders a [`Report`](super::Report) into what a person or a CI dashboard reads after a
//! run: `report.md` ([`markdown()`]), `report.html` ([`html()`]), `report.xml`
//! ([`junit()`]), `results.csv` ([`csv()`]) and `devices.csv` ([`devices_csv()`]), plus the end-of-run summary
//! ([`Report::summary_text`](super::Report::summary_text)) and Prometheus metrics.
//!
//! Every renderer is a pure function from the report to text: no I/O, no clock, no
//! environment, so one report always renders to the same bytes (the golden tests rely on
//! it). Building the report is [`Report::build`](super::Report::build)'s job; deciding
//! which files to write and writing them atomically is the caller's.
//!
//! The Markdown and HTML reports lay out one view model (`view.rs`): the failure groups
//! by cause (`groups.rs`), the advice (`advice.rs`) and every sentence they share are
//! computed there once, from the report's typed data (status, failure class, HTTP status,
//! step, reason), never from message text, as lines of fragments (`text.rs`) that each
//! format escapes its own way. How a task's problem reads is `problem.rs`'s, for every
//! format. Every text that came from a server, a job file or a tenant is escaped for the
//! format it lands in.

mod advice;
mod chart;
mod csv;
mod devices;
mod groups;
mod html;
mod junit;
mod markdown;
mod problem;
mod prometheus;
mod terminal;
mod text;
mod view;

pub use self::csv::csv;
pub use devices::{devices_csv, has_devices};

/// A cause's next action as plain text (for notifications and other one-line uses).
pub fn next_line_text(c: &super::CauseReport, run_id: &str) -> String {
    groups::next_line(c.next, &c.step, &c.examples, c.devices, run_id).plain()
}
pub use html::html;
pub use junit::junit;
pub use markdown::markdown;
