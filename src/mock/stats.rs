//! What the mock counts about the traffic it sees: the serialisable [`Stats`] served by
//! `GET /__stats`, the per-request [`RequestRecord`] log, and the [`Recorder`] that keeps
//! both. Deciding faults is left to `limits` and `server`; duplicate detection over the
//! tenant's data is left to `inventory`.

use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::limits::SlidingWindow;

/// Oldest records are forgotten past this, so a mock left running for days stays bounded.
const MAX_RECORDS: usize = 1_000_000;

/// Counters over every request except `/__stats`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Stats {
    /// Requests received, counted on arrival.
    pub requests_total: u64,
    /// Finished requests by status code ("200", "429", …); `"dropped"` for connections the
    /// mock closed without answering.
    pub by_status: BTreeMap<String, u64>,
    /// Requests by `"METHOD /route/{template}/"` (relative to `/api`); unmatched paths are
    /// counted under `"METHOD (unknown)"`.
    pub by_route: BTreeMap<String, u64>,
    /// 429 answers.
    pub rate_limited: u64,
    /// Resources that look like blind re-sends.
    pub duplicates: Duplicates,
    /// Most requests that arrived within any one-second sliding window.
    pub peak_1s: u64,
    /// Most requests being processed at the same time.
    pub max_in_flight: u64,
    /// Faults the mock injected.
    pub injected: Injected,
    /// Resources created through the API (initial inventory excluded).
    pub created: Created,
}

/// Extra copies of resources that should have been created once.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Duplicates {
    /// Sum over alarm-rule names of (rules with that name - 1), over current rules.
    pub alarm_rules: u64,
    /// Extra command requests equal in command_type, command, command_args and sorted
    /// devices and groups.
    pub command_requests: u64,
}

/// Injected fault counts.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Injected {
    /// Random 500/502/503 answered before processing.
    pub errors: u64,
    /// Creates that were committed but answered 500.
    pub commit_then_fail: u64,
    /// Connections closed without a response.
    pub drops: u64,
}

/// Resources created through the API, including those whose answer was lost or faulted.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Created {
    pub alarm_rules: u64,
    pub command_requests: u64,
    pub app_versions: u64,
    pub contents: u64,
}

/// One request as the mock saw it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RequestRecord {
    pub method: String,
    /// The path exactly as received, `/api` prefix included.
    pub path: String,
    /// The raw query string, without `?`; empty when there was none.
    pub query: String,
    /// The route template this path matched, e.g. `"GET /v2/devices/"`.
    pub route: String,
    /// The status sent, or the one that would have been sent when `dropped`; 499 when the
    /// client went away before the answer was ready.
    pub status: u16,
    /// True when the mock closed the connection instead of answering.
    pub dropped: bool,
    /// Arrival time since the server started.
    pub elapsed: Duration,
}

/// How a request ended, for the counters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Ending {
    Answered(u16),
    Dropped(u16),
    ClientGone,
}

/// Accumulates [`Stats`] (minus the parts derived from data) and the request log.
#[derive(Debug, Default)]
pub(crate) struct Recorder {
    pub stats: Stats,
    window: SlidingWindow,
    in_flight: u64,
    records: VecDeque<RequestRecord>,
}

impl Recorder {
    /// Counts an arrival at `now` (for the peak window and in-flight gauge).
    pub fn arrive(&mut self, now: tokio::time::Instant) {
        self.stats.requests_total += 1;
        self.stats.peak_1s = self.stats.peak_1s.max(self.window.record(now));
        self.in_flight += 1;
        self.stats.max_in_flight = self.stats.max_in_flight.max(self.in_flight);
    }

    /// Counts the end of a request that arrived earlier.
    pub fn finish(&mut self, mut record: RequestRecord, ending: Ending) {
        self.in_flight = self.in_flight.saturating_sub(1);
        let key = match ending {
            Ending::Answered(s) => {
                record.status = s;
                s.to_string()
            }
            Ending::Dropped(s) => {
                record.status = s;
                record.dropped = true;
                "dropped".to_string()
            }
            Ending::ClientGone => {
                record.status = 499;
                "499".to_string()
            }
        };
        *self.stats.by_status.entry(key).or_default() += 1;
        *self.stats.by_route.entry(record.route.clone()).or_default() += 1;
        if record.status == 429 && !record.dropped {
            self.stats.rate_limited += 1;
        }
        if self.records.len() >= MAX_RECORDS {
            self.records.pop_front();
        }
        self.records.push_back(record);
    }

    pub fn records(&self) -> Vec<RequestRecord> {
        self.records.iter().cloned().collect()
    }
}
