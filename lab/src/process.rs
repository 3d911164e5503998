//! Programs running inside a lab host.
//!
//! A child enters its host in `pre_exec`, between fork and exec: the host's network namespace, then (like
//! `ip netns exec`) a mount namespace of its own where /sys shows the host's interfaces and the host's own
//! directories are bound over the machine's (its [`View`]: /run, /tmp, /etc, /var, the lab's /etc/hosts), and a UTS
//! namespace carrying the host's hostname. Only async-signal-safe calls happen after fork: everything they need (the
//! namespace file, a descriptor of every directory to show, C strings) is prepared before.
//!
//! Finding a program on PATH lives here too: the topology check looks for each service's program before the lab is
//! built, and the lab looks for the tools (`nft`, `tc`) it runs.

use std::ffi::CString;
use std::fs::File;
use std::io::{self, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;

use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sched::{setns, unshare, CloneFlags};

use crate::hostfs::{self, View};
use crate::names::LabPaths;
use crate::state::{Identity, LabState};

/// How to enter one host; cheap to clone into several commands.
#[derive(Debug, Clone)]
pub struct HostCommand {
    /// The host's network namespace, open: it was checked when opened, and it is what every command enters.
    namespace: Arc<File>,
    /// Its hostname and filesystem; without them, a command only enters the network namespace.
    machine: Option<Arc<Machine>>,
}

#[derive(Debug)]
struct Machine {
    hostname: String,
    view: View,
    paths: LabPaths,
}

/// One mount of a view, ready for the child. The child opens every source before it mounts anything, then binds
/// each through /proc/self/fd: a source is found whatever the mounts before it have covered. (The parent cannot
/// open them: a mount of another mount namespace cannot be bound.)
struct PreparedMount {
    source: CString,
    target: CString,
    /// For a read-only mount: the flags of the remount that makes it so, with those of the mount it shows (a
    /// remount without nosuid, nodev or noexec would drop them).
    read_only: Option<MsFlags>,
}

impl HostCommand {
    /// Network namespace only (enough for tools such as `nft`), from the lab's own mount of it.
    pub fn new(namespace: &Path) -> io::Result<HostCommand> {
        let (file, _) = crate::net::netns::open_namespace(namespace)?;
        Ok(HostCommand::entering(file))
    }

    fn entering(namespace: File) -> HostCommand {
        HostCommand {
            namespace: Arc::new(namespace),
            machine: None,
        }
    }

    /// How to enter `host` of a recorded lab, with its hostname and filesystem: only while its namespace and
    /// /etc/netns hosts file are still the ones the lab created.
    pub fn for_recorded_host(state: &LabState, paths: &LabPaths, host: &str) -> io::Result<HostCommand> {
        let namespace = state.open_namespace(paths, host)?;
        let hostname = &state.hosts[host].hostname;
        let hosts_file = paths.etc(host).hosts_file;
        if state.etc_hosts.is_none() || Identity::of(&hosts_file).ok() != state.etc_hosts {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!(
                    "{} is not (or no longer) the one lab {} wrote",
                    hosts_file.display(),
                    state.name
                ),
            ));
        }
        let view = state.hosts[host].view.clone();
        Ok(HostCommand::entering(namespace).with_machine(hostname, view, paths))
    }

    /// Also the host's hostname and filesystem, as every service and `lab exec` gets.
    pub fn with_machine(mut self, hostname: &str, view: View, paths: &LabPaths) -> HostCommand {
        self.machine = Some(Arc::new(Machine {
            hostname: hostname.to_string(),
            view,
            paths: paths.clone(),
        }));
        self
    }

    /// The host's filesystem as its processes see it, if this command gives them one.
    pub fn view(&self) -> Option<&View> {
        self.machine.as_ref().map(|m| &m.view)
    }

    /// A `Command` for `program` that starts inside the host, with no descriptor of this process but its standard
    /// input, output and error, in the directory of the host that has the path of this process's own (or `/`).
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> io::Result<Command> {
        self.command_in(program, None)
    }

    /// [`HostCommand::command`] starting in `cwd`, a directory of the host. (`Command::current_dir` would change
    /// directory before the host's filesystem is in place, into the machine's directory of that name.)
    pub fn command_in(&self, program: impl AsRef<std::ffi::OsStr>, cwd: Option<&Path>) -> io::Result<Command> {
        let netns_fd: OwnedFd = self.namespace.try_clone()?.into();
        let mut entering = Entering {
            hostname: None,
            mounts: Vec::new(),
            sources: Vec::new(),
            cwd: None,
        };
        if let Some(machine) = &self.machine {
            entering.hostname = Some(cstring(&machine.hostname)?);
            entering.mounts = prepare_mounts(&machine.view, &machine.paths)?;
            entering.sources = vec![-1; entering.mounts.len()];
            let cwd = cwd.map(Path::to_path_buf).or_else(|| std::env::current_dir().ok());
            entering.cwd = cwd.map(|dir| cstring(&dir.to_string_lossy())).transpose()?;
        }
        let mut command = Command::new(program);
        // SAFETY: the closure only makes raw system calls on values prepared above; it allocates nothing and takes
        // no lock, so it is safe to run in the child of a multi-threaded process.
        unsafe {
            command.pre_exec(move || enter_host(&netns_fd, &mut entering));
        }
        Ok(command)
    }
}

