//! The client follows the API exactly (issue #12): the read-backs and lookups ask Esper
//! only what its published API answers. Content is found by name and size over the whole
//! list (`search` matches tags and description, not names); a command read-back after an
//! ambiguous failure keeps its URL short; CSV serials are looked up one by one on the
//! legacy device list when there are few. Each test fails on the engine as it was before.

use esper_bulk::exec::TaskStatus;
use esper_bulk::mock::{Faults, MockServer, RequestRecord};
use serde_json::json;

use crate::support::{client, esper_bulk, job_header, run_job, small, start};

/// Proxies in front of APIs refuse longer request lines with 414.
const MAX_URL: usize = 8 * 1024;

fn url_len(r: &RequestRecord) -> usize {
    r.path.len() + 1 + r.query.len()
}

fn content_job(server: &MockServer, file: &std::path::Path) -> String {
    format!(
        "{}steps:\n  - id: push\n    content_upload: {{ file: \"{}\" }}\n",
        job_header(server, "500/s"),
        file.display()
    )
}

#[tokio::test]
async fn content_is_found_by_name_and_size_over_the_whole_list() {
    let server = start(small(120)).await;
    let c = client(&server);
    let dir = tempfile::tempdir().unwrap();
    // More than a page (the client asks for 100) of other files first, so the earlier
    // upload is on the second page.
    for i in 0..101 {
        let f = dir.path().join(format!("other-{i:03}.txt"));
        std::fs::write(&f, format!("other {i}")).unwrap();
        c.upload_content(&f).await.unwrap();
    }
    std::fs::create_dir(dir.path().join("earlier")).unwrap();
    let earlier = dir.path().join("earlier").join("menu.pdf");
    std::fs::write(&earlier, b"%PDF menu week 47").unwrap();
    let first = c.upload_content(&earlier).await.unwrap();
    // As an operator would describe it; `search` finds that text, never the file name.
    let path = format!("/v0/enterprise/{{enterprise_id}}/content/{}/", first.id);
    c.raw(
        "PATCH",
        &path,
        &[],
        Some(json!({"description": "board, week 47", "tags": ["boards"]})),
    )
    .await
    .unwrap();
    let before = server.snapshot().contents.len();

    // The same name and size (other bytes): found, not uploaded again.
    let same = dir.path().join("menu.pdf");
    std::fs::write(&same, b"%PDF menu week 48").unwrap();
    let (_, report) = run_job(&server, &content_job(&server, &same)).await;
    let task = &report.tasks[0];
    assert_eq!(
        task.status,
        TaskStatus::Succeeded,
        "{}",
        report.summary_text()
    );
    let result = task.result.as_ref().unwrap();
    assert_eq!(
        (&result["action"], &result["content_id"]),
        (&json!("exists"), &json!(first.id)),
        "{result}"
    );
    assert_eq!(server.snapshot().contents.len(), before, "no second upload");
    let lists: Vec<RequestRecord> = server
        .requests()
        .into_iter()
        .filter(|r| r.method == "GET" && r.path.ends_with("/content/"))
        .collect();
    assert!(
        lists.len() >= 2,
        "the list was read page by page: {lists:?}"
    );
    assert!(
        lists.iter().all(|r| !r.query.contains("search=")),
        "the lookup does not rely on `search` matching the name: {lists:?}"
    );

    // The same name with another size is another file: uploaded.
    let bigger = dir.path().join("bigger");
    std::fs::create_dir(&bigger).unwrap();
    let other = bigger.join("menu.pdf");
    std::fs::write(&other, b"%PDF menu week 48, with prices").unwrap();
    let (_, report) = run_job(&server, &content_job(&server, &other)).await;
    let result = report.tasks[0].result.as_ref().unwrap();
    assert_eq!(result["action"], "uploaded", "{}", report.summary_text());
    assert_ne!(result["content_id"], json!(first.id));
    assert_eq!(server.snapshot().contents.len(), before + 1);
}

