//! Runs that never claim more than happened (issue #9): selections that match nothing,
//! plans bound to their server, interrupts and resumes. Exit codes are checked by spawning
//! the binary against the in-process mock.

use std::path::{Path, PathBuf};
use std::process::Command;

use esper_bulk::mock::MockServer;

use crate::support::{esper_bulk as bin, small, start};

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

fn alarm_job(dir: &Path, name: &str, rate: &str) -> PathBuf {
    let p = dir.join(format!("{name}.yaml"));
    std::fs::write(
        &p,
        format!(
            "version: 1\nname: {name}\nesper: {{ api_key: \"${{ESPER_API_KEY}}\" }}\nlimits: {{ rate: {rate} }}\ntargets:\n  s: {{ groups: {{ name: \"Stores/*/*\" }} }}\nsteps:\n  - id: alarm\n    for_each: s\n    alarm_rule: {{ name: \"r ${{{{ item.name }}}}\", metric: m, conditions: {{ comparator: Frequency, value: 1, unit: Count }}, realert_interval: 60 }}\n"
        ),
    )
    .unwrap();
    p
}

/// Starts `cmd` and `kill -9`s it once the mock holds a few of its alarm rules.
async fn kill_part_way(server: &MockServer, mut cmd: Command) {
    let mut child = cmd
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    for _ in 0..400 {
        if server.snapshot().alarm_rules.len() >= 5 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    child.kill().unwrap();
    child.wait().unwrap();
}

fn run_dirs(state: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(state.join("runs"))
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .collect();
    v.sort();
    v
}

// See: #9 — a reviewed plan runs only where it was made.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plan_made_for_one_server_refuses_another() {
    let made_on = start(small(93)).await;
    let other = start(small(94)).await;
    let dir = tempfile::tempdir().unwrap();
    let job = alarm_job(dir.path(), "bound", "50/s");
    let plan = dir.path().join("plan.json");
    let out = bin(&made_on)
        .arg("plan")
        .arg(&job)
        .arg("--out")
        .arg(&plan)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    let before = other.stats().requests_total;
    // Through the environment, and through a flag.
    let by_env = bin(&other)
        .args(["run", "--plan"])
        .arg(&plan)
        .arg("--state-dir")
        .arg(dir.path())
        .output()
        .unwrap();
    let by_flag = bin(&made_on)
        .args(["run", "--plan"])
        .arg(&plan)
        .args(["--base-url", &other.base_url(), "--state-dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    for (how, out) in [("ESPER_BASE_URL", by_env), ("--base-url", by_flag)] {
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{how}: {err}");
        assert!(
            err.contains(&format!(
                "the plan was made for server `{}`",
                made_on.base_url()
            )) && err.contains(how),
            "{how}: {err}"
        );
    }
    let wrong_enterprise = bin(&made_on)
        .args(["run", "--plan"])
        .arg(&plan)
        .args(["--enterprise-id", "not-this-one", "--state-dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert_eq!(wrong_enterprise.status.code(), Some(2));
    assert_eq!(
        other.stats().requests_total,
        before,
        "nothing was sent to the other server"
    );
    assert!(made_on.snapshot().alarm_rules.is_empty());
    // Where it was made, it runs.
    let ok = bin(&made_on)
        .args(["run", "--plan"])
        .arg(&plan)
        .arg("--state-dir")
        .arg(dir.path())
        .output()
        .unwrap();
    assert_eq!(
        ok.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
}

// See: #9 — the state directory is not the working directory, so one job started from
// two directories still finds one lock.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_job_from_two_working_directories_runs_once() {
    let mut cfg = small(95);
    cfg.groups = 30;
    cfg.faults.latency = std::time::Duration::from_millis(100);
    let server = start(cfg).await;
    let state_home = tempfile::tempdir().unwrap();
    let (cwd_a, cwd_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let job = alarm_job(state_home.path(), "twice", "2/s");
    let mut first = bin(&server)
        .current_dir(cwd_a.path())
        .env("XDG_STATE_HOME", state_home.path())
        .env_remove("STATE_DIRECTORY")
        .arg("run")
        .arg(&job)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let state = state_home.path().join("esper-bulk");
    for _ in 0..200 {
        if !run_dirs(&state).is_empty() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    assert_eq!(run_dirs(&state).len(), 1, "the first run started");
    let second = bin(&server)
        .current_dir(cwd_b.path())
        .env("XDG_STATE_HOME", state_home.path())
        .env_remove("STATE_DIRECTORY")
        .arg("run")
        .arg(&job)
        .output()
        .unwrap();
    assert_eq!(
        second.status.code(),
        Some(75),
        "{}",
        String::from_utf8_lossy(&second.stderr)
    );
    first.kill().unwrap();
    first.wait().unwrap();
    for cwd in [cwd_a.path(), cwd_b.path()] {
        assert!(
            !cwd.join(".esper-bulk").exists(),
            "nothing is written to the working directory"
        );
    }
}

// See: #9 — one cron line: finish last night's run if it was cut short, else start.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_job_resume_continues_a_killed_run_and_otherwise_starts_one() {
    let mut cfg = small(96);
    cfg.groups = 40;
    cfg.faults.latency = std::time::Duration::from_millis(15);
    let server = start(cfg).await;
    let dir = tempfile::tempdir().unwrap();
    let job = alarm_job(dir.path(), "nightly", "20/s");
    let resume = || {
        let mut c = bin(&server);
        c.arg("run")
            .arg(&job)
            .arg("--resume")
            .arg("--state-dir")
            .arg(dir.path());
        c
    };
    // Nothing to continue: it starts a run, and we kill it part way.
    kill_part_way(&server, resume()).await;
    let created = server.snapshot().alarm_rules.len();
    assert!(
        (1..40).contains(&created),
        "killed part way ({created} of 40)"
    );
    assert_eq!(run_dirs(dir.path()).len(), 1);
    // The same command line continues that run.
    let out = resume().output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(err.contains("resuming run nightly-"), "{err}");
    assert_eq!(run_dirs(dir.path()).len(), 1, "the same run directory");
    assert_eq!(server.snapshot().alarm_rules.len(), 40);
    assert_eq!(server.stats().duplicates.alarm_rules, 0);
    // That run finished: the next one starts fresh (and finds every rule in place).
    let out = resume().output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no unfinished run of `nightly`"), "{err}");
    assert_eq!(run_dirs(dir.path()).len(), 2, "a new run");
    // A run id of another job is refused.
    let other = alarm_job(dir.path(), "other", "20/s");
    let id = run_dirs(dir.path())[0]
        .file_name()
        .unwrap()
        .to_string_lossy()
        .into_owned();
    let out = bin(&server)
        .arg("run")
        .arg(&other)
        .args(["--resume", &id, "--state-dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("is a run of `nightly`, not of `other`"));
}

// See: #9 — resume and `report` never rewrite history: one start time, one segment per
// resumption, and a killed run rebuilt as "killed", not as a 1970 run that exited 130.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn segments_record_every_resumption_and_a_killed_run_says_so() {
    let mut cfg = small(97);
    cfg.groups = 40;
    cfg.faults.latency = std::time::Duration::from_millis(15);
    let server = start(cfg).await;
    let dir = tempfile::tempdir().unwrap();
    let job = alarm_job(dir.path(), "history", "20/s");
    let mut run = bin(&server);
    run.arg("run").arg(&job).arg("--state-dir").arg(dir.path());
    kill_part_way(&server, run).await;
    let run_dir = run_dirs(dir.path())
        .pop()
        .expect("the run directory exists");
    let id = run_dir.file_name().unwrap().to_string_lossy().into_owned();
    let report = |dir: &Path| -> serde_json::Value {
        serde_json::from_str(&std::fs::read_to_string(dir.join("report.json")).unwrap()).unwrap()
    };
    // Rebuilt from the journal alone: killed, resumable, with its real start time.
    let out = bin(&server).arg("report").arg(&run_dir).output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let killed = report(&run_dir);
    assert_eq!(killed["run"]["outcome"], "killed");
    assert_eq!(killed["run"]["exit_code"], 4);
    let started = killed["run"]["started_at"].as_str().unwrap().to_string();
    assert!(!started.starts_with("1970"), "{started}");
    assert_eq!(killed["run"]["segments"][0]["ended"], "killed");
    let md = std::fs::read_to_string(run_dir.join("report.md")).unwrap();
    assert!(
        md.contains("was killed before it recorded an end; resumable")
            && md.contains(&format!("esper-bulk run --resume {id}"))
            && !md.contains("re-run the job"),
        "{md}"
    );
    // Two resumptions: the first finishes the work, the second has nothing left to do.
    for _ in 0..2 {
        let out = bin(&server)
            .args(["run", "--resume", &id, "--state-dir"])
            .arg(dir.path())
            .output()
            .unwrap();
        assert_eq!(
            out.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let r = report(&run_dir);
    let segments = r["run"]["segments"].as_array().unwrap();
    assert_eq!(segments.len(), 3, "{segments:?}");
    assert_eq!(
        r["run"]["started_at"],
        started.as_str(),
        "the first start is kept"
    );
    assert_eq!(segments[0]["ended"], "killed");
    assert_eq!(segments[1]["ended"], "finished");
    assert_eq!(segments[1]["exit_code"], 0);
    assert_eq!(
        segments[2]["tasks_finished"], 0,
        "a no-op resume finishes nothing"
    );
    let finished: u64 = segments
        .iter()
        .map(|s| s["tasks_finished"].as_u64().unwrap())
        .sum();
    assert!(finished >= 40, "every task's outcome is in some segment");
    assert!(
        r["tasks"]
            .as_array()
            .unwrap()
            .iter()
            .all(|t| t["segment"] == 1 || t["segment"] == 2)
    );
    assert_eq!(server.snapshot().alarm_rules.len(), 40);
    assert_eq!(server.stats().duplicates.alarm_rules, 0);
    // And `report` rebuilds exactly that history.
    let live = report(&run_dir);
    bin(&server).arg("report").arg(&run_dir).output().unwrap();
    assert_eq!(report(&run_dir)["run"], live["run"]);
}

#[derive(clap::Parser)]
struct MockFlags {
    #[command(flatten)]
    args: esper_bulk::mock::MockArgs,
}

// See: #9 — the README's mock session runs as printed and ends as the README says.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_readme_mock_session_runs_as_printed() {
    use clap::Parser;
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    let at = readme
        .find("Try a job against the mock from a shell:")
        .expect("the README has its mock session");
    let block = &readme[at..];
    let block = &block[block.find("```sh\n").unwrap() + 6..];
    let block = &block[..block.find("```").unwrap()];
    let commands: Vec<Vec<&str>> = block
        .lines()
        .filter(|l| l.starts_with("cargo run --release -- "))
        .map(|l| {
            l["cargo run --release -- ".len()..]
                .split_whitespace()
                .take_while(|w| *w != "&" && !w.starts_with('#'))
                .collect()
        })
        .collect();
    assert_eq!(commands.len(), 3, "{block}");
    assert_eq!(commands[0][0], "mock");
    let flags =
        MockFlags::try_parse_from(std::iter::once("mock").chain(commands[0][1..].iter().copied()))
            .expect("the README's mock flags parse");
    let server = start(flags.args.to_config().unwrap()).await;
    let state = tempfile::tempdir().unwrap();
    for cmd in &commands[1..] {
        let out = bin(&server)
            .current_dir(root)
            .env("XDG_STATE_HOME", state.path())
            .env_remove("STATE_DIRECTORY")
            .args(cmd)
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{cmd:?}: {stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        if cmd[0] == "run" {
            assert!(stdout.contains("— succeeded"), "{stdout}");
            assert!(stdout.contains(" 0 failed, 0 skipped"), "{stdout}");
        }
    }
    let stats = server.stats();
    assert_eq!(
        (
            stats.duplicates.alarm_rules,
            stats.duplicates.command_requests
        ),
        (0, 0)
    );
}