/// What a child does to enter its host's machine, all prepared before fork.
struct Entering {
    hostname: Option<CString>,
    mounts: Vec<PreparedMount>,
    /// The child's descriptor of each mount's source, filled in by the child (sized before fork: no allocation).
    sources: Vec<i32>,
    cwd: Option<CString>,
}

fn prepare_mounts(view: &View, paths: &LabPaths) -> io::Result<Vec<PreparedMount>> {
    hostfs::make_mount_points(view, paths)?;
    view.mounts
        .iter()
        .map(|mount| {
            Ok(PreparedMount {
                source: cstring(&mount.source.to_string_lossy())?,
                target: cstring(&mount.target.to_string_lossy())?,
                read_only: mount.read_only.then(|| read_only_remount(&mount.source)).transpose()?,
            })
        })
        .collect()
}

fn read_only_remount(source: &Path) -> io::Result<MsFlags> {
    use nix::sys::statvfs::{statvfs, FsFlags};
    let kept = statvfs(source)?.flags();
    let mut flags = MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY;
    for (statvfs_flag, mount_flag) in [
        (FsFlags::ST_NOSUID, MsFlags::MS_NOSUID),
        (FsFlags::ST_NODEV, MsFlags::MS_NODEV),
        (FsFlags::ST_NOEXEC, MsFlags::MS_NOEXEC),
    ] {
        if kept.contains(statvfs_flag) {
            flags |= mount_flag;
        }
    }
    Ok(flags)
}

/// `/proc/self/fd/<fd>` as a C string in `buffer`, without allocating.
fn proc_fd_path(fd: i32, buffer: &mut [u8; 32]) -> &std::ffi::CStr {
    const PREFIX: &[u8] = b"/proc/self/fd/";
    buffer[..PREFIX.len()].copy_from_slice(PREFIX);
    let mut digits = [0u8; 10];
    let (mut n, mut count) = (fd.unsigned_abs(), 0);
    loop {
        digits[count] = b'0' + (n % 10) as u8;
        count += 1;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    for i in 0..count {
        buffer[PREFIX.len() + i] = digits[count - 1 - i];
    }
    buffer[PREFIX.len() + count] = 0;
    std::ffi::CStr::from_bytes_until_nul(&buffer[..]).expect("a NUL was written")
}

fn cstring(text: &str) -> io::Result<CString> {
    CString::new(text).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, format!("NUL byte in `{text}`")))
}

fn enter_host(netns_fd: &OwnedFd, entering: &mut Entering) -> io::Result<()> {
    // A runner that waits for SIGINT/SIGTERM with sigwait blocks them; its children must not inherit that mask,
    // or their stop signal would never arrive.
    nix::sys::signal::SigSet::empty().thread_set_mask()?;
    close_inherited_descriptors();
    setns(netns_fd.as_fd(), CloneFlags::CLONE_NEWNET)?;
    let Some(hostname) = &entering.hostname else {
        return Ok(());
    };
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
    for (step, fd) in entering.mounts.iter().zip(entering.sources.iter_mut()) {
        // SAFETY: open(2) with a C string we own.
        *fd = unsafe { libc::open(step.source.as_ptr(), libc::O_PATH | libc::O_CLOEXEC) };
        if *fd < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    for (step, fd) in entering.mounts.iter().zip(&entering.sources) {
        let target = step.target.as_c_str();
        let mut buffer = [0u8; 32];
        let source = proc_fd_path(*fd, &mut buffer);
        mount(Some(source), target, None::<&str>, MsFlags::MS_BIND, None::<&str>)?;
        if let Some(flags) = step.read_only {
            mount(None::<&str>, target, None::<&str>, flags, None::<&str>)?;
        }
    }
    nix::unistd::sethostname(<std::ffi::OsStr as std::os::unix::ffi::OsStrExt>::from_bytes(
        hostname.to_bytes(),
    ))
    .map_err(io::Error::from)?;
    // The directory asked for, as the host sees it; `/` if the host has no such directory.
    let moved = entering
        .cwd
        .as_deref()
        .is_some_and(|cwd| nix::unistd::chdir(cwd).is_ok());
    if !moved {
        nix::unistd::chdir("/")?;
    }
    Ok(())
}

/// Marks every descriptor above stderr close-on-exec, so a program started in a host inherits nothing of the
/// runner: not the capture sockets some libraries open without O_CLOEXEC (pnet's), not the namespace file above.
/// Async-signal-safe: raw system calls only.
fn close_inherited_descriptors() {
    // SAFETY: close_range on a range of descriptors, with a flag; no memory is passed.
    let done = unsafe { libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, libc::CLOSE_RANGE_CLOEXEC) } == 0;
    if !done {
        // Kernels before 5.11: every descriptor the process may have. getrlimit is a plain system call.
        let mut limit = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit writes into the struct we pass.
        let open_max = match unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } {
            0 => limit.rlim_cur.min(1 << 20) as i32,
            _ => 4096,
        };
        for fd in 3..open_max {
            // SAFETY: fcntl on a descriptor number; an unused number just fails with EBADF.
            unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
        }
    }
}

