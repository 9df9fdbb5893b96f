//! Live values for shell completion (clap_complete's dynamic engine, `COMPLETE=bash
//! esper-bulk`): run ids from the state directory for `--resume`, `report` and `unlock`,
//! and context names from the config file. The static scripts `esper-bulk completions`
//! prints complete subcommands, flags and paths only; registering the completers on the
//! grammar is `args.rs`'s.
//!
//! A completer runs on every Tab: it reads directory names and one small file, never a
//! journal, and any failure just offers nothing.

use std::ffi::OsStr;

use clap_complete::engine::{CompletionCandidate, PathCompleter, ValueCompleter};

use crate::run::Env;

/// Run ids in the default state directory, newest first; paths once the word looks like
/// one (for `report DIR`).
pub fn run_ids(current: &OsStr) -> Vec<CompletionCandidate> {
    let word = current.to_string_lossy();
    if word.contains('/') || word.starts_with('.') {
        return PathCompleter::dir().complete(current);
    }
    let Ok(state) = crate::run::state_dir(None, &Env::process()) else {
        return Vec::new();
    };
    let Ok(entries) = std::fs::read_dir(state.join("runs")) else {
        return Vec::new();
    };
    let mut runs: Vec<(Option<std::time::SystemTime>, String)> = entries
        .flatten()
        .filter(|e| e.path().join("plan.json").is_file())
        .map(|e| {
            let at = e.metadata().and_then(|m| m.modified()).ok();
            (at, e.file_name().to_string_lossy().into_owned())
        })
        .filter(|(_, name)| name.starts_with(word.as_ref()))
        .collect();
    runs.sort_by(|a, b| b.cmp(a));
    runs.into_iter()
        .enumerate()
        .map(|(i, (_, name))| CompletionCandidate::new(name).display_order(Some(i)))
        .collect()
}

/// The context names in the default config file.
pub fn contexts(current: &OsStr) -> Vec<CompletionCandidate> {
    let word = current.to_string_lossy();
    let env = Env::process();
    let Ok(path) = crate::context::config_path(None, &|n| env.get(n)) else {
        return Vec::new();
    };
    let Ok(config) = crate::context::Config::load(&path, false) else {
        return Vec::new();
    };
    config
        .contexts
        .into_values()
        .filter(|c| c.name.starts_with(word.as_ref()))
        .map(|c| CompletionCandidate::new(&c.name).help(Some(c.base_url.into())))
        .collect()
}
