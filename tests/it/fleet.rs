//! Fleets larger than one page (issue #15): a target of more devices than a legacy page
//! is listed in `/v2/devices/` cursor pages of 1,000 and says what the listing's budget
//! costs, a command to more devices than one request takes is chunked with every device
//! followed, plan format 3 keeps targets as columns (and formats 2 and 3 both run), and
//! the journal's per-device reasons are bounded.

use esper_bulk::plan::{self, Plan};
use esper_bulk::run::{self, Notices};
use serde_json::Value;

use crate::support::{self, esper_bulk, job_header, small, start};

/// 2,500 devices in store groups (and the mock's few others): more than `V2_ABOVE`
/// (2,000), so listed by cursor, in 3 pages.
fn big() -> esper_bulk::mock::MockConfig {
    let mut cfg = small(1501);
    cfg.groups = 5;
    cfg.devices_per_group = 500;
    cfg
}

/// The fleet's size: between 2,001 and 3,000 devices.
fn devices(server: &esper_bulk::mock::MockServer) -> usize {
    let n = server.snapshot().devices.len();
    assert!((2001..=3000).contains(&n), "{n}");
    n
}

fn reboot_job(server: &esper_bulk::mock::MockServer, list_rate: &str) -> String {
    format!(
        "{}targets:\n  fleet: {{ devices: {{ state: online }} }}\nsteps:\n  - id: reboot\n    command: {{ to: fleet, name: REBOOT, wait: {{ timeout: 1m }} }}\n",
        job_header(server, "500/s").replace(
            "max_in_flight: 40 }",
            &format!("max_in_flight: 40, device_list_rate: {list_rate} }}")
        )
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fleet_larger_than_a_page_is_listed_by_cursor_and_chunked_into_commands() {
    let server = start(big()).await;
    let n = devices(&server);
    let (plan, report) = support::run_job(&server, &reboot_job(&server, "500/s")).await;
    assert_eq!(report.run.exit_code, 0, "{}", report.summary_text());
    assert_eq!(plan.targets["fleet"].items.len(), n);
    let requests = server.requests();
    let count = |route: &str| requests.iter().filter(|r| r.route == route).count();
    // One count on the legacy list, then ceil(2500 / 1000) cursor pages.
    let pages: Vec<_> = requests
        .iter()
        .filter(|r| r.route == "GET /v2/devices/")
        .collect();
    assert_eq!(pages.len(), 3, "{pages:?}");
    assert!(
        pages[0].query.contains("cursor=start"),
        "{}",
        pages[0].query
    );
    assert!(pages.iter().all(|p| p.query.contains("limit=1000")));
    assert!(pages[1..].iter().all(|p| !p.query.contains("cursor=start")));
    // ceil(2500 / 1000) command requests, each of at most 1,000 devices.
    assert_eq!(plan.task_count, 3);
    let posts = count("POST /commands/v0/commands/");
    assert_eq!(posts, 3);
    let snapshot = server.snapshot();
    let mut sizes: Vec<usize> = snapshot
        .commands
        .iter()
        .map(|c| c.device_ids.len())
        .collect();
    sizes.sort_unstable();
    assert_eq!(sizes, vec![n - 2000, 1000, 1000]);
    // Every device's state was followed: one status page of 1,000 per chunk.
    let followed: u64 = report
        .tasks
        .iter()
        .filter_map(|t| t.followed.as_ref()?.counts.as_ref())
        .map(|c| c.succeeded)
        .sum();
    assert_eq!(followed, n as u64);
    let statuses = count("GET /commands/v0/status/");
    assert_eq!(statuses, 3, "one page per chunk");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_plan_says_what_listing_a_large_fleet_costs_up_front() {
    let server = start(big()).await;
    let n = devices(&server);
    let dir = tempfile::tempdir().unwrap();
    let job = dir.path().join("job.yaml");
    std::fs::write(&job, reboot_job(&server, "30/m")).unwrap();
    let out = esper_bulk(&server).arg("plan").arg(&job).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "target `fleet`: {n} devices listed in 3 pages of `/v2/devices/` (1000 a page), paced at 30/m by limits.device_list_rate: about 4s of listing"
        )),
        "{stderr}"
    );
    // Said before the listing starts too, since at the default budget it takes minutes.
    let before = stderr
        .find(&format!(
            "listing {n} devices in 3 pages of `/v2/devices/` (1000 a page), paced at 30/m by limits.device_list_rate: about 4s"
        ))
        .unwrap_or_else(|| panic!("{stderr}"));
    assert!(
        before < stderr.find("listed in 3 pages").unwrap(),
        "{stderr}"
    );
    // A small fleet stays on the legacy list and has no such note.
    let small_server = start(small(1502)).await;
    std::fs::write(&job, reboot_job(&small_server, "30/m")).unwrap();
    let out = esper_bulk(&small_server)
        .arg("plan")
        .arg(&job)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("/v2/devices/"), "{stderr}");
    assert!(
        small_server
            .requests()
            .iter()
            .all(|r| r.route != "GET /v2/devices/")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn format_3_plans_keep_targets_as_columns_and_both_formats_run() {
    let server = start(big()).await;
    let n = devices(&server);
    let job = support::load(&server, &reboot_job(&server, "500/s"));
    let cfg = support::run_config(
        &server,
        run::Source::Job(Box::new(job.clone())),
        std::path::Path::new("/nonexistent"),
    );
    let mut pc = run::PlanConfig::new(job, cfg.connection.clone());
    pc.pacing = support::test_pacing();
    let p = run::plan(pc).await.unwrap();
    assert_eq!(p.format, plan::PLAN_FORMAT);
    assert_eq!(p.format, 3);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("plan.json");
    run::write_plan(&file, &p).unwrap();
    let text = std::fs::read_to_string(&file).unwrap();
    let v: Value = serde_json::from_str(&text).unwrap();
    let fleet = &v["targets"]["fleet"];
    assert_eq!(fleet["count"], n);
    assert!(
        fleet["uuids"].is_string() && fleet.get("items").is_none(),
        "{fleet}"
    );
    // Lossless: read back equal, and the hash covers the column form.
    let back = run::read_plan(&file, &Notices::none()).unwrap();
    assert_eq!(back, p);
    assert_eq!(plan::integrity(&back), v["integrity"].as_str().unwrap());
    // The same plan as format 2 (items): it reads and runs the same.
    let mut old = p.clone();
    old.format = 2;
    let old_text = serde_json::to_string(&old).unwrap();
    assert!(old_text.contains("\"items\":["));
    let old_file = dir.path().join("plan2.json");
    run::write_plan(&old_file, &old).unwrap();
    let back2 = run::read_plan(&old_file, &Notices::none()).unwrap();
    assert_eq!(back2.targets, p.targets);
    assert!(
        std::fs::metadata(&file).unwrap().len() * 2 < std::fs::metadata(&old_file).unwrap().len(),
        "columns take less than half the space of items"
    );
}

/// The format-3 fixture reads and writes back exactly as it was (value for value, so the
/// hash it carries stays right).
#[test]
fn the_format_3_fixture_round_trips_unchanged() {
    let path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/plan/format3.json");
    if support::blessing() {
        // Made from the format-2 fixture: format 3, and a device target of three.
        let old = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/journal/plan.json");
        let mut p: Plan = serde_json::from_str(&std::fs::read_to_string(old).unwrap()).unwrap();
        p.format = 3;
        let device = |id: &str, name: &str, serial: Option<&str>| plan::Item {
            kind: plan::ItemKind::Device,
            id: id.into(),
            name: name.into(),
            detail: serial.map(str::to_string),
        };
        p.targets.insert(
            "fleet".into(),
            plan::FrozenTarget {
                kind: plan::ItemKind::Device,
                items: vec![
                    device(
                        "5b0c1f6e-3f0a-4c59-9d1e-0a6f2b7c8d01",
                        "ACME-0001",
                        Some("R58M0001"),
                    ),
                    device(
                        "5b0c1f6e-3f0a-4c59-9d1e-0a6f2b7c8d02",
                        "ACME-0002",
                        Some("R58M0002"),
                    ),
                    device("5b0c1f6e-3f0a-4c59-9d1e-0a6f2b7c8d03", "lobby\\1", None),
                ],
            },
        );
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        run::write_plan(&path, &p).unwrap();
    }
    let text = std::fs::read_to_string(&path).unwrap();
    let written: Value = serde_json::from_str(&text).unwrap();
    let p: Plan = serde_json::from_str(&text).unwrap();
    assert_eq!(p.format, 3);
    let mut again = serde_json::to_value(&p).unwrap();
    // The file's own fields beyond the plan: the seal and the change counts.
    let w = written.as_object().unwrap();
    for k in ["integrity", "changes", "step_changes"] {
        if let Some(x) = w.get(k) {
            again[k] = x.clone();
        }
    }
    assert_eq!(again, written);
    assert_eq!(plan::integrity(&p), written["integrity"].as_str().unwrap());
    assert_eq!(p.targets["fleet"].items.len(), 3);
    assert_eq!(p.targets["fleet"].items[1].name, "ACME-0002");
    assert_eq!(p.targets["fleet"].items[2].detail, None);
}

#[test]
fn a_devices_reason_is_bounded_in_the_journal() {
    use esper_bulk::exec::{DeviceResult, DeviceState, Followed, MAX_DEVICE_REASON};
    use esper_bulk::journal::FollowedRecord;
    let long = "é".repeat(5000);
    let f = Followed {
        command: "c".into(),
        finished: true,
        counts: None,
        devices: vec![DeviceResult {
            id: "d".into(),
            state: DeviceState::Failed,
            reason: Some(long),
        }],
        install: None,
    };
    let rec = FollowedRecord::from(&f);
    let kept = rec.devices[0].reason.as_deref().unwrap();
    assert_eq!(kept.chars().count(), MAX_DEVICE_REASON);
    assert!(kept.ends_with('…'));
    let short = esper_bulk::exec::device_reason("no space left");
    assert_eq!(short, "no space left");
}
