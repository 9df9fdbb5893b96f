//! The shipped jobs (`jobs/*.yaml`), `jobs/job.schema.json` and every `yaml` example in
//! the README: each one validates, plans against the in-process mock, and plans what it
//! says it does; two of the jobs also run end to end.
//!
//! The mock is seeded with [`SEED`]: the serials in `jobs/migration-serials.csv` and the ids
//! in the README examples are those of `esper-bulk mock`, whose default seed is the same.

use esper_bulk::base::Hint;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use esper_bulk::esper::adapter::EsperPaths;
use esper_bulk::job::shape::{self, Shape, Ty};
use esper_bulk::job::{self, Host, Job, KeySource};
use esper_bulk::mock::MockServer;
use esper_bulk::plan::{self, ItemKind, Operation, Paths, Plan, Server, TaskId};
use serde_json::Value;

use crate::support;

/// The seed of `esper-bulk mock` (its `--seed` default).
const SEED: u64 = 1;
/// Lab's group id in a mock seeded with [`SEED`] (the README uses it).
const LAB_ID: &str = "bccfde54-0d0e-4daa-81aa-2a802d98350f";
const REF_START: &str = "<!-- language-reference:start -->";
const REF_END: &str = "<!-- language-reference:end -->";
const MODELINE: &str = "# yaml-language-server: $schema=job.schema.json";

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn jobs_dir() -> PathBuf {
    root().join("jobs")
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

/// Every `jobs/*.yaml`, sorted by name.
fn job_files() -> Vec<(String, String)> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(jobs_dir())
        .expect("jobs/ exists")
        .map(|e| e.expect("a directory entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    files.sort();
    files
        .iter()
        .map(|p| {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            (name, read(p))
        })
        .collect()
}

/// The environment a job sees: the mock's connection, as `esper-bulk mock` prints it.
fn env_of(server: &MockServer) -> BTreeMap<&'static str, String> {
    BTreeMap::from([
        ("ESPER_API_KEY", server.api_key().to_string()),
        ("ESPER_ENTERPRISE_ID", server.enterprise_id().to_string()),
        ("ESPER_BASE_URL", server.base_url()),
        ("ESPER_TENANT", "acme".to_string()),
        (
            "CREDENTIALS_DIRECTORY",
            "/run/credentials/esper-bulk.service".to_string(),
        ),
        // The README's `notify:` example; webhooks are only called when a job runs.
        (
            "SLACK_WEBHOOK_URL",
            "https://hooks.slack.invalid/services/T0/B0/x".to_string(),
        ),
        (
            "OPS_WEBHOOK_URL",
            "https://ops.invalid/hooks/esper".to_string(),
        ),
        // The README's `coordinator:` example; examples are only planned, never run.
        ("ESPER_BULK_REDIS_URL", "redis://127.0.0.1:1/0".to_string()),
    ])
}

/// Loads a job as the CLI does: files relative to `jobs/`, then paths made absolute.
fn load(file: &str, text: &str, env: &BTreeMap<&'static str, String>) -> (Job, Vec<String>) {
    let env_fn = |n: &str| env.get(n).cloned();
    let read_fn =
        |p: &str| std::fs::read_to_string(jobs_dir().join(p)).map_err(job::ReadError::from);
    let host = Host {
        env: &env_fn,
        read: &read_fn,
    };
    match job::load(file, text, &host) {
        Ok((mut job, warnings)) => {
            job.resolve_paths(&jobs_dir());
            (job, warnings.iter().map(|w| w.to_string()).collect())
        }
        Err(d) => panic!("{file} does not validate:\n{}", d.render(text)),
    }
}

/// Resolves and compiles against the mock; returns the plan and the planner's warnings.
async fn plan_on(server: &MockServer, file: &str, job: &Job) -> (Plan, Vec<String>) {
    let client = support::client(server);
    let resolved = plan::resolve(job, &client)
        .await
        .unwrap_or_else(|e| panic!("{file}: targets do not resolve: {e} ({:?})", e.hint()));
    let server_info = Server {
        base_url: server.base_url(),
        enterprise_id: server.enterprise_id().to_string(),
    };
    let plan = plan::compile(job, &resolved, server_info)
        .unwrap_or_else(|e| panic!("{file}: plan does not compile: {e}"));
    plan::verify(&plan, Some(&plan::integrity(&plan)))
        .unwrap_or_else(|f| panic!("{file}: the compiled plan fails the plan-file checks: {f}"));
    (plan, resolved.warnings)
}

fn mock_config() -> esper_bulk::mock::MockConfig {
    support::small(SEED)
}

/// Every task of a step, materialized.
fn tasks_of(plan: &Plan, step: &str) -> Vec<esper_bulk::plan::Task> {
    let s = plan
        .steps
        .iter()
        .find(|s| s.id == step)
        .unwrap_or_else(|| panic!("plan of `{}` has no step `{step}`", plan.job));
    s.tasks()
        .map(|t| plan.task(t).expect("task exists"))
        .collect()
}

fn step_kinds(plan: &Plan) -> Vec<(String, String)> {
    plan.steps
        .iter()
        .map(|s| (s.id.clone(), s.kind.clone()))
        .collect()
}

fn body(t: &esper_bulk::plan::Task) -> &Value {
    match &t.op {
        Operation::Command { body, .. } | Operation::AlarmRule { body, .. } => body,
        other => panic!("task {} is not a command or alarm rule: {other:?}", t.id),
    }
}

/// Checks that hold for every plan: something to do, every step has tasks, every task
/// materializes, and the plan file round-trips.
fn assert_sane(file: &str, plan: &Plan, key: &str) {
    assert!(plan.task_count > 0, "{file}: the plan has no tasks");
    for s in &plan.steps {
        assert!(s.task_count > 0, "{file}: step `{}` has no tasks", s.id);
    }
    for id in plan.task_ids() {
        assert!(
            plan.task(id).is_some(),
            "{file}: task {id} does not materialize"
        );
    }
    assert!(plan.task(TaskId(plan.task_count)).is_none());
    let json = serde_json::to_string(plan).expect("the plan serializes");
    let back: Plan = serde_json::from_str(&json).expect("the plan file reads back");
    assert_eq!(&back, plan, "{file}: the plan does not round-trip");
    assert!(!json.contains(key), "{file}: the plan contains the API key");
}

// ------------------------------------------------------------------ jobs/

#[test]
fn the_required_jobs_exist_with_their_files() {
    let names: BTreeSet<String> = job_files().into_iter().map(|(n, _)| n).collect();
    for required in [
        "demo.yaml",
        "nightly-app-update.yaml",
        "alarm-rules-all-groups.yaml",
        "fleet-migration.yaml",
        "reboot-in-window.yaml",
        "content-push.yaml",
        "request-escape-hatch.yaml",
    ] {
        assert!(names.contains(required), "jobs/{required} is missing");
    }
    let apk = read(&jobs_dir().join("builds/kiosk-4.2.0.apk"));
    let info = esper_bulk::apk::read(apk.as_bytes()).expect("the mock APK parses");
    assert_eq!(
        (info.package.as_str(), info.version_code.as_str()),
        ("com.acme.kiosk", "420")
    );
    assert!(jobs_dir().join("content/menu-board-2026w48.pdf").is_file());
}

#[test]
fn every_job_file_validates_and_takes_the_server_from_the_environment() {
    // Values nobody would write in a job: a job that hard-codes its server cannot show them.
    let env = BTreeMap::from([
        ("ESPER_API_KEY", "k".to_string()),
        ("ESPER_ENTERPRISE_ID", "env-enterprise".to_string()),
        ("ESPER_BASE_URL", "http://env.invalid/api".to_string()),
    ]);
    let files = job_files();
    assert!(
        files.len() >= 7,
        "at least seven jobs, found {}",
        files.len()
    );
    for (file, text) in files {
        assert_eq!(
            text.lines().next(),
            Some(MODELINE),
            "jobs/{file}: the first line must be the yaml-language-server modeline"
        );
        let (job, warnings) = load(&file, &text, &env);
        assert!(
            warnings.is_empty(),
            "jobs/{file} has warnings: {warnings:?}"
        );
        assert_eq!(
            job.esper.api_key,
            Some(KeySource::Env("ESPER_API_KEY".into())),
            "jobs/{file}: use `api_key: ${{ESPER_API_KEY}}`"
        );
        assert!(
            job.esper
                .base_url
                .as_ref()
                .is_none_or(|u| u == "http://env.invalid/api"),
            "jobs/{file} names its server; take it from ESPER_TENANT/ESPER_BASE_URL"
        );
        assert!(
            job.esper
                .enterprise_id
                .as_ref()
                .is_none_or(|e| e == "env-enterprise"),
            "jobs/{file} names its enterprise; take it from ESPER_ENTERPRISE_ID"
        );
        assert!(
            text.lines().filter(|l| l.contains('#')).count() >= 10,
            "jobs/{file} should explain itself in comments"
        );
        let lower = text.to_lowercase();
        for needle in ["esper-bulk plan", "esper-bulk run", "re-run"] {
            assert!(
                file == "demo.yaml" || lower.contains(needle),
                "jobs/{file}: the comments should say how to plan, run and re-run it (`{needle}`)"
            );
        }
        for step in &job.steps {
            if let job::StepOp::AppUpload { file: f, .. } | job::StepOp::ContentUpload { file: f } =
                &step.op
            {
                assert!(Path::new(f).is_file(), "jobs/{file}: {f} does not exist");
            }
        }
    }
}

#[tokio::test]
async fn every_job_file_plans_against_the_mock() {
    let server = support::start(mock_config()).await;
    let env = env_of(&server);
    let snap = server.snapshot();
    let leaf_stores = snap
        .groups
        .iter()
        .filter(|g| g.path.matches('/').count() == 3 && g.path.starts_with("All devices/Stores/"))
        .count();
    assert_eq!(leaf_stores, 6, "support::small has six store groups");
    let s = |v: &[(&str, &str)]| -> Vec<(String, String)> {
        v.iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    };
    let mut seen = Vec::new();
    for (file, text) in job_files() {
        let (job, _) = load(&file, &text, &env);
        let (plan, warnings) = plan_on(&server, &file, &job).await;
        assert_sane(&file, &plan, server.api_key());
        seen.push(file.clone());
        match file.as_str() {
            "demo.yaml" => {
                assert_eq!(
                    step_kinds(&plan),
                    s(&[
                        ("update-kiosk", "app_install"),
                        ("battery-alarm", "alarm_rule")
                    ])
                );
                assert_eq!(plan.task_count, 12);
            }
            "nightly-app-update.yaml" => {
                assert_eq!(
                    step_kinds(&plan),
                    s(&[("upload", "app_upload"), ("install", "app_install")])
                );
                let upload = tasks_of(&plan, "upload");
                assert!(
                    matches!(&upload[..], [t] if matches!(&t.op, Operation::AppUpload { file, .. } if file.ends_with("jobs/builds/kiosk-4.2.0.apk")))
                );
                let install = tasks_of(&plan, "install");
                assert_eq!(install.len(), leaf_stores, "one INSTALL per store group");
                for t in &install {
                    let b = body(t);
                    assert_eq!(b["command"], "INSTALL");
                    assert_eq!(b["command_type"], "GROUP");
                    assert_eq!(
                        b["command_args"]["app_version"], "${{ steps.upload.version_id }}",
                        "the version id comes from the upload at run time"
                    );
                    assert!(matches!(
                        &t.op,
                        Operation::Command {
                            wait_ms: Some(_),
                            ..
                        }
                    ));
                }
                let rollout = plan.steps[1].rollout.as_ref().expect("a canary rollout");
                assert_eq!(rollout.stage_ends.first(), Some(&1), "one store first");
                assert_eq!(rollout.stage_ends.last(), Some(&(leaf_stores as u32)));
                assert!(plan.deadline_ms.is_some(), "a nightly job has a deadline");
            }
            "alarm-rules-all-groups.yaml" => {
                assert_eq!(step_kinds(&plan), s(&[("battery-alarm", "alarm_rule")]));
                let tasks = tasks_of(&plan, "battery-alarm");
                assert_eq!(
                    tasks.len(),
                    leaf_stores,
                    "one rule per store group, no regions"
                );
                let names: BTreeSet<String> = tasks
                    .iter()
                    .map(|t| match &t.op {
                        Operation::AlarmRule {
                            name, on_exists, ..
                        } => {
                            assert_eq!(*on_exists, job::OnExists::Update);
                            name.clone()
                        }
                        other => panic!("{other:?}"),
                    })
                    .collect();
                assert_eq!(names.len(), tasks.len(), "rule names are unique");
                assert!(
                    names.contains("Battery low - Stores/North/0001"),
                    "{names:?}"
                );
                for t in &tasks {
                    let b = body(t);
                    assert_eq!(b["conditions"]["value"], 15, "vars keep their number type");
                    assert_eq!(b["realert_interval"], 3600);
                    assert_eq!(b["groups"][0], t.item.as_ref().unwrap().id.as_str());
                    assert_eq!(b["enterprise"], server.enterprise_id());
                }
            }
            "fleet-migration.yaml" => {
                assert_eq!(
                    step_kinds(&plan),
                    s(&[("move", "group_move"), ("ping", "command")])
                );
                assert!(
                    warnings.iter().any(|w| w.contains("R58M00000000")),
                    "the unknown serial is a warning: {warnings:?}"
                );
                let csv = read(&jobs_dir().join("migration-serials.csv"));
                let listed = job::csv_column(&csv, "serial").unwrap();
                let moving = &plan.targets["moving"];
                assert_eq!(moving.kind, ItemKind::Device);
                let serials: Vec<&str> = moving
                    .items
                    .iter()
                    .map(|d| d.detail.as_deref().unwrap())
                    .collect();
                assert_eq!(serials, listed[..4], "the enrolled serials, in CSV order");
                let warehouse = snap
                    .groups
                    .iter()
                    .find(|g| g.path == "All devices/Warehouse")
                    .unwrap();
                match &tasks_of(&plan, "move")[..] {
                    [t] => match &t.op {
                        Operation::GroupMove {
                            group_id,
                            device_ids,
                        } => {
                            assert_eq!(group_id, &warehouse.id);
                            assert_eq!(device_ids.len(), 4);
                        }
                        other => panic!("{other:?}"),
                    },
                    other => panic!("one move request, got {other:?}"),
                }
                let ping = tasks_of(&plan, "ping");
                assert_eq!(body(&ping[0])["command_type"], "DEVICE");
                assert_eq!(body(&ping[0])["devices"].as_array().unwrap().len(), 4);
            }
            "reboot-in-window.yaml" => {
                assert_eq!(step_kinds(&plan), s(&[("reboot", "command")]));
                let tasks = tasks_of(&plan, "reboot");
                assert_eq!(tasks.len(), leaf_stores - 1, "every store but 0001");
                for t in &tasks {
                    let b = body(t);
                    assert_eq!(b["command"], "REBOOT");
                    assert_eq!(b["schedule"], "WINDOW");
                    assert_eq!(b["schedule_args"]["time_type"], "device");
                    assert_eq!(
                        b["schedule_args"]["start_datetime"], "2026-01-01T00:00:00Z",
                        "vars are rendered into schedule_args"
                    );
                    assert!(b["schedule_args"].get("type").is_none());
                    assert!(
                        !t.item.as_ref().unwrap().label().ends_with("/0001"),
                        "0001 is excluded"
                    );
                }
            }
            "content-push.yaml" => {
                assert_eq!(
                    step_kinds(&plan),
                    s(&[("upload", "content_upload"), ("push", "command")])
                );
                let push = tasks_of(&plan, "push");
                assert_eq!(push.len(), leaf_stores);
                assert_eq!(body(&push[0])["command"], "SYNC_CONTENT");
                assert_eq!(
                    body(&push[0])["command_args"]["content_id"],
                    "${{ steps.upload.content_id }}"
                );
                assert!(plan.steps[1].rollout.is_some());
            }
            "request-escape-hatch.yaml" => {
                assert_eq!(
                    step_kinds(&plan),
                    s(&[("find-rule", "request"), ("switch-off", "request")])
                );
                let eid = server.enterprise_id();
                let find = tasks_of(&plan, "find-rule");
                assert!(find[0].op.writes().is_empty(), "a GET is not a write");
                let patch = tasks_of(&plan, "switch-off");
                let writes = patch[0].op.writes();
                assert_eq!(writes.len(), 1);
                let line = EsperPaths.write(&writes[0], eid);
                assert!(line.starts_with("PATCH "), "{line}");
                assert!(line.contains("${{ steps.find-rule.body.results.0.id }}"));
                assert!(line.contains(eid), "{{enterprise_id}} is filled in");
                assert_eq!(writes[0].body, serde_json::json!({"is_active": false}));
            }
            other => {
                // A new job: the generic checks above apply; add specific ones here.
                eprintln!("jobs/{other}: no job-specific assertions yet");
            }
        }
    }
    assert!(seen.len() >= 7);
}

/// The alarm job, the escape hatch on the rule it made, and the alarm job again: no
/// duplicates, and the PATCH found its rule through the GET's body.
/// Plan files from before endpoints keyed the estimate by `METHOD path-template`: they still
/// read, print their requests as they did, and serialize (and so hash) byte for byte.
#[test]
fn plan_files_from_before_endpoints_read_print_and_hash_unchanged() {
    let path = root().join("tests/fixtures/journal/plan.json");
    let text = read(&path);
    let plan: Plan = serde_json::from_str(&text).unwrap();
    let written: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(serde_json::to_value(&plan).unwrap(), written);
    let keys: Vec<String> = plan.estimate.requests.keys().map(|e| e.key()).collect();
    let old_keys: Vec<String> = written["estimate"]["requests"]
        .as_object()
        .unwrap()
        .keys()
        .cloned()
        .collect();
    assert_eq!(keys, old_keys, "keys write back in their order");
    let shown = plan::plan_text(&plan, false, &EsperPaths);
    for key in &old_keys {
        assert!(shown.contains(&format!("  {key}\n")), "{key} in:\n{shown}");
    }
    // A plan compiled today names the same requests by endpoint and prints them the same.
    let fresh: Vec<String> = [
        plan::Endpoint::ListAlarmRules,
        plan::Endpoint::CreateCommand,
        plan::Endpoint::CreateAlarmRule,
    ]
    .iter()
    .map(|e| EsperPaths.template(e))
    .collect();
    assert_eq!(fresh, old_keys);
}

#[tokio::test]
async fn alarm_rules_then_the_escape_hatch_run_end_to_end() {
    let server = support::start(mock_config()).await;
    let alarms = read(&jobs_dir().join("alarm-rules-all-groups.yaml"));
    let hatch = read(&jobs_dir().join("request-escape-hatch.yaml"));

    let (_, report) = support::run_job(&server, &alarms).await;
    assert_eq!(report.run.exit_code, 0, "{}", report.summary_text());
    assert_eq!(server.snapshot().alarm_rules.len(), 6);

    let (_, report) = support::run_job(&server, &hatch).await;
    assert_eq!(report.run.exit_code, 0, "{}", report.summary_text());
    let rules = server.snapshot().alarm_rules;
    let paused: Vec<&str> = rules
        .iter()
        .filter(|r| !r.is_active)
        .map(|r| r.name.as_str())
        .collect();
    assert_eq!(paused, ["Battery low - Stores/North/0001"]);

    let (_, report) = support::run_job(&server, &alarms).await;
    assert_eq!(report.run.exit_code, 0, "{}", report.summary_text());
    assert_eq!(
        server.snapshot().alarm_rules.len(),
        6,
        "a re-run creates no rules"
    );
    assert_eq!(server.stats().duplicates.alarm_rules, 0);
}

/// The nightly update end to end: upload, then a canary install of that version; a second
/// run reuses the uploaded version.
#[tokio::test]
async fn nightly_app_update_runs_end_to_end() {
    let server = support::start(mock_config()).await;
    // `run_job` reads no files relative to the job, so point the upload at the APK.
    let text = read(&jobs_dir().join("nightly-app-update.yaml")).replace(
        "file: builds/",
        &format!("file: {}/builds/", jobs_dir().display()),
    );
    let (plan, report) = support::run_job(&server, &text).await;
    assert_eq!(report.run.exit_code, 0, "{}", report.summary_text());
    assert_eq!(report.summary.succeeded, u64::from(plan.task_count));
    let version = server
        .snapshot()
        .apps
        .iter()
        .find(|a| a.package_name == "com.acme.kiosk")
        .and_then(|a| a.versions.iter().find(|v| v.version_code == "420"))
        .map(|v| v.id.clone())
        .expect("4.2.0 was uploaded");
    let installs: Vec<_> = server
        .snapshot()
        .commands
        .into_iter()
        .filter(|c| c.command == "INSTALL")
        .collect();
    assert_eq!(installs.len(), 6, "one INSTALL per store group");
    assert!(
        installs
            .iter()
            .all(|c| c.command_args["app_version"] == version.as_str())
    );
}

// ------------------------------------------------------------------ schema

#[test]
fn the_schema_file_is_current() {
    let want = serde_json::to_string_pretty(&shape::json_schema()).unwrap();
    let path = jobs_dir().join("job.schema.json");
    let have = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        have.trim_end() == want.trim_end(),
        "jobs/job.schema.json is stale or missing; regenerate it with\n    cargo run -- schema > jobs/job.schema.json"
    );
}

