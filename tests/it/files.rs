//! The files a run reads and writes (issue #11): saved plans and run directories' plans
//! are verified before anything is sent, damaged journal lines cost only themselves,
//! special files and oversized inputs are refused, a full disk ends a run resumable
//! (exit 4), and look-alike job names never share a lock. Exit codes are checked by
//! spawning the binary against the in-process mock, always with a time bound.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use esper_bulk::mock::MockServer;
use esper_bulk::run::{self, Notice, Notices, RunError, Source};
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use crate::support::{esper_bulk as bin, job_header, load, run_config, small, start};

/// Runs `cmd` to its end, or kills it after `limit` and returns `None` (a hang).
pub fn output_within(mut cmd: Command, limit: Duration) -> Option<Output> {
    let dir = tempfile::tempdir().unwrap();
    let (out, err) = (dir.path().join("out"), dir.path().join("err"));
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out).unwrap())
        .stderr(std::fs::File::create(&err).unwrap())
        .spawn()
        .unwrap();
    let started = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if started.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Some(Output {
        status,
        stdout: std::fs::read(out).unwrap(),
        stderr: std::fs::read(err).unwrap(),
    })
}

fn code_and_stderr(out: Option<Output>, what: &str) -> (i32, String) {
    let out = out.unwrap_or_else(|| panic!("{what}: did not finish in time (a hang)"));
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!err.contains("panicked"), "{what}: {err}");
    (out.status.code().unwrap_or(-1), err)
}

/// One alarm rule per store group (six on the small mock).
fn alarm_job(dir: &Path, name: &str) -> PathBuf {
    let p = dir.join(format!("{name}.yaml"));
    std::fs::write(
        &p,
        format!(
            "version: 1\nname: {name}\nesper: {{ api_key: \"${{ESPER_API_KEY}}\" }}\nlimits: {{ rate: 50/s }}\ntargets:\n  s: {{ groups: {{ name: \"Stores/*/*\" }} }}\nsteps:\n  - id: alarm\n    for_each: s\n    alarm_rule: {{ name: \"r ${{{{ item.name }}}}\", metric: m, conditions: {{ comparator: Frequency, value: 1, unit: Count }}, realert_interval: 60 }}\n"
        ),
    )
    .unwrap();
    p
}

/// `plan JOB --out FILE`, which must succeed; the plan file as JSON.
fn saved_plan(server: &MockServer, job: &Path, out: &Path) -> Value {
    let mut c = bin(server);
    c.arg("plan").arg(job).arg("--out").arg(out);
    let (code, err) = code_and_stderr(output_within(c, Duration::from_secs(30)), "plan");
    assert_eq!(code, 0, "{err}");
    serde_json::from_str(&std::fs::read_to_string(out).unwrap()).unwrap()
}

fn run_plan_cmd(server: &MockServer, plan: &Path, state: &Path) -> Command {
    let mut c = bin(server);
    c.args(["run", "--plan"])
        .arg(plan)
        .arg("--state-dir")
        .arg(state);
    c
}

/// The plan's own hash, as `plan --out` records it.
fn reseal(v: &mut Value) {
    let plan: esper_bulk::plan::Plan = serde_json::from_value(v.clone()).unwrap();
    v["integrity"] = Value::String(esper_bulk::plan::integrity(&plan));
}

