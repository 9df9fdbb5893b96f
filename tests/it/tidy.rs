//! Tidy checks that keep the code map in src/lib.rs true: module docs, which module may
//! import which, file sizes and the typed-failure rule. They read the source as text, so
//! they are cheap and run with every `cargo test`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// `(path relative to the crate root, text)` of every `.rs` file below `sub`.
fn files(sub: &str) -> Vec<(String, String)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut v = Vec::new();
    rust_files(&root.join(sub), &mut v);
    v.sort();
    v.into_iter()
        .map(|p| {
            let rel = p.strip_prefix(root).unwrap().display().to_string();
            (rel, std::fs::read_to_string(&p).unwrap())
        })
        .collect()
}

/// The source without `//` comments and without `#[cfg(test)]` modules at the end of a
/// file, so doc text and test helpers don't count as imports.
fn code(text: &str) -> String {
    let mut out = String::new();
    for line in text.lines() {
        let t = line.trim_start();
        if t.starts_with("#[cfg(test)]") {
            break;
        }
        if t.starts_with("//") {
            // Kept as an empty line so line numbers in messages stay true.
            out.push('\n');
            continue;
        }
        out.push_str(line);
        out.push('\n');
    }
    out
}

/// The top-level module a file belongs to (`src/exec/retry.rs` → `exec`).
fn module_of(path: &str) -> String {
    let rest = path.trim_start_matches("src/");
    let first = rest.split('/').next().unwrap();
    first.trim_end_matches(".rs").to_string()
}

/// Top-level modules named by `crate::…` paths, including grouped `crate::{a, b::c}`.
fn crate_refs(code: &str) -> BTreeSet<String> {
    let mut refs = BTreeSet::new();
    let ident = |s: &str| -> String {
        s.chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect()
    };
    for (i, _) in code.match_indices("crate::") {
        if i > 0 {
            let before = code[..i].chars().next_back().unwrap();
            // `$crate::` in macros and `esper_bulk::` style paths are not this crate's
            // internal imports.
            if before.is_alphanumeric() || before == '_' || before == '$' {
                continue;
            }
        }
        let rest = &code[i + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let mut depth = 0;
            let mut item = String::new();
            for c in group.chars() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => break,
                    '}' => depth -= 1,
                    ',' if depth == 0 => {
                        refs.insert(ident(item.trim()));
                        item.clear();
                        continue;
                    }
                    _ => {}
                }
                item.push(c);
            }
            refs.insert(ident(item.trim()));
        } else {
            refs.insert(ident(rest));
        }
    }
    refs.remove("");
    refs.remove("self");
    refs
}

/// Which top-level module imports which, from the source.
fn import_graph() -> BTreeMap<String, BTreeSet<String>> {
    let mut g: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (path, text) in files("src") {
        let m = module_of(&path);
        let entry = g.entry(m.clone()).or_default();
        for r in crate_refs(&code(&text)) {
            if r != m {
                entry.insert(r);
            }
        }
    }
    g
}

#[test]
fn every_source_file_opens_with_a_module_doc() {
    for (path, text) in files("src") {
        assert!(
            text.starts_with("//!"),
            "{path} must open with a //! paragraph"
        );
    }
}

#[test]
fn job_and_plan_do_no_io() {
    for sub in ["src/job", "src/plan"] {
        for (path, text) in files(sub) {
            for banned in [
                "tokio::",
                "reqwest::",
                "crate::exec",
                "crate::esper",
                "crate::run",
                "crate::journal",
                "std::fs",
                "std::net",
                "std::thread::sleep",
            ] {
                assert!(
                    !text.contains(banned),
                    "{path} uses {banned}: job and plan stay pure"
                );
            }
        }
    }
}

#[test]
fn mock_imports_nothing_from_the_engine() {
    for (path, text) in files("src/mock") {
        let refs = crate_refs(&code(&text));
        for r in &refs {
            assert!(
                ["mock", "apk"].contains(&r.as_str()),
                "{path} uses crate::{r}: the mock stands alone (it may only read APKs)"
            );
        }
    }
}

#[test]
fn the_esper_client_does_not_import_the_executor() {
    // Only the adapter files, which implement the engine's traits over the client, may
    // know the executor and the planner.
    for (path, text) in files("src/esper") {
        if path.starts_with("src/esper/adapter") {
            continue;
        }
        let refs = crate_refs(&code(&text));
        for banned in ["exec", "plan", "run", "report", "journal"] {
            assert!(
                !refs.contains(banned),
                "{path} uses crate::{banned}: the client knows only the leaf vocabulary; \
                 move the code into src/esper/adapter/"
            );
        }
    }
}

