//! Hosts that behave like machines: each host has its own /run, /tmp, /etc and /var, so stock daemons keep their
//! pid files, sockets, state and logs at their default paths and two of them never meet.
//!
//! A host's filesystem lives in the lab's run directory (`names::HostFsPaths`): plain directories for /run and
//! /tmp (memory, like the tmpfs a machine has there: the lab's run directory is a tmpfs), and overlays for /etc and
//! /var, whose lower layer is the machine's /etc and, for /var, either the machine's /var or a skeleton of its
//! directories. The overlays are mounted once per host when the lab is built; every process that enters the host
//! (services, `lab exec`, probes' commands) gets them in a mount namespace of its own, bound over the machine's
//! directories as the host's [`View`] lists them. /usr, /home, /root, /srv, /opt and everything else stay the
//! machine's.
//!
//! A reboot empties /run and /tmp and keeps /etc and /var, as on a machine.

use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

use nix::mount::{mount, MsFlags};
use serde::{Deserialize, Serialize};

use crate::names::{EtcPaths, HostFsPaths, LabPaths};
use crate::topology::placeholders::Facts;
use crate::topology::{Filesystem, Host, PlacedFile, Topology, VarSeed};

/// One directory (or file) of the machine shown at `target` in the host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ViewMount {
    /// In the host.
    pub target: PathBuf,
    /// On the machine.
    pub source: PathBuf,
    #[serde(default)]
    pub read_only: bool,
}

/// What a process entering the host sees where it differs from the machine: mounts applied in this order, each
/// over the view the earlier ones made.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct View {
    pub mounts: Vec<ViewMount>,
}

/// What a view depends on in the machine the lab runs on, read once per plan rather than once per host.
#[derive(Debug, Clone)]
pub struct MachineLayout {
    /// /var/run is the usual symbolic link to /run.
    var_run_is_link: bool,
    /// The directories the lab was started from: the topology's, the current one, the lab's executable's and the
    /// search path's (outermost only, resolved).
    dirs_in_use: Vec<PathBuf>,
}

impl MachineLayout {
    pub fn read(topology_dir: &Path) -> MachineLayout {
        MachineLayout {
            var_run_is_link: std::fs::symlink_metadata("/var/run").is_ok_and(|m| m.file_type().is_symlink()),
            dirs_in_use: machine_dirs_in_use(topology_dir),
        }
    }
}

impl View {
    /// The view of `host`: its own directories, the topology's private directories and binds, the lab's run
    /// directory and the directories the lab was started from at their own paths (so `{run}`, `{tls}`, `{dir}` and
    /// programs found on the search path work inside), and the lab's /etc/hosts unless the topology places one.
    pub fn of(host: &Host, fs: &HostFsPaths, paths: &LabPaths, etc: &EtcPaths, machine: &MachineLayout) -> View {
        let mut view = View::default();
        let mut show = |target: &Path, source: &Path, read_only: bool| {
            view.mounts.push(ViewMount {
                target: target.to_path_buf(),
                source: source.to_path_buf(),
                read_only,
            })
        };
        let filesystem = &host.filesystem;
        if !filesystem.shared {
            show(Path::new("/etc"), &fs.etc, false);
            show(Path::new("/var"), &fs.var, false);
            show(Path::new("/tmp"), &fs.tmp, false);
            show(Path::new("/run"), &fs.run, false);
            // A machine whose /var/run is not the usual link to /run.
            if !machine.var_run_is_link {
                show(Path::new("/var/run"), &fs.run, false);
            }
            for (n, dir) in filesystem.private.iter().enumerate() {
                show(dir, &fs.private_dir(n), false);
            }
            for bind in &filesystem.binds {
                show(&bind.target, &bind.source, bind.read_only);
            }
            show(&paths.run_dir(), &paths.run_dir(), false);
            show(&paths.hosts_dir(), &paths.empty_dir(), true);
            // The directories the lab was started from stay visible at their own paths when they lie strictly below
            // one of the host's own directories (a checkout in /tmp, say): the topology's, the current one, the
            // lab's own executable's and the search path's, where services' programs are found.
            for dir in &machine.dirs_in_use {
                let covered =
                    filesystem.is_private(dir) && !Filesystem::AREAS.iter().any(|area| dir == Path::new(area));
                if covered {
                    show(dir, dir, false);
                }
            }
        }
        if !host.files.iter().any(|f| f.path == Path::new("/etc/hosts")) {
            show(Path::new("/etc/hosts"), &etc.hosts_file, false);
        }
        view
    }

