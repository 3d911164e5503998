//! Turns a validated topology into kernel objects: namespaces, bridges, veth pairs, addresses, routes, sysctls and
//! firewall rules. Nothing here touches the root namespace: bridges live in the lab's switch namespace, and each
//! veth is created there with its peer placed directly in the host's namespace. The one exception is a stretched
//! segment's VXLAN port: it is created directly in the switch namespace too, but its UDP socket (how its frames
//! reach other machines) is bound in the machine's own namespace, on the underlay address.

use std::collections::BTreeMap;
use std::fs::File;
use std::io;
use std::net::Ipv4Addr;
use std::os::fd::AsRawFd;

use rtnetlink::packet_route::link::{InfoData, InfoVeth};
use rtnetlink::packet_route::RouteNetlinkMessage;
use rtnetlink::{AddressMessageBuilder, LinkBridge, LinkMessageBuilder, LinkUnspec, LinkVeth, RouteMessageBuilder};

use super::netlink::{Netlink, Request};
use super::{firewall, netns};
use crate::plan::{HostPlan, Plan};
use crate::state::Identity;
use crate::topology::Topology;

/// Fails, before anything is created, if a /run/netns or /etc/netns name the plan needs is taken.
pub fn check_names_free(plan: &Plan) -> io::Result<()> {
    for namespace in plan.namespaces() {
        if std::fs::symlink_metadata(&namespace.link).is_ok() {
            return Err(netns::collision(namespace));
        }
    }
    for host in &plan.hosts {
        if std::fs::symlink_metadata(&host.etc.dir).is_ok() {
            return Err(etc_collision(&host.etc.dir));
        }
    }
    Ok(())
}

pub fn etc_collision(link: &std::path::Path) -> io::Error {
    io::Error::new(
        io::ErrorKind::AlreadyExists,
        format!(
            "{} already exists and was not made by this lab (`ip netns exec` reads it; another tool or another lab \
             whose name and host names overlap made it); it is left alone: remove it yourself or choose another lab \
             name (--name)",
            link.display()
        ),
    )
}

/// Builds the topology; `cancelled` is asked between steps. Returns the identity of every namespace created, by
/// host (the switch as `switch`). On error, whatever was created is inside the lab's run directory or points into
/// it, which is what teardown removes.
pub fn build(
    topology: &Topology,
    plan: &Plan,
    cancelled: &(dyn Fn() -> bool + Sync),
) -> io::Result<BTreeMap<String, Identity>> {
    check_names_free(plan)?;
    std::fs::create_dir_all(crate::names::NETNS_DIR)?;
    let namespaces: Vec<_> = plan.namespaces().collect();
    parallel(&namespaces, |creator, namespace| {
        if cancelled() {
            return Err(interrupted());
        }
        creator.create(namespace, isolate_from_ipv6)
    })?;
    let identities = namespaces
        .iter()
        .map(|n| {
            netns::identity(&n.mount)
                .map(|id| (n.host.clone(), id))
                .ok_or_else(|| io::Error::other(format!("{n} vanished while the lab was being built")))
        })
        .collect::<io::Result<_>>()?;
    if cancelled() {
        return Err(interrupted());
    }
    // nft takes a while to start; it only needs the namespaces, so it runs while the links are built.
    let firewalls = firewall::start(topology, plan)?;
    wire_switch(topology, plan)?;
    wire_tunnels(topology, plan)?;
    let hosts: Vec<(&crate::topology::Host, &HostPlan)> = topology.hosts.iter().zip(&plan.hosts).collect();
    parallel(&hosts, |creator, (host, host_plan)| {
        creator.enter(&host_plan.namespace.mount, || configure_host(host, host_plan))
    })?;
    firewalls.finish()?;
    Ok(identities)
}

