//! A running lab: what `lab up` builds and tests hold. Dropping it tears everything down, on panic too.

use std::collections::BTreeMap;
use std::io;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::process::{Command, Output};
use std::sync::Arc;
use std::time::Instant;

use rtnetlink::packet_route::link::{LinkAttribute, LinkFlags};

use crate::events::{EventKind, EventLog, ExitStatus};
use crate::fault::NetworkFaults;
use crate::net::{build, netlink::Netlink, netns};
use crate::observe::{self, Observers};
use crate::process::HostCommand;
use crate::service::RunningService;
use crate::state::{self, HostRecord, InterfaceRecord, LabState, Phase, ServiceRecord};
use crate::timeline::Timeline;
use crate::topology::{Topology, TopologyError};

#[derive(Debug, thiserror::Error)]
pub enum LabError {
    #[error("{0}")]
    Topology(#[from] TopologyError),
    /// Not root, or a capability is missing: the CLI exits with code 2.
    #[error("{0}")]
    Permission(String),
    #[error("lab `{0}` is already up (state in /run/lab/{0}); take it down first with `lab down {0}`")]
    AlreadyUp(String),
    #[error("building lab `{lab}` failed: {source}")]
    Build { lab: String, source: io::Error },
    #[error("{0}")]
    Io(#[from] io::Error),
}

pub struct Lab {
    topology: Topology,
    state: LabState,
    pub(crate) events: Arc<EventLog>,
    pub(crate) services: Vec<RunningService>,
    pub(crate) network_faults: NetworkFaults,
    observers: Observers,
    torn_down: bool,
}

/// A link as the kernel reports it inside a host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkInfo {
    pub name: String,
    pub index: u32,
    pub mac: Option<[u8; 6]>,
    pub up: bool,
}

impl Lab {
    /// Builds the topology and starts its services. On any failure, everything already created is removed before
    /// the error is returned.
    pub fn up(topology: &Topology) -> Result<Lab, LabError> {
        check_privileges()?;
        let started = Instant::now();
        let run_dir = state::run_dir(&topology.name);
        std::fs::create_dir_all(state::RUN_ROOT)?;
        // The run directory is the lab's lock: creating it fails if the lab exists.
        if let Err(e) = std::fs::create_dir(&run_dir) {
            return Err(if e.kind() == io::ErrorKind::AlreadyExists {
                LabError::AlreadyUp(topology.name.clone())
            } else {
                e.into()
            });
        }
        let state = initial_state(topology);
        let mut lab = Lab {
            topology: topology.clone(),
            state,
            events: Arc::new(EventLog::default()),
            services: Vec::new(),
            network_faults: NetworkFaults::default(),
            observers: Observers::default(),
            torn_down: false,
        };
        // From here on, dropping `lab` removes whatever exists.
        lab.save_state()?;
        std::fs::create_dir_all(run_dir.join("logs"))?;
        if topology.tls {
            crate::tls::write_material(topology, &crate::tls::directory(&run_dir))?;
        }
        build::build(topology).map_err(|source| LabError::Build {
            lab: topology.name.clone(),
            source,
        })?;
        lab.write_hosts_files()?;
        lab.start_observers()?;
        lab.start_services()?;
        lab.state.phase = Phase::Up;
        lab.save_state()?;
        let build_ms = started.elapsed().as_secs_f64() * 1e3;
        lab.events.push(
            None,
            EventKind::LabUp {
                lab: topology.name.clone(),
                build_ms,
            },
        );
        // Probes start once the lab is up: what they see is the running lab, not its construction.
        lab.start_probes()?;
        Ok(lab)
    }

    pub fn name(&self) -> &str {
        &self.topology.name
    }

    pub fn topology(&self) -> &Topology {
        &self.topology
    }

    pub fn events(&self) -> &Arc<EventLog> {
        &self.events
    }

