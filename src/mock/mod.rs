//! An embedded, stateful fake of the Esper MDM REST API with fault injection.
//!
//! This module owns the public face of the mock: its configuration ([`MockConfig`],
//! [`Faults`], [`RateLimit`], [`CommandBehaviour`]), the running server handle
//! ([`MockServer`]) with its observability ([`Stats`], [`RequestRecord`], [`Snapshot`]) and
//! the `esper-bulk mock` entry point ([`serve_cli`], [`MockArgs`]). It stands alone: it
//! imports nothing from the engine (`job`, `plan`, `exec`, `esper`), so a bug shared by the
//! client and the fake cannot hide itself. Wiring `mock` into the command line is left to
//! `cli`.
//!
//! # What it serves
//!
//! Paths, trailing slashes, envelopes and error bodies follow `shared/esper/API.md`. All
//! routes live under `/api` and need `Authorization: Bearer <api_key>`; `GET /__stats` (also
//! `/api/__stats`) needs no key, is never faulted and is not counted in [`Stats`].
//!
//! | Route | Notes |
//! |---|---|
//! | `GET /enterprise/{eid}/devicegroup/` | DRF page; `name` exact filter |
//! | `GET, PATCH /enterprise/{eid}/devicegroup/{group_id}/` | `?action=add\|move\|remove\|rename` |
//! | `GET /enterprise/{eid}/device/`, `…/device/{device_id}/` | `group` (with subgroups), `name`, `serial`, `imei`, `state`, `search` |
//! | `GET /v2/devices/` | envelope; offset page (`prev`) or cursor page (`cursor=start`) |
//! | `GET /enterprise/{eid}/application/`, `…/{application_id}/`, `…/{application_id}/version/`, `…/version/{version_id}/` | DRF pages |
//! | `POST /enterprise/{eid}/application/upload/` | multipart `app_file`, 201 `{"application": …}` |
//! | `GET, POST /commands/v0/commands/`, `GET …/{id}/`, `GET …/{id}/stats/`, `GET /commands/v0/status/` | envelope |
//! | `GET, POST /v1/enterprise/{eid}/alarmrules/`, `GET, PUT, PATCH, DELETE …/{alarm_id}/` | DRF |
//! | `GET …/application/{application_id}/version/{version_id}/installdevices` | DRF page of `{id, device_name, alias_name, group_name}`; no trailing slash, as published |
//! | `GET /enterprise/{eid}/device/{device_id}/app/` | DRF page of `DeviceApp`; `package_name` exact filter |
//! | `GET /v0/enterprise/{eid}/content/`, `POST …/content/upload/` | `search` over tags and description only; multipart `key`, 200 |
//! | `GET, PATCH, DELETE /v0/enterprise/{eid}/content/{content_id}/` | PATCH sets `tags`, `description` |
//!
//! # Choices where API.md is silent
//!
//! - **Mock APK.** The mock cannot parse real APKs. `app_file` must be UTF-8 text with
//!   `key=value` lines: `package=com.acme.kiosk` and `version_code=420` (digits) are
//!   required, `version_name=4.2.0` and `application_name=Kiosk` are optional; blank lines
//!   and `#` comments are ignored. Anything else is a 400. Re-uploading a package with an
//!   existing `version_code` is a 400 too. The 201 body's `versions` holds only the uploaded
//!   version (the full list is on `GET …/application/`).
//! - **Group counts.** `device_count` includes devices in subgroups, so it equals the
//!   `count` of `GET …/device/?group=<id>`.
//! - **`/v2/devices/` `state`** accepts `ONLINE` / `OFFLINE` (any case) or the legacy
//!   integers `1` / `60`; devices carry `state: "ONLINE" | "OFFLINE"` and `groups` as
//!   `{id, name, path}` objects. Cursors are opaque strings; a bad one is a 400.
//! - **Filters.** Unknown or malformed filter ids (`group`, `group_multi`, `request`, …) are
//!   a 400, not an empty page. Bad `limit` / `offset` fall back to the defaults, as DRF does;
//!   `/v2/devices/` caps `limit` at 1000.
//! - **Command list filters** `devices` / `groups` match the ids sent in a request's own
//!   `devices` / `groups` fields (not the group expansion).
//! - **Command progress.** Per device: `Command Queued` for the first quarter of its
//!   duration, `Command Initiated` for the second, `Command In Progress` until the end, then
//!   the final state. Offline devices stay `Command Queued`. `schedule` is stored but every
//!   command runs as `IMMEDIATE`. Absent `device_type` means `all`.
//! - **Installed apps.** Every device starts with `com.acme.kiosk` 400 installed. An
//!   INSTALL installs its version on a device when the device's status reaches `Command
//!   Success`, unless the device was drawn as a no-op (`install_noop_rate`): then it
//!   "succeeds" and nothing changes. A succeeded UNINSTALL removes the package. Versions'
//!   `installed_count` counts the devices that have them now.
//! - **Wrong enterprise id** in a path: 404, whether it is another UUID or not one, as
//!   Esper answers any unknown resource. A path without its trailing slash is a 404 (no
//!   redirect).
//! - **Content** `size` is a string (the published schema types it so).
//! - **400 bodies** name every bad field. Service routes key `content` by field, nested
//!   fields dotted (`"command_args.app_version": [...]`); core routes list `"field: msg"`
//!   strings in `errors` and repeat the first one as `message`.
//! - **Rate-limit penalty.** After a 429 from an empty bucket every request is a 429 until
//!   the penalty ends; those penalty 429s do not extend it. [`MockServer::set_faults`]
//!   refills the bucket and clears any penalty.
//! - **Faulted 502/503** bodies are small HTML pages, as a load balancer would send; 500s
//!   carry the route family's JSON error body.
//! - **Drops** close the TCP connection before any response byte is written; see
//!   [`RequestRecord::dropped`]. A request whose client hung up first is recorded as 499.
//! - The request log keeps the most recent 1,000,000 records.

