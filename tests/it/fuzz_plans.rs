//! Property test of saved plan files (issue #11): a valid plan written the way `plan --out`
//! writes it, against the mock, mutated 320 deterministic ways (seeded: numbers changed,
//! keys deleted, types swapped, task counts edited, arrays emptied or duplicated, steps
//! reordered, text truncated or a byte flipped), each loaded and run through the entry the
//! CLI uses (`run::read_plan`, then `run::run`), some through the binary, and some as a run
//! directory's `plan.json` resumed with `run::run`.
//!
//! Properties: nothing panics or hangs (every case has a time bound); every refusal is
//! exit 2 and sends nothing (the mock's request counter is unchanged); a plan that keeps
//! its integrity hash is accepted only if it is the reviewed plan, unchanged. A quarter of
//! the cases have the hash removed (a plan from before hashes) so the structural checks
//! alone must stop them; those that pass run to the end without panicking.

use std::path::Path;
use std::time::Duration;

use esper_bulk::esper::ApiKey;
use esper_bulk::mock::MockServer;
use esper_bulk::plan::{Plan, integrity};
use esper_bulk::run::{self, ConnectionSettings, Notices, PlanConfig, RunError, Source};
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use crate::support::{esper_bulk as bin, job_header, load, run_config, small, start};

const CASES: u64 = 320;
/// Accepted plans without a hash that are run to the end (the rest are only loaded).
const RUNS: usize = 20;

/// Alarm rules per group, then a reboot in chunks with a rollout, then a request per group.
fn job(server: &MockServer) -> String {
    format!(
        "{}targets:\n  s: {{ groups: {{ name: \"Stores/*/*\" }} }}\nsteps:\n  - id: alarm\n    for_each: s\n    alarm_rule: {{ name: \"r ${{{{ item.name }}}}\", metric: m, conditions: {{ comparator: Frequency, value: 1, unit: Count }}, realert_interval: 60 }}\n  - id: reboot\n    needs: [alarm]\n    command: {{ to: s, name: REBOOT }}\n    rollout: {{ stages: [1, 50%, 100%], max_failures: 1 }}\n  - id: look\n    needs: [alarm]\n    for_each: s\n    request: {{ method: GET, path: \"/v1/enterprise/{{enterprise_id}}/alarmrules/\" }}\n",
        job_header(server, "200/s")
    )
}

/// Every path in the document, as JSON pointer segments.
fn paths(v: &Value, at: &mut Vec<String>, out: &mut Vec<Vec<String>>) {
    out.push(at.clone());
    match v {
        Value::Object(m) => {
            for (k, x) in m {
                at.push(k.clone());
                paths(x, at, out);
                at.pop();
            }
        }
        Value::Array(a) => {
            for (i, x) in a.iter().enumerate() {
                at.push(i.to_string());
                paths(x, at, out);
                at.pop();
            }
        }
        _ => {}
    }
}

fn pointer(p: &[String]) -> String {
    p.iter().map(|s| format!("/{s}")).collect()
}

