//! Unit tests of loading and checking job files; golden files for whole diagnostics live
//! in tests/fixtures/jobs/invalid.

use std::time::Duration;

use super::*;

fn env(n: &str) -> Option<String> {
    (n == "ESPER_ENTERPRISE_ID").then(|| "e-1".into())
}

fn read(p: &str) -> Result<String, ReadError> {
    match p {
        "pilot.csv" => Ok("name,serial\nTill 1, R58M01\nTill 2,R58M02\n,\n".into()),
        _ => Err(ReadError("no such file".into())),
    }
}

fn host() -> Host<'static> {
    Host {
        env: &env,
        read: &read,
    }
}

const GOOD: &str = r#"
version: 1
name: demo
esper:
  base_url: http://127.0.0.1:1/api
  enterprise_id: ${ESPER_ENTERPRISE_ID}
  api_key: ${ESPER_API_KEY}
limits: { rate: 600/m, batch: 10, max_in_flight: 50 }
retry: { attempts: 3, initial_delay: 100ms, max_delay: 2s }
deadline: 50m
vars: { threshold: 15 }
targets:
  stores: { groups: { name: "Stores/*", exclude: ["Stores/Lab"] } }
  pilot: { devices: { csv: pilot.csv, column: serial } }
steps:
  - id: upload
    app_upload: { file: kiosk.apk }
  - id: install
    needs: [upload]
    app_install: { to: stores, version: "${{ steps.upload.version_id }}", wait: { timeout: 5m } }
    rollout: { stages: [1, 10%, 100%], max_failures: 5% }
  - id: alarm
    needs: [install]
    for_each: stores
    alarm_rule:
      name: "Battery low - ${{ item.name }}"
      metric: battery_level
      conditions: { comparator: LessThanThreshold, value: "${{ vars.threshold }}", unit: Percent }
      realert_interval: 3600
      groups: ["${{ item.id }}"]
"#;

#[test]
fn good_job_loads() {
    let (job, warnings) = load("good.yaml", GOOD, &host()).unwrap();
    assert!(warnings.is_empty(), "{warnings:?}");
    assert_eq!(
        job.limits,
        Limits {
            rate: 10.0,
            batch: 10,
            max_in_flight: 50,
            device_list_rate: None,
            expected_processes: None,
        }
    );
    assert_eq!(job.retry.attempts, 3);
    assert_eq!(job.deadline, Some(Duration::from_secs(3000)));
    assert_eq!(job.esper.enterprise_id.as_deref(), Some("e-1"));
    assert_eq!(
        job.esper.api_key,
        Some(KeySource::Env("ESPER_API_KEY".into()))
    );
    assert_eq!(job.steps.len(), 3);
    let TargetSpec::Devices(pilot) = &job.targets["pilot"] else {
        panic!()
    };
    assert_eq!(pilot.serials, vec!["R58M01", "R58M02"]);
    let r = job.steps[1].rollout.as_ref().unwrap();
    assert_eq!(
        r.stages,
        vec![
            Amount::Count(1),
            Amount::Percent(10.0),
            Amount::Percent(100.0)
        ]
    );
    assert_eq!(r.max_failures.of(200), 10);
}

fn problems(text: &str) -> Vec<(usize, String)> {
    match load("bad.yaml", text, &host()) {
        Ok(_) => vec![],
        Err(d) => {
            d.0.iter()
                .map(|d| (d.line().unwrap_or(0), d.message.clone()))
                .collect()
        }
    }
}

#[test]
fn every_problem_is_reported_with_its_line() {
    let bad = GOOD
        .replace("600/m", "fast")
        .replace("100ms", "soon")
        .replace(
            "      realert_interval: 3600\n",
            "      realert_intervall: 3600\n",
        )
        .replace("needs: [install]", "needs: [instal]")
        .replace("item.name", "item.nmae")
        .replace("api_key: ${ESPER_API_KEY}", "api_key: abcd1234")
        .replace("unit: Percent", "unit: Percnt");
    let p = problems(&bad);
    let has = |line: usize, text: &str| p.iter().any(|(l, m)| *l == line && m.contains(text));
    assert!(has(7, "API key is written"), "{p:?}");
    assert!(has(8, "must be a rate"), "{p:?}");
    assert!(has(9, "must be a duration"), "{p:?}");
    assert!(has(23, "unknown step `instal`"), "{p:?}");
    assert!(has(26, "item.nmae"), "{p:?}");
    assert!(has(28, "`Percnt` is not a valid unit"), "{p:?}");
    assert!(has(29, "unknown key `realert_intervall`"), "{p:?}");
    // A missing key points at its parent, `alarm_rule:`.
    assert!(has(25, "missing `realert_interval`"), "{p:?}");
}

