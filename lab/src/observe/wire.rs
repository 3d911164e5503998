//! The wire: every frame crossing a segment, read from its bridge in the lab's switch namespace (the bridge is put
//! in promiscuous mode, so frames forwarded between hosts reach the capture too). VRRP advertisements and ARP
//! announcements become timeline events; `lab capture` writes the same frames as pcap.

use std::io::{self, Write};
use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime};

use pcap_file::pcap::{PcapHeader, PcapPacket, PcapWriter};
use pcap_file::DataLink;
use pnet_datalink::{Channel, DataLinkReceiver};
use pnet_packet::arp::{ArpOperations, ArpPacket};
use pnet_packet::ethernet::{EtherTypes, EthernetPacket};
use pnet_packet::ip::IpNextHeaderProtocols;
use pnet_packet::ipv4::Ipv4Packet;
use pnet_packet::Packet as _;

use crate::events::{EventKind, EventLog};
use crate::net::netns;

/// How long a read waits before the capture looks at its stop flag.
const POLL: Duration = Duration::from_millis(20);

/// A receiver on the bridge of `segment`, opened inside the switch namespace `switch_netns`.
pub fn open(switch_netns: &std::path::Path, segment: &str) -> io::Result<Box<dyn DataLinkReceiver>> {
    let segment = segment.to_string();
    netns::run_in(switch_netns, move || {
        let interface = pnet_datalink::interfaces()
            .into_iter()
            .find(|i| i.name == segment)
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, format!("no bridge for segment `{segment}`")))?;
        let config = pnet_datalink::Config {
            read_timeout: Some(POLL),
            promiscuous: true,
            ..Default::default()
        };
        match pnet_datalink::channel(&interface, config)? {
            Channel::Ethernet(_, receiver) => Ok(receiver),
            _ => Err(io::Error::other("pnet returned a non-Ethernet channel")),
        }
    })
}

/// Starts the thread that turns the frames of `segment` into events.
pub fn start(
    switch_netns: &std::path::Path,
    segment: &str,
    events: Arc<EventLog>,
    stop: Arc<AtomicBool>,
) -> io::Result<JoinHandle<()>> {
    let mut receiver = open(switch_netns, segment)?;
    let segment = segment.to_string();
    std::thread::Builder::new()
        .name(format!("capture-{segment}"))
        .spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                match receiver.next() {
                    Ok(frame) => {
                        if let Some(kind) = decode(&segment, frame) {
                            events.push(None, kind);
                        }
                    }
                    Err(e) if matches!(e.kind(), io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock) => {}
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    // The bridge went away: the lab is being torn down.
                    Err(_) => return,
                }
            }
        })
}

/// The timeline's reading of one Ethernet frame: VRRP advertisements, and ARP replies and announcements.
pub fn decode(segment: &str, frame: &[u8]) -> Option<EventKind> {
    let ethernet = EthernetPacket::new(frame)?;
    match ethernet.get_ethertype() {
        EtherTypes::Ipv4 => {
            let ip = Ipv4Packet::new(ethernet.payload())?;
            if ip.get_next_level_protocol() != IpNextHeaderProtocols::Vrrp {
                return None;
            }
            let header = usize::from(ip.get_header_length()) * 4;
            let total = usize::from(ip.get_total_length()).min(ethernet.payload().len());
            let body = ethernet.payload().get(header..total)?;
            let vrrp = agent::wire::vrrp::Packet::new_checked(body).ok()?;
            Some(EventKind::Vrrp {
                segment: segment.to_string(),
                from: ip.get_source(),
                to: ip.get_destination(),
                mac: ethernet.get_source().to_string(),
                version: vrrp.version_number(),
                vrid: vrrp.vrid(),
                priority: vrrp.priority(),
            })
        }
        EtherTypes::Arp => {
            let arp = ArpPacket::new(ethernet.payload())?;
            let sender_ip: Ipv4Addr = arp.get_sender_proto_addr();
            let target_ip: Ipv4Addr = arp.get_target_proto_addr();
            // An announcement names its own address as the target, and is a request or a broadcast reply; a reply
            // sent to one asker is an answer, even when the asker used the same address (a conflict).
            let broadcast = arp.get_target_hw_addr() == pnet_base::MacAddr::broadcast();
            let (operation, gratuitous) = match arp.get_operation() {
                ArpOperations::Request if sender_ip == target_ip => ("request", true),
                ArpOperations::Reply => ("reply", sender_ip == target_ip && broadcast),
                // Plain who-has questions say nothing about who holds an address.
                _ => return None,
            };
            Some(EventKind::Arp {
                segment: segment.to_string(),
                operation: operation.to_string(),
                sender_ip,
                sender_mac: arp.get_sender_hw_addr().to_string(),
                target_ip,
                gratuitous,
            })
        }
        _ => None,
    }
}

