//! Removing a lab: only what it can prove it created, whoever asks (the lab's own runner, or `lab down` after
//! the runner died).
//!
//! The proofs: the run directory is the lab's if it is the directory the lab created (its identity, when the
//! caller knows it) and holds a record that names it; a namespace is the lab's if it is mounted inside that run
//! directory; a /run/netns or /etc/netns name is the lab's if it is a symbolic link to the lab's own file. A
//! process is the lab's if it lives in one of those namespaces, checked again through a pidfd before it is
//! signalled, so a reused pid is never hit.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;
use std::time::{Duration, Instant};

use crate::control::{Action, Client, Reply};
use crate::names::{self, LabPaths, SWITCH_HOST};
use crate::net::netns;
use crate::state::{Identity, LabState};

/// How `lab down` got a lab down.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DownOutcome {
    /// Its supervisor did it and answered.
    Stopped,
    /// Its supervisor did not answer in time: it was killed, then the lab removed.
    SupervisorKilled,
    /// Its runner was gone: the lab was removed from its record.
    Recovered,
    /// A runner killed right after creating the run directory had created nothing else.
    EmptyRunDirectory,
}

impl std::fmt::Display for DownOutcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            DownOutcome::Stopped => "stopped by its supervisor",
            DownOutcome::SupervisorKilled => "its supervisor did not answer in time and was killed",
            DownOutcome::Recovered => "recovered: its runner was gone",
            DownOutcome::EmptyRunDirectory => {
                "removed an empty run directory: its runner died before building anything"
            }
        })
    }
}

/// Takes the lab down: through its supervisor if one answers within `patience`, otherwise by killing the
/// supervisor (so it can never act later) and removing what the lab's record and run directory prove its own.
pub fn down(paths: &LabPaths, patience: Duration) -> io::Result<DownOutcome> {
    let state = match LabState::load(paths) {
        Ok(state) => state,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return remove_empty_run_dir(paths),
        Err(e) => return Err(e),
    };
    let mut killed = false;
    if state.runner_alive() {
        let answer = Client::connect(paths, &state.instance).and_then(|mut c| c.request(Action::Down, Some(patience)));
        if let Ok(Reply::Done) = answer {
            return Ok(DownOutcome::Stopped);
        }
        if state.runner_alive() {
            kill_runner(state.runner_pid, state.runner_started)?;
            killed = true;
        }
    }
    let hosts: Vec<String> = state.hosts.keys().cloned().collect();
    remove(paths, &hosts, Some(state.run_dir))?;
    Ok(if killed {
        DownOutcome::SupervisorKilled
    } else {
        DownOutcome::Recovered
    })
}

fn remove_empty_run_dir(paths: &LabPaths) -> io::Result<DownOutcome> {
    let run_dir = paths.run_dir();
    match std::fs::remove_dir(&run_dir) {
        Ok(()) => Ok(DownOutcome::EmptyRunDirectory),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Err(io::Error::new(
            e.kind(),
            format!("no such lab (nothing in {})", run_dir.display()),
        )),
        Err(e) => Err(io::Error::new(
            e.kind(),
            format!(
                "{} has no state.json and cannot be removed as an empty run directory ({e}); it was not left by a \
                 lab's runner, so it is left alone",
                run_dir.display()
            ),
        )),
    }
}

/// Removes everything of the lab whose paths are given: processes in its namespaces, the namespaces, their names,
/// the run directory. With `run_dir` (the identity the lab's runner saw when it created its run directory), a run
/// directory that is not that one (a newer lab of the same name) is left alone. Safe on a half-built lab and twice.
pub fn remove(paths: &LabPaths, hosts: &[String], run_dir: Option<Identity>) -> io::Result<()> {
    match Identity::of_directory(&paths.run_dir()) {
        Ok(found) if run_dir.is_some_and(|expected| expected != found) => return Ok(()),
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => return remove_links(paths, hosts),
        Err(e) => return Err(e),
    }
    let mounted = mounted_namespaces(paths)?;
    let identities: Vec<Identity> = mounted.iter().filter_map(|(_, id)| *id).collect();
    kill_processes_in(&identities);
    let mut first_error = None;
    let mut hosts = hosts.to_vec();
    hosts.extend(mounted.iter().map(|(host, _)| host.clone()));
    if let Err(e) = remove_links(paths, &hosts) {
        first_error.get_or_insert(e);
    }
    for (host, _) in &mounted {
        if let Err(e) = netns::unmount(&paths.namespace(host).mount) {
            first_error.get_or_insert(e);
        }
    }
    if let Err(e) = std::fs::remove_dir_all(paths.run_dir()) {
        if e.kind() != io::ErrorKind::NotFound {
            first_error.get_or_insert(io::Error::new(
                e.kind(),
                format!("cannot remove {}: {e}", paths.run_dir().display()),
            ));
        }
    }
    first_error.map_or(Ok(()), Err)
}