#[tokio::test]
async fn a_command_read_back_for_500_devices_keeps_its_url_short() {
    let mut cfg = small(121);
    cfg.groups = 25;
    cfg.devices_per_group = 20;
    let server = start(cfg).await;
    // Every create commits and then answers 500: the retry must read back first.
    server.set_faults(Faults {
        commit_then_fail_rate: 1.0,
        ..Faults::default()
    });
    let job = format!(
        "{}targets:\n  stores: {{ devices: {{ group: Stores }} }}\nsteps:\n  - id: ping\n    command: {{ to: stores, name: UPDATE_HEARTBEAT, wait: {{ timeout: 10s }} }}\n",
        job_header(&server, "500/s")
    );
    let (plan, report) = run_job(&server, &job).await;
    assert_eq!(
        plan.targets["stores"].items.len(),
        500,
        "one 500-device chunk"
    );
    assert_eq!(report.tasks.len(), 1);
    assert_eq!(
        report.tasks[0].status,
        TaskStatus::Succeeded,
        "{}",
        report.summary_text()
    );
    let stats = server.stats();
    assert_eq!(
        (
            stats.created.command_requests,
            stats.duplicates.command_requests
        ),
        (1, 0),
        "the earlier command was found, not sent again: {stats:?}"
    );
    let requests = server.requests();
    let read_backs = requests
        .iter()
        .filter(|r| r.method == "GET" && r.path.ends_with("/commands/v0/commands/"))
        .count();
    assert!(read_backs >= 1, "the command was read back");
    let longest = requests.iter().max_by_key(|r| url_len(r)).unwrap();
    assert!(
        url_len(longest) < MAX_URL,
        "every URL stays under 8 KiB; {} {} has {} characters",
        longest.method,
        longest.path,
        url_len(longest)
    );
}

/// A job (no base URL: the binary takes it from the environment) pinging the devices of
/// `serials`, written with its CSV to `dir`.
fn serial_job(dir: &std::path::Path, serials: &[String]) -> std::path::PathBuf {
    let csv: String = std::iter::once("serial".to_string())
        .chain(serials.iter().cloned())
        .map(|l| l + "\n")
        .collect();
    std::fs::write(dir.join("serials.csv"), csv).unwrap();
    let job = dir.join("job.yaml");
    std::fs::write(
        &job,
        "version: 1\nname: serials\nesper: { api_key: \"${ESPER_API_KEY}\" }\ntargets:\n  listed: { devices: { csv: serials.csv, column: serial } }\nsteps:\n  - id: ping\n    command: { to: listed, name: UPDATE_HEARTBEAT }\n",
    )
    .unwrap();
    job
}

/// `esper-bulk plan JOB` against `server`: stdout, stderr.
fn plan_cmd(server: &MockServer, job: &std::path::Path) -> (String, String) {
    let out = esper_bulk(server).arg("plan").arg(job).output().unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    );
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    (stdout, stderr)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn few_csv_serials_are_looked_up_one_by_one_and_many_scan_the_fleet() {
    let server = start(small(122)).await;
    let fleet: Vec<String> = server
        .snapshot()
        .devices
        .into_iter()
        .map(|d| d.serial)
        .collect();
    let dir = tempfile::tempdir().unwrap();
    // Four of the fleet, one unknown, and a repeat.
    let mut few: Vec<String> = fleet[..4].to_vec();
    few.push("NOT-IN-THE-FLEET".into());
    few.push(fleet[0].clone());
    let (stdout, stderr) = plan_cmd(&server, &serial_job(dir.path(), &few));
    assert!(stdout.contains("target listed: 4 devices"), "{stdout}");
    assert!(
        stderr.contains("target `listed`: 4 devices by serial lookup (5 requests)"),
        "the plan says how the serials were found: {stderr}"
    );
    let requests = server.requests();
    let lookups: Vec<&RequestRecord> = requests
        .iter()
        .filter(|r| r.path.ends_with("/device/") && r.query.contains("serial="))
        .collect();
    assert_eq!(
        lookups.len(),
        5,
        "one request a distinct serial: {lookups:?}"
    );
    assert!(
        requests.iter().all(|r| !r.path.ends_with("/v2/devices/")),
        "no fleet scan for a short CSV"
    );

    // At the threshold and above, one scan of the fleet costs less.
    let mut many: Vec<String> = fleet.clone();
    many.extend((0..200).map(|i| format!("UNKNOWN-{i:03}")));
    let before = server.requests().len();
    let (stdout, stderr) = plan_cmd(&server, &serial_job(dir.path(), &many));
    assert!(
        stdout.contains(&format!("target listed: {} devices", fleet.len())),
        "{stdout}"
    );
    assert!(
        stderr.contains(&format!(
            "target `listed`: {} devices by a scan of the whole fleet",
            fleet.len()
        )),
        "{stderr}"
    );
    // The scan's pages have their own, lower budget, and the plan says so.
    assert!(
        stderr.contains("`/v2/devices/` pages are paced at 12/m by limits.device_list_rate"),
        "{stderr}"
    );
    let after = &server.requests()[before..];
    assert!(after.iter().any(|r| r.path.ends_with("/v2/devices/")));
    assert!(after.iter().all(|r| !r.query.contains("serial=")));
}

