//! Checking a job file: from the spanned YAML tree to a [`Job`], collecting every problem.
//!
//! This file is the driver. It owns the checking context ([`Cx`]) every pass reports
//! into, the `${NAME}` substitution that runs before any pass looks at a value, the order
//! of the passes, and the assembly of the [`Job`] once none of them found an error. The
//! passes live beside it: `shape_pass` (the tree against the tables in `job/shape.rs`),
//! `settings` (version, name, `esper:`, `limits:`, `retry:`, `vars:`), `targets`, `steps`
//! (each step and its operation, built in `ops`), `needs` (the dependency graph and its
//! cycles) and `refs` (every `${{ … }}`); `values` parses the durations, rates and amounts
//! they share. Every diagnostic points at a line and column. Nothing here touches the
//! network; files (CSV device lists) are read through [`Host`].

mod needs;
mod ops;
mod refs;
mod settings;
mod shape_pass;
mod steps;
mod targets;
mod values;

pub use targets::csv_column;
pub use values::{parse_amount, parse_duration, parse_rate};

use super::model::*;
use super::node::{Kind, Node, Span};
use super::shape;
use super::{Diagnostic, Diagnostics, Host, Severity, closest, template};

/// Checks a parsed job file.
pub fn check(file: &str, root: &Node, host: &Host) -> Result<(Job, Vec<Diagnostic>), Diagnostics> {
    let mut cx = Cx {
        file,
        host,
        diags: Vec::new(),
        parent_key: None,
    };
    let root = &subst_env_outside_esper(&mut cx, root);
    shape_pass::check_shape(&mut cx, root, &shape::JOB, "");
    if root.as_map().is_none() {
        return Err(Diagnostics(cx.diags));
    }
    let settings = settings::settings(&mut cx, root);
    let targets = targets::targets(&mut cx, root.get("targets"));
    let steps = steps::steps(&mut cx, root.get("steps"), &targets, &settings.vars);

    if cx.diags.iter().any(|d| d.severity == Severity::Error) {
        cx.diags.sort_by_key(|d| d.span.map(|s| s.start));
        return Err(Diagnostics(cx.diags));
    }
    let job = Job {
        name: settings.name,
        description: settings.description,
        source: file.to_string(),
        esper: settings.esper,
        limits: settings.limits,
        retry: settings.retry,
        deadline: settings.deadline,
        vars: settings.vars,
        targets: targets.into_iter().map(|(k, (_, t))| (k, t)).collect(),
        steps,
    };
    Ok((job, cx.diags))
}

/// What every pass reports into.
struct Cx<'a> {
    file: &'a str,
    host: &'a Host<'a>,
    diags: Vec<Diagnostic>,
    /// The key whose value is being checked, so "missing key" errors can point at
    /// `alarm_rule:` rather than at whichever key happens to come first in the map.
    parent_key: Option<Span>,
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
        });
    }
    fn error(&mut self, at: &Node, path: &str, message: impl Into<String>, help: Option<String>) {
        self.push(Severity::Error, at.span, path, message.into(), help);
    }
    fn warn(&mut self, at: &Node, path: &str, message: impl Into<String>, help: Option<String>) {
        self.push(Severity::Warning, at.span, path, message.into(), help);
    }
    /// Substitutes `${NAME}`; reports a missing variable at the node.
    fn env(&mut self, node: &Node, path: &str) -> Option<String> {
        let s = node.scalar_text()?;
        match template::subst_env(&s, self.host.env) {
            Ok(v) => Some(v),
            Err(e) => {
                self.unset_env(node, path, e);
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
/// own values, so that `api_key` stays a reference to the variable rather than the key.
fn subst_env_outside_esper(cx: &mut Cx, root: &Node) -> Node {
    let mut root = root.clone();
    if let Kind::Map(pairs) = &mut root.kind {
        for (k, v) in pairs.iter_mut() {
            if k.as_str() != Some("esper") {
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
                cx.unset_env(&at, path, e);
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
