//! What a lab leaves behind for whoever must find out why a run failed (a CI job uploads it): with
//! `LAB_ARTIFACTS=DIR` in the environment, each lab's timeline (text and JSON lines) and its services' logs are
//! copied to `DIR/<lab>/` just before its run directory is removed. Without the variable nothing is kept.

use std::io;
use std::path::{Path, PathBuf};

use crate::names::LabPaths;
use crate::timeline::Timeline;

pub const VARIABLE: &str = "LAB_ARTIFACTS";

/// Where this lab's artifacts go, if anywhere.
pub fn destination(lab: &str) -> Option<PathBuf> {
    let root = std::env::var_os(VARIABLE).filter(|dir| !dir.is_empty())?;
    // `lab` has passed the name check: one path component, no `..`.
    Some(Path::new(&root).join(lab))
}

pub fn keep(paths: &LabPaths, lab: &str, timeline: &Timeline) -> io::Result<()> {
    let Some(dir) = destination(lab) else {
        return Ok(());
    };
    prepare_dir(&dir)?;
    write_file(&dir.join("timeline.txt"), timeline.text().as_bytes())?;
    write_file(&dir.join("timeline.jsonl"), timeline.json_lines().as_bytes())?;
    copy_logs(paths, &dir)
}

/// Copies the lab's service logs into `dir` (regular files only, never through a symlink).
pub(crate) fn copy_logs(paths: &LabPaths, dir: &Path) -> io::Result<()> {
    let Ok(logs) = std::fs::read_dir(paths.logs_dir()) else {
        return Ok(());
    };
    for entry in logs.filter_map(Result::ok) {
        if entry.file_type().is_ok_and(|kind| kind.is_file()) {
            write_file(&dir.join(entry.file_name()), &std::fs::read(entry.path())?)?;
        }
    }
    Ok(())
}

/// Makes an artifacts directory. It may be someone else's (a CI runner's): root writes nothing through a symlink
/// found there.
pub(crate) fn prepare_dir(dir: &Path) -> io::Result<()> {
    std::fs::create_dir_all(dir)?;
    if std::fs::symlink_metadata(dir)?.file_type().is_symlink() {
        return Err(io::Error::other(format!("{} is a symlink", dir.display())));
    }
    Ok(())
}

/// Creates (or truncates) a regular file, never through a symlink.
pub(crate) fn create(path: &Path) -> io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
}

/// Writes a file, replacing a regular file of that name but never following a symlink.
pub(crate) fn write_file(path: &Path, bytes: &[u8]) -> io::Result<()> {
    use std::io::Write;
    create(path)?.write_all(bytes)
}
