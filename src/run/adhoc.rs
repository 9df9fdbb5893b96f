//! Jobs made on the command line: `esper-bulk export what=devices --target 'Stores/**'`
//! becomes a one-step job, written as job text and checked by the same validator as a
//! job file, so a one-liner can do nothing a job file could not and is refused for the
//! same reasons. It then runs through the normal pipeline (lock, run directory, journal,
//! report). Parsing the flags is the CLI's; running the job is [`super::run`]'s.

use std::path::Path;

use serde_json::{Map, Value, json};

use super::RunError;
use super::config::Env;
use super::load::{LoadedJob, load_job_text};

/// An export asked for on the command line.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AdhocExport {
    /// `devices`, `groups`, `apps`, `installed`, `alarm_rules` or `commands`.
    pub what: String,
    /// Group names, paths or globs whose devices (or groups) are exported.
    pub target: Vec<String>,
    /// Group paths or globs left out of `target`.
    pub exclude: Vec<String>,
    pub fields: Vec<String>,
    pub format: Option<String>,
    /// Relative to the current directory.
    pub file: Option<String>,
    pub package: Option<String>,
    pub version_code: Option<String>,
    pub since: Option<String>,
}

/// The job text of `e`: one `export` step named after what it exports (so each kind of
/// export has its own lock and `since: last_run` memory).
pub fn export_job_text(e: &AdhocExport) -> String {
    let what = e.what.strip_prefix("what=").unwrap_or(&e.what).to_string();
    let mut step = Map::new();
    step.insert("what".into(), json!(what));
    let mut put = |k: &str, v: &Option<String>| {
        if let Some(v) = v {
            step.insert(k.into(), json!(v));
        }
    };
    put("format", &e.format);
    put("file", &e.file);
    put("package", &e.package);
    put("version_code", &e.version_code);
    put("since", &e.since);
    if !e.fields.is_empty() {
        step.insert("fields".into(), json!(e.fields));
    }
    let mut job = json!({
        "version": 1,
        "name": format!("export-{}", crate::util::file_name_for(&what)),
    });
    if !e.target.is_empty() {
        let mut groups = json!({"name": e.target});
        if !e.exclude.is_empty() {
            groups["exclude"] = json!(e.exclude);
        }
        job["targets"] = json!({"target": {"groups": groups}});
        step.insert("target".into(), json!("target"));
    }
    job["steps"] = json!([{"id": what, "export": Value::Object(step)}]);
    // JSON is YAML: the validator reads it as any job file, positions and all.
    serde_json::to_string_pretty(&job).unwrap_or_default()
}

/// The checked job of `e`, its files relative to `cwd`.
pub fn load_export(e: &AdhocExport, cwd: &Path, env: &Env) -> Result<LoadedJob, RunError> {
    load_job_text("<command line>", &export_job_text(e), cwd, env)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_one_liner_is_a_one_step_job() {
        let e = AdhocExport {
            what: "what=devices".into(),
            target: vec!["Stores/**".into()],
            file: Some("devices.csv".into()),
            ..AdhocExport::default()
        };
        let v: Value = serde_json::from_str(&export_job_text(&e)).unwrap();
        assert_eq!(v["name"], "export-devices");
        assert_eq!(
            v["targets"]["target"]["groups"]["name"],
            json!(["Stores/**"])
        );
        assert_eq!(
            v["steps"][0],
            json!({"id": "devices", "export": {"what": "devices", "file": "devices.csv", "target": "target"}})
        );
        let env = Env::empty();
        let job = load_export(&e, Path::new("/tmp/x"), &env).unwrap().job;
        let crate::job::StepOp::Export(spec) = &job.steps[0].op else {
            panic!("an export step")
        };
        assert_eq!(spec.file.as_deref(), Some("/tmp/x/devices.csv"));
        assert_eq!(spec.format, crate::job::ExportFormat::Csv);
        let bad = AdhocExport {
            what: "device".into(),
            ..AdhocExport::default()
        };
        assert!(
            load_export(&bad, Path::new("."), &env).is_err(),
            "refused like a job file"
        );
    }
}