#[test]
fn cycles_show_the_chain() {
    let text = GOOD.replace("  - id: upload\n", "  - id: upload\n    needs: [alarm]\n");
    let p = problems(&text);
    assert!(
        p.iter()
            .any(|(_, m)| m.contains("alarm -> install -> upload -> alarm")),
        "{p:?}"
    );
}

#[test]
fn needs_all_is_a_boolean_that_wants_needs() {
    let with = |line: &str| {
        GOOD.replace(
            "    needs: [install]\n",
            &format!("    needs: [install]\n{line}"),
        )
    };
    let (job, warnings) = load("good.yaml", &with("    needs_all: true\n"), &host()).unwrap();
    assert!(warnings.is_empty(), "{warnings:?}");
    assert_eq!(
        job.steps.iter().map(|s| s.needs_all).collect::<Vec<_>>(),
        [false, false, true]
    );
    let p = problems(&with("    needs_all: always\n"));
    assert!(
        p.iter()
            .any(|(l, m)| *l == 24 && m.contains("true or false")),
        "{p:?}"
    );
    let alone = GOOD.replace("  - id: upload\n", "  - id: upload\n    needs_all: true\n");
    let (_, warnings) = load("good.yaml", &alone, &host()).unwrap();
    assert!(
        warnings
            .iter()
            .any(|w| w.message.contains("`needs_all` has nothing to wait for")),
        "{warnings:?}"
    );
}

#[test]
fn step_outputs_must_be_needed_and_exist() {
    let p = problems(&GOOD.replace("version_id }}", "versionid }}"));
    assert!(
        p.iter()
            .any(|(_, m)| m.contains("is not an output of step `upload`")),
        "{p:?}"
    );
    let p = problems(&GOOD.replace("    needs: [upload]\n", ""));
    assert!(p.iter().any(|(_, m)| m.contains("does not need")), "{p:?}");
}

#[test]
fn csv_errors_point_at_the_column() {
    let p = problems(&GOOD.replace("column: serial", "column: serail"));
    assert!(
        p.iter()
            .any(|(l, m)| *l == 14 && m.contains("did you mean `serial`")),
        "{p:?}"
    );
    let p = problems(&GOOD.replace("pilot.csv", "missing.csv"));
    assert!(
        p.iter()
            .any(|(_, m)| m.contains("cannot read `missing.csv`")),
        "{p:?}"
    );
}

#[test]
fn syntax_errors_have_positions() {
    let d = load("x.yaml", "version: 1\nname: [\n", &host()).unwrap_err();
    assert!(d.0[0].line().is_some());
    let d = load(
        "x.yaml",
        "version: 1\nname: x\nlimts: {}\nsteps: []\n",
        &host(),
    )
    .unwrap_err();
    let r = d.render("version: 1\nname: x\nlimts: {}\nsteps: []\n");
    assert!(r.contains("--> x.yaml:3:1"), "{r}");
    assert!(r.contains("3 | limts: {}\n  | ^^^^^\n"), "{r}");
    assert!(r.contains("did you mean `limits`?"), "{r}");
}

#[test]
fn literal_keys_and_for_each_misuse() {
    let p = problems(&GOOD.replace("    app_install:", "    for_each: stores\n    app_install:"));
    assert!(
        p.iter()
            .any(|(_, m)| m.contains("`for_each` does not apply to app_install")),
        "{p:?}"
    );
}

#[test]
fn environment_variables_everywhere_and_literal_only_fields() {
    let text = GOOD.replace("threshold: 15", "threshold: \"${ESPER_ENTERPRISE_ID}\"");
    let (job, _) = load("env.yaml", &text, &host()).unwrap();
    assert_eq!(job.vars["threshold"], "e-1");
    let p = problems(&GOOD.replace("threshold: 15", "threshold: \"${NOT_SET_ANYWHERE}\""));
    assert!(
        p.iter()
            .any(|(l, m)| *l == 11 && m.contains("NOT_SET_ANYWHERE")),
        "{p:?}"
    );
    let p = problems(&GOOD.replace("file: kiosk.apk", "file: \"${{ vars.threshold }}.apk\""));
    assert!(p.iter().any(|(_, m)| m.contains("does not take")), "{p:?}");
}

#[test]
fn empty_files_and_byte_order_marks() {
    let d = load("e.yaml", "# only a comment\n", &host()).unwrap_err();
    assert_eq!(d.0[0].line(), Some(1));
    assert!(d.0[0].message.contains("empty"));
    let (job, _) = load("bom.yaml", &format!("\u{feff}{GOOD}"), &host()).unwrap();
    assert_eq!(job.name, "demo");
}