/// The programs this workspace builds: a built or installed `lab` finds them next to its own executable first.
const COMPANIONS: [&str; 2] = ["vrrpd", "sentinel-proxy"];

/// Finds a program as `execvp` would (the workspace's own daemons next to this executable first), or says which
/// Debian package provides it.
pub fn find_program(program: &str) -> Result<PathBuf, String> {
    let path = std::env::var_os("PATH")
        .unwrap_or_else(|| "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into());
    let beside = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(Path::to_path_buf))
        .filter(|_| COMPANIONS.contains(&program));
    find_program_in(program, beside.as_deref(), &path)
}

/// [`find_program`] with the directory to look in first and the search path given.
pub fn find_program_in(program: &str, first: Option<&Path>, path: &std::ffi::OsStr) -> Result<PathBuf, String> {
    if program.contains('/') {
        let path = PathBuf::from(program);
        return if is_executable(&path) {
            Ok(path)
        } else {
            Err(format!("program `{program}` does not exist or is not executable"))
        };
    }
    let dirs = first
        .map(Path::to_path_buf)
        .into_iter()
        .chain(std::env::split_paths(path));
    for dir in dirs {
        let candidate = dir.join(program);
        if is_executable(&candidate) {
            return Ok(candidate);
        }
    }
    Err(match debian_package(program) {
        Some(package) => {
            format!("program `{program}` is not installed (Debian package: {package})")
        }
        None => format!("program `{program}` is not in PATH"),
    })
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    path.metadata()
        .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// The Debian packages that provide the programs a lab typically runs.
fn debian_package(program: &str) -> Option<&'static str> {
    Some(match program {
        "redis-server" | "redis-sentinel" | "redis-check-aof" | "redis-check-rdb" => "redis-server",
        "redis-cli" | "redis-benchmark" => "redis-tools",
        "haproxy" => "haproxy",
        "keepalived" => "keepalived",
        "tcpdump" => "tcpdump",
        "tshark" => "tshark",
        "nft" => "nftables",
        "ip" | "tc" | "bridge" | "ss" => "iproute2",
        "ping" | "arping" => "iputils-ping",
        "nc" => "netcat-openbsd",
        "socat" => "socat",
        "curl" => "curl",
        "python3" => "python3",
        "vrrpd" | "sentinel-proxy" | "lab" => "none: built by this workspace (scripts/install), or halab's .deb",
        _ => return None,
    })
}

/// Runs an iproute2/nftables tool inside a host and turns its complaint into the error.
pub fn run_tool(host: &HostCommand, tool: &str, args: &[&str], stdin: Option<&str>) -> io::Result<()> {
    let program = find_program(tool).map_err(|why| io::Error::new(io::ErrorKind::NotFound, why))?;
    let mut child = host
        .command(&program)?
        .args(args)
        .stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()?;
    if let Some(text) = stdin {
        child.stdin.take().expect("piped").write_all(text.as_bytes())?;
    }
    let output = child.wait_with_output()?;
    if output.status.success() {
        Ok(())
    } else {
        Err(io::Error::other(format!(
            "{tool} {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr).trim()
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Whatever is installed on this machine: the search path is the test's.
    #[test]
    fn a_missing_program_names_its_debian_package_and_companions_are_found_beside_the_lab() {
        let nowhere = std::ffi::OsStr::new("/nonexistent-dir");
        assert_eq!(
            find_program_in("tshark", None, nowhere).unwrap_err(),
            "program `tshark` is not installed (Debian package: tshark)"
        );
        assert_eq!(
            find_program_in("no-such-program-anywhere", None, nowhere).unwrap_err(),
            "program `no-such-program-anywhere` is not in PATH"
        );
        let dir = std::env::temp_dir().join(format!("companions-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let vrrpd = dir.join("vrrpd");
        std::fs::write(&vrrpd, "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(&vrrpd, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
        assert_eq!(find_program_in("vrrpd", Some(&dir), nowhere).unwrap(), vrrpd);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
