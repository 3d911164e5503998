//! A lab spread over several machines. The coordinator (the machine `lab up` runs on) validates the whole
//! topology, checks every machine, and builds each machine's part there; a segment with hosts on several machines
//! is stretched: its bridge on each machine gets a kernel VXLAN port, one VNI per segment, flooding to every other
//! machine with the segment (head-end replication through all-zero FDB entries).
//!
//! - this file: where each host runs, and the part of the topology each machine builds;
//! - `ssh`: running `lab` on a machine;
//! - `report`: what a machine says about itself (version, kernel features, underlay), and the coordinator's verdict;
//! - `clock`: the NTP method, sans-IO: a machine's clock offset and its uncertainty from round trips;
//! - `remote`: a part running on another machine, driven over one SSH session that streams its events.

pub mod clock;
pub mod remote;
pub mod report;
pub mod spread;
pub mod ssh;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::topology::{Machine, Stretch, Topology};

/// VXLAN adds 50 bytes to each frame over IPv4 (outer Ethernet 14, IPv4 20, UDP 8, VXLAN 8).
pub const VXLAN_OVERHEAD: u32 = 50;

/// Where each host of a topology runs.
#[derive(Debug, Clone)]
pub struct Placement {
    /// The machines with hosts, other than the coordinator, in topology order of first use.
    pub remote: Vec<Machine>,
    /// The coordinator's entry in `[machines]`, if it has one.
    pub coordinator: Option<Machine>,
    /// For each segment, the machines with hosts on it (`None`: the coordinator).
    segments: BTreeMap<String, BTreeSet<Option<String>>>,
}

impl Placement {
    pub fn of(topology: &Topology) -> Placement {
        let mut remote: Vec<Machine> = Vec::new();
        let mut segments: BTreeMap<String, BTreeSet<Option<String>>> = BTreeMap::new();
        for host in &topology.hosts {
            if let Some(name) = &host.machine {
                if !remote.iter().any(|m| &m.name == name) {
                    let machine = topology.machines.iter().find(|m| &m.name == name);
                    remote.extend(machine.cloned());
                }
            }
            for interface in &host.interfaces {
                let on = segments.entry(interface.segment.clone()).or_default();
                on.insert(host.machine.clone());
            }
        }
        let coordinator = topology.machines.iter().find(|m| m.ssh.is_none()).cloned();
        Placement {
            remote,
            coordinator,
            segments,
        }
    }

    /// Whether any host runs on another machine than the coordinator.
    pub fn is_spread(&self) -> bool {
        !self.remote.is_empty()
    }

    /// The segments with hosts on more than one machine.
    pub fn stretched(&self) -> impl Iterator<Item = (&str, &BTreeSet<Option<String>>)> {
        self.segments
            .iter()
            .filter(|(_, on)| on.len() > 1)
            .map(|(segment, on)| (segment.as_str(), on))
    }

    fn machine(&self, name: &Option<String>) -> Option<&Machine> {
        match name {
            None => self.coordinator.as_ref(),
            Some(name) => self.remote.iter().find(|m| &m.name == name),
        }
    }

    /// The part of `topology` that `machine` (`None`: the coordinator) builds: its hosts, the segments they use
    /// (stretched ones with their tunnel, and the MTU `mtus` gives them), and every other host's names in /etc/hosts.
    pub fn part(&self, topology: &Topology, machine: Option<&str>, mtus: &BTreeMap<String, u32>) -> Topology {
        let here = machine.map(str::to_string);
        let mut part = topology.clone();
        let (hosts, elsewhere): (Vec<_>, Vec<_>) = part.hosts.into_iter().partition(|h| h.machine == here);
        for (address, names) in elsewhere.iter().flat_map(|h| h.etc_entries()) {
            part.names.extend(names.into_iter().map(|name| (name, address)));
        }
        part.hosts = hosts;
        let used: BTreeSet<&str> = part
            .hosts
            .iter()
            .flat_map(|h| h.interfaces.iter().map(|i| i.segment.as_str()))
            .collect();
        let local = self.machine(&here).map(|m| m.underlay);
        part.segments = (topology.segments.iter())
            .filter(|s| used.contains(s.name.as_str()))
            .cloned()
            .map(|mut segment| {
                let on = &self.segments[&segment.name];
                if let (true, Some(local)) = (on.len() > 1, local) {
                    let peers = (on.iter())
                        .filter(|m| **m != here)
                        .filter_map(|m| self.machine(m))
                        .map(|m| (m.name.clone(), m.underlay))
                        .collect();
                    segment.stretch = Some(Stretch {
                        vni: vni(&topology.name, &segment.name),
                        port: topology.vxlan_port,
                        local,
                        peers,
                    });
                    segment.mtu = mtus.get(&segment.name).copied().or(segment.mtu);
                }
                segment
            })
            .collect();
        part.machine = here.or_else(|| self.coordinator.as_ref().map(|m| m.name.clone()));
        part
    }

