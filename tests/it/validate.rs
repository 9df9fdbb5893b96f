//! `esper-bulk validate` as CI runs it: no network, no secrets, files, directories and
//! standard input, text or `--json`, a summary that reads naturally, and never a leaked
//! key in what it prints. Each test spawns the binary with an emptied environment, so
//! nothing depends on the `ESPER_*` variables of the machine running the tests.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use serde_json::Value;

fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_esper-bulk"));
    // No ESPER_* variables and no API key: CI lints job files without them.
    c.env_clear();
    c
}

fn run(c: &mut Command, stdin: Option<&str>) -> (i32, String, String) {
    c.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = c.spawn().expect("the binary starts");
    if let Some(text) = stdin {
        child
            .stdin
            .take()
            .unwrap()
            .write_all(text.as_bytes())
            .unwrap();
    }
    drop(child.stdin.take());
    let Output {
        status,
        stdout,
        stderr,
    } = child.wait_with_output().unwrap();
    (
        status.code().unwrap_or(-1),
        String::from_utf8_lossy(&stdout).into_owned(),
        String::from_utf8_lossy(&stderr).into_owned(),
    )
}

/// A job that takes its whole connection from the environment.
const FROM_ENV: &str = "version: 1
name: from-env
esper:
  base_url: ${ESPER_BASE_URL}
  enterprise_id: ${ESPER_ENTERPRISE_ID}
  api_key: ${ESPER_API_KEY}
targets:
  lab: { groups: { name: Lab } }
steps:
  - id: ping
    command: { to: lab, name: UPDATE_HEARTBEAT }
";

const BROKEN: &str = "version: 1\nname: broken\nlimts: {}\nsteps: []\n";

fn write(dir: &Path, name: &str, text: &str) {
    std::fs::write(dir.join(name), text).unwrap();
}

#[test]
fn unset_connection_variables_are_warnings_in_validate_and_errors_in_plan() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "job.yaml", FROM_ENV);
    let job = dir.path().join("job.yaml");
    let (code, out, err) = run(bin().arg("validate").arg(&job), None);
    assert_eq!(code, 0, "stdout:\n{out}\nstderr:\n{err}");
    assert!(
        out.contains("ok: ") && out.contains("(job `from-env`, 1 step)"),
        "{out}"
    );
    assert!(
        err.contains("warning: environment variable ESPER_BASE_URL is not set")
            && err.contains("warning: environment variable ESPER_ENTERPRISE_ID is not set"),
        "{err}"
    );
    assert!(!err.contains("error"), "{err}");
    assert!(err.ends_with("1 job file is valid\n"), "{err}");
    // Planning needs the connection: the same file is refused before anything is sent.
    let (code, _, err) = run(bin().arg("plan").arg(&job), None);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("error: environment variable ESPER_BASE_URL is not set"),
        "{err}"
    );
}

#[test]
fn directories_files_and_standard_input() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "b-good.yaml", FROM_ENV);
    write(dir.path(), "a-broken.yml", BROKEN);
    write(dir.path(), "notes.txt", "not a job");
    std::fs::create_dir(dir.path().join("sub")).unwrap();
    write(&dir.path().join("sub"), "nested.yaml", BROKEN);
    let (code, out, err) = run(
        bin().arg("validate").arg(dir.path()).arg("-"),
        Some(FROM_ENV),
    );
    assert_eq!(code, 2, "{err}");
    // Directory entries in name order, then standard input; subdirectories are not read.
    let a = err
        .find("a-broken.yml:3:1")
        .expect("the broken file's error");
    assert!(err.contains("did you mean `limits`?"), "{err}");
    assert!(
        !err.contains("nested.yaml") && !err.contains("notes.txt"),
        "{err}"
    );
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 2, "{out}");
    assert!(lines[0].contains("b-good.yaml"), "{out}");
    assert_eq!(lines[1], "ok: <stdin> (job `from-env`, 1 step)");
    assert!(err[a..].ends_with("1 of 3 job files is invalid\n"), "{err}");

    write(dir.path(), "c-broken.yaml", BROKEN);
    let (code, _, err) = run(bin().arg("validate").arg(dir.path()), None);
    assert_eq!(code, 2);
    assert!(err.ends_with("2 of 3 job files are invalid\n"), "{err}");

    let (code, _, err) = run(bin().args(["validate", "-"]), Some(BROKEN));
    assert_eq!(code, 2);
    assert!(err.contains("<stdin>:3:1"), "{err}");
    assert!(err.ends_with("1 of 1 job file is invalid\n"), "{err}");

    let empty = tempfile::tempdir().unwrap();
    let (code, _, err) = run(bin().arg("validate").arg(empty.path()), None);
    assert_eq!(code, 2);
    assert!(
        err.contains("holds no job files (*.yaml or *.yml)"),
        "{err}"
    );
}

