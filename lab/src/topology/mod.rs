//! The topology file: a serde model of `topologies/*.toml`, validated into a [`Topology`] before anything is built.
//!
//! Parsing happens in two steps. The raw structs mirror the file and keep every value's byte span, so that a
//! semantic error (an address outside its subnet, a duplicate name) can point at the exact line and column. Only a
//! topology that passes every check becomes a [`Topology`], whose fields are plain, typed values.
//!
//! The files follow those steps:
//! - this one: the validated model, and what the rest of the lab derives from it (namespace and port names,
//!   /etc/hosts);
//! - `raw`: the file as written, with spans;
//! - `check`: the validation, one file per section of the topology (segments, hosts, interfaces, routes, sysctls,
//!   services, firewall, probes, the `[names]` table), each turning its raw part into the model, and `naming`
//!   for the rules every name follows (lab, host, identifier, hostname);
//! - `diagnostics`: the problems found, each with its file, line, column and field.

use std::collections::BTreeMap;
use std::fmt;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

mod check;
pub(crate) mod diagnostics;
pub mod placeholders;
mod raw;
pub mod search;

use diagnostics::Checker;
pub use diagnostics::{Problem, TopologyError};
use raw::RawTopology;

pub use crate::names::{IFNAME_MAX, SWITCH_HOST};

#[derive(Debug, Clone)]
pub struct Topology {
    pub name: String,
    /// Where the topology came from, for messages.
    pub source: PathBuf,
    /// The text it was read from: what the coordinator of a lab spread over machines sends each machine.
    pub text: String,
    pub segments: Vec<Segment>,
    pub hosts: Vec<Host>,
    /// Extra /etc/hosts entries for addresses no host owns, such as a VIP.
    pub names: BTreeMap<String, Ipv4Addr>,
    /// Make a CA and a certificate per host under `{tls}` (see [`crate::tls`]).
    pub tls: bool,
    /// Which backend carries out the lab's link impairments (see [`crate::impair`]).
    pub impair_backend: crate::impair::BackendChoice,
    /// The machines the lab spreads over (empty: all of it on this one).
    pub machines: Vec<Machine>,
    /// The UDP port of the VXLAN tunnels joining a segment's bridges on several machines.
    pub vxlan_port: u16,
    /// In a part of a spread lab: the machine building it (the coordinator's name if `[machines]` has it).
    pub machine: Option<String>,
}

/// UDP 4789 (IANA's VXLAN port) is often filtered between machines; containerlab's choice avoids it.
pub const DEFAULT_VXLAN_PORT: u16 = 14789;

/// A machine a lab spreads over.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Machine {
    pub name: String,
    /// The SSH destination; `None` for the coordinator (the machine `lab up` runs on).
    pub ssh: Option<String>,
    pub underlay: Ipv4Addr,
    /// How `lab` is run there: shell words the remote shell reads.
    pub command: String,
    pub ssh_options: Vec<String>,
}

/// Where a segment's bridge on this machine meets its bridges on the others: filled in for a part of a lab that
/// spreads over machines (see [`crate::machines`]), `None` otherwise.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stretch {
    pub vni: u32,
    pub port: u16,
    /// This machine's underlay address.
    pub local: Ipv4Addr,
    /// The other machines with hosts on the segment, by name, with their underlay addresses.
    pub peers: Vec<(String, Ipv4Addr)>,
}

/// A link's impairments by direction; empty for a perfect link.
pub type LinkImpairments = Vec<(crate::impair::Direction, crate::impair::Impairment)>;

#[derive(Debug, Clone)]
pub struct Segment {
    pub name: String,
    pub subnet: Ipv4Net,
    pub mtu: Option<u32>,
    pub vlan: Option<u16>,
    /// What the segment's links do to frames, unless an interface says otherwise.
    pub impair: LinkImpairments,
    /// Its tunnel to other machines, in a part of a lab spread over machines.
    pub stretch: Option<Stretch>,
}

#[derive(Debug, Clone)]
pub struct Host {
    pub name: String,
    /// The machine it runs on; `None` for the coordinator.
    pub machine: Option<String>,
    pub hostname: String,
    pub aliases: Vec<String>,
    pub interfaces: Vec<Interface>,
    pub routes: Vec<Route>,
    pub sysctls: BTreeMap<String, String>,
    pub services: Vec<Service>,
    pub firewall: Option<Firewall>,
    pub probes: Vec<Probe>,
    pub filesystem: Filesystem,
    /// Files placed into the host's filesystem when the lab is built, in topology order.
    pub files: Vec<PlacedFile>,
}

