//! The pid file, held with an exclusive lock for the daemon's lifetime: a second daemon given the same file
//! refuses to start, whatever the file says, and a stale file from a killed daemon is simply taken over.

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

pub struct PidFile {
    path: PathBuf,
    file: File,
}

impl PidFile {
    pub fn claim(path: &Path) -> io::Result<PidFile> {
        let named = |error: io::Error| io::Error::new(error.kind(), format!("pid file {}: {error}", path.display()));
        // A daemon that exits removes the file before its lock goes: a file locked after that has no name any
        // more, and is let go for the one now at the path.
        for _ in 0..10 {
            let mut file = open_and_lock(path).map_err(named)?;
            if !super::names(path, &file) {
                continue;
            }
            file.set_len(0).map_err(named)?;
            file.write_all(format!("{}\n", std::process::id()).as_bytes())
                .map_err(named)?;
            return Ok(PidFile {
                path: path.to_path_buf(),
                file,
            });
        }
        Err(named(io::Error::other("it keeps being replaced")))
    }
}

/// Opens the pid file (created 0644, never through a symlink) and takes its lock, or says who holds it.
fn open_and_lock(path: &Path) -> io::Result<File> {
    let mut file = File::options()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o644)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC | libc::O_NONBLOCK)
        .open(path)?;
    if !file.metadata()?.is_file() {
        return Err(io::Error::other("not a regular file"));
    }
    // SAFETY: flock on a descriptor this function owns.
    if unsafe { libc::flock(std::os::fd::AsRawFd::as_raw_fd(&file), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        let error = io::Error::last_os_error();
        if error.raw_os_error() != Some(libc::EWOULDBLOCK) {
            return Err(error);
        }
        let mut holder = String::new();
        let _ = file.read_to_string(&mut holder);
        let message = format!("another vrrpd (pid {}) is running with this pid file", holder.trim());
        return Err(io::Error::new(io::ErrorKind::AlreadyExists, message));
    }
    Ok(file)
}

impl Drop for PidFile {
    /// Removes the file only while the name still leads to the file this daemon locked.
    fn drop(&mut self) {
        if super::names(&self.path, &self.file) {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_claim_is_refused_and_a_symlink_is_never_followed() {
        let dir = std::env::temp_dir().join(format!("pidfile-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("vrrpd.pid");
        let first = PidFile::claim(&path).unwrap();
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            format!("{}\n", std::process::id())
        );
        let second = PidFile::claim(&path).err().unwrap().to_string();
        assert!(
            second.contains(&format!("another vrrpd (pid {}) is running", std::process::id())),
            "{second}"
        );
        drop(first);
        assert!(!path.exists(), "the pid file outlived its daemon");

        let target = dir.join("precious");
        std::fs::write(&target, "keep").unwrap();
        std::os::unix::fs::symlink(&target, &path).unwrap();
        assert!(PidFile::claim(&path).is_err());
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "keep");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