// See: #11 — raising task_count sent every task and then panicked, `steps: []` panicked
// and `limits.rate: 0` hung holding the lock.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edited_plan_file_is_refused_with_exit_2_and_nothing_is_sent() {
    let server = start(small(111)).await;
    let dir = tempfile::tempdir().unwrap();
    let job = alarm_job(dir.path(), "sealed");
    let path = dir.path().join("plan.json");
    let original = saved_plan(&server, &job, &path);
    let integrity = original["integrity"].as_str().unwrap().to_string();
    assert!(integrity.starts_with("sha256:"), "{original}");
    type Edit = fn(&mut Value);
    let edits: [(&str, Edit); 7] = [
        ("task_count raised", |v| {
            v["task_count"] = (v["task_count"].as_u64().unwrap() + 1).into()
        }),
        ("steps emptied", |v| v["steps"] = Value::Array(vec![])),
        ("rate zero", |v| v["limits"]["rate"] = 0.into()),
        ("an item's id changed", |v| {
            // Format 3 keeps the ids as base64 of their bytes: the first id's first bytes.
            let uuids = v["targets"]["s"]["uuids"].as_str().unwrap();
            v["targets"]["s"]["uuids"] = format!("AAAA{}", &uuids[4..]).into()
        }),
        ("rate zero, resealed", |v| {
            v["limits"]["rate"] = 0.into();
            reseal(v)
        }),
        ("steps emptied, resealed", |v| {
            v["steps"] = Value::Array(vec![]);
            reseal(v)
        }),
        ("step count raised, unsealed", |v| {
            v["steps"][0]["task_count"] = 7.into();
            v["task_count"] = 7.into();
            v.as_object_mut().unwrap().remove("integrity");
        }),
    ];
    let before = server.stats().requests_total;
    for (what, edit) in edits {
        let mut v = original.clone();
        edit(&mut v);
        let edited = dir.path().join("edited.json");
        std::fs::write(&edited, serde_json::to_string_pretty(&v).unwrap()).unwrap();
        let out = output_within(
            run_plan_cmd(&server, &edited, dir.path()),
            Duration::from_secs(20),
        );
        let (code, err) = code_and_stderr(out, what);
        assert_eq!(code, 2, "{what}: {err}");
        assert!(err.contains("error: refusing plan"), "{what}: {err}");
        assert!(err.contains("= help: "), "{what}: {err}");
        assert_eq!(
            server.stats().requests_total,
            before,
            "{what}: nothing was sent"
        );
    }
    // A plan from before plans were sealed runs, with a warning; its report's plan_hash is
    // the hash the sealed file records.
    let mut old = original.clone();
    old.as_object_mut().unwrap().remove("integrity");
    let unsealed = dir.path().join("old.json");
    std::fs::write(&unsealed, serde_json::to_string_pretty(&old).unwrap()).unwrap();
    let out = output_within(
        run_plan_cmd(&server, &unsealed, dir.path()),
        Duration::from_secs(60),
    );
    let (code, err) = code_and_stderr(out, "unsealed");
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("has no integrity hash"), "{err}");
    assert_eq!(server.snapshot().alarm_rules.len(), 6);
    let runs: Vec<PathBuf> = std::fs::read_dir(dir.path().join("runs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    let report: Value =
        serde_json::from_str(&std::fs::read_to_string(runs[0].join("report.json")).unwrap())
            .unwrap();
    assert_eq!(report["run"]["plan_hash"], Value::String(integrity.clone()));
    let run_plan: Value =
        serde_json::from_str(&std::fs::read_to_string(runs[0].join("plan.json")).unwrap()).unwrap();
    assert_eq!(
        run_plan["integrity"],
        Value::String(integrity),
        "the run directory's plan is sealed"
    );
}

/// Collects a run's notices.
fn recorder() -> (Notices, Arc<Mutex<Vec<Notice>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let sink = seen.clone();
    (
        Notices::new(move |n| sink.lock().unwrap().push(n.clone())),
        seen,
    )
}

fn alarm_yaml(server: &MockServer) -> String {
    format!(
        "{}targets:\n  s: {{ groups: {{ name: \"Stores/*/*\" }} }}\nsteps:\n  - id: alarm\n    for_each: s\n    alarm_rule: {{ name: \"r ${{{{ item.name }}}}\", metric: m, conditions: {{ comparator: Frequency, value: 1, unit: Count }}, realert_interval: 60 }}\n",
        job_header(server, "50/s")
    )
}

/// A whole run in process; its result.
async fn finished_run(server: &MockServer, state: &Path) -> run::RunResult {
    let job = load(server, &alarm_yaml(server));
    let cfg = run_config(server, Source::Job(Box::new(job)), state);
    crate::support::run(cfg, CancellationToken::new()).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edited_run_directory_plan_is_refused_on_resume_and_report() {
    let server = start(small(112)).await;
    let state = tempfile::tempdir().unwrap();
    let first = finished_run(&server, state.path()).await;
    assert_eq!(first.exit_code, 0);
    let plan_path = first.run_dir.join("plan.json");
    let original = std::fs::read_to_string(&plan_path).unwrap();
    let mut v: Value = serde_json::from_str(&original).unwrap();
    v["task_count"] = (v["task_count"].as_u64().unwrap() + 1).into();
    std::fs::write(&plan_path, serde_json::to_string_pretty(&v).unwrap()).unwrap();
    let before = server.stats().requests_total;
    let resume = || run_config(&server, Source::Resume(first.run_id.clone()), state.path());
    match run::run(resume(), CancellationToken::new()).await {
        Err(e @ RunError::BadPlan { .. }) => {
            assert_eq!(e.exit_code(), 2);
            assert!(e.to_string().contains("integrity hash"), "{e}");
        }
        other => panic!("expected the edited plan to be refused, got {other:?}"),
    }
    assert!(run::rebuild(&first.run_dir, &Notices::none()).is_err());
    assert_eq!(server.stats().requests_total, before, "nothing was sent");
    // As it was, but written before plans were sealed: resumed, with a warning.
    let mut old: Value = serde_json::from_str(&original).unwrap();
    old.as_object_mut().unwrap().remove("integrity");
    std::fs::write(&plan_path, serde_json::to_string_pretty(&old).unwrap()).unwrap();
    let (notices, seen) = recorder();
    let mut cfg = resume();
    cfg.output.notices = notices;
    let again = crate::support::run(cfg, CancellationToken::new()).await;
    assert_eq!(again.exit_code, 0);
    assert!(
        seen.lock()
            .unwrap()
            .iter()
            .any(|n| matches!(n, Notice::UnsealedPlan { .. })),
        "{:?}",
        seen.lock().unwrap()
    );
}

// See: #11 — one bad byte dropped the whole journal: resume re-read everything, and
// `report` failed on it for good.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_journal_line_costs_only_its_task() {
    let server = start(small(113)).await;
    let state = tempfile::tempdir().unwrap();
    let first = finished_run(&server, state.path()).await;
    let tasks = first.report.summary.succeeded as usize;
    assert!(tasks >= 2);
    let journal = first.run_dir.join("journal.jsonl");
    let text = std::fs::read_to_string(&journal).unwrap();
    let mut lines: Vec<Vec<u8>> = text.lines().map(|l| l.as_bytes().to_vec()).collect();
    let damaged = lines
        .iter()
        .position(|l| String::from_utf8_lossy(l).contains(r#""entry":"outcome""#))
        .unwrap();
    lines[damaged].insert(20, 0xff);
    let mut bytes = lines.join(&b'\n');
    bytes.push(b'\n');
    std::fs::write(&journal, bytes).unwrap();

    let (notices, seen) = recorder();
    let report = run::rebuild(&first.run_dir, &notices).expect("the report rebuilds");
    assert_eq!(report.summary.succeeded as usize, tasks - 1);
    let mut cfg = run_config(&server, Source::Resume(first.run_id.clone()), state.path());
    cfg.output.notices = notices;
    let again = crate::support::run(cfg, CancellationToken::new()).await;
    assert_eq!(again.exit_code, 0, "{}", again.report.summary_text());
    let seen = seen.lock().unwrap();
    let warned: Vec<&Notice> = seen
        .iter()
        .filter(|n| matches!(n, Notice::JournalLines { .. }))
        .collect();
    assert_eq!(warned.len(), 2, "rebuild and resume each say so: {seen:?}");
    let line = format!("line {}: not valid UTF-8", damaged + 1);
    assert!(warned[0].to_string().contains(&line), "{}", warned[0]);
    assert!(
        seen.iter().any(|n| matches!(
            n,
            Notice::Resuming { succeeded, .. } if *succeeded == tasks - 1
        )),
        "every other recorded success is kept: {seen:?}"
    );
    assert_eq!(
        server.stats().duplicates.alarm_rules,
        0,
        "the lost task was read back, not re-created"
    );
}

fn mkfifo(path: &Path) -> bool {
    Command::new("mkfifo")
        .arg(path)
        .status()
        .is_ok_and(|s| s.success())
}

fn is_fifo(path: &Path) -> bool {
    use std::os::unix::fs::FileTypeExt;
    std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_fifo())
}

// See: #11 — `plan --out` on a device node replaced it with a regular file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn special_files_are_refused_as_outputs_and_left_alone() {
    let server = start(small(114)).await;
    let dir = tempfile::tempdir().unwrap();
    let job = alarm_job(dir.path(), "outputs");
    let fifo = dir.path().join("out.fifo");
    assert!(mkfifo(&fifo), "mkfifo is available");
    let kept = dir.path().join("kept.json");
    std::fs::write(&kept, "keep").unwrap();
    let link = dir.path().join("link.json");
    std::os::unix::fs::symlink(&kept, &link).unwrap();
    let mut targets = vec![
        (fifo.clone(), "named pipe (FIFO)"),
        (link.clone(), "symbolic link"),
    ];
    // A character device of our own (the null device's numbers), where mknod is allowed.
    let dev = dir.path().join("null");
    if Command::new("mknod")
        .arg(&dev)
        .args(["c", "1", "3"])
        .status()
        .is_ok_and(|s| s.success())
    {
        targets.push((dev.clone(), "character device"));
    } else {
        eprintln!("mknod is not permitted here: the device-node case is skipped");
    }
    for (target, kind) in &targets {
        let mut c = bin(&server);
        c.arg("plan").arg(&job).arg("--out").arg(target);
        let (code, err) = code_and_stderr(output_within(c, Duration::from_secs(30)), kind);
        assert_eq!(code, 2, "{kind}: {err}");
        assert!(
            err.contains(&format!("it is a {kind}, not a regular file")),
            "{kind}: {err}"
        );
    }
    assert!(is_fifo(&fifo), "the FIFO is still a FIFO");
    assert!(std::fs::symlink_metadata(&link).unwrap().is_symlink());
    assert_eq!(std::fs::read_to_string(&kept).unwrap(), "keep");
    if targets.len() == 3 {
        use std::os::unix::fs::FileTypeExt;
        assert!(
            std::fs::symlink_metadata(&dev)
                .unwrap()
                .file_type()
                .is_char_device()
        );
    }
    // Metrics onto a FIFO: the run is fine, the metrics are not written, the FIFO stays.
    let mut c = bin(&server);
    c.arg("run")
        .arg(&job)
        .arg("--state-dir")
        .arg(dir.path())
        .arg("--metrics-file")
        .arg(&fifo);
    let (code, err) = code_and_stderr(output_within(c, Duration::from_secs(60)), "metrics");
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("cannot write metrics"), "{err}");
    assert!(is_fifo(&fifo));
    // A report rebuilt into a run directory whose report.md is a symlink: refused.
    let run_dir = std::fs::read_dir(dir.path().join("runs"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    std::fs::remove_file(run_dir.join("report.md")).unwrap();
    std::os::unix::fs::symlink(&kept, run_dir.join("report.md")).unwrap();
    let mut c = bin(&server);
    c.arg("report").arg(&run_dir).args(["--format", "md"]);
    let (code, err) = code_and_stderr(output_within(c, Duration::from_secs(30)), "report");
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("it is a symbolic link"), "{err}");
    assert_eq!(std::fs::read_to_string(&kept).unwrap(), "keep");
}

// See: #11 — a FIFO as the job file hung, `/dev/zero` as a CSV list grew without bound.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn special_and_oversized_inputs_are_refused() {
    let server = start(small(115)).await;
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("job.yaml");
    assert!(mkfifo(&fifo));
    for cmd in ["validate", "run", "plan"] {
        let mut c = bin(&server);
        c.arg(cmd).arg(&fifo);
        if cmd == "run" {
            c.arg("--state-dir").arg(dir.path());
        }
        let (code, err) = code_and_stderr(output_within(c, Duration::from_secs(20)), cmd);
        assert_eq!(code, 2, "{cmd}: {err}");
        assert!(
            err.contains("it is a named pipe (FIFO), not a regular file"),
            "{cmd}: {err}"
        );
    }
    let csv_job = dir.path().join("csv.yaml");
    std::fs::write(
        &csv_job,
        "version: 1\nname: csv\nesper: { api_key: \"${ESPER_API_KEY}\" }\ntargets:\n  t: { devices: { csv: /dev/zero, column: serial } }\nsteps:\n  - id: reboot\n    command: { name: REBOOT, to: t }\n",
    )
    .unwrap();
    let mut c = bin(&server);
    c.arg("validate").arg(&csv_job);
    let (code, err) = code_and_stderr(output_within(c, Duration::from_secs(20)), "csv");
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("it is a character device"), "{err}");
    // Over the 16 MiB limit: a job file and a plan file.
    let big_job = dir.path().join("big.yaml");
    let mut text = std::fs::read_to_string(alarm_job(dir.path(), "big")).unwrap();
    text.push_str(&format!("# {}\n", "x".repeat(16 * 1024 * 1024)));
    std::fs::write(&big_job, &text).unwrap();
    let big_plan = dir.path().join("big.json");
    std::fs::write(
        &big_plan,
        format!("{{\"x\": \"{}\"}}", "y".repeat(16 * 1024 * 1024)),
    )
    .unwrap();
    let mut validate = bin(&server);
    validate.arg("validate").arg(&big_job);
    for (what, c) in [
        ("job", validate),
        ("plan", run_plan_cmd(&server, &big_plan, dir.path())),
    ] {
        let (code, err) = code_and_stderr(output_within(c, Duration::from_secs(20)), what);
        assert_eq!(code, 2, "{what}: {err}");
        assert!(err.contains("it is larger than 16 MiB"), "{what}: {err}");
    }
    assert_eq!(server.stats().requests_total, 0, "nothing was read or sent");
}

