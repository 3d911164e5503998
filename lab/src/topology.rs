//! The topology file: a serde model of `topologies/*.toml`, validated into a [`Topology`] before anything is built.
//!
//! Parsing happens in two steps. The raw structs mirror the file and keep every value's byte span, so that a
//! semantic error (an address outside its subnet, a duplicate name) can point at the exact line and column. Only a
//! topology that passes every check becomes a [`Topology`], whose fields are plain, typed values.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::fmt;
use std::net::Ipv4Addr;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

/// Linux interface names are at most 15 bytes (IFNAMSIZ - 1).
pub const IFNAME_MAX: usize = 15;
/// Namespace names are file names under /run/netns.
pub const NETNS_NAME_MAX: usize = 255;
/// The per-lab namespace that holds every bridge; a host may not take this name.
pub const SWITCH_HOST: &str = "switch";

// ---------------------------------------------------------------------------------------------------------------
// Validated model

#[derive(Debug, Clone)]
pub struct Topology {
    pub name: String,
    /// Where the topology came from, for messages.
    pub source: PathBuf,
    pub segments: Vec<Segment>,
    pub hosts: Vec<Host>,
    /// Extra /etc/hosts entries for addresses no host owns, such as a VIP.
    pub names: BTreeMap<String, Ipv4Addr>,
    /// Make a CA and a certificate per host under `{tls}` (see [`crate::tls`]).
    pub tls: bool,
}

#[derive(Debug, Clone)]
pub struct Segment {
    pub name: String,
    pub subnet: Ipv4Net,
    pub mtu: Option<u32>,
    pub vlan: Option<u16>,
}

#[derive(Debug, Clone)]
pub struct Host {
    pub name: String,
    pub hostname: String,
    pub aliases: Vec<String>,
    pub interfaces: Vec<Interface>,
    pub routes: Vec<Route>,
    pub sysctls: BTreeMap<String, String>,
    pub services: Vec<Service>,
    pub firewall: Option<Firewall>,
    pub probes: Vec<Probe>,
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
}

impl Service {
    /// The service with `{dir}` (the topology file's directory), `{run}` (the lab's run directory) and `{tls}`
    /// (its TLS material, `{run}/tls`) replaced in its arguments, environment and working directory, so topologies
    /// can name files next to them.
    pub fn with_placeholders(&self, dir: &Path, run: &Path) -> Service {
        let expand = |text: &str| {
            text.replace("{dir}", &dir.display().to_string())
                .replace("{run}", &run.display().to_string())
                .replace("{tls}", &run.join("tls").display().to_string())
        };
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

fn parse_net(text: &str) -> Result<(Ipv4Addr, Option<u8>), String> {
    let (addr, prefix) = match text.split_once('/') {
        Some((a, p)) => (a, Some(p)),
        None => (text, None),
    };
    let addr: Ipv4Addr = addr.parse().map_err(|_| format!("`{text}` is not an IPv4 address"))?;
    let prefix = match prefix {
        None => None,
        Some(p) => match p.parse::<u8>() {
            Ok(n) if n <= 32 => Some(n),
            _ => return Err(format!("`{text}` has an invalid prefix length (0-32)")),
        },
    };
    Ok((addr, prefix))
}

impl Topology {
    /// Reads and validates a topology file.
    pub fn load(path: impl AsRef<Path>) -> Result<Topology, TopologyError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|e| TopologyError {
            problems: vec![Problem {
                file: path.display().to_string(),
                line: 0,
                column: 0,
                field: String::new(),
                message: format!("cannot read the topology file: {e}"),
            }],
        })?;
        Topology::parse(&text, path)
    }