/// The JSON Schema's duration pattern and the checker's duration parser accept the same
/// strings: the schema is built from the same unit table, and this runs both on a list of
/// forms people write. The pattern cannot count, so it also takes well-formed durations
/// over the 30-day cap, which the checker refuses with "must be at most 30 days".
#[test]
fn the_schema_and_the_checker_agree_on_durations() {
    use regex_automata::Input;
    use regex_automata::dfa::{Automaton, dense};

    let schema = shape::json_schema();
    let pattern = schema["properties"]["deadline"]["anyOf"]
        .as_array()
        .and_then(|alts| alts.iter().find_map(|a| a["pattern"].as_str()))
        .expect("the deadline's schema has a string pattern");
    assert_eq!(pattern, job::duration_pattern());
    // Every duration key carries the same pattern (realert_interval also takes templates).
    let text = serde_json::to_string(&schema).unwrap();
    let quoted = serde_json::to_string(pattern).unwrap();
    assert!(
        text.matches(&quoted).count() >= 6,
        "deadline, retry (3), wait, realert_interval"
    );
    let dfa = dense::DFA::new(pattern).expect("the pattern compiles");
    let schema_accepts = |s: &str| dfa.try_search_fwd(&Input::new(s)).unwrap().is_some();
    let forms = [
        "0",
        "90",
        "500ms",
        "30s",
        "50m",
        "1h 30m",
        "1h30m",
        "10 minutes",
        "3 minutes",
        "1 minute",
        "2 days",
        "1 day",
        "2 hours 5 mins",
        "1hr",
        "5 hrs",
        "5 sec",
        "5secs",
        "10 seconds",
        "1 millisecond",
        "250 milliseconds",
        "5  m",
        "1h  30m",
        "30d",
        "720h",
        "31d",
        "99999999999999999999999999s",
        "",
        " 5m",
        "5m ",
        "5M",
        "5 Minutes",
        "1.5h",
        "m",
        "h1",
        "5m,3s",
        "10 minuets",
        "1h 30",
        "ten minutes",
        "-5s",
        "5ms5",
        "1w",
        "1y",
        "1 month",
        "PT5M",
        "5msec",
        "1h\t30m",
        "1_000s",
    ];
    for s in forms {
        let checker = job::parse_duration_str(s);
        if checker == Err(job::DurationError::TooLong) {
            assert!(schema_accepts(s), "{s:?} is well formed, only too long");
            continue;
        }
        assert_eq!(
            checker.is_ok(),
            schema_accepts(s),
            "{s:?}: the checker says {checker:?}, the schema {}",
            schema_accepts(s)
        );
    }
    // Both sides of the list are exercised.
    assert!(
        forms
            .iter()
            .filter(|s| job::parse_duration_str(s).is_ok())
            .count()
            >= 20
    );
    assert!(forms.iter().filter(|s| !schema_accepts(s)).count() >= 15);
}