/// The error of a build stopped by its caller (Ctrl-C).
pub fn interrupted() -> io::Error {
    io::Error::new(io::ErrorKind::Interrupted, "interrupted")
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
fn wire_switch(topology: &Topology, plan: &Plan) -> io::Result<()> {
    let switch = &plan.switch.name;
    let mut requests = vec![Request::new(format!("loopback up in {switch}"), set_up(1))];
    for (segment, segment_plan) in topology.segments.iter().zip(&plan.segments) {
        let mut bridge = LinkBridge::new(&segment.name);
        if let Some(vid) = segment.vlan {
            bridge = bridge.vlan_filtering(true).vlan_default_pvid(vid);
        }
        let mut bridge = bridge.index(segment_plan.bridge_index).up();
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
    for (host, host_plan) in topology.hosts.iter().zip(&plan.hosts) {
        let ns_name = &host_plan.namespace.name;
        let ns = File::open(&host_plan.namespace.mount)?;
        for (iface, port) in host.interfaces.iter().zip(&host_plan.interfaces) {
            let mtu = topology.segment(&iface.segment).and_then(|s| s.mtu);
            let mut peer = LinkMessageBuilder::<LinkUnspec>::new()
                .name(iface.name.clone())
                .index(port.index)
                .setns_by_fd(ns.as_raw_fd());
            if let Some(mac) = iface.mac {
                peer = peer.address(mac.to_vec());
            }
            if let Some(mtu) = mtu {
                peer = peer.mtu(mtu);
            }
            let mut veth = LinkVeth::new(&port.switch_port, &iface.name)
                .set_info_data(InfoData::Veth(InfoVeth::Peer(peer.build())))
                .index(port.switch_port_index)
                .controller(port.bridge_index);
            if let Some(mtu) = mtu {
                veth = veth.mtu(mtu);
            }
            requests.push(Request::new(
                format!(
                    "create veth {} (in {switch}) <-> {} (in {ns_name})",
                    port.switch_port, iface.name
                ),
                RouteNetlinkMessage::NewLink(veth.build()),
            ));
            requests.push(Request::new(
                format!("{} up in {switch}", port.switch_port),
                set_up(port.switch_port_index),
            ));
        }
        host_namespaces.push(ns);
    }
    netns::run_in(&plan.switch.mount, move || {
        let result = Netlink::open()?.apply(requests);
        drop(host_namespaces);
        result
    })
    .map_err(|e| vlan_hint(topology, e))
}

/// Each stretched segment's VXLAN port: created from this thread (in the machine's namespace, where its socket
/// stays) straight into the switch namespace, then enslaved to the segment's bridge and up, flooding to every other
/// machine with the segment. It learns no addresses: every frame for another machine goes to all of them (each
/// machine's bridge drops what is not for its hosts), so stopping the frames to one machine is removing its flood
/// entry (`Fault::Cut`).
fn wire_tunnels(topology: &Topology, plan: &Plan) -> io::Result<()> {
    let tunnels: Vec<_> = (topology.segments.iter().zip(&plan.segments))
        .filter_map(|(segment, segment_plan)| Some((segment, segment_plan, segment_plan.vxlan.as_ref()?)))
        .collect();
    if tunnels.is_empty() {
        return Ok(());
    }
    let switch = &plan.switch.name;
    let switch_ns = File::open(&plan.switch.mount)?;
    let mut create = Vec::new();
    let mut enslave = Vec::new();
    for (segment, segment_plan, vxlan) in &tunnels {
        let stretch = &vxlan.stretch;
        let mut link = rtnetlink::LinkVxlan::new(&vxlan.name, stretch.vni)
            .port(stretch.port)
            .local(stretch.local)
            .learning(false)
            .index(vxlan.index)
            .setns_by_fd(switch_ns.as_raw_fd());
        if let Some(mtu) = segment.mtu {
            link = link.mtu(mtu);
        }
        create.push(Request::new(
            format!(
                "create VXLAN {} (VNI {}, UDP {} on {}) in {switch}",
                vxlan.name, stretch.vni, stretch.port, stretch.local
            ),
            RouteNetlinkMessage::NewLink(link.build()),
        ));
        let up = LinkUnspec::new_with_index(vxlan.index)
            .controller(segment_plan.bridge_index)
            .up()
            .build();
        enslave.push(Request::new(
            format!("{} into bridge {} in {switch}", vxlan.name, segment.name),
            RouteNetlinkMessage::SetLink(up),
        ));
    }
    Netlink::open()?.apply(create)?;
    netns::run_in(&plan.switch.mount, move || Netlink::open()?.apply(enslave))?;
    let switch_command = crate::process::HostCommand::new(&plan.switch.mount)?;
    for (_, _, vxlan) in &tunnels {
        for (_, peer) in &vxlan.stretch.peers {
            flood(&switch_command, &vxlan.name, *peer, true)?;
        }
    }
    Ok(())
}

/// Adds (or removes) the all-zero FDB entry that sends a VXLAN port's broadcast, multicast and unknown unicast
/// frames to `peer`.
pub fn flood(switch: &crate::process::HostCommand, port: &str, peer: Ipv4Addr, add: bool) -> io::Result<()> {
    let peer = peer.to_string();
    let verb = if add { "append" } else { "del" };
    let args = ["fdb", verb, "00:00:00:00:00:00", "dev", port, "dst", &peer];
    crate::process::run_tool(switch, "bridge", &args, None)
}

/// Loopback up, addresses, routes and sysctls, from a thread inside the host's namespace.
fn configure_host(host: &crate::topology::Host, plan: &HostPlan) -> io::Result<()> {
    let ns = &plan.namespace.name;
    let mut requests = vec![Request::new(format!("loopback up in {ns}"), set_up(1))];
    for (iface, iface_plan) in host.interfaces.iter().zip(&plan.interfaces) {
        requests.push(Request::new(
            format!("{} up in {ns}", iface.name),
            set_up(iface_plan.index),
        ));
        let address = AddressMessageBuilder::<Ipv4Addr>::new()
            .index(iface_plan.index)
            .address(iface.address, iface.prefix)
            .build();
        requests.push(Request::new(
            format!("add {}/{} to {} in {ns}", iface.address, iface.prefix, iface.name),
            RouteNetlinkMessage::NewAddress(address),
        ));
    }
    requests.extend(route_requests(host, ns));
    Netlink::open()?.apply(requests)?;
    for (key, value) in &host.sysctls {
        netns::write_sysctl(key, value).map_err(|e| io::Error::new(e.kind(), format!("{e} (host {})", host.name)))?;
    }
    Ok(())
}

/// The routes the topology gives `host` (whose namespace is `ns`, for messages): what comes back when its links
/// do (the kernel drops a route whose link goes down).
pub fn route_requests(host: &crate::topology::Host, ns: &str) -> Vec<Request> {
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