    /// Everything recorded so far, in time order.
    pub fn timeline(&self) -> Timeline {
        Timeline::new(self.events.all())
    }

    /// Text that differs from run to run and the stable name a snapshot shows instead: every interface's MAC
    /// (`mac:haproxy1/eth0`), the run directory, the topology directory and the lab's name.
    pub fn volatile_names(&self) -> io::Result<Vec<(String, String)>> {
        let mut names = Vec::new();
        for host in &self.topology.hosts {
            for link in self.links(&host.name)? {
                if let (Some(mac), true) = (link.mac, link.name != "lo") {
                    names.push((crate::cli::format_mac(&mac), format!("mac:{}/{}", host.name, link.name)));
                }
            }
        }
        names.push((
            state::run_dir(&self.topology.name).display().to_string(),
            "{run}".into(),
        ));
        names.push((self.topology.directory().display().to_string(), "{dir}".into()));
        names.push((self.topology.name.clone(), "LAB".into()));
        Ok(names)
    }

    pub fn state(&self) -> &LabState {
        &self.state
    }

    /// The namespace of `host`, for `ip netns exec` and friends.
    pub fn netns(&self, host: &str) -> io::Result<String> {
        self.record(host).map(|r| r.netns.clone())
    }

    /// How to start programs in `host`: its namespace, hostname and /etc/hosts.
    pub fn host_command(&self, host: &str) -> io::Result<HostCommand> {
        host_command(&self.state, host)
    }

    /// A `Command` that runs `program` inside `host`.
    pub fn command(&self, host: &str, program: &str) -> io::Result<Command> {
        self.host_command(host)?.command(program)
    }

