//! The raw IPv4 socket for protocol 112: adverts go out with an IP header we build (TTL 255, TOS 0xc0, an
//! identification that counts up, as keepalived sends), and come in with theirs.

use std::io;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::os::fd::{AsFd, BorrowedFd};

use socket2::{Domain, InterfaceIndexOrAddress, Protocol, SockAddr, Socket, Type};

use crate::machine::Outgoing;
use crate::wire::ipv4;
use crate::wire::vrrp::{PROTOCOL, TTL};

pub struct VrrpSocket {
    socket: Socket,
    ident: u16,
}

impl VrrpSocket {
    /// A socket bound to `interface`, joined to `group` there (224.0.0.18 unless configured otherwise) for
    /// multicast instances.
    pub fn open(interface: &str, index: u32, group: Option<Ipv4Addr>) -> io::Result<VrrpSocket> {
        let socket = Socket::new(Domain::IPV4, Type::RAW, Some(Protocol::from(i32::from(PROTOCOL))))?;
        socket.set_header_included_v4(true)?;
        socket.bind_device(Some(interface.as_bytes()))?;
        socket.set_nonblocking(true)?;
        if let Some(group) = group {
            socket.join_multicast_v4_n(&group, &InterfaceIndexOrAddress::Index(index))?;
            socket.set_multicast_loop_v4(false)?;
        }
        Ok(VrrpSocket { socket, ident: 0 })
    }

    pub fn send(&mut self, packet: &Outgoing) -> io::Result<()> {
        self.ident = self.ident.wrapping_add(1);
        let header = ipv4::Repr {
            src: packet.src,
            dst: packet.dst,
            protocol: PROTOCOL,
            ttl: TTL,
            tos: ipv4::TOS_NETWORK_CONTROL,
            ident: self.ident,
            flags_fragment: 0,
            payload_len: packet.payload.len(),
        };
        let mut bytes = vec![0; ipv4::HEADER_LEN + packet.payload.len()];
        header.emit(&mut bytes);
        bytes[ipv4::HEADER_LEN..].copy_from_slice(&packet.payload);
        let to = SockAddr::from(SocketAddrV4::new(packet.dst, 0));
        self.socket.send_to(&bytes, &to)?;
        Ok(())
    }

    /// One received IP packet, or `None` when nothing is waiting.
    pub fn receive(&self, buffer: &mut [u8]) -> io::Result<Option<usize>> {
        // `Read` on a socket reference fills an initialised buffer: no unsafe needed.
        match io::Read::read(&mut &self.socket, buffer) {
            Ok(len) => Ok(Some(len)),
            Err(error) if error.kind() == io::ErrorKind::WouldBlock => Ok(None),
            Err(error) => Err(error),
        }
    }
}

impl AsFd for VrrpSocket {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.socket.as_fd()
    }
}
