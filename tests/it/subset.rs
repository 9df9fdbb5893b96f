//! `--limit` against the mock: it narrows plan and run to the intersection, says so in the
//! plan text, `plan --json` and the report, and is refused where it cannot apply. Also
//! `devices.csv` (golden) and the causes a run's report groups its failures by.

use std::path::Path;

use esper_bulk::plan::plan_text;
use esper_bulk::run::{self, PlanConfig, RunError, Source};
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use crate::support::{blessing, diff, esper_bulk, job_header, load, run_config, small, start};

/// Store groups (a command each) and the devices of all stores (one command for all).
fn two_targets(server: &esper_bulk::mock::MockServer) -> String {
    format!(
        "{}targets:\n  stores: {{ groups: {{ name: \"Stores/*/*\" }} }}\n  tills: {{ devices: {{ group: Stores }} }}\nsteps:\n  - id: sync\n    command: {{ to: stores, name: UPDATE_HEARTBEAT }}\n  - id: ping\n    command: {{ to: tills, name: UPDATE_HEARTBEAT, wait: {{ timeout: 10s }} }}\n",
        job_header(server, "500/s")
    )
}

fn plan_config(server: &esper_bulk::mock::MockServer, yaml: &str, limit: &[&str]) -> PlanConfig {
    let mut cfg = PlanConfig::new(
        load(server, yaml),
        run_config(
            server,
            Source::Resume("x".into()),
            Path::new("/nonexistent"),
        )
        .connection,
    );
    cfg.limit = limit.iter().map(|s| s.to_string()).collect();
    cfg
}