    /// The MTU of each stretched segment: what its tunnel leaves of the smallest underlay MTU among its machines
    /// (`underlay_mtus`, by machine; `None` for the coordinator), or the segment's own if that is smaller.
    pub fn stretched_mtus(
        &self,
        topology: &Topology,
        underlay_mtus: &BTreeMap<Option<String>, u32>,
    ) -> Result<BTreeMap<String, u32>, String> {
        let mut mtus = BTreeMap::new();
        for (segment, on) in self.stretched() {
            let smallest = on
                .iter()
                .filter_map(|m| underlay_mtus.get(m))
                .min()
                .copied()
                .unwrap_or(1500);
            let room = smallest.saturating_sub(VXLAN_OVERHEAD);
            let asked = topology.segment(segment).and_then(|s| s.mtu);
            match asked {
                Some(asked) if asked > room => {
                    return Err(format!(
                        "segment `{segment}` asks for MTU {asked}, but its VXLAN tunnel leaves {room} of the \
                         underlay's {smallest}: lower the segment's mtu, or raise the underlay's"
                    ))
                }
                Some(asked) => mtus.insert(segment.to_string(), asked),
                None => mtus.insert(segment.to_string(), room),
            };
        }
        Ok(mtus)
    }
}

/// A segment's VNI: the same on every machine, and different between labs sharing machines and a UDP port (the
/// kernel refuses a second device with a VNI a socket already has). FNV-1a of `lab/segment`, in 24 bits, never 0.
pub fn vni(lab: &str, segment: &str) -> u32 {
    let mut hash: u32 = 0x811c_9dc5;
    for byte in lab.bytes().chain([b'/']).chain(segment.bytes()) {
        hash = (hash ^ u32::from(byte)).wrapping_mul(0x0100_0193);
    }
    (hash & 0x00ff_ffff).max(1)
}

/// What the coordinator sends a machine to build its part: the topology's text (parsed and validated there again,
/// by the same version of `lab`), and what only the coordinator knows.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PartSpec {
    /// The lab's name (the file's, or the one `lab up --name` gave).
    pub lab: String,
    pub machine: String,
    /// The topology file's path on the coordinator: `{dir}` is its directory, which must hold the same files on
    /// every machine.
    pub source: PathBuf,
    pub topology: String,
    pub impair_backend: crate::impair::BackendChoice,
    /// Each stretched segment's MTU.
    pub mtus: BTreeMap<String, u32>,
    /// The lab's TLS material, made once on the coordinator so every machine trusts one CA.
    pub tls: Option<crate::tls::Material>,
    /// The part's instance id, chosen (and recorded) by the coordinator before the part is built, so that its
    /// `lab down --instance` there can never take down another lab of the same name.
    pub instance: String,
}

