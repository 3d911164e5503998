//! Process file descriptors: a handle on one process that stays on that process, so a signal sent through it can
//! never reach another process that was given the same pid later.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

pub struct Pidfd(OwnedFd);

impl Pidfd {
    /// A handle on the process that has `pid` now. Check that it is the process meant (its start time, its
    /// namespace) after opening: from then on the handle cannot move to another process.
    pub fn open(pid: i32) -> io::Result<Pidfd> {
        // SAFETY: pidfd_open takes a pid and flags and returns a new descriptor (close-on-exec) or -1.
        let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: the kernel just returned this descriptor to us; nothing else owns it.
        Ok(Pidfd(unsafe { OwnedFd::from_raw_fd(fd as i32) }))
    }

    /// Sends `signal`; a process that has already exited is not an error.
    pub fn signal(&self, signal: nix::sys::signal::Signal) -> io::Result<()> {
        // SAFETY: pidfd_send_signal on a descriptor we own, with no siginfo.
        let result = unsafe {
            libc::syscall(
                libc::SYS_pidfd_send_signal,
                self.0.as_raw_fd(),
                signal as libc::c_int,
                std::ptr::null::<libc::siginfo_t>(),
                0,
            )
        };
        if result < 0 {
            let error = io::Error::last_os_error();
            if error.raw_os_error() != Some(libc::ESRCH) {
                return Err(error);
            }
        }
        Ok(())
    }
}