// ------------------------------------------------------------------ README

/// The README's `yaml` code blocks, with whether each is inside the language reference.
fn readme_blocks() -> Vec<(usize, bool, String)> {
    let text = read(&root().join("README.md"));
    let start = text
        .find(REF_START)
        .expect("the README has the reference start marker");
    let end = text
        .find(REF_END)
        .expect("the README has the reference end marker");
    assert!(start < end);
    let mut out = Vec::new();
    let mut offset = 0;
    let mut lines = text.split_inclusive('\n').enumerate();
    while let Some((n, line)) = lines.next() {
        let at = offset;
        offset += line.len();
        if line.trim_end() != "```yaml" {
            continue;
        }
        let mut block = String::new();
        for (_, l) in lines.by_ref() {
            offset += l.len();
            if l.trim_end() == "```" {
                break;
            }
            block.push_str(l);
        }
        out.push((n + 1, (start..end).contains(&at), block));
    }
    out
}

#[tokio::test]
async fn every_readme_example_validates_and_plans() {
    let blocks = readme_blocks();
    assert!(
        blocks.iter().filter(|(_, inside, _)| *inside).count() >= 20,
        "the reference should have an example for every key, target and operation"
    );
    let server = support::start(mock_config()).await;
    let env = env_of(&server);
    let mut names = BTreeSet::new();
    for (line, _, text) in &blocks {
        let file = format!("README.md:{line}");
        let (job, _) = load(&file, text, &env);
        assert!(
            names.insert(job.name.clone()),
            "{file}: job name `{}` is used twice",
            job.name
        );
        assert_eq!(
            job.esper.api_key,
            Some(KeySource::Env("ESPER_API_KEY".into())),
            "{file}: examples use `api_key: ${{ESPER_API_KEY}}`"
        );
        let (plan, _) = plan_on(&server, &file, &job).await;
        assert_sane(&file, &plan, server.api_key());
    }
    // Spot checks that the examples plan what the prose says.
    let plan_of = |name: &str| {
        let (line, _, text) = blocks
            .iter()
            .find(|(_, _, t)| t.contains(&format!("name: {name}\n")))
            .unwrap_or_else(|| panic!("no README example named {name}"));
        (format!("README.md:{line}"), text.clone())
    };
    let (file, text) = plan_of("groups-by-id-or-all");
    let (plan, _) = plan_on(&server, &file, &load(&file, &text, &env).0).await;
    assert_eq!(
        plan.targets["lab-by-id"].items[0].id, LAB_ID,
        "README ids are seed {SEED}'s"
    );
    let labels: Vec<&str> = plan.targets["everything-but-stores"]
        .items
        .iter()
        .map(|i| i.label())
        .collect();
    assert_eq!(labels, ["Lab", "Warehouse"]);
    let (file, text) = plan_of("groups-by-glob");
    let (plan, _) = plan_on(&server, &file, &load(&file, &text, &env).0).await;
    assert_eq!(plan.targets["stores"].items.len(), 6);
    assert_eq!(
        plan.targets["below-stores"].items.len(),
        4 + 6 - 2,
        "regions + stores - 2"
    );
    let (file, text) = plan_of("union");
    let (plan, _) = plan_on(&server, &file, &load(&file, &text, &env).0).await;
    assert_eq!(plan.targets["back-office"].items.len(), 2);
    let (file, text) = plan_of("needs-per-item");
    let (plan, _) = plan_on(&server, &file, &load(&file, &text, &env).0).await;
    let per_item: Vec<bool> = plan.steps[1..]
        .iter()
        .map(|s| s.resolved_needs[0].per_item)
        .collect();
    assert_eq!(
        per_item,
        [true, false],
        "the alarm needs the install per store; `needs_all` makes the reboot wait for all"
    );
    let text = plan::plan_text(&plan, false, &EsperPaths);
    assert!(
        text.contains("after install per item)") && text.contains("after install)\n"),
        "{text}"
    );
    let (file, text) = plan_of("vars");
    let (plan, _) = plan_on(&server, &file, &load(&file, &text, &env).0).await;
    assert_eq!(
        body(&plan.task(TaskId(0)).unwrap())["command_args"]["state"],
        "LOCKED",
        "a whole-string reference to a map sends the map"
    );
}

