//! Removing a lab: only what it can prove it created, whoever asks (the lab's own runner, or `lab down` after
//! the runner died).
//!
//! The proofs: the run directory is the lab's if its record names the lab and, when the caller knows it, the
//! instance that created it; a namespace is the lab's if it is mounted inside that run
//! directory; a /run/netns name is the lab's if it is a symbolic link to the lab's own file; an /etc/netns
//! directory is the lab's if it holds the lab's recorded hosts file and nothing else. A
//! process is the lab's if it lives in one of those namespaces, checked again through a pidfd before it is
//! signalled, so a reused pid is never hit.

use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::mount::{umount2, MntFlags};
use nix::sys::signal::Signal;

use crate::control::{Action, Client, Reply};
use crate::names::{self, LabPaths, SWITCH_HOST};
use crate::net::netns;
use crate::pidfd::Pidfd;
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
    /// Its runner, a program using the library, is still running: the lab was removed under it (it finds it gone).
    RemovedUnderRunner,
    /// A runner killed right after creating the run directory had created nothing else.
    EmptyRunDirectory,
}

impl std::fmt::Display for DownOutcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            DownOutcome::Stopped => "stopped by its supervisor",
            DownOutcome::SupervisorKilled => "its supervisor did not answer in time and was killed",
            DownOutcome::Recovered => "recovered: its runner was gone",
            DownOutcome::RemovedUnderRunner => {
                "removed under its runner, a program using the library, which is still running"
            }
            DownOutcome::EmptyRunDirectory => {
                "removed an empty run directory: its runner died before building anything"
            }
        })
    }
}

/// Takes the lab down: through its supervisor if it acknowledges within `patience` and finishes within `patience`
/// more; otherwise a runner that stops on SIGTERM is sent one, and killed if it is still there after `patience`
/// (so it can never act later), and the lab is removed from what its record and run directory prove its own. A
/// runner that does not stop on signals (a program using the library) is left running; its own teardown later
/// finds a run directory that is no longer its own and touches nothing.
///
/// With `instance` (a coordinator taking its part on this machine down), only the lab of that instance is: another
/// lab of the same name is left alone.
pub fn down(paths: &LabPaths, patience: Duration, instance: Option<&str>) -> io::Result<DownOutcome> {
    let state = match LabState::load(paths) {
        Ok(state) => state,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return remove_empty_run_dir(paths),
        Err(e) => return Err(e),
    };
    if let Some(instance) = instance.filter(|i| *i != state.instance) {
        return Err(io::Error::other(format!(
            "the lab of that name here is another instance ({}, not {instance}): left alone",
            state.instance
        )));
    }
    let mut killed = false;
    let mut runner_left = false;
    if state.runner_alive() {
        if ask_down(paths, &state, patience) {
            return Ok(DownOutcome::Stopped);
        }
        if state.stops_on_signals {
            signal_runner(&state, Signal::SIGTERM)?;
            if !runner_gone_within(&state, patience) {
                signal_runner(&state, Signal::SIGKILL)?;
                runner_gone_within(&state, Duration::from_secs(10));
                killed = true;
            }
        } else {
            runner_left = true;
        }
    }
    // The parts on other machines took themselves down when the runner's sessions ended (or within their
    // heartbeat's patience); `lab down` there, at once on every machine, removes whatever a part could not. First,
    // while this machine's record still says where they are.
    let unreachable: Vec<String> = std::thread::scope(|scope| {
        let threads: Vec<_> = (state.remotes.iter())
            .map(|r| scope.spawn(move || crate::machines::remote::down_recorded(r, paths.lab(), patience)))
            .collect();
        (threads.into_iter().zip(&state.remotes))
            .filter_map(|(t, r)| match t.join() {
                Ok(Ok(())) => None,
                Ok(Err(e)) => Some(format!(
                    "{e} (by hand: `lab down {} --instance {}` there)",
                    paths.lab(),
                    r.instance
                )),
                Err(_) => Some(format!("machine {}: panicked", r.ssh.machine)),
            })
            .collect()
    });
    let hosts: Vec<String> = state.hosts.keys().cloned().collect();
    remove(paths, &hosts, Some(&state.instance), state.etc_hosts)?;
    if !unreachable.is_empty() {
        return Err(io::Error::other(format!(
            "this machine's part is down; on other machines: {}",
            unreachable.join("; ")
        )));
    }
    Ok(if killed {
        DownOutcome::SupervisorKilled
    } else if runner_left {
        DownOutcome::RemovedUnderRunner
    } else {
        DownOutcome::Recovered
    })
}