    /// Where `path` of the host is on the machine, through the mounts of the view (the last one that covers it).
    /// Symbolic links are not followed: see [`View::locate`].
    pub fn machine_path(&self, path: &Path) -> PathBuf {
        machine_path(&self.mounts, path)
    }

    /// Where `path` of the host is on the machine, with every symbolic link on the way followed as the host would
    /// follow it (an absolute link names a path of the host, not of the machine); the last component is followed
    /// too unless `follow_last` is false.
    pub fn locate(&self, path: &Path, follow_last: bool) -> io::Result<PathBuf> {
        let mut pending: Vec<PathBuf> = vec![path.to_path_buf()];
        let mut resolved = PathBuf::from("/");
        let mut hops = 0;
        while let Some(next) = pending.pop() {
            let mut components: Vec<Component> = next.components().collect();
            components.reverse();
            if next.is_absolute() {
                resolved = PathBuf::from("/");
            }
            while let Some(component) = components.pop() {
                match component {
                    Component::RootDir | Component::CurDir | Component::Prefix(_) => continue,
                    Component::ParentDir => {
                        resolved.pop();
                        continue;
                    }
                    Component::Normal(name) => {
                        let candidate = resolved.join(name);
                        let last = components.is_empty() && pending.is_empty();
                        let on_machine = self.machine_path(&candidate);
                        let is_link = std::fs::symlink_metadata(&on_machine).is_ok_and(|m| m.file_type().is_symlink());
                        if !is_link || (last && !follow_last) {
                            resolved = candidate;
                            continue;
                        }
                        hops += 1;
                        if hops > 40 {
                            return Err(io::Error::new(
                                io::ErrorKind::InvalidInput,
                                format!("{}: too many levels of symbolic links", path.display()),
                            ));
                        }
                        let rest: PathBuf = components.iter().rev().collect();
                        components.clear();
                        if !rest.as_os_str().is_empty() {
                            pending.push(rest);
                        }
                        pending.push(std::fs::read_link(&on_machine)?);
                    }
                }
            }
        }
        Ok(self.machine_path(&resolved))
    }
}

/// The topology's directory, the current directory, the lab's executable's and the PATH's, outermost only.
fn machine_dirs_in_use(topology_dir: &Path) -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = vec![topology_dir.to_path_buf()];
    dirs.extend(std::env::current_dir().ok());
    dirs.extend(
        std::env::current_exe()
            .ok()
            .and_then(|exe| exe.parent().map(Path::to_path_buf)),
    );
    dirs.extend(std::env::var_os("PATH").iter().flat_map(std::env::split_paths));
    let mut dirs: Vec<PathBuf> = dirs
        .into_iter()
        .filter(|d| d.is_absolute() && d.is_dir())
        .filter_map(|d| d.canonicalize().ok())
        .collect();
    dirs.sort();
    dirs.dedup();
    let all = dirs.clone();
    dirs.retain(|d| !all.iter().any(|outer| outer != d && d.starts_with(outer)));
    dirs
}

fn machine_path(mounts: &[ViewMount], path: &Path) -> PathBuf {
    for mount in mounts.iter().rev() {
        if let Ok(rest) = path.strip_prefix(&mount.target) {
            return if rest.as_os_str().is_empty() {
                mount.source.clone()
            } else {
                mount.source.join(rest)
            };
        }
    }
    path.to_path_buf()
}

/// Makes the mount points a view needs inside the host's own directories (a `{dir}` under /tmp, the run
/// directory under /run...): they vanish with /run and /tmp at a reboot, so this runs before every process starts.
/// Only inside the lab's run directory: a mount point that would be made anywhere else must exist already.
pub fn make_mount_points(view: &View, paths: &LabPaths) -> io::Result<()> {
    let hosts = paths.hosts_dir();
    for (i, mount) in view.mounts.iter().enumerate() {
        let place = machine_path(&view.mounts[..i], &mount.target);
        let Ok(inside) = place.strip_prefix(&hosts) else {
            continue;
        };
        if place == mount.target || !paths.owns(&place) {
            continue;
        }
        let is_dir = std::fs::metadata(&mount.source).is_ok_and(|m| m.is_dir());
        make_beneath(&hosts, inside, is_dir)
            .map_err(|e| io::Error::new(e.kind(), format!("mount point {}: {e}", place.display())))?;
    }
    Ok(())
}