#[test]
fn json_is_one_document_of_every_diagnostic() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "good.yaml", FROM_ENV);
    write(dir.path(), "broken.yaml", BROKEN);
    let (code, out, err) = run(bin().args(["validate", "--json"]).arg(dir.path()), None);
    assert_eq!(code, 2, "{err}");
    assert!(err.is_empty(), "with --json everything is on stdout: {err}");
    let doc: Value = serde_json::from_str(&out).expect("stdout is one JSON document");
    assert_eq!(doc["valid"], false);
    assert_eq!(doc["summary"], "1 of 2 job files is invalid");
    let files = doc["files"].as_array().unwrap();
    assert_eq!(files.len(), 2);
    assert!(files[0]["file"].as_str().unwrap().ends_with("broken.yaml"));
    assert_eq!(files[0]["valid"], false);
    assert_eq!(files[1]["valid"], true);
    assert_eq!(files[1]["job"], "from-env");
    assert_eq!(files[1]["warnings"], 2);
    let diags = doc["diagnostics"].as_array().unwrap();
    let unknown = diags
        .iter()
        .find(|d| d["message"] == "unknown key `limts` in job")
        .unwrap_or_else(|| panic!("{diags:?}"));
    assert!(unknown["file"].as_str().unwrap().ends_with("broken.yaml"));
    assert_eq!(
        (unknown["line"].as_u64(), unknown["col"].as_u64()),
        (Some(3), Some(1))
    );
    assert_eq!(unknown["severity"], "error");
    assert_eq!(unknown["help"], "did you mean `limits`?");
    let warning = diags
        .iter()
        .find(|d| d["severity"] == "warning")
        .expect("the unset variables are warnings");
    assert!(warning["file"].as_str().unwrap().ends_with("good.yaml"));
    for d in diags {
        for key in ["file", "line", "col", "severity", "message", "help"] {
            assert!(d.get(key).is_some(), "{key} missing in {d}");
        }
    }
}

#[test]
fn a_leaked_key_never_reaches_the_output() {
    const KEY: &str = "sk_live_51HcQ2eZvKYlo2C0aIiX5c";
    // The key's line also holds an unknown key, and a third error sits elsewhere.
    let job = format!(
        "version: 1\nname: leaky\nesper: {{ tenat: acme, api_key: {KEY} }}\nsteps:\n  - id: x\n    command: {{ to: nowhere, name: REBOOT }}\n"
    );
    let (code, out, err) = run(bin().args(["validate", "-"]), Some(&job));
    assert_eq!(code, 2);
    let text = format!("{out}{err}");
    assert!(
        !text.contains(KEY) && !text.contains("HcQ2eZvKYlo2C0aIi"),
        "{text}"
    );
    assert!(
        text.contains("esper: { tenat: acme, api_key: sk_l…5c }"),
        "the line is shown masked: {text}"
    );
    assert!(text.contains("unknown key `tenat`") && text.contains("API key is written"));

    let (code, out, err) = run(bin().args(["validate", "--json", "-"]), Some(&job));
    assert_eq!(code, 2);
    assert!(!out.contains(KEY) && !err.contains(KEY), "{out}{err}");
    let doc: Value = serde_json::from_str(&out).unwrap();
    assert!(doc["diagnostics"].as_array().unwrap().len() >= 3);

    // A short key is hidden entirely, in a block map too.
    let job = "version: 1\nname: leaky\nesper:\n  api_key: \"hunter22\"\nsteps:\n  - id: x\n    request: { method: GET, path: /x }\n";
    let (code, out, err) = run(bin().args(["validate", "-"]), Some(job));
    assert_eq!(code, 2);
    assert!(
        !out.contains("hunter22") && !err.contains("hunter22"),
        "{err}"
    );
    assert!(err.contains("api_key: \"****\""), "{err}");
}