/// Whether the supervisor took the lab down when asked.
fn ask_down(paths: &LabPaths, state: &LabState, patience: Duration) -> bool {
    let Ok(mut client) = Client::connect(paths, &state.instance) else {
        return false;
    };
    matches!(client.request(Action::Down, Some(patience)), Ok(Reply::Accepted))
        && matches!(client.next_reply(Some(patience)), Ok(Some(Reply::Done)))
}

/// Signals the recorded runner if it is still the process that started at the recorded time.
fn signal_runner(state: &LabState, signal: Signal) -> io::Result<()> {
    let pidfd = match Pidfd::open(state.runner_pid as i32) {
        Ok(pidfd) => pidfd,
        Err(e) if e.raw_os_error() == Some(libc::ESRCH) => return Ok(()),
        Err(e) => return Err(e),
    };
    if crate::state::process_started(state.runner_pid) != Some(state.runner_started) {
        return Ok(());
    }
    pidfd.signal(signal)
}

fn runner_gone_within(state: &LabState, patience: Duration) -> bool {
    let deadline = Instant::now() + patience;
    while state.runner_alive() {
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    true
}

/// A run directory without a record is removed only if it holds nothing but, at most, a record that was never
/// completed: that is all a runner killed right after creating it can have left.
fn remove_empty_run_dir(paths: &LabPaths) -> io::Result<DownOutcome> {
    let run_dir = paths.run_dir();
    let entries: Vec<String> = match std::fs::read_dir(&run_dir) {
        Ok(dir) => dir
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect(),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Err(io::Error::new(
                e.kind(),
                format!("no such lab (nothing in {})", run_dir.display()),
            ))
        }
        Err(e) => return Err(e),
    };
    let unfinished_record = |e: &String| e.starts_with("state.json.") && e.ends_with(".tmp");
    if !entries.iter().all(unfinished_record) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "{} has no state.json but holds {}; it was not left by a lab's runner, so it is left alone",
                run_dir.display(),
                entries.join(", ")
            ),
        ));
    }
    for entry in &entries {
        let _ = std::fs::remove_file(run_dir.join(entry));
    }
    std::fs::remove_dir(&run_dir)?;
    Ok(DownOutcome::EmptyRunDirectory)
}

/// Removes everything of the lab whose paths are given: the names of its namespaces, the processes in them, the
/// namespaces, the run directory. With `instance` (the instance id the lab's runner chose, or its record holds), a
/// run directory whose record is not that instance's (a newer lab of the same name: inode numbers are reused, so
/// only the record tells) is left alone. Safe on a half-built lab and twice.
pub fn remove(
    paths: &LabPaths,
    hosts: &[String],
    instance: Option<&str>,
    etc_hosts: Option<Identity>,
) -> io::Result<()> {
    match Identity::of_directory(&paths.run_dir()) {
        Ok(_) => {}
        // Names are removed before the run directory: without it, there is nothing left of this lab, and a name
        // may already be a newer lab's.
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    }
    if let Some(instance) = instance {
        if crate::state::recorded_instance(paths).as_deref() != Some(instance) {
            return Ok(());
        }
    }
    let mounted = mounted_namespaces(paths)?;
    let identities: Vec<Identity> = mounted.iter().filter_map(|(_, id)| *id).collect();
    let mut first_error = None;
    let mut hosts = hosts.to_vec();
    hosts.extend(mounted.iter().map(|(host, _)| host.clone()));
    // Names first, so nothing new enters the namespaces by name while they are emptied.
    if let Err(e) = remove_names(paths, &hosts, etc_hosts) {
        first_error.get_or_insert(e);
    }
    kill_processes_in(&identities);
    // A file system still mounted inside is never descended into: the run directory then stays, and says why.
    match unmount_everything_under(&paths.run_dir()) {
        Ok(()) => {
            if let Err(e) = remove_run_dir(&paths.run_dir()) {
                first_error.get_or_insert(e);
            }
        }
        Err(e) => {
            first_error.get_or_insert(e);
        }
    }
    first_error.map_or(Ok(()), Err)
}