#[test]
fn did_you_mean() {
    assert_eq!(
        closest("realert_intervall", &["realert_interval", "repeat_times"]),
        Some("realert_interval")
    );
    assert_eq!(closest("zzz", &["realert_interval"]), None);
}

#[test]
fn values() {
    use node::parse;
    let n = |s: &str| parse(s).unwrap();
    assert_eq!(parse_rate(&n("20/s")), Some(20.0));
    assert_eq!(parse_rate(&n("1200/m")), Some(20.0));
    assert_eq!(parse_rate(&n("5")), Some(5.0));
    assert_eq!(parse_rate(&n("0/s")), None);
    assert_eq!(parse_rate(&n("20/fortnight")), None);
    assert_eq!(
        parse_duration(&n("1h 30m")),
        Some(Duration::from_secs(5400))
    );
    assert_eq!(parse_duration(&n("90")), Some(Duration::from_secs(90)));
    assert_eq!(parse_duration(&n("forever")), None);
    assert_eq!(parse_amount(&n("10%")), Some(Amount::Percent(10.0)));
    assert_eq!(parse_amount(&n("3")), Some(Amount::Count(3)));
    assert_eq!(parse_amount(&n("150%")), None);
    assert_eq!(Amount::Percent(10.0).of(5), 1);
}

/// A job whose operation is `op` (one step, a `stores` target and `vars`).
fn with_step(vars: &str, op: &str) -> String {
    format!(
        "version: 1\nname: t\nvars: {vars}\ntargets:\n  stores: {{ groups: {{ name: \"Stores/*\" }} }}\nsteps:\n  - id: s\n    {op}\n"
    )
}

#[test]
fn plan_time_keys_are_rendered_from_vars_when_the_job_loads() {
    let text = with_step(
        "{ pkg: com.acme.kiosk, code: 410, every: 1h, day: Friday }",
        "app_install: { to: stores, package: \"${{ vars.pkg }}\", version_code: \"${{ vars.code }}\" }",
    );
    let (job, _) = load("t.yaml", &text, &host()).unwrap();
    let StepOp::AppInstall { version, .. } = &job.steps[0].op else {
        panic!()
    };
    assert_eq!(
        version,
        &VersionRef::Package {
            package: "com.acme.kiosk".into(),
            version_code: "410".into()
        }
    );
    let text = with_step(
        "{ every: 1h }",
        "alarm_rule: { name: r, metric: m, conditions: { comparator: Frequency, value: 1, unit: Count }, realert_interval: \"${{ vars.every }}\" }",
    );
    let (job, _) = load("t.yaml", &text, &host()).unwrap();
    let StepOp::AlarmRule { body, .. } = &job.steps[0].op else {
        panic!()
    };
    assert_eq!(body["realert_interval"], 3600, "Esper takes seconds");
    // Only vars are known when the job loads.
    let p = problems(&with_step(
        "{}",
        "app_install: { to: stores, package: \"${{ item.name }}\", version_code: \"1\" }",
    ));
    assert!(
        p.iter()
            .any(|(_, m)| m.contains("cannot be used in `steps[0].app_install.package`")),
        "{p:?}"
    );
}

#[test]
fn validate_warns_where_load_refuses_unset_connection_variables() {
    let text = "version: 1\nname: t\nesper:\n  base_url: ${NOT_SET_URL}\n  api_key: ${ESPER_API_KEY}\nsteps:\n  - id: s\n    request: { method: GET, path: /x }\n";
    let d = load("t.yaml", text, &host()).unwrap_err();
    assert_eq!(d.errors(), 1);
    let (job, warnings) = validate("t.yaml", text, &host()).unwrap();
    assert_eq!(job.esper.base_url, None);
    assert_eq!(warnings.len(), 1);
    assert_eq!(warnings[0].severity, Severity::Warning);
    assert!(warnings[0].message.contains("NOT_SET_URL"));
    // Outside `esper:` a value the job uses cannot be left unset, even when validating.
    let text = text.replace("path: /x", "path: /${NOT_SET_PATH}");
    assert!(validate("t.yaml", &text, &host()).is_err());
}

