//! Tidy checks that keep the code map in src/lib.rs true.

use std::path::Path;

fn rust_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

fn files(sub: &str) -> Vec<(String, String)> {
    let mut v = Vec::new();
    rust_files(&Path::new(env!("CARGO_MANIFEST_DIR")).join(sub), &mut v);
    v.into_iter()
        .map(|p| {
            (
                p.display().to_string(),
                std::fs::read_to_string(&p).unwrap(),
            )
        })
        .collect()
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
        for banned in [
            "crate::job",
            "crate::plan",
            "crate::exec",
            "crate::esper",
            "crate::report",
            "crate::cli",
        ] {
            assert!(
                !text.contains(banned),
                "{path} uses {banned}: the mock stands alone"
            );
        }
    }
}