    /// Runs a command to completion inside `host` and returns its output.
    pub fn exec(&self, host: &str, argv: &[&str]) -> io::Result<Output> {
        let (program, args) = argv
            .split_first()
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "empty command"))?;
        self.command(host, program)?
            .args(args)
            .stdin(std::process::Stdio::null())
            .output()
    }

    /// The addresses the topology gives `host`, per interface.
    pub fn addresses(&self, host: &str) -> io::Result<Vec<(String, Ipv4Addr, u8)>> {
        let host = self
            .topology
            .host(host)
            .ok_or_else(|| unknown_host(&self.topology.name, host))?;
        Ok(host
            .interfaces
            .iter()
            .map(|i| (i.name.clone(), i.address, i.prefix))
            .collect())
    }

    /// The links of `host` as its kernel sees them.
    pub fn links(&self, host: &str) -> io::Result<Vec<LinkInfo>> {
        links_in(&self.netns(host)?)
    }

    /// The MAC address of `interface` in `host`.
    pub fn mac(&self, host: &str, interface: &str) -> io::Result<[u8; 6]> {
        self.links(host)?
            .into_iter()
            .find(|l| l.name == interface)
            .and_then(|l| l.mac)
            .ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::NotFound,
                    format!("host {host} has no interface {interface}"),
                )
            })
    }

    pub fn services(&self) -> &[RunningService] {
        &self.services
    }

    pub fn service(&self, host: &str, name: &str) -> Option<&RunningService> {
        self.services.iter().find(|s| s.host == host && s.spec.name == name)
    }

    /// Rewrites the state file with each service's current state (for `lab status`).
    pub fn save_state(&mut self) -> io::Result<()> {
        for service in &self.services {
            if let Some(record) = self
                .state
                .hosts
                .get_mut(&service.host)
                .and_then(|h| h.services.iter_mut().find(|s| s.name == service.spec.name))
            {
                record.pid = Some(service.pid);
                record.state = match service.exit_status() {
                    None => "running".into(),
                    Some(status) => format!("exited ({status})"),
                };
            }
        }
        self.state.save()
    }

    /// Stops the services (last started, first stopped) and removes every trace of the lab.
    pub fn down(mut self) -> io::Result<Vec<(String, String, ExitStatus)>> {
        self.teardown()
    }

    fn teardown(&mut self) -> io::Result<Vec<(String, String, ExitStatus)>> {
        if self.torn_down {
            return Ok(Vec::new());
        }
        self.torn_down = true;
        self.state.phase = Phase::Stopping;
        let _ = self.save_state();
        // Observers stop recording now; they end on their own within a few tens of milliseconds.
        self.observers.detach();
        let statuses = self
            .services
            .iter()
            .rev()
            .map(|s| (s.host.clone(), s.spec.name.clone(), s.stop(&self.events)))
            .collect();
        state::remove(&self.state)?;
        self.events.push(
            None,
            EventKind::LabDown {
                lab: self.topology.name.clone(),
            },
        );
        Ok(statuses)
    }

    fn record(&self, host: &str) -> io::Result<&HostRecord> {
        self.state
            .hosts
            .get(host)
            .ok_or_else(|| unknown_host(&self.topology.name, host))
    }

    /// Every host sees the same /etc/hosts: it is written once and hard-linked into each host's /etc/netns
    /// directory, which keeps a 1000-host lab from writing a thousand copies of a thousand lines.
    fn write_hosts_files(&self) -> io::Result<()> {
        let mut written: Option<&PathBuf> = None;
        for record in self.state.hosts.values() {
            std::fs::create_dir_all(record.hosts_file.parent().expect("hosts file has a directory"))?;
            match written {
                Some(first) => std::fs::hard_link(first, &record.hosts_file)?,
                None => {
                    std::fs::write(&record.hosts_file, self.topology.etc_hosts())?;
                    written = Some(&record.hosts_file);
                }
            }
        }
        Ok(())
    }

    /// The kernel monitor of every host and a capture on every segment, started before any service so they see
    /// everything the services do.
    fn start_observers(&mut self) -> io::Result<()> {
        let stop = self.observers.stop_flag();
        let hosts = self
            .topology
            .hosts
            .iter()
            .map(|h| observe::kernel::Watched {
                host: h.name.clone(),
                namespace: self.topology.netns_name(&h.name),
                interfaces: h
                    .interfaces
                    .iter()
                    .enumerate()
                    .map(|(n, i)| (build::interface_index(n), i.name.clone()))
                    .collect(),
            })
            .collect();
        self.observers
            .adopt(observe::kernel::start(hosts, self.events.clone(), stop.clone())?);
        let switch = self.topology.netns_name(crate::topology::SWITCH_HOST);
        for segment in &self.topology.segments {
            self.observers.adopt(observe::wire::start(
                &switch,
                &segment.name,
                self.events.clone(),
                stop.clone(),
            )?);
        }
        Ok(())
    }

    fn start_probes(&mut self) -> io::Result<()> {
        let stop = self.observers.stop_flag();
        for host in &self.topology.hosts {
            for probe in &host.probes {
                let namespace = self.topology.netns_name(&host.name);
                self.observers.adopt(observe::probe::start(
                    &host.name,
                    &namespace,
                    probe,
                    self.events.clone(),
                    stop.clone(),
                )?);
            }
        }
        Ok(())
    }

    fn start_services(&mut self) -> Result<(), LabError> {
        let topology = self.topology.clone();
        for host in &topology.hosts {
            let identity = host_command(&self.state, &host.name)?;
            let netns_name = self.topology.netns_name(&host.name);
            let run_dir = state::run_dir(&self.topology.name);
            let topology_dir = self.topology.directory();
            for spec in &host.services {
                let spec = &spec.with_placeholders(&topology_dir, &run_dir);
                let log = run_dir.join("logs").join(format!("{}.{}.log", host.name, spec.name));
                let service = RunningService::start(&host.name, spec, &identity, &log, &self.events)?;
                let ready = service.wait_ready(&netns_name, &self.events);
                self.services.push(service);
                self.save_state()?;
                ready?;
            }
        }
        Ok(())
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        if let Err(e) = self.teardown() {
            eprintln!("lab {}: teardown: {e}", self.topology.name);
        }
    }
}