mod api;
mod cli;
mod http;
mod inventory;
pub(crate) mod limits;
mod listener;
mod routes;
mod server;
mod stats;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub use cli::{MockArgs, parse_duration, serve_cli, serve_cli_then};
pub use inventory::{
    Snapshot, SnapshotAlarmRule, SnapshotApp, SnapshotAppVersion, SnapshotCommand,
    SnapshotCommandStatus, SnapshotContent, SnapshotDevice, SnapshotGroup,
};
pub use stats::{Created, Duplicates, Injected, RequestRecord, Stats};

/// Everything that shapes one mock tenant. Equal configs and equal request orders give
/// equal responses, ids included.
#[derive(Clone, Debug)]
pub struct MockConfig {
    /// Seeds the inventory, the ids it hands out and every random fault decision.
    pub seed: u64,
    /// TCP port on 127.0.0.1; 0 picks a free one.
    pub port: u16,
    /// The only bearer token accepted.
    pub api_key: String,
    /// The tenant's enterprise UUID, as used in `/enterprise/{eid}/…` paths.
    pub enterprise_id: String,
    /// Number of leaf store groups ("0001", "0002", …) under the four regions.
    pub groups: usize,
    /// Devices in each leaf store group.
    pub devices_per_group: usize,
    /// Fraction of devices that are offline (state 60); their commands stay queued.
    pub offline_fraction: f64,
    /// Injected failures; can be changed at runtime with [`MockServer::set_faults`].
    pub faults: Faults,
    /// How command requests progress on devices.
    pub commands: CommandBehaviour,
}

impl MockConfig {
    /// A small tenant (8 store groups of 5 devices, all online), no faults, and an API key
    /// and enterprise id derived from `seed`.
    pub fn new(seed: u64) -> Self {
        let (api_key, enterprise_id) = inventory::derived_credentials(seed);
        MockConfig {
            seed,
            port: 0,
            api_key,
            enterprise_id,
            groups: 8,
            devices_per_group: 5,
            offline_fraction: 0.0,
            faults: Faults::default(),
            commands: CommandBehaviour::default(),
        }
    }
}

/// Failures the mock injects. All fractions are in `[0, 1]`; values outside are clamped.
#[derive(Clone, Debug, Default)]
pub struct Faults {
    /// Server-side token bucket shared by all routes; `None` means no limit.
    pub rate_limit: Option<RateLimit>,
    /// Fraction of requests answered 500/502/503 before anything is changed.
    pub error_rate: f64,
    /// Fraction of creating POSTs (alarm rule, command, app upload, content upload) that
    /// commit and then answer 500.
    pub commit_then_fail_rate: f64,
    /// Fraction of requests whose connection is closed without any response; writes are
    /// committed first, so the client cannot know the outcome.
    pub drop_rate: f64,
    /// Added before answering every request.
    pub latency: Duration,
    /// Plus a uniform extra delay in `[0, latency_jitter)`.
    pub latency_jitter: Duration,
}

