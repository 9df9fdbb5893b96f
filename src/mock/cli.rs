//! `esper-bulk mock`: the flags ([`MockArgs`]), their translation into a [`MockConfig`],
//! and [`serve_cli`], which prints where the mock listens and serves until Ctrl-C or
//! SIGTERM. Registering the subcommand is left to `cli`.

use std::io::Write;
use std::time::Duration;

use super::{CommandBehaviour, Faults, MockConfig, MockServer, RateLimit};

/// Flags of `esper-bulk mock`.
#[derive(clap::Args, Debug, Clone)]
pub struct MockArgs {
    /// TCP port on 127.0.0.1 (0 picks a free one).
    #[arg(long, default_value_t = 0)]
    pub port: u16,
    /// Number of leaf store groups.
    #[arg(long, default_value_t = 200)]
    pub groups: usize,
    /// Devices in each leaf store group.
    #[arg(long, default_value_t = 50)]
    pub devices_per_group: usize,
    /// Seed for the inventory, ids and fault decisions.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// API key to accept (default: derived from the seed).
    #[arg(long)]
    pub api_key: Option<String>,
    /// Enterprise UUID (default: derived from the seed).
    #[arg(long)]
    pub enterprise_id: Option<String>,
    /// Server rate limit in requests per second; 0 = none.
    #[arg(long, default_value_t = 50.0, value_parser = parse_rate)]
    pub rate: f64,
    /// Token-bucket size (default: one second's worth of --rate).
    #[arg(long)]
    pub burst: Option<u32>,
    /// Send `Retry-After` on 429 answers.
    #[arg(long, overrides_with = "no_retry_after")]
    pub retry_after: bool,
    /// Do not send `Retry-After` (the default; the real API does not promise it).
    #[arg(long, overrides_with = "retry_after")]
    pub no_retry_after: bool,
    /// After a 429, refuse everything for this long ("0s" = no penalty).
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    pub penalty: Duration,
    /// Fraction of requests answered 500/502/503 before processing.
    #[arg(long, default_value_t = 0.02, value_parser = parse_fraction)]
    pub error_rate: f64,
    /// Fraction of creates that commit and then answer 500.
    #[arg(long = "commit-then-fail", default_value_t = 0.01, value_parser = parse_fraction)]
    pub commit_then_fail: f64,
    /// Fraction of requests whose connection is closed without an answer.
    #[arg(long, default_value_t = 0.0, value_parser = parse_fraction)]
    pub drop_rate: f64,
    /// Added before every answer.
    #[arg(long, default_value = "20ms", value_parser = parse_duration)]
    pub latency: Duration,
    /// Plus a uniform extra delay below this.
    #[arg(long, default_value = "0ms", value_parser = parse_duration)]
    pub latency_jitter: Duration,
    // Device-side faults default to off: API faults (429s, 5xx, commit-then-fail) are
    // absorbed by the engine and a try still ends green, but a failed device is a real
    // task failure, so a first try with them on would end red for no fault of the job.
    /// Fraction of devices that are offline (their commands stay queued), e.g. 0.05
    #[arg(long = "offline", default_value_t = 0.0, value_parser = parse_fraction)]
    pub offline: f64,
    /// Fraction of online devices whose commands fail, e.g. 0.02
    #[arg(long = "command-failure", default_value_t = 0.0, value_parser = parse_fraction)]
    pub command_failure: f64,
    /// Fraction of online devices whose commands time out, e.g. 0.01
    #[arg(long = "command-timeout", default_value_t = 0.0, value_parser = parse_fraction)]
    pub command_timeout: f64,
    /// Fraction of devices on which an INSTALL reports success without installing, e.g. 0.05
    #[arg(long = "install-noop-rate", default_value_t = 0.0, value_parser = parse_fraction)]
    pub install_noop_rate: f64,
    /// Shortest time for a command to reach its final state on a device.
    #[arg(long, default_value = "200ms", value_parser = parse_duration)]
    pub command_min_duration: Duration,
    /// Longest time for a command to reach its final state on a device.
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    pub command_max_duration: Duration,
}

/// Keeps the generated inventory within what one process comfortably holds.
const MAX_DEVICES: usize = 2_000_000;

impl MockArgs {
    /// The config these flags describe.
    pub fn to_config(&self) -> std::io::Result<MockConfig> {
        let invalid = |msg: String| std::io::Error::new(std::io::ErrorKind::InvalidInput, msg);
        let mut cfg = MockConfig::new(self.seed);
        if let Some(k) = &self.api_key {
            if k.trim().is_empty() || k.chars().any(char::is_whitespace) {
                return Err(invalid("--api-key must be non-empty without spaces".into()));
            }
            cfg.api_key = k.clone();
        }
        if let Some(e) = &self.enterprise_id {
            let id = uuid::Uuid::try_parse(e)
                .map_err(|_| invalid(format!("--enterprise-id `{e}` is not a UUID")))?;
            cfg.enterprise_id = id.hyphenated().to_string();
        }
        let total = self.groups.checked_mul(self.devices_per_group);
        if total.is_none_or(|t| t > MAX_DEVICES) {
            return Err(invalid(format!(
                "--groups x --devices-per-group must be at most {MAX_DEVICES}"
            )));
        }
        cfg.port = self.port;
        cfg.groups = self.groups;
        cfg.devices_per_group = self.devices_per_group;
        cfg.offline_fraction = self.offline;
        cfg.faults = Faults {
            rate_limit: (self.rate > 0.0).then(|| RateLimit {
                rate: self.rate,
                // Saturating float-to-int cast: an absurd rate gives u32::MAX.
                burst: self.burst.unwrap_or(self.rate.ceil().max(1.0) as u32),
                retry_after: self.retry_after && !self.no_retry_after,
                penalty: self.penalty,
            }),
            error_rate: self.error_rate,
            commit_then_fail_rate: self.commit_then_fail,
            drop_rate: self.drop_rate,
            latency: self.latency,
            latency_jitter: self.latency_jitter,
        };
        cfg.commands = CommandBehaviour {
            failure_rate: self.command_failure,
            timeout_rate: self.command_timeout,
            min_duration: self.command_min_duration,
            max_duration: self.command_max_duration,
            install_noop_rate: self.install_noop_rate,
        };
        Ok(cfg)
    }
}