/// Every key of the language appears in some README example, and the prose names every
/// operation and template variable, so the reference cannot silently fall behind
/// `src/job/shape.rs`.
#[test]
fn the_reference_covers_the_whole_language() {
    fn all_keys(s: &'static Shape, out: &mut BTreeSet<String>, seen: &mut BTreeSet<&'static str>) {
        if !seen.insert(s.name) {
            return;
        }
        for f in s.fields {
            out.insert(format!("{}.{}", s.name, f.name));
            walk_ty(&f.ty, out, seen);
        }
    }
    fn walk_ty(t: &Ty, out: &mut BTreeSet<String>, seen: &mut BTreeSet<&'static str>) {
        match t {
            Ty::Obj(s) => all_keys(s, out, seen),
            Ty::MapOf(inner) | Ty::ListOf(inner) => walk_ty(inner, out, seen),
            _ => {}
        }
    }
    fn used(v: &serde_yaml::Value, t: &Ty, out: &mut BTreeSet<String>) {
        match (t, v) {
            (Ty::Obj(s), serde_yaml::Value::Mapping(m)) => {
                for (k, v) in m {
                    let Some(k) = k.as_str() else { continue };
                    if let Some(f) = s.field(k) {
                        out.insert(format!("{}.{}", s.name, f.name));
                        used(v, &f.ty, out);
                    }
                }
            }
            (Ty::MapOf(inner), serde_yaml::Value::Mapping(m)) => {
                m.values().for_each(|v| used(v, inner, out))
            }
            (Ty::ListOf(inner), serde_yaml::Value::Sequence(items)) => {
                items.iter().for_each(|v| used(v, inner, out))
            }
            _ => {}
        }
    }
    let mut keys = BTreeSet::new();
    all_keys(&shape::JOB, &mut keys, &mut BTreeSet::new());
    let mut in_examples = BTreeSet::new();
    let blocks = readme_blocks();
    for (_, _, text) in &blocks {
        let v: serde_yaml::Value = serde_yaml::from_str(text).expect("README yaml parses");
        used(&v, &Ty::Obj(&shape::JOB), &mut in_examples);
    }
    // A block with `api_key_file` could not also use `api_key: ${ESPER_API_KEY}`; the
    // prose and the table show it instead.
    let exempt = ["esper.api_key_file"];
    let missing: Vec<&String> = keys
        .iter()
        .filter(|k| !in_examples.contains(*k) && !exempt.contains(&k.as_str()))
        .collect();
    assert!(
        missing.is_empty(),
        "keys without a README example (add one between the language-reference markers): {missing:?}"
    );

    let text = read(&root().join("README.md"));
    let reference = &text[text.find(REF_START).unwrap()..text.find(REF_END).unwrap()];
    for k in &keys {
        let name = k.rsplit('.').next().unwrap();
        assert!(
            mentions(reference, name),
            "the reference does not mention `{name}` ({k})"
        );
    }
    for op in shape::OPERATIONS {
        assert!(
            reference.contains(&format!("**`{op}`**")),
            "the reference has no section for {op}"
        );
    }
    let examples: String = blocks.iter().map(|(_, _, t)| t.as_str()).collect();
    for var in [
        "vars.",
        "item.id",
        "item.name",
        "item.path",
        "item.serial",
        "target.name",
        "target.count",
        "steps.upload.version_id",
        "steps.upload.application_id",
        "steps.upload.package",
        "steps.upload.version_code",
        "steps.upload.content_id",
        ".rule_id",
        ".status",
        ".body.",
    ] {
        assert!(
            examples.contains(var),
            "no README example uses the template `{var}`"
        );
    }
}

/// Whether `word` occurs in `text` as a whole word (not inside a longer identifier).
fn mentions(text: &str, word: &str) -> bool {
    let ident = |c: char| c.is_ascii_alphanumeric() || c == '_';
    text.match_indices(word).any(|(at, _)| {
        !text[..at].chars().next_back().is_some_and(ident)
            && !text[at + word.len()..].chars().next().is_some_and(ident)
    })
}
