//! The pid file, held with an exclusive lock for the daemon's lifetime: a second daemon given the same file
//! refuses to start, whatever the file says, and a stale file from a killed daemon is simply taken over.

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

pub struct PidFile {
    path: PathBuf,
    file: File,
}

impl PidFile {
    pub fn claim(path: &Path) -> io::Result<PidFile> {
        let named = |error: io::Error| io::Error::new(error.kind(), format!("pid file {}: {error}", path.display()));
        let mut file = File::options()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o644)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC | libc::O_NONBLOCK)
            .open(path)
            .map_err(named)?;
        if !file.metadata().map_err(named)?.is_file() {
            return Err(named(io::Error::other("not a regular file")));
        }
        // SAFETY: flock on a descriptor this function owns.
        if unsafe { libc::flock(std::os::fd::AsRawFd::as_raw_fd(&file), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
            let error = io::Error::last_os_error();
            if error.raw_os_error() != Some(libc::EWOULDBLOCK) {
                return Err(named(error));
            }
            let mut holder = String::new();
            let _ = file.read_to_string(&mut holder);
            let message = format!("another vrrpd (pid {}) is running with this pid file", holder.trim());
            return Err(named(io::Error::new(io::ErrorKind::AlreadyExists, message)));
        }
        file.set_len(0).map_err(named)?;
        file.write_all(format!("{}\n", std::process::id()).as_bytes())
            .map_err(named)?;
        Ok(PidFile {
            path: path.to_path_buf(),
            file,
        })
    }
}

impl Drop for PidFile {
    /// Removes the file only while the name still leads to the file this daemon locked.
    fn drop(&mut self) {
        let (Ok(ours), Ok(named)) = (self.file.metadata(), std::fs::symlink_metadata(&self.path)) else {
            return;
        };
        if ours.dev() == named.dev() && ours.ino() == named.ino() {
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
