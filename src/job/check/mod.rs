//! Checking a job file: from the spanned YAML tree to a [`Job`], collecting every problem.
//!
//! This file is the driver. It owns the checking context ([`Cx`]) every pass reports
//! into, the `${NAME}` substitution that runs before any pass looks at a value, the order
//! of the passes, and the assembly of the [`Job`] once none of them found an error. The
//! passes live beside it: `load_templates` (`${{ vars.* }}` in keys read when the job
//! loads), `shape_pass` (the tree against the tables in `job/shape.rs`),
//! `settings` (version, name, `esper:`, `limits:`, `retry:`, `vars:`), `targets`, `steps`
//! (each step and its operation, built in `ops`; a command's `schedule` in `schedule`),
//! `needs` (the dependency graph and its cycles) and `refs` (every `${{ … }}`); `values`
//! parses the durations, rates, amounts and clock times they share. Every diagnostic points at a line and column. Nothing here touches the
//! network; files (CSV device lists) are read through [`Host`].

mod coordinator;
mod load_templates;
mod needs;
mod notify;
mod ops;
mod refs;
mod schedule;
mod settings;
mod shape_pass;
mod steps;
mod targets;
mod values;

pub use settings::tenant_base_url;
pub use targets::csv_column;
pub use values::{
    ATTEMPTS_RANGE, DURATION_UNITS, DurationError, IN_FLIGHT_RANGE, MAX_DURATION, MAX_NAME_CHARS,
    RATE_RANGE, TIME_OF_DAY_PATTERN, duration_pattern, parse_amount, parse_date_time,
    parse_duration, parse_duration_str, parse_rate, parse_time_of_day,
};

use std::collections::BTreeSet;

use super::model::*;
use super::node::{Kind, Node, Pos, Span};
use super::shape;
use super::{Diagnostic, Diagnostics, Host, Severity, closest, template};

/// How strict a check is about the environment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EnvMode {
    /// Every `${NAME}` must be set: the job is about to be planned or run.
    Strict,
    /// `${NAME}` in `esper:` may be unset (a warning): `validate` connects to nothing, so
    /// CI can lint jobs without the connection's variables.
    Lint,
}

/// What checking found: the job or its errors, and where the file holds secrets (so that
/// no rendering of a diagnostic shows them).
pub struct Checked {
    pub result: Result<(Job, Vec<Diagnostic>), Diagnostics>,
    pub secrets: Vec<Span>,
}

/// Checks a parsed job file.
pub fn check(file: &str, root: &Node, host: &Host, env_mode: EnvMode) -> Checked {
    let mut cx = Cx {
        file,
        host,
        env_mode,
        diags: Vec::new(),
        parent_key: None,
        reported: BTreeSet::new(),
        secrets: Vec::new(),
    };
    let result = check_in(&mut cx, root);
    Checked {
        result,
        secrets: cx.secrets,
    }
}

fn check_in(cx: &mut Cx, root: &Node) -> Result<(Job, Vec<Diagnostic>), Diagnostics> {
    let cx = &mut *cx;
    let mut root = subst_env_outside_esper(cx, root);
    load_templates::render_at_load(cx, &mut root);
    let root = &root;
    shape_pass::check_shape(cx, root, &shape::JOB, "");
    if root.as_map().is_none() {
        return Err(Diagnostics(std::mem::take(&mut cx.diags)));
    }
    let settings = settings::settings(cx, root);
    let targets = targets::targets(cx, root.get("targets"));
    let steps = steps::steps(cx, root.get("steps"), &targets, &settings.vars);
    let notify = notify::notify(cx, root.get("notify"));
    let coordinator = coordinator::coordinator(cx, root.get("coordinator"));

    cx.diags.sort_by_key(|d| d.span.map(|s| s.start));
    if cx.diags.iter().any(|d| d.severity == Severity::Error) {
        return Err(Diagnostics(std::mem::take(&mut cx.diags)));
    }
    let job = Job {
        name: settings.name,
        description: settings.description,
        source: cx.file.to_string(),
        esper: settings.esper,
        limits: settings.limits,
        retry: settings.retry,
        deadline: settings.deadline,
        vars: settings.vars,
        targets: targets.into_iter().map(|(k, (_, t))| (k, t)).collect(),
        steps,
        notify,
        coordinator,
    };
    Ok((job, std::mem::take(&mut cx.diags)))
}

/// What every pass reports into.
struct Cx<'a> {
    file: &'a str,
    host: &'a Host<'a>,
    env_mode: EnvMode,
    diags: Vec<Diagnostic>,
    /// The key whose value is being checked, so "missing key" errors can point at
    /// `alarm_rule:` rather than at whichever key happens to come first in the map.
    parent_key: Option<Span>,
    /// Values whose every problem was reported by an earlier pass, so later passes do not
    /// report the same value again in other words.
    reported: BTreeSet<Pos>,
    /// Values that are secrets (a literal API key); diagnostics never show them.
    secrets: Vec<Span>,
}

