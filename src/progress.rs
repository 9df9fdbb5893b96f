//! Progress on a terminal: one bar per step (done / total, rate, ETA) with the run's
//! retries and 429s, for people watching a one-off migration.
//!
//! Shown only when stderr is a terminal; under cron, systemd or a pipe nothing is drawn
//! and logs stay clean. Bars draw on stderr, with the logs, so stdout carries only results;
//! log lines go through [`LogWriter`], which hides the bars while it writes so the two
//! never tear each other. Bars are cleared before the summary is printed. A step's ETA
//! comes from its own pace since its first task finished, not from the run's start, so a
//! step that waited for another does not show hours. It only displays; it decides nothing.

use std::io::IsTerminal;
use std::sync::Arc;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::exec::{Governor, Outcome};
use crate::plan::Plan;

/// The bars being drawn, if any, so log lines can step around them.
static ACTIVE: std::sync::Mutex<Option<MultiProgress>> = std::sync::Mutex::new(None);

/// stderr for tracing: writes pause the progress bars, if any are drawn.
#[derive(Clone, Copy, Default)]
pub struct LogWriter;

impl std::io::Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let active = ACTIVE.lock().ok().and_then(|a| a.clone());
        match active {
            Some(multi) => multi.suspend(|| std::io::stderr().write(buf)),
            None => std::io::stderr().write(buf),
        }
    }
    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for LogWriter {
    type Writer = LogWriter;
    fn make_writer(&'a self) -> LogWriter {
        LogWriter
    }
}

pub struct Progress {
    multi: MultiProgress,
    bars: Vec<ProgressBar>,
    /// Per step: when its first task finished, and how many have finished since.
    paces: Vec<std::sync::Mutex<Option<(std::time::Instant, u64)>>>,
    gov: Arc<Governor>,
    retries: std::sync::atomic::AtomicU64,
    started: std::time::Instant,
    /// Per step: whether it is an export (its bar counts pages, not tasks).
    exports: Vec<bool>,
}

impl Progress {
    /// Bars for every step of `plan`, or `None` when stderr is not a terminal.
    pub fn new(plan: &Plan, gov: Arc<Governor>) -> Option<Progress> {
        if !std::io::stderr().is_terminal() {
            return None;
        }
        let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stderr());
        let style = ProgressStyle::with_template("{prefix:>20} [{bar:30}] {pos}/{len} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> ");
        let bars = plan
            .steps
            .iter()
            .map(|s| {
                // An export is one task: its bar counts the pages it writes instead.
                let len = match &s.op {
                    crate::plan::OpTemplate::Export(e) => export_pages(e),
                    _ => u64::from(s.task_count),
                };
                let b = multi.add(ProgressBar::new(len));
                b.set_style(style.clone());
                b.set_prefix(s.id.clone());
                b
            })
            .collect();
        if let Ok(mut a) = ACTIVE.lock() {
            *a = Some(multi.clone());
        }
        Some(Progress {
            multi,
            paces: plan
                .steps
                .iter()
                .map(|_| std::sync::Mutex::new(None))
                .collect(),
            bars,
            gov,
            retries: Default::default(),
            started: std::time::Instant::now(),
            exports: plan
                .steps
                .iter()
                .map(|s| matches!(s.op, crate::plan::OpTemplate::Export(_)))
                .collect(),
        })
    }

    /// An export of step `step` has written `rows` rows so far: its bar shows pages.
    pub fn export_rows(&self, step: usize, rows: u64) {
        if let Some(b) = self.bars.get(step) {
            let pages = rows.div_ceil(crate::plan::export::PAGE);
            if b.length().is_some_and(|l| pages > l) {
                b.set_length(pages);
            }
            b.set_position(pages);
            b.set_message(format!("pages · {rows} rows"));
        }
    }

    /// One task of step `step` (its index in the plan) is decided.
    pub fn task_done(&self, step: usize, o: &Outcome) {
        let retries = self.retries.fetch_add(
            o.attempts.len().saturating_sub(1) as u64,
            std::sync::atomic::Ordering::Relaxed,
        ) + o.attempts.len().saturating_sub(1) as u64;
        let (requests, limited) = self.gov.counts();
        let rate = requests as f64 / self.started.elapsed().as_secs_f64().max(1.0);
        if let Some(b) = self.bars.get(step) {
            if self.exports.get(step).copied().unwrap_or(false) {
                b.set_position(b.length().unwrap_or(0));
                return;
            }
            b.inc(1);
            let eta = self.paces.get(step).map_or(String::new(), |p| {
                let mut p = p.lock().unwrap_or_else(|e| e.into_inner());
                let (since, n) = p.get_or_insert((std::time::Instant::now(), 0));
                *n += 1;
                let left = b.length().unwrap_or(0).saturating_sub(b.position());
                eta_text(since.elapsed(), *n - 1, left)
            });
            b.set_message(format!(
                "{eta}{rate:.1} req/s · retries {retries} · 429s {limited}"
            ));
        }
    }

    /// Removes the bars so the summary prints on a clean screen.
    pub fn finish(&self) {
        if let Ok(mut a) = ACTIVE.lock() {
            *a = None;
        }
        for b in &self.bars {
            b.finish_and_clear();
        }
        let _ = self.multi.clear();
    }
}

/// The pages an export is expected to write: its rows when the plan counted them, else
/// its planned reads.
fn export_pages(e: &crate::plan::ExportPlan) -> u64 {
    e.rows
        .map(|r| r.div_ceil(crate::plan::export::PAGE))
        .unwrap_or_else(|| e.requests.values().sum())
        .max(1)
}

/// `ETA 1m 20s · ` from a step's own pace: `done` tasks finished in `elapsed` after its
/// first; nothing until that pace is known, and nothing once the step is done.
fn eta_text(elapsed: std::time::Duration, done: u64, left: u64) -> String {
    if done == 0 || left == 0 {
        return String::new();
    }
    let secs = elapsed.as_secs_f64() / done as f64 * left as f64;
    let eta = std::time::Duration::from_secs(secs.ceil() as u64);
    format!("ETA {} · ", humantime::format_duration(eta))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn the_eta_is_the_steps_own_pace() {
        assert_eq!(eta_text(Duration::from_secs(10), 0, 5), "");
        assert_eq!(eta_text(Duration::from_secs(10), 10, 0), "");
        // 10 tasks in 10 s after the first: 30 more take 30 s, however long it waited.
        assert_eq!(eta_text(Duration::from_secs(10), 10, 30), "ETA 30s · ");
        assert_eq!(eta_text(Duration::from_millis(1500), 3, 2), "ETA 1s · ");
    }
}