/// Makes `inside` (a relative path) beneath the directory `base`, one component at a time from a descriptor of the
/// one before, never following a symbolic link: what a host's processes put in their /tmp or /run cannot lead the
/// lab (root, on the machine) anywhere else. The last component is a directory, or an empty file if `dir` is false.
fn make_beneath(base: &Path, inside: &Path, dir: bool) -> io::Result<()> {
    use nix::fcntl::{openat, OFlag};
    use nix::sys::stat::{mkdirat, Mode};
    let directory = OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC | OFlag::O_RDONLY;
    let mut at: std::os::fd::OwnedFd = openat(nix::fcntl::AT_FDCWD, base, directory, Mode::empty())?;
    let components: Vec<&std::ffi::OsStr> = inside.iter().collect();
    for (n, name) in components.iter().enumerate() {
        let last = n + 1 == components.len();
        if last && !dir {
            // One that exists is left alone (opening it to write would copy the machine's file up into the layer).
            let flags = nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW;
            if nix::sys::stat::fstatat(&at, *name, flags).is_ok() {
                return Ok(());
            }
            let file = OFlag::O_CREAT | OFlag::O_WRONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
            openat(&at, *name, file, Mode::from_bits_truncate(0o644))?;
            return Ok(());
        }
        match mkdirat(&at, *name, Mode::from_bits_truncate(0o755)) {
            Ok(()) | Err(nix::errno::Errno::EEXIST) => {}
            Err(e) => return Err(e.into()),
        }
        // A symbolic link in the way makes this fail (ELOOP, ENOTDIR) rather than be followed.
        at = openat(&at, *name, directory, Mode::empty())?;
    }
    Ok(())
}

/// What the whole lab's hosts share: the directory that hides the hosts' files from each other, and the skeleton
/// of /var when a host starts with an empty one.
pub fn build_lab(topology: &Topology, paths: &LabPaths) -> io::Result<()> {
    let private: Vec<&Host> = topology.hosts.iter().filter(|h| !h.filesystem.shared).collect();
    if private.is_empty() {
        return Ok(());
    }
    std::fs::DirBuilder::new().mode(0o755).create(paths.hosts_dir())?;
    std::fs::DirBuilder::new().mode(0o555).create(paths.empty_dir())?;
    if private.iter().any(|h| h.filesystem.var == VarSeed::Empty) {
        copy_directories(Path::new("/var"), &paths.var_skeleton())?;
    }
    Ok(())
}

/// Builds `host`'s own directories and mounts its /etc and /var; then places its /etc/hostname and the topology's
/// files. Everything is inside the lab's run directory, where teardown finds it.
pub fn build_host(host: &Host, fs: &HostFsPaths, view: &View, facts: &Facts) -> io::Result<()> {
    let Some(paths) = facts.paths else {
        return Err(io::Error::other("the lab's paths are needed to build a host"));
    };
    if !host.filesystem.shared {
        // The run directory is root's alone (0700) and the lab sets no umask: 0755 is what these are made with.
        let dir = |path: &Path| std::fs::DirBuilder::new().mode(0o755).create(path);
        dir(&fs.root)?;
        dir(fs.etc_upper.parent().expect("the layers' directory"))?;
        for path in [
            &fs.run,
            &fs.tmp,
            &fs.etc,
            &fs.etc_upper,
            &fs.etc_work,
            &fs.var,
            &fs.var_upper,
            &fs.var_work,
        ] {
            dir(path)?;
        }
        std::fs::set_permissions(&fs.tmp, std::fs::Permissions::from_mode(0o1777))?;
        if !host.filesystem.private.is_empty() {
            dir(&fs.private)?;
        }
        for n in 0..host.filesystem.private.len() {
            dir(&fs.private_dir(n))?;
        }
        // Straight into the upper layer before it is mounted: the host's own /etc/hostname, with no copy-up.
        let mut hostname = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o644)
            .open(fs.etc_upper.join("hostname"))?;
        hostname.write_all(format!("{}\n", host.hostname).as_bytes())?;
        let var_lower = match host.filesystem.var {
            VarSeed::Empty => paths.var_skeleton(),
            VarSeed::Machine => PathBuf::from("/var"),
        };
        overlay(Path::new("/etc"), &fs.etc_upper, &fs.etc_work, &fs.etc)?;
        overlay(&var_lower, &fs.var_upper, &fs.var_work, &fs.var)?;
    }
    for file in &host.files {
        place_file(file, view, facts, paths)?;
    }
    Ok(())
}