#[test]
fn command_names_and_the_unchecked_escape() {
    let p = problems(&with_step("{}", "command: { to: stores, name: reboooot }"));
    assert!(
        p.iter()
            .any(|(_, m)| m == "`REBOOOOT` is not an Esper command"),
        "{p:?}"
    );
    let (job, warnings) = load(
        "t.yaml",
        &with_step(
            "{}",
            "command: { to: stores, name: set_future_thing, unchecked: true }",
        ),
        &host(),
    )
    .unwrap();
    assert!(warnings.is_empty());
    assert!(matches!(&job.steps[0].op, StepOp::Command { name, .. } if name == "SET_FUTURE_THING"));
    let (_, warnings) = load(
        "t.yaml",
        &with_step(
            "{}",
            "command: { to: stores, name: REBOOT, unchecked: true }",
        ),
        &host(),
    )
    .unwrap();
    assert!(
        warnings[0]
            .message
            .contains("`unchecked: true` is not needed")
    );
}

#[test]
fn vars_are_read_inside_maps_and_lists() {
    let ok = with_step(
        "{ lock: { state: LOCKED, ids: [a, b] } }",
        "command: { to: stores, name: LOCK, args: { s: \"${{ vars.lock.state }}\", i: \"${{ vars.lock.ids.1 }}\" } }",
    );
    assert!(load("t.yaml", &ok, &host()).is_ok());
    let p = problems(
        &ok.replace("ids.1", "ids.7")
            .replace("lock.state", "lock.stat"),
    );
    assert!(
        p.iter()
            .any(|(_, m)| m == "`vars.lock.stat` is not defined"),
        "{p:?}"
    );
    assert!(
        p.iter()
            .any(|(_, m)| m == "`vars.lock.ids.7` is not defined"),
        "{p:?}"
    );
}

#[test]
fn wait_says_what_success_means() {
    let wait = |w: &str| {
        let text = with_step(
            "{}",
            &format!("command: {{ to: stores, name: REBOOT, wait: {w} }}"),
        );
        load("t.yaml", &text, &host()).map(|(job, _)| match &job.steps[0].op {
            StepOp::Command { wait, .. } => wait.unwrap(),
            _ => panic!(),
        })
    };
    let w = wait("{ timeout: 10m, success: 95% }").unwrap();
    assert_eq!(w.timeout, Duration::from_secs(600));
    assert_eq!(w.tolerance.success, Some(95.0));
    assert_eq!(w.tolerance.allowed(50), 2);
    assert_eq!(w.tolerance.allowed(0), 0);
    let w = wait("{ max_device_failures: 3, pending: fail }").unwrap();
    assert_eq!(w.timeout, Duration::from_secs(30 * 60));
    assert_eq!(w.tolerance.allowed(50), 3);
    assert_eq!(w.tolerance.allowed(2), 2);
    assert!(w.tolerance.accepts(1, 2, 50) && !w.tolerance.accepts(2, 2, 50));
    let strict = wait("{}").unwrap().tolerance;
    assert!(strict.is_default() && strict.accepts(0, 5, 50) && !strict.accepts(1, 0, 50));

    let p = |w: &str| {
        problems(&with_step(
            "{}",
            &format!("command: {{ to: stores, name: REBOOT, wait: {w} }}"),
        ))
    };
    let msgs = |w: &str| p(w).into_iter().map(|(_, m)| m).collect::<Vec<_>>();
    assert_eq!(
        msgs("{ success: 95 }"),
        ["`success: 95` is a count, but success is a share of the task's devices"]
    );
    assert_eq!(
        msgs("{ success: 90%, max_device_failures: 2 }"),
        ["`success` and `max_device_failures` both say how many devices may fail"]
    );
    assert_eq!(
        msgs("{ max_device_failures: -1 }"),
        ["`max_device_failures: -1` is negative"]
    );
    assert_eq!(msgs("{ success: 120% }").len(), 1);
    assert!(
        msgs("{ pending: later }")[0].contains("later"),
        "{:?}",
        msgs("{ pending: later }")
    );
}

// See: #11 — a job name names run directories and lock files, so it has a length limit.
#[test]
fn job_names_are_at_most_128_characters() {
    let named = |n: &str| GOOD.replace("name: demo", &format!("name: {n}"));
    // Characters, not bytes: 128 of `ü` is 256 bytes and still a valid name.
    assert!(load("ok.yaml", &named(&"ü".repeat(128)), &host()).is_ok());
    let long = "x".repeat(129);
    let p = problems(&named(&long));
    assert_eq!(
        p,
        [(
            3,
            "the job name is 129 characters long, more than 128".to_string()
        )]
    );
    let d = load("bad.yaml", &named(&long), &host()).unwrap_err();
    assert!(
        d.0[0]
            .help
            .as_deref()
            .is_some_and(|h| h.contains("shorten it")),
        "{:?}",
        d.0[0].help
    );
}

#[test]
fn a_zero_deadline_is_refused() {
    let p = problems(&GOOD.replace("deadline: 50m", "deadline: 0s"));
    assert_eq!(p, [(10, "the deadline is 0".to_string())]);
}
