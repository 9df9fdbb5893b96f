//! Day-to-day operations through the binary: contexts (precedence, a refused literal key,
//! `context list --json`, `mock --write-context`), shell completion scripts and the man
//! page, the run history (`runs`, `prune`, `report`/`unlock` by run id), and the
//! Kubernetes CronJob example run against the mock.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use esper_bulk::mock::{MockConfig, MockServer};
use esper_bulk::run::{RunOutcome, Source};
use tokio_util::sync::CancellationToken;

use crate::support::{job_header, load, run, run_config, small, start};

/// The binary with nothing from this process's environment: no `ESPER_*`, no config or
/// state of the person running the tests.
fn bare(home: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_esper-bulk"));
    c.env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", home)
        .env("XDG_CONFIG_HOME", home.join("config"))
        .env("XDG_STATE_HOME", home.join("state"));
    c
}

fn text(o: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

/// A job that names no server (like every job in jobs/): one alarm rule per store group.
const PORTABLE_JOB: &str = "version: 1\nname: portable\nesper:\n  api_key: ${ESPER_API_KEY}\ntargets:\n  s: { groups: { name: \"Stores/*/*\" } }\nsteps:\n  - id: alarm\n    for_each: s\n    alarm_rule: { name: \"r ${{ item.name }}\", metric: m, conditions: { comparator: Frequency, value: 1, unit: Count }, realert_interval: 60 }\n";

/// A config file with context `mock` for `server` (its key in a 0600 file) and `other`
/// pointing at a port nothing listens on.
fn write_config(home: &Path, server: &MockServer, default: &str) -> PathBuf {
    let dir = home.join("config/esper-bulk");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("mock.key"), server.api_key()).unwrap();
    let path = dir.join("config.toml");
    std::fs::write(
        &path,
        format!(
            "default_context = \"{default}\"\n\n[contexts.mock]\nbase_url = \"{}\"\nenterprise_id = \"{}\"\napi_key_file = \"mock.key\"\n\n[contexts.other]\nbase_url = \"http://127.0.0.1:1/api\"\nenterprise_id = \"e-other\"\napi_key_env = \"OTHER_KEY\"\n",
            server.base_url(),
            server.enterprise_id()
        ),
    )
    .unwrap();
    path
}

// See: #13 — flags > job `esper:` > context > ESPER_*, the same for every command.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_context_connects_plan_and_run_and_ranks_between_the_job_and_the_environment() {
    let server = start(small(131)).await;
    let home = tempfile::tempdir().unwrap();
    write_config(home.path(), &server, "mock");
    let job = home.path().join("job.yaml");
    std::fs::write(&job, PORTABLE_JOB).unwrap();

    // The default context: no exports at all, and ESPER_* pointing elsewhere lose to it.
    let o = bare(home.path())
        .args(["plan", job.to_str().unwrap()])
        .env("ESPER_BASE_URL", "http://127.0.0.1:1/api")
        .env("ESPER_API_KEY", "not-the-key")
        .output()
        .unwrap();
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(0), "{out}\n{err}");
    assert!(out.contains(&server.base_url()), "{out}");

    // A named context beats the default; a flag beats the context.
    let o = bare(home.path())
        .args(["plan", job.to_str().unwrap(), "--context", "other"])
        .output()
        .unwrap();
    let (_, err) = text(&o);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(
        err.contains("OTHER_KEY"),
        "the context's key variable: {err}"
    );
    let o = bare(home.path())
        .args(["plan", job.to_str().unwrap(), "--context", "other"])
        .args(["--base-url", &server.base_url()])
        .args(["--enterprise-id", server.enterprise_id()])
        .env("ESPER_API_KEY", server.api_key())
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{:?}", text(&o));

    // ESPER_BULK_CONTEXT chooses too; an unknown name is refused with the known ones.
    let o = bare(home.path())
        .args(["plan", job.to_str().unwrap()])
        .env("ESPER_BULK_CONTEXT", "nope")
        .output()
        .unwrap();
    let (_, err) = text(&o);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        err.contains("no context `nope`") && err.contains("known contexts: mock, other"),
        "{err}"
    );

    // A job that names its own server keeps it (and its key) over the default context.
    let pinned = home.path().join("pinned.yaml");
    std::fs::write(
        &pinned,
        format!(
            "{}targets:\n  s: {{ groups: {{ name: \"Stores/*/*\" }} }}\nsteps:\n  - id: reboot\n    command: {{ to: s, name: REBOOT }}\n",
            job_header(&server, "50/s")
        ),
    )
    .unwrap();
    let o = bare(home.path())
        .args(["plan", pinned.to_str().unwrap()])
        .env("ESPER_API_KEY", server.api_key())
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{:?}", text(&o));
    // ...and a context named against it is refused rather than followed.
    let o = bare(home.path())
        .args(["plan", pinned.to_str().unwrap(), "--context", "other"])
        .env("ESPER_API_KEY", server.api_key())
        .output()
        .unwrap();
    let (_, err) = text(&o);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(
        err.contains("but context `other` (--context) says"),
        "{err}"
    );

    // `run` resolves the same way, and a saved run stays bound to its server.
    let o = bare(home.path())
        .args(["run", job.to_str().unwrap(), "--json"])
        .output()
        .unwrap();
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(0), "{out}\n{err}");
    let run_id = serde_json::from_str::<serde_json::Value>(&out).unwrap()["run_id"]
        .as_str()
        .unwrap()
        .to_string();
    let o = bare(home.path())
        .args(["run", "--resume", &run_id, "--context", "other"])
        .output()
        .unwrap();
    let (_, err) = text(&o);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(
        err.contains("the plan was made for server") && err.contains("context `other`"),
        "{err}"
    );
}

