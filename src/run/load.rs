//! Loading job files from disk: the host side of [`crate::job::load`], which is pure.
//!
//! This gives the validator the environment and the files a job names (CSV lists, APKs,
//! content, all relative to the job file), makes those paths absolute for the run, and
//! renders diagnostics with their source lines. Validation itself is the job module's.

use std::path::Path;

use crate::job::{self, Job};

use super::RunError;
use super::config::Env;

/// A valid job and its warnings.
#[derive(Debug)]
pub struct LoadedJob {
    pub job: Job,
    /// Rendered with their source lines, ready to print.
    pub warnings: Vec<String>,
}

/// Reads and validates the job file at `path`.
pub fn load_job(path: &Path, env: &Env) -> Result<LoadedJob, RunError> {
    let text = std::fs::read_to_string(path).map_err(|source| RunError::ReadJob {
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
    let read = |p: &str| std::fs::read_to_string(base.join(p)).map_err(|e| e.to_string());
    let lookup = |n: &str| env.get(n);
    match job::load(
        file,
        text,
        &job::Host {
            env: &lookup,
            read: &read,
        },
    ) {
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
