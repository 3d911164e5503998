//! Named network namespaces under /run/netns, created and entered only on threads this module owns.
//!
//! setns/unshare change the calling thread, so nothing here may run on a tokio worker (DESIGN.md). Callers either
//! hand work to [`run_in`], which uses a short-lived thread, or own a plain thread that calls [`Creator`].

use std::fs::File;
use std::io;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sched::{setns, unshare, CloneFlags};

pub const NETNS_DIR: &str = "/run/netns";

pub fn path(name: &str) -> PathBuf {
    Path::new(NETNS_DIR).join(name)
}

pub fn exists(name: &str) -> bool {
    path(name).exists()
}

/// Makes /run/netns a shared mount, as `ip netns add` does, so a namespace mounted here stays visible (and its
/// removal propagates) in mount namespaces created later, such as the per-process ones of `ip netns exec`.
pub fn prepare_dir() -> io::Result<()> {
    std::fs::create_dir_all(NETNS_DIR)?;
    let shared = || {
        mount(
            None::<&str>,
            NETNS_DIR,
            None::<&str>,
            MsFlags::MS_SHARED | MsFlags::MS_REC,
            None::<&str>,
        )
    };
    match shared() {
        Ok(()) => Ok(()),
        Err(Errno::EINVAL) => {
            // Not a mount point yet: bind it onto itself first.
            mount(
                Some(NETNS_DIR),
                NETNS_DIR,
                None::<&str>,
                MsFlags::MS_BIND | MsFlags::MS_REC,
                None::<&str>,
            )?;
            shared().map_err(io::Error::from)
        }
        Err(e) => Err(e.into()),
    }
}

/// Creates namespaces from the thread that owns it, returning the thread to its original namespace after each one.
pub struct Creator {
    original: File,
}

impl Creator {
    /// Must be called on a thread the caller owns and never hands to an async runtime.
    pub fn on_this_thread() -> io::Result<Creator> {
        Ok(Creator {
            original: File::open("/proc/thread-self/ns/net")?,
        })
    }

    /// Creates the namespace `name`, then runs `inside` in it (sysctls, sockets) before leaving it.
    pub fn create<T>(&self, name: &str, inside: impl FnOnce() -> io::Result<T>) -> io::Result<T> {
        let target = path(name);
        // O_EXCL: two labs racing for one name cannot both win.
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&target)
            .map_err(|e| {
                if e.kind() == io::ErrorKind::AlreadyExists {
                    io::Error::new(e.kind(), format!("namespace {name} already exists"))
                } else {
                    io::Error::new(e.kind(), format!("cannot create {}: {e}", target.display()))
                }
            })?;
        let result = (|| {
            unshare(CloneFlags::CLONE_NEWNET)?;
            mount(
                Some("/proc/thread-self/ns/net"),
                &target,
                None::<&str>,
                MsFlags::MS_BIND,
                None::<&str>,
            )?;
            inside()
        })();
        setns(self.original.as_fd(), CloneFlags::CLONE_NEWNET)?;
        result
    }

    /// Runs `f` inside an existing namespace, then comes back.
    pub fn enter<T>(&self, name: &str, f: impl FnOnce() -> io::Result<T>) -> io::Result<T> {
        let ns = File::open(path(name))?;
        setns(ns.as_fd(), CloneFlags::CLONE_NEWNET)?;
        let result = f();
        setns(self.original.as_fd(), CloneFlags::CLONE_NEWNET)?;
        result
    }
}

/// Runs `f` on a fresh thread inside the namespace `name`; the thread exits afterwards, so no other code ever
/// observes the switched namespace. Sockets `f` creates stay bound to the namespace.
pub fn run_in<T: Send + 'static>(name: &str, f: impl FnOnce() -> io::Result<T> + Send + 'static) -> io::Result<T> {
    let ns = File::open(path(name)).map_err(|e| io::Error::new(e.kind(), format!("namespace {name}: {e}")))?;
    std::thread::spawn(move || {
        setns(ns.as_fd(), CloneFlags::CLONE_NEWNET)?;
        f()
    })
    .join()
    .map_err(|_| io::Error::other("thread inside the namespace panicked"))?
}

/// Removes a namespace's name. The kernel frees it once no process or socket holds it.
pub fn delete(name: &str) -> io::Result<()> {
    let target = path(name);
    match umount2(&target, MntFlags::MNT_DETACH) {
        Ok(()) | Err(Errno::EINVAL) | Err(Errno::ENOENT) => {}
        Err(e) => {
            return Err(io::Error::new(
                io::Error::from(e).kind(),
                format!("cannot unmount {}: {e}", target.display()),
            ))
        }
    }
    match std::fs::remove_file(&target) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

/// The (device, inode) identity of a namespace, to find processes living in it.
pub fn identity(name: &str) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(path(name)).ok()?;
    // An unmounted leftover file is a plain file on the /run filesystem, not an nsfs inode.
    if nix::sys::statfs::statfs(&path(name)).ok()?.filesystem_type() != nix::sys::statfs::NSFS_MAGIC {
        return None;
    }
    Some((meta.dev(), meta.ino()))
}

/// Writes a sysctl of the current thread's network namespace.
pub fn write_sysctl(key: &str, value: &str) -> io::Result<()> {
    let path = Path::new("/proc/sys").join(key.replace('.', "/"));
    std::fs::write(&path, value).map_err(|e| io::Error::new(e.kind(), format!("sysctl {key}={value}: {e}")))
}
