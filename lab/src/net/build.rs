//! Turns a validated topology into kernel objects: namespaces, bridges, veth pairs, addresses, routes, sysctls and
//! firewall rules. Nothing here touches the root namespace: bridges live in the lab's switch namespace, and each
//! veth is created there with its peer placed directly in the host's namespace.

use std::fs::File;
use std::io;
use std::net::Ipv4Addr;
use std::os::fd::AsRawFd;

use rtnetlink::packet_route::link::{InfoData, InfoVeth};
use rtnetlink::packet_route::RouteNetlinkMessage;
use rtnetlink::{AddressMessageBuilder, LinkBridge, LinkMessageBuilder, LinkUnspec, LinkVeth, RouteMessageBuilder};

use super::netlink::{Netlink, Request};
use super::{firewall, netns};
use crate::topology::{switch_port_name, Topology, SWITCH_HOST};

/// Interface indexes are chosen rather than discovered: in a fresh namespace loopback is 1, so the bridges and
/// interfaces can be numbered from 2 and later requests refer to them without a lookup.
const FIRST_INDEX: u32 = 2;

/// Every namespace the topology needs, the switch first.
pub fn namespaces(topology: &Topology) -> Vec<String> {
    std::iter::once(topology.netns_name(SWITCH_HOST))
        .chain(topology.hosts.iter().map(|h| topology.netns_name(&h.name)))
        .collect()
}

/// Builds the topology. On error, whatever was created is still named by [`namespaces`], which is what teardown
/// removes.
pub fn build(topology: &Topology) -> io::Result<()> {
    netns::prepare_dir()?;
    let names = namespaces(topology);
    if let Some(taken) = names.iter().find(|n| netns::exists(n)) {
        return Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            format!(
                "namespace {taken} already exists: is lab `{}` already up? (`lab down {}`)",
                topology.name, topology.name
            ),
        ));
    }
    parallel(&names, |creator, name| creator.create(name, isolate_from_ipv6))?;
    // nft takes a while to start; it only needs the namespaces, so it runs while the links are built.
    let firewalls = firewall::start(topology)?;
    wire_switch(topology)?;
    let hosts: Vec<&str> = topology.hosts.iter().map(|h| h.name.as_str()).collect();
    parallel(&hosts, |creator, host| {
        creator.enter(&topology.netns_name(host), || configure_host(topology, host))
    })?;
    firewalls.finish()
}

/// Runs `work` for every item on a few plain threads that may enter namespaces.
fn parallel<T: Sync>(items: &[T], work: impl Fn(&netns::Creator, &T) -> io::Result<()> + Sync) -> io::Result<()> {
    let threads = std::thread::available_parallelism()
        .map_or(2, |n| n.get())
        .min(items.len())
        .max(1);
    let chunk = items.len().div_ceil(threads).max(1);
    std::thread::scope(|scope| {
        let workers: Vec<_> = items
            .chunks(chunk)
            .map(|chunk| {
                let work = &work;
                scope.spawn(move || -> io::Result<()> {
                    let creator = netns::Creator::on_this_thread()?;
                    chunk.iter().try_for_each(|item| work(&creator, item))
                })
            })
            .collect();
        workers
            .into_iter()
            .try_for_each(|w| w.join().map_err(|_| io::Error::other("build thread panicked"))?)
    })
}

/// IPv6 is off in lab namespaces: the topology is IPv4, and duplicate address detection alone costs >1 s per link.
fn isolate_from_ipv6() -> io::Result<()> {
    for key in ["net.ipv6.conf.all.disable_ipv6", "net.ipv6.conf.default.disable_ipv6"] {
        match netns::write_sysctl(key, "1") {
            // A kernel booted without IPv6 has no such keys, which is just as good.
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            other => other?,
        }
    }
    Ok(())
}

/// Bridges, and one veth per host interface with its switch end enslaved and up and its host end already in the
/// host's namespace, named and with its MAC if one is asked for. A veth cannot be brought up by the request that
/// creates it (the kernel answers ENOTCONN: its peer is not attached yet), so each end goes up in a request of its
/// own; the host end in `configure_host`.
fn wire_switch(topology: &Topology) -> io::Result<()> {
    let switch = topology.netns_name(SWITCH_HOST);
    let mut requests = vec![Request::new(format!("loopback up in {switch}"), set_up(1))];
    for (i, segment) in topology.segments.iter().enumerate() {
        let mut bridge = LinkBridge::new(&segment.name);
        if let Some(vid) = segment.vlan {
            bridge = bridge.vlan_filtering(true).vlan_default_pvid(vid);
        }
        let mut bridge = bridge.index(FIRST_INDEX + i as u32).up();
        if let Some(mtu) = segment.mtu {
            bridge = bridge.mtu(mtu);
        }
        requests.push(Request::new(
            format!("create bridge {} in {switch}", segment.name),
            RouteNetlinkMessage::NewLink(bridge.build()),
        ));
    }
    // The host namespaces stay open until every request has been sent.
    let mut host_namespaces = Vec::new();
    let mut port_index = FIRST_INDEX + topology.segments.len() as u32;
    for host in &topology.hosts {
        let ns_name = topology.netns_name(&host.name);
        let ns = File::open(netns::path(&ns_name))?;
        for (n, iface) in host.interfaces.iter().enumerate() {
            let bridge_index =
                FIRST_INDEX + topology.segments.iter().position(|s| s.name == iface.segment).unwrap() as u32;
            let mtu = topology.segment(&iface.segment).and_then(|s| s.mtu);
            let mut peer = LinkMessageBuilder::<LinkUnspec>::new()
                .name(iface.name.clone())
                .index(FIRST_INDEX + n as u32)
                .setns_by_fd(ns.as_raw_fd());
            if let Some(mac) = iface.mac {
                peer = peer.address(mac.to_vec());
            }
            if let Some(mtu) = mtu {
                peer = peer.mtu(mtu);
            }
            let port = switch_port_name(&host.name, n);
            let mut veth = LinkVeth::new(&port, &iface.name)
                .set_info_data(InfoData::Veth(InfoVeth::Peer(peer.build())))
                .index(port_index)
                .controller(bridge_index);
            if let Some(mtu) = mtu {
                veth = veth.mtu(mtu);
            }
            requests.push(Request::new(
                format!("create veth {port} (in {switch}) <-> {} (in {ns_name})", iface.name),
                RouteNetlinkMessage::NewLink(veth.build()),
            ));
            requests.push(Request::new(format!("{port} up in {switch}"), set_up(port_index)));
            port_index += 1;
        }
        host_namespaces.push(ns);
    }
    netns::run_in(&switch, move || {
        let result = Netlink::open()?.apply(requests);
        drop(host_namespaces);
        result
    })
    .map_err(|e| vlan_hint(topology, e))
}

