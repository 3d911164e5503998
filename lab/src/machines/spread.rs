//! The coordinator's view of a lab spread over machines: preparing the parts (checks, TLS material, each
//! machine's spec), starting the remote ones together, and routing what is asked of a host or a machine to the
//! part that has it. The coordinator's own part is a [`crate::Lab`] like any other, which holds this.

use std::collections::BTreeMap;
use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use super::clock::Offset;
use super::remote::{RemotePart, RemoteRecord};
use super::report::check_machines;
use super::ssh::Ssh;
use super::{PartSpec, Placement};
use crate::events::EventLog;
use crate::fault::Fault;
use crate::lab::Cancel;
use crate::topology::Topology;

/// What building a spread lab needs, once every machine has passed its checks.
pub struct Prepared {
    /// The coordinator's part.
    pub local: Topology,
    pub tls: Option<crate::tls::Material>,
    /// The remote parts, as the coordinator records them before building them.
    pub records: Vec<RemoteRecord>,
    starts: Vec<(Ssh, PartSpec, Offset)>,
}

/// Checks every machine and computes every part; every problem found, each naming its machine, if any.
pub fn prepare(topology: &Topology, placement: &Placement) -> Result<Prepared, Vec<String>> {
    let checked = check_machines(placement)?;
    let mtus = placement
        .stretched_mtus(topology, &checked.underlay_mtus)
        .map_err(|e| vec![e])?;
    let tls = match topology.tls {
        true => Some(crate::tls::material(topology).map_err(|e| vec![e.to_string()])?),
        false => None,
    };
    let mut records = Vec::new();
    let mut starts = Vec::new();
    for machine in &placement.remote {
        let Some(ssh) = Ssh::to(machine) else { continue };
        let hosts = (topology.hosts.iter())
            .filter(|h| h.machine.as_ref() == Some(&machine.name))
            .map(|h| h.name.clone())
            .collect();
        let instance = crate::state::new_instance();
        records.push(RemoteRecord {
            ssh: ssh.clone(),
            instance: instance.clone(),
            hosts,
        });
        let spec = PartSpec {
            lab: topology.name.clone(),
            machine: machine.name.clone(),
            source: std::path::absolute(&topology.source).unwrap_or_else(|_| topology.source.clone()),
            topology: topology.text.clone(),
            impair_backend: topology.impair_backend,
            mtus: mtus.clone(),
            tls: tls.clone(),
            instance,
        };
        starts.push((ssh, spec, checked.offsets[&machine.name]));
    }
    Ok(Prepared {
        local: placement.part(topology, None, &mtus),
        tls,
        records,
        starts,
    })
}

impl Prepared {
    /// Starts every remote part at once; all of them, or none: when one fails (or `cancel` is set), the others
    /// are told to stop, and those already up are taken down again.
    pub fn start_parts(&mut self, events: &Arc<EventLog>, cancel: &Cancel) -> io::Result<Vec<RemotePart>> {
        let starts = std::mem::take(&mut self.starts);
        let stop = Cancel::default();
        let started = AtomicBool::new(false);
        let results: Vec<io::Result<RemotePart>> = std::thread::scope(|scope| {
            scope.spawn(|| {
                while !started.load(Ordering::SeqCst) {
                    if cancel.is_cancelled() {
                        stop.cancel();
                    }
                    std::thread::sleep(Duration::from_millis(100));
                }
            });
            let threads: Vec<_> = (starts.into_iter())
                .map(|(ssh, spec, offset)| {
                    let stop = &stop;
                    scope.spawn(move || {
                        let result = RemotePart::start(ssh, &spec, offset, events.clone(), stop);
                        if result.is_err() {
                            stop.cancel();
                        }
                        result
                    })
                })
                .collect();
            let results = (threads.into_iter())
                .map(|t| {
                    t.join()
                        .unwrap_or_else(|_| Err(io::Error::other("a part's start panicked")))
                })
                .collect();
            started.store(true, Ordering::SeqCst);
            results
        });
        let (up, failed): (Vec<_>, Vec<_>) = results.into_iter().partition(|r| r.is_ok());
        let up: Vec<RemotePart> = up.into_iter().filter_map(Result::ok).collect();
        if failed.is_empty() {
            return Ok(up);
        }
        take_down(up, DOWN_PATIENCE);
        // The parts that failed, not those stopped because of them.
        let errors: Vec<io::Error> = failed.into_iter().filter_map(Result::err).collect();
        let kind = match errors.iter().all(|e| e.kind() == io::ErrorKind::Interrupted) {
            true => io::ErrorKind::Interrupted,
            false => io::ErrorKind::Other,
        };
        let why: Vec<String> = (errors.iter())
            .filter(|e| kind == io::ErrorKind::Interrupted || e.kind() != io::ErrorKind::Interrupted)
            .map(|e| e.to_string())
            .collect();
        Err(io::Error::new(kind, why.join("; ")))
    }
}

const DOWN_PATIENCE: Duration = Duration::from_secs(120);

/// Takes parts down at once; what went wrong on each.
fn take_down(parts: Vec<RemotePart>, patience: Duration) -> Vec<io::Error> {
    std::thread::scope(|scope| {
        let threads: Vec<_> = (parts.into_iter())
            .map(|part| scope.spawn(move || part.down(patience)))
            .collect();
        (threads.into_iter())
            .filter_map(|t| {
                t.join()
                    .unwrap_or_else(|_| Err(io::Error::other("a part's teardown panicked")))
                    .err()
            })
            .collect()
    })
}

