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

#[test]
fn dependencies_point_one_way() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let text = |p: &str| std::fs::read_to_string(root.join(p)).unwrap();
    // The shared vocabulary is a leaf.
    let base = text("src/base.rs");
    assert!(
        !base.contains("crate::"),
        "src/base.rs imports from the crate: it must stay a leaf"
    );
    // The executor drives any Dispatch and knows nothing of Esper.
    for (path, text) in files("src/exec") {
        assert!(
            !text.contains("crate::esper"),
            "{path} uses crate::esper: exec must not depend on the client"
        );
    }
    // The client knows nothing of the executor; only the adapter bridges the two.
    for file in ["client.rs", "error.rs", "model.rs", "page.rs", "mod.rs"] {
        let path = format!("src/esper/{file}");
        let code: String = text(&path)
            .lines()
            .filter(|l| !l.trim_start().starts_with("//"))
            .collect();
        assert!(
            !code.contains("crate::exec"),
            "{path} uses crate::exec: only src/esper/dispatch.rs may"
        );
    }
}
