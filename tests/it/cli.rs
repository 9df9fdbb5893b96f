//! The binary's surface: exit codes, help, validate, and the demo command.

use std::process::Command;

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_esper-bulk"))
}

fn root() -> &'static str {
    env!("CARGO_MANIFEST_DIR")
}

#[test]
fn help_lists_exit_codes() {
    let out = bin().arg("--help").output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    for code in ["0 ", "1 ", "2 ", "3 ", "4 ", "75 ", "130 "] {
        assert!(
            text.contains(&format!("  {code}")),
            "--help documents exit code {code}"
        );
    }
}

#[test]
fn bad_flags_exit_2() {
    let out = bin().args(["run", "--no-such-flag"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn validate_good_and_bad_files() {
    let out = bin()
        .current_dir(root())
        .args(["validate", "jobs/demo.yaml"])
        .env("ESPER_API_KEY", "x")
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.yaml");
    std::fs::write(&bad, "version: 1\nname: x\nlimts: {}\nsteps: []\n").unwrap();
    let out = bin().arg("validate").arg(&bad).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("bad.yaml:3:1") && err.contains("did you mean `limits`?"),
        "{err}"
    );
    let missing = bin()
        .args(["validate", "/no/such/job.yaml"])
        .output()
        .unwrap();
    assert_eq!(missing.status.code(), Some(2));
}

#[test]
fn demo_runs_end_to_end() {
    let state = tempfile::tempdir().unwrap();
    let out = bin()
        .args([
            "demo",
            "--groups",
            "8",
            "--devices-per-group",
            "3",
            "--state-dir",
        ])
        .arg(state.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "stdout:\n{stdout}\nstderr:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("16 succeeded"), "{stdout}");
    assert!(
        stdout.contains("duplicates created: 0 alarm rules, 0 command requests"),
        "{stdout}"
    );
    let runs: Vec<_> = std::fs::read_dir(state.path().join("runs"))
        .unwrap()
        .collect();
    assert_eq!(runs.len(), 1);
    let dir = runs[0].as_ref().unwrap().path();
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("report.json")).unwrap()).unwrap();
    assert_eq!(report["format"], 1);
    assert_eq!(report["summary"]["succeeded"], 16);
    assert!(dir.join("plan.json").exists());
}