/// Whether this process may mount a tmpfs in a private mount namespace (root with
/// `unshare`); says why not when it may not.
fn can_mount_tmpfs() -> bool {
    let probe = tempfile::tempdir().unwrap();
    let ok = Command::new("unshare")
        .args(["-m", "--propagation", "private", "sh", "-c"])
        .arg(format!(
            "mount -t tmpfs -o size=64k tmpfs '{}'",
            probe.path().display()
        ))
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        eprintln!(
            "SKIPPED: the full-disk runs need root and `unshare -m` to mount a small tmpfs; \
             the exit-code mapping is still unit-tested (run::rebuild's tests)"
        );
    }
    ok
}

/// `esper-bulk run JOB --state-dir STATE` with STATE a tmpfs of `bytes` in a private mount
/// namespace; the run directories are copied to `out` before the tmpfs goes.
fn run_on_tmpfs(server: &MockServer, job: &Path, bytes: u64, out: &Path) -> (i32, String) {
    let state = tempfile::tempdir().unwrap();
    let script = format!(
        "mount -t tmpfs -o size={bytes} tmpfs '{state}' || exit 97\n'{bin}' run '{job}' --state-dir '{state}'\nrc=$?\ncp -r '{state}/runs' '{out}/' 2>/dev/null\nexit $rc\n",
        state = state.path().display(),
        bin = env!("CARGO_BIN_EXE_esper-bulk"),
        job = job.display(),
        out = out.display(),
    );
    let mut c = Command::new("unshare");
    c.args(["-m", "--propagation", "private", "sh", "-c", &script]);
    for (k, v) in bin(server).get_envs() {
        match v {
            Some(v) => c.env(k, v),
            None => c.env_remove(k),
        };
    }
    code_and_stderr(output_within(c, Duration::from_secs(120)), "tmpfs run")
}

