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
            (header, r.records().map(|x| x.unwrap()).count())
        }
        "json" => {
            let v: Value = serde_json::from_str(&text).unwrap();
            (None, v.as_array().unwrap().len())
        }
        _ => (
            None,
            text.lines()
                .map(|l| serde_json::from_str::<Value>(l).unwrap())
                .count(),
        ),
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
        run_config(&server, Source::Job(Box::new(load(&server, &job))), state.path()),
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
            let file = r.run_dir.join("exports").join(format!("{what}-{format}.{format}"));
            let (header, n) = rows(&file, format);
            assert_eq!(n, expected(what), "{what} as {format}");
            if let Some(h) = header {
                headers.push_str(&format!("{what}: {h}\n"));
            }
        }
    }
    let golden = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/export/csv_headers.txt");
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
    assert!(r.report.tasks.iter().all(|t| t.result.as_ref().unwrap()["action"] == "exported"));
}