/// The namespace files in the run directory, by host, with the identity of what is mounted there (`None`: a file
/// whose mount never happened or is gone).
fn mounted_namespaces(paths: &LabPaths) -> io::Result<Vec<(String, Option<Identity>)>> {
    let dir = match std::fs::read_dir(paths.namespaces_dir()) {
        Ok(dir) => dir,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut found = Vec::new();
    for entry in dir {
        let entry = entry?;
        let Some(host) = entry.file_name().to_str().map(str::to_string) else {
            continue;
        };
        if host != SWITCH_HOST && names::check_host(&host).is_err() {
            continue;
        }
        let identity = netns::identity(&entry.path());
        found.push((host, identity));
    }
    found.sort();
    Ok(found)
}

/// Removes the /run/netns and /etc/netns names of `hosts` (and the switch) that point at this lab's files.
fn remove_links(paths: &LabPaths, hosts: &[String]) -> io::Result<()> {
    let mut first_error = None;
    let mut remove = |link: &Path, target: &Path| {
        if let Err(e) = remove_link_to(link, target) {
            first_error.get_or_insert(e);
        }
    };
    let switch = paths.namespace(SWITCH_HOST);
    remove(&switch.link, &switch.mount);
    for host in hosts {
        if names::check_host(host).is_err() {
            continue;
        }
        let namespace = paths.namespace(host);
        remove(&namespace.link, &namespace.mount);
        let etc = paths.etc(host);
        remove(&etc.link, &etc.dir);
    }
    first_error.map_or(Ok(()), Err)
}

/// Removes `link` if it is a symbolic link to exactly `target`; anything else there is not the lab's.
fn remove_link_to(link: &Path, target: &Path) -> io::Result<()> {
    match std::fs::read_link(link) {
        Ok(points_to) if points_to == target => match std::fs::remove_file(link) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        },
        _ => Ok(()),
    }
}

/// SIGKILLs every process whose network namespace is one of `namespaces`, and waits until they are gone, so nothing
/// keeps a namespace alive or keeps running outside the lab's control.
pub fn kill_processes_in(namespaces: &[Identity]) {
    if namespaces.is_empty() {
        return;
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let victims = processes_in(namespaces);
        if victims.is_empty() || Instant::now() > deadline {
            return;
        }
        for pid in victims {
            let _ = kill_if_in(pid, namespaces);
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// Processes (not zombies: those have released their namespaces) whose network namespace is one of `namespaces`.
pub fn processes_in(namespaces: &[Identity]) -> Vec<i32> {
    let Ok(proc) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    proc.filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| *pid != std::process::id() as i32)
        .filter(|pid| in_namespaces(*pid, namespaces))
        .collect()
}

fn in_namespaces(pid: i32, namespaces: &[Identity]) -> bool {
    Identity::of(Path::new(&format!("/proc/{pid}/ns/net"))).is_ok_and(|id| namespaces.contains(&id))
}

/// Sends SIGKILL to `pid` through a pidfd, after checking that the process the pidfd names lives in one of
/// `namespaces` (the pid may have been reused since it was listed).
pub fn kill_if_in(pid: i32, namespaces: &[Identity]) -> io::Result<()> {
    let pidfd = pidfd_open(pid)?;
    if !in_namespaces(pid, namespaces) {
        return Ok(());
    }
    pidfd_kill(&pidfd)
}

/// Sends SIGKILL to the process that `pid` names if it started at `started` (clock ticks after boot, as recorded):
/// the pid of a runner that died long ago may belong to anything now.
pub fn kill_runner(pid: u32, started: u64) -> io::Result<()> {
    let pidfd = pidfd_open(pid as i32)?;
    if crate::state::process_started(pid) != Some(started) {
        return Ok(());
    }
    pidfd_kill(&pidfd)?;
    let deadline = Instant::now() + Duration::from_secs(10);
    while crate::state::process_started(pid) == Some(started) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(2));
    }
    Ok(())
}

fn pidfd_open(pid: i32) -> io::Result<OwnedFd> {
    // SAFETY: pidfd_open takes a pid and flags and returns a new descriptor or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the kernel just returned this descriptor to us; nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

fn pidfd_kill(pidfd: &OwnedFd) -> io::Result<()> {
    // SAFETY: pidfd_send_signal on a descriptor we own, with no siginfo.
    let result = unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            pidfd.as_raw_fd(),
            libc::SIGKILL,
            std::ptr::null::<libc::siginfo_t>(),
            0,
        )
    };
    if result < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}
