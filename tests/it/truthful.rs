//! Runs that never claim more than happened (issue #9): selections that match nothing,
//! plans bound to their server, interrupts and resumes. Exit codes are checked by spawning
//! the binary against the in-process mock.

use std::path::{Path, PathBuf};
use std::process::Command;

use esper_bulk::mock::MockServer;

use crate::support::{small, start};

fn bin(server: &MockServer) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_esper-bulk"));
    c.env("ESPER_BASE_URL", server.base_url())
        .env("ESPER_ENTERPRISE_ID", server.enterprise_id())
        .env("ESPER_API_KEY", server.api_key())
        .env_remove("ESPER_TENANT")
        .env_remove("ESPER_BULK_LOG");
    c
}

fn reboot_job(dir: &Path, selector: &str) -> PathBuf {
    let p = dir.join("reboot.yaml");
    std::fs::write(
        &p,
        format!(
            "version: 1\nname: reboot-stores\nesper: {{ api_key: \"${{ESPER_API_KEY}}\" }}\ntargets:\n  stores: {{ groups: {selector} }}\nsteps:\n  - id: reboot\n    command: {{ name: REBOOT, to: stores }}\n"
        ),
    )
    .unwrap();
    p
}

// See: #9 — a typo in `exclude` must never widen a reboot.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_exclude_that_matches_nothing_is_refused() {
    let server = start(small(91)).await;
    let dir = tempfile::tempdir().unwrap();
    let snap = server.snapshot();
    let first = snap.groups[1]
        .path
        .trim_start_matches("All devices/")
        .to_string();
    // One character off a real path: refused with a suggestion, nothing sent.
    let typo = format!("{first}x");
    let job = reboot_job(
        dir.path(),
        &format!("{{ name: \"**\", exclude: [\"{typo}\"] }}"),
    );
    for cmd in ["plan", "run"] {
        let mut c = bin(&server);
        c.arg(cmd).arg(&job);
        if cmd == "run" {
            c.arg("--state-dir").arg(dir.path());
        }
        let out = c.output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{cmd}: {err}");
        assert!(
            err.contains(&format!("exclude `{typo}` matches no group"))
                && err.contains(&format!("did you mean `{first}`?")),
            "{cmd}: {err}"
        );
    }
    assert!(server.snapshot().commands.is_empty(), "nothing was sent");
    // A plain name that matches nothing is refused the same way.
    let job = reboot_job(dir.path(), "{ name: \"Nowhere/At/All\" }");
    let out = bin(&server).arg("plan").arg(&job).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("name `Nowhere/At/All` matches no group")
    );
}

// See: #9 — the estimate includes waiting, and only the best case can refuse a deadline.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_plan_shows_a_time_range_and_warns_when_waits_may_pass_the_deadline() {
    let server = start(small(92)).await;
    let dir = tempfile::tempdir().unwrap();
    let job = |deadline: &str| {
        let p = dir.path().join("ping.yaml");
        std::fs::write(
            &p,
            format!(
                "version: 1\nname: ping-stores\nesper: {{ api_key: \"${{ESPER_API_KEY}}\" }}\nlimits: {{ rate: 50/s }}\ndeadline: {deadline}\ntargets:\n  stores: {{ groups: {{ name: \"**\" }} }}\nsteps:\n  - id: ping\n    command: {{ name: UPDATE_HEARTBEAT, to: stores, wait: {{ timeout: 10m }} }}\n  - id: reboot\n    needs: [ping]\n    command: {{ name: REBOOT, to: stores, wait: {{ timeout: 5m }} }}\n"
            ),
        )
        .unwrap();
        p
    };
    // Requests fit in seconds; the waits may take 15 minutes: allowed, with a warning.
    let out = bin(&server).arg("plan").arg(job("5m")).output().unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(stdout.contains(" to 15m "), "{stdout}");
    assert!(
        stderr.contains("if every command wait runs to its timeout the run needs 15m")
            && stderr.contains("deadline of 5m"),
        "{stderr}"
    );
    // A deadline beyond the worst case: no warning.
    let out = bin(&server).arg("plan").arg(job("1h")).output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert!(!String::from_utf8_lossy(&out.stderr).contains("warning"));
    // Even the best case does not fit: refused.
    let out = bin(&server).arg("plan").arg(job("1ms")).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(server.snapshot().commands.is_empty());
}
