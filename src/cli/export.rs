//! `esper-bulk export`: the one-liner that builds a one-step export job from its flags and
//! runs it like a job file (lock, run directory, report). Building the job text is
//! [`crate::run`]'s (`run::load_export`, checked by the one validator); this maps the flags
//! and prints the result (the file and its row count, or one JSON document).

use crate::run::{self, Env, Output, RunConfig, RunError, Source};

use super::{
    ExportArgs, Globals, connection, console, fail, fail_json, print_result, signal_token,
    stderr_notices,
};

/// `esper-bulk export`: a one-step export job built from the flags, run like a job file.
pub(super) async fn export_cmd(a: ExportArgs, g: &Globals, env: &Env) -> u8 {
    let json = a.json;
    let fail = |e: &RunError| if json { fail_json(e) } else { fail(e) };
    let state = match run::state_dir(a.state_dir.clone(), env) {
        Ok(s) => s,
        Err(e) => return fail(&e),
    };
    let spec = run::AdhocExport {
        what: a.what,
        target: a.target,
        exclude: a.exclude,
        fields: a.fields,
        format: a.format,
        file: a.output.map(|p| p.display().to_string()),
        package: a.package,
        version_code: a.version_code,
        since: a.since,
    };
    let cwd = std::env::current_dir().unwrap_or_default();
    let job = match run::load_export(&spec, &cwd, env) {
        Ok(l) => l.job,
        Err(e) => return fail(&e),
    };
    let connection = match connection(&a.conn, g, env) {
        Ok(c) => c,
        Err(e) => return fail(&e),
    };
    let mut cfg = RunConfig::new(Source::Job(Box::new(job)), connection, state);
    cfg.output = Output {
        progress: console::progress(),
        renderings: true,
        metrics_file: None,
        notices: stderr_notices(),
    };
    match run::run(cfg, signal_token()).await {
        Ok(r) => {
            let result = r.report.tasks.first().and_then(|t| t.result.clone());
            if json {
                let doc = serde_json::json!({
                    "run_id": r.run_id.to_string(),
                    "exit_code": r.exit_code,
                    "outcome": r.report.run.outcome,
                    "file": result.as_ref().and_then(|v| v.get("file").cloned()),
                    "rows": result.as_ref().and_then(|v| v.get("rows").cloned()),
                    "report": r.report_path,
                });
                console::out(format_args!("{doc:#}\n"));
                return r.exit_code;
            }
            let code = print_result(&r, false);
            if let Some(v) = result
                && let (Some(file), Some(rows)) = (v.get("file"), v.get("rows"))
            {
                console::out(format_args!(
                    "export: {rows} rows in {}\n",
                    file.as_str().unwrap_or_default()
                ));
            }
            code
        }
        Err(e) => fail(&e),
    }
}
