//! `esper-bulk demo`: start the embedded mock Esper with a realistic fleet and realistic
//! trouble (a 30 req/s server limit, 2% 5xx, 2% commit-then-fail), run a job against it
//! through the ordinary [`super::run()`], and report what the mock saw.
//!
//! The run is a real run (lock, run directory, journal, reports); only the server is fake.
//! The mock's behaviour is [`crate::mock`]'s; printing the outcome is the caller's.

use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::esper::ApiKey;
use crate::esper::adapter::PollSettings;
use crate::mock;

use super::config::{ConnectionSettings, Env, Output, Pacing, RunConfig, Source};
use super::notice::Notice;
use super::{RunError, RunResult, load_job_text};

/// The built-in demo job, so `demo` works from any directory.
pub const DEMO_JOB: &str = include_str!("../../jobs/demo.yaml");

/// One demo.
#[derive(Debug)]
pub struct DemoConfig {
    /// A job file to run instead of [`DEMO_JOB`]; its files are relative to it.
    pub job: Option<PathBuf>,
    pub state_dir: PathBuf,
    pub groups: usize,
    pub devices_per_group: usize,
    /// Seeds the mock's faults and the engine's jitter, so a demo can be repeated.
    pub seed: u64,
    pub output: Output,
}

impl DemoConfig {
    /// The built-in job against 40 store groups of 10 devices, seed 7, [`Output::quiet`].
    pub fn new(state_dir: PathBuf) -> DemoConfig {
        DemoConfig {
            job: None,
            state_dir,
            groups: 40,
            devices_per_group: 10,
            seed: 7,
            output: Output::quiet(),
        }
    }
}

/// The run, and what the server saw of it.
#[derive(Debug)]
pub struct DemoResult {
    pub run: RunResult,
    pub mock: mock::Stats,
}

impl DemoResult {
    /// The line that shows the run caused no duplicates.
    pub fn mock_summary(&self) -> String {
        let s = &self.mock;
        format!(
            "mock saw {} requests, {} answered 429, peak {} in one second; duplicates created: {} alarm rules, {} command requests",
            s.requests_total,
            s.rate_limited,
            s.peak_1s,
            s.duplicates.alarm_rules,
            s.duplicates.command_requests
        )
    }
}

fn mock_config(cfg: &DemoConfig) -> mock::MockConfig {
    let mut m = mock::MockConfig::new(cfg.seed);
    m.groups = cfg.groups;
    m.devices_per_group = cfg.devices_per_group;
    m.offline_fraction = 0.0;
    m.faults = mock::Faults {
        rate_limit: Some(mock::RateLimit {
            rate: 30.0,
            burst: 10,
            retry_after: false,
            penalty: Duration::from_millis(500),
        }),
        error_rate: 0.02,
        commit_then_fail_rate: 0.02,
        drop_rate: 0.0,
        latency: Duration::from_millis(5),
        latency_jitter: Duration::from_millis(10),
    };
    m.commands = mock::CommandBehaviour {
        failure_rate: 0.0,
        timeout_rate: 0.0,
        min_duration: Duration::from_millis(300),
        max_duration: Duration::from_millis(1500),
        install_noop_rate: 0.0,
    };
    m
}

/// Runs the demo; the mock is shut down before this returns.
pub async fn demo(cfg: DemoConfig, cancel: CancellationToken) -> Result<DemoResult, RunError> {
    let (file, text) = match &cfg.job {
        Some(p) => (
            p.display().to_string(),
            super::load::read_job_file(p).map_err(|source| RunError::ReadJob {
                path: p.clone(),
                source,
            })?,
        ),
        None => ("jobs/demo.yaml".to_string(), DEMO_JOB.to_string()),
    };
    let server = mock::MockServer::start(mock_config(&cfg))
        .await
        .map_err(RunError::Mock)?;
    let notices = &cfg.output.notices;
    notices.send(Notice::MockStarted {
        base_url: server.base_url(),
        groups: cfg.groups,
        devices_per_group: cfg.devices_per_group,
    });
    let key = server.api_key().to_string();
    let process = Env::process();
    let env = {
        let key = key.clone();
        Env::from_fn(move |n| {
            if n == "ESPER_API_KEY" {
                Some(key.clone())
            } else {
                process.get(n)
            }
        })
    };
    // The built-in job names no files; a --job file's paths are relative to it.
    let base = cfg
        .job
        .as_deref()
        .and_then(Path::parent)
        .map(Path::to_path_buf)
        .unwrap_or_default();
    let loaded = load_job_text(&file, &text, &base, &env)?;
    for w in loaded.warnings {
        notices.send(Notice::JobWarning(w));
    }
    let connection =
        ConnectionSettings::direct(&server.base_url(), server.enterprise_id(), ApiKey::new(key));
    let mut run = RunConfig::new(Source::Job(Box::new(loaded.job)), connection, cfg.state_dir);
    run.pacing = Pacing {
        poll: PollSettings {
            initial: Duration::from_millis(500),
            max: Duration::from_secs(3),
        },
        seed: Some(cfg.seed),
        ..Pacing::production()
    };
    run.output = cfg.output;
    let result = super::run(run, cancel).await;
    let mock = server.stats();
    server.shutdown().await;
    Ok(DemoResult { run: result?, mock })
}
