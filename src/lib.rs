//! esper-bulk: run bulk operations against the Esper MDM REST API safely and fast.
//!
//! # Code map
//!
//! The modules follow the pipeline a job file travels through; the type changes at every
//! arrow and nothing is mutated in place:
//!
//! ```text
//! jobs/x.yaml ─job::load→ Job ─plan::resolve(Inventory)→ Resolved ─plan::compile→ Plan
//!   ─exec::run(Dispatch, Governor, Scheduler)→ Outcome* ─report::Report::build→ Report
//!   ─report::render→ files                      └─journal::OutcomeRecord→ journal.jsonl
//! ```
//!
//! [`run`] drives that pipeline for one run (lock, run directory, journal, reports);
//! [`cli`] only turns flags into [`run`]'s settings and prints what comes back.
//!
//! - [`job`]: parses and validates a YAML job file into a [`job::Job`]. Pure: text in,
//!   job or diagnostics out; no network, no clock, no tokio.
//! - [`plan`]: resolves the job's targets through the [`plan::Inventory`] trait (read-only
//!   API calls), freezes them and compiles the task graph ([`plan::Plan`]): each step's
//!   fan-out and operation template; [`plan::Plan::task`] materializes any task on demand;
//!   [`plan::plan_text`] is the review text `esper-bulk plan` prints. Requests are named
//!   by [`plan::Endpoint`], never by path; the text gets paths through [`plan::Paths`].
//!   [`plan::diff`] makes the plan a diff against live state: from one bulk listing per
//!   resource kind it gives every write task an [`plan::Action`] (create, update with its
//!   field changes, unchanged, skip, conflict, send), which the run acts on without a read
//!   per task. `plan::verify` checks a saved plan before it is trusted; [`plan::limit`]
//!   narrows the resolved targets to a `--limit`. [`plan::export`] decides what an `export`
//!   step reads (a scope of filters, never a frozen list of devices), how `what: installed`
//!   reads, and what it costs. Apart from the inventory reads it is pure and sends nothing.
//!   From plan format 3 the frozen targets are written as columns (`plan/frozen.rs`: UUIDs
//!   as base64 of their bytes, names and details front-coded), so a 100,000-device plan
//!   file stays small; formats 2 and 3 both run. Large device targets are listed in
//!   `/v2/devices/` cursor pages of 1,000, and the plan's notes say what that listing's own
//!   budget makes it cost; commands to devices are chunked at the API's 1,000 a request.
//! - [`base`]: the vocabulary the layers share and none owns: endpoints
//!   ([`base::Endpoint`]), request kinds, observations, the [`base::Throttle`] gate,
//!   [`base::FailureClass`], and the [`base::Hint`] convention for advice on errors. A
//!   leaf: it imports nothing from the crate.
//! - [`exec`]: runs a plan: the [`exec::Governor`] (rate ceiling, adaptive send rate held
//!   under the server bucket [`exec::AdaptiveRate`] fits from the run's own overloads,
//!   adaptive in-flight window, run-wide pause on 429 that one probe ends, a gate that
//!   closes when the run stops), retries with backon, step outputs, and the worker pool, driving the pure
//!   [`exec::Scheduler`] (steps, rollout stages, `needs` whole or per item, skips, replay on
//!   resume). Task failures are data ([`exec::Outcome`] with a typed [`exec::Reason`] and
//!   [`exec::Failure`]), never `Err`. With a coordinator the governor also draws each
//!   permit from an [`exec::SharedBudget`] (after its own ceiling) and shares 429 pauses
//!   through it; `exec` sees only that trait, never Redis.
//! - [`esper`]: the typed Esper client (one attempt per call, its own
//!   [`esper::ErrorClass`], the one table of paths by endpoint) and [`esper::adapter`],
//!   which implements the engine's traits over it: [`exec::Dispatch`] (mapping client
//!   errors onto executor failures, reading back by natural key before any create
//!   is repeated, export steps read page by page, and the check after a followed INSTALL
//!   of which devices really have the version), [`plan::Inventory`] and [`plan::Paths`].
//! - [`export`]: the export file sink: rows streamed into CSV, a JSON array or JSON
//!   Lines, in a temporary file renamed over the destination when complete.
//! - [`report`]: folds outcomes into a [`report::Report`] (its own schema types, the
//!   [`report::RunOutcome`] and its exit code, the failures grouped by cause with a typed
//!   next action in [`report::causes`], the [`report::NotifySummary`] a webhook receives)
//!   and renders it: one file per format under `report/render/` (`devices.csv` among
//!   them), Markdown and HTML laying out one shared view model.
//! - [`mock`]: an embedded, stateful fake of Esper with fault injection, used by tests,
//!   the demo and people trying jobs without a tenant.
//! - [`apk`]: reads package and version code from an APK (or the mock's text "APK") so
//!   uploads of existing versions are skipped.
//! - [`run`]: one run end to end, as a library: [`run::run`] takes a [`run::RunConfig`]
//!   (a job, a saved plan or a run id to resume; connection, pacing, state directory,
//!   output) and a cancellation token, and returns a [`run::RunResult`] with the report;
//!   [`run::plan`] stops after planning. It owns the state directory's layout (run
//!   directories, locks, and each job's `last_success` for `since: last_run`), builds
//!   one-line jobs (`esper-bulk export`) as job text for the one validator, builds the
//!   only [`exec::GovernorConfig`] ([`run::governor_config`]), journals every task,
//!   resumes runs, rebuilds reports from journals, lists and prunes the state directory's
//!   runs ([`run::list_runs`], [`run::prune`]: never a locked or unfinished one), calls
//!   the job's `notify:` webhooks when a run ends (`run/notify.rs`, the one place a webhook
//!   URL is rendered) and runs the demo. It never prints:
//!   notices go to the caller's [`run::Notices`], failures to start are [`run::RunError`].
//! - [`context`]: named connection contexts from `config.toml` (server, enterprise, where
//!   the key is; never a literal key), which one `--context`, `ESPER_BULK_CONTEXT` or
//!   `default_context` chooses, and writing one (`mock --write-context`). How a context
//!   ranks against flags, the job and `ESPER_*` is the run's connection resolution.
//! - [`journal`]: the append-only JSON Lines record of task outcomes that `run --resume`
//!   and report rebuilding read, in its own versioned record types (`journal::v1` reads
//!   the first format). It records; it does not know reports.
//! - [`lock`]: the run lock: one run of a job against one server and enterprise at a
//!   time, keyed by all three (exit 75 when held).
//! - [`coord`]: the coordinator several processes and hosts share through Redis
//!   (`run --coordinator`): the tenant's GCRA bucket and shared pause behind
//!   [`exec::SharedBudget`] (degrading to a local fallback rate while Redis is away), the
//!   run lock as a lease with a fencing token and heartbeat, and `coordinator status`.
//!   Every read-modify-write is a Lua script on Redis' clock; `run/shared.rs` decides what
//!   a run does with it (refuse at start, degrade mid-run, stop on a lost lease) and which
//!   Redis it is (`--coordinator`, the job's `coordinator:` kept as a secret template like a
//!   webhook URL, `ESPER_BULK_REDIS_URL`).
//! - [`progress`]: progress bars on a terminal (nothing under cron or a pipe).
//! - [`util`]: atomic file writes onto regular files only (whole, or streamed into the
//!   temporary file with `atomic_write_with`, as plans are), bounded reads of regular
//!   files, and file-safe names.
//! - [`cli`]: the command line: its grammar (`cli/args.rs`, from which the completion
//!   scripts and the man page are made; `cli/complete.rs` offers live run ids and context
//!   names),
//!   flags to [`run`]'s settings (the chosen [`context`] included), the day-to-day
//!   commands' output (`cli/ops.rs`: `context`, `runs`, `prune`),
//!   and `cli/console.rs`, where every word goes: results to stdout; notices, errors and
//!   progress to stderr (JSON lines under `--log-format json`, silence under `-q`); a
//!   closed pipe ends it quietly. The only place that uses `anyhow`, and the only one that
//!   prints run output (the mock's own command prints its address).
//!
//! Dependencies point one way: `exec` and the Esper client (`esper::{client, transport,
//! paginate, error, model, page, routes}`) both use `base` and never each other; only the
//! adapter `esper::adapter` imports `exec` and `plan` (it implements their traits). `journal` and
//! `report` read `exec`'s types and write their own.
//!
//! # Errors and advice
//!
//! Library errors derive `thiserror::Error`. `Display` says what went wrong: lowercase, no
//! trailing period, naming the bad value. How to fix it is never part of `Display`: an
//! error with advice implements [`base::Hint`] (`fn hint(&self) -> Option<String>`), and
//! advice is rendered in exactly two shapes, [`base::render_error`] (`error: …` then
//! `  = help: …`, for the terminal) and [`base::one_line`] (`… (hint)`, for report cells
//! and errors kept as one line of text). Task failures carry the hint as data
//! ([`exec::Failure::hint`]) so reports can show it.
//!
//! # Invariants
//!
//! - **Invariant:** `job` and `plan` never do I/O of their own; `plan` reads the API only
//!   through [`plan::Inventory`].
//! - **Invariant:** nothing is sent before the whole job validates and compiles.
//! - **Invariant:** a run takes its job's lock before it reads the API, and holds it until
//!   its report is written; with a coordinator the lock is the Redis lease, and a run
//!   whose lease is taken by another process stops dispatching.
//! - **Invariant:** with a coordinator, the shared budget only ever holds a request back:
//!   the local ceiling still applies, and Redis failing degrades pacing to the local
//!   fallback rate, never stops a run that holds its lease.
//! - **Invariant:** the library never prints and never installs signal handlers; a run
//!   stops only through its cancellation token (or its deadline).
//! - **Invariant:** every HTTP request the engine makes (writes, reads, retries, pages,
//!   status polls) passes the client's [`base::Throttle`] and so takes a rate permit. The
//!   only other requests are the end-of-run webhooks, which go elsewhere than Esper.
//! - **Invariant:** a webhook URL is a secret like the key: it stays a `${NAME}` template
//!   in jobs and plans, is rendered only when sent, and no log, notice, report, journal or
//!   error holds it (they name the webhook by its place, at most its host).
//! - **Invariant:** a create whose result is unknown is never re-sent before a read-back
//!   by its natural key found nothing. Without an ambiguous failure, a task the plan's
//!   snapshot decided is not read again (no redundant calls); a saved plan older than
//!   `--max-plan-age` has its snapshot read again first.
//! - **Invariant:** once a run stops, no request that has not started is sent; tasks
//!   that sent nothing are `not_started`, never `unknown`.
//! - **Invariant:** `Plan::task(id)` is deterministic: the same plan always yields the same
//!   requests, so a reviewed plan file is exactly what runs.
//! - **Invariant:** the journal is append-only and versioned, and every older format stays
//!   readable; resuming treats every task without a recorded success as uncertain (read
//!   back before any write).
//! - **Invariant:** failures stay typed from the dispatch to every renderer: nothing
//!   downstream of `exec` parses message text to group, count or advise.
//! - **Invariant:** saved formats are versioned types owned by the module that writes
//!   them (`journal::records`, `report::schema`, the plan module's own `Plan` data with
//!   `PLAN_FORMAT`), never `Serialize` derived on executor internals; old formats stay
//!   readable, and fixture tests keep an old (format 2) and a format 3 plan file
//!   identical on a round trip.
//! - **Invariant:** reports list tasks in plan order (by `TaskId`), never completion order.
//! - **Invariant:** the API key lives in [`esper::ApiKey`]; it is never printed by `Debug`,
//!   logs, errors, plans or reports, and the client masks it in everything a server sends
//!   (bodies, `Location`) before that text enters the engine.
//! - **Invariant:** an answer that is not what its endpoint promises (a list that is not a
//!   page, links that circle or leave the host, a redirect, an oversized body) is a typed
//!   failure, never "nothing exists"; the client follows no redirect.
//! - **Invariant:** connection settings are resolved in one order for every command (flags,
//!   a saved plan's or resumed run's server, the job's `esper:` block, the chosen
//!   [`context`], `ESPER_*`); a context's enterprise and key are used only with its own
//!   server, and a context named for the command that contradicts the job or the plan is
//!   refused. A config file never holds a literal key.
//! - **Invariant:** `prune` never deletes a run whose lock is held or that `--resume` would
//!   continue.
//! - **Invariant:** `mock` imports nothing from the engine.
//! - **Invariant:** an export only reads: it holds no write slot and sends no write. Its
//!   rows go to the file as each page arrives (between pages it keeps ids and labels at
//!   most, never Esper's objects), and its file appears complete or not at all.