/// Loopback up, addresses, routes and sysctls, from a thread inside the host's namespace.
fn configure_host(topology: &Topology, host: &str) -> io::Result<()> {
    let host = topology.host(host).expect("validated host");
    let ns = topology.netns_name(&host.name);
    let mut requests = vec![Request::new(format!("loopback up in {ns}"), set_up(1))];
    for (n, iface) in host.interfaces.iter().enumerate() {
        requests.push(Request::new(
            format!("{} up in {ns}", iface.name),
            set_up(FIRST_INDEX + n as u32),
        ));
        let address = AddressMessageBuilder::<Ipv4Addr>::new()
            .index(FIRST_INDEX + n as u32)
            .address(iface.address, iface.prefix)
            .build();
        requests.push(Request::new(
            format!("add {}/{} to {} in {ns}", iface.address, iface.prefix, iface.name),
            RouteNetlinkMessage::NewAddress(address),
        ));
    }
    requests.extend(route_requests(topology, &host.name));
    Netlink::open()?.apply(requests)?;
    for (key, value) in &host.sysctls {
        netns::write_sysctl(key, value).map_err(|e| io::Error::new(e.kind(), format!("{e} (host {})", host.name)))?;
    }
    Ok(())
}

/// The index of a host's n-th interface inside its namespace.
pub fn interface_index(n: usize) -> u32 {
    FIRST_INDEX + n as u32
}

/// The routes the topology gives `host`: what comes back when its links do (the kernel drops a route whose link
/// goes down).
pub fn route_requests(topology: &Topology, host: &str) -> Vec<Request> {
    let host = topology.host(host).expect("validated host");
    let ns = topology.netns_name(&host.name);
    let mut requests = Vec::new();
    for route in &host.routes {
        let mut builder = RouteMessageBuilder::<Ipv4Addr>::new().gateway(route.via);
        if let Some(to) = route.to {
            builder = builder.destination_prefix(to.network(), to.prefix);
        }
        let what = match route.to {
            Some(to) => format!("route {to} via {} in {ns}", route.via),
            None => format!("default route via {} in {ns}", route.via),
        };
        requests.push(Request::new(what, RouteNetlinkMessage::NewRoute(builder.build())));
    }
    requests
}

pub fn set_up(index: u32) -> RouteNetlinkMessage {
    RouteNetlinkMessage::SetLink(LinkUnspec::new_with_index(index).up().build())
}

pub fn set_down(index: u32) -> RouteNetlinkMessage {
    RouteNetlinkMessage::SetLink(LinkUnspec::new_with_index(index).down().build())
}

/// 802.1Q tagging is done by the switch's bridges (vlan filtering, the segment's id as default PVID). A kernel built
/// without bridge vlan filtering rejects the bridge; this turns that refusal into a plain explanation.
fn vlan_unsupported(topology: &Topology) -> io::Error {
    let segments: Vec<String> = topology
        .segments
        .iter()
        .filter_map(|s| s.vlan.map(|v| format!("`{}` (vlan {v})", s.name)))
        .collect();
    io::Error::new(
        io::ErrorKind::Unsupported,
        format!(
            "{}: segment {} asks for 802.1Q tagging, but this kernel has no bridge vlan filtering \
             (CONFIG_BRIDGE_VLAN_FILTERING); remove `vlan` from the segment or run on a kernel that has it",
            topology.source.display(),
            segments.join(", ")
        ),
    )
}

fn vlan_hint(topology: &Topology, error: io::Error) -> io::Error {
    let text = error.to_string();
    let vlan_bridge_failed = topology
        .segments
        .iter()
        .any(|s| s.vlan.is_some() && text.starts_with(&format!("create bridge {} ", s.name)));
    if vlan_bridge_failed {
        let unsupported = vlan_unsupported(topology);
        return io::Error::new(unsupported.kind(), format!("{unsupported} (the kernel said: {error})"));
    }
    error
}