/// Writes every frame of `segment` to `out` as pcap (Ethernet link type) until `count` frames were written,
/// `stop` is set, or writing fails (a closed pipe ends it quietly). Give an unbuffered writer (a `File`) when a
/// reader follows along.
pub fn write_pcap(
    switch_netns: &std::path::Path,
    segment: &str,
    out: impl Write,
    count: Option<u64>,
    stop: &AtomicBool,
) -> io::Result<u64> {
    let mut receiver = open(switch_netns, segment)?;
    let header = PcapHeader {
        datalink: DataLink::ETHERNET,
        ..Default::default()
    };
    let mut writer = PcapWriter::with_header(out, header).map_err(pcap_error)?;
    let mut written = 0;
    while !stop.load(Ordering::Relaxed) && count.is_none_or(|c| written < c) {
        let frame = match receiver.next() {
            Ok(frame) => frame,
            Err(e) if matches!(e.kind(), io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock) => continue,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        let since_epoch = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default();
        let packet = PcapPacket::new(since_epoch, frame.len() as u32, frame);
        match writer.write_packet(&packet) {
            Ok(_) => written += 1,
            Err(pcap_file::PcapError::IoError(e)) if e.kind() == io::ErrorKind::BrokenPipe => break,
            Err(e) => return Err(pcap_error(e)),
        }
    }
    Ok(written)
}

fn pcap_error(error: pcap_file::PcapError) -> io::Error {
    match error {
        pcap_file::PcapError::IoError(e) => e,
        other => io::Error::other(other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The first frames of a keepalived 2.2.7 capture (the seed's two configs, VRRPv2 PASS unicast).
    fn keepalived_frames() -> Vec<Vec<u8>> {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../agent/tests/fixtures/keepalived/v2-pass-unicast.pcap"
        );
        let mut reader = pcap_file::pcap::PcapReader::new(std::fs::File::open(path).unwrap()).unwrap();
        let mut frames = Vec::new();
        while let Some(packet) = reader.next_packet() {
            frames.push(packet.unwrap().data.into_owned());
        }
        frames
    }

    #[test]
    fn decodes_keepalived_adverts() {
        let adverts: Vec<EventKind> = keepalived_frames()
            .iter()
            .filter_map(|frame| decode("vlan", frame))
            .filter(|kind| matches!(kind, EventKind::Vrrp { .. }))
            .collect();
        assert!(!adverts.is_empty());
        for advert in adverts {
            let EventKind::Vrrp {
                version,
                vrid,
                from,
                to,
                ..
            } = advert
            else {
                unreachable!()
            };
            assert_eq!((version, vrid), (2, 10));
            let pair = [from.to_string(), to.to_string()];
            assert!(
                pair == ["10.0.0.21", "10.0.0.23"] || pair == ["10.0.0.23", "10.0.0.21"],
                "{pair:?}"
            );
        }
    }

    fn arp(operation: u16, sender: [u8; 4], target: [u8; 4], target_mac: [u8; 6]) -> Vec<u8> {
        let mut frame = vec![0xff; 6];
        frame.extend([2, 0, 0, 0, 0, 1, 0x08, 0x06]);
        frame.extend([0, 1, 8, 0, 6, 4]);
        frame.extend(operation.to_be_bytes());
        frame.extend([2, 0, 0, 0, 0, 1]);
        frame.extend(sender);
        frame.extend(target_mac);
        frame.extend(target);
        frame
    }

    #[test]
    fn arp_announcements_replies_and_questions() {
        let vip = [10, 0, 0, 31];
        let gratuitous = decode("vlan", &arp(1, vip, vip, [0; 6])).unwrap();
        assert!(matches!(gratuitous, EventKind::Arp { gratuitous: true, ref operation, .. } if operation == "request"));
        let broadcast_reply = decode("vlan", &arp(2, vip, vip, [0xff; 6])).unwrap();
        assert!(matches!(broadcast_reply, EventKind::Arp { gratuitous: true, .. }));
        // A reply to an asker using the same address is a conflict answered, not an announcement.
        let answer = decode("vlan", &arp(2, vip, vip, [2, 0, 0, 0, 0, 9])).unwrap();
        assert!(matches!(answer, EventKind::Arp { gratuitous: false, .. }));
        assert_eq!(
            decode("vlan", &arp(1, [10, 0, 0, 22], vip, [0; 6])),
            None,
            "a plain who-has"
        );
        assert_eq!(decode("vlan", &[0u8; 10]), None, "a runt");
    }
}
