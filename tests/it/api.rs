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
    assert_eq!(task.status, TaskStatus::Succeeded, "{}", report.summary_text());
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
    assert!(lists.len() >= 2, "the list was read page by page: {lists:?}");
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
    assert_eq!(plan.targets["stores"].items.len(), 500, "one 500-device chunk");
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
    assert_eq!(lookups.len(), 5, "one request a distinct serial: {lookups:?}");
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
    let after = &server.requests()[before..];
    assert!(after.iter().any(|r| r.path.ends_with("/v2/devices/")));
    assert!(after.iter().all(|r| !r.query.contains("serial=")));
}