#[test]
fn the_shared_vocabulary_is_a_leaf() {
    let g = import_graph();
    let deps = g.get("base").cloned().unwrap_or_default();
    assert!(
        deps.is_empty(),
        "src/base.rs imports crate::{deps:?}: it must stay a leaf that every layer can use"
    );
    for (path, text) in files("src/exec") {
        assert!(
            !crate_refs(&code(&text)).contains("esper"),
            "{path} uses crate::esper: the executor drives any Dispatch and knows nothing of Esper"
        );
    }
}

#[test]
fn no_import_cycle_between_top_level_modules() {
    let g = import_graph();
    // Depth-first search with an explicit stack, reporting the first cycle as a chain.
    let mut state: BTreeMap<&str, u8> = BTreeMap::new(); // 1 = on the path, 2 = done
    for start in g.keys() {
        if state.contains_key(start.as_str()) {
            continue;
        }
        let mut path: Vec<(&str, Vec<&str>)> = vec![(
            start.as_str(),
            g[start].iter().map(String::as_str).collect(),
        )];
        state.insert(start, 1);
        while let Some((node, next)) = path.last_mut() {
            let node = *node;
            match next.pop() {
                Some(n) => match state.get(n) {
                    Some(1) => {
                        let mut chain: Vec<&str> = path.iter().map(|(m, _)| *m).collect();
                        let from = chain.iter().position(|m| *m == n).unwrap();
                        chain.drain(..from);
                        chain.push(n);
                        panic!("import cycle: {}", chain.join(" → "));
                    }
                    Some(_) => {}
                    None => {
                        state.insert(n, 1);
                        let deps = g
                            .get(n)
                            .map(|d| d.iter().map(String::as_str).collect())
                            .unwrap_or_default();
                        path.push((n, deps));
                    }
                },
                None => {
                    state.insert(node, 2);
                    path.pop();
                }
            }
        }
    }
}

#[test]
fn the_cycle_check_sees_grouped_imports() {
    let refs =
        crate_refs("use crate::{exit, job::Job, plan::{self, Plan}};\nlet x = crate::exec::run;");
    let want: BTreeSet<String> = ["exec", "exit", "job", "plan"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    assert_eq!(refs, want);
    assert!(crate_refs("$crate::x; esper_bulk::crate_y").is_empty());
}

/// The declarative shape table of the job language is one long table by design.
const SIZE_EXEMPT: &[&str] = &["src/job/shape.rs"];
const MAX_LINES: usize = 1000;

#[test]
fn source_files_do_one_job() {
    for (path, text) in files("src") {
        if SIZE_EXEMPT.contains(&path.as_str()) {
            continue;
        }
        let n = text.lines().count();
        assert!(
            n <= MAX_LINES,
            "{path} has {n} lines (at most {MAX_LINES}): split it by responsibility"
        );
    }
}

#[test]
fn the_cli_stays_thin() {
    let cli: Vec<(String, String)> = files("src")
        .into_iter()
        .filter(|(p, _)| p.starts_with("src/cli/"))
        .collect();
    assert!(cli.iter().any(|(p, _)| p == "src/cli/mod.rs"));
    for (path, text) in cli {
        let n = text.lines().count();
        assert!(
            n < 500,
            "{path} has {n} lines: the CLI maps flags to a config and prints; move logic to src/run"
        );
    }
}

#[test]
fn failures_are_typed_not_strings() {
    // The mock is a stand-alone fake whose handlers answer HTTP; its internals may use
    // strings. The engine's failures travel as types.
    for (path, text) in files("src") {
        // The format 1 journal reader decodes the old string-shaped records on purpose: that
        // shape is what it exists to read and convert.
        if path.starts_with("src/mock") || path == "src/journal/v1.rs" {
            continue;
        }
        for (i, line) in code(&text).lines().enumerate() {
            let compact: String = line.split_whitespace().collect();
            assert!(
                !(compact.contains("Result<") && compact.contains(",String>")),
                "{path}:{}: `Result<_, String>`: use a thiserror type that names the value",
                i + 1
            );
            assert!(
                !compact.contains("error:Option<String>"),
                "{path}:{}: `error: Option<String>`: carry a typed failure",
                i + 1
            );
        }
    }
}
