//! Interfaces and their addresses over a synchronous rtnetlink socket: look an interface up, read its primary
//! IPv4 address, add and remove the virtual addresses. Messages come from rtnetlink's builders; the kernel
//! answers a route-netlink request inside the send call, so there is nothing to gain from an async runtime.

use std::io;
use std::net::{IpAddr, Ipv4Addr};

use rtnetlink::packet_core::{
    NetlinkHeader, NetlinkMessage, NetlinkPayload, NLM_F_ACK, NLM_F_CREATE, NLM_F_DUMP, NLM_F_EXCL, NLM_F_REQUEST,
};
use rtnetlink::packet_route::address::{AddressAttribute, AddressFlags, AddressMessage};
use rtnetlink::packet_route::link::{LinkAttribute, LinkFlags, LinkMessage};
use rtnetlink::packet_route::RouteNetlinkMessage;
use rtnetlink::sys::{protocols::NETLINK_ROUTE, Socket, SocketAddr};
use rtnetlink::AddressMessageBuilder;

use crate::config::VirtualAddress;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Interface {
    pub name: String,
    pub index: u32,
    pub mac: Option<[u8; 6]>,
    /// Administratively up and with carrier.
    pub running: bool,
}

pub struct Netlink {
    socket: Socket,
    sequence: u32,
    buffer: Vec<u8>,
}

impl Netlink {
    pub fn open() -> io::Result<Netlink> {
        let mut socket = Socket::new(NETLINK_ROUTE)?;
        socket.bind_auto()?;
        socket.connect(&SocketAddr::new(0, 0))?;
        socket.set_ext_ack(true)?;
        Ok(Netlink {
            socket,
            sequence: 0,
            buffer: vec![0; 1 << 16],
        })
    }

    pub fn interface(&mut self, name: &str) -> io::Result<Interface> {
        self.interfaces()?
            .into_iter()
            .find(|interface| interface.name == name)
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, format!("no interface named {name}")))
    }

    pub fn interfaces(&mut self) -> io::Result<Vec<Interface>> {
        let links = self.dump(RouteNetlinkMessage::GetLink(LinkMessage::default()))?;
        Ok(links
            .into_iter()
            .filter_map(|message| match message {
                RouteNetlinkMessage::NewLink(link) => Some(interface_of(&link)),
                _ => None,
            })
            .collect())
    }

    /// The IPv4 addresses on an interface, primary ones first (as the kernel lists them).
    pub fn addresses(&mut self, index: u32) -> io::Result<Vec<(Ipv4Addr, u8, bool)>> {
        let messages = self.dump(RouteNetlinkMessage::GetAddress(AddressMessage::default()))?;
        let mut found = Vec::new();
        for message in messages {
            let RouteNetlinkMessage::NewAddress(address) = message else {
                continue;
            };
            if address.header.index != index {
                continue;
            }
            let secondary = address.attributes.iter().any(|attribute| {
                matches!(attribute, AddressAttribute::Flags(flags) if flags.contains(AddressFlags::Secondary))
            });
            for attribute in &address.attributes {
                if let AddressAttribute::Local(IpAddr::V4(local)) = attribute {
                    found.push((*local, address.header.prefix_len, !secondary));
                }
            }
        }
        Ok(found)
    }

    /// The first primary IPv4 address of an interface, other than `except` (a virtual address).
    pub fn primary_address(&mut self, index: u32, except: &[Ipv4Addr]) -> io::Result<Option<Ipv4Addr>> {
        Ok(self
            .addresses(index)?
            .into_iter()
            .find(|(address, _, primary)| *primary && !except.contains(address))
            .map(|(address, _, _)| address))
    }

    /// Adds a virtual address; one that is already there is fine.
    pub fn add_address(&mut self, index: u32, vip: &VirtualAddress) -> io::Result<()> {
        let mut message = AddressMessageBuilder::<Ipv4Addr>::new()
            .index(index)
            .address(vip.address, vip.prefix_len)
            .build();
        if let Some(label) = &vip.label {
            message.attributes.push(AddressAttribute::Label(label.clone()));
        }
        if let Some(broadcast) = vip.broadcast {
            message
                .attributes
                .retain(|attribute| !matches!(attribute, AddressAttribute::Broadcast(_)));
            message.attributes.push(AddressAttribute::Broadcast(broadcast));
        }
        match self.request(RouteNetlinkMessage::NewAddress(message), NLM_F_CREATE | NLM_F_EXCL) {
            Err(error) if error.raw_os_error() == Some(libc::EEXIST) => Ok(()),
            other => other,
        }
    }

    /// Removes a virtual address; one that is not there is fine.
    pub fn delete_address(&mut self, index: u32, vip: &VirtualAddress) -> io::Result<()> {
        let message = AddressMessageBuilder::<Ipv4Addr>::new()
            .index(index)
            .address(vip.address, vip.prefix_len)
            .build();
        match self.request(RouteNetlinkMessage::DelAddress(message), 0) {
            Err(error) if error.raw_os_error() == Some(libc::EADDRNOTAVAIL) => Ok(()),
            other => other,
        }
    }

    fn request(&mut self, message: RouteNetlinkMessage, flags: u16) -> io::Result<()> {
        let sequence = self.send(message, NLM_F_REQUEST | NLM_F_ACK | flags)?;
        loop {
            for reply in self.receive()? {
                if reply.header.sequence_number != sequence {
                    continue;
                }
                if let NetlinkPayload::Error(error) = reply.payload {
                    return match error.code {
                        Some(_) => Err(error.to_io()),
                        None => Ok(()),
                    };
                }
            }
        }
    }

    fn dump(&mut self, message: RouteNetlinkMessage) -> io::Result<Vec<RouteNetlinkMessage>> {
        let sequence = self.send(message, NLM_F_REQUEST | NLM_F_DUMP)?;
        let mut found = Vec::new();
        loop {
            for reply in self.receive()? {
                if reply.header.sequence_number != sequence {
                    continue;
                }
                match reply.payload {
                    NetlinkPayload::Done(_) => return Ok(found),
                    NetlinkPayload::Error(error) if error.code.is_some() => return Err(error.to_io()),
                    NetlinkPayload::InnerMessage(inner) => found.push(inner),
                    _ => {}
                }
            }
        }
    }

    fn send(&mut self, message: RouteNetlinkMessage, flags: u16) -> io::Result<u32> {
        self.sequence = self.sequence.wrapping_add(1);
        let mut header = NetlinkHeader::default();
        header.flags = flags;
        header.sequence_number = self.sequence;
        let mut packet = NetlinkMessage::new(header, NetlinkPayload::from(message));
        packet.finalize();
        let mut bytes = vec![0; packet.buffer_len()];
        packet.serialize(&mut bytes);
        self.socket.send(&bytes, 0)?;
        Ok(self.sequence)
    }

    fn receive(&mut self) -> io::Result<Vec<NetlinkMessage<RouteNetlinkMessage>>> {
        let size = loop {
            match self.socket.recv(&mut &mut self.buffer[..], 0) {
                Ok(size) => break size,
                Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
                Err(error) => return Err(error),
            }
        };
        split(&self.buffer[..size]).collect::<Result<_, _>>().map_err(|error| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("undecodable netlink reply: {error}"),
            )
        })
    }
}

