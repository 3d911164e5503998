//! What a lab will create, computed once from its validated topology: every namespace, path, switch port and
//! interface index. Building, the state file, faults, observers and the command line read names from here instead
//! of deriving them again.

use std::path::PathBuf;

use crate::hostfs::{MachineLayout, View};
use crate::names::{self, EtcPaths, HostFsPaths, LabPaths, NameError, NamespacePaths, SWITCH_HOST};
use crate::topology::Topology;

/// Interface indexes are chosen rather than discovered: in a fresh namespace loopback is 1, so the bridges and
/// interfaces can be numbered from 2 and later requests refer to them without a lookup.
pub const FIRST_INDEX: u32 = 2;

#[derive(Debug, Clone)]
pub struct Plan {
    pub paths: LabPaths,
    /// The topology file's directory, resolved: what `{dir}` stands for.
    pub topology_dir: PathBuf,
    /// The namespace holding every bridge.
    pub switch: NamespacePaths,
    pub segments: Vec<SegmentPlan>,
    /// In topology order.
    pub hosts: Vec<HostPlan>,
}

#[derive(Debug, Clone)]
pub struct SegmentPlan {
    /// Also the bridge's name in the switch namespace.
    pub name: String,
    pub bridge_index: u32,
    /// The bridge's port to other machines, for a segment stretched over them.
    pub vxlan: Option<VxlanPlan>,
}

#[derive(Debug, Clone)]
pub struct VxlanPlan {
    pub name: String,
    /// Its index in the switch namespace.
    pub index: u32,
    pub stretch: crate::topology::Stretch,
}

#[derive(Debug, Clone)]
pub struct HostPlan {
    pub name: String,
    pub namespace: NamespacePaths,
    pub etc: EtcPaths,
    /// Its own filesystem, and what its processes see of it.
    pub fs: HostFsPaths,
    pub view: View,
    pub interfaces: Vec<InterfacePlan>,
    pub services: Vec<ServicePlan>,
}

#[derive(Debug, Clone)]
pub struct InterfacePlan {
    pub name: String,
    pub segment: String,
    /// Its index inside the host's namespace.
    pub index: u32,
    /// The veth end in the switch namespace, enslaved to the segment's bridge.
    pub switch_port: String,
    pub switch_port_index: u32,
    pub bridge_index: u32,
    /// The relay's veth pair, made when the userspace impairment backend takes the link: the port that joins the
    /// bridge in the switch port's place, and the relay's own end.
    pub relay_port: String,
    pub relay_port_index: u32,
    pub relay_end: String,
    pub relay_end_index: u32,
    /// netem's ifb for frames from the host, made when the kernel backend first impairs that direction.
    pub ifb: String,
    pub ifb_index: u32,
}

#[derive(Debug, Clone)]
pub struct ServicePlan {
    pub name: String,
    pub log: PathBuf,
}

impl Plan {
    /// The plan of `topology`; fails only if its lab or host names are not valid names (a topology that passed
    /// validation always has valid ones, but a plan never trusts that).
    pub fn new(topology: &Topology) -> Result<Plan, NameError> {
        let paths = LabPaths::new(&topology.name)?;
        let segments: Vec<SegmentPlan> = topology
            .segments
            .iter()
            .enumerate()
            .map(|(i, s)| SegmentPlan {
                name: s.name.clone(),
                bridge_index: FIRST_INDEX + i as u32,
                vxlan: None,
            })
            .collect();
        let mut next_port_index = FIRST_INDEX + segments.len() as u32;
        let topology_dir = topology.directory();
        let machine = MachineLayout::read(&topology_dir);
        let mut hosts = Vec::with_capacity(topology.hosts.len());
        for host in &topology.hosts {
            names::check_host(&host.name)?;
            let interfaces = host
                .interfaces
                .iter()
                .enumerate()
                .map(|(n, interface)| {
                    let bridge_index = segments
                        .iter()
                        .find(|s| s.name == interface.segment)
                        .map_or(0, |s| s.bridge_index);
                    // Each interface numbers four links in the switch namespace: its port, and the three an
                    // impairment backend may add.
                    next_port_index += 4;
                    let [relay_port, relay_end, ifb] = names::impairment_names(&host.name, n);
                    InterfacePlan {
                        name: interface.name.clone(),
                        segment: interface.segment.clone(),
                        index: interface_index(n),
                        switch_port: names::switch_port_name(&host.name, n),
                        switch_port_index: next_port_index - 4,
                        bridge_index,
                        relay_port,
                        relay_port_index: next_port_index - 3,
                        relay_end,
                        relay_end_index: next_port_index - 2,
                        ifb,
                        ifb_index: next_port_index - 1,
                    }
                })
                .collect();
            let services = host
                .services
                .iter()
                .map(|s| ServicePlan {
                    name: s.name.clone(),
                    log: paths.service_log(&host.name, &s.name),
                })
                .collect();
            let (etc, fs) = (paths.etc(&host.name), paths.host_fs(&host.name));
            hosts.push(HostPlan {
                name: host.name.clone(),
                namespace: paths.namespace(&host.name),
                view: View::of(host, &fs, &paths, &etc, &machine),
                etc,
                fs,
                interfaces,
                services,
            });
        }
        let mut segments = segments;
        for ((n, segment), segment_plan) in topology.segments.iter().enumerate().zip(&mut segments) {
            segment_plan.vxlan = segment.stretch.clone().map(|stretch| {
                next_port_index += 1;
                VxlanPlan {
                    name: names::vxlan_port_name(n),
                    index: next_port_index - 1,
                    stretch,
                }
            });
        }
        Ok(Plan {
            switch: paths.namespace(SWITCH_HOST),
            topology_dir,
            paths,
            segments,
            hosts,
        })
    }

    pub fn lab(&self) -> &str {
        self.paths.lab()
    }

    pub fn host(&self, name: &str) -> Option<&HostPlan> {
        self.hosts.iter().find(|h| h.name == name)
    }

    /// The host, or an error that says the lab has no such host.
    pub fn host_or_error(&self, name: &str) -> std::io::Result<&HostPlan> {
        self.host(name).ok_or_else(|| unknown_host(self.lab(), name))
    }

    /// Every namespace, the switch first.
    pub fn namespaces(&self) -> impl Iterator<Item = &NamespacePaths> {
        std::iter::once(&self.switch).chain(self.hosts.iter().map(|h| &h.namespace))
    }
}

/// The index of a host's n-th interface inside its namespace.
pub fn interface_index(n: usize) -> u32 {
    FIRST_INDEX + n as u32
}

pub fn unknown_host(lab: &str, host: &str) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::NotFound, format!("lab {lab} has no host `{host}`"))
}