/// One mutation of `v` (or of its text); returns the file's text and what was done.
fn mutate(rng: &mut fastrand::Rng, v: &Value) -> (String, String) {
    let mut v = v.clone();
    let mut all = Vec::new();
    paths(&v, &mut Vec::new(), &mut all);
    let numbers: Vec<&Vec<String>> = all
        .iter()
        .filter(|p| v.pointer(&pointer(p)).is_some_and(Value::is_number))
        .collect();
    let pick =
        |rng: &mut fastrand::Rng, from: &[Vec<String>]| from[rng.usize(..from.len())].clone();
    let odd = |rng: &mut fastrand::Rng| -> Value {
        let choices: [Value; 10] = [
            0.into(),
            (-1).into(),
            1.into(),
            2.into(),
            u32::MAX.into(),
            (u64::from(u32::MAX) + 1).into(),
            1e300.into(),
            0.5.into(),
            (-0.0).into(),
            i64::MIN.into(),
        ];
        choices[rng.usize(..choices.len())].clone()
    };
    let what = match rng.u8(..10) {
        0 if !numbers.is_empty() => {
            let p = numbers[rng.usize(..numbers.len())].clone();
            let new = odd(rng);
            *v.pointer_mut(&pointer(&p)).unwrap() = new.clone();
            format!("{} = {new}", pointer(&p))
        }
        1 => {
            let p = pick(rng, &all[1..]);
            let (parent, last) = p.split_at(p.len() - 1);
            match v.pointer_mut(&pointer(parent)).unwrap() {
                Value::Object(m) => {
                    m.remove(&last[0]);
                }
                Value::Array(a) => {
                    a.remove(last[0].parse::<usize>().unwrap());
                }
                _ => {}
            }
            format!("delete {}", pointer(&p))
        }
        2 => {
            let p = pick(rng, &all[1..]);
            let new = [
                Value::String("x".into()),
                Value::Null,
                Value::Array(vec![]),
                serde_json::json!({}),
                Value::Bool(true),
                0.into(),
            ][rng.usize(..6)]
            .clone();
            *v.pointer_mut(&pointer(&p)).unwrap() = new.clone();
            format!("{} = {new}", pointer(&p))
        }
        3 => {
            let text = serde_json::to_string_pretty(&v).unwrap();
            let at = rng.usize(..text.len());
            return (text[..at].to_string(), format!("truncated at byte {at}"));
        }
        4 => {
            let steps = v["steps"].as_array().map_or(0, Vec::len).max(1);
            let field = match rng.u8(..3) {
                0 => "/task_count".to_string(),
                1 => format!("/steps/{}/task_count", rng.usize(..steps)),
                _ => format!("/steps/{}/first_task", rng.usize(..steps)),
            };
            let delta = [-2i64, -1, 1, 2, 1000][rng.usize(..5)];
            if let Some(n) = v.pointer_mut(&field) {
                *n = (n.as_i64().unwrap_or(0) + delta).into();
            }
            format!("{field} += {delta}")
        }
        5 => {
            let arrays: Vec<Vec<String>> = all
                .iter()
                .filter(|p| v.pointer(&pointer(p)).is_some_and(Value::is_array))
                .cloned()
                .collect();
            let p = pick(rng, &arrays);
            *v.pointer_mut(&pointer(&p)).unwrap() = Value::Array(vec![]);
            format!("{} = []", pointer(&p))
        }
        6 => {
            let arrays: Vec<Vec<String>> = all
                .iter()
                .filter(|p| {
                    v.pointer(&pointer(p))
                        .and_then(Value::as_array)
                        .is_some_and(|a| !a.is_empty())
                })
                .cloned()
                .collect();
            let p = pick(rng, &arrays);
            let a = v.pointer_mut(&pointer(&p)).unwrap().as_array_mut().unwrap();
            let dup = a[rng.usize(..a.len())].clone();
            a.push(dup);
            format!("{} gets a duplicate", pointer(&p))
        }
        7 => {
            let mut bytes = serde_json::to_string_pretty(&v).unwrap().into_bytes();
            let at = rng.usize(..bytes.len());
            let b = rng.u8(..);
            bytes[at] = b;
            return (
                String::from_utf8_lossy(&bytes).into_owned(),
                format!("byte {at} = {b:#04x}"),
            );
        }
        8 => {
            if let Some(steps) = v["steps"].as_array_mut() {
                steps.swap(0, 1);
            }
            "steps 0 and 1 swapped".to_string()
        }
        _ => {
            let strings: Vec<Vec<String>> = all
                .iter()
                .filter(|p| v.pointer(&pointer(p)).is_some_and(Value::is_string))
                .cloned()
                .collect();
            let p = pick(rng, &strings);
            let s = v.pointer_mut(&pointer(&p)).unwrap();
            *s = Value::String(format!("{}x", s.as_str().unwrap()));
            format!("{} gets an x", pointer(&p))
        }
    };
    (serde_json::to_string_pretty(&v).unwrap(), what)
}

async fn read(path: &Path) -> Result<Plan, RunError> {
    let path = path.to_path_buf();
    let read = tokio::task::spawn_blocking(move || run::read_plan(&path, &Notices::none()));
    match tokio::time::timeout(Duration::from_secs(10), read).await {
        Ok(Ok(r)) => r,
        Ok(Err(panic)) => panic!("read_plan panicked: {panic}"),
        Err(_) => panic!("read_plan hung"),
    }
}