impl Host {
    /// Its lines of /etc/hosts: the first address carries its hostname, name and aliases; further interfaces are
    /// `<host>-<interface>`.
    pub fn etc_entries(&self) -> Vec<(Ipv4Addr, Vec<String>)> {
        (self.interfaces.iter().enumerate())
            .map(|(i, iface)| {
                let mut names = Vec::new();
                if i == 0 {
                    names.push(self.hostname.clone());
                    if self.name != self.hostname {
                        names.push(self.name.clone());
                    }
                    names.extend(self.aliases.iter().cloned());
                } else {
                    names.push(format!("{}-{}", self.name, iface.name));
                }
                (iface.address, names)
            })
            .collect()
    }
}

/// A host's own filesystem, as `crate::hostfs` builds it: private /run, /tmp, /etc and /var, plus what the topology
/// adds.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filesystem {
    /// The host sees the machine's filesystem, as before hosts had their own: only /etc/hosts and the hostname are
    /// its own.
    pub shared: bool,
    pub var: VarSeed,
    /// More directories of the host's own (absolute paths in the host), empty at first, kept across reboots.
    pub private: Vec<PathBuf>,
    /// Directories or files of the machine shown in the host.
    pub binds: Vec<Bind>,
}

impl Filesystem {
    /// The directories every host has its own of (unless `shared`): /var/run is /run on every current system.
    pub const AREAS: [&'static str; 4] = ["/etc", "/var", "/run", "/tmp"];

    /// Whether `path` (absolute, normalized) lies in one of the host's own directories, so a file placed there is
    /// the host's alone.
    pub fn is_private(&self, path: &Path) -> bool {
        !self.shared
            && (Filesystem::AREAS.iter().any(|area| path.starts_with(area))
                || self.private.iter().any(|dir| path.starts_with(dir)))
    }
}

/// What a host's /var starts with.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum VarSeed {
    /// The machine's directories under /var, none of its files: what a machine has once its packages are installed
    /// and before any daemon has run.
    #[default]
    Empty,
    /// The machine's /var, copy-on-write: the host sees its files and changes only its own copies.
    Machine,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bind {
    /// On the machine, absolute.
    pub source: PathBuf,
    /// In the host.
    pub target: PathBuf,
    pub read_only: bool,
}

/// A file the topology places into a host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlacedFile {
    /// In the host: absolute, inside one of its own directories.
    pub path: PathBuf,
    pub content: FileContent,
    pub mode: u32,
    /// uid and gid, looked up on the machine when the topology was read.
    pub owner: (u32, u32),
    /// Placeholders in the content are filled in (see [`placeholders`]).
    pub template: bool,
}