/// A job that reads its targets, then would reboot a store, in `dir`; no base URL or
/// enterprise (the binary takes them from the environment), two quick attempts a read.
fn writing_job(dir: &std::path::Path) -> std::path::PathBuf {
    let job = dir.join("reboot.yaml");
    std::fs::write(
        &job,
        "version: 1\nname: access\nesper: { api_key: \"${ESPER_API_KEY}\" }\nretry: { attempts: 2, initial_delay: 10ms, max_delay: 20ms }\ntargets:\n  one: { groups: { name: \"Stores/*/0001\" } }\nsteps:\n  - id: reboot\n    command: { to: one, name: REBOOT }\n",
    )
    .unwrap();
    job
}

/// Runs `cmd`; its exit code and stderr.
fn code_and_stderr(mut cmd: std::process::Command) -> (Option<i32>, String) {
    let out = cmd.output().unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn writes(server: &MockServer) -> Vec<String> {
    server
        .requests()
        .into_iter()
        .filter(|r| r.method != "GET")
        .map(|r| format!("{} {}", r.method, r.path))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_api_that_cannot_be_used_exits_5_before_anything_is_written() {
    let server = start(small(123)).await;
    let dir = tempfile::tempdir().unwrap();
    let job = writing_job(dir.path());
    let state = dir.path().join("state");
    let run = |cmd: &mut std::process::Command| {
        cmd.arg("run").arg(&job).arg("--state-dir").arg(&state);
    };

    let mut wrong_key = esper_bulk(&server);
    wrong_key.env("ESPER_API_KEY", "not-the-key-0123456789");
    run(&mut wrong_key);
    let (code, err) = code_and_stderr(wrong_key);
    assert_eq!(code, Some(5), "{err}");
    assert!(
        err.contains("error: the API key was refused: GET /api/enterprise/")
            || err.contains("error: the API key was refused: GET /enterprise/"),
        "{err}"
    );
    assert!(
        err.contains("answered 401") && err.contains("= help: check ESPER_API_KEY"),
        "{err}"
    );

    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let mut refused = esper_bulk(&server);
    refused.env("ESPER_BASE_URL", format!("http://127.0.0.1:{port}/api"));
    run(&mut refused);
    let (code, err) = code_and_stderr(refused);
    assert_eq!(code, Some(5), "{err}");
    assert!(
        err.contains(&format!(
            "error: cannot reach the Esper API at http://127.0.0.1:{port}/api: GET "
        )),
        "{err}"
    );
    assert!(err.contains("= help: check the base URL"), "{err}");

    let elsewhere = "6f1e0c2a-3b4d-4e5f-8a9b-0c1d2e3f4a5b";
    assert_ne!(elsewhere, server.enterprise_id());
    let mut wrong_enterprise = esper_bulk(&server);
    wrong_enterprise.env("ESPER_ENTERPRISE_ID", elsewhere);
    run(&mut wrong_enterprise);
    let (code, err) = code_and_stderr(wrong_enterprise);
    assert_eq!(code, Some(5), "{err}");
    assert!(
        err.contains(&format!(
            "error: enterprise `{elsewhere}` was not found for this API key"
        )),
        "{err}"
    );
    assert!(
        err.contains("= help: check ESPER_ENTERPRISE_ID / esper.enterprise_id"),
        "{err}"
    );
    assert!(
        !err.contains("scope") && !err.contains("answered 404"),
        "{err}"
    );

    // `plan` says the same.
    let mut plan = esper_bulk(&server);
    plan.env("ESPER_API_KEY", "not-the-key-0123456789")
        .arg("plan")
        .arg(&job);
    assert_eq!(code_and_stderr(plan).0, Some(5));

    // An invalid job is still 2, whatever the key.
    let invalid = dir.path().join("invalid.yaml");
    std::fs::write(
        &invalid,
        std::fs::read_to_string(&job)
            .unwrap()
            .replace("name: REBOOT", "name: REBOOTT"),
    )
    .unwrap();
    let mut bad = esper_bulk(&server);
    bad.env("ESPER_API_KEY", "not-the-key-0123456789")
        .arg("run")
        .arg(&invalid)
        .arg("--state-dir")
        .arg(&state);
    let (code, err) = code_and_stderr(bad);
    assert_eq!(code, Some(2), "{err}");

    assert!(
        writes(&server).is_empty(),
        "nothing was written: {:?}",
        writes(&server)
    );
    assert!(server.snapshot().commands.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_that_read_nothing_checks_the_key_before_its_first_write() {
    let server = start(small(124)).await;
    let dir = tempfile::tempdir().unwrap();
    let job = writing_job(dir.path());
    let state = dir.path().join("state");
    let saved = dir.path().join("plan.json");
    let mut plan = esper_bulk(&server);
    plan.arg("plan").arg(&job).arg("--out").arg(&saved);
    assert_eq!(code_and_stderr(plan).0, Some(0));

    // A reviewed plan run with a revoked key: one read, refused, and no task sent.
    let mut run = esper_bulk(&server);
    run.env("ESPER_API_KEY", "revoked-key-0123456789")
        .args(["run", "--plan"])
        .arg(&saved)
        .arg("--state-dir")
        .arg(&state);
    let (code, err) = code_and_stderr(run);
    assert_eq!(code, Some(5), "{err}");
    assert!(err.contains("error: the API key was refused"), "{err}");

    // A job whose plan reads nothing (an upload) with another enterprise's id.
    let file = dir.path().join("menu.pdf");
    std::fs::write(&file, b"%PDF menu").unwrap();
    let upload = dir.path().join("upload.yaml");
    std::fs::write(
        &upload,
        format!(
            "version: 1\nname: upload\nesper: {{ api_key: \"${{ESPER_API_KEY}}\" }}\nsteps:\n  - id: push\n    content_upload: {{ file: \"{}\" }}\n",
            file.display()
        ),
    )
    .unwrap();
    let elsewhere = "6f1e0c2a-3b4d-4e5f-8a9b-0c1d2e3f4a5b";
    let mut run = esper_bulk(&server);
    run.env("ESPER_ENTERPRISE_ID", elsewhere)
        .arg("run")
        .arg(&upload)
        .arg("--state-dir")
        .arg(&state);
    let (code, err) = code_and_stderr(run);
    assert_eq!(code, Some(5), "{err}");
    assert!(
        err.contains(&format!(
            "enterprise `{elsewhere}` was not found for this API key"
        )),
        "{err}"
    );
    assert!(
        writes(&server).is_empty(),
        "nothing was written: {:?}",
        writes(&server)
    );
    assert!(server.snapshot().commands.is_empty() && server.snapshot().contents.is_empty());

    // With the right settings the same plan runs.
    let mut run = esper_bulk(&server);
    run.args(["run", "--plan"])
        .arg(&saved)
        .arg("--state-dir")
        .arg(&state);
    let (code, err) = code_and_stderr(run);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(server.snapshot().commands.len(), 1);
}