fn initial_state(topology: &Topology) -> LabState {
    let namespaces = build::namespaces(topology);
    let mut hosts = BTreeMap::new();
    let mut files = Vec::new();
    for host in &topology.hosts {
        let netns = topology.netns_name(&host.name);
        // Where `ip netns exec` looks for per-namespace /etc files, so it resolves the lab's names too.
        let hosts_file = PathBuf::from("/etc/netns").join(&netns).join("hosts");
        files.push(hosts_file.clone());
        let log = |s: &str| {
            state::run_dir(&topology.name)
                .join("logs")
                .join(format!("{}.{s}.log", host.name))
        };
        hosts.insert(
            host.name.clone(),
            HostRecord {
                netns,
                hostname: host.hostname.clone(),
                hosts_file,
                interfaces: host
                    .interfaces
                    .iter()
                    .map(|i| InterfaceRecord {
                        name: i.name.clone(),
                        segment: i.segment.clone(),
                        address: format!("{}/{}", i.address, i.prefix),
                    })
                    .collect(),
                services: host
                    .services
                    .iter()
                    .map(|s| ServiceRecord {
                        name: s.name.clone(),
                        pid: None,
                        state: "not started".into(),
                        log: log(&s.name),
                    })
                    .collect(),
            },
        );
    }
    LabState {
        name: topology.name.clone(),
        topology: topology
            .source
            .canonicalize()
            .unwrap_or_else(|_| topology.source.clone()),
        runner_pid: std::process::id(),
        phase: Phase::Building,
        namespaces,
        hosts,
        files,
    }
}

/// How to enter `host` of a recorded lab.
pub fn host_command(state: &LabState, host: &str) -> io::Result<HostCommand> {
    let record = state.hosts.get(host).ok_or_else(|| unknown_host(&state.name, host))?;
    Ok(HostCommand::new(&record.netns).with_identity(&record.hostname, &record.hosts_file))
}

/// The links of a namespace, as its kernel reports them.
pub fn links_in(netns_name: &str) -> io::Result<Vec<LinkInfo>> {
    let messages = netns::run_in(netns_name, || Netlink::open()?.links())?;
    Ok(messages
        .into_iter()
        .map(|m| {
            let mut info = LinkInfo {
                name: String::new(),
                index: m.header.index,
                mac: None,
                up: m.header.flags.contains(LinkFlags::Up),
            };
            for attribute in m.attributes {
                match attribute {
                    LinkAttribute::IfName(name) => info.name = name,
                    LinkAttribute::Address(bytes) if bytes.len() == 6 => info.mac = bytes.try_into().ok(),
                    _ => {}
                }
            }
            info
        })
        .collect())
}

fn unknown_host(lab: &str, host: &str) -> io::Error {
    io::Error::new(io::ErrorKind::NotFound, format!("lab {lab} has no host `{host}`"))
}

/// Building a lab takes root's namespace and network powers; say which one is missing in one sentence.
pub fn check_privileges() -> Result<(), LabError> {
    if !nix::unistd::geteuid().is_root() {
        return Err(LabError::Permission(
            "lab must run as root: it creates network namespaces (try `sudo lab ...`)".into(),
        ));
    }
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let effective = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
        .unwrap_or(u64::MAX);
    for (bit, name) in [(21, "CAP_SYS_ADMIN"), (12, "CAP_NET_ADMIN")] {
        if effective & (1 << bit) == 0 {
            return Err(LabError::Permission(format!(
                "lab needs the {name} capability to create network namespaces, and this process lacks it"
            )));
        }
    }
    Ok(())
}

/// Removes a lab recorded on disk whose runner may be dead: the recovery path of `lab down`.
pub fn remove_recorded(lab: &str) -> io::Result<()> {
    let state = LabState::load(lab)?;
    state::remove(&state)
}
