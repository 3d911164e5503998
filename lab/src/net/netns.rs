//! Network namespaces of a lab, created and entered only on threads this module owns.
//!
//! A namespace is mounted on a file inside the lab's run directory, and /run/netns/<lab>-<host> is a symbolic link
//! to that file, so `ip netns exec` finds it. The mount's place is what proves the namespace the lab's own: a
//! namespace that existed before (made by `ip netns add`, or by another lab whose names overlap) is never in this
//! lab's run directory, so teardown never touches it.
//!
//! setns/unshare change the calling thread, so nothing here may run on a tokio worker (DESIGN.md). Callers either
//! hand work to [`run_in`], which uses a short-lived thread, or own a plain thread that calls [`Creator`].

use std::fs::File;
use std::io;
use std::os::fd::AsFd;
use std::path::Path;

use nix::errno::Errno;
use nix::mount::{mount, MsFlags};
use nix::sched::{setns, unshare, CloneFlags};

use crate::names::NamespacePaths;
use crate::state::Identity;

/// Makes /run/lab a mount point of its own, shared, before the first lab mounts a namespace under it: shared, so
/// mounts inside run directories (the namespaces) reach the mount namespaces of the lab's processes, and so does
/// their removal (as `ip netns add` does for /run/netns); a tmpfs when the directory is new and not one already
/// (/run is a tmpfs on most systems, but not on every one: on a disk, the files a lab makes and removes by the
/// thousand cost ten times as much).
pub fn prepare_run_root(root: &Path) -> io::Result<()> {
    // Two first labs at once must not both mount: the second would hide the first one's run directory.
    let _lock = nix::fcntl::Flock::lock(File::open(root)?, nix::fcntl::FlockArg::LockExclusive)
        .map_err(|(_, e)| io::Error::from(e))?;
    let shared = || {
        mount(
            None::<&str>,
            root,
            None::<&str>,
            MsFlags::MS_SHARED | MsFlags::MS_REC,
            None::<&str>,
        )
    };
    match shared() {
        Ok(()) => return Ok(()),
        Err(Errno::EINVAL) => {}
        Err(e) => return Err(e.into()),
    }
    // Not a mount point yet.
    let empty = std::fs::read_dir(root)?.next().is_none();
    let on_tmpfs = nix::sys::statfs::statfs(root).is_ok_and(|s| s.filesystem_type() == nix::sys::statfs::TMPFS_MAGIC);
    if empty && !on_tmpfs {
        mount(
            Some("tmpfs"),
            root,
            Some("tmpfs"),
            MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
            Some("mode=0700"),
        )?;
    } else {
        mount(
            Some(root),
            root,
            None::<&str>,
            MsFlags::MS_BIND | MsFlags::MS_REC,
            None::<&str>,
        )?;
    }
    shared().map_err(io::Error::from)
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

    /// Creates the namespace: mounted on `paths.mount` (a new file: O_EXCL), then named by the link
    /// `paths.link` (which must not exist yet); then runs `inside` in it (sysctls, sockets) before leaving it.
    pub fn create<T>(&self, paths: &NamespacePaths, inside: impl FnOnce() -> io::Result<T>) -> io::Result<T> {
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&paths.mount)
            .map_err(|e| io::Error::new(e.kind(), format!("cannot create {}: {e}", paths.mount.display())))?;
        let result = (|| {
            unshare(CloneFlags::CLONE_NEWNET)?;
            mount(
                Some("/proc/thread-self/ns/net"),
                &paths.mount,
                None::<&str>,
                MsFlags::MS_BIND,
                None::<&str>,
            )?;
            std::os::unix::fs::symlink(&paths.mount, &paths.link).map_err(|e| {
                if e.kind() == io::ErrorKind::AlreadyExists {
                    collision(paths)
                } else {
                    io::Error::new(e.kind(), format!("cannot create {}: {e}", paths.link.display()))
                }
            })?;
            inside()
        })();
        setns(self.original.as_fd(), CloneFlags::CLONE_NEWNET)?;
        result
    }

    /// Runs `f` inside an existing namespace (given by its mount file), then comes back.
    pub fn enter<T>(&self, namespace: &Path, f: impl FnOnce() -> io::Result<T>) -> io::Result<T> {
        let ns = File::open(namespace)?;
        setns(ns.as_fd(), CloneFlags::CLONE_NEWNET)?;
        let result = f();
        setns(self.original.as_fd(), CloneFlags::CLONE_NEWNET)?;
        result
    }
}

