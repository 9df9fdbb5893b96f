//! The budget several processes share: what the [`super::Governor`] asks, below its own
//! ceiling, before it sends a request when a coordinator is configured.
//!
//! The governor sees only this trait, never Redis (the implementation is
//! `crate::coord::budget`), so `exec` keeps depending on nothing but `base`. A shared
//! budget answers each request with a [`Grant`]; when it cannot answer (the coordinator is
//! unreachable) it says [`Grant::Degraded`] and the governor falls back to its own local
//! fallback rate. A 429 one process sees is published as a shared pause so the others stop
//! too. How the budget reconnects, and what it counts, is the implementation's business;
//! the governor only copies [`SharedStats`] into its own stats for the report.

use std::time::Duration;

use futures::future::BoxFuture;

/// The answer to one request for a shared permit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Grant {
    /// Send now.
    Go,
    /// A permit is reserved this far ahead: send after waiting this long (no new request
    /// needed, the slot is taken).
    After(Duration),
    /// The shared budget is booked further ahead than one reservation may reach: wait
    /// this long and ask again (nobody was throttled, so nothing else reacts).
    Retry(Duration),
    /// Every process is paused (another one saw a 429) for this long: wait, then ask again.
    Paused(Duration),
    /// The coordinator cannot answer: pace with the local fallback rate instead.
    Degraded,
}

/// What the shared budget did during one run, for the report.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SharedStats {
    /// Where the coordinator is, without any password.
    pub url: String,
    /// Permits the shared bucket granted.
    pub permits_shared: u64,
    /// Permits taken from the local fallback rate while the coordinator was unreachable.
    pub permits_local: u64,
    /// Pauses this process published after a 429.
    pub pauses_published: u64,
    /// Shared pauses published by another process that this process waited for.
    pub pauses_seen: u64,
    /// The coordinator was unreachable at some point of the run.
    pub degraded: bool,
    /// Times the connection came back after it was lost.
    pub reconnects: u64,
    /// The fallback rate used while degraded, requests per second.
    pub fallback_rate: f64,
}

/// A budget shared with other processes.
pub trait SharedBudget: Send + Sync {
    /// One permit: go, go after a wait, wait for a shared pause, or degraded.
    fn permit(&self) -> BoxFuture<'_, Grant>;
    /// Tells every process to pause for `pause` from now (the coordinator's clock).
    fn publish_pause(&self, pause: Duration) -> BoxFuture<'_, ()>;
    /// Counted when the governor waited for a shared pause it had not seen yet.
    fn pause_seen(&self);
    /// Counted when the governor took a local fallback permit instead.
    fn local_permit(&self);
    fn stats(&self) -> SharedStats;
    /// The local fallback rate while degraded, requests per second.
    fn fallback_rate(&self) -> f64;
}
