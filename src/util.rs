//! Small filesystem helpers shared by the CLI, locks, plans and reports: atomic writes, so
//! a crash or a full disk never leaves a half-written file where a whole one is expected,
//! and file names made from job names.

use std::io::Write;
use std::path::Path;

/// Writes `bytes` to `path` atomically: a temporary file in the same directory, fsynced,
/// then renamed over the target.
pub fn atomic_write(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    std::fs::create_dir_all(dir)?;
    let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
    tmp.write_all(bytes)?;
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    Ok(())
}

/// A job name as a file name: letters, digits, `-` and `_` kept, anything else `_`, so
/// a name like `kiosk/rollout` cannot escape the state directory.
pub fn file_name_for(job: &str) -> String {
    job.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn job_names_become_safe_file_names() {
        assert_eq!(super::file_name_for("kiosk/roll out-2"), "kiosk_roll_out-2");
        assert_eq!(super::file_name_for("../x"), "___x");
    }

    #[test]
    fn atomic_write_replaces() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("sub/report.json");
        super::atomic_write(&p, b"one").unwrap();
        super::atomic_write(&p, b"two").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"two");
        assert_eq!(
            std::fs::read_dir(p.parent().unwrap()).unwrap().count(),
            1,
            "no temp files left"
        );
    }
}
