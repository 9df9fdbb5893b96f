//! SIGINT/SIGTERM for the binary: the first signal cancels the run's token so it drains
//! and writes its report; the second exits the process at once with 130.
//!
//! Only for a process that is one run: the library entry points take a token and never
//! install handlers themselves, so tests and embedders cancel runs their own way.

use tokio_util::sync::CancellationToken;

use super::notice::{Notice, Notices};

/// Spawns the handler on the current tokio runtime.
pub fn cancel_on_signals(cancel: CancellationToken, notices: Notices) {
    tokio::spawn(async move {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = match signal(SignalKind::terminate()) {
            Ok(s) => Some(s),
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGTERM");
                None
            }
        };
        let mut seen = 0;
        loop {
            tokio::select! {
                r = tokio::signal::ctrl_c() => if r.is_err() { return },
                _ = async { match term.as_mut() { Some(t) => { t.recv().await; } None => std::future::pending().await } } => {}
            }
            seen += 1;
            if seen == 1 {
                notices.send(Notice::Stopping);
                cancel.cancel();
            } else {
                notices.send(Notice::StoppedAtOnce);
                std::process::exit(i32::from(crate::exit::INTERRUPTED));
            }
        }
    });
}
