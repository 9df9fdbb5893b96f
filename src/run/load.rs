//! Loading job files from disk: the host side of [`crate::job::load`], which is pure.
//!
//! This gives the validator the environment and the files a job names (CSV lists, APKs,
//! content, all relative to the job file), makes those paths absolute for the run, and
//! renders diagnostics with their source lines. It also runs `esper-bulk validate` over
//! files, directories and standard input ([`validate_paths`]), which connects to nothing
//! and needs no secrets, and phrases its results as text or one JSON document; printing
//! them is the CLI's. Validation itself is the job module's.

use std::io::Read;
use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use crate::exit;
use crate::job::{self, Diagnostic, Diagnostics, Job, Severity};
use crate::util::MAX_INPUT_BYTES;

use super::RunError;
use super::config::Env;

/// Reads a job file: a regular file of at most [`MAX_INPUT_BYTES`] (a FIFO or a device
/// would hang or never end).
pub(super) fn read_job_file(path: &Path) -> std::io::Result<String> {
    crate::util::read_text(path, MAX_INPUT_BYTES)
}

/// A valid job and its warnings.
#[derive(Debug)]
pub struct LoadedJob {
    pub job: Job,
    /// Rendered with their source lines, ready to print.
    pub warnings: Vec<String>,
}

/// Reads and validates the job file at `path`.
pub fn load_job(path: &Path, env: &Env) -> Result<LoadedJob, RunError> {
    let text = read_job_file(path).map_err(|source| RunError::ReadJob {
        path: path.to_path_buf(),
        source,
    })?;
    let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
    load_job_text(&path.display().to_string(), &text, &base, env)
}

/// Validates job text named `file`; files the job names are relative to `base`.
pub fn load_job_text(
    file: &str,
    text: &str,
    base: &Path,
    env: &Env,
) -> Result<LoadedJob, RunError> {
    match check(file, text, base, env, Strictness::Plan) {
        Ok((mut job, warnings)) => {
            job.resolve_paths(base);
            Ok(LoadedJob {
                job,
                warnings: warnings.iter().map(|w| w.render(Some(text))).collect(),
            })
        }
        Err(d) => Err(RunError::InvalidJob {
            file: file.to_string(),
            rendered: d.render(text),
        }),
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Strictness {
    /// The job is about to be planned or run: every variable must be set.
    Plan,
    /// `validate`: unset connection variables are warnings.
    Lint,
}

fn check(
    file: &str,
    text: &str,
    base: &Path,
    env: &Env,
    strictness: Strictness,
) -> Result<(Job, Vec<Diagnostic>), Diagnostics> {
    let read = |p: &str| {
        crate::util::read_text(&base.join(p), MAX_INPUT_BYTES).map_err(job::ReadError::from)
    };
    let lookup = |n: &str| env.get(n);
    let host = job::Host {
        env: &lookup,
        read: &read,
    };
    match strictness {
        Strictness::Plan => job::load(file, text, &host),
        Strictness::Lint => job::validate(file, text, &host),
    }
}

/// What `validate` found in one job file.
#[derive(Debug)]
pub struct Validated {
    /// As given (a file inside a given directory, or `<stdin>` for `-`).
    pub file: String,
    /// The file's text, for the source lines of its diagnostics; `None` if unreadable.
    pub text: Option<String>,
    /// The job's name and step count, when it is valid.
    pub job: Option<(String, usize)>,
    /// Errors and warnings, in line order.
    pub diagnostics: Vec<Diagnostic>,
}

impl Validated {
    pub fn is_valid(&self) -> bool {
        self.job.is_some()
    }
    fn count(&self, s: Severity) -> usize {
        self.diagnostics.iter().filter(|d| d.severity == s).count()
    }
}

/// What `validate` found in every file it was given.
#[derive(Debug)]
pub struct Validation {
    pub files: Vec<Validated>,
}

/// Validates files, the `*.yaml` and `*.yml` files directly inside directories (in name
/// order), and `-` (standard input, read from `stdin`; files it names are relative to the
/// working directory). Sends nothing: `${NAME}` in `esper:` may be unset.
pub fn validate_paths(paths: &[PathBuf], env: &Env, stdin: &mut dyn Read) -> Validation {
    let mut files = Vec::new();
    for p in paths {
        if p.as_os_str() == "-" {
            let text = crate::util::read_bounded(&mut *stdin, MAX_INPUT_BYTES).and_then(|b| {
                String::from_utf8(b).map_err(|_| {
                    std::io::Error::new(std::io::ErrorKind::InvalidData, "it is not UTF-8 text")
                })
            });
            files.push(match text {
                Ok(text) => validate_text("<stdin>", text, Path::new("."), env),
                Err(e) => unreadable("<stdin>", &format!("cannot read standard input: {e}")),
            });
        } else if p.is_dir() {
            files.extend(validate_dir(p, env));
        } else {
            files.push(validate_file(p, env));
        }
    }
    Validation { files }
}

fn validate_dir(dir: &Path, env: &Env) -> Vec<Validated> {
    let shown = dir.display().to_string();
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) => {
            return vec![unreadable(
                &shown,
                &format!("cannot read directory {shown}: {e}"),
            )];
        }
    };
    let mut jobs: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file() && p.extension().is_some_and(|x| x == "yaml" || x == "yml"))
        .collect();
    jobs.sort();
    if jobs.is_empty() {
        return vec![unreadable(
            &shown,
            &format!("directory {shown} holds no job files (*.yaml or *.yml)"),
        )];
    }
    jobs.iter().map(|p| validate_file(p, env)).collect()
}