/// Link changes as the kernel announces them (RTMGRP_LINK), for track_interface and the instance's own interface.
pub struct LinkMonitor {
    socket: Socket,
    buffer: Vec<u8>,
}

impl LinkMonitor {
    pub fn open() -> io::Result<LinkMonitor> {
        const RTMGRP_LINK: u32 = 1;
        let mut socket = Socket::new(NETLINK_ROUTE)?;
        socket.bind(&SocketAddr::new(0, RTMGRP_LINK))?;
        socket.set_non_blocking(true)?;
        Ok(LinkMonitor {
            socket,
            buffer: vec![0; 1 << 16],
        })
    }

    /// Every link update waiting to be read, and whether the kernel dropped some (ENOBUFS): then the caller
    /// must read the whole state again.
    pub fn read(&mut self) -> (Vec<Interface>, bool) {
        let mut updates = Vec::new();
        loop {
            let size = match self.socket.recv(&mut &mut self.buffer[..], 0) {
                Ok(size) => size,
                Err(error) => return (updates, error.raw_os_error() == Some(libc::ENOBUFS)),
            };
            for message in split(&self.buffer[..size]) {
                if let Ok(NetlinkMessage {
                    payload: NetlinkPayload::InnerMessage(RouteNetlinkMessage::NewLink(link)),
                    ..
                }) = message
                {
                    updates.push(interface_of(&link));
                }
            }
        }
    }
}

impl std::os::fd::AsFd for LinkMonitor {
    fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.socket.as_fd()
    }
}

/// The messages of one netlink datagram (each header says its length; they are 4-byte aligned).
pub fn split(
    datagram: &[u8],
) -> impl Iterator<Item = Result<NetlinkMessage<RouteNetlinkMessage>, rtnetlink::packet_core::DecodeError>> + '_ {
    let mut offset = 0;
    std::iter::from_fn(move || {
        let header = datagram.get(offset..offset + 16)?;
        let length = u32::from_ne_bytes(header[..4].try_into().expect("4 bytes")) as usize;
        if length < 16 || offset + length > datagram.len() {
            return None;
        }
        let message = NetlinkMessage::<RouteNetlinkMessage>::deserialize(&datagram[offset..offset + length]);
        offset += (length + 3) & !3;
        Some(message)
    })
}

fn interface_of(link: &LinkMessage) -> Interface {
    let mut interface = Interface {
        name: String::new(),
        index: link.header.index,
        mac: None,
        running: link.header.flags.contains(LinkFlags::Up) && link.header.flags.contains(LinkFlags::Running),
    };
    for attribute in &link.attributes {
        match attribute {
            LinkAttribute::IfName(name) => interface.name = name.clone(),
            LinkAttribute::Address(bytes) if bytes.len() == 6 => {
                let mut mac = [0; 6];
                mac.copy_from_slice(bytes);
                interface.mac = Some(mac);
            }
            _ => {}
        }
    }
    interface
}
