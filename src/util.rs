//! Small filesystem helpers shared by the CLI, locks, plans and reports: the one atomic
//! write, so a crash or a full disk never leaves a half-written file where a whole one is
//! expected and a FIFO, device node or symlink at the target is refused rather than
//! replaced; bounded reads of input files (job files, CSV lists, plans), which refuse
//! anything but a regular file and anything over a size limit instead of hanging or
//! growing without bound; and file names made from job names.
//!
//! Refusals travel inside `std::io::Error` (kind `InvalidInput`) as a typed [`Refused`],
//! so every caller keeps its own error naming the path; [`refusal`] finds it again for
//! advice.

use std::fmt;
use std::io::{ErrorKind, Read, Write};
use std::path::Path;

use crate::base::Hint;

/// The most an input file (a job file, a CSV list, a plan file, standard input) may hold.
pub const MAX_INPUT_BYTES: u64 = 16 * 1024 * 1024;

/// The largest APK whose identity is read from the file itself; a bigger one names its
/// `package` and `version_code` in the step instead of being read into memory.
pub const MAX_APK_READ_BYTES: u64 = 1024 * 1024 * 1024;

/// What a path is when it is not a regular file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    Directory,
    Symlink,
    Fifo,
    Socket,
    CharDevice,
    BlockDevice,
    Other,
}

impl FileKind {
    /// `None` for a regular file.
    fn of(t: std::fs::FileType) -> Option<FileKind> {
        #[cfg(unix)]
        use std::os::unix::fs::FileTypeExt;
        if t.is_file() {
            return None;
        }
        Some(if t.is_dir() {
            FileKind::Directory
        } else if t.is_symlink() {
            FileKind::Symlink
        } else {
            #[cfg(unix)]
            {
                if t.is_fifo() {
                    return Some(FileKind::Fifo);
                } else if t.is_socket() {
                    return Some(FileKind::Socket);
                } else if t.is_char_device() {
                    return Some(FileKind::CharDevice);
                } else if t.is_block_device() {
                    return Some(FileKind::BlockDevice);
                }
            }
            FileKind::Other
        })
    }
}

impl fmt::Display for FileKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            FileKind::Directory => "directory",
            FileKind::Symlink => "symbolic link",
            FileKind::Fifo => "named pipe (FIFO)",
            FileKind::Socket => "socket",
            FileKind::CharDevice => "character device",
            FileKind::BlockDevice => "block device",
            FileKind::Other => "special file",
        })
    }
}

/// Why a file was not read or written. The caller's error names the path, so these say
/// only what is wrong with it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    /// A write would replace this with a regular file (or write into a device).
    #[error("it is a {0}, not a regular file; refusing to replace it")]
    WriteOnto(FileKind),
    /// Reading it could block forever (a FIFO) or never end (`/dev/zero`).
    #[error("it is a {0}, not a regular file")]
    ReadFrom(FileKind),
    #[error("it is larger than {} MiB", limit / (1024 * 1024))]
    TooLarge { limit: u64 },
}

impl Hint for Refused {
    fn hint(&self) -> Option<String> {
        Some(match self {
            Refused::WriteOnto(_) => {
                "give a regular file or a new path; esper-bulk writes a temporary file and renames it into place".into()
            }
            Refused::ReadFrom(_) => {
                "give a regular file; pipes, devices and sockets are not read".into()
            }
            Refused::TooLarge { limit } => format!(
                "input files are at most {} MiB; split the job or its lists",
                limit / (1024 * 1024)
            ),
        })
    }
}

fn refused(r: Refused) -> std::io::Error {
    std::io::Error::new(ErrorKind::InvalidInput, r)
}

/// The [`Refused`] inside an I/O error, if it is one.
pub fn refusal(e: &std::io::Error) -> Option<&Refused> {
    e.get_ref()
        .and_then(|inner| inner.downcast_ref::<Refused>())
}

