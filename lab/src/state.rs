//! The record of a lab on disk, /run/lab/<lab>/state.json, written before anything it names is created, so that a
//! lab whose runner died at any point can still be removed completely (`lab down`).

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::net::netns;

pub const RUN_ROOT: &str = "/run/lab";

pub fn run_dir(lab: &str) -> PathBuf {
    Path::new(RUN_ROOT).join(lab)
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LabState {
    pub name: String,
    pub topology: PathBuf,
    /// The process that built the lab and supervises it.
    pub runner_pid: u32,
    pub phase: Phase,
    /// Every namespace the lab may have created (listed before creation).
    pub namespaces: Vec<String>,
    pub hosts: BTreeMap<String, HostRecord>,
    /// Files written outside the run directory, e.g. /etc/netns/<ns>/hosts.
    pub files: Vec<PathBuf>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Phase {
    Building,
    Up,
    Stopping,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HostRecord {
    pub netns: String,
    pub hostname: String,
    pub hosts_file: PathBuf,
    pub interfaces: Vec<InterfaceRecord>,
    pub services: Vec<ServiceRecord>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct InterfaceRecord {
    pub name: String,
    pub segment: String,
    pub address: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ServiceRecord {
    pub name: String,
    pub pid: Option<u32>,
    pub state: String,
    pub log: PathBuf,
}

impl LabState {
    pub fn path(lab: &str) -> PathBuf {
        run_dir(lab).join("state.json")
    }

    pub fn load(lab: &str) -> io::Result<LabState> {
        let text = std::fs::read(Self::path(lab))?;
        serde_json::from_slice(&text).map_err(|e| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{}: {e}", Self::path(lab).display()),
            )
        })
    }

    /// Atomically replaces the state file.
    pub fn save(&self) -> io::Result<()> {
        let path = Self::path(&self.name);
        let temporary = path.with_extension("json.tmp");
        std::fs::write(&temporary, serde_json::to_vec_pretty(self).expect("serializable state"))?;
        std::fs::rename(&temporary, &path)
    }

    /// Whether the process that recorded this state is still alive.
    pub fn runner_alive(&self) -> bool {
        self.runner_pid != std::process::id() && process_alive(self.runner_pid)
    }
}

/// Whether `pid` is a live process (a zombie has exited, it just has not been reaped).
pub fn process_alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|stat| !stat.rsplit(')').next().unwrap_or("").trim_start().starts_with('Z'))
        .unwrap_or(false)
}

/// Names of every lab with a run directory.
pub fn labs() -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(RUN_ROOT)
        .map(|dir| {
            dir.filter_map(|e| e.ok())
                .filter(|e| e.path().is_dir())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

/// Removes everything a state names: processes in the lab's namespaces, the namespaces, files, the run directory.
/// Safe to call on a half-built lab and to call twice.
pub fn remove(state: &LabState) -> io::Result<()> {
    kill_namespace_processes(&state.namespaces);
    let mut first_error = None;
    for ns in &state.namespaces {
        if let Err(e) = netns::delete(ns) {
            first_error.get_or_insert(io::Error::new(e.kind(), format!("namespace {ns}: {e}")));
        }
    }
    for file in &state.files {
        let _ = std::fs::remove_file(file);
        // /etc/netns/<ns>/ was created for the file; remove it once empty.
        if let Some(parent) = file.parent() {
            let _ = std::fs::remove_dir(parent);
        }
    }
    if let Err(e) = std::fs::remove_dir_all(run_dir(&state.name)) {
        if e.kind() != io::ErrorKind::NotFound {
            first_error.get_or_insert(e);
        }
    }
    first_error.map_or(Ok(()), Err)
}

/// SIGKILLs every process whose network namespace is one of `namespaces`, and waits until they are gone, so
/// nothing keeps a deleted namespace alive or keeps running outside the lab's control.
pub fn kill_namespace_processes(namespaces: &[String]) {
    let inodes: Vec<u64> = namespaces
        .iter()
        .filter_map(|ns| netns::identity(ns))
        .map(|(_, ino)| ino)
        .collect();
    if inodes.is_empty() {
        return;
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let victims = processes_in(&inodes);
        if victims.is_empty() || Instant::now() > deadline {
            return;
        }
        for pid in victims {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL);
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// Processes (not zombies: those have released their namespaces) whose network namespace is one of `inodes`.
pub fn processes_in(inodes: &[u64]) -> Vec<i32> {
    use std::os::unix::fs::MetadataExt;
    let Ok(proc) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    proc.filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| *pid != std::process::id() as i32)
        .filter(|pid| std::fs::metadata(format!("/proc/{pid}/ns/net")).is_ok_and(|m| inodes.contains(&m.ino())))
        .collect()
}