/// The error for a /run/netns name that exists but is not this lab's.
pub fn collision(paths: &NamespacePaths) -> io::Error {
    io::Error::new(
        io::ErrorKind::AlreadyExists,
        format!(
            "{} already exists and was not made by this lab (`ip netns add`, another tool, or another lab whose \
             name and host names overlap); it is left alone: remove it yourself or choose another lab name (--name)",
            paths
        ),
    )
}

/// Runs `f` on a fresh thread inside the namespace mounted at `namespace`; the thread exits afterwards, so no other
/// code ever observes the switched namespace. Sockets `f` creates stay bound to the namespace.
pub fn run_in<T: Send + 'static>(
    namespace: &Path,
    f: impl FnOnce() -> io::Result<T> + Send + 'static,
) -> io::Result<T> {
    let ns = File::open(namespace)
        .map_err(|e| io::Error::new(e.kind(), format!("namespace {}: {e}", namespace.display())))?;
    run_in_file(ns, f)
}

/// [`run_in`] for a namespace already open (and checked, see [`open_namespace`]).
pub fn run_in_file<T: Send + 'static>(ns: File, f: impl FnOnce() -> io::Result<T> + Send + 'static) -> io::Result<T> {
    std::thread::spawn(move || {
        setns(ns.as_fd(), CloneFlags::CLONE_NEWNET)?;
        f()
    })
    .join()
    .map_err(|_| io::Error::other("thread inside the namespace panicked"))?
}

/// Opens the namespace mounted at `file` and returns it with its identity (the nsfs inode), or an error if `file`
/// is not a namespace mount: a plain file (its mount never happened or is gone) or a symbolic link, which is never
/// followed (a link in the run directory to /proc/1/ns/net must not make the machine's namespace look like the
/// lab's). The descriptor is what gets entered, so what was checked is what is used.
pub fn open_namespace(file: &Path) -> io::Result<(File, Identity)> {
    use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
    let not_one = |why: &str| io::Error::new(io::ErrorKind::NotFound, format!("{} {why}", file.display()));
    let opened = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(file)
        .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", file.display())))?;
    let meta = opened.metadata()?;
    if !meta.file_type().is_file()
        || nix::sys::statfs::fstatfs(&opened)?.filesystem_type() != nix::sys::statfs::NSFS_MAGIC
    {
        return Err(not_one("is not a network namespace"));
    }
    let identity = Identity {
        dev: meta.dev(),
        ino: meta.ino(),
    };
    // Whatever is mounted there, the machine's own namespace and this process's are never a lab's.
    let foreign = ["/proc/1/ns/net", "/proc/self/ns/net"]
        .iter()
        .any(|own| Identity::of(Path::new(own)).is_ok_and(|own| own == identity));
    if foreign {
        return Err(not_one("is the machine's own network namespace"));
    }
    Ok((opened, identity))
}

/// The identity of the namespace mounted at `file`, or `None` if it is not a namespace mount (see
/// [`open_namespace`]).
pub fn identity(file: &Path) -> Option<Identity> {
    open_namespace(file).ok().map(|(_, identity)| identity)
}

/// Writes a sysctl of the current thread's network namespace.
pub fn write_sysctl(key: &str, value: &str) -> io::Result<()> {
    let path = Path::new("/proc/sys").join(key.replace('.', "/"));
    std::fs::write(&path, value).map_err(|e| io::Error::new(e.kind(), format!("sysctl {key}={value}: {e}")))
}