/// Empties the host's /run and /tmp, as a machine's are after a power cycle.
pub fn forget_volatile(host: &Host, fs: &HostFsPaths) -> io::Result<()> {
    if host.filesystem.shared {
        return Ok(());
    }
    for (dir, mode) in [(&fs.run, 0o755), (&fs.tmp, 0o1777)] {
        match std::fs::remove_dir_all(dir) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
        std::fs::DirBuilder::new().mode(mode).create(dir)?;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(mode))?;
    }
    Ok(())
}

fn overlay(lower: &Path, upper: &Path, work: &Path, merged: &Path) -> io::Result<()> {
    let options = format!(
        "lowerdir={},upperdir={},workdir={}",
        lower.display(),
        upper.display(),
        work.display()
    );
    mount(
        Some("overlay"),
        merged,
        Some("overlay"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
        Some(options.as_str()),
    )
    .map_err(|e| {
        io::Error::new(
            io::Error::from(e).kind(),
            format!("cannot mount an overlay on {} ({options}): {e}", merged.display()),
        )
    })
}

fn place_file(file: &PlacedFile, view: &View, facts: &Facts, paths: &LabPaths) -> io::Result<()> {
    let bytes = file.content(facts)?;
    place(view, paths, &file.path, &bytes, file.mode, file.owner)
}

/// Writes a file at `path` of the host: only ever inside the lab's run directory, replacing a symbolic link there
/// rather than following it.
fn place(view: &View, paths: &LabPaths, path: &Path, bytes: &[u8], mode: u32, owner: (u32, u32)) -> io::Result<()> {
    let place = view.locate(path, false)?;
    if !paths.owns(&place) || !place.starts_with(paths.hosts_dir()) {
        return Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!(
                "{} of host would be {} on the machine, outside the host's own files: not written",
                path.display(),
                place.display()
            ),
        ));
    }
    if let Some(parent) = place.parent() {
        std::fs::DirBuilder::new().recursive(true).mode(0o755).create(parent)?;
    }
    if std::fs::symlink_metadata(&place).is_ok_and(|m| m.file_type().is_symlink()) {
        std::fs::remove_file(&place)?;
    }
    let mut out = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .custom_flags(libc::O_NOFOLLOW)
        .open(&place)
        .map_err(|e| io::Error::new(e.kind(), format!("cannot write {}: {e}", place.display())))?;
    out.write_all(bytes)?;
    std::os::unix::fs::fchown(&out, Some(owner.0), Some(owner.1))?;
    out.set_permissions(std::fs::Permissions::from_mode(mode))
}

/// Most directories a skeleton copies: /var of a busy machine (container images under /var/lib) can hold many.
const SKELETON_LIMIT: usize = 20_000;

/// Recreates the directories and symbolic links under `from` (same file system only, not /var/tmp's contents) in
/// `to`, with their owners and modes, and none of the files.
fn copy_directories(from: &Path, to: &Path) -> io::Result<()> {
    use std::os::unix::fs::MetadataExt;
    let device = std::fs::metadata(from)?.dev();
    let mut pending = vec![(from.to_path_buf(), to.to_path_buf())];
    let mut copied = 0;
    while let Some((source, target)) = pending.pop() {
        let meta = std::fs::symlink_metadata(&source)?;
        std::fs::DirBuilder::new().mode(0o700).create(&target)?;
        std::os::unix::fs::lchown(&target, Some(meta.uid()), Some(meta.gid()))?;
        std::fs::set_permissions(&target, std::fs::Permissions::from_mode(meta.mode() & 0o7777))?;
        copied += 1;
        if copied >= SKELETON_LIMIT || source == Path::new("/var/tmp") {
            continue;
        }
        let Ok(entries) = std::fs::read_dir(&source) else {
            continue;
        };
        for entry in entries.flatten() {
            let Ok(meta) = entry.metadata() else { continue };
            let (from, to) = (entry.path(), target.join(entry.file_name()));
            if meta.file_type().is_symlink() {
                std::os::unix::fs::symlink(std::fs::read_link(&from)?, &to)?;
            } else if meta.is_dir() && meta.dev() == device {
                pending.push((from, to));
            }
        }
    }
    Ok(())
}