fn validate_file(path: &Path, env: &Env) -> Validated {
    let shown = path.display().to_string();
    match read_job_file(path) {
        Ok(text) => {
            let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
            validate_text(&shown, text, &base, env)
        }
        Err(e) => unreadable(&shown, &format!("cannot read job file {shown}: {e}")),
    }
}

fn validate_text(file: &str, text: String, base: &Path, env: &Env) -> Validated {
    let (job, diagnostics) = match check(file, &text, base, env, Strictness::Lint) {
        Ok((job, warnings)) => (Some((job.name.clone(), job.steps.len())), warnings),
        Err(d) => (None, d.0),
    };
    Validated {
        file: file.to_string(),
        text: Some(text),
        job,
        diagnostics,
    }
}

fn unreadable(file: &str, message: &str) -> Validated {
    Validated {
        file: file.to_string(),
        text: None,
        job: None,
        diagnostics: vec![Diagnostic {
            severity: Severity::Error,
            file: file.to_string(),
            span: None,
            path: String::new(),
            message: message.to_string(),
            help: Some("check the path".into()),
            snippet: None,
        }],
    }
}

impl Validation {
    /// Warnings over every file.
    pub fn warnings(&self) -> usize {
        self.files.iter().map(|f| f.count(Severity::Warning)).sum()
    }

    pub fn invalid(&self) -> usize {
        self.files.iter().filter(|f| !f.is_valid()).count()
    }

    /// `2` when any file is invalid, else `0`.
    pub fn exit_code(&self) -> u8 {
        if self.invalid() > 0 {
            exit::INVALID
        } else {
            exit::OK
        }
    }

    /// "1 of 3 job files is invalid", "2 job files are valid".
    pub fn summary(&self) -> String {
        let (bad, all) = (self.invalid(), self.files.len());
        let files = if all == 1 { "job file" } else { "job files" };
        match bad {
            0 => format!(
                "{all} {files} {} valid",
                if all == 1 { "is" } else { "are" }
            ),
            _ => format!(
                "{bad} of {all} {files} {} invalid",
                if bad == 1 { "is" } else { "are" }
            ),
        }
    }

    /// What `validate` prints: `ok:` lines for stdout; diagnostics with their source
    /// lines (secrets masked), then the summary, for stderr.
    pub fn text(&self) -> (String, String) {
        let (mut out, mut err) = (String::new(), String::new());
        for f in &self.files {
            let text = f.text.as_deref();
            match (&f.job, text) {
                (Some(_), _) | (None, None) => {
                    for d in &f.diagnostics {
                        err.push_str(&d.render(text));
                        if text.is_some() {
                            err.push('\n');
                        }
                    }
                }
                (None, Some(t)) => err.push_str(&Diagnostics(f.diagnostics.clone()).render(t)),
            }
            if let Some((name, steps)) = &f.job {
                out.push_str(&format!(
                    "ok: {} (job `{name}`, {steps} step{})\n",
                    f.file,
                    if *steps == 1 { "" } else { "s" }
                ));
            }
        }
        err.push_str(&self.summary());
        err.push('\n');
        (out, err)
    }

    /// One JSON document: each file's verdict, every diagnostic (file, line, col,
    /// severity, message, help; positions are 1-based, `null` without one) and the
    /// summary.
    pub fn to_json(&self) -> Value {
        let files: Vec<Value> = self
            .files
            .iter()
            .map(|f| {
                json!({
                    "file": f.file,
                    "valid": f.is_valid(),
                    "job": f.job.as_ref().map(|(n, _)| n),
                    "steps": f.job.as_ref().map(|(_, s)| s),
                    "errors": f.count(Severity::Error),
                    "warnings": f.count(Severity::Warning),
                })
            })
            .collect();
        let diagnostics: Vec<Value> = self
            .files
            .iter()
            .flat_map(|f| f.diagnostics.iter().map(Diagnostic::to_json))
            .collect();
        json!({
            "valid": self.invalid() == 0,
            "summary": self.summary(),
            "files": files,
            "diagnostics": diagnostics,
        })
    }
}

/// `--limit` patterns with every `@FILE` replaced by the file's lines (blank lines and
/// `#` comments skipped), in order, without repeats.
pub fn read_limit(patterns: &[String]) -> Result<Vec<String>, RunError> {
    let mut out: Vec<String> = Vec::new();
    let mut add = |p: &str| {
        let p = p.trim();
        if !p.is_empty() && !out.iter().any(|x| x == p) {
            out.push(p.to_string());
        }
    };
    for p in patterns {
        let Some(file) = p.strip_prefix('@') else {
            add(p);
            continue;
        };
        let path = std::path::PathBuf::from(file);
        let text = crate::util::read_text(&path, MAX_LIMIT_FILE).map_err(|source| {
            RunError::LimitFile {
                path: path.clone(),
                source,
            }
        })?;
        let mut any = false;
        for line in text.lines().map(str::trim) {
            if !line.is_empty() && !line.starts_with('#') {
                add(line);
                any = true;
            }
        }
        if !any {
            return Err(RunError::EmptyLimitFile { path });
        }
    }
    Ok(out)
}

/// The largest `report.json` read back for what a run's webhooks answered.
pub(super) const MAX_REPORT_BYTES: u64 = 256 * 1024 * 1024;

/// The largest `--limit @FILE` read (a list of serials for a whole fleet fits easily).
const MAX_LIMIT_FILE: u64 = 16 * 1024 * 1024;
