//! Gratuitous ARP as keepalived sends it: an ARP request to the broadcast address whose sender and target IP are
//! the virtual address, sender hardware address the interface's own, target hardware address broadcast.

use std::io;
use std::net::Ipv4Addr;

use pnet_datalink::{Channel, DataLinkSender, MacAddr, NetworkInterface};
use pnet_packet::arp::{ArpHardwareTypes, ArpOperations, MutableArpPacket};
use pnet_packet::ethernet::{EtherTypes, MutableEthernetPacket};

const FRAME_LEN: usize = 42;

pub struct GarpSender {
    sender: Box<dyn DataLinkSender>,
    mac: MacAddr,
}

impl GarpSender {
    pub fn open(interface: &str) -> io::Result<GarpSender> {
        let found = pnet_datalink::interfaces()
            .into_iter()
            .find(|candidate: &NetworkInterface| candidate.name == interface);
        let interface =
            found.ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, format!("no interface {interface}")))?;
        let mac = interface.mac.unwrap_or(MacAddr::zero());
        let config = pnet_datalink::Config {
            read_timeout: Some(std::time::Duration::ZERO),
            ..Default::default()
        };
        match pnet_datalink::channel(&interface, config)? {
            Channel::Ethernet(sender, _receiver) => Ok(GarpSender { sender, mac }),
            _ => Err(io::Error::other("not an Ethernet interface")),
        }
    }

    pub fn mac(&self) -> [u8; 6] {
        self.mac.octets()
    }

    pub fn send(&mut self, address: Ipv4Addr) -> io::Result<()> {
        let frame = frame(self.mac.octets(), address);
        self.sender
            .send_to(&frame, None)
            .unwrap_or_else(|| Err(io::Error::other("no send buffer")))
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
