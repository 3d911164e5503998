//! The kernel's view of each host: addresses added and removed, interfaces going up and down, read from route
//! netlink multicast groups. One socket per host namespace, all polled by a single thread, so a 1000-host lab costs
//! one thread, not a thousand.

use std::collections::HashMap;
use std::io;
use std::os::fd::AsFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use rtnetlink::packet_core::NetlinkPayload;
use rtnetlink::packet_route::address::{AddressAttribute, AddressMessage};
use rtnetlink::packet_route::link::{LinkAttribute, LinkFlags, LinkMessage};
use rtnetlink::packet_route::RouteNetlinkMessage;
use rtnetlink::sys::{protocols::NETLINK_ROUTE, Socket, SocketAddr};

use crate::events::{EventKind, EventLog};
use crate::net::netns;

/// How often the thread looks at its stop flag while nothing happens.
const STOP_CHECK_MS: u16 = 20;

const RTMGRP_LINK: u32 = 0x1;
const RTMGRP_IPV4_IFADDR: u32 = 0x10;

struct HostWatch {
    host: String,
    socket: Socket,
    /// Interface index -> (name, usable).
    links: Links,
}

/// A host to watch: its name, namespace, and its interfaces as (index, name), all usable when watching starts (the
/// lab has just brought them up).
pub struct Watched {
    pub host: String,
    pub namespace: std::path::PathBuf,
    pub interfaces: Vec<(u32, String)>,
}

/// Opens a monitor in every host's namespace and starts the thread that reads them.
pub fn start(hosts: Vec<Watched>, events: Arc<EventLog>, stop: Arc<AtomicBool>) -> io::Result<JoinHandle<()>> {
    // One short-lived thread enters each namespace in turn to open its socket (a socket stays in the namespace it
    // was opened in), rather than a thread per host.
    let watches = std::thread::spawn(move || -> io::Result<Vec<HostWatch>> {
        let creator = netns::Creator::on_this_thread()?;
        hosts
            .into_iter()
            .map(|watched| {
                let socket = creator.enter(&watched.namespace, open_monitor)?;
                let links = watched
                    .interfaces
                    .into_iter()
                    .map(|(index, name)| (index, (name, true)))
                    .collect();
                Ok(HostWatch {
                    host: watched.host,
                    socket,
                    links,
                })
            })
            .collect()
    })
    .join()
    .map_err(|_| io::Error::other("the kernel monitor's opening thread panicked"))??;
    std::thread::Builder::new()
        .name("kernel-monitor".into())
        .spawn(move || watch(watches, &events, &stop))
}

type Links = HashMap<u32, (String, bool)>;

fn open_monitor() -> io::Result<Socket> {
    let mut socket = Socket::new(NETLINK_ROUTE)?;
    socket.bind(&SocketAddr::new(0, RTMGRP_LINK | RTMGRP_IPV4_IFADDR))?;
    socket.set_non_blocking(true)?;
    socket.set_rx_buf_sz(1 << 20)?;
    Ok(socket)
}

fn watch(mut watches: Vec<HostWatch>, events: &EventLog, stop: &AtomicBool) {
    let mut buffer = vec![0u8; 1 << 16];
    while !stop.load(Ordering::Relaxed) {
        let ready: Vec<bool> = {
            let mut fds: Vec<PollFd> = watches
                .iter()
                .map(|w| PollFd::new(w.socket.as_fd(), PollFlags::POLLIN))
                .collect();
            if poll(&mut fds, PollTimeout::from(STOP_CHECK_MS)).is_err() {
                continue;
            }
            fds.iter()
                .map(|fd| fd.revents().is_some_and(|r| !r.is_empty()))
                .collect()
        };
        for (watch, ready) in watches.iter_mut().zip(ready) {
            if !ready {
                continue;
            }
            // ENOBUFS (the kernel dropped notifications) ends this round like EAGAIN; later changes still arrive.
            while let Ok(size) = watch.socket.recv(&mut &mut buffer[..], 0) {
                for message in agent::io::netlink::split(&buffer[..size]).flatten() {
                    if let NetlinkPayload::InnerMessage(message) = message.payload {
                        watch.handle(message, events);
                    }
                }
            }
        }
    }
}

impl HostWatch {
    fn handle(&mut self, message: RouteNetlinkMessage, events: &EventLog) {
        let host = Some(self.host.as_str());
        match message {
            RouteNetlinkMessage::NewLink(link) => {
                let (index, (name, usable)) = link_state(&link);
                let before = self.links.insert(index, (name.clone(), usable));
                let was_usable = before.is_some_and(|(_, usable)| usable);
                if usable != was_usable && name != "lo" {
                    let kind = if usable {
                        EventKind::LinkUp { interface: name }
                    } else {
                        EventKind::LinkDown { interface: name }
                    };
                    events.push(host, kind);
                }
            }
            RouteNetlinkMessage::DelLink(link) => {
                if let Some((name, true)) = self.links.remove(&link.header.index) {
                    events.push(host, EventKind::LinkDown { interface: name });
                }
            }
            RouteNetlinkMessage::NewAddress(address) => {
                if let Some((interface, address)) = self.address(&address) {
                    events.push(host, EventKind::AddressAdded { interface, address });
                }
            }
            RouteNetlinkMessage::DelAddress(address) => {
                if let Some((interface, address)) = self.address(&address) {
                    events.push(host, EventKind::AddressRemoved { interface, address });
                }
            }
            _ => {}
        }
    }

    fn address(&self, message: &AddressMessage) -> Option<(String, String)> {
        let address = message.attributes.iter().find_map(|a| match a {
            AddressAttribute::Local(std::net::IpAddr::V4(address)) => Some(*address),
            _ => None,
        })?;
        let interface = self
            .links
            .get(&message.header.index)
            .map(|(name, _)| name.clone())
            .unwrap_or_else(|| format!("if{}", message.header.index));
        Some((interface, format!("{address}/{}", message.header.prefix_len)))
    }
}

/// An interface is usable when it is administratively up and has carrier.
fn link_state(link: &LinkMessage) -> (u32, (String, bool)) {
    let name = link
        .attributes
        .iter()
        .find_map(|a| match a {
            LinkAttribute::IfName(name) => Some(name.clone()),
            _ => None,
        })
        .unwrap_or_default();
    let flags = link.header.flags;
    let usable = flags.contains(LinkFlags::Up) && flags.contains(LinkFlags::LowerUp);
    (link.header.index, (name, usable))
}
