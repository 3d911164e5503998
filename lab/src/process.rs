//! Programs running inside a lab host.
//!
//! A child enters its host in `pre_exec`, between fork and exec: the host's network namespace, then (like
//! `ip netns exec`) a mount namespace of its own where /sys shows the host's interfaces and the lab's /etc/hosts is
//! bound over /etc/hosts, and a UTS namespace carrying the host's hostname. Only async-signal-safe calls happen
//! after fork: everything they need (the namespace file, C strings) is prepared before.

use std::ffi::CString;
use std::fs::File;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::Command;

use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sched::{setns, unshare, CloneFlags};

use crate::net::netns;

/// How to enter one host; cheap to clone into several commands.
#[derive(Debug, Clone)]
pub struct HostCommand {
    netns: String,
    hostname: Option<String>,
    hosts_file: Option<std::path::PathBuf>,
}

impl HostCommand {
    /// Network namespace only (enough for tools such as `nft`).
    pub fn new(netns: &str) -> HostCommand {
        HostCommand {
            netns: netns.to_string(),
            hostname: None,
            hosts_file: None,
        }
    }

    /// Also the host's hostname and /etc/hosts, as every service and `lab exec` gets.
    pub fn with_identity(mut self, hostname: &str, hosts_file: &Path) -> HostCommand {
        self.hostname = Some(hostname.to_string());
        self.hosts_file = Some(hosts_file.to_path_buf());
        self
    }

    /// A `Command` for `program` that starts inside the host.
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> io::Result<Command> {
        let netns_fd: OwnedFd = File::open(netns::path(&self.netns))
            .map_err(|e| io::Error::new(e.kind(), format!("namespace {}: {e}", self.netns)))?
            .into();
        let hostname = self.hostname.as_deref().map(cstring).transpose()?;
        let hosts_file = self
            .hosts_file
            .as_deref()
            .map(|p| cstring(&p.to_string_lossy()))
            .transpose()?;
        let mut command = Command::new(program);
        // SAFETY: the closure only makes raw system calls on values prepared above; it allocates nothing and takes
        // no lock, so it is safe to run in the child of a multi-threaded process.
        unsafe {
            command.pre_exec(move || enter_host(&netns_fd, hostname.as_deref(), hosts_file.as_deref()));
        }
        Ok(command)
    }
}

fn cstring(text: &str) -> io::Result<CString> {
    CString::new(text).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, format!("NUL byte in `{text}`")))
}

fn enter_host(
    netns_fd: &OwnedFd,
    hostname: Option<&std::ffi::CStr>,
    hosts_file: Option<&std::ffi::CStr>,
) -> io::Result<()> {
    // A runner that waits for SIGINT/SIGTERM with sigwait blocks them; its children must not inherit that mask,
    // or their stop signal would never arrive.
    nix::sys::signal::SigSet::empty().thread_set_mask()?;
    setns(netns_fd.as_fd(), CloneFlags::CLONE_NEWNET)?;
    if hostname.is_none() && hosts_file.is_none() {
        return Ok(());
    }
    unshare(CloneFlags::CLONE_NEWNS | CloneFlags::CLONE_NEWUTS)?;
    // Mounts made below must not travel back to the machine's mount namespace.
    mount(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::MS_SLAVE | MsFlags::MS_REC,
        None::<&str>,
    )?;
    // A fresh sysfs shows this namespace's interfaces under /sys/class/net; if the mount is refused, the
    // machine's view stays, as with a bare setns.
    if umount2("/sys", MntFlags::MNT_DETACH).is_ok() {
        let _ = mount(Some("sysfs"), "/sys", Some("sysfs"), MsFlags::empty(), None::<&str>);
    }
    if let Some(hosts) = hosts_file {
        mount(Some(hosts), "/etc/hosts", None::<&str>, MsFlags::MS_BIND, None::<&str>)?;
    }
    if let Some(name) = hostname {
        nix::unistd::sethostname(<std::ffi::OsStr as std::os::unix::ffi::OsStrExt>::from_bytes(
            name.to_bytes(),
        ))
        .map_err(io::Error::from)?;
    }
    Ok(())
}
