//! The binary as a Unix tool: a closed pipe ends it quietly, `-q` is silent on success,
//! `-v` shows info logs, `--log-format json` makes every stderr line JSON, `--json` puts
//! one document on stdout, and `NO_COLOR` keeps colour off a terminal.

use std::process::{Command, Stdio};

use crate::support::{esper_bulk, small, start};

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_esper-bulk"))
}

fn jobs() -> String {
    format!("{}/jobs", env!("CARGO_MANIFEST_DIR"))
}

/// A quick job against the mock that succeeds.
fn ping_job(dir: &std::path::Path) -> std::path::PathBuf {
    let path = dir.join("ping.yaml");
    std::fs::write(
        &path,
        "version: 1\nname: ping\nesper: { api_key: \"${ESPER_API_KEY}\" }\nlimits: { rate: 200/s }\ntargets:\n  s: { groups: { name: \"Stores/*/*\" } }\nsteps:\n  - id: ping\n    command: { to: s, name: UPDATE_HEARTBEAT }\n",
    )
    .unwrap();
    path
}

#[test]
fn a_closed_pipe_ends_validate_quietly() {
    let (reader, writer) = std::io::pipe().unwrap();
    // The reader is gone before the first line is written, as after `| head -0`.
    drop(reader);
    let out = bin()
        .args(["validate", &jobs()])
        .env("ESPER_API_KEY", "x")
        .stdout(writer)
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains("panicked"), "{err}");
    assert_eq!(out.status.code(), Some(141), "SIGPIPE's status: {err}");
}

#[test]
fn quiet_validate_prints_nothing_on_success_but_errors_still_show() {
    let out = bin()
        .args(["-q", "validate", &jobs()])
        .env("ESPER_API_KEY", "x")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "");
    assert_eq!(String::from_utf8_lossy(&out.stderr), "");
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.yaml");
    std::fs::write(&bad, "version: 1\nname: x\nlimts: {}\nsteps: []\n").unwrap();
    let out = bin().args(["-q", "validate"]).arg(&bad).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("bad.yaml:3:1"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quiet_verbose_json_logs_and_json_output_of_a_run() {
    let server = start(small(90)).await;
    let dir = tempfile::tempdir().unwrap();
    let job = ping_job(dir.path());
    let run = |args: &[&str]| {
        // Global flags first, then the run's own.
        let (global, own): (Vec<&str>, Vec<&str>) = args.iter().partition(|a| **a != "--json");
        esper_bulk(&server)
            .args(global)
            .arg("run")
            .arg(&job)
            .args(own)
            .arg("--state-dir")
            .arg(dir.path())
            .output()
            .unwrap()
    };

    let quiet = run(&["-q"]);
    assert_eq!(quiet.status.code(), Some(0));
    assert_eq!(String::from_utf8_lossy(&quiet.stdout), "", "-q: no summary");
    assert_eq!(String::from_utf8_lossy(&quiet.stderr), "", "-q: no notices");

    let plain = run(&[]);
    let err = String::from_utf8_lossy(&plain.stderr);
    assert!(!err.contains(" INFO "), "no info logs without -v: {err}");
    let verbose = run(&["-v"]);
    let err = String::from_utf8_lossy(&verbose.stderr);
    assert!(
        err.contains(" INFO ") && err.contains("step started"),
        "-v shows info logs: {err}"
    );

    let json = run(&["-v", "--log-format", "json"]);
    assert_eq!(json.status.code(), Some(0));
    let err = String::from_utf8_lossy(&json.stderr);
    assert!(err.lines().count() >= 3, "{err}");
    for line in err.lines() {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not a JSON line ({e}): {line}"));
        assert!(
            v["level"].is_string() && v["fields"]["message"].is_string(),
            "{line}"
        );
    }
    assert!(
        err.contains("report in"),
        "the run's notices are JSON too: {err}"
    );

    let doc = run(&["--json"]);
    let out = String::from_utf8_lossy(&doc.stdout);
    let v: serde_json::Value =
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("one JSON document ({e}): {out}"));
    assert_eq!(v["exit_code"], 0);
    assert_eq!(v["outcome"], "succeeded");
    assert_eq!(v["summary"]["succeeded"], v["summary"]["tasks"]);
    assert!(
        std::path::Path::new(v["report"].as_str().unwrap()).exists(),
        "{v}"
    );

    // `plan --json` prints the plan as `plan --out` writes it, hash included: saved from
    // stdout, it runs without the "no integrity hash" warning.
    let printed = esper_bulk(&server)
        .args(["plan", "--json"])
        .arg(&job)
        .output()
        .unwrap();
    assert_eq!(printed.status.code(), Some(0));
    let saved = dir.path().join("printed-plan.json");
    std::fs::write(&saved, &printed.stdout).unwrap();
    let from_stdout = esper_bulk(&server)
        .args(["run", "--plan"])
        .arg(&saved)
        .arg("--state-dir")
        .arg(dir.path())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&from_stdout.stderr);
    assert_eq!(from_stdout.status.code(), Some(0), "{err}");
    assert!(!err.contains("no integrity hash"), "{err}");

    for cmd in ["run", "plan"] {
        let refused = esper_bulk(&server)
            .args([cmd, "/no/such/job.yaml", "--json"])
            .output()
            .unwrap();
        let v: serde_json::Value = serde_json::from_slice(&refused.stdout)
            .unwrap_or_else(|e| panic!("{cmd}: one JSON document on stdout ({e})"));
        assert_eq!(
            (v["exit_code"].clone(), refused.status.code()),
            (2.into(), Some(2)),
            "{cmd}"
        );
        assert!(
            v["error"].as_str().unwrap().contains("/no/such/job.yaml"),
            "{v}"
        );
    }
}

#[test]
fn no_color_keeps_a_terminal_free_of_colour() {
    // `script` gives the binary a pseudo-terminal; without it this check cannot run here.
    if Command::new("script").arg("--version").output().is_err() {
        eprintln!("util-linux `script` is not installed; the NO_COLOR check is skipped");
        return;
    }
    let state = tempfile::tempdir().unwrap();
    let cmd = format!(
        "{} -v demo --groups 4 --devices-per-group 2 --state-dir {}",
        env!("CARGO_BIN_EXE_esper-bulk"),
        state.path().display()
    );
    let colours = |no_color: bool| {
        let mut c = Command::new("script");
        c.args(["-qec", &cmd, "/dev/null"]);
        if no_color {
            c.env("NO_COLOR", "1");
        } else {
            c.env_remove("NO_COLOR");
        }
        let out = c.output().unwrap();
        assert_eq!(out.status.code(), Some(0));
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        // SGR sequences (`ESC [ … m`) set colour; cursor movement of the bars is not colour.
        text.split('\x1b').skip(1).any(|seq| {
            seq.strip_prefix('[').is_some_and(|rest| {
                let params = rest.trim_start_matches(|c: char| c.is_ascii_digit() || c == ';');
                params.starts_with('m')
            })
        })
    };
    assert!(colours(false), "a terminal gets coloured log levels");
    assert!(!colours(true), "NO_COLOR: none");
}
