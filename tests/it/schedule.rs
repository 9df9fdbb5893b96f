//! The scheduling examples stay runnable: the systemd units verify (with `systemd-analyze`
//! when the machine has it) and the exact commands in the unit and the crontab run a job
//! against the mock, with the paths they name pointed at a temporary directory.

use std::path::Path;
use std::process::Command;

use crate::support::{small, start};

fn examples() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("examples")
}

/// Writes a job and a key file where the example commands expect them (under `root`), and
/// rewrites the command's absolute paths into `root`.
fn localize(command: &str, root: &Path, job: &str) -> Vec<String> {
    let bin = env!("CARGO_BIN_EXE_esper-bulk");
    command
        .replace("/usr/local/bin/esper-bulk", bin)
        .replace(
            "${STATE_DIRECTORY}",
            &root.join("state").display().to_string(),
        )
        .replace(
            "${CREDENTIALS_DIRECTORY}",
            &root.join("credentials").display().to_string(),
        )
        .replace(
            "/etc/esper-bulk/credentials",
            &root.join("credentials").display().to_string(),
        )
        .replace(
            "/etc/esper-bulk/jobs/%i.yaml",
            &root.join(format!("jobs/{job}.yaml")).display().to_string(),
        )
        .replace(
            "/etc/esper-bulk/jobs",
            &root.join("jobs").display().to_string(),
        )
        .replace(
            "/var/lib/esper-bulk",
            &root.join("state").display().to_string(),
        )
        .split_whitespace()
        .map(str::to_string)
        .collect()
}

fn prepare(root: &Path, server: &esper_bulk::mock::MockServer, job: &str) {
    std::fs::create_dir_all(root.join("jobs")).unwrap();
    std::fs::create_dir_all(root.join("credentials")).unwrap();
    std::fs::write(root.join("credentials/esper-api-key"), server.api_key()).unwrap();
    std::fs::write(
        root.join(format!("jobs/{job}.yaml")),
        "version: 1\nname: scheduled\nlimits: { rate: 100/s }\ntargets:\n  s: { groups: { name: \"Stores/*/*\" } }\nsteps:\n  - id: ping\n    command: { to: s, name: UPDATE_HEARTBEAT }\n",
    )
    .unwrap();
}

fn run(args: &[String], server: &esper_bulk::mock::MockServer) -> std::process::Output {
    Command::new(&args[0])
        .args(&args[1..])
        .env("ESPER_BASE_URL", server.base_url())
        .env("ESPER_ENTERPRISE_ID", server.enterprise_id())
        .env_remove("ESPER_API_KEY")
        .env_remove("ESPER_TENANT")
        .output()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn systemd_units_verify_and_their_command_runs() {
    let service = std::fs::read_to_string(examples().join("systemd/esper-bulk@.service")).unwrap();
    let timer = std::fs::read_to_string(examples().join("systemd/esper-bulk@.timer")).unwrap();
    assert!(
        service.contains("LoadCredential=esper-api-key:"),
        "the key arrives as a credential"
    );
    assert!(timer.contains("OnCalendar=") && timer.contains("WantedBy=timers.target"));

    let dir = tempfile::tempdir().unwrap();
    let units = dir.path().join("units");
    std::fs::create_dir_all(&units).unwrap();
    std::fs::write(
        units.join("esper-bulk@nightly.service"),
        service.replace(
            "/usr/local/bin/esper-bulk",
            env!("CARGO_BIN_EXE_esper-bulk"),
        ),
    )
    .unwrap();
    std::fs::write(units.join("esper-bulk@nightly.timer"), &timer).unwrap();
    match Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .arg(units.join("esper-bulk@nightly.service"))
        .arg(units.join("esper-bulk@nightly.timer"))
        .output()
    {
        Ok(out) => {
            let err = String::from_utf8_lossy(&out.stderr);
            // verify exits 0 on some problems, so any complaint about our files fails.
            assert!(
                out.status.success() && !err.contains("esper-bulk@"),
                "systemd-analyze verify: {err}"
            );
        }
        Err(_) => eprintln!(
            "systemd-analyze is not installed here; unit syntax checked by the assertions above only"
        ),
    }

    let server = start(small(71)).await;
    prepare(dir.path(), &server, "nightly");
    let exec = service
        .lines()
        .find_map(|l| l.strip_prefix("ExecStart="))
        .expect("ExecStart");
    let out = run(&localize(exec, dir.path(), "nightly"), &server);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let success: Vec<&str> = service
        .lines()
        .find_map(|l| l.strip_prefix("SuccessExitStatus="))
        .unwrap()
        .split_whitespace()
        .collect();
    assert_eq!(
        success,
        ["1", "3", "4", "75"],
        "outcomes other than invalid jobs and crashes are not unit failures"
    );
    assert!(dir.path().join("state/runs").read_dir().unwrap().count() == 1);
    assert_eq!(server.snapshot().commands.len(), 6);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_crontab_command_runs() {
    let crontab = std::fs::read_to_string(examples().join("crontab")).unwrap();
    let line = crontab
        .lines()
        .find(|l| !l.starts_with('#') && l.split_whitespace().count() > 6 && !l.contains('='))
        .expect("a schedule line");
    let command: String = line
        .split_whitespace()
        .skip(5)
        .take_while(|w| *w != ">>")
        .collect::<Vec<_>>()
        .join(" ");
    let dir = tempfile::tempdir().unwrap();
    let server = start(small(72)).await;
    prepare(dir.path(), &server, "nightly-app-update");
    let mut args = localize(&command, dir.path(), "nightly-app-update");
    args[0] = env!("CARGO_BIN_EXE_esper-bulk").to_string();
    let out = run(&args, &server);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let logs = String::from_utf8_lossy(&out.stderr);
    assert!(
        logs.lines()
            .filter(|l| l.starts_with('{'))
            .all(|l| serde_json::from_str::<serde_json::Value>(l).is_ok()),
        "--log-format json gives JSON lines: {logs}"
    );
}