    /// Validates topology text; `source` only names it in messages.
    pub fn parse(text: &str, source: impl AsRef<Path>) -> Result<Topology, TopologyError> {
        let source = source.as_ref();
        let mut checker = Checker {
            text,
            file: source.display().to_string(),
            problems: Vec::new(),
        };
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

    /// The same topology under another lab name, e.g. a unique one per test.
    /// The absolute directory of the topology file: what `{dir}` stands for in services.
    pub fn directory(&self) -> PathBuf {
        let parent = self
            .source
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        parent.canonicalize().unwrap_or_else(|_| parent.to_path_buf())
    }

    pub fn renamed(mut self, name: &str) -> Result<Topology, TopologyError> {
        let mut checker = Checker {
            text: "",
            file: self.source.display().to_string(),
            problems: Vec::new(),
        };
        checker.check_lab_name(name, 0..0);
        for host in &self.hosts {
            checker.check_host_names(name, &host.name, 0..0, "hosts.name");
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

    /// The namespace of a host, `<lab>-<host>`, under /run/netns.
    pub fn netns_name(&self, host: &str) -> String {
        format!("{}-{}", self.name, host)
    }

    /// The /etc/hosts every host sees: a host's first address carries its hostname, name and aliases; further
    /// interfaces are `<host>-<interface>`; then the extra names.
    pub fn etc_hosts(&self) -> String {
        let mut out = String::from("127.0.0.1\tlocalhost\n");
        for host in &self.hosts {
            for (i, iface) in host.interfaces.iter().enumerate() {
                let mut names = Vec::new();
                if i == 0 {
                    names.push(host.hostname.clone());
                    if host.name != host.hostname {
                        names.push(host.name.clone());
                    }
                    names.extend(host.aliases.iter().cloned());
                } else {
                    names.push(format!("{}-{}", host.name, iface.name));
                }
                out.push_str(&format!("{}\t{}\n", iface.address, names.join(" ")));
            }
        }
        for (name, addr) in &self.names {
            out.push_str(&format!("{addr}\t{name}\n"));
        }
        out
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Errors

/// Everything wrong with a topology, each problem with its place in the file.
#[derive(Debug, Clone)]
pub struct TopologyError {
    pub problems: Vec<Problem>,
}

#[derive(Debug, Clone)]
pub struct Problem {
    pub file: String,
    pub line: usize,
    pub column: usize,
    /// Dotted path of the offending field, e.g. `hosts[2].interfaces[0].address`.
    pub field: String,
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            write!(f, "{}: ", self.file)?;
        } else {
            write!(f, "{}:{}:{}: ", self.file, self.line, self.column)?;
        }
        if !self.field.is_empty() {
            write!(f, "{}: ", self.field)?;
        }
        write!(f, "{}", self.message)
    }
}

impl fmt::Display for TopologyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, problem) in self.problems.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{problem}")?;
        }
        Ok(())
    }
}

impl std::error::Error for TopologyError {}