/// The server-side rate limit.
#[derive(Clone, Debug)]
pub struct RateLimit {
    /// Tokens added per second.
    pub rate: f64,
    /// Bucket size, i.e. how many requests may arrive at once after a quiet spell.
    pub burst: u32,
    /// Whether 429s carry `Retry-After: <seconds>`; the real API does not promise it.
    pub retry_after: bool,
    /// After a 429 every request is refused for this long (`ZERO` = no penalty).
    pub penalty: Duration,
}

/// How command requests play out on devices. Each device's result is a pure function of
/// (seed, request id, device id), so reruns agree.
#[derive(Clone, Debug)]
pub struct CommandBehaviour {
    /// Fraction of online devices that end in "Command Failure".
    pub failure_rate: f64,
    /// Fraction of online devices that end in "Command TimeOut".
    pub timeout_rate: f64,
    /// Shortest time from create to the final state.
    pub min_duration: Duration,
    /// Longest time from create to the final state.
    pub max_duration: Duration,
    /// Fraction of devices on which an INSTALL ends in "Command Success" without the
    /// version being installed (to exercise install verification).
    pub install_noop_rate: f64,
}

impl Default for CommandBehaviour {
    fn default() -> Self {
        CommandBehaviour {
            failure_rate: 0.0,
            timeout_rate: 0.0,
            min_duration: Duration::from_millis(200),
            max_duration: Duration::from_secs(1),
            install_noop_rate: 0.0,
        }
    }
}

/// A running mock. Dropping it stops the server abruptly; [`MockServer::shutdown`] stops it
/// gracefully.
pub struct MockServer {
    shared: Arc<server::Shared>,
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<std::io::Result<()>>>,
}

impl MockServer {
    /// Builds the inventory, binds `127.0.0.1:cfg.port` and starts serving.
    pub async fn start(cfg: MockConfig) -> std::io::Result<MockServer> {
        let (shared, addr, stop, task) = server::start(cfg).await?;
        Ok(MockServer {
            shared,
            addr,
            stop: Some(stop),
            task: Some(task),
        })
    }

    /// `http://127.0.0.1:PORT/api`, without a trailing slash.
    pub fn base_url(&self) -> String {
        format!("http://{}/api", self.addr)
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The accepted bearer token.
    pub fn api_key(&self) -> &str {
        &self.shared.api_key
    }

    /// The tenant's enterprise id.
    pub fn enterprise_id(&self) -> &str {
        &self.shared.enterprise_id
    }

    /// Counters, as served by `GET /__stats`.
    pub fn stats(&self) -> Stats {
        self.lock().stats()
    }

    /// Every request so far (up to the log's cap), in arrival order.
    pub fn requests(&self) -> Vec<RequestRecord> {
        self.lock().records()
    }

    /// Replaces the injected faults; takes effect for requests arriving afterwards.
    pub fn set_faults(&self, faults: Faults) {
        self.lock().set_faults(faults);
    }

    /// A read-only copy of the tenant's data, command statuses evaluated now.
    pub fn snapshot(&self) -> Snapshot {
        let now = tokio::time::Instant::now();
        self.lock().inv.snapshot(now)
    }

    /// Stops accepting, lets in-flight requests finish (at most ~2 s), then returns.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(mut task) = self.task.take()
            && tokio::time::timeout(Duration::from_secs(2), &mut task)
                .await
                .is_err()
        {
            task.abort();
        }
    }

    fn lock(&self) -> MutexGuard<'_, server::State> {
        self.shared.lock()
    }
}

impl Drop for MockServer {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

impl std::fmt::Debug for MockServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The key is a fake, but keeping it out of Debug output matches the engine's rule.
        f.debug_struct("MockServer")
            .field("addr", &self.addr)
            .field("enterprise_id", &self.shared.enterprise_id)
            .finish_non_exhaustive()
    }
}

/// Poisoning only means another request panicked mid-update; the mock's state is still
/// usable for a fake, and refusing every later request would hide the first failure.
fn lock_ignoring_poison<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}
