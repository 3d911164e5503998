//! Gratuitous ARP as keepalived sends it: an ARP request to the broadcast address whose sender and target IP are
//! the virtual address, sender hardware address the interface's own, target hardware address broadcast.

use std::io;
use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use pnet_base::MacAddr;
use pnet_packet::arp::{ArpHardwareTypes, ArpOperations, MutableArpPacket};
use pnet_packet::ethernet::{EtherTypes, MutableEthernetPacket};

use super::netlink::Interface;

const FRAME_LEN: usize = 42;
const ETH_P_ARP: u16 = 0x0806;

/// A send-only AF_PACKET socket (protocol 0: it receives nothing, and the interface is not put in promiscuous
/// mode), close-on-exec so scripts do not inherit it, non-blocking so a full queue never stalls the protocol.
pub struct GarpSender {
    socket: OwnedFd,
    index: i32,
    mac: [u8; 6],
}

impl GarpSender {
    pub fn open(interface: &Interface) -> io::Result<GarpSender> {
        let mac = interface.mac.ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{} has no MAC address", interface.name),
            )
        })?;
        // SAFETY: a plain socket(2) call; the descriptor is checked and owned at once.
        let fd = unsafe {
            libc::socket(
                libc::AF_PACKET,
                libc::SOCK_RAW | libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK,
                0,
            )
        };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: fd is a fresh descriptor nothing else owns.
        let socket = unsafe { OwnedFd::from_raw_fd(fd) };
        let index = i32::try_from(interface.index).map_err(|_| io::Error::other("interface index out of range"))?;
        Ok(GarpSender { socket, index, mac })
    }

    pub fn mac(&self) -> [u8; 6] {
        self.mac
    }

    pub fn send(&mut self, address: Ipv4Addr) -> io::Result<()> {
        let frame = frame(self.mac, address);
        // SAFETY: sockaddr_ll is plain data; every field the kernel reads is set below.
        let mut to: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        to.sll_family = libc::AF_PACKET as u16;
        to.sll_protocol = ETH_P_ARP.to_be();
        to.sll_ifindex = self.index;
        to.sll_halen = 6;
        to.sll_addr[..6].copy_from_slice(&[0xff; 6]);
        // SAFETY: the frame and the address outlive the call and their lengths are passed with them.
        let sent = unsafe {
            libc::sendto(
                self.socket.as_raw_fd(),
                frame.as_ptr().cast(),
                frame.len(),
                0,
                (&to as *const libc::sockaddr_ll).cast(),
                std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
            )
        };
        if sent < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }
}

/// The 42-byte frame (no padding: the driver pads).
pub fn frame(mac: [u8; 6], address: Ipv4Addr) -> [u8; FRAME_LEN] {
    let mac = MacAddr::from(mac);
    let mut bytes = [0u8; FRAME_LEN];
    {
        let mut ethernet = MutableEthernetPacket::new(&mut bytes).expect("42 bytes hold an Ethernet header");
        ethernet.set_destination(MacAddr::broadcast());
        ethernet.set_source(mac);
        ethernet.set_ethertype(EtherTypes::Arp);
    }
    let mut arp = MutableArpPacket::new(&mut bytes[14..]).expect("28 bytes hold an ARP packet");
    arp.set_hardware_type(ArpHardwareTypes::Ethernet);
    arp.set_protocol_type(EtherTypes::Ipv4);
    arp.set_hw_addr_len(6);
    arp.set_proto_addr_len(4);
    arp.set_operation(ArpOperations::Request);
    arp.set_sender_hw_addr(mac);
    arp.set_sender_proto_addr(address);
    arp.set_target_hw_addr(MacAddr::broadcast());
    arp.set_target_proto_addr(address);
    bytes
}