/// The namespace files in the run directory, by host, with the identity of what is mounted there (`None`: a file
/// whose mount never happened or is gone). Only regular files count: a symbolic link is not the lab's namespace.
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
        if !entry.file_type()?.is_file() {
            continue;
        }
        found.push((host, netns::identity(&entry.path())));
    }
    found.sort();
    Ok(found)
}

/// Detaches every mount inside `dir` (the lab's namespaces, and anything else mounted there), deepest first, so
/// removing the directory never descends into a file system that is not the lab's.
fn unmount_everything_under(dir: &Path) -> io::Result<()> {
    let mut inside: Vec<std::path::PathBuf> = mount_points_under(dir)?.collect();
    inside.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    inside.dedup();
    for point in &inside {
        match umount2(point.as_path(), MntFlags::MNT_DETACH | MntFlags::UMOUNT_NOFOLLOW) {
            Ok(()) | Err(Errno::EINVAL) | Err(Errno::ENOENT) => {}
            Err(e) => {
                return Err(io::Error::new(
                    io::Error::from(e).kind(),
                    format!("cannot unmount {}: {e}", point.display()),
                ))
            }
        }
    }
    if mount_points_under(dir)?.next().is_some() {
        return Err(io::Error::other(format!(
            "something is still mounted inside {} (a locked mount?); it is left in place",
            dir.display()
        )));
    }
    Ok(())
}

fn mount_points_under(dir: &Path) -> io::Result<impl Iterator<Item = std::path::PathBuf> + '_> {
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo")?;
    let points: Vec<std::path::PathBuf> = mountinfo
        .lines()
        .filter_map(|line| line.split(' ').nth(4))
        .map(unescape_mount_point)
        .filter(|point| point.starts_with(dir) && point != dir)
        .collect();
    Ok(points.into_iter())
}