/// Writes `bytes` to `path` atomically: a temporary file in the same directory, fsynced,
/// then renamed over the target. The target must be a regular file or not exist: a FIFO,
/// device node, socket, symlink or directory there is refused ([`Refused::WriteOnto`]),
/// since renaming over it would replace it.
pub fn atomic_write(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    check_writable(path)?;
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

/// [`atomic_write`] for content made while it is written: `fill` writes into the
/// temporary file (buffered), which replaces `path` only when `fill` succeeded, so a large
/// file (a plan) is never held whole in memory first.
pub fn atomic_write_with(
    path: &Path,
    fill: impl FnOnce(&mut dyn Write) -> std::io::Result<()>,
) -> std::io::Result<()> {
    check_writable(path)?;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    std::fs::create_dir_all(dir)?;
    let tmp = tempfile::NamedTempFile::new_in(dir)?;
    let mut w = std::io::BufWriter::with_capacity(1 << 16, tmp);
    fill(&mut w)?;
    let tmp = w.into_inner().map_err(|e| e.into_error())?;
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    Ok(())
}

/// Refuses a destination that exists and is not a regular file (a FIFO, a device node, a
/// symlink, a directory): what [`atomic_write`] and streamed writes check first.
pub fn check_writable(path: &Path) -> std::io::Result<()> {
    match std::fs::symlink_metadata(path) {
        Ok(m) => match FileKind::of(m.file_type()) {
            Some(kind) => Err(refused(Refused::WriteOnto(kind))),
            None => Ok(()),
        },
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

/// Reads at most `limit` bytes from `r`; more is [`Refused::TooLarge`].
pub fn read_bounded(r: impl Read, limit: u64) -> std::io::Result<Vec<u8>> {
    let mut bytes = Vec::new();
    r.take(limit.saturating_add(1)).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > limit {
        return Err(refused(Refused::TooLarge { limit }));
    }
    Ok(bytes)
}

/// Reads the regular file at `path` (symlinks to one are followed), refusing anything
/// else before opening it (opening a FIFO blocks until a writer comes) and anything over
/// `limit` bytes.
pub fn read_input(path: &Path, limit: u64) -> std::io::Result<Vec<u8>> {
    if let Some(kind) = FileKind::of(std::fs::metadata(path)?.file_type()) {
        return Err(refused(Refused::ReadFrom(kind)));
    }
    let file = std::fs::File::open(path)?;
    // The path may have been swapped since; what was opened is what counts.
    if let Some(kind) = FileKind::of(file.metadata()?.file_type()) {
        return Err(refused(Refused::ReadFrom(kind)));
    }
    read_bounded(file, limit)
}

/// Refuses anything but a regular file at `path` (symlinks to one are followed), before
/// it is opened: opening a FIFO blocks until a writer comes.
pub fn check_regular(path: &Path) -> std::io::Result<u64> {
    let meta = std::fs::metadata(path)?;
    match FileKind::of(meta.file_type()) {
        Some(kind) => Err(refused(Refused::ReadFrom(kind))),
        None => Ok(meta.len()),
    }
}

/// [`read_input`] as UTF-8 text.
pub fn read_text(path: &Path, limit: u64) -> std::io::Result<String> {
    String::from_utf8(read_input(path, limit)?)
        .map_err(|_| std::io::Error::new(ErrorKind::InvalidData, "it is not valid UTF-8 text"))
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
    use super::*;

    #[test]
    fn job_names_become_safe_file_names() {
        assert_eq!(file_name_for("kiosk/roll out-2"), "kiosk_roll_out-2");
        assert_eq!(file_name_for("../x"), "___x");
    }

    #[test]
    fn atomic_write_replaces() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("sub/report.json");
        atomic_write(&p, b"one").unwrap();
        atomic_write(&p, b"two").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"two");
        assert_eq!(
            std::fs::read_dir(p.parent().unwrap()).unwrap().count(),
            1,
            "no temp files left"
        );
    }

    #[cfg(unix)]
    #[test]
    fn atomic_write_refuses_special_files_and_leaves_them_alone() {
        use std::os::unix::fs::FileTypeExt;
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("real.json");
        std::fs::write(&target, b"keep").unwrap();
        let link = dir.path().join("link.json");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        let sub = dir.path().join("sub");
        std::fs::create_dir(&sub).unwrap();
        for (path, kind) in [
            (Path::new("/dev/null"), FileKind::CharDevice),
            (link.as_path(), FileKind::Symlink),
            (sub.as_path(), FileKind::Directory),
        ] {
            let e = atomic_write(path, b"x").unwrap_err();
            assert_eq!(refusal(&e), Some(&Refused::WriteOnto(kind)), "{path:?}");
            assert!(e.to_string().contains("not a regular file"), "{e}");
        }
        assert!(
            std::fs::symlink_metadata(&link)
                .unwrap()
                .file_type()
                .is_symlink()
        );
        assert_eq!(std::fs::read(&target).unwrap(), b"keep");
        assert!(
            std::fs::metadata("/dev/null")
                .unwrap()
                .file_type()
                .is_char_device()
        );
    }

    #[cfg(unix)]
    #[test]
    fn inputs_must_be_regular_files_within_the_limit() {
        let dir = tempfile::tempdir().unwrap();
        let e = read_input(Path::new("/dev/zero"), 1024).unwrap_err();
        assert_eq!(refusal(&e), Some(&Refused::ReadFrom(FileKind::CharDevice)));
        let big = dir.path().join("big.csv");
        std::fs::write(&big, vec![b'a'; 1025]).unwrap();
        let e = read_input(&big, 1024).unwrap_err();
        assert_eq!(refusal(&e), Some(&Refused::TooLarge { limit: 1024 }));
        assert_eq!(read_input(&big, 1025).unwrap().len(), 1025);
        // A symlink to a regular file is an ordinary input.
        let link = dir.path().join("link.csv");
        std::os::unix::fs::symlink(&big, &link).unwrap();
        assert_eq!(read_text(&link, 2048).unwrap().len(), 1025);
        let e = read_bounded(std::io::repeat(0), 10).unwrap_err();
        assert_eq!(refusal(&e), Some(&Refused::TooLarge { limit: 10 }));
    }
}