pub mod apk;
pub mod base;
pub mod cli;
pub mod context;
pub mod coord;
pub mod esper;
pub mod exec;
pub mod export;
pub mod job;
pub mod journal;
pub mod lock;
pub mod mock;
pub mod plan;
pub mod progress;
pub mod report;
pub mod run;
pub mod util;

/// Process exit codes; stable, documented in `--help` and the README.
pub mod exit {
    /// Every task succeeded.
    pub const OK: u8 = 0;
    /// The run finished but some tasks failed.
    pub const FAILED_TASKS: u8 = 1;
    /// Invalid job, plan or usage: nothing was sent.
    pub const INVALID: u8 = 2;
    /// A rollout's `max_failures` threshold stopped the run.
    pub const THRESHOLD: u8 = 3;
    /// Incomplete but resumable (deadline or retry budget exhausted, or the journal or
    /// report could not be written, e.g. on a full disk).
    pub const INCOMPLETE: u8 = 4;
    /// The API could not be reached (DNS, connection refused, TLS) or refused the key or
    /// the enterprise (401, 403, 404 on the enterprise) before anything was written.
    pub const NO_ACCESS: u8 = 5;
    /// `plan --detailed-exitcode`: the plan would write (0 there means it would not).
    pub const CHANGES_PENDING: u8 = 6;
    /// Another run holds the lock.
    pub const LOCKED: u8 = 75;
    /// Interrupted by a signal.
    pub const INTERRUPTED: u8 = 130;
}