#[test]
fn a_literal_key_in_the_config_is_refused_and_never_shown() {
    let home = tempfile::tempdir().unwrap();
    let dir = home.path().join("config/esper-bulk");
    std::fs::create_dir_all(&dir).unwrap();
    let secret = "sk_live_do_not_print_me_0123456789";
    std::fs::write(
        dir.join("config.toml"),
        format!("[contexts.prod]\ntenant = \"acme\"\napi_key = \"{secret}\"\n"),
    )
    .unwrap();
    let job = home.path().join("job.yaml");
    std::fs::write(&job, PORTABLE_JOB).unwrap();
    for args in [
        vec!["plan", job.to_str().unwrap(), "--context", "prod"],
        vec!["context", "list"],
        vec!["context", "list", "--json"],
    ] {
        let o = bare(home.path()).args(&args).output().unwrap();
        let (out, err) = text(&o);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {out}{err}");
        assert!(
            err.contains("config.toml:3: a literal `api_key` is not allowed")
                && err.contains("api_key_file"),
            "{err}"
        );
        assert!(!out.contains(secret) && !err.contains(secret), "{out}{err}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn context_list_and_show_name_where_the_key_is_never_the_key() {
    let server = start(small(132)).await;
    let home = tempfile::tempdir().unwrap();
    let config = write_config(home.path(), &server, "mock");
    let o = bare(home.path())
        .args(["context", "list", "--json"])
        .env("OTHER_KEY", "other-secret-value")
        .output()
        .unwrap();
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(0), "{err}");
    assert!(!out.contains(server.api_key()) && !out.contains("other-secret-value"));
    let doc: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(doc["config"], config.display().to_string());
    assert_eq!(doc["default_context"], "mock");
    let list = doc["contexts"].as_array().unwrap();
    let names: Vec<&str> = list.iter().map(|c| c["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["mock", "other"]);
    let key_file = config.parent().unwrap().join("mock.key");
    assert_eq!(list[0]["server"], server.base_url());
    assert_eq!(list[0]["enterprise_id"], server.enterprise_id());
    assert_eq!(list[0]["key"]["file"], key_file.display().to_string());
    assert_eq!(list[0]["current"], true);
    assert_eq!(list[0]["chosen_by"], "default");
    assert_eq!(list[1]["key"]["env"], "OTHER_KEY");
    assert_eq!(
        list[1]["key_origin"],
        "environment variable OTHER_KEY (set)"
    );
    assert_eq!(list[1]["current"], false);

    let o = bare(home.path())
        .args(["context", "show", "other"])
        .output()
        .unwrap();
    let (out, _) = text(&o);
    assert_eq!(o.status.code(), Some(0));
    assert!(out.contains("server:     http://127.0.0.1:1/api"), "{out}");
    assert!(
        out.contains("key:        environment variable OTHER_KEY (not set)"),
        "{out}"
    );
    assert!(
        out.contains("in use:     no\n"),
        "the default is `mock`: {out}"
    );
    let o = bare(home.path())
        .args(["context", "show", "--context", "other"])
        .output()
        .unwrap();
    assert!(
        text(&o).0.contains("in use:     yes (by --context)"),
        "{:?}",
        text(&o)
    );
    let o = bare(home.path())
        .args(["context", "show", "--json"])
        .output()
        .unwrap();
    let doc: serde_json::Value = serde_json::from_str(&text(&o).0).unwrap();
    assert_eq!(doc["name"], "mock");
    assert_eq!(
        doc["key_origin"],
        format!("file {} (readable)", key_file.display())
    );

    // --config names another file; one that is not there is an error, not an empty list.
    let elsewhere = home.path().join("elsewhere.toml");
    std::fs::write(&elsewhere, "[contexts.lab]\ntenant = \"acme-lab\"\n").unwrap();
    let o = bare(home.path())
        .args(["context", "list", "--json", "--config"])
        .arg(&elsewhere)
        .output()
        .unwrap();
    let doc: serde_json::Value = serde_json::from_str(&text(&o).0).unwrap();
    assert_eq!(doc["contexts"][0]["name"], "lab");
    assert_eq!(
        doc["contexts"][0]["server"],
        "https://acme-lab-api.esper.cloud/api"
    );
    let o = bare(home.path())
        .args(["context", "list", "--config"])
        .arg(home.path().join("missing.toml"))
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2), "{:?}", text(&o));

    let o = bare(home.path())
        .args(["context", "use", "other"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0));
    let o = bare(home.path())
        .args(["context", "list"])
        .output()
        .unwrap();
    let (out, _) = text(&o);
    let current: Vec<&str> = out.lines().filter(|l| l.starts_with('*')).collect();
    assert_eq!(current.len(), 1, "{out}");
    assert!(current[0].contains("other"), "{out}");
}

/// Kills the child when the test ends, however it ends.
struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn mock_write_context_takes_a_new_user_from_mock_to_plan_without_exports() {
    let home = tempfile::tempdir().unwrap();
    let mut child = Child(
        bare(home.path())
            .args(["mock", "--groups", "3", "--devices-per-group", "2"])
            .args(["--write-context", "local"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let stdout = child.0.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    let mut printed = Vec::new();
    // The mock prints a handful of lines and then serves; the bound keeps a change in
    // them from hanging the test.
    for line in lines.by_ref().take(20) {
        let line = line.unwrap();
        let done = line.starts_with("context `local` written to");
        printed.push(line);
        if done {
            break;
        }
    }
    let said = printed.join("\n");
    assert!(said.contains("context `local` written to"), "{said}");
    let key = printed
        .iter()
        .find_map(|l| l.strip_prefix("api_key: "))
        .unwrap()
        .to_string();

    let dir = home.path().join("config/esper-bulk");
    let config = std::fs::read_to_string(dir.join("config.toml")).unwrap();
    assert!(!config.contains(&key), "the key is not in config.toml");
    assert!(config.contains("default_context = \"local\""), "{config}");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.join("local.key"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    let job = home.path().join("job.yaml");
    std::fs::write(&job, PORTABLE_JOB).unwrap();
    let o = bare(home.path())
        .args(["plan", job.to_str().unwrap()])
        .output()
        .unwrap();
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(0), "{out}\n{err}");
    assert!(out.contains("3 tasks") || out.contains("alarm"), "{out}");
}

#[test]
fn completion_scripts_for_every_shell_and_bash_completes_a_subcommand() {
    let home = tempfile::tempdir().unwrap();
    for shell in ["bash", "zsh", "fish", "powershell", "elvish"] {
        let o = bare(home.path())
            .args(["completions", shell])
            .output()
            .unwrap();
        let (out, err) = text(&o);
        assert_eq!(o.status.code(), Some(0), "{shell}: {err}");
        assert!(
            out.contains("esper-bulk") && out.contains("prune") && out.contains("resume"),
            "{shell}: {out}"
        );
    }
    let script = home.path().join("esper-bulk.bash");
    let o = bare(home.path())
        .args(["completions", "bash"])
        .output()
        .unwrap();
    std::fs::write(&script, &o.stdout).unwrap();
    // `complete -p` names the function; calling it as bash would for `esper-bulk pl<Tab>`
    // must offer `plan`.
    let probe = r#"
source "$1"
spec=$(complete -p esper-bulk) || exit 7
fn=$(sed -E 's/.*-F ([^ ]+).*/\1/' <<<"$spec")
COMP_WORDS=(esper-bulk pl); COMP_CWORD=1; COMP_LINE="esper-bulk pl"; COMP_POINT=${#COMP_LINE}
"$fn" esper-bulk pl esper-bulk
printf '%s\n' "${COMPREPLY[@]}"
"#;
    let o = Command::new("bash")
        .args(["-c", probe, "probe"])
        .arg(&script)
        .output()
        .unwrap();
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(0), "{err}");
    assert_eq!(out.trim(), "plan", "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_completion_offers_run_ids_and_context_names() {
    let server = start(small(133)).await;
    let home = tempfile::tempdir().unwrap();
    write_config(home.path(), &server, "mock");
    let state = home.path().join("state/esper-bulk");
    let job = load(
        &server,
        &format!("{}{}", job_header(&server, "50/s"), STEPS),
    );
    let r = run(
        run_config(&server, Source::Job(Box::new(job)), &state),
        CancellationToken::new(),
    )
    .await;
    let script = home.path().join("dynamic.bash");
    let o = bare(home.path()).env("COMPLETE", "bash").output().unwrap();
    assert_eq!(o.status.code(), Some(0));
    std::fs::write(&script, &o.stdout).unwrap();
    let probe = r#"
source "$1"
fn=$(complete -p esper-bulk | sed -E 's/.*-F ([^ ]+).*/\1/')
shift
COMP_WORDS=(esper-bulk "$@"); COMP_CWORD=$(( ${#COMP_WORDS[@]} - 1 ))
COMP_LINE="${COMP_WORDS[*]}"; COMP_POINT=${#COMP_LINE}
"$fn" esper-bulk "${COMP_WORDS[COMP_CWORD]}" "${COMP_WORDS[COMP_CWORD-1]}"
printf '%s\n' "${COMPREPLY[@]}"
"#;
    // bash with the environment `bare` gives the binary, so the script's call back into
    // the binary sees the same state and config directories.
    let complete = |words: &[&str]| {
        let o = Command::new("bash")
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", home.path())
            .env("XDG_CONFIG_HOME", home.path().join("config"))
            .env("XDG_STATE_HOME", home.path().join("state"))
            .args(["-c", probe, "probe"])
            .arg(&script)
            .args(words)
            .output()
            .unwrap();
        text(&o).0
    };
    let id = r.run_id.to_string();
    for words in [
        vec!["report", ""],
        vec!["unlock", "test-"],
        vec!["run", "--resume", ""],
    ] {
        let offered = complete(&words);
        assert!(
            offered.lines().any(|l| l == id),
            "{words:?} offers the run id: {offered}"
        );
    }
    let offered = complete(&["plan", "x.yaml", "--context", "o"]);
    assert_eq!(offered.trim(), "other");
}

#[test]
fn the_man_page_is_roff() {
    let home = tempfile::tempdir().unwrap();
    let o = bare(home.path()).arg("man").output().unwrap();
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(0), "{err}");
    assert!(out.contains(".TH esper-bulk 1"), "{out}");
    assert!(out.contains(".SH NAME") && out.contains(".SH SUBCOMMANDS"));
    for cmd in ["runs", "prune", "context", "completions"] {
        assert!(out.contains(cmd), "{cmd} is in the man page");
    }
}

const STEPS: &str = "targets:\n  s: { groups: { name: \"Stores/*/*\" } }\nsteps:\n  - id: alarm\n    for_each: s\n    alarm_rule: { name: \"r ${{ item.name }}\", metric: m, conditions: { comparator: Frequency, value: 1, unit: Count }, realert_interval: 60 }\n  - id: reboot\n    command: { to: s, name: REBOOT }\n";

/// Enough store groups, at a slow enough rate, that a one-second deadline cuts the run.
fn slow(seed: u64) -> MockConfig {
    let mut cfg = small(seed);
    cfg.groups = 20;
    cfg.faults.latency = Duration::from_millis(20);
    cfg
}

/// A run of the two-step job named `name` against `server`: finished, or cut by a
/// one-second deadline.
async fn one_run(
    server: &MockServer,
    state: &Path,
    name: &str,
    cut: bool,
) -> esper_bulk::run::RunResult {
    let yaml = format!(
        "{}{STEPS}",
        job_header(server, if cut { "10/s" } else { "200/s" })
    )
    .replace("name: test", &format!("name: {name}"));
    let mut cfg = run_config(server, Source::Job(Box::new(load(server, &yaml))), state);
    if cut {
        cfg.deadline = Some(Duration::from_secs(1));
    }
    run(cfg, CancellationToken::new()).await
}

fn runs_json(home: &Path, state: &Path, extra: &[&str]) -> Vec<serde_json::Value> {
    let o = bare(home)
        .args(["runs", "--json", "--state-dir"])
        .arg(state)
        .args(extra)
        .output()
        .unwrap();
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(0), "{err}");
    let doc: serde_json::Value = serde_json::from_str(&out).unwrap();
    doc["runs"].as_array().unwrap().clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_lists_three_runs_newest_first_with_a_resumed_one_in_two_segments() {
    let server = start(slow(134)).await;
    let home = tempfile::tempdir().unwrap();
    let state = home.path().join("state");
    let first = one_run(&server, &state, "nightly", false).await;
    let cut = one_run(&server, &state, "nightly", true).await;
    assert_eq!(cut.outcome, RunOutcome::Deadline);
    // Before it is resumed it is unfinished, as its journal says.
    let listed = runs_json(home.path(), &state, &[]);
    assert_eq!(listed[0]["outcome"], "incomplete");
    assert_eq!(listed[0]["unfinished"], true);
    let resumed = run(
        run_config(&server, Source::Resume(cut.run_id.clone()), &state),
        CancellationToken::new(),
    )
    .await;
    assert_eq!(resumed.outcome, RunOutcome::Succeeded);
    let last = one_run(&server, &state, "other-job", false).await;

    let listed = runs_json(home.path(), &state, &[]);
    let ids: Vec<&str> = listed
        .iter()
        .map(|r| r["run_id"].as_str().unwrap())
        .collect();
    assert_eq!(
        ids,
        [
            last.run_id.as_str(),
            cut.run_id.as_str(),
            first.run_id.as_str()
        ],
        "newest first"
    );
    let r = &listed[1];
    assert_eq!(r["job"], "nightly");
    assert_eq!(r["outcome"], "succeeded");
    assert_eq!(r["exit_code"], 0);
    assert_eq!(r["segments"], 2, "the first start and the resumption");
    assert_eq!(r["succeeded"], 40);
    assert_eq!(
        (r["failed"].clone(), r["not_started"].clone()),
        (0.into(), 0.into())
    );
    assert_eq!(r["unfinished"], false);
    assert!(r["duration_ms"].as_u64().unwrap() > 0);
    let at = |k: &str| r[k].as_str().unwrap().parse::<jiff::Timestamp>().unwrap();
    assert!(at("started_at") < at("finished_at"));
    assert_eq!(listed[0]["segments"], 1);
    assert_eq!(listed[2]["succeeded"], 40);

    // A report left behind by an earlier segment is not trusted over a newer journal.
    std::fs::remove_file(resumed.run_dir.join("report.json")).unwrap();
    let again = runs_json(home.path(), &state, &["--job", "nightly", "--limit", "1"]);
    assert_eq!(again.len(), 1);
    assert_eq!(again[0]["run_id"], cut.run_id.as_str());
    assert_eq!(
        (again[0]["outcome"].clone(), again[0]["segments"].clone()),
        ("succeeded".into(), 2.into()),
        "rebuilt from the journal"
    );

    // The text table has the same runs, and `report` takes the run id.
    let o = bare(home.path())
        .args(["runs", "--state-dir"])
        .arg(&state)
        .output()
        .unwrap();
    let (out, _) = text(&o);
    assert!(out.starts_with("RUN ID"), "{out}");
    assert_eq!(out.lines().count(), 4, "{out}");
    let o = bare(home.path())
        .args([
            "report",
            cut.run_id.as_str(),
            "--format",
            "json",
            "--stdout",
        ])
        .arg("--state-dir")
        .arg(&state)
        .output()
        .unwrap();
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(0), "{err}");
    let report: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(report["run"]["id"], cut.run_id.as_str());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prune_keeps_locked_and_unfinished_runs() {
    let server = start(slow(135)).await;
    let home = tempfile::tempdir().unwrap();
    let state = home.path().join("state");
    let mut finished = Vec::new();
    for _ in 0..3 {
        finished.push(one_run(&server, &state, "nightly", false).await.run_id);
    }
    let unfinished = one_run(&server, &state, "nightly", true).await;
    assert_eq!(unfinished.outcome, RunOutcome::Deadline);
    // The oldest finished run is being worked on right now (say, `report` or a resume in
    // another process): its lock is held.
    let holder = esper_bulk::lock::Holder {
        pid: std::process::id(),
        host: esper_bulk::lock::hostname(),
        started: "2026-12-01T00:00:00Z".into(),
        run_id: finished[0].to_string(),
        job: "nightly".into(),
        server: server.base_url(),
        enterprise: server.enterprise_id().into(),
    };
    let held = esper_bulk::lock::acquire(&state, &holder, None, &|| false).unwrap();

    let prune = |extra: &[&str]| {
        let o = bare(home.path())
            .args(["prune", "--state-dir"])
            .arg(&state)
            .args(extra)
            .output()
            .unwrap();
        let (out, err) = text(&o);
        assert_eq!(o.status.code(), Some(0), "{err}");
        (out, err)
    };
    let dirs = || {
        let mut d: Vec<String> = std::fs::read_dir(state.join("runs"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        d.sort();
        d
    };
    let before = dirs();
    assert_eq!(before.len(), 4);

    // Nothing is 30 days old, and a dry run deletes nothing.
    let (out, _) = prune(&["--older-than", "30d"]);
    assert_eq!(out, "");
    let (out, _) = prune(&["--keep", "0", "--dry-run", "--json"]);
    let doc: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(doc["dry_run"], true);
    assert_eq!(doc["deleted"].as_array().unwrap().len(), 2);
    assert_eq!(dirs(), before);

    // Keep the newest one: the unfinished run is newest; of the rest, the locked one stays.
    let (out, err) = prune(&["--keep", "1"]);
    let deleted: Vec<&str> = out.lines().collect();
    assert_eq!(deleted.len(), 2, "{out}");
    assert!(deleted.iter().all(|l| l.starts_with("deleted nightly-")));
    assert!(
        err.contains(&format!("kept {}: it is running", finished[0])),
        "{err}"
    );
    let left = dirs();
    let mut expected = vec![finished[0].to_string(), unfinished.run_id.to_string()];
    expected.sort();
    assert_eq!(left, expected);

    // Unlocked and with no count to keep, the finished one goes; the unfinished one never.
    drop(held);
    let (out, err) = prune(&["--keep", "0"]);
    assert_eq!(out.lines().count(), 1, "{out}");
    assert!(err.contains("unfinished (incomplete)"), "{err}");
    assert_eq!(dirs(), [unfinished.run_id.to_string()]);
    assert!(
        !state.join("tmp").exists()
            || std::fs::read_dir(state.join("tmp")).unwrap().all(|e| !e
                .unwrap()
                .file_name()
                .to_string_lossy()
                .starts_with("pruned-")),
        "nothing half-deleted is left behind"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unlock_takes_a_run_directory_as_well_as_an_id() {
    let server = start(small(136)).await;
    let home = tempfile::tempdir().unwrap();
    let state = home.path().join("state");
    let r = one_run(&server, &state, "nightly", false).await;
    // A record left by a dead run of it (the lock file is not held).
    let holder = esper_bulk::lock::Holder {
        pid: 1,
        host: "gone".into(),
        started: "2026-12-01T00:00:00Z".into(),
        run_id: r.run_id.to_string(),
        job: "nightly".into(),
        server: server.base_url(),
        enterprise: server.enterprise_id().into(),
    };
    drop(esper_bulk::lock::acquire(&state, &holder, None, &|| false).unwrap());
    let lock = std::fs::read_dir(state.join("locks"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    std::fs::write(&lock, serde_json::to_string(&holder).unwrap()).unwrap();
    let o = bare(home.path())
        .arg("unlock")
        .arg(&r.run_dir)
        .output()
        .unwrap();
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(0), "{err}");
    assert!(
        out.contains(&format!("cleared the lock left by run {}", r.run_id)),
        "{out}"
    );
    let o = bare(home.path())
        .args(["unlock", r.run_id.as_str(), "--state-dir"])
        .arg(&state)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2), "already cleared: {:?}", text(&o));
}

/// The documents of a multi-document YAML file.
fn yaml_documents(text: &str) -> Vec<serde_yaml::Value> {
    use serde::Deserialize;
    serde_yaml::Deserializer::from_str(text)
        .map(|d| serde_yaml::Value::deserialize(d).unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cronjob_example_parses_and_its_command_line_runs_against_the_mock() {
    let docs = yaml_documents(include_str!("../../examples/kubernetes/cronjob.yaml"));
    let kind = |k: &str| {
        docs.iter()
            .find(|d| d["kind"] == k)
            .unwrap_or_else(|| panic!("a {k}"))
    };
    let cron = kind("CronJob");
    assert_eq!(cron["spec"]["concurrencyPolicy"], "Forbid");
    let pod = &cron["spec"]["jobTemplate"]["spec"]["template"]["spec"];
    let container = &pod["containers"][0];
    let args: Vec<String> = container["args"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap().to_string())
        .collect();
    let mount = |volume: &str| {
        container["volumeMounts"]
            .as_sequence()
            .unwrap()
            .iter()
            .find(|m| m["name"] == volume)
            .unwrap()["mountPath"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let volume = |name: &str| {
        pod["volumes"]
            .as_sequence()
            .unwrap()
            .iter()
            .find(|v| v["name"] == name)
            .unwrap()
            .clone()
    };
    // The key is a Secret file, the state a claim, the job a ConfigMap.
    assert!(volume("api-key")["secret"]["secretName"].is_string());
    let claim = volume("state")["persistentVolumeClaim"]["claimName"].clone();
    assert_eq!(kind("PersistentVolumeClaim")["metadata"]["name"], claim);
    assert!(args.contains(&"--resume".to_string()));

    // The real grammar accepts the command line as written.
    use clap::Parser;
    let parsed = esper_bulk::cli::Cli::try_parse_from(
        std::iter::once("esper-bulk".to_string()).chain(args.iter().cloned()),
    );
    assert!(parsed.is_ok(), "{:?}", parsed.err());

    // And it runs: the mounts become temporary directories, the tenant the mock.
    let server = start(small(137)).await;
    let root = tempfile::tempdir().unwrap();
    let (jobs, secrets, state) = (mount("jobs"), mount("api-key"), mount("state"));
    let local = |p: &str| root.path().join(p.trim_start_matches('/'));
    let configmap = kind("ConfigMap");
    for (name, body) in configmap["data"].as_mapping().unwrap() {
        let path = local(&jobs).join(name.as_str().unwrap());
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, body.as_str().unwrap()).unwrap();
    }
    std::fs::create_dir_all(local(&secrets)).unwrap();
    std::fs::write(local(&secrets).join("api-key"), server.api_key()).unwrap();
    let localized: Vec<String> = args
        .iter()
        .map(|a| {
            if [&jobs, &secrets, &state]
                .iter()
                .any(|m| a.starts_with(m.as_str()))
            {
                local(a).display().to_string()
            } else {
                a.clone()
            }
        })
        .collect();
    let o = bare(root.path())
        .args(&localized)
        // The manifest's ESPER_TENANT names the real tenant; the mock stands in for it.
        .env("ESPER_BASE_URL", server.base_url())
        .env("ESPER_ENTERPRISE_ID", server.enterprise_id())
        .output()
        .unwrap();
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(0), "{out}\n{err}");
    let runs = std::fs::read_dir(local(&state).join("runs"))
        .unwrap()
        .count();
    assert_eq!(runs, 1, "the run directory is on the state volume");
    assert_eq!(
        server.snapshot().alarm_rules.len(),
        small(137).groups,
        "one rule per store group"
    );
    // The next slot finds nothing unfinished and starts a fresh run that changes nothing.
    let o = bare(root.path())
        .args(&localized)
        .env("ESPER_BASE_URL", server.base_url())
        .env("ESPER_ENTERPRISE_ID", server.enterprise_id())
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{:?}", text(&o));
    assert_eq!(server.stats().duplicates.alarm_rules, 0);
}

#[test]
fn the_containerfile_builds_locked_and_runs_as_a_non_root_user_with_a_state_volume() {
    let text = include_str!("../../examples/container/Containerfile");
    let from: Vec<&str> = text.lines().filter(|l| l.starts_with("FROM ")).collect();
    assert_eq!(from.len(), 2, "a builder and a runtime stage");
    assert!(text.contains("cargo build --release --locked"));
    let runtime = &text[text.rfind("FROM ").unwrap()..];
    assert!(runtime.contains("USER 65532"), "non-root at runtime");
    assert!(runtime.contains("VOLUME /var/lib/esper-bulk"));
    assert!(runtime.contains("ENV STATE_DIRECTORY=/var/lib/esper-bulk"));
    assert!(runtime.contains(r#"ENTRYPOINT ["esper-bulk"]"#));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_in_progress_is_listed_as_running_and_prune_leaves_it() {
    let server = start(slow(138)).await;
    let home = tempfile::tempdir().unwrap();
    let state = home.path().join("state");
    let running = one_run(&server, &state, "nightly", true);
    let watch = async {
        // Bounded: the run lasts about a second; polls every 10 ms until it is listed.
        for _ in 0..500 {
            let listed = esper_bulk::run::list_runs(&state, None).unwrap();
            if let Some(r) = listed.first() {
                let policy = esper_bulk::run::PrunePolicy {
                    keep: Some(0),
                    ..Default::default()
                };
                let pruned =
                    esper_bulk::run::prune(&state, &policy, false, jiff::Timestamp::now()).unwrap();
                return Some((r.clone(), pruned));
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        None
    };
    let (done, seen) = tokio::join!(running, watch);
    let (listed, pruned) = seen.expect("the run was listed while it ran");
    assert_eq!(listed.run_id, done.run_id.to_string());
    assert_eq!(
        (listed.outcome.as_str(), listed.exit_code, listed.locked),
        ("running", None, true)
    );
    assert!(pruned.deleted.is_empty());
    assert_eq!(pruned.kept.len(), 1);
    assert_eq!(pruned.kept[0].1, esper_bulk::run::Kept::Locked);
    assert!(done.run_dir.exists());
}

/// `context list` and `context show` as a person sees them, the temporary home written as
/// `$HOME` (`BLESS=1 cargo test --test it daily` rewrites them).
#[test]
fn context_output_matches_its_golden_files() {
    let home = tempfile::tempdir().unwrap();
    let dir = home.path().join("config/esper-bulk");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("production.key"), "k").unwrap();
    std::fs::write(
        dir.join("config.toml"),
        "default_context = \"production\"\n\n[contexts.production]\ntenant = \"acme\"\nenterprise_id = \"1a2b3c4d-0000-4000-8000-000000000002\"\napi_key_file = \"production.key\"\n\n[contexts.staging]\ntenant = \"acme-staging\"\napi_key_env = \"ESPER_STAGING_KEY\"\n",
    )
    .unwrap();
    let golden = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/cli");
    let mut bad = Vec::new();
    for (name, args) in [
        ("context-list.txt", vec!["context", "list"]),
        ("context-show.txt", vec!["context", "show", "staging"]),
    ] {
        let o = bare(home.path()).args(&args).output().unwrap();
        assert_eq!(o.status.code(), Some(0), "{:?}", text(&o));
        let actual = text(&o)
            .0
            .replace(&home.path().display().to_string(), "$HOME");
        let path = golden.join(name);
        if crate::support::blessing() {
            std::fs::create_dir_all(&golden).unwrap();
            std::fs::write(&path, &actual).unwrap();
            continue;
        }
        let expected = std::fs::read_to_string(&path).unwrap_or_default();
        if expected != actual {
            bad.push(format!(
                "{name}:\n{}",
                crate::support::diff(&expected, &actual)
            ));
        }
    }
    assert!(bad.is_empty(), "{}", bad.join("\n"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_crontab_prune_line_runs_and_keeps_what_it_says() {
    let crontab = include_str!("../../examples/crontab");
    let line = crontab
        .lines()
        .find(|l| !l.starts_with('#') && l.contains(" prune "))
        .expect("a prune line");
    let home = tempfile::tempdir().unwrap();
    let state = home.path().join("state");
    let args: Vec<String> = line
        .split_whitespace()
        .skip(6)
        .take_while(|w| *w != ">>")
        .map(|w| w.replace("/var/lib/esper-bulk", &state.display().to_string()))
        .collect();
    let server = start(small(139)).await;
    let mut ids = Vec::new();
    for _ in 0..2 {
        ids.push(one_run(&server, &state, "nightly", false).await.run_id);
    }
    let keep: usize = args[args.iter().position(|a| a == "--keep").unwrap() + 1]
        .parse()
        .unwrap();
    assert!(keep >= 2, "the example keeps more than this test makes");
    let o = bare(home.path()).args(&args).output().unwrap();
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(0), "{err}");
    assert_eq!(out, "", "nothing to delete");
    assert!(
        err.lines()
            .all(|l| serde_json::from_str::<serde_json::Value>(l).is_ok()),
        "--log-format json: {err}"
    );
    assert_eq!(std::fs::read_dir(state.join("runs")).unwrap().count(), 2);
}
