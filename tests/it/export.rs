//! Export steps end to end against the mock: every `what:` in every format (golden CSV
//! headers, row counts equal to the mock's inventory), incremental command exports with
//! `since: last_run`, the alarm-rule export pasted back into a job that plans as all
//! `unchanged`, exports beside another job's write lock, and install verification.

use std::path::Path;

use esper_bulk::run::Source;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use crate::support::{blessing, client, job_header, load, run, run_config, small, start};

const WHATS: &[&str] = &[
    "devices",
    "groups",
    "apps",
    "installed",
    "alarm_rules",
    "commands",
];
const FORMATS: &[&str] = &["csv", "json", "jsonl"];

/// Two rules and one finished REBOOT, so every listing has rows.
async fn seed_tenant(server: &esper_bulk::mock::MockServer) {
    let c = client(server);
    let snap = server.snapshot();
    for (name, value) in [("Battery low", 15), ("Battery very low", 5)] {
        c.create_alarm_rule(&json!({
            "enterprise": server.enterprise_id(),
            "name": name,
            "metric": "battery_level",
            "conditions": {"comparator": "LessThanThreshold", "value": value, "unit": "Percent"},
            "realert_interval": 3600,
            "groups": [snap.groups[1].id],
        }))
        .await
        .unwrap();
    }
    let devices: Vec<&str> = snap.devices.iter().take(3).map(|d| d.id.as_str()).collect();
    c.create_command(&json!({
        "command_type": "DEVICE", "devices": devices, "device_type": "all",
        "command": "REBOOT", "schedule": "IMMEDIATE",
    }))
    .await
    .unwrap();
}

fn rows(path: &Path, format: &str) -> (Option<String>, usize) {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    match format {
        "csv" => {
            let mut lines = text.lines();
            let header = lines.next().map(str::to_string);
            let mut r = csv::Reader::from_path(path).unwrap();
            let records: Vec<csv::StringRecord> = r.records().map(|x| x.unwrap()).collect();
            (header, records.len())
        }
        "json" => {
            let v: Value = serde_json::from_str(&text).unwrap();
            (None, v.as_array().unwrap().len())
        }
        _ => {
            let parsed: Vec<Value> = text
                .lines()
                .map(|l| serde_json::from_str(l).unwrap())
                .collect();
            (None, parsed.len())
        }
    }
}

#[tokio::test]
async fn every_what_in_every_format_matches_the_inventory() {
    let server = start(small(140)).await;
    seed_tenant(&server).await;
    let mut steps = String::new();
    for what in WHATS {
        for format in FORMATS {
            let extra = if *what == "installed" {
                ", package: com.acme.kiosk"
            } else {
                ""
            };
            steps.push_str(&format!(
                "  - id: {what}-{format}\n    export: {{ what: {what}, format: {format}{extra} }}\n"
            ));
        }
    }
    let job = format!("{}steps:\n{steps}", job_header(&server, "500/s"));
    let state = tempfile::tempdir().unwrap();
    let r = run(
        run_config(
            &server,
            Source::Job(Box::new(load(&server, &job))),
            state.path(),
        ),
        CancellationToken::new(),
    )
    .await;
    assert_eq!(r.exit_code, 0, "{}", r.report.summary_text());

    let snap = server.snapshot();
    let expected = |what: &str| match what {
        "devices" => snap.devices.len(),
        "groups" => snap.groups.len(),
        "apps" => snap.apps.iter().map(|a| a.versions.len()).sum(),
        "installed" => snap
            .devices
            .iter()
            .filter(|d| d.installed.contains_key("com.acme.kiosk"))
            .count(),
        "alarm_rules" => snap.alarm_rules.len(),
        _ => snap.commands.iter().map(|c| c.statuses.len()).sum(),
    };
    let mut headers = String::new();
    for what in WHATS {
        assert!(expected(what) > 0, "the tenant has {what}");
        for format in FORMATS {
            let file = r
                .run_dir
                .join("exports")
                .join(format!("{what}-{format}.{format}"));
            let (header, n) = rows(&file, format);
            assert_eq!(n, expected(what), "{what} as {format}");
            if let Some(h) = header {
                headers.push_str(&format!("{what}: {h}\n"));
            }
        }
    }
    let golden =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/export/csv_headers.txt");
    if blessing() {
        std::fs::create_dir_all(golden.parent().unwrap()).unwrap();
        std::fs::write(&golden, &headers).unwrap();
    }
    assert_eq!(
        std::fs::read_to_string(&golden).unwrap_or_default(),
        headers,
        "CSV headers (BLESS=1 rewrites the golden file)"
    );
    // The plan said which requests it would make, and the report's tasks say what was written.
    let step = &r.plan.steps[0];
    assert_eq!(step.kind, "export");
    assert!(
        r.report
            .tasks
            .iter()
            .all(|t| t.result.as_ref().unwrap()["action"] == "exported")
    );
}