/// A spread lab's other parts, held by the coordinator's [`crate::Lab`].
pub struct Spread {
    /// The whole lab, as the coordinator validated it.
    pub topology: Topology,
    pub placement: Placement,
    pub parts: Vec<RemotePart>,
}

/// A fault as one part carries it out.
pub struct Routed {
    /// The part's machine (`None`: the coordinator's).
    pub machine: Option<String>,
    /// Its hosts (or, for an underlay fault, its machine).
    pub targets: Vec<String>,
    pub fault: Fault,
}

/// Where a host or machine lives, seen from the coordinator.
pub enum Location<'a> {
    Here,
    Remote(&'a RemotePart),
}

impl Location<'_> {
    /// The machine of a remote part, as [`Routed::machine`] names it.
    fn part_name(&self) -> Option<String> {
        match self {
            Location::Here => None,
            Location::Remote(part) => Some(part.machine().to_string()),
        }
    }
}

impl Spread {
    /// The part running `host` (which the whole topology has).
    pub fn host(&self, host: &str) -> io::Result<Location<'_>> {
        let Some(found) = self.topology.host(host) else {
            return Err(crate::plan::unknown_host(&self.topology.name, host));
        };
        self.machine(found.machine.as_deref())
    }

    /// The part of `machine` (`None`: the coordinator).
    fn machine(&self, machine: Option<&str>) -> io::Result<Location<'_>> {
        let Some(machine) = machine else {
            return Ok(Location::Here);
        };
        if self.placement.coordinator.as_ref().is_some_and(|c| c.name == machine) {
            return Ok(Location::Here);
        }
        (self.parts.iter())
            .find(|p| p.machine() == machine)
            .map(Location::Remote)
            .ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::NotFound,
                    format!("lab {} has no part on machine `{machine}`", self.topology.name),
                )
            })
    }

    /// Where a fault on `targets` goes: a cut both ways becomes each side's one-way half, and mending a machine
    /// mends the others' cuts toward it too. Other faults go to each host's part as they are.
    pub fn route(&self, targets: &[&str], fault: &Fault) -> io::Result<Vec<Routed>> {
        let mut routed = Vec::new();
        let machine_name = |name: &str| self.machine(Some(name)).map(|l| l.part_name());
        let routed_to = |machine, target: &str, fault| Routed {
            machine,
            targets: vec![target.to_string()],
            fault,
        };
        match fault {
            Fault::Cut { one_way, to } => {
                for target in targets {
                    let cut = Fault::Cut {
                        one_way: true,
                        to: to.clone(),
                    };
                    routed.push(routed_to(machine_name(target)?, target, cut));
                    if !one_way {
                        for peer in to {
                            let back = Fault::Cut {
                                one_way: true,
                                to: vec![target.to_string()],
                            };
                            routed.push(routed_to(machine_name(peer)?, peer, back));
                        }
                    }
                }
            }
            Fault::Mend { to } => {
                for target in targets {
                    routed.push(routed_to(machine_name(target)?, target, fault.clone()));
                    let peers: Vec<String> = match to.is_empty() {
                        true => self.peers_of(target),
                        false => to.clone(),
                    };
                    for peer in peers {
                        let back = Fault::Mend {
                            to: vec![target.to_string()],
                        };
                        routed.push(routed_to(machine_name(&peer)?, &peer, back));
                    }
                }
            }
            _ => {
                let mut by_part: BTreeMap<Option<String>, Vec<String>> = BTreeMap::new();
                for host in targets {
                    by_part
                        .entry(self.host(host)?.part_name())
                        .or_default()
                        .push(host.to_string());
                }
                if let Fault::Partition { from, .. } = fault {
                    let apart = by_part.len() > 1
                        || from.iter().any(|other| {
                            let at = self.host(other).ok().map(|l| l.part_name());
                            at.is_some_and(|at| !by_part.contains_key(&at))
                        });
                    if apart {
                        return Err(io::Error::new(
                            io::ErrorKind::InvalidInput,
                            "a partition between hosts on different machines: cut the underlay between their \
                             machines instead (`cut`)",
                        ));
                    }
                }
                for (machine, targets) in by_part {
                    routed.push(Routed {
                        machine,
                        targets,
                        fault: fault.clone(),
                    });
                }
            }
        }
        Ok(routed)
    }

    /// The machines sharing a stretched segment with `machine`.
    fn peers_of(&self, machine: &str) -> Vec<String> {
        let coordinator = self.placement.coordinator.as_ref().map(|c| c.name.clone());
        let name = |m: &Option<String>| m.clone().or_else(|| coordinator.clone());
        let mut peers: Vec<String> = (self.placement.stretched())
            .filter(|(_, on)| on.iter().any(|m| name(m).as_deref() == Some(machine)))
            .flat_map(|(_, on)| on.iter().filter_map(name))
            .filter(|m| m != machine)
            .collect();
        peers.sort();
        peers.dedup();
        peers
    }

    /// The part running on `machine` (`None`: the coordinator's, which the caller handles).
    pub fn part(&self, machine: &Option<String>) -> Option<&RemotePart> {
        let machine = machine.as_deref()?;
        self.parts.iter().find(|p| p.machine() == machine)
    }

    /// Takes every remote part down at once.
    pub fn down(self, patience: Duration) -> io::Result<()> {
        let failed = take_down(self.parts, patience);
        match failed.is_empty() {
            true => Ok(()),
            false => Err(io::Error::other(
                failed.iter().map(|e| e.to_string()).collect::<Vec<_>>().join("; "),
            )),
        }
    }
}