const PAGE: u64 = 4096;

fn pages(path: &Path) -> u64 {
    std::fs::metadata(path).map_or(0, |m| m.len().div_ceil(PAGE))
}

// See: #11 — a full disk exited 2 ("invalid, nothing was sent") after work was done.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_ends_the_run_resumable_with_exit_4() {
    if !can_mount_tmpfs() {
        return;
    }
    let mut cfg = small(116);
    cfg.groups = 60;
    let server = start(cfg).await;
    let dir = tempfile::tempdir().unwrap();
    let job = alarm_job(dir.path(), "full");
    // The same run on a roomy disk, to size the small ones.
    let mut c = bin(&server);
    c.arg("run").arg(&job).arg("--state-dir").arg(dir.path());
    let (code, err) = code_and_stderr(output_within(c, Duration::from_secs(120)), "roomy");
    assert_eq!(code, 0, "{err}");
    let roomy = std::fs::read_dir(dir.path().join("runs"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let (plan, journal, report) = (
        pages(&roomy.join("plan.json")),
        pages(&roomy.join("journal.jsonl")),
        pages(&roomy.join("report.json")),
    );
    // The plan, the lock record and a page of slack.
    let base = plan + 2;
    assert!(
        journal >= 2 && report > 3,
        "sizes: {plan} {journal} {report} pages"
    );

    // Room for the plan and the journal, not for report.json: the work is done and
    // recorded, its report is not.
    let after = tempfile::tempdir().unwrap();
    let (code, err) = run_on_tmpfs(&server, &job, (base + journal + 1) * PAGE, after.path());
    assert_eq!(code, 4, "{err}");
    assert!(
        err.contains("report.json") && err.contains("esper-bulk report"),
        "{err}"
    );
    let copied = std::fs::read_dir(after.path().join("runs"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    assert!(!copied.join("report.json").exists());
    // With room, `report` rebuilds it from the plan and journal.
    let mut c = bin(&server);
    c.arg("report").arg(&copied);
    let (code, err) = code_and_stderr(output_within(c, Duration::from_secs(30)), "report");
    assert_eq!(code, 0, "{err}");
    let rebuilt: Value =
        serde_json::from_str(&std::fs::read_to_string(copied.join("report.json")).unwrap())
            .unwrap();
    assert_eq!(rebuilt["summary"]["succeeded"], 60);

    // Room for the plan and one page of journal: the journal fills mid-run.
    let mid = tempfile::tempdir().unwrap();
    let (code, err) = run_on_tmpfs(&server, &job, (base + 1) * PAGE, mid.path());
    assert_eq!(code, 4, "{err}");
    assert!(err.contains("cannot write the journal"), "{err}");
}

// See: #11 — names that read alike once made file-safe never share a lock.
#[test]
fn look_alike_job_names_take_separate_locks() {
    let state = tempfile::tempdir().unwrap();
    let holder = |job: &str, run: &str| esper_bulk::lock::Holder {
        pid: std::process::id(),
        host: "h".into(),
        started: "t".into(),
        run_id: run.into(),
        job: job.into(),
        server: "http://127.0.0.1:1/api".into(),
        enterprise: "e".into(),
    };
    let locks: Vec<_> = ["a/b", "a_b", "a:b"]
        .iter()
        .enumerate()
        .map(|(i, job)| {
            esper_bulk::lock::acquire(state.path(), &holder(job, &format!("r{i}")), None, &|| {
                false
            })
            .unwrap_or_else(|e| panic!("`{job}` has a lock of its own: {e}"))
        })
        .collect();
    assert_eq!(
        std::fs::read_dir(state.path().join("locks"))
            .unwrap()
            .count(),
        3
    );
    // The same name is still one lock.
    assert!(
        esper_bulk::lock::acquire(state.path(), &holder("a/b", "r9"), None, &|| false).is_err()
    );
    drop(locks);
}

// See: #11 — an APK or content file that is a FIFO blocked the upload's open forever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploads_refuse_special_files_instead_of_hanging() {
    let server = start(small(117)).await;
    let dir = tempfile::tempdir().unwrap();
    let (apk, pdf) = (dir.path().join("kiosk.apk"), dir.path().join("menu.pdf"));
    assert!(mkfifo(&apk) && mkfifo(&pdf), "mkfifo is available");
    let job = dir.path().join("uploads.yaml");
    std::fs::write(
        &job,
        format!(
            "{}steps:\n  - id: read\n    app_upload: {{ file: kiosk.apk }}\n  - id: named\n    app_upload: {{ file: kiosk.apk, package: com.acme.fifo, version_code: 1 }}\n  - id: content\n    content_upload: {{ file: menu.pdf }}\n",
            job_header(&server, "200/s")
        ),
    )
    .unwrap();
    let mut cmd = bin(&server);
    cmd.arg("run").arg(&job).arg("--state-dir").arg(dir.path());
    let out = output_within(cmd, Duration::from_secs(60)).expect("the run ends");
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("3 failed"), "{text}");
    assert!(text.contains("named pipe (FIFO)"), "{text}");
    assert_eq!(server.stats().created.app_versions, 0);
    assert_eq!(server.stats().created.contents, 0);
}