impl Cx<'_> {
    fn push(
        &mut self,
        severity: Severity,
        span: Span,
        path: &str,
        message: String,
        help: Option<String>,
    ) {
        self.diags.push(Diagnostic {
            severity,
            file: self.file.to_string(),
            span: Some(span),
            path: path.to_string(),
            message,
            help,
            snippet: None,
        });
    }
    fn error(&mut self, at: &Node, path: &str, message: impl Into<String>, help: Option<String>) {
        self.push(Severity::Error, at.span, path, message.into(), help);
    }
    fn warn(&mut self, at: &Node, path: &str, message: impl Into<String>, help: Option<String>) {
        self.push(Severity::Warning, at.span, path, message.into(), help);
    }
    fn mark_reported(&mut self, n: &Node) {
        self.reported.insert(n.span.start);
    }
    fn was_reported(&self, n: &Node) -> bool {
        self.reported.contains(&n.span.start)
    }
    /// Substitutes `${NAME}` in a connection setting of `esper:`; a missing variable is an
    /// error, or a warning when linting (the setting is then left unset).
    fn env(&mut self, node: &Node, path: &str) -> Option<String> {
        let s = node.scalar_text()?;
        match template::subst_env(&s, self.host.env) {
            Ok(v) => Some(v),
            Err(e @ template::EnvError::Unset(_)) if self.env_mode == EnvMode::Lint => {
                self.warn(
                    node,
                    path,
                    e.to_string(),
                    Some("`validate` connects to nothing, so this is only a warning; export the variable before `plan` or `run`".into()),
                );
                None
            }
            Err(e) => {
                self.unset_env(node, path, e.to_string());
                None
            }
        }
    }
    fn unset_env(&mut self, at: &Node, path: &str, message: String) {
        self.error(
            at,
            path,
            message,
            Some("export the variable before running, or write the value in the file".into()),
        );
    }
}

// ---------------------------------------------------------------- environment

/// The tree with `${NAME}` read from the environment everywhere, once, before anything
/// else looks at the values. The `esper:` block is left as written: it substitutes its
/// own values, so that `api_key` stays a reference to the variable rather than the key;
/// so is `notify:`, whose URLs keep their `${NAME}`s until the run sends.
fn subst_env_outside_esper(cx: &mut Cx, root: &Node) -> Node {
    let mut root = root.clone();
    if let Kind::Map(pairs) = &mut root.kind {
        for (k, v) in pairs.iter_mut() {
            // `notify:` URLs are secrets, rendered only when the run sends.
            // So is `coordinator:`, whose URL may carry a Redis password.
            if !matches!(k.as_str(), Some("esper" | "notify" | "coordinator")) {
                let key = k.scalar_text().unwrap_or_default();
                subst_env_tree(cx, v, &key);
            }
        }
    }
    root
}

/// Replaces `${NAME}` in every string of a subtree, reporting unset variables in place.
fn subst_env_tree(cx: &mut Cx, n: &mut Node, path: &str) {
    match &mut n.kind {
        Kind::Str(s) if s.contains("${") => match template::subst_env(s, cx.host.env) {
            Ok(v) => *s = v,
            Err(e) => {
                let at = n.clone();
                cx.unset_env(&at, path, e.to_string());
            }
        },
        Kind::Seq(items) => {
            for (i, it) in items.iter_mut().enumerate() {
                subst_env_tree(cx, it, &format!("{path}[{i}]"));
            }
        }
        Kind::Map(pairs) => {
            for (k, v) in pairs.iter_mut() {
                let key = join(path, &k.scalar_text().unwrap_or_default());
                subst_env_tree(cx, v, &key);
            }
        }
        _ => {}
    }
}

// ---------------------------------------------------------------- helpers of every pass

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

fn is_template(n: &Node) -> bool {
    n.as_str().is_some_and(|s| s.contains("${{"))
}

/// The scalar under `key` as text.
fn text(n: &Node, key: &str) -> Option<String> {
    n.get(key).and_then(Node::scalar_text)
}

/// A string or a list of strings, as a list.
fn strs(n: Option<&Node>) -> Vec<String> {
    match n {
        Some(n) => match n.as_seq() {
            Some(items) => items.iter().filter_map(Node::scalar_text).collect(),
            None => n.scalar_text().into_iter().collect(),
        },
        None => Vec::new(),
    }
}

/// Help for an unknown name: the likely typo, else what is defined.
fn help_names(word: &str, names: &[String]) -> Option<String> {
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    match closest(word, &refs) {
        Some(c) => Some(format!("did you mean `{c}`?")),
        None if names.is_empty() => Some("none are defined yet".into()),
        None => Some(format!("defined: {}", refs.join(", "))),
    }
}