/// Runs `source` to its end in process, bounded, and says how it went.
async fn run_bounded(
    server: &MockServer,
    source: Source,
    state: &Path,
) -> Result<run::RunResult, RunError> {
    use futures::FutureExt;
    let cfg = run_config(server, source, state);
    // Not `Send` (the run's event callback borrows its journal), so bounded in place.
    let run = std::panic::AssertUnwindSafe(run::run(cfg, CancellationToken::new())).catch_unwind();
    match tokio::time::timeout(Duration::from_secs(60), run).await {
        Ok(Ok(r)) => r,
        Ok(Err(_)) => panic!("the run panicked"),
        Err(_) => panic!("the run hung"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutated_plan_files_never_panic_hang_or_send() {
    let server = start(small(121)).await;
    let dir = tempfile::tempdir().unwrap();
    let conn = ConnectionSettings::direct(
        &server.base_url(),
        server.enterprise_id(),
        ApiKey::new(server.api_key()),
    );
    let plan = run::plan(PlanConfig::new(load(&server, &job(&server)), conn))
        .await
        .unwrap();
    let reviewed = integrity(&plan);
    let file = dir.path().join("plan.json");
    run::write_plan(&file, &plan).unwrap();
    let sealed: Value = serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    assert_eq!(sealed["integrity"], Value::String(reviewed.clone()));
    let mut unsealed = sealed.clone();
    unsealed.as_object_mut().unwrap().remove("integrity");

    // A finished run whose directory's plan.json the resumption cases replace.
    let state = tempfile::tempdir().unwrap();
    let first = run_bounded(&server, Source::Plan(Box::new(plan.clone())), state.path())
        .await
        .unwrap();
    assert_eq!(first.exit_code, 0, "{}", first.report.summary_text());
    let run_plan = first.run_dir.join("plan.json");

    let mut rng = fastrand::Rng::with_seed(0x11_2026);
    let (mut refused, mut intact, mut ran, mut via_bin, mut resumed) = (0, 0, 0, 0, 0);
    for case in 0..CASES {
        let keep_hash = case % 4 != 3;
        let (text, what) = mutate(&mut rng, if keep_hash { &sealed } else { &unsealed });
        let what = format!(
            "case {case} ({}): {what}",
            if keep_hash { "sealed" } else { "unsealed" }
        );
        let path = dir.path().join("mutated.json");
        std::fs::write(&path, &text).unwrap();
        let before = server.stats().requests_total;
        match read(&path).await {
            Err(e) => {
                refused += 1;
                assert_eq!(e.exit_code(), 2, "{what}: {e}");
                if case % 8 == 0 {
                    via_bin += 1;
                    let out = crate::files::output_within(
                        {
                            let mut c = bin(&server);
                            c.args(["run", "--plan"])
                                .arg(&path)
                                .arg("--state-dir")
                                .arg(dir.path());
                            c
                        },
                        Duration::from_secs(20),
                    )
                    .unwrap_or_else(|| panic!("{what}: the binary hung"));
                    let err = String::from_utf8_lossy(&out.stderr);
                    assert_eq!(out.status.code(), Some(2), "{what}: {err}");
                    assert!(!err.contains("panicked"), "{what}: {err}");
                }
                assert_eq!(
                    server.stats().requests_total,
                    before,
                    "{what}: a refused plan sent nothing"
                );
            }
            Ok(p) if keep_hash => {
                intact += 1;
                assert_eq!(integrity(&p), reviewed, "{what}: accepted although changed");
            }
            Ok(p) => {
                if ran < RUNS {
                    ran += 1;
                    let _ = run_bounded(&server, Source::Plan(Box::new(p)), dir.path()).await;
                }
            }
        }
        // Every fourth sealed case also as a run directory's plan, resumed.
        if keep_hash && case % 4 == 0 {
            resumed += 1;
            std::fs::write(&run_plan, &text).unwrap();
            let before = server.stats().requests_total;
            let source = Source::Resume(first.run_id.clone());
            match run_bounded(&server, source, state.path()).await {
                Err(e) => {
                    assert_eq!(e.exit_code(), 2, "{what} (resume): {e}");
                    assert_eq!(
                        server.stats().requests_total,
                        before,
                        "{what} (resume): nothing was sent"
                    );
                }
                Ok(r) => assert_eq!(
                    r.report.run.plan_hash, reviewed,
                    "{what} (resume): resumed although changed"
                ),
            }
        }
    }
    eprintln!(
        "{CASES} mutated plans: {refused} refused ({via_bin} also through the binary), {intact} accepted unchanged, {ran} without a hash run; {resumed} resumed from a run directory"
    );
    assert!(refused > CASES / 2, "most mutations are refused: {refused}");
    assert!(resumed > 0 && via_bin > 0);
}
