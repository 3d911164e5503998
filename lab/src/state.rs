//! The record of a lab on disk, /run/lab/<lab>/state.json: what `lab status`, `exec` and `down` read when the lab's
//! runner is another process, or dead.
//!
//! The record is trusted only after [`LabState::load`] has checked it: the name inside must be the directory it
//! was read from, every name a valid name, and every path one the lab owns. What the lab created is not listed here
//! on faith: its namespaces are mounted inside the run directory (see `net::netns`), which is what teardown checks.

use std::collections::BTreeMap;
use std::io::{self, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::names::{self, LabPaths, RUN_ROOT, SWITCH_HOST};

/// What identifies a file whatever its name: device and inode. For a namespace, those of its nsfs inode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Identity {
    pub dev: u64,
    pub ino: u64,
}

impl Identity {
    /// The identity of what `path` names (following a final symbolic link).
    pub fn of(path: &Path) -> io::Result<Identity> {
        let meta = std::fs::metadata(path)?;
        Ok(Identity {
            dev: meta.dev(),
            ino: meta.ino(),
        })
    }

    /// The identity of a directory that must not be a symbolic link.
    pub fn of_directory(path: &Path) -> io::Result<Identity> {
        let meta = std::fs::symlink_metadata(path)?;
        if !meta.is_dir() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{} is not a directory", path.display()),
            ));
        }
        Ok(Identity {
            dev: meta.dev(),
            ino: meta.ino(),
        })
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LabState {
    pub name: String,
    /// Chosen at `lab up`: every control request carries it, so a stale supervisor never acts on a newer lab of the
    /// same name, and a client never talks to an old one.
    pub instance: String,
    /// The topology file, for people reading the record; never acted on.
    pub topology: PathBuf,
    /// The process that built the lab and supervises it, and its start time (clock ticks after boot, from
    /// /proc/<pid>/stat): a pid alone may have been reused.
    pub runner_pid: u32,
    pub runner_started: u64,
    /// The runner stops (and cancels a bring-up) on SIGTERM: the `lab` command does, a program using the library
    /// may not, and `lab down` never signals such a runner.
    pub stops_on_signals: bool,
    pub phase: Phase,
    /// The run directory this record was written into.
    pub run_dir: Identity,
    /// Namespaces the lab has created (recorded once they exist), by host (the switch as `switch`).
    pub namespaces: BTreeMap<String, NamespaceRecord>,
    /// The hosts file in every host's /etc/netns directory (one file, hard-linked), recorded once it exists: a
    /// directory there is the lab's only if it holds this file and nothing else.
    #[serde(default)]
    pub etc_hosts: Option<Identity>,
    pub hosts: BTreeMap<String, HostRecord>,
    /// The network faults in force, rewritten after every fault: what `lab faults` lists.
    #[serde(default)]
    pub faults: ActiveFaults,
    /// On the coordinator of a lab spread over machines: the other machines' parts, recorded before they are built.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub remotes: Vec<crate::machines::remote::RemoteRecord>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ActiveFaults {
    /// The impairment backend, once a link has needed one.
    pub backend: Option<crate::impair::Backend>,
    /// (from, to) host pairs: the first's packets to the second are dropped.
    pub partitions: Vec<(String, String)>,
    pub links: Vec<ImpairedLink>,
    /// In a part of a spread lab: the machines its tunnels no longer send to.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub underlay_cuts: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ImpairedLink {
    pub host: String,
    pub interface: String,
    pub direction: crate::impair::Direction,
    /// The settings as words (`delay 50ms loss 1%`), for people and scripts reading `lab faults --json`.
    #[serde(default)]
    pub settings: String,
    pub impairment: crate::impair::Impairment,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Phase {
    Building,
    Up,
    Stopping,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NamespaceRecord {
    /// `<lab>-<host>`, as `ip netns` shows it.
    pub netns: String,
    pub identity: Identity,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HostRecord {
    pub hostname: String,
    /// What its processes see of its own filesystem.
    #[serde(default)]
    pub view: crate::hostfs::View,
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
    /// Reads and checks the record of the lab whose paths are given.
    pub fn load(paths: &LabPaths) -> io::Result<LabState> {
        let file = paths.state_file();
        let text = std::fs::read(&file)?;
        let untrusted = |why: String| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "{}: {why}; the lab does not act on a record it cannot trust (inspect it, then remove what it \
                     names yourself)",
                    file.display()
                ),
            )
        };
        let state: LabState = serde_json::from_slice(&text).map_err(|e| untrusted(e.to_string()))?;
        state.check(paths).map_err(untrusted)?;
        Ok(state)
    }

    fn check(&self, paths: &LabPaths) -> Result<(), String> {
        if self.name != paths.lab() {
            return Err(format!(
                "name: it names lab `{}`, but it was read from the directory of lab `{}`",
                self.name,
                paths.lab()
            ));
        }
        match Identity::of_directory(&paths.run_dir()) {
            Ok(found) if found == self.run_dir => {}
            _ => return Err("run_dir: it was not written into this run directory".into()),
        }
        if self.instance.is_empty() || !self.instance.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(format!("instance: `{}` is not an instance id", self.instance));
        }
        for (host, record) in &self.namespaces {
            if host != SWITCH_HOST {
                names::check_host(host).map_err(|e| format!("namespaces: {e}"))?;
            }
            let expected = names::namespace_name(paths.lab(), host);
            if record.netns != expected {
                return Err(format!(
                    "namespaces.{host}.netns: `{}` is not this lab's namespace for host `{host}` (`{expected}`)",
                    record.netns
                ));
            }
        }
        for (host, record) in &self.hosts {
            names::check_host(host).map_err(|e| format!("hosts: {e}"))?;
            for mount in &record.view.mounts {
                for path in [&mount.target, &mount.source] {
                    let plain = path.is_absolute()
                        && path
                            .components()
                            .all(|c| matches!(c, std::path::Component::RootDir | std::path::Component::Normal(_)));
                    if !plain {
                        return Err(format!(
                            "hosts.{host}.view: `{}` is not a plain absolute path",
                            path.display()
                        ));
                    }
                }
            }
            for service in &record.services {
                let expected = paths.service_log(host, &service.name);
                if service.log != expected || !paths.owns(&service.log) {
                    return Err(format!(
                        "hosts.{host}.services.{}.log: {} is not this lab's log path ({})",
                        service.name,
                        service.log.display(),
                        expected.display()
                    ));
                }
            }
        }
        for (n, remote) in self.remotes.iter().enumerate() {
            let ssh = &remote.ssh;
            if ssh.destination.is_empty() || ssh.destination.starts_with('-') {
                return Err(format!(
                    "remotes[{n}].ssh.destination: `{}` is not an SSH destination",
                    ssh.destination
                ));
            }
            if remote.instance.is_empty() || !remote.instance.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(format!(
                    "remotes[{n}].instance: `{}` is not an instance id",
                    remote.instance
                ));
            }
            for host in &remote.hosts {
                names::check_host(host).map_err(|e| format!("remotes[{n}].hosts: {e}"))?;
            }
        }
        Ok(())
    }

    /// Atomically replaces the state file, readable by root only whatever the umask. The first save (`replacing`
    /// false) finds no record; every later one finds this instance's: a stale runner never writes over a newer lab
    /// of the same name, nor into its run directory before that lab's first record.
    pub fn save(&self, paths: &LabPaths, replacing: bool) -> io::Result<()> {
        let path = paths.state_file();
        let recorded = recorded_instance(paths);
        let expected = replacing.then_some(self.instance.as_str());
        if recorded.as_deref() != expected || (!replacing && path.exists()) {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!(
                    "{} records {} of lab {}, not this instance: the run directory is no longer this runner's",
                    path.display(),
                    recorded.map_or("nothing".to_string(), |other| format!("instance {other}")),
                    self.name
                ),
            ));
        }
        let temporary = paths.run_dir().join(format!("state.json.{}.tmp", self.instance));
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&temporary)?;
        file.write_all(&serde_json::to_vec_pretty(self).expect("serializable state"))?;
        std::fs::rename(&temporary, &path)
    }

    /// The namespace of `host` (or the switch), opened, if it is still the namespace the lab created: what may be
    /// entered (the descriptor, not the path, so what was checked is what is entered).
    pub fn open_namespace(&self, paths: &LabPaths, host: &str) -> io::Result<std::fs::File> {
        if host != SWITCH_HOST && !self.hosts.contains_key(host) {
            return Err(crate::plan::unknown_host(&self.name, host));
        }
        let namespace = paths.namespace(host);
        let recorded = self.namespaces.get(host).map(|n| n.identity);
        match crate::net::netns::open_namespace(&namespace.mount) {
            Ok((file, identity)) if Some(identity) == recorded => Ok(file),
            _ => Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!("{namespace} is not (or no longer) the one lab {} created", self.name),
            )),
        }
    }

    /// Whether the process that recorded this state is still alive (and is that process, not a reused pid).
    pub fn runner_alive(&self) -> bool {
        self.runner_pid != std::process::id() && process_started(self.runner_pid) == Some(self.runner_started)
    }
}

