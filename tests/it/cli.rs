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
    for code in ["0 ", "1 ", "2 ", "3 ", "4 ", "5 ", "75 ", "130 "] {
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

// See: #11 — a zero timeout would fail every request at once; refuse it as a usage error.
#[test]
fn zero_durations_are_usage_errors() {
    for flag in [
        "--timeout",
        "--connect-timeout",
        "--deadline",
        "--wait-lock",
    ] {
        let out = bin()
            .args(["run", "job.yaml", flag, "0s"])
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{flag}: {err}");
        assert!(err.contains("`0s` is zero"), "{flag}: {err}");
    }
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
        !stdout.contains("ETA") && !stdout.contains('\r'),
        "no progress bars when stdout is not a terminal"
    );
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
    assert_eq!(report["format"], esper_bulk::report::REPORT_FORMAT);
    assert_eq!(report["summary"]["succeeded"], 16);
    assert!(dir.join("plan.json").exists());
    for f in ["report.md", "report.xml", "results.csv", "report.html"] {
        let text = std::fs::read_to_string(dir.join(f)).unwrap_or_default();
        assert!(text.len() > 100, "{f} is written with the run");
    }
}

#[test]
fn mock_prints_its_address_and_exports() {
    use std::io::{BufRead, BufReader};
    let mut child = bin()
        .args([
            "mock",
            "--port",
            "0",
            "--groups",
            "3",
            "--devices-per-group",
            "2",
            "--api-key",
            "k-123",
            "--seed",
            "5",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let first = lines.next().unwrap().unwrap();
    let second = lines.next().unwrap().unwrap();
    let third = lines.next().unwrap().unwrap();
    let rest: Vec<String> = (0..3).map(|_| lines.next().unwrap().unwrap()).collect();
    assert!(
        first.starts_with("http://127.0.0.1:") && first.ends_with("/api"),
        "{first}"
    );
    assert!(second.starts_with("enterprise_id: "), "{second}");
    assert_eq!(third, "api_key: k-123");
    assert!(
        rest.iter()
            .any(|l| l == &format!("export ESPER_BASE_URL={first}")),
        "{rest:?}"
    );
    assert!(rest.iter().any(|l| l.starts_with("export ESPER_API_KEY=")));
    // The server answers while the process runs.
    let addr = first
        .trim_start_matches("http://")
        .trim_end_matches("/api")
        .to_string();
    let mut s = std::net::TcpStream::connect(&addr).unwrap();
    use std::io::{Read, Write};
    write!(
        s,
        "GET /__stats HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).unwrap();
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    child.kill().unwrap();
    child.wait().unwrap();
}

mod against_mock {
    use std::process::Command;
    use std::time::Duration;

    use crate::support::{esper_bulk as bin, small, start};

    fn job(dir: &std::path::Path, extra: &str) -> std::path::PathBuf {
        let p = dir.join("job.yaml");
        std::fs::write(
            &p,
            format!(
                "version: 1\nname: cli-test\nesper: {{ api_key: \"${{ESPER_API_KEY}}\" }}\n{extra}targets:\n  s: {{ groups: {{ name: \"Stores/*/*\" }} }}\nsteps:\n  - id: alarm\n    for_each: s\n    alarm_rule: {{ name: \"r ${{{{ item.name }}}}\", metric: m, conditions: {{ comparator: Frequency, value: 1, unit: Count }}, realert_interval: 60 }}\n"
            ),
        )
        .unwrap();
        p
    }

    /// `esper-bulk run JOB --state-dir DIR` against the mock.
    fn run_in(
        server: &esper_bulk::mock::MockServer,
        job: &std::path::Path,
        dir: &std::path::Path,
    ) -> Command {
        let mut c = bin(server);
        c.arg("run").arg(job).arg("--state-dir").arg(dir);
        c
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_reviewed_plan_runs_unchanged() {
        let server = start(small(61)).await;
        let dir = tempfile::tempdir().unwrap();
        let job = job(dir.path(), "limits: { rate: 100/s }\n");
        let plan = dir.path().join("plan.json");
        let out = bin(&server)
            .arg("plan")
            .arg(&job)
            .arg("--out")
            .arg(&plan)
            .arg("--show-requests")
            .output()
            .unwrap();
        assert_eq!(
            out.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            text.contains("POST /v1/enterprise/"),
            "--show-requests lists the writes: {text}"
        );
        assert!(
            server.snapshot().alarm_rules.is_empty(),
            "plan sends nothing"
        );
        let out = bin(&server)
            .args(["run", "--plan"])
            .arg(&plan)
            .arg("--state-dir")
            .arg(dir.path())
            .output()
            .unwrap();
        assert_eq!(
            out.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(server.snapshot().alarm_rules.len(), 6);

        // The journal alone rebuilds the same report.
        let run_dir = dir
            .path()
            .join("runs")
            .read_dir()
            .unwrap()
            .next()
            .unwrap()
            .unwrap()
            .path();
        let written: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(run_dir.join("report.json")).unwrap())
                .unwrap();
        let out = bin(&server)
            .arg("report")
            .arg(&run_dir)
            .args(["--format", "json", "--stdout"])
            .output()
            .unwrap();
        assert_eq!(
            out.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let rebuilt: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        for key in ["summary", "tasks", "steps", "governor"] {
            assert_eq!(
                rebuilt[key], written[key],
                "`{key}` rebuilt from the journal"
            );
        }
        assert_eq!(rebuilt["run"]["outcome"], written["run"]["outcome"]);
        assert_eq!(rebuilt["run"]["plan_hash"], written["run"]["plan_hash"]);
        assert!(
            written["run"]["plan_hash"]
                .as_str()
                .unwrap()
                .starts_with("sha256:")
        );
        std::fs::remove_file(run_dir.join("report.md")).unwrap();
        let out = bin(&server).arg("report").arg(&run_dir).output().unwrap();
        assert_eq!(out.status.code(), Some(0));
        assert!(
            run_dir.join("report.md").exists(),
            "report re-renders the files"
        );
        let bad = bin(&server)
            .arg("report")
            .arg(&run_dir)
            .args(["--format", "pdf"])
            .output()
            .unwrap();
        // Metrics for node_exporter, written with a run.
        let metrics = dir.path().join("esper-bulk.prom");
        let out = bin(&server)
            .args(["run", "--plan"])
            .arg(&plan)
            .arg("--state-dir")
            .arg(dir.path())
            .arg("--metrics-file")
            .arg(&metrics)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(0));
        let prom = std::fs::read_to_string(&metrics).unwrap();
        for line in [
            "esper_bulk_last_run_exit_code{job=\"cli-test\"} 0",
            "esper_bulk_last_run_outcome{job=\"cli-test\",outcome=\"succeeded\"} 1",
            "esper_bulk_last_run_tasks{job=\"cli-test\",status=\"succeeded\"} 6",
            "# TYPE esper_bulk_last_run_requests gauge",
        ] {
            assert!(
                prom.lines().any(|l| l == line),
                "missing `{line}` in:\n{prom}"
            );
        }
        assert_eq!(bad.status.code(), Some(2));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn plan_refuses_a_deadline_it_cannot_meet() {
        let server = start(small(62)).await;
        let dir = tempfile::tempdir().unwrap();
        let job = job(dir.path(), "limits: { rate: 1/s }\ndeadline: 3s\n");
        let out = bin(&server).arg("plan").arg(&job).output().unwrap();
        assert_eq!(out.status.code(), Some(2));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("deadline") && err.contains("raise limits.rate"),
            "{err}"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sigint_stops_cleanly_with_130() {
        let mut cfg = small(63);
        cfg.groups = 40;
        cfg.faults.latency = Duration::from_millis(100);
        let server = start(cfg).await;
        let dir = tempfile::tempdir().unwrap();
        let job = job(dir.path(), "limits: { rate: 5/s }\n");
        let child = run_in(&server, &job, dir.path())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        tokio::time::sleep(Duration::from_millis(2500)).await;
        let kill = Command::new("kill")
            .args(["-INT", &child.id().to_string()])
            .status()
            .unwrap();
        assert!(kill.success());
        let out = tokio::task::spawn_blocking(move || child.wait_with_output())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            out.status.code(),
            Some(130),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let runs: Vec<_> = std::fs::read_dir(dir.path().join("runs"))
            .unwrap()
            .collect();
        let report: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(runs[0].as_ref().unwrap().path().join("report.json")).unwrap(),
        )
        .unwrap();
        assert_eq!(report["run"]["outcome"], "interrupted");
        assert!(report["summary"]["not_started"].as_u64().unwrap() > 0);
        assert_eq!(
            report["summary"]["unknown"], 0,
            "nothing in flight is left unknown"
        );
        assert_eq!(server.stats().duplicates.alarm_rules, 0);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_second_run_is_refused_with_75_and_a_killed_holder_is_taken_over() {
        let mut cfg = small(64);
        cfg.groups = 30;
        cfg.faults.latency = Duration::from_millis(100);
        let server = start(cfg).await;
        let dir = tempfile::tempdir().unwrap();
        let job = job(dir.path(), "limits: { rate: 2/s }\n");
        let first = run_in(&server, &job, dir.path())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        // One lock per job, server and enterprise: `cli-test-<scope hash>.lock`.
        let lock = || {
            std::fs::read_dir(dir.path().join("locks"))
                .into_iter()
                .flatten()
                .flatten()
                .map(|e| e.path())
                .find(|p| p.to_string_lossy().contains("cli-test-"))
        };
        let mut record = String::new();
        for _ in 0..100 {
            record = lock()
                .and_then(|l| std::fs::read_to_string(l).ok())
                .unwrap_or_default();
            if !record.is_empty() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let holder: serde_json::Value =
            serde_json::from_str(&record).expect("the holder is recorded");
        assert_eq!(holder["pid"], first.id());

        let second = run_in(&server, &job, dir.path()).output().unwrap();
        assert_eq!(second.status.code(), Some(75));
        let err = String::from_utf8_lossy(&second.stderr);
        assert!(
            err.contains("already running")
                && err.contains(&first.id().to_string())
                && err.contains(holder["run_id"].as_str().unwrap()),
            "{err}"
        );

        let unlock = bin(&server)
            .args(["unlock", holder["run_id"].as_str().unwrap(), "--state-dir"])
            .arg(dir.path())
            .output()
            .unwrap();
        assert_eq!(
            unlock.status.code(),
            Some(75),
            "a live run is never unlocked"
        );

        Command::new("kill")
            .args(["-KILL", &first.id().to_string()])
            .status()
            .unwrap();
        let mut first = first;
        first.wait().unwrap();
        let third = run_in(&server, &job, dir.path())
            .args(["--deadline", "1s"])
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&third.stderr);
        assert!(
            err.contains("ended without releasing its lock") && err.contains("taking it over"),
            "{err}"
        );
        assert_ne!(third.status.code(), Some(75));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn no_file_of_a_run_and_no_log_line_holds_the_key() {
        let mut cfg = small(65);
        cfg.api_key = "sk-run-dir-SECRET-9f8e7d6c5b4a".into();
        cfg.faults.error_rate = 0.05;
        let server = start(cfg).await;
        let dir = tempfile::tempdir().unwrap();
        let job = job(dir.path(), "limits: { rate: 200/s }\n");
        let plan = dir.path().join("plan.json");
        let mut logs = String::new();
        for (args, format) in [(vec!["plan"], "text"), (vec!["run"], "json")] {
            let mut c = bin(&server);
            c.args(&args)
                .arg(&job)
                .args(["-vv", "--log-format", format]);
            if args[0] == "plan" {
                c.arg("--out").arg(&plan);
            } else {
                c.arg("--state-dir").arg(dir.path());
            }
            let out = c.output().unwrap();
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            logs.push_str(&String::from_utf8_lossy(&out.stdout));
            logs.push_str(&String::from_utf8_lossy(&out.stderr));
        }
        assert!(logs.len() > 500, "verbose logs were produced");
        assert!(!logs.contains("SECRET"), "the key leaked into the logs");
        fn walk(p: &std::path::Path, out: &mut Vec<std::path::PathBuf>) {
            for e in std::fs::read_dir(p).unwrap().flatten() {
                if e.path().is_dir() {
                    walk(&e.path(), out);
                } else {
                    out.push(e.path());
                }
            }
        }
        let mut files = Vec::new();
        walk(dir.path(), &mut files);
        assert!(files.len() >= 8, "plan, report files and lock: {files:?}");
        for f in files {
            let bytes = std::fs::read(&f).unwrap();
            assert!(
                !String::from_utf8_lossy(&bytes).contains("SECRET"),
                "the key leaked into {}",
                f.display()
            );
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn kill_9_at_ten_points_then_resume_gives_exactly_one_of_everything() {
        let mut cfg = small(66);
        cfg.groups = 40;
        cfg.faults.latency = Duration::from_millis(15);
        let server = start(cfg).await;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("job.yaml");
        std::fs::write(
            &path,
            "version: 1\nname: crash\nesper: { api_key: \"${ESPER_API_KEY}\" }\nlimits: { rate: 60/s }\ntargets:\n  s: { groups: { name: \"Stores/*/*\" } }\nsteps:\n  - id: reboot\n    command: { to: s, name: REBOOT }\n  - id: alarm\n    for_each: s\n    alarm_rule: { name: \"r ${{ item.name }}\", metric: m, conditions: { comparator: Frequency, value: 1, unit: Count }, realert_interval: 60 }\n",
        )
        .unwrap();
        let mut rng = fastrand::Rng::with_seed(66);
        let runs = dir.path().join("runs");
        let started = |_: ()| {
            runs.read_dir()
                .map(|mut d| {
                    d.any(|e| {
                        e.map(|e| e.path().join("plan.json").exists())
                            .unwrap_or(false)
                    })
                })
                .unwrap_or(false)
        };
        let mut kills = 0;
        for _ in 0..10 {
            let mut c = bin(&server);
            if started(()) {
                c.args(["run", "--resume", "latest"]);
            } else {
                c.arg("run").arg(&path);
            }
            let child = c
                .arg("--state-dir")
                .arg(dir.path())
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn()
                .unwrap();
            tokio::time::sleep(Duration::from_millis(rng.u64(100..700))).await;
            if Command::new("kill")
                .args(["-KILL", &child.id().to_string()])
                .status()
                .unwrap()
                .success()
            {
                kills += 1;
            }
            let mut child = child;
            child.wait().unwrap();
        }
        assert!(kills >= 8, "the run was killed mid-flight ({kills} kills)");
        let last = bin(&server)
            .args(["run", "--resume", "latest", "--state-dir"])
            .arg(dir.path())
            .output()
            .unwrap();
        assert_eq!(
            last.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&last.stderr)
        );
        let snap = server.snapshot();
        let stats = server.stats();
        assert_eq!(
            (
                stats.duplicates.alarm_rules,
                stats.duplicates.command_requests
            ),
            (0, 0),
            "no duplicates after {kills} kills"
        );
        assert_eq!(snap.alarm_rules.len(), 40, "nothing missing");
        assert_eq!(snap.commands.len(), 40, "nothing missing");
        let run_dir = runs.read_dir().unwrap().next().unwrap().unwrap().path();
        let report: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(run_dir.join("report.json")).unwrap())
                .unwrap();
        assert_eq!(report["summary"]["succeeded"], 80);
        assert_eq!(
            runs.read_dir().unwrap().count(),
            1,
            "resumptions continue the same run"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn exit_codes_1_3_and_4_from_the_binary() {
        let mut cfg = small(67);
        cfg.commands.failure_rate = 1.0;
        cfg.groups = 12;
        cfg.faults.latency = Duration::from_millis(50);
        let server = start(cfg).await;
        let dir = tempfile::tempdir().unwrap();
        let write = |name: &str, steps: &str, extra: &str| {
            let p = dir.path().join(name);
            std::fs::write(&p, format!("version: 1\nname: {name}\nesper: {{ api_key: \"${{ESPER_API_KEY}}\" }}\n{extra}targets:\n  s: {{ groups: {{ name: \"Stores/*/*\" }} }}\nsteps:\n{steps}")).unwrap();
            p
        };
        let failing = write(
            "failing",
            "  - id: install\n    app_install: { to: s, version: 00000000-0000-4000-8000-00000000dead }\n",
            "",
        );
        let canary = write(
            "canary",
            "  - id: reboot\n    command: { to: s, name: REBOOT, wait: { timeout: 10s } }\n    rollout: { stages: [1, 100%], max_failures: 0 }\n",
            "",
        );
        let slow = write(
            "slow",
            "  - id: ping\n    command: { to: s, name: UPDATE_HEARTBEAT }\n",
            "limits: { rate: 2/s }\n",
        );
        for (job, args, code) in [
            (&failing, vec![], 1),
            (&canary, vec![], 3),
            (&slow, vec!["--deadline", "1s"], 4),
        ] {
            let out = run_in(&server, job, dir.path())
                .args(&args)
                .output()
                .unwrap();
            assert_eq!(
                out.status.code(),
                Some(code),
                "{}: {}",
                job.display(),
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
}

#[test]
fn progress_bars_on_a_terminal_step_around_log_lines() {
    // `script` gives the binary a pseudo-terminal; without it this check cannot run here.
    if Command::new("script").arg("--version").output().is_err() {
        eprintln!("util-linux `script` is not installed; the terminal progress check is skipped");
        return;
    }
    let state = tempfile::tempdir().unwrap();
    let cmd = format!(
        "{} -v demo --groups 6 --devices-per-group 2 --state-dir {}",
        env!("CARGO_BIN_EXE_esper-bulk"),
        state.path().display()
    );
    let out = Command::new("script")
        .args(["-qec", &cmd, "/dev/null"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(
        text.contains("ETA") && text.contains("req/s"),
        "bars are drawn on a terminal:\n{text}"
    );
    assert!(
        text.contains("step started"),
        "log lines still reach the terminal:\n{text}"
    );
    assert!(
        text.contains("12 succeeded"),
        "the summary follows the cleared bars:\n{text}"
    );
}