impl PlacedFile {
    /// What the file holds in the host: its text or its source's bytes, with placeholders filled in when it is a
    /// template.
    pub fn content(&self, facts: &placeholders::Facts) -> std::io::Result<Vec<u8>> {
        use std::io::{Error, ErrorKind};
        let bytes = match &self.content {
            FileContent::Text(text) => text.clone().into_bytes(),
            FileContent::Source(source) => {
                std::fs::read(source).map_err(|e| Error::new(e.kind(), format!("{}: {e}", source.display())))?
            }
        };
        if !self.template {
            return Ok(bytes);
        }
        let text = String::from_utf8(bytes).map_err(|_| {
            Error::new(
                ErrorKind::InvalidData,
                format!("{}: not UTF-8 text", self.path.display()),
            )
        })?;
        facts
            .expand(&text)
            .map(String::into_bytes)
            .map_err(|(_, why)| Error::new(ErrorKind::InvalidData, format!("{}: {why}", self.path.display())))
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileContent {
    /// A file on the machine (absolute), read when the lab is built.
    Source(PathBuf),
    Text(String),
}

/// A client probe: from its host, try `target` every `interval` and record when answers stop and come back.
#[derive(Debug, Clone)]
pub struct Probe {
    pub name: String,
    pub kind: ProbeKind,
    /// The target as written (a name from /etc/hosts or an address), with the port for TCP.
    pub target: String,
    pub interval: Duration,
    /// How long one attempt may wait for its answer.
    pub timeout: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProbeKind {
    /// A TCP connection is accepted (the handshake completes).
    Tcp { address: Ipv4Addr, port: u16 },
    /// An ICMP echo request is answered.
    Ping { address: Ipv4Addr },
}

#[derive(Debug, Clone)]
pub struct Interface {
    pub name: String,
    pub segment: String,
    pub address: Ipv4Addr,
    pub prefix: u8,
    pub mac: Option<[u8; 6]>,
    /// What the link does to frames from the lab's start: the interface's own `impair`, or its segment's.
    pub impair: LinkImpairments,
}

#[derive(Debug, Clone)]
pub struct Route {
    /// `None` is the default route.
    pub to: Option<Ipv4Net>,
    pub via: Ipv4Addr,
}

#[derive(Debug, Clone)]
pub struct Service {
    pub name: String,
    pub argv: Vec<String>,
    pub env: BTreeMap<String, String>,
    pub cwd: Option<PathBuf>,
    pub ready: Option<Readiness>,
    pub ready_timeout: Duration,
    pub stop_signal: nix::sys::signal::Signal,
    pub grace: Duration,
    /// The service writes its own events as JSON lines (with `at_ns` and `event`) on stdout.
    pub events_on_stdout: bool,
    pub restart: Restart,
    /// A service without a readiness check counts as started once it has run this long.
    pub settle: Duration,
}

/// What the lab does when a service exits on its own.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Restart {
    /// Nothing: it stays exited (a fault may start it).
    #[default]
    No,
    /// Start it again after an exit with a failure (a non-zero status or a signal), at most `limit` times; an exit
    /// the lab caused (a `stop` fault, power-off, `lab down`) is not a failure.
    OnFailure { limit: u32 },
}

impl Service {
    /// The service with its placeholders (see [`placeholders`]: `{dir}`, `{run}`, `{tls}`, the host's facts, the
    /// lab's names) filled in its arguments, environment and working directory, so topologies can name files next to
    /// them and addresses by name.
    pub fn with_placeholders(&self, facts: &placeholders::Facts) -> Service {
        // Validation checked every placeholder; one that no longer resolves is left as written.
        let expand = |text: &str| facts.expand(text).unwrap_or_else(|_| text.to_string());
        Service {
            argv: self.argv.iter().map(|arg| expand(arg)).collect(),
            env: self
                .env
                .iter()
                .map(|(key, value)| (key.clone(), expand(value)))
                .collect(),
            cwd: self
                .cwd
                .as_ref()
                .map(|cwd| PathBuf::from(expand(&cwd.display().to_string()))),
            ..self.clone()
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Readiness {
    /// A TCP connect to this port on the host's loopback or first address succeeds.
    Tcp(u16),
    /// This path exists.
    File(PathBuf),
    /// The service printed a line containing this text.
    Log(String),
}

#[derive(Debug, Clone)]
pub struct Firewall {
    pub allow: Vec<FirewallAllow>,
    /// What happens to inbound traffic no rule mentions.
    pub inbound: InboundPolicy,
}

#[derive(Debug, Clone)]
pub struct FirewallAllow {
    pub ports: Vec<u16>,
    pub from: Vec<Ipv4Net>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum InboundPolicy {
    Accept,
    Drop,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Ipv4Net {
    pub addr: Ipv4Addr,
    pub prefix: u8,
}

impl Ipv4Net {
    pub fn mask(&self) -> u32 {
        if self.prefix == 0 {
            0
        } else {
            u32::MAX << (32 - self.prefix)
        }
    }
    pub fn network(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.addr) & self.mask())
    }
    pub fn broadcast(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.addr) | !self.mask())
    }
    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        u32::from(ip) & self.mask() == u32::from(self.network())
    }
}

impl fmt::Display for Ipv4Net {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

impl Topology {
    /// Reads and validates a topology file.
    pub fn load(path: impl AsRef<Path>) -> Result<Topology, TopologyError> {
        let path = path.as_ref();
        let text =
            std::fs::read_to_string(path).map_err(|e| TopologyError::unreadable(path, "the topology file", &e))?;
        Topology::parse(&text, path)
    }

    /// Validates topology text; `source` only names it in messages.
    pub fn parse(text: &str, source: impl AsRef<Path>) -> Result<Topology, TopologyError> {
        let source = source.as_ref();
        let mut checker = Checker::new(text, source.display().to_string());
        let raw: RawTopology = match toml::from_str(text) {
            Ok(raw) => raw,
            Err(e) => {
                let span = e.span().unwrap_or(0..0);
                checker.report(span, "", e.message().to_string());
                return Err(checker.finish());
            }
        };
        let topology = checker.check(raw, source);
        if checker.problems.is_empty() {
            Ok(topology)
        } else {
            Err(checker.finish())
        }
    }

    /// The absolute directory of the topology file: what `{dir}` stands for in services.
    pub fn directory(&self) -> PathBuf {
        let parent = self
            .source
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        parent.canonicalize().unwrap_or_else(|_| parent.to_path_buf())
    }

    /// The same topology under another lab name, e.g. a unique one per test.
    pub fn renamed(mut self, name: &str) -> Result<Topology, TopologyError> {
        let mut checker = Checker::new("", self.source.display().to_string());
        checker.check_lab_name(name, 0..0);
        for host in &self.hosts {
            checker.check_host_names(&host.name, 0..0, "hosts.name");
        }
        if !checker.problems.is_empty() {
            return Err(checker.finish());
        }
        self.name = name.to_string();
        Ok(self)
    }

    pub fn host(&self, name: &str) -> Option<&Host> {
        self.hosts.iter().find(|h| h.name == name)
    }

    pub fn segment(&self, name: &str) -> Option<&Segment> {
        self.segments.iter().find(|s| s.name == name)
    }

    /// An IPv4 address, or the address /etc/hosts gives a name in this topology.
    pub fn resolve(&self, name: &str) -> Option<Ipv4Addr> {
        if let Ok(address) = name.parse() {
            return Some(address);
        }
        if let Some(address) = self.names.get(name) {
            return Some(*address);
        }
        self.hosts.iter().find_map(|host| {
            let first = host.interfaces.first()?;
            if host.name == name || host.hostname == name || host.aliases.iter().any(|a| a == name) {
                return Some(first.address);
            }
            host.interfaces
                .iter()
                .find(|i| format!("{}-{}", host.name, i.name) == name)
                .map(|i| i.address)
        })
    }

    /// The /etc/hosts every host sees: a host's first address carries its hostname, name and aliases; further
    /// interfaces are `<host>-<interface>`; then the extra names.
    pub fn etc_hosts(&self) -> String {
        let mut out = String::from("127.0.0.1\tlocalhost\n");
        for host in &self.hosts {
            for (address, names) in host.etc_entries() {
                out.push_str(&format!("{address}\t{}\n", names.join(" ")));
            }
        }
        for (name, addr) in &self.names {
            out.push_str(&format!("{addr}\t{name}\n"));
        }
        out
    }
}

pub fn parse_signal(name: &str) -> Option<nix::sys::signal::Signal> {
    let upper = name.to_ascii_uppercase();
    let full = if upper.starts_with("SIG") {
        upper
    } else {
        format!("SIG{upper}")
    };
    full.parse().ok()
}

/// A flat topology of `hosts` hosts on one /16 segment, as TOML text: the benchmark's and stress tests' shape.
pub fn flat_topology_toml(name: &str, hosts: usize) -> String {
    assert!(hosts < 65_000, "a /16 holds fewer hosts");
    let mut text = format!("name = \"{name}\"\n\n[[segments]]\nname = \"flat\"\nsubnet = \"10.0.0.0/16\"\n");
    for i in 1..=hosts {
        let address = Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 0, 0, 0)) + i as u32);
        text.push_str(&format!(
            "\n[[hosts]]\nname = \"h{i}\"\ninterfaces = [{{ segment = \"flat\", address = \"{address}\" }}]\n"
        ));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(super) const MINIMAL: &str = r#"
name = "t"
[[segments]]
name = "lan"
subnet = "10.0.0.0/24"
[[hosts]]
name = "a"
interfaces = [{ segment = "lan", address = "10.0.0.1" }]
"#;

    #[test]
    fn address_without_prefix_takes_the_segment_prefix() {
        let t = Topology::parse(MINIMAL, "t.toml").unwrap();
        assert_eq!(t.hosts[0].interfaces[0].prefix, 24);
        assert_eq!(t.hosts[0].interfaces[0].name, "eth0");
        assert_eq!(t.hosts[0].hostname, "a");
    }

    #[test]
    fn net_contains_and_broadcast() {
        let net = Ipv4Net {
            addr: "10.0.0.0".parse().unwrap(),
            prefix: 24,
        };
        assert!(net.contains("10.0.0.255".parse().unwrap()));
        assert!(!net.contains("10.0.1.0".parse().unwrap()));
        assert_eq!(net.broadcast(), "10.0.0.255".parse::<Ipv4Addr>().unwrap());
    }

    #[test]
    fn renamed_checks_the_new_name() {
        let t = Topology::parse(MINIMAL, "t.toml").unwrap();
        assert!(t.clone().renamed("bad name").is_err());
        assert_eq!(t.renamed("t2").unwrap().name, "t2");
    }
}