fn items(p: &esper_bulk::plan::Plan, target: &str) -> Vec<String> {
    p.targets[target]
        .items
        .iter()
        .map(|i| i.label().to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_limit_narrows_the_plan_and_the_run_to_the_intersection() {
    let server = start(small(41)).await;
    let yaml = two_targets(&server);
    let whole = run::plan(plan_config(&server, &yaml, &[])).await.unwrap();
    assert_eq!(items(&whole, "stores").len(), 6);
    assert_eq!(items(&whole, "tills").len(), 24);
    assert!(whole.limit.is_empty());

    // A store's path keeps that store and the devices in it.
    let p = run::plan(plan_config(&server, &yaml, &["Stores/North/0001"]))
        .await
        .unwrap();
    assert_eq!(items(&p, "stores"), ["Stores/North/0001"]);
    assert_eq!(
        items(&p, "tills"),
        [
            "ACME-0001-01",
            "ACME-0001-02",
            "ACME-0001-03",
            "ACME-0001-04"
        ]
    );
    assert_eq!(
        p.task_count, 2,
        "one group command and one chunk of devices"
    );
    let text = plan_text(&p, false, &esper_bulk::esper::adapter::EsperPaths);
    assert!(
        text.contains("limit: `Stores/North/0001` (targets narrowed to what it matches)"),
        "{text}"
    );
    let sealed: Value = serde_json::from_str(&run::sealed_plan(&p)).unwrap();
    assert_eq!(sealed["limit"], serde_json::json!(["Stores/North/0001"]));

    // A glob, a device name and a serial, from a file; the run touches only those.
    let dir = tempfile::tempdir().unwrap();
    let serial = whole.targets["tills"].items[23].detail.clone().unwrap();
    let file = dir.path().join("limit.txt");
    std::fs::write(
        &file,
        format!("# tonight's devices\nACME-0002-03\n\n{serial}\n"),
    )
    .unwrap();
    let mut cfg = run_config(
        &server,
        Source::Job(Box::new(load(&server, &yaml))),
        dir.path(),
    );
    cfg.limit = vec!["Stores/South/*".into(), format!("@{}", file.display())];
    let r = run::run(cfg, CancellationToken::new()).await.unwrap();
    assert_eq!(r.exit_code, 0);
    let stores: Vec<&str> = r
        .report
        .tasks
        .iter()
        .filter(|t| t.step == "sync")
        .map(|t| t.target.as_str())
        .collect();
    assert_eq!(stores, ["Stores/South/0002", "Stores/South/0006"]);
    let mut devices: Vec<String> = r
        .report
        .tasks
        .iter()
        .filter(|t| t.step == "ping")
        .flat_map(|t| t.devices.iter().map(|d| d.name.clone()))
        .collect();
    devices.sort();
    let last = whole.targets["tills"].items[23].name.clone();
    let mut want: Vec<String> = (1..=4)
        .flat_map(|i| [format!("ACME-0002-{i:02}"), format!("ACME-0006-{i:02}")])
        .collect();
    want.push(last);
    want.sort();
    want.dedup();
    assert_eq!(devices, want);
    assert_eq!(
        r.report.run.limit,
        ["Stores/South/*", "ACME-0002-03", serial.as_str()]
    );
    let md = std::fs::read_to_string(r.run_dir.join("report.md")).unwrap();
    assert!(
        md.contains("Narrowed by `--limit` `Stores/South/*`"),
        "{md}"
    );
    // Only those were sent: two group commands and one chunk of the devices.
    let sent = server
        .requests()
        .into_iter()
        .filter(|q| q.method == "POST" && q.path.contains("/commands/"))
        .count();
    assert_eq!(sent, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_limit_that_matches_nothing_or_meets_a_frozen_plan_is_refused() {
    let server = start(small(42)).await;
    let yaml = two_targets(&server);
    let err = run::plan(plan_config(&server, &yaml, &["Stores/Nowhere/*"]))
        .await
        .unwrap_err();
    assert_eq!(err.exit_code(), 2);
    assert!(
        err.to_string()
            .contains("--limit `Stores/Nowhere/*` matches nothing the job targets"),
        "{err}"
    );
    // A device's name empties the group target, which is a warning, not a refusal.
    let warnings = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let w = warnings.clone();
    let mut cfg = plan_config(&server, &yaml, &["ACME-0003-01"]);
    cfg.notices = run::Notices::new(move |n| w.lock().unwrap().push(n.to_string()));
    let p = run::plan(cfg).await.unwrap();
    assert_eq!(items(&p, "tills"), ["ACME-0003-01"]);
    assert!(items(&p, "stores").is_empty());
    assert_eq!(p.task_count, 1);
    let text = plan_text(&p, false, &esper_bulk::esper::adapter::EsperPaths);
    assert!(
        text.contains("target stores: 0 groups (none left by the limit)"),
        "{text}"
    );
    let warnings = warnings.lock().unwrap().clone();
    assert!(
        warnings
            .iter()
            .any(|w| w.contains("--limit leaves target `stores` empty (6 before)")),
        "{warnings:?}"
    );

    // Such a plan runs: the emptied target's step has no tasks.
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = run_config(
        &server,
        Source::Job(Box::new(load(&server, &yaml))),
        dir.path(),
    );
    cfg.limit = vec!["ACME-0003-01".into()];
    let r = run::run(cfg, CancellationToken::new()).await.unwrap();
    assert_eq!((r.exit_code, r.report.summary.tasks), (0, 1));
    let steps: Vec<(&str, u64)> = r
        .report
        .steps
        .iter()
        .map(|s| (s.id.as_str(), s.tasks))
        .collect();
    assert_eq!(steps, [("sync", 0), ("ping", 1)]);
    assert!(r.report.summary_text().contains("limit: ACME-0003-01"));
    for source in [Source::Resume("some-run".into()), Source::Plan(Box::new(p))] {
        let mut cfg = run_config(&server, source, dir.path());
        cfg.limit = vec!["Stores/North/0001".into()];
        let err = run::run(cfg, CancellationToken::new()).await.unwrap_err();
        assert!(matches!(err, RunError::LimitFrozen { .. }), "{err}");
        assert_eq!(err.exit_code(), 2);
    }

    // The same through the command line, and an empty @file.
    let job = dir.path().join("job.yaml");
    std::fs::write(&job, &yaml).unwrap();
    let empty = dir.path().join("empty.txt");
    std::fs::write(&empty, "# nothing\n").unwrap();
    let cases: [(&[&str], &str); 4] = [
        (
            &["run", "--resume", "--limit", "x"],
            "--limit cannot be used with --resume",
        ),
        (
            &["plan", "JOB", "--limit", "Nope"],
            "--limit `Nope` matches nothing",
        ),
        (&["plan", "JOB", "--limit", "@EMPTY"], "holds no pattern"),
        (
            &["run", "--plan", "JOB", "--limit", "x"],
            "--limit cannot be used with --plan",
        ),
    ];
    for (args, needle) in cases {
        let mut c = esper_bulk(&server);
        c.arg("--quiet").arg("--log-format").arg("text");
        for a in args {
            match *a {
                "JOB" => c.arg(&job),
                "@EMPTY" => c.arg(format!("@{}", empty.display())),
                a => c.arg(a),
            };
        }
        c.arg("--state-dir").arg(dir.path());
        if args[0] == "plan" {
            // `plan` has no state directory.
            c = esper_bulk(&server);
            for a in args {
                match *a {
                    "JOB" => c.arg(&job),
                    "@EMPTY" => c.arg(format!("@{}", empty.display())),
                    a => c.arg(a),
                };
            }
        }
        let out = c.output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(needle), "{args:?}: {err}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn devices_csv_has_a_row_per_device_with_its_name_and_serial() {
    let mut cfg = small(43);
    cfg.groups = 2;
    cfg.devices_per_group = 3;
    let server = start(cfg).await;
    let yaml = format!(
        "{}targets:\n  tills: {{ devices: {{ group: Stores/North }} }}\n  store: {{ groups: {{ name: Stores/South/0002 }} }}\nsteps:\n  - id: ping\n    command: {{ to: tills, name: UPDATE_HEARTBEAT, wait: {{ timeout: 10s }} }}\n  - id: sync\n    command: {{ to: store, name: UPDATE_HEARTBEAT }}\n",
        job_header(&server, "500/s")
    );
    let dir = tempfile::tempdir().unwrap();
    let cfg = run_config(
        &server,
        Source::Job(Box::new(load(&server, &yaml))),
        dir.path(),
    );
    let r = run::run(cfg, CancellationToken::new()).await.unwrap();
    assert_eq!(r.exit_code, 0);
    let csv = std::fs::read_to_string(r.run_dir.join("devices.csv")).unwrap();
    // Device ids are the mock's; the rest is compared with the golden.
    let ids: Vec<String> = r.plan.targets["tills"]
        .items
        .iter()
        .map(|i| i.id.clone())
        .collect();
    let mut masked = csv.clone();
    for (i, id) in ids.iter().enumerate() {
        masked = masked.replace(id, &format!("<device {}>", i + 1));
    }
    let golden = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/reports/devices.csv");
    if blessing() {
        std::fs::write(&golden, &masked).unwrap();
    }
    let expected = std::fs::read_to_string(&golden).unwrap_or_default();
    assert!(
        masked == expected,
        "devices.csv differs from its golden:\n{}\nif the new output is right: BLESS=1 cargo test --test it devices_csv",
        diff(&expected, &masked)
    );
    let rows: Vec<&str> = csv.lines().collect();
    assert_eq!(
        rows[0],
        "step,task,group,device,serial,device_id,status,command_state,reason"
    );
    assert_eq!(
        rows.len(),
        1 + 3,
        "one row per device of the device target only"
    );
    for item in &r.plan.targets["tills"].items {
        let serial = item.detail.as_deref().unwrap();
        assert!(
            rows.iter().any(|row| row.contains(&format!(
                ",{},{serial},{},succeeded,succeeded,",
                item.name, item.id
            ))),
            "{} lacks a row:\n{csv}",
            item.name
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_devices_are_grouped_by_cause_with_the_devices_to_look_at() {
    let mut cfg = small(44);
    cfg.groups = 1;
    cfg.devices_per_group = 4;
    cfg.commands.failure_rate = 1.0;
    let server = start(cfg).await;
    let yaml = format!(
        "{}targets:\n  tills: {{ devices: {{ group: Stores/North/0001 }} }}\nsteps:\n  - id: ping\n    command: {{ to: tills, name: UPDATE_HEARTBEAT, wait: {{ timeout: 10s }} }}\n",
        job_header(&server, "500/s")
    );
    let dir = tempfile::tempdir().unwrap();
    let cfg = run_config(
        &server,
        Source::Job(Box::new(load(&server, &yaml))),
        dir.path(),
    );
    let r = run::run(cfg, CancellationToken::new()).await.unwrap();
    assert_eq!(r.exit_code, 1);
    let report: Value = serde_json::from_slice(&std::fs::read(&r.report_path).unwrap()).unwrap();
    let causes = report["causes"].as_array().unwrap();
    assert_eq!(causes.len(), 1, "{causes:?}");
    assert_eq!(causes[0]["step"], "ping");
    assert_eq!(causes[0]["reason"], "device_failures");
    assert_eq!(causes[0]["devices"], 4);
    assert_eq!(causes[0]["next"], "check_devices");
    assert_eq!(
        causes[0]["examples"],
        serde_json::json!(["ACME-0001-01", "ACME-0001-02", "ACME-0001-03"])
    );
    let csv = std::fs::read_to_string(r.run_dir.join("devices.csv")).unwrap();
    assert_eq!(
        csv.lines()
            .filter(|l| l.contains(",failed,failed,"))
            .count(),
        4,
        "{csv}"
    );
    let html = std::fs::read_to_string(r.run_dir.join("report.html")).unwrap();
    assert!(
        html.contains("<section class=\"devs\""),
        "a table of failed devices"
    );
    assert!(
        html.contains("look at these 3 devices first: <code>ACME-0001-01</code>"),
        "{html}"
    );
    let slack = esper_bulk::report::NotifySummary::of(&r.report, "report.json").slack_text();
    assert!(
        slack.contains("\n• 1 task failed in step `ping` (device failures): look at these 3 devices first: `ACME-0001-01`, `ACME-0001-02`, `ACME-0001-03` (and 1 more in `devices.csv`)\n"),
        "{slack}"
    );
    let summary = r.report.summary_text();
    assert!(
        summary.contains("by cause:\n  1 task failed in step ping (device failures, 4 devices): look at these 3 devices first: `ACME-0001-01`"),
        "{summary}"
    );
}
