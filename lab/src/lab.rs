//! A running lab: what `lab up` builds and tests hold. Dropping it tears everything down, on panic too.

use std::collections::BTreeMap;
use std::io;
use std::io::Write;
use std::net::Ipv4Addr;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;
use std::process::{Command, Output};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rtnetlink::packet_route::address::AddressAttribute;
use rtnetlink::packet_route::link::{LinkAttribute, LinkFlags};

use crate::events::{EventKind, EventLog, ExitStatus};
use crate::fault::{Fault, Injection, NetworkFaults};
use crate::machines::{self, spread::Location, spread::Spread, PartSpec, Placement};
use crate::names::{LabPaths, NameError, RUN_ROOT};
use crate::net::{build, netlink::Netlink, netns};
use crate::observe::{self, Observers};
use crate::plan::Plan;
use crate::process::HostCommand;
use crate::service::RunningService;
use crate::state::{self, HostRecord, Identity, InterfaceRecord, LabState, Phase, ServiceRecord};
use crate::teardown;
use crate::timeline::Timeline;
use crate::topology::placeholders::Facts;
use crate::topology::{Topology, TopologyError};

#[derive(Debug, thiserror::Error)]
pub enum LabError {
    #[error("{0}")]
    Topology(#[from] TopologyError),
    /// A lab or host name that is not a valid name: the CLI exits with code 2.
    #[error("{0}")]
    Name(#[from] NameError),
    /// Not root, or a capability is missing: the CLI exits with code 2.
    #[error("{0}")]
    Permission(String),
    #[error("lab `{0}` is already up (state in /run/lab/{0}); take it down first with `lab down {0}`")]
    AlreadyUp(String),
    #[error("building lab `{lab}` failed: {source}")]
    Build { lab: String, source: io::Error },
    #[error("bringing lab `{0}` up was interrupted; what was built has been removed")]
    Interrupted(String),
    /// A machine of a spread lab is not ready: nothing was built anywhere.
    #[error("lab not built: {}", .0.join("; "))]
    Machines(Vec<String>),
    #[error("{0}")]
    Io(#[from] io::Error),
}

/// Stops a bring-up in progress (Ctrl-C): the build checks it between steps and while waiting for services.
#[derive(Debug, Clone, Default)]
pub struct Cancel {
    flag: Arc<AtomicBool>,
    /// Set by SIGTERM/SIGINT: the runner stops on a signal, which `lab down` may then use.
    on_signals: bool,
}

impl Cancel {
    /// A cancel flag that the process's stop signals set (see `supervisor::StopSignals`).
    pub fn on_signals() -> Cancel {
        Cancel {
            flag: Arc::default(),
            on_signals: true,
        }
    }

    pub fn cancel(&self) {
        self.flag.store(true, Ordering::SeqCst);
    }

    pub fn is_cancelled(&self) -> bool {
        self.flag.load(Ordering::SeqCst)
    }
}

pub struct Lab {
    topology: Topology,
    plan: Plan,
    state: LabState,
    events: Arc<EventLog>,
    services: Vec<RunningService>,
    network_faults: NetworkFaults,
    observers: Observers,
    /// Whether this runner has written the record: from then on, a record that is not its own means the run
    /// directory now belongs to someone else.
    record_written: bool,
    torn_down: bool,
    /// On the coordinator of a lab spread over machines: the other parts.
    spread: Option<Spread>,
}

/// What a part of a lab is given rather than making it itself.
#[derive(Default)]
struct Given {
    /// TLS material made once for the whole lab.
    tls: Option<crate::tls::Material>,
    /// The other machines' parts, recorded before they are built.
    remotes: Vec<crate::machines::remote::RemoteRecord>,
    events: Option<Arc<EventLog>>,
    /// The instance id the coordinator chose for this part.
    instance: Option<String>,
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
        Lab::up_with(topology, &Cancel::default())
    }

    /// [`Lab::up`] that stops, removing what it built, once `cancel` is set. A topology whose hosts run on
    /// several machines is built on all of them (see [`crate::machines`]).
    pub fn up_with(topology: &Topology, cancel: &Cancel) -> Result<Lab, LabError> {
        let placement = Placement::of(topology);
        if placement.is_spread() {
            return Lab::up_spread(topology, placement, cancel);
        }
        Lab::up_part(topology, Given::default(), cancel)
    }

    /// A machine's part of a lab spread over machines, as its coordinator asked for it (`lab part`).
    pub fn up_machine_part(spec: &PartSpec, cancel: &Cancel) -> Result<Lab, LabError> {
        if spec.instance.is_empty() || !spec.instance.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(LabError::Permission(format!(
                "`{}` is not an instance id",
                spec.instance
            )));
        }
        let topology = spec.part()?;
        let given = Given {
            tls: spec.tls.clone(),
            instance: Some(spec.instance.clone()),
            ..Given::default()
        };
        Lab::up_part(&topology, given, cancel)
    }

    /// The coordinator's side of a spread lab: every machine checked before anything is built, then every part
    /// built at once; any failure takes every part down.
    fn up_spread(topology: &Topology, placement: Placement, cancel: &Cancel) -> Result<Lab, LabError> {
        check_privileges()?;
        let started = Instant::now();
        let mut prepared = machines::spread::prepare(topology, &placement).map_err(LabError::Machines)?;
        let events = Arc::new(EventLog::default());
        let given = Given {
            tls: prepared.tls.clone(),
            remotes: prepared.records.clone(),
            events: Some(events.clone()),
            instance: None,
        };
        let local = prepared.local.clone();
        let (lab, parts) = std::thread::scope(|scope| {
            let remote = scope.spawn(|| prepared.start_parts(&events, cancel));
            let lab = Lab::up_part(&local, given, cancel);
            let parts = remote
                .join()
                .unwrap_or_else(|_| Err(io::Error::other("starting the parts panicked")));
            (lab, parts)
        });
        let build_error = |source| LabError::Build {
            lab: topology.name.clone(),
            source,
        };
        match (lab, parts) {
            (Ok(mut lab), Ok(parts)) => {
                lab.spread = Some(Spread {
                    topology: topology.clone(),
                    placement,
                    parts,
                });
                lab.save_state()?;
                lab.events.push(
                    None,
                    EventKind::LabUp {
                        lab: topology.name.clone(),
                        build_ms: started.elapsed().as_secs_f64() * 1e3,
                    },
                );
                Ok(lab)
            }
            (Ok(lab), Err(e)) => {
                drop(lab);
                match e.kind() {
                    io::ErrorKind::Interrupted => Err(LabError::Interrupted(topology.name.clone())),
                    _ => Err(build_error(e)),
                }
            }
            (Err(e), Ok(parts)) => {
                let spread = Spread {
                    topology: topology.clone(),
                    placement,
                    parts,
                };
                let _ = spread.down(Duration::from_secs(120));
                Err(e)
            }
            (Err(e), Err(_)) => Err(e),
        }
    }

    fn up_part(topology: &Topology, given: Given, cancel: &Cancel) -> Result<Lab, LabError> {
        check_privileges()?;
        let started = Instant::now();
        let plan = Plan::new(topology)?;
        let run_dir = create_run_dir(&plan.paths)?;
        let mut state = initial_state(topology, &plan, run_dir, cancel.on_signals);
        state.remotes = given.remotes;
        if let Some(instance) = given.instance {
            state.instance = instance;
        }
        let mut lab = Lab {
            state,
            topology: topology.clone(),
            network_faults: NetworkFaults::new(&plan, topology.impair_backend),
            plan,
            events: given.events.unwrap_or_default(),
            services: Vec::new(),
            observers: Observers::default(),
            record_written: false,
            torn_down: false,
            spread: None,
        };
        // From here on, dropping `lab` removes whatever exists.
        lab.save_state()?;
        lab.build(cancel, given.tls)
            .map_err(|source| match cancel.is_cancelled() {
                true => LabError::Interrupted(topology.name.clone()),
                false => LabError::Build {
                    lab: topology.name.clone(),
                    source,
                },
            })?;
        lab.start_observers()?;
        lab.impair_links().map_err(|source| LabError::Build {
            lab: topology.name.clone(),
            source,
        })?;
        lab.start_services(cancel)?;
        lab.state.phase = Phase::Up;
        lab.save_state()?;
        // A spread lab is up when every part is: its coordinator says so then.
        if lab.state.remotes.is_empty() {
            lab.events.push(
                None,
                EventKind::LabUp {
                    lab: topology.name.clone(),
                    build_ms: started.elapsed().as_secs_f64() * 1e3,
                },
            );
        }
        // Probes start once the lab is up: what they see is the running lab, not its construction.
        lab.start_probes()?;
        Ok(lab)
    }

    /// The run directory's contents, the network, and each host's /etc.
    fn build(&mut self, cancel: &Cancel, tls: Option<crate::tls::Material>) -> io::Result<()> {
        let paths = &self.plan.paths;
        for dir in [paths.logs_dir(), paths.namespaces_dir()] {
            std::fs::create_dir(&dir)?;
        }
        match tls {
            Some(material) => material.write(&paths.tls_dir())?,
            None if self.topology.tls => crate::tls::write_material(&self.topology, &paths.tls_dir())?,
            None => {}
        }
        let cancelled = || cancel.is_cancelled();
        let namespaces = build::build(&self.topology, &self.plan, &cancelled)?;
        self.state.namespaces = self
            .plan
            .namespaces()
            .filter_map(|n| {
                let identity = *namespaces.get(&n.host)?;
                let netns = n.name.clone();
                Some((n.host.clone(), state::NamespaceRecord { netns, identity }))
            })
            .collect();
        self.save_state()?;
        self.write_etc_files()?;
        self.build_filesystems()?;
        if cancel.is_cancelled() {
            return Err(build::interrupted());
        }
        Ok(())
    }

    pub fn name(&self) -> &str {
        &self.topology.name
    }

    pub fn topology(&self) -> &Topology {
        &self.topology
    }

    /// Every name and path the lab uses.
    pub fn plan(&self) -> &Plan {
        &self.plan
    }

    pub fn paths(&self) -> &LabPaths {
        &self.plan.paths
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
                    names.push((crate::net::format_mac(&mac), format!("mac:{}/{}", host.name, link.name)));
                }
            }
        }
        names.push((self.paths().run_dir().display().to_string(), "{run}".into()));
        names.push((self.plan.topology_dir.display().to_string(), "{dir}".into()));
        names.push((self.topology.name.clone(), "LAB".into()));
        Ok(names)
    }

    pub fn state(&self) -> &LabState {
        &self.state
    }

    /// The namespace name of `host` (`<lab>-<host>`), for `ip netns exec` and friends.
    pub fn netns(&self, host: &str) -> io::Result<String> {
        Ok(self.host_plan(host)?.namespace.name.clone())
    }

    /// The namespace file of `host`, to enter it (`setns`) from code.
    pub fn netns_path(&self, host: &str) -> io::Result<&Path> {
        Ok(&self.host_plan(host)?.namespace.mount)
    }

    /// The identity of every namespace the lab created, the switch's included.
    pub fn namespace_identities(&self) -> Vec<Identity> {
        self.state.namespaces.values().map(|n| n.identity).collect()
    }

    /// How to start programs in `host`: its namespace, hostname and /etc/hosts.
    pub fn host_command(&self, host: &str) -> io::Result<HostCommand> {
        self.ensure_current()?;
        HostCommand::for_recorded_host(&self.state, &self.plan.paths, host)
    }

    /// Fails if the lab was taken down under this runner (`lab down` gave up on it) and its name now belongs to
    /// another instance, or to nobody: nothing may then be entered or changed through it.
    fn ensure_current(&self) -> io::Result<()> {
        if state::recorded_instance(&self.plan.paths).as_deref() == Some(self.state.instance.as_str()) {
            return Ok(());
        }
        Err(io::Error::new(
            io::ErrorKind::NotFound,
            format!("lab {} was taken down under this runner", self.plan.lab()),
        ))
    }

    /// A `Command` that runs `program` inside `host`.
    pub fn command(&self, host: &str, program: &str) -> io::Result<Command> {
        self.host_command(host)?.command(program)
    }

    /// Runs a command to completion inside `host` (on whichever machine runs it) and returns its output.
    pub fn exec(&self, host: &str, argv: &[&str]) -> io::Result<Output> {
        if let Some(spread) = &self.spread {
            if let Location::Remote(part) = spread.host(host)? {
                return part.exec(host, argv);
            }
        }
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
            .ok_or_else(|| crate::plan::unknown_host(&self.topology.name, host))?;
        Ok(host
            .interfaces
            .iter()
            .map(|i| (i.name.clone(), i.address, i.prefix))
            .collect())
    }

    /// The IPv4 addresses `host`'s kernel has now, on any interface (the topology's and those daemons added).
    pub fn kernel_addresses(&self, host: &str) -> io::Result<Vec<Ipv4Addr>> {
        self.ensure_current()?;
        let namespace = self.state.open_namespace(&self.plan.paths, host)?;
        let messages = netns::run_in_file(namespace, || Netlink::open()?.addresses())?;
        Ok(messages
            .into_iter()
            .flat_map(|m| m.attributes)
            .filter_map(|a| match a {
                AddressAttribute::Local(std::net::IpAddr::V4(address)) => Some(address),
                _ => None,
            })
            .collect())
    }

    /// The links of `host` as its kernel sees them.
    pub fn links(&self, host: &str) -> io::Result<Vec<LinkInfo>> {
        self.ensure_current()?;
        links_in_namespace(self.state.open_namespace(&self.plan.paths, host)?)
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

    /// Injects `fault` into `host`. See [`Lab::inject`] for several hosts at once.
    pub fn fault(&mut self, host: &str, fault: &Fault) -> io::Result<()> {
        self.inject(&[host], fault)
    }

    /// Injects `fault` into each of `hosts` (for a partition: cuts them off from the hosts the fault names; for an
    /// underlay cut, `hosts` are machines). In a spread lab, each host's (or machine's) part carries it out.
    pub fn inject(&mut self, hosts: &[&str], fault: &Fault) -> io::Result<()> {
        let Some(spread) = &self.spread else {
            return self.inject_here(hosts, fault);
        };
        let routed = spread.route(hosts, fault)?;
        let (here, remote): (Vec<_>, Vec<_>) = routed.into_iter().partition(|r| r.machine.is_none());
        // The other machines at once (each is an SSH session: seconds on a slow machine), then this one.
        let remote_done = std::thread::scope(|scope| {
            let threads: Vec<_> = (remote.iter())
                .filter_map(|routed| Some((spread.part(&routed.machine)?, routed)))
                .map(|(part, routed)| {
                    scope.spawn(move || {
                        let targets: Vec<&str> = routed.targets.iter().map(String::as_str).collect();
                        part.fault(&targets, &routed.fault.words())
                    })
                })
                .collect();
            (threads.into_iter())
                .map(|t| {
                    t.join()
                        .unwrap_or_else(|_| Err(io::Error::other("a fault's session panicked")))
                })
                .collect::<io::Result<Vec<()>>>()
        });
        for routed in here {
            let targets: Vec<&str> = routed.targets.iter().map(String::as_str).collect();
            self.inject_here(&targets, &routed.fault)?;
        }
        remote_done.map(drop)
    }

    fn inject_here(&mut self, hosts: &[&str], fault: &Fault) -> io::Result<()> {
        self.ensure_current()?;
        let mut injection = Injection {
            topology: &self.topology,
            plan: &self.plan,
            state: &self.state,
            events: &self.events,
            services: &mut self.services,
            network: &mut self.network_faults,
        };
        let injected = injection.inject(hosts, fault);
        // Even a fault that failed half-way may have changed what is in force: the record says what is.
        self.state.faults = self.network_faults.record();
        let saved = self.save_state();
        injected.and(saved)
    }

    /// The impairments the topology gives its links, in force before any service starts: each a fault on the
    /// timeline, in the words `lab fault` takes.
    fn impair_links(&mut self) -> io::Result<()> {
        let mut faults = Vec::new();
        for host in &self.topology.hosts {
            for interface in &host.interfaces {
                for (direction, impairment) in &interface.impair {
                    let link_faults = Fault::link(interface, *direction, impairment);
                    faults.extend(link_faults.into_iter().map(|fault| (host.name.clone(), fault)));
                }
            }
        }
        for (host, fault) in faults {
            self.inject(&[&host], &fault)?;
        }
        Ok(())
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
                record.pid = Some(service.pid());
                record.state = match service.exit_status() {
                    None => "running".into(),
                    Some(status) => format!("exited ({status})"),
                };
            }
        }
        self.state.save(&self.plan.paths, self.record_written)?;
        self.record_written = true;
        Ok(())
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
        // The other machines' parts go down alongside this one, and their last events arrive before the timeline
        // is kept.
        let spread = self.spread.take();
        let remote = std::thread::spawn(move || spread.map_or(Ok(()), |s| s.down(Duration::from_secs(120))));
        // Observers stop recording now; they end on their own within a few tens of milliseconds.
        self.observers.detach();
        let statuses = self
            .services
            .iter()
            .rev()
            .map(|s| (s.host.clone(), s.spec.name.clone(), s.stop(&self.events)))
            .collect();
        let remote = remote
            .join()
            .unwrap_or_else(|_| Err(io::Error::other("taking the other machines' parts down panicked")));
        if let Err(e) = crate::artifacts::keep(&self.plan.paths, &self.topology.name, &self.timeline()) {
            eprintln!(
                "lab {}: keeping its artifacts ({}): {e}",
                self.topology.name,
                crate::artifacts::VARIABLE
            );
        }
        self.network_faults.stop();
        let hosts: Vec<String> = self.plan.hosts.iter().map(|h| h.name.clone()).collect();
        teardown::remove(
            &self.plan.paths,
            &hosts,
            Some(&self.state.instance),
            self.state.etc_hosts,
        )?;
        self.events.push(
            None,
            EventKind::LabDown {
                lab: self.topology.name.clone(),
            },
        );
        remote.map_err(|e| io::Error::new(e.kind(), format!("this machine's part is down; {e}")))?;
        Ok(statuses)
    }

    fn host_plan(&self, host: &str) -> io::Result<&crate::plan::HostPlan> {
        self.plan.host_or_error(host)
    }

    /// Each host's /etc/netns directory, which `ip netns exec` (and the lab's processes) bind over /etc, with the
    /// /etc/hosts every host sees: one file, written as an anonymous file (O_TMPFILE, so a runner killed now leaves
    /// nothing), recorded, and only then hard-linked into each host's directory. A 1000-host lab writes one file of
    /// a thousand lines, not a thousand.
    fn write_etc_files(&mut self) -> io::Result<()> {
        std::fs::create_dir_all(crate::names::ETC_NETNS_DIR)?;
        let anonymous = std::fs::OpenOptions::new()
            .write(true)
            .custom_flags(libc::O_TMPFILE)
            .mode(0o644)
            .open(crate::names::ETC_NETNS_DIR);
        // A file system without anonymous files: a named one beside the directories, removed once they link it
        // (teardown also knows it by its recorded identity).
        let staged = self.paths().staged_etc_hosts();
        let mut hosts_file = match anonymous {
            Ok(file) => file,
            Err(e) if matches!(e.raw_os_error(), Some(libc::EOPNOTSUPP | libc::EISDIR | libc::EINVAL)) => {
                std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o644)
                    .open(&staged)?
            }
            Err(e) => return Err(e),
        };
        hosts_file.write_all(self.topology.etc_hosts().as_bytes())?;
        let meta = hosts_file.metadata()?;
        self.state.etc_hosts = Some(Identity {
            dev: meta.dev(),
            ino: meta.ino(),
        });
        self.save_state()?;
        for host in &self.plan.hosts {
            create_etc_dir(&host.etc)?;
            link_open_file(&hosts_file, &host.etc.hosts_file)?;
        }
        match std::fs::remove_file(&staged) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }

    /// Every host's own filesystem, and the files the topology places into them.
    fn build_filesystems(&self) -> io::Result<()> {
        crate::hostfs::build_lab(&self.topology, &self.plan.paths)?;
        for (host, host_plan) in self.topology.hosts.iter().zip(&self.plan.hosts) {
            let facts = self.facts(host);
            crate::hostfs::build_host(host, &host_plan.fs, &host_plan.view, &facts)
                .map_err(|e| io::Error::new(e.kind(), format!("host {}: {e}", host.name)))?;
        }
        Ok(())
    }

    /// What placeholders stand for in `host` (`{address}`, `{tls}`, ...), for commands run there.
    pub fn placeholder_facts(&self, host: &str) -> io::Result<Facts<'_>> {
        let host = self
            .topology
            .host(host)
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, format!("no host `{host}`")))?;
        Ok(self.facts(host))
    }

    /// What the placeholders of `host`'s services and files stand for.
    fn facts<'a>(&'a self, host: &'a crate::topology::Host) -> Facts<'a> {
        Facts {
            topology: &self.topology,
            host,
            dir: &self.plan.topology_dir,
            paths: Some(&self.plan.paths),
        }
    }

    /// The kernel monitor of every host and a capture on every segment, started before any service so they see
    /// everything the services do.
    fn start_observers(&mut self) -> io::Result<()> {
        let stop = self.observers.stop_flag();
        let hosts = self
            .plan
            .hosts
            .iter()
            .map(|h| observe::kernel::Watched {
                host: h.name.clone(),
                namespace: h.namespace.mount.clone(),
                interfaces: h.interfaces.iter().map(|i| (i.index, i.name.clone())).collect(),
            })
            .collect();
        self.observers
            .adopt(observe::kernel::start(hosts, self.events.clone(), stop.clone())?);
        for segment in &self.plan.segments {
            self.observers.adopt(observe::wire::start(
                &self.plan.switch.mount,
                &segment.name,
                self.events.clone(),
                stop.clone(),
            )?);
        }
        Ok(())
    }

    fn start_probes(&mut self) -> io::Result<()> {
        let stop = self.observers.stop_flag();
        for (host, host_plan) in self.topology.hosts.iter().zip(&self.plan.hosts) {
            for probe in &host.probes {
                self.observers.adopt(observe::probe::start(
                    &host.name,
                    &host_plan.namespace.mount,
                    probe,
                    self.events.clone(),
                    stop.clone(),
                )?);
            }
        }
        Ok(())
    }

    /// Starts every service in topology order, each once the one before is ready; then checks that those without
    /// a readiness check are still running after their settle time.
    fn start_services(&mut self, cancel: &Cancel) -> Result<(), LabError> {
        let topology = self.topology.clone();
        for (host, host_plan) in topology.hosts.iter().zip(self.plan.hosts.clone()) {
            if host.services.is_empty() {
                continue;
            }
            // The lab was just built by this runner: no need to ask whether it is still its own.
            let identity = HostCommand::for_recorded_host(&self.state, &self.plan.paths, &host.name)?;
            for (spec, service_plan) in host.services.iter().zip(&host_plan.services) {
                if cancel.is_cancelled() {
                    return Err(LabError::Interrupted(topology.name.clone()));
                }
                let spec = &spec.with_placeholders(&self.facts(host));
                let service = RunningService::start(&host.name, spec, &identity, &service_plan.log, &self.events)?;
                let ready = service.wait_ready(&host_plan.namespace.mount, &self.events, &|| cancel.is_cancelled());
                self.services.push(service);
                self.save_state()?;
                if cancel.is_cancelled() {
                    return Err(LabError::Interrupted(topology.name.clone()));
                }
                ready?;
            }
        }
        for service in &self.services {
            service.check_settled()?;
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

/// Gives the open (anonymous) file a name.
fn link_open_file(file: &std::fs::File, to: &Path) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let to_c = std::ffi::CString::new(to.as_os_str().as_encoded_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in a path"))?;
    // SAFETY: linkat with a descriptor we own, an empty path (AT_EMPTY_PATH: the descriptor itself) and a C string.
    let linked = unsafe {
        libc::linkat(
            file.as_raw_fd(),
            c"".as_ptr(),
            libc::AT_FDCWD,
            to_c.as_ptr(),
            libc::AT_EMPTY_PATH,
        )
    };
    if linked != 0 {
        let e = io::Error::last_os_error();
        return Err(io::Error::new(e.kind(), format!("cannot create {}: {e}", to.display())));
    }
    Ok(())
}

/// Creates a host's /etc/netns directory; one that exists already is not the lab's, and is left alone.
fn create_etc_dir(etc: &crate::names::EtcPaths) -> io::Result<()> {
    std::fs::DirBuilder::new().mode(0o755).create(&etc.dir).map_err(|e| {
        if e.kind() == io::ErrorKind::AlreadyExists {
            build::etc_collision(&etc.dir)
        } else {
            io::Error::new(e.kind(), format!("cannot create {}: {e}", etc.dir.display()))
        }
    })
}

/// Creates the lab's run directory, root's alone whatever the umask; it is the lab's lock (creating it fails if
/// the lab exists). Returns its identity, which teardown checks before removing it.
fn create_run_dir(paths: &LabPaths) -> Result<Identity, LabError> {
    let root = Path::new(RUN_ROOT);
    std::fs::DirBuilder::new().recursive(true).mode(0o700).create(root)?;
    Identity::of_directory(root)?;
    std::fs::set_permissions(root, std::fs::Permissions::from_mode(0o700))?;
    netns::prepare_run_root(root)?;
    let run_dir = paths.run_dir();
    if let Err(e) = std::fs::DirBuilder::new().mode(0o700).create(&run_dir) {
        return Err(if e.kind() == io::ErrorKind::AlreadyExists {
            LabError::AlreadyUp(paths.lab().to_string())
        } else {
            e.into()
        });
    }
    std::fs::set_permissions(&run_dir, std::fs::Permissions::from_mode(0o700))?;
    Ok(Identity::of_directory(&run_dir)?)
}

fn initial_state(topology: &Topology, plan: &Plan, run_dir: Identity, stops_on_signals: bool) -> LabState {
    let hosts = topology
        .hosts
        .iter()
        .zip(&plan.hosts)
        .map(|(host, host_plan)| {
            let record = HostRecord {
                hostname: host.hostname.clone(),
                view: host_plan.view.clone(),
                interfaces: host
                    .interfaces
                    .iter()
                    .map(|i| InterfaceRecord {
                        name: i.name.clone(),
                        segment: i.segment.clone(),
                        address: format!("{}/{}", i.address, i.prefix),
                    })
                    .collect(),
                services: host_plan
                    .services
                    .iter()
                    .map(|s| ServiceRecord {
                        name: s.name.clone(),
                        pid: None,
                        state: "not started".into(),
                        log: s.log.clone(),
                    })
                    .collect(),
            };
            (host.name.clone(), record)
        })
        .collect::<BTreeMap<_, _>>();
    let pid = std::process::id();
    LabState {
        name: topology.name.clone(),
        instance: state::new_instance(),
        topology: topology
            .source
            .canonicalize()
            .unwrap_or_else(|_| topology.source.clone()),
        runner_pid: pid,
        runner_started: state::process_started(pid).unwrap_or(0),
        stops_on_signals,
        phase: Phase::Building,
        run_dir,
        namespaces: BTreeMap::new(),
        etc_hosts: None,
        hosts,
        faults: Default::default(),
        remotes: Vec::new(),
    }
}

/// The links of an open namespace, as its kernel reports them.
pub fn links_in_namespace(namespace: std::fs::File) -> io::Result<Vec<LinkInfo>> {
    let messages = netns::run_in_file(namespace, || Netlink::open()?.links())?;
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