/// Starts the mock, prints its coordinates (base URL first) and serves until interrupted.
pub async fn serve_cli(args: MockArgs) -> std::io::Result<()> {
    serve_cli_then(args, |_| Ok(())).await
}

/// [`serve_cli`], calling `ready` once the mock listens and its coordinates are printed
/// (the command line records them as a context there); an error from it stops the mock.
pub async fn serve_cli_then(
    args: MockArgs,
    ready: impl FnOnce(&MockServer) -> std::io::Result<()>,
) -> std::io::Result<()> {
    let cfg = args.to_config()?;
    let server = MockServer::start(cfg).await?;
    {
        let mut out = std::io::stdout().lock();
        let base = server.base_url();
        let eid = server.enterprise_id();
        let key = server.api_key();
        writeln!(out, "{base}")?;
        writeln!(out, "enterprise_id: {eid}")?;
        writeln!(out, "api_key: {key}")?;
        writeln!(out, "export ESPER_BASE_URL={base}")?;
        writeln!(out, "export ESPER_ENTERPRISE_ID={eid}")?;
        writeln!(out, "export ESPER_API_KEY={key}")?;
        out.flush()?;
    }
    if let Err(e) = ready(&server) {
        server.shutdown().await;
        return Err(e);
    }
    wait_for_signal().await;
    server.shutdown().await;
    Ok(())
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// Parses "250ms", "2s", "1.5s", "1m", "1h" or a bare "0".
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    if t == "0" {
        return Ok(Duration::ZERO);
    }
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .ok_or_else(|| format!("`{s}` needs a unit: ms, s, m or h"))?;
    let (num, unit) = t.split_at(split);
    let value: f64 = num
        .parse()
        .map_err(|_| format!("`{s}` does not start with a number"))?;
    let scale = match unit.trim() {
        "ms" => 0.001,
        "s" => 1.0,
        "m" => 60.0,
        "h" => 3600.0,
        other => {
            return Err(format!(
                "unknown unit `{other}` in `{s}`; use ms, s, m or h"
            ));
        }
    };
    Duration::try_from_secs_f64(value * scale).map_err(|_| format!("`{s}` is out of range"))
}

fn parse_fraction(s: &str) -> Result<f64, String> {
    let v: f64 = s
        .trim()
        .parse()
        .map_err(|_| format!("`{s}` is not a number"))?;
    if (0.0..=1.0).contains(&v) {
        Ok(v)
    } else {
        Err(format!("`{s}` must be between 0 and 1"))
    }
}

fn parse_rate(s: &str) -> Result<f64, String> {
    let v: f64 = s
        .trim()
        .parse()
        .map_err(|_| format!("`{s}` is not a number"))?;
    if v.is_finite() && v >= 0.0 {
        Ok(v)
    } else {
        Err(format!("`{s}` must be a non-negative number"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Wrap {
        #[command(flatten)]
        args: MockArgs,
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("2s"), Ok(Duration::from_secs(2)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("1m"), Ok(Duration::from_secs(60)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration(" 0 "), Ok(Duration::ZERO));
        assert_eq!(parse_duration("0s"), Ok(Duration::ZERO));
        for bad in ["", "5", "ms", "5x", "-1s", "1..2s", "1e400s", "1 2s"] {
            assert!(parse_duration(bad).is_err(), "{bad:?} should fail");
        }
    }

    #[test]
    fn flags_map_onto_config() {
        let w = Wrap::try_parse_from([
            "x",
            "--rate",
            "5",
            "--retry-after",
            "--penalty",
            "250ms",
            "--enterprise-id",
            "67E55044-10B1-426F-9247-BB680E5FE0C8",
            "--drop-rate",
            "0.5",
        ])
        .unwrap();
        let cfg = w.args.to_config().unwrap();
        let rl = cfg.faults.rate_limit.unwrap();
        assert_eq!((rl.rate, rl.burst, rl.retry_after), (5.0, 5, true));
        assert_eq!(rl.penalty, Duration::from_millis(250));
        assert_eq!(cfg.enterprise_id, "67e55044-10b1-426f-9247-bb680e5fe0c8");
        assert_eq!(cfg.faults.drop_rate, 0.5);
        assert_eq!((cfg.groups, cfg.devices_per_group), (200, 50));
        assert_eq!(cfg.offline_fraction, 0.0, "device faults are opt-in");

        let w = Wrap::try_parse_from(["x", "--rate", "0", "--retry-after", "--no-retry-after"])
            .unwrap();
        let cfg = w.args.to_config().unwrap();
        assert!(cfg.faults.rate_limit.is_none());
        assert!(Wrap::try_parse_from(["x", "--error-rate", "1.5"]).is_err());
        assert!(Wrap::try_parse_from(["x", "--latency", "fast"]).is_err());
        let w = Wrap::try_parse_from(["x", "--enterprise-id", "nope"]).unwrap();
        assert!(w.args.to_config().is_err());
    }
}