impl PartSpec {
    /// The part this spec describes, checked again here.
    pub fn part(&self) -> Result<Topology, crate::topology::TopologyError> {
        let mut topology = Topology::parse(&self.topology, &self.source)?.renamed(&self.lab)?;
        topology.impair_backend = self.impair_backend;
        Ok(Placement::of(&topology).part(&topology, Some(&self.machine), &self.mtus))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SPREAD: &str = r#"
name = "spread"
[[segments]]
name = "lan"
subnet = "10.0.0.0/24"
[[segments]]
name = "back"
subnet = "10.1.0.0/24"
[machines.here]
underlay = "192.0.2.10"
[machines.m1]
ssh = "root@192.0.2.1"
underlay = "192.0.2.1"
[machines.m2]
ssh = "m2"
underlay = "192.0.2.2"
[[hosts]]
name = "a"
interfaces = [{ segment = "lan", address = "10.0.0.2/24" }]
[[hosts]]
name = "b"
machine = "m1"
interfaces = [{ segment = "lan", address = "10.0.0.3/24" }, { segment = "back", address = "10.1.0.3/24" }]
[[hosts]]
name = "c"
machine = "m1"
interfaces = [{ segment = "back", address = "10.1.0.4/24" }]
[[hosts]]
name = "d"
machine = "m2"
interfaces = [{ segment = "lan", address = "10.0.0.5/24" }]
"#;

    #[test]
    fn each_machine_builds_its_hosts_and_tunnels_its_stretched_segments() {
        let topology = Topology::parse(SPREAD, "spread.toml").unwrap();
        let placement = Placement::of(&topology);
        assert!(placement.is_spread());
        let remote: Vec<&str> = placement.remote.iter().map(|m| m.name.as_str()).collect();
        assert_eq!(remote, ["m1", "m2"]);
        let mtus = placement
            .stretched_mtus(&topology, &BTreeMap::from([(None, 1500), (Some("m1".into()), 9000)]))
            .unwrap();
        // lan spans here, m1 and m2 (m2's MTU unknown: 1500); back is m1's alone.
        assert_eq!(mtus, BTreeMap::from([("lan".to_string(), 1450)]));

        let m1 = placement.part(&topology, Some("m1"), &mtus);
        let hosts: Vec<&str> = m1.hosts.iter().map(|h| h.name.as_str()).collect();
        assert_eq!(hosts, ["b", "c"]);
        assert_eq!(m1.machine.as_deref(), Some("m1"));
        let lan = m1.segment("lan").unwrap();
        let stretch = lan.stretch.as_ref().unwrap();
        assert_eq!(stretch.local, "192.0.2.1".parse::<std::net::Ipv4Addr>().unwrap());
        let peers: Vec<&str> = stretch.peers.iter().map(|(m, _)| m.as_str()).collect();
        assert_eq!(peers, ["here", "m2"]);
        assert_eq!(stretch.vni, vni("spread", "lan"));
        assert_eq!(lan.mtu, Some(1450));
        assert!(m1.segment("back").unwrap().stretch.is_none());
        // The other machines' hosts are still names in /etc/hosts.
        assert!(m1.etc_hosts().contains("10.0.0.2\ta"), "{}", m1.etc_hosts());

        let here = placement.part(&topology, None, &mtus);
        let hosts: Vec<&str> = here.hosts.iter().map(|h| h.name.as_str()).collect();
        assert_eq!(hosts, ["a"]);
        assert!(here.segment("back").is_none());
        assert_eq!(here.machine.as_deref(), Some("here"));
    }

    #[test]
    fn a_segment_asking_more_than_its_tunnel_leaves_is_refused() {
        let text = SPREAD.replace("subnet = \"10.0.0.0/24\"", "subnet = \"10.0.0.0/24\"\nmtu = 1500");
        let topology = Topology::parse(&text, "spread.toml").unwrap();
        let error = Placement::of(&topology)
            .stretched_mtus(&topology, &BTreeMap::new())
            .unwrap_err();
        assert!(
            error.contains("asks for MTU 1500") && error.contains("leaves 1450"),
            "{error}"
        );
    }

    #[test]
    fn the_vni_is_the_lab_and_segment_s_own() {
        assert_eq!(vni("vlan", "vlan"), vni("vlan", "vlan"));
        assert_ne!(vni("vlan", "vlan"), vni("vlan2", "vlan"));
        assert_ne!(vni("vlan", "vlan"), vni("vlan", "outside"));
        assert!(vni("a", "b") < 1 << 24);
    }
}