/// The instance id in a lab's record, read without trusting anything else in it.
pub fn recorded_instance(paths: &LabPaths) -> Option<String> {
    let text = std::fs::read(paths.state_file()).ok()?;
    let record: serde_json::Value = serde_json::from_slice(&text).ok()?;
    Some(record.get("instance")?.as_str()?.to_string())
}

/// When a live process started (clock ticks after boot), or `None` if there is no such process or it has exited
/// (a zombie has released everything; it just has not been reaped).
pub fn process_started(pid: u32) -> Option<u64> {
    let fields = stat_fields(pid as i32)?;
    if fields.first().map(String::as_str) == Some("Z") {
        return None;
    }
    // Field 22 of proc(5).
    fields.get(19)?.parse().ok()
}

/// The fields of /proc/<pid>/stat after the command name, from field 3 of proc(5) (the state) on; `None` if there
/// is no such process.
pub fn stat_fields(pid: i32) -> Option<Vec<String>> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces and parentheses: the fields that follow start after the last `)`.
    Some(
        stat.rsplit_once(')')?
            .1
            .split_whitespace()
            .map(str::to_string)
            .collect(),
    )
}

/// Whether `pid` is a live process.
pub fn process_alive(pid: u32) -> bool {
    process_started(pid).is_some()
}

/// A fresh instance id: 128 random bits from the kernel, as hex.
pub fn new_instance() -> String {
    let uuid = std::fs::read_to_string("/proc/sys/kernel/random/uuid").unwrap_or_default();
    let id: String = uuid.chars().filter(char::is_ascii_hexdigit).collect();
    if id.is_empty() {
        format!("{:x}{:x}", std::process::id(), crate::events::monotonic_ns())
    } else {
        id
    }
}

/// Names of every lab with a run directory (anything under /run/lab that is not a valid lab name is not a lab's).
pub fn labs() -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(RUN_ROOT)
        .map(|dir| {
            dir.filter_map(|e| e.ok())
                .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                .filter_map(|e| e.file_name().to_str().map(str::to_string))
                .filter(|name| names::check_lab(name).is_ok())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}
