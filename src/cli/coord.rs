//! `esper-bulk coordinator status` and the `run --coordinator` flags: which Redis, from the
//! flag or `ESPER_BULK_REDIS_URL` (the job's `coordinator:` between them is ranked by
//! [`run::resolve_coordinator`]), and what the status command prints. Reading Redis is
//! [`crate::coord`]'s, finding the tenant and enterprise is [`crate::run`]'s.

use crate::run::{self, CoordinatorSettings, Env, RunError};

use super::{CoordArgs, CoordStatusArgs, Globals, connection, console, fail, fail_json, load};

/// The coordinator the command line names: `--coordinator`, else `ESPER_BULK_REDIS_URL`
/// (marked as such, so a job's `coordinator:` outranks it), else none.
pub(super) fn settings(a: &CoordArgs, env: &Env) -> Option<CoordinatorSettings> {
    let flag = a.coordinator.clone().filter(|u| !u.trim().is_empty());
    let from_env = flag.is_none();
    let url = flag
        .or_else(|| env.get("ESPER_BULK_REDIS_URL"))
        .filter(|u| !u.trim().is_empty());
    // With no URL here, the job's `coordinator:` may still name one; the run decides.
    if url.is_none() && a.expected_processes.is_none() {
        return None;
    }
    let mut s = CoordinatorSettings::new(&url.unwrap_or_default());
    s.expected_processes = a.expected_processes;
    s.from_env = from_env;
    Some(s)
}

pub(super) async fn status_cmd(a: CoordStatusArgs, g: &Globals, env: &Env) -> u8 {
    let json = a.json;
    let fail = |e: &RunError| if json { fail_json(e) } else { fail(e) };
    let job = match a.file.as_ref().map(|f| load(f, env)).transpose() {
        Ok(j) => j,
        Err(e) => return fail(&e),
    };
    // The same order as `run`: the flag, the job's `coordinator:`, the environment.
    let given = settings(
        &CoordArgs {
            coordinator: a.coordinator.clone(),
            expected_processes: None,
        },
        env,
    );
    let job_url = job.as_ref().and_then(|j| j.coordinator.as_deref());
    let url = match run::resolve_coordinator(given, job_url, env) {
        Ok(Some(s)) => s.url,
        Ok(None) => return fail(&RunError::NoCoordinator),
        Err(e) => return fail(&e),
    };
    let conn = match connection(&a.conn, g, env) {
        Ok(c) => c,
        Err(e) => return fail(&e),
    };
    let s = match run::coordinator_status(&url, &conn, job.as_ref()).await {
        Ok(s) => s,
        Err(e) => return fail(&e),
    };
    if json {
        let doc = serde_json::to_value(&s).unwrap_or_default();
        console::out(format_args!("{doc:#}\n"));
        return crate::exit::OK;
    }
    let mut out = format!("coordinator {} ({})\n", s.url, s.scope);
    if s.bucket_booked_ms == 0 {
        out.push_str("bucket: permits available now\n");
    } else {
        out.push_str(&format!("bucket: booked {} ms ahead\n", s.bucket_booked_ms));
    }
    if s.paused_ms == 0 {
        out.push_str("pause: none\n");
    } else {
        out.push_str(&format!(
            "pause: {} ms left (a process saw a 429)\n",
            s.paused_ms
        ));
    }
    if s.locks.is_empty() {
        out.push_str("locks: none held\n");
    } else {
        out.push_str("locks:\n");
        for l in &s.locks {
            out.push_str(&format!(
                "  {}: run {} (pid {} on {}, started {}), token {}, lease {} ms left\n",
                l.job, l.run_id, l.pid, l.host, l.started, l.token, l.expires_in_ms
            ));
        }
    }
    if s.processes.is_empty() {
        out.push_str("processes seen in the last minute: none\n");
    } else {
        out.push_str("processes seen in the last minute:\n");
        for p in &s.processes {
            out.push_str(&format!(
                "  {} on {} (pid {}), job {}, {} requests/s shared\n",
                p.run_id, p.host, p.pid, p.job, p.rate
            ));
        }
    }
    console::out(out);
    crate::exit::OK
}