/// mountinfo writes space, tab, newline and backslash in mount points as octal escapes.
fn unescape_mount_point(field: &str) -> std::path::PathBuf {
    use std::os::unix::ffi::OsStringExt;
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes
            .get(i + 1..i + 4)
            .and_then(|d| u8::from_str_radix(std::str::from_utf8(d).ok()?, 8).ok());
        match (bytes[i], octal) {
            (b'\\', Some(byte)) => {
                out.push(byte);
                i += 4;
            }
            (byte, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    std::ffi::OsString::from_vec(out).into()
}

/// Removes the run directory, its record last: a removal cut short leaves a directory `lab down` still recognises.
fn remove_run_dir(run_dir: &Path) -> io::Result<()> {
    let entries = match std::fs::read_dir(run_dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let entry = entry?;
        if entry.file_name() == "state.json" {
            continue;
        }
        let removed = if entry.file_type()?.is_dir() {
            std::fs::remove_dir_all(entry.path())
        } else {
            std::fs::remove_file(entry.path())
        };
        removed.map_err(|e| io::Error::new(e.kind(), format!("cannot remove {}: {e}", entry.path().display())))?;
    }
    match std::fs::remove_file(run_dir.join("state.json")) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    std::fs::remove_dir(run_dir)
        .map_err(|e| io::Error::new(e.kind(), format!("cannot remove {}: {e}", run_dir.display())))
}

/// Removes the /run/netns and /etc/netns names of `hosts` (and the switch) that are the lab's: a link to exactly
/// the lab's namespace file; a directory holding the lab's hosts file (`etc_hosts`) and nothing else.
fn remove_names(paths: &LabPaths, hosts: &[String], etc_hosts: Option<Identity>) -> io::Result<()> {
    let mut first_error = None;
    let mut note = |result: io::Result<()>| {
        if let Err(e) = result {
            first_error.get_or_insert(e);
        }
    };
    let switch = paths.namespace(SWITCH_HOST);
    note(remove_link_to(&switch.link, &switch.mount));
    let staged = paths.staged_etc_hosts();
    if etc_hosts.is_some()
        && std::fs::symlink_metadata(&staged).is_ok_and(|m| {
            Some(Identity {
                dev: m.dev(),
                ino: m.ino(),
            }) == etc_hosts
        })
    {
        note(std::fs::remove_file(&staged));
    }
    for host in hosts {
        if names::check_host(host).is_err() {
            continue;
        }
        let namespace = paths.namespace(host);
        note(remove_link_to(&namespace.link, &namespace.mount));
        if let Some(etc_hosts) = etc_hosts {
            note(remove_etc_dir(&paths.etc(host), etc_hosts));
        }
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

/// Removes a host's /etc/netns directory if it is the lab's: a directory (not a link) whose one entry is the lab's
/// hosts file, or that is empty (a runner killed between creating it and linking the file; `rmdir` of an empty
/// directory loses nothing).
fn remove_etc_dir(etc: &crate::names::EtcPaths, etc_hosts: Identity) -> io::Result<()> {
    if !std::fs::symlink_metadata(&etc.dir).is_ok_and(|m| m.is_dir()) {
        return Ok(());
    }
    let entries: Vec<_> = std::fs::read_dir(&etc.dir)?.collect::<Result<_, _>>()?;
    if entries.is_empty() {
        return match std::fs::remove_dir(&etc.dir) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        };
    }
    let only_the_hosts_file = entries.len() == 1
        && entries[0].file_name() == "hosts"
        && std::fs::symlink_metadata(&etc.hosts_file).is_ok_and(|m| {
            m.is_file()
                && Identity {
                    dev: m.dev(),
                    ino: m.ino(),
                } == etc_hosts
        });
    if !only_the_hosts_file {
        return Ok(());
    }
    std::fs::remove_file(&etc.hosts_file)?;
    std::fs::remove_dir(&etc.dir)
}

/// SIGKILLs every process whose network namespace is one of `namespaces`, and waits until they are gone, so nothing
/// keeps a namespace alive or keeps running outside the lab's control. Every one is stopped (SIGSTOP) before any is
/// killed, as a machine's processes all stop at once when it loses power: a daemon whose parent dies first must not
/// get to act on it (keepalived's VRRP process is sent SIGTERM when its parent dies, and would say goodbye with a
/// priority-0 advert).
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
        for pid in &victims {
            let _ = signal_if_in(*pid, namespaces, Signal::SIGSTOP);
        }
        // A stop is taken when the process next runs, after any lower-numbered signal already pending: wait until
        // each has stopped, or a SIGTERM its parent's death queues would be handled first.
        let stopping = Instant::now();
        while victims.iter().any(|pid| running(*pid)) && stopping.elapsed() < Duration::from_millis(200) {
            std::thread::sleep(Duration::from_micros(200));
        }
        // Children before their parents: a parent that dies first orphans its process group, and the kernel then
        // continues the group's stopped members (SIGCONT), which would run before their own SIGKILL is queued.
        let mut victims = victims;
        victims.sort_by_key(|pid| std::cmp::Reverse(depth(*pid)));
        for pid in &victims {
            let _ = signal_if_in(*pid, namespaces, Signal::SIGKILL);
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// How many ancestors `pid` has (at most 64 are counted).
fn depth(pid: i32) -> usize {
    // Field 4 of proc(5), the parent's pid.
    let parent = |pid: i32| -> Option<i32> { crate::state::stat_fields(pid)?.get(1)?.parse().ok() };
    let (mut depth, mut current) = (0, pid);
    while let Some(next) = parent(current).filter(|p| *p > 1) {
        depth += 1;
        current = next;
        if depth == 64 {
            break;
        }
    }
    depth
}

/// Whether `pid` is a process that is not stopped (nor gone).
fn running(pid: i32) -> bool {
    let state = crate::state::stat_fields(pid).and_then(|fields| fields.into_iter().next());
    !matches!(state.as_deref(), None | Some("T" | "t" | "Z" | "X"))
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

/// Sends `signal` to `pid` through a pidfd, after checking that the process the pidfd names lives in one of
/// `namespaces` (the pid may have been reused since it was listed).
fn signal_if_in(pid: i32, namespaces: &[Identity], signal: Signal) -> io::Result<()> {
    let pidfd = Pidfd::open(pid)?;
    if !in_namespaces(pid, namespaces) {
        return Ok(());
    }
    pidfd.signal(signal)
}