// ---------------------------------------------------------------------------------------------------------------
// Raw model: the file as written, with spans

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTopology {
    name: Spanned<String>,
    #[serde(default)]
    segments: Vec<RawSegment>,
    #[serde(default)]
    hosts: Vec<RawHost>,
    #[serde(default)]
    names: BTreeMap<String, Spanned<String>>,
    #[serde(default)]
    tls: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSegment {
    name: Spanned<String>,
    subnet: Spanned<String>,
    mtu: Option<Spanned<u32>>,
    vlan: Option<Spanned<u16>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHost {
    name: Spanned<String>,
    hostname: Option<Spanned<String>>,
    #[serde(default)]
    aliases: Vec<Spanned<String>>,
    #[serde(default)]
    interfaces: Vec<RawInterface>,
    #[serde(default)]
    routes: Vec<RawRoute>,
    #[serde(default)]
    sysctls: BTreeMap<String, Spanned<toml::Value>>,
    #[serde(default)]
    services: Vec<RawService>,
    firewall: Option<RawFirewall>,
    #[serde(default)]
    probes: Vec<RawProbe>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawProbe {
    name: Spanned<String>,
    kind: Spanned<String>,
    target: Spanned<String>,
    /// Seconds between attempts.
    interval: Option<Spanned<f64>>,
    /// Seconds one attempt waits for its answer.
    timeout: Option<Spanned<f64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawInterface {
    name: Option<Spanned<String>>,
    segment: Spanned<String>,
    address: Spanned<String>,
    mac: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRoute {
    to: Spanned<String>,
    via: Spanned<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawService {
    name: Spanned<String>,
    argv: Spanned<Vec<String>>,
    #[serde(default)]
    env: BTreeMap<String, String>,
    cwd: Option<String>,
    ready: Option<Spanned<RawReady>>,
    /// Seconds to wait for readiness.
    ready_timeout: Option<Spanned<f64>>,
    stop_signal: Option<Spanned<String>>,
    /// Seconds between the stop signal and SIGKILL.
    grace: Option<Spanned<f64>>,
    /// `"stdout"`: the service writes JSON events there (vrrpd --events -).
    events: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawReady {
    tcp: Option<u16>,
    file: Option<String>,
    log: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFirewall {
    #[serde(default)]
    allow: Vec<RawAllow>,
    inbound: Option<InboundPolicy>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAllow {
    ports: Spanned<Vec<u16>>,
    from: Vec<Spanned<String>>,
}

// ---------------------------------------------------------------------------------------------------------------
// Validation

struct Checker<'a> {
    text: &'a str,
    file: String,
    problems: Vec<Problem>,
}

impl Checker<'_> {
    fn report(&mut self, span: Range<usize>, field: &str, message: impl Into<String>) {
        let (line, column) = if self.text.is_empty() {
            (0, 0)
        } else {
            line_column(self.text, span.start)
        };
        self.problems.push(Problem {
            file: self.file.clone(),
            line,
            column,
            field: field.to_string(),
            message: message.into(),
        });
    }

    fn finish(self) -> TopologyError {
        TopologyError {
            problems: self.problems,
        }
    }

    fn check_lab_name(&mut self, name: &str, span: Range<usize>) {
        if let Err(why) = check_identifier(name) {
            self.report(span, "name", format!("lab name `{name}` {why}"));
        }
    }

    /// A host's name is part of its namespace name and of its switch-side port names.
    fn check_host_names(&mut self, lab: &str, host: &str, span: Range<usize>, field: &str) {
        if let Err(why) = check_identifier(host) {
            self.report(span.clone(), field, format!("host name `{host}` {why}"));
            return;
        }
        if host == SWITCH_HOST {
            self.report(
                span.clone(),
                field,
                format!("`{SWITCH_HOST}` is reserved for the lab's bridge namespace"),
            );
        }
        let netns = format!("{lab}-{host}");
        if netns.len() > NETNS_NAME_MAX {
            self.report(
                span.clone(),
                field,
                format!(
                    "namespace name `{netns}` is {} bytes, over the limit of {NETNS_NAME_MAX}",
                    netns.len()
                ),
            );
        }
        let port = switch_port_name(host, 0);
        if port.len() > IFNAME_MAX {
            self.report(
                span,
                field,
                format!(
                    "host name `{host}` makes the switch-side interface name `{port}` {} bytes long, over the \
                     kernel's limit of {IFNAME_MAX}; use a host name of at most {} bytes",
                    port.len(),
                    IFNAME_MAX - 2
                ),
            );
        }
    }

    fn check(&mut self, raw: RawTopology, source: &Path) -> Topology {
        let lab = raw.name.get_ref().clone();
        self.check_lab_name(&lab, raw.name.span());

        let mut segments = Vec::new();
        let mut segment_names = HashMap::new();
        for (i, seg) in raw.segments.iter().enumerate() {
            let field = |f: &str| format!("segments[{i}].{f}");
            let name = seg.name.get_ref();
            if let Err(why) = check_identifier(name) {
                self.report(seg.name.span(), &field("name"), format!("segment name `{name}` {why}"));
            } else if name.len() > IFNAME_MAX {
                self.report(
                    seg.name.span(),
                    &field("name"),
                    format!(
                        "segment name `{name}` is {} bytes; it names the segment's bridge, and the kernel's limit \
                         for interface names is {IFNAME_MAX}",
                        name.len()
                    ),
                );
            }
            if segment_names.insert(name.clone(), i).is_some() {
                self.report(
                    seg.name.span(),
                    &field("name"),
                    format!("duplicate segment name `{name}`"),
                );
            }
            let subnet = match parse_net(seg.subnet.get_ref()) {
                Ok((addr, Some(prefix))) => {
                    let net = Ipv4Net { addr, prefix };
                    if net.network() != addr {
                        self.report(
                            seg.subnet.span(),
                            &field("subnet"),
                            format!("`{}` has host bits set; did you mean {}/{prefix}?", net, net.network()),
                        );
                    }
                    net
                }
                Ok((_, None)) => {
                    self.report(
                        seg.subnet.span(),
                        &field("subnet"),
                        "a subnet needs a prefix length, e.g. 10.0.0.0/24",
                    );
                    Ipv4Net {
                        addr: Ipv4Addr::UNSPECIFIED,
                        prefix: 0,
                    }
                }
                Err(why) => {
                    self.report(seg.subnet.span(), &field("subnet"), why);
                    Ipv4Net {
                        addr: Ipv4Addr::UNSPECIFIED,
                        prefix: 0,
                    }
                }
            };
            if let Some(mtu) = &seg.mtu {
                if !(68..=65535).contains(mtu.get_ref()) {
                    self.report(
                        mtu.span(),
                        &field("mtu"),
                        format!("MTU {} is outside 68-65535", mtu.get_ref()),
                    );
                }
            }
            if let Some(vlan) = &seg.vlan {
                if !(1..=4094).contains(vlan.get_ref()) {
                    self.report(
                        vlan.span(),
                        &field("vlan"),
                        format!("VLAN id {} is outside 1-4094", vlan.get_ref()),
                    );
                }
            }
            segments.push(Segment {
                name: name.clone(),
                subnet,
                mtu: seg.mtu.as_ref().map(|m| *m.get_ref()),
                vlan: seg.vlan.as_ref().map(|v| *v.get_ref()),
            });
        }

        let mut hosts = Vec::new();
        let mut host_names = HashMap::new();
        let mut addresses: HashMap<Ipv4Addr, String> = HashMap::new();
        let mut etc_names: BTreeSet<String> = BTreeSet::new();
        for (h, raw_host) in raw.hosts.iter().enumerate() {
            let field = |f: &str| format!("hosts[{h}].{f}");
            let name = raw_host.name.get_ref().clone();
            self.check_host_names(&lab, &name, raw_host.name.span(), &field("name"));
            let duplicate = host_names.insert(name.clone(), h).is_some();
            if duplicate {
                self.report(
                    raw_host.name.span(),
                    &field("name"),
                    format!("duplicate host name `{name}`"),
                );
            }
            let hostname = match &raw_host.hostname {
                Some(hn) => {
                    if let Err(why) = check_hostname(hn.get_ref()) {
                        self.report(
                            hn.span(),
                            &field("hostname"),
                            format!("hostname `{}` {why}", hn.get_ref()),
                        );
                    }
                    hn.get_ref().clone()
                }
                None => name.clone(),
            };
            for (a, alias) in raw_host.aliases.iter().enumerate() {
                if let Err(why) = check_hostname(alias.get_ref()) {
                    self.report(
                        alias.span(),
                        &field(&format!("aliases[{a}]")),
                        format!("alias `{}` {why}", alias.get_ref()),
                    );
                }
            }
            // Every name this host answers to in /etc/hosts must be unique across the lab.
            let mut own: Vec<(String, Range<usize>, String)> = Vec::new();
            if !duplicate {
                own.push((name.clone(), raw_host.name.span(), field("name")));
            }
            if let Some(hn) = &raw_host.hostname {
                own.push((hn.get_ref().clone(), hn.span(), field("hostname")));
            }
            for (a, alias) in raw_host.aliases.iter().enumerate() {
                own.push((alias.get_ref().clone(), alias.span(), field(&format!("aliases[{a}]"))));
            }
            let mut seen_here = HashSet::new();
            for (n, span, f) in own {
                if seen_here.insert(n.clone()) && !etc_names.insert(n.clone()) {
                    self.report(span, &f, format!("name `{n}` is already used by another host"));
                }
            }

            let mut interfaces = Vec::new();
            let mut if_names = HashSet::new();
            for (n, raw_if) in raw_host.interfaces.iter().enumerate() {
                let ifield = |f: &str| format!("hosts[{h}].interfaces[{n}].{f}");
                let if_name = raw_if
                    .name
                    .as_ref()
                    .map(|s| s.get_ref().clone())
                    .unwrap_or_else(|| format!("eth{n}"));
                let name_span = raw_if
                    .name
                    .as_ref()
                    .map(|s| s.span())
                    .unwrap_or_else(|| raw_if.segment.span());
                if if_name.len() > IFNAME_MAX {
                    self.report(
                        name_span.clone(),
                        &ifield("name"),
                        format!(
                            "interface name `{if_name}` is {} bytes, over the kernel's limit of {IFNAME_MAX}",
                            if_name.len()
                        ),
                    );
                } else if let Err(why) = check_identifier(&if_name) {
                    self.report(
                        name_span.clone(),
                        &ifield("name"),
                        format!("interface name `{if_name}` {why}"),
                    );
                } else if if_name == "lo" {
                    self.report(name_span.clone(), &ifield("name"), "`lo` is the loopback interface");
                }
                if !if_names.insert(if_name.clone()) {
                    self.report(
                        name_span,
                        &ifield("name"),
                        format!("duplicate interface name `{if_name}` in host `{name}`"),
                    );
                }
                let port = switch_port_name(&name, n);
                if port.len() > IFNAME_MAX && switch_port_name(&name, 0).len() <= IFNAME_MAX {
                    self.report(
                        raw_if.segment.span(),
                        &ifield("segment"),
                        format!("the switch-side interface name `{port}` is over the kernel's limit of {IFNAME_MAX}"),
                    );
                }
                let segment = segments.iter().find(|s| &s.name == raw_if.segment.get_ref());
                if segment.is_none() {
                    let known: Vec<&str> = segments.iter().map(|s| s.name.as_str()).collect();
                    self.report(
                        raw_if.segment.span(),
                        &ifield("segment"),
                        format!(
                            "unknown segment `{}` (segments: {})",
                            raw_if.segment.get_ref(),
                            known.join(", ")
                        ),
                    );
                }
                let (address, prefix) = match parse_net(raw_if.address.get_ref()) {
                    Ok((addr, prefix)) => {
                        let prefix = match (prefix, segment) {
                            (Some(p), Some(seg)) if p != seg.subnet.prefix => {
                                self.report(
                                    raw_if.address.span(),
                                    &ifield("address"),
                                    format!("prefix /{p} differs from segment `{}` ({})", seg.name, seg.subnet),
                                );
                                p
                            }
                            (Some(p), _) => p,
                            (None, Some(seg)) => seg.subnet.prefix,
                            (None, None) => 32,
                        };
                        (addr, prefix)
                    }
                    Err(why) => {
                        self.report(raw_if.address.span(), &ifield("address"), why);
                        (Ipv4Addr::UNSPECIFIED, 32)
                    }
                };
                if let Some(seg) = segment {
                    if address != Ipv4Addr::UNSPECIFIED {
                        if !seg.subnet.contains(address) {
                            self.report(
                                raw_if.address.span(),
                                &ifield("address"),
                                format!("{address} is outside segment `{}` ({})", seg.name, seg.subnet),
                            );
                        } else if seg.subnet.prefix < 31
                            && (address == seg.subnet.network() || address == seg.subnet.broadcast())
                        {
                            self.report(
                                raw_if.address.span(),
                                &ifield("address"),
                                format!(
                                    "{address} is the network or broadcast address of segment `{}`",
                                    seg.name
                                ),
                            );
                        }
                    }
                }
                if address != Ipv4Addr::UNSPECIFIED {
                    if let Some(owner) = addresses.insert(address, name.clone()) {
                        self.report(
                            raw_if.address.span(),
                            &ifield("address"),
                            format!("duplicate address {address}: host `{owner}` has it already"),
                        );
                    }
                }
                let mac = match &raw_if.mac {
                    None => None,
                    Some(m) => match parse_mac(m.get_ref()) {
                        Ok(mac) => Some(mac),
                        Err(why) => {
                            self.report(m.span(), &ifield("mac"), why);
                            None
                        }
                    },
                };
                interfaces.push(Interface {
                    name: if_name,
                    segment: raw_if.segment.get_ref().clone(),
                    address,
                    prefix,
                    mac,
                });
            }

            let mut routes = Vec::new();
            for (r, raw_route) in raw_host.routes.iter().enumerate() {
                let rfield = |f: &str| format!("hosts[{h}].routes[{r}].{f}");
                let to = if raw_route.to.get_ref() == "default" {
                    None
                } else {
                    match parse_net(raw_route.to.get_ref()) {
                        Ok((addr, Some(prefix))) => Some(Ipv4Net { addr, prefix }),
                        Ok((addr, None)) => Some(Ipv4Net { addr, prefix: 32 }),
                        Err(why) => {
                            self.report(raw_route.to.span(), &rfield("to"), format!("{why} (or `default`)"));
                            None
                        }
                    }
                };
                let via = match raw_route.via.get_ref().parse::<Ipv4Addr>() {
                    Ok(via) => {
                        let on_link = interfaces.iter().any(|i| {
                            Ipv4Net {
                                addr: i.address,
                                prefix: i.prefix,
                            }
                            .contains(via)
                        });
                        if !on_link {
                            self.report(
                                raw_route.via.span(),
                                &rfield("via"),
                                format!("gateway {via} is not on any of host `{name}`'s interfaces' subnets"),
                            );
                        }
                        via
                    }
                    Err(_) => {
                        self.report(
                            raw_route.via.span(),
                            &rfield("via"),
                            format!("`{}` is not an IPv4 address", raw_route.via.get_ref()),
                        );
                        Ipv4Addr::UNSPECIFIED
                    }
                };
                routes.push(Route { to, via });
            }

            let mut sysctls = BTreeMap::new();
            for (key, value) in &raw_host.sysctls {
                let sfield = format!("hosts[{h}].sysctls.{key}");
                // Only net.* is per network namespace: anything else would change the machine running the lab.
                if !key.starts_with("net.") || key.contains("..") || key.contains('/') {
                    self.report(
                        value.span(),
                        &sfield,
                        format!("`{key}` is not a per-namespace sysctl: only net.* keys are allowed"),
                    );
                }
                let text = match value.get_ref() {
                    toml::Value::String(s) => s.clone(),
                    toml::Value::Integer(i) => i.to_string(),
                    toml::Value::Boolean(b) => u8::from(*b).to_string(),
                    other => {
                        self.report(
                            value.span(),
                            &sfield,
                            format!("expected a string, integer or boolean, found {}", other.type_str()),
                        );
                        String::new()
                    }
                };
                sysctls.insert(key.clone(), text);
            }

            let mut services = Vec::new();
            let mut service_names = HashSet::new();
            for (s, raw_service) in raw_host.services.iter().enumerate() {
                let sfield = |f: &str| format!("hosts[{h}].services[{s}].{f}");
                if let Some(service) = self.check_service(raw_service, &sfield) {
                    if !service_names.insert(service.name.clone()) {
                        self.report(
                            raw_service.name.span(),
                            &sfield("name"),
                            format!("duplicate service name `{}`", service.name),
                        );
                    }
                    services.push(service);
                }
            }

            let firewall = raw_host.firewall.as_ref().map(|fw| {
                let mut allow = Vec::new();
                for (a, rule) in fw.allow.iter().enumerate() {
                    if rule.ports.get_ref().is_empty() || rule.ports.get_ref().contains(&0) {
                        self.report(
                            rule.ports.span(),
                            &format!("hosts[{h}].firewall.allow[{a}].ports"),
                            "ports must be 1-65535, at least one",
                        );
                    }
                    let mut from = Vec::new();
                    for (f, src) in rule.from.iter().enumerate() {
                        match parse_net(src.get_ref()) {
                            Ok((addr, prefix)) => from.push(Ipv4Net {
                                addr,
                                prefix: prefix.unwrap_or(32),
                            }),
                            Err(why) => {
                                self.report(src.span(), &format!("hosts[{h}].firewall.allow[{a}].from[{f}]"), why)
                            }
                        }
                    }
                    allow.push(FirewallAllow {
                        ports: rule.ports.get_ref().clone(),
                        from,
                    });
                }
                Firewall {
                    allow,
                    inbound: fw.inbound.unwrap_or(InboundPolicy::Accept),
                }
            });

            hosts.push(Host {
                name,
                hostname,
                aliases: raw_host.aliases.iter().map(|a| a.get_ref().clone()).collect(),
                interfaces,
                routes,
                sysctls,
                services,
                firewall,
                probes: Vec::new(),
            });
        }

        let mut names = BTreeMap::new();
        for (name, addr) in &raw.names {
            let field = format!("names.{name}");
            if let Err(why) = check_hostname(name) {
                self.report(addr.span(), &field, format!("name `{name}` {why}"));
            }
            if !etc_names.insert(name.clone()) {
                self.report(
                    addr.span(),
                    &field,
                    format!("name `{name}` is already a host's name or alias"),
                );
            }
            match addr.get_ref().parse::<Ipv4Addr>() {
                Ok(ip) => {
                    names.insert(name.clone(), ip);
                }
                Err(_) => self.report(
                    addr.span(),
                    &field,
                    format!("`{}` is not an IPv4 address", addr.get_ref()),
                ),
            }
        }

        let mut topology = Topology {
            name: lab,
            source: source.to_path_buf(),
            segments,
            hosts,
            names,
            tls: raw.tls,
        };
        // Probe targets may name any host or extra name, so they are checked once every name is known.
        let mut probes = Vec::new();
        for (h, raw_host) in raw.hosts.iter().enumerate() {
            let mut seen = HashSet::new();
            for (p, raw_probe) in raw_host.probes.iter().enumerate() {
                let field = |f: &str| format!("hosts[{h}].probes[{p}].{f}");
                if !seen.insert(raw_probe.name.get_ref().clone()) {
                    self.report(
                        raw_probe.name.span(),
                        &field("name"),
                        format!("duplicate probe name `{}`", raw_probe.name.get_ref()),
                    );
                }
                if let Some(probe) = self.check_probe(&topology, raw_probe, &field) {
                    probes.push((h, probe));
                }
            }
        }
        for (h, probe) in probes {
            if let Some(host) = topology.hosts.get_mut(h) {
                host.probes.push(probe);
            }
        }
        topology
    }

    fn check_probe(&mut self, topology: &Topology, raw: &RawProbe, field: &dyn Fn(&str) -> String) -> Option<Probe> {
        let name = raw.name.get_ref().clone();
        if let Err(why) = check_identifier(&name) {
            self.report(raw.name.span(), &field("name"), format!("probe name `{name}` {why}"));
        }
        let target = raw.target.get_ref().clone();
        let resolve = |checker: &mut Self, host: &str| {
            let address = topology.resolve(host);
            if address.is_none() {
                checker.report(
                    raw.target.span(),
                    &field("target"),
                    format!("`{host}` is neither an IPv4 address nor a name of this topology"),
                );
            }
            address
        };
        let kind = match raw.kind.get_ref().as_str() {
            "tcp" => {
                let Some((host, port)) = target.rsplit_once(':') else {
                    self.report(
                        raw.target.span(),
                        &field("target"),
                        format!("a tcp probe needs `host:port`, not `{target}`"),
                    );
                    return None;
                };
                let port = match port.parse::<u16>() {
                    Ok(port) if port > 0 => port,
                    _ => {
                        self.report(
                            raw.target.span(),
                            &field("target"),
                            format!("`{port}` is not a port (1-65535)"),
                        );
                        return None;
                    }
                };
                ProbeKind::Tcp {
                    address: resolve(self, host)?,
                    port,
                }
            }
            "ping" => ProbeKind::Ping {
                address: resolve(self, &target)?,
            },
            other => {
                self.report(
                    raw.kind.span(),
                    &field("kind"),
                    format!("unknown probe kind `{other}` (expected tcp or ping)"),
                );
                return None;
            }
        };
        let mut seconds = |value: &Option<Spanned<f64>>, key: &str, default: f64| match value {
            None => Duration::from_secs_f64(default),
            Some(v) if v.get_ref().is_finite() && *v.get_ref() >= 0.001 && *v.get_ref() <= 3600.0 => {
                Duration::from_secs_f64(*v.get_ref())
            }
            Some(v) => {
                self.report(
                    v.span(),
                    &field(key),
                    format!("{} is not a number of seconds in 0.001-3600", v.get_ref()),
                );
                Duration::from_secs_f64(default)
            }
        };
        let interval = seconds(&raw.interval, "interval", 0.1);
        let timeout = seconds(&raw.timeout, "timeout", 0.2);
        Some(Probe {
            name,
            kind,
            target,
            interval,
            timeout,
        })
    }

    fn check_service(&mut self, raw: &RawService, field: &dyn Fn(&str) -> String) -> Option<Service> {
        let name = raw.name.get_ref().clone();
        if let Err(why) = check_identifier(&name) {
            self.report(raw.name.span(), &field("name"), format!("service name `{name}` {why}"));
        }
        let argv = raw.argv.get_ref().clone();
        match argv.first() {
            None => self.report(
                raw.argv.span(),
                &field("argv"),
                "argv is empty: give at least the program",
            ),
            Some(program) => {
                // A program next to the topology (`{dir}/...`) is looked for there; `{run}` and `{tls}` paths only
                // exist once the lab is up, so they are not checked here.
                let directory = Path::new(&self.file).parent().filter(|p| !p.as_os_str().is_empty());
                let directory = directory.unwrap_or(Path::new(".")).display().to_string();
                let program = &program.replace("{dir}", &directory);
                if program.contains("{run}") || program.contains("{tls}") {
                } else if let Err(why) = find_program(program) {
                    self.report(raw.argv.span(), &field("argv"), why);
                }
            }
        }
        let ready = raw.ready.as_ref().and_then(|r| {
            let RawReady { tcp, file, log } = r.get_ref();
            let given = [tcp.is_some(), file.is_some(), log.is_some()]
                .iter()
                .filter(|b| **b)
                .count();
            if given != 1 {
                self.report(r.span(), &field("ready"), "give exactly one of `tcp`, `file` or `log`");
                return None;
            }
            if *tcp == Some(0) {
                self.report(r.span(), &field("ready.tcp"), "port 0 cannot be checked");
            }
            tcp.map(Readiness::Tcp)
                .or_else(|| file.clone().map(|f| Readiness::File(f.into())))
                .or_else(|| log.clone().map(Readiness::Log))
        });
        let seconds = |value: &Option<Spanned<f64>>, key: &str, default: f64, checker: &mut Self| -> Duration {
            match value {
                None => Duration::from_secs_f64(default),
                Some(v) if v.get_ref().is_finite() && *v.get_ref() >= 0.0 && *v.get_ref() <= 3600.0 => {
                    Duration::from_secs_f64(*v.get_ref())
                }
                Some(v) => {
                    checker.report(
                        v.span(),
                        &field(key),
                        format!("{} is not a number of seconds in 0-3600", v.get_ref()),
                    );
                    Duration::from_secs_f64(default)
                }
            }
        };
        let ready_timeout = seconds(&raw.ready_timeout, "ready_timeout", 10.0, self);
        let grace = seconds(&raw.grace, "grace", 5.0, self);
        let stop_signal = match &raw.stop_signal {
            None => nix::sys::signal::Signal::SIGTERM,
            Some(sig) => match parse_signal(sig.get_ref()) {
                Some(s) => s,
                None => {
                    self.report(
                        sig.span(),
                        &field("stop_signal"),
                        format!("unknown signal `{}`", sig.get_ref()),
                    );
                    nix::sys::signal::Signal::SIGTERM
                }
            },
        };
        let events_on_stdout = match &raw.events {
            None => false,
            Some(events) if events.get_ref() == "stdout" => true,
            Some(events) => {
                self.report(
                    events.span(),
                    &field("events"),
                    format!(
                        "events = `{}`: the only source supported is \"stdout\"",
                        events.get_ref()
                    ),
                );
                false
            }
        };
        Some(Service {
            name,
            argv,
            env: raw.env.clone(),
            cwd: raw.cwd.as_ref().map(PathBuf::from),
            ready,
            ready_timeout,
            stop_signal,
            grace,
            events_on_stdout,
        })
    }
}

/// The name of the switch-side end of a host's n-th interface, inside the lab's switch namespace.
pub fn switch_port_name(host: &str, index: usize) -> String {
    format!("{host}-{index}")
}

fn check_identifier(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("is empty".into());
    }
    if !name.chars().next().is_some_and(|c| c.is_ascii_alphanumeric()) {
        return Err("must start with a letter or digit".into());
    }
    if let Some(bad) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || *c == '-' || *c == '_' || *c == '.'))
    {
        return Err(format!("contains `{bad}`: use letters, digits, `-`, `_` and `.`"));
    }
    Ok(())
}

fn check_hostname(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > 63 {
        return Err("must be 1-63 characters".into());
    }
    if let Some(bad) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || *c == '-' || *c == '.'))
    {
        return Err(format!("contains `{bad}`: use letters, digits, `-` and `.`"));
    }
    if name.starts_with('-') || name.ends_with('-') {
        return Err("must not start or end with `-`".into());
    }
    Ok(())
}

fn parse_mac(text: &str) -> Result<[u8; 6], String> {
    let parts: Vec<&str> = text.split(':').collect();
    let mut mac = [0u8; 6];
    if parts.len() != 6 {
        return Err(format!("`{text}` is not a MAC address like 02:00:00:00:00:01"));
    }
    for (byte, part) in mac.iter_mut().zip(&parts) {
        *byte = u8::from_str_radix(part, 16)
            .map_err(|_| format!("`{text}` is not a MAC address like 02:00:00:00:00:01"))?;
    }
    if mac[0] & 1 == 1 {
        return Err(format!(
            "`{text}` is a multicast MAC address; an interface needs a unicast one"
        ));
    }
    if mac == [0; 6] {
        return Err("the all-zero MAC address cannot be assigned".into());
    }
    Ok(mac)
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

/// Finds a program as `execvp` would, or says which Debian package provides it.
pub fn find_program(program: &str) -> Result<PathBuf, String> {
    if program.contains('/') {
        let path = PathBuf::from(program);
        return if is_executable(&path) {
            Ok(path)
        } else {
            Err(format!("program `{program}` does not exist or is not executable"))
        };
    }
    let path = std::env::var_os("PATH")
        .unwrap_or_else(|| "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into());
    for dir in std::env::split_paths(&path) {
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
        "vrrpd" | "sentinel-proxy" | "lab" => "none: built by this workspace (cargo build --release)",
        _ => return None,
    })
}

fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
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

    const MINIMAL: &str = r#"
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
    fn line_and_column_are_one_based() {
        assert_eq!(line_column("ab\ncd", 0), (1, 1));
        assert_eq!(line_column("ab\ncd", 4), (2, 2));
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
    fn only_net_sysctls_are_allowed() {
        let text = format!("{MINIMAL}sysctls = {{ \"kernel.hostname\" = \"x\" }}\n");
        let err = Topology::parse(&text, "t.toml").unwrap_err().to_string();
        assert!(err.contains("only net.* keys"), "{err}");
    }

    #[test]
    fn renamed_checks_the_new_name() {
        let t = Topology::parse(MINIMAL, "t.toml").unwrap();
        assert!(t.clone().renamed("bad name").is_err());
        assert_eq!(t.renamed("t2").unwrap().netns_name("a"), "t2-a");
    }
}