#[tokio::test]
async fn verification_finds_installs_that_succeeded_without_installing() {
    let mut cfg = small(141);
    cfg.commands.install_noop_rate = 0.3;
    let server = start(cfg).await;
    let job = format!(
        "{}targets:\n  stores: {{ groups: {{ name: \"Stores/*/*\" }} }}\nsteps:\n  - id: install\n    app_install: {{ to: stores, package: com.acme.kiosk, version_code: \"410\", wait: {{ timeout: 20s }} }}\n",
        job_header(&server, "500/s")
    );
    let state = tempfile::tempdir().unwrap();
    let r = run(
        run_config(
            &server,
            Source::Job(Box::new(load(&server, &job))),
            state.path(),
        ),
        CancellationToken::new(),
    )
    .await;
    // The mock says which devices really have 410 now; the others "succeeded" as no-ops.
    let snap = server.snapshot();
    let stores: Vec<&esper_bulk::mock::SnapshotDevice> = snap
        .devices
        .iter()
        .filter(|d| d.device_name.starts_with("ACME-0"))
        .collect();
    let lacking: Vec<&str> = stores
        .iter()
        .filter(|d| d.installed.get("com.acme.kiosk").map(String::as_str) != Some("410"))
        .map(|d| d.id.as_str())
        .collect();
    assert!(
        !lacking.is_empty() && lacking.len() < stores.len(),
        "the no-op rate leaves some devices without the version ({} of {})",
        lacking.len(),
        stores.len()
    );
    assert_eq!(r.exit_code, 1, "{}", r.report.summary_text());
    let mut found: Vec<String> = r
        .report
        .tasks
        .iter()
        .filter_map(|t| t.followed.as_ref()?.install.as_ref())
        .flat_map(|i| i.missing.clone())
        .collect();
    found.sort();
    let mut want: Vec<String> = lacking.iter().map(|s| s.to_string()).collect();
    want.sort();
    assert_eq!(
        found, want,
        "verification finds exactly the devices without the version"
    );
    let failed = r
        .report
        .tasks
        .iter()
        .filter(|t| t.status == esper_bulk::exec::TaskStatus::Failed)
        .count();
    let groups_lacking: std::collections::BTreeSet<&str> = stores
        .iter()
        .filter(|d| lacking.contains(&d.id.as_str()))
        .map(|d| d.group_id.as_str())
        .collect();
    assert_eq!(
        failed,
        groups_lacking.len(),
        "a group task fails when one of its devices lacks the version"
    );
    let csv = std::fs::read_to_string(r.run_dir.join("results.csv")).unwrap();
    assert_eq!(
        csv.matches("command succeeded but the version is not installed")
            .count(),
        lacking.len(),
        "{csv}"
    );
    let devices = std::fs::read_to_string(r.run_dir.join("devices.csv")).unwrap();
    assert_eq!(
        devices.matches(",succeeded_not_installed,").count(),
        lacking.len(),
        "devices.csv names each device the check found without the version: {devices}"
    );
    let text = r.report.summary_text();
    assert!(
        text.contains("reported success without installing"),
        "{text}"
    );
}

