//! Golden diagnostics: every `tests/fixtures/jobs/invalid/NAME.yaml` must fail to load, and
//! what `esper-bulk validate` prints for it must equal `NAME.expected` byte for byte.
//!
//! After a deliberate change to the checker's messages, rewrite the goldens with
//! `BLESS=1 cargo test --test it diagnostics` and review the diff like code. Under `CI=true`
//! nothing is ever written.

use crate::support::{blessing, diff};

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use esper_bulk::job::{self, Host, Severity};

/// Where the fixtures live, as the goldens name them (relative, so they are the same on
/// every machine).
const DIR: &str = "tests/fixtures/jobs/invalid";

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(DIR)
}

/// A fixed environment: the usual variables are set, nothing else is.
fn env(name: &str) -> Option<String> {
    match name {
        "ESPER_API_KEY" => Some("test-key".into()),
        "ESPER_ENTERPRISE_ID" => Some("8e9d7c6b-0000-4000-8000-000000000001".into()),
        "ESPER_TENANT" => Some("acme".into()),
        _ => None,
    }
}

/// Reads files relative to the fixtures folder, like the CLI does relative to the job file.
/// The error text is the `io::ErrorKind`, so it does not depend on the platform's wording.
fn read(path: &str) -> Result<String, esper_bulk::job::ReadError> {
    std::fs::read_to_string(dir().join(path))
        .map_err(|e| esper_bulk::job::ReadError(e.kind().to_string()))
}

/// What `esper-bulk validate` prints for one file, and how many errors it found.
fn validate(name: &str, text: &str) -> (String, usize) {
    let host = Host {
        env: &env,
        read: &read,
    };
    let file = format!("{DIR}/{name}.yaml");
    match job::load(&file, text, &host) {
        Ok((_, warnings)) => (
            format!(
                "unexpectedly valid ({} warnings): {warnings:?}\n",
                warnings.len()
            ),
            0,
        ),
        Err(d) => {
            for diag in &d.0 {
                assert_eq!(diag.file, file, "{name}: diagnostic names another file");
                assert!(
                    diag.severity == Severity::Warning || !diag.message.is_empty(),
                    "{name}: empty message"
                );
            }
            (d.render(text), d.errors())
        }
    }
}

/// The fixtures, sorted by name.
fn fixtures() -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir())
        .unwrap_or_else(|e| panic!("{DIR}: {e}"))
        .filter_map(|e| {
            let p = e.ok()?.path();
            (p.extension()? == "yaml").then(|| p.file_stem()?.to_str().map(str::to_string))?
        })
        .collect();
    names.sort();
    names
}

#[test]
fn golden_diagnostics() {
    let bless = blessing();
    let names = fixtures();
    assert!(
        names.len() >= 30,
        "only {} fixtures in {DIR}; did the folder move?",
        names.len()
    );
    let mut failures = Vec::new();
    for name in &names {
        let text = std::fs::read_to_string(dir().join(format!("{name}.yaml"))).unwrap();
        let (actual, errors) = validate(name, &text);
        if errors == 0 {
            failures.push(format!(
                "{name}.yaml: expected at least one error, got none:\n{actual}"
            ));
            continue;
        }
        let golden = dir().join(format!("{name}.expected"));
        let expected = std::fs::read_to_string(&golden).ok();
        if expected.as_deref() == Some(actual.as_str()) {
            continue;
        }
        if bless {
            std::fs::write(&golden, &actual).unwrap_or_else(|e| panic!("{name}: {e}"));
            eprintln!("blessed {DIR}/{name}.expected");
            continue;
        }
        failures.push(match expected {
            None => format!("{name}.expected is missing; it would hold:\n{actual}"),
            Some(expected) => format!(
                "{name}.yaml: output differs from {name}.expected\n{}",
                diff(&expected, &actual)
            ),
        });
    }
    // A golden without its job file tests nothing and would go stale unnoticed.
    let stems: BTreeSet<&str> = names.iter().map(String::as_str).collect();
    for e in std::fs::read_dir(dir()).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "expected")
            && let Some(stem) = p.file_stem().and_then(|s| s.to_str())
            && !stems.contains(stem)
        {
            failures.push(format!("{stem}.expected has no {stem}.yaml"));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} golden diagnostics failed:\n\n{}\n\nif the new output is right: BLESS=1 cargo test --test it diagnostics",
        failures.len(),
        names.len(),
        failures.join("\n\n")
    );
}

/// The "many problems" fixture: every problem is reported, in line order.
#[test]
fn many_problems_are_all_reported_in_line_order() {
    let text = std::fs::read_to_string(dir().join("many_problems.yaml")).unwrap();
    let host = Host {
        env: &env,
        read: &read,
    };
    let d = job::load("many_problems.yaml", &text, &host).unwrap_err();
    assert!(d.errors() >= 10, "{d}");
    let lines: Vec<usize> = d.0.iter().map(|x| x.line().unwrap_or(0)).collect();
    assert!(lines.is_sorted(), "not in line order: {lines:?}");
    assert!(lines.iter().all(|l| *l >= 1), "{lines:?}");
}