#[tokio::test]
async fn alarm_rule_export_pastes_back_into_a_job_that_plans_unchanged() {
    let server = start(small(142)).await;
    let c = client(&server);
    let snap = server.snapshot();
    // Rules of every shape the block takes: groups or devices, emails, inactive, toggles.
    let rules = [
        json!({"name": "Battery low", "metric": "battery_level", "realert_interval": 3600,
               "conditions": {"comparator": "LessThanThreshold", "value": 15, "unit": "Percent"},
               "groups": [snap.groups[4].id, snap.groups[5].id], "description": "stores",
               "action_emails": ["oncall@acme.example"], "repeat_times": 3}),
        json!({"name": "Lab offline", "metric": "device_offline", "realert_interval": 600,
               "conditions": {"comparator": "GreaterThanOrEqualToThreshold", "value": 30, "unit": "Count", "toggle_state": true},
               "devices": [snap.devices[0].id], "is_active": false}),
    ];
    for mut r in rules {
        r["enterprise"] = json!(server.enterprise_id());
        c.create_alarm_rule(&r).await.unwrap();
    }
    let job = format!(
        "{}steps:\n  - id: rules\n    export: {{ what: alarm_rules, format: json }}\n",
        job_header(&server, "500/s")
    );
    let state = tempfile::tempdir().unwrap();
    let r = run(
        run_config(
            &server,
            Source::Job(Box::new(load(&server, &job))),
            state.path(),
        ),
        CancellationToken::new(),
    )
    .await;
    assert_eq!(r.exit_code, 0, "{}", r.report.summary_text());
    let exported: Vec<Value> = serde_json::from_str(
        &std::fs::read_to_string(r.run_dir.join("exports/rules.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(exported.len(), 2);

    // Each exported block pasted as it is (JSON is YAML) under `alarm_rule:`.
    let mut steps = String::new();
    for (i, block) in exported.iter().enumerate() {
        steps.push_str(&format!("  - id: rule-{i}\n    alarm_rule: {block}\n"));
    }
    let pasted = format!("{}steps:\n{steps}", job_header(&server, "500/s"));
    let mut connection = esper_bulk::run::ConnectionSettings::direct(
        &server.base_url(),
        server.enterprise_id(),
        esper_bulk::esper::ApiKey::new(server.api_key()),
    );
    connection.client.timeout = std::time::Duration::from_secs(5);
    let plan = esper_bulk::run::plan(esper_bulk::run::PlanConfig::new(
        load(&server, &pasted),
        connection,
    ))
    .await
    .unwrap();
    let actions: Vec<&str> = plan
        .steps
        .iter()
        .flat_map(|s| s.actions.iter().flatten())
        .map(|a| a.kind())
        .collect();
    assert_eq!(actions, ["unchanged", "unchanged"], "{pasted}");
}

#[tokio::test]
async fn since_last_run_exports_only_the_command_requests_made_since() {
    let server = start(small(143)).await;
    let c = client(&server);
    let snap = server.snapshot();
    let reboot = |d: &str| {
        json!({"command_type": "DEVICE", "devices": [d], "device_type": "all",
               "command": "REBOOT", "schedule": "IMMEDIATE"})
    };
    let first = c
        .create_command(&reboot(&snap.devices[0].id))
        .await
        .unwrap();
    let job = format!(
        "{}steps:\n  - id: cmds\n    export: {{ what: commands, since: last_run, file: cmds.jsonl }}\n",
        job_header(&server, "500/s")
    );
    let dir = tempfile::tempdir().unwrap();
    let state = tempfile::tempdir().unwrap();
    let mut job = load(&server, &job);
    job.resolve_paths(dir.path());
    let out = dir.path().join("cmds.jsonl");
    let read = || -> Vec<Value> {
        std::fs::read_to_string(&out)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    };
    let once = run(
        run_config(&server, Source::Job(Box::new(job.clone())), state.path()),
        CancellationToken::new(),
    )
    .await;
    assert_eq!(once.exit_code, 0, "{}", once.report.summary_text());
    let rows = read();
    assert_eq!(rows.len(), 1, "the first run exports everything: {rows:?}");
    assert_eq!(rows[0]["request_id"], first.id.as_str());

    let second = c
        .create_command(&reboot(&snap.devices[1].id))
        .await
        .unwrap();
    let third = c
        .create_command(&reboot(&snap.devices[2].id))
        .await
        .unwrap();
    let twice = run(
        run_config(&server, Source::Job(Box::new(job)), state.path()),
        CancellationToken::new(),
    )
    .await;
    assert_eq!(twice.exit_code, 0, "{}", twice.report.summary_text());
    let mut ids: Vec<String> = read()
        .iter()
        .map(|r| r["request_id"].as_str().unwrap().to_string())
        .collect();
    ids.sort();
    let mut want = vec![second.id.clone(), third.id.clone()];
    want.sort();
    assert_eq!(
        ids, want,
        "only the requests made since the last successful run"
    );
}

#[tokio::test]
async fn an_export_runs_while_another_job_holds_its_write_lock() {
    let server = start(small(144)).await;
    let state = tempfile::tempdir().unwrap();
    // Another job of the same tenant holds its lock (a run in progress).
    let writer = load(
        &server,
        &format!(
            "{}steps:\n  - id: r\n    request: {{ method: GET, path: /x/ }}\n",
            job_header(&server, "500/s").replace("name: test", "name: writer")
        ),
    );
    let holder = esper_bulk::lock::Holder {
        pid: std::process::id(),
        host: esper_bulk::lock::hostname(),
        started: jiff::Timestamp::now().to_string(),
        run_id: "writer-run".into(),
        job: writer.name.clone(),
        server: server.base_url(),
        enterprise: server.enterprise_id().to_string(),
    };
    let _held = esper_bulk::lock::acquire(state.path(), &holder, None, &|| false).unwrap();
    let export = format!(
        "{}steps:\n  - id: devices\n    export: {{ what: devices }}\n",
        job_header(&server, "500/s").replace("name: test", "name: inventory")
    );
    let r = run(
        run_config(
            &server,
            Source::Job(Box::new(load(&server, &export))),
            state.path(),
        ),
        CancellationToken::new(),
    )
    .await;
    assert_eq!(r.exit_code, 0, "{}", r.report.summary_text());
    let (_, n) = rows(&r.run_dir.join("exports/devices.csv"), "csv");
    assert_eq!(n, server.snapshot().devices.len());
    // The export's own job lock is still taken: a second run of it now would wait.
    let again = esper_bulk::lock::acquire(
        state.path(),
        &esper_bulk::lock::Holder {
            job: "writer".into(),
            run_id: "writer-2".into(),
            ..holder.clone()
        },
        None,
        &|| false,
    );
    assert!(again.is_err(), "the writer's lock was held all along");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_export_one_liner_runs_a_one_step_job() {
    let server = start(small(145)).await;
    let dir = tempfile::tempdir().unwrap();
    let out = tokio::task::block_in_place(|| {
        crate::support::esper_bulk(&server)
            .current_dir(dir.path())
            .args([
                "export",
                "what=devices",
                "--target",
                "Stores/**",
                "--exclude",
                "Stores/North/**",
            ])
            .args([
                "-o",
                "devices.csv",
                "--fields",
                "serial,group,hardwareInfo.model",
            ])
            .arg("--state-dir")
            .arg(dir.path().join("state"))
            .output()
            .unwrap()
    });
    let stderr = String::from_utf8_lossy(&out.stderr);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stderr}\n{stdout}");
    let snap = server.snapshot();
    let north: Vec<&str> = snap
        .groups
        .iter()
        .filter(|g| g.path.starts_with("All devices/Stores/North/"))
        .map(|g| g.id.as_str())
        .collect();
    let want = snap
        .devices
        .iter()
        .filter(|d| d.device_name.starts_with("ACME-0") && !north.contains(&d.group_id.as_str()))
        .count();
    let text = std::fs::read_to_string(dir.path().join("devices.csv")).unwrap();
    let mut lines = text.lines();
    assert_eq!(lines.next(), Some("serial,group,hardwareInfo.model"));
    let rows: Vec<&str> = lines.collect();
    assert_eq!(rows.len(), want, "{text}");
    assert!(
        rows.iter()
            .all(|r| r.contains(",Stores/") && !r.contains("Stores/North")),
        "{text}"
    );
    assert!(
        stdout.contains(&format!("export: {want} rows in ")),
        "{stdout}"
    );
    // It went through the normal pipeline: a run directory with its report.
    let runs = std::fs::read_dir(dir.path().join("state/runs"))
        .unwrap()
        .count();
    assert_eq!(runs, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_plan_shows_an_exports_reads_and_how_installed_is_read() {
    let mut cfg = small(146);
    cfg.devices_per_group = 40;
    let server = start(cfg).await;
    let dir = tempfile::tempdir().unwrap();
    let job = dir.path().join("observe.yaml");
    std::fs::write(
        &job,
        "version: 1\nname: observe\nesper: { api_key: \"${ESPER_API_KEY}\" }\ntargets:\n  lab: { groups: { name: Lab } }\nsteps:\n  - id: lab-kiosk\n    export: { what: installed, target: lab, package: com.acme.kiosk }\n  - id: all-kiosk\n    export: { what: installed, package: com.acme.kiosk, version_code: \"400\" }\n  - id: devices\n    export: { what: devices, file: devices.csv }\n",
    )
    .unwrap();
    let out = tokio::task::block_in_place(|| {
        crate::support::esper_bulk(&server)
            .args(["plan", "--detailed-exitcode"])
            .arg(&job)
            .output()
            .unwrap()
    });
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(0),
        "an export writes nothing: {stderr}\n{stdout}"
    );
    let devices = server.snapshot().devices.len();
    // Two lab devices: their app lists (2 reads) beat the versions' installdevices pages
    // (3 pages of 400's 244 devices, 1 of 410's none).
    assert!(
        stdout
            .contains("export installed of lab as csv to <run dir>/exports/lab-kiosk.csv: 5 reads"),
        "{stdout}"
    );
    assert!(
        stdout.contains("by per-device app lists; reads only"),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!("export installed of every device as csv to <run dir>/exports/all-kiosk.csv: {devices} rows, 5 reads")),
        "{stdout}"
    );
    assert!(
        stdout.contains("by installdevices per version; reads only"),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!(
            "export devices of every device as csv to {}: {devices} rows, 4 reads",
            dir.path().join("devices.csv").display()
        )),
        "{stdout}"
    );
    assert!(
        stdout.contains("/installdevices\n"),
        "the estimate names the endpoint: {stdout}"
    );
}
