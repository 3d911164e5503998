//! Packets captured from keepalived 2.2.7 (Debian) in network namespaces (see tests/fixtures/keepalived/README.md):
//! each advert parses, re-emits byte for byte (IP header included), and passes the receive checks of an instance
//! configured like the peer that received it.

use std::fs::File;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use agent::config::{self, Options};
use agent::machine::{Action, Machine, Received};
use agent::wire::vrrp::Packet;
use agent::wire::{ipv4, Body, ChecksumForm, Envelope, Repr, Version};
use pcap_file::pcap::PcapReader;

const ETHERTYPE_IPV4: [u8; 2] = [0x08, 0x00];
const ETHERNET_HEADER_LEN: usize = 14;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/keepalived")
        .join(name)
}

/// (capture time, IPv4 packet bytes) of every VRRP packet in a capture.
fn vrrp_packets(name: &str) -> Vec<(Duration, Vec<u8>)> {
    let mut reader = PcapReader::new(File::open(fixture(name)).unwrap()).unwrap();
    let mut packets = Vec::new();
    while let Some(frame) = reader.next_packet() {
        let frame = frame.unwrap();
        let data = &frame.data;
        if data.len() > ETHERNET_HEADER_LEN && data[12..14] == ETHERTYPE_IPV4 && data[ETHERNET_HEADER_LEN + 9] == 112 {
            packets.push((frame.timestamp, data[ETHERNET_HEADER_LEN..].to_vec()));
        }
    }
    packets
}

struct Decoded {
    header: ipv4::Repr,
    advert: Repr,
    form: ChecksumForm,
}

fn decode(bytes: &[u8]) -> Decoded {
    let packet = ipv4::Packet::new_checked(bytes).unwrap();
    let header = ipv4::Repr::parse(&packet).unwrap();
    let envelope = Envelope {
        src: header.src,
        dst: header.dst,
    };
    let (advert, form) = Repr::parse(&Packet::new_checked(packet.payload()).unwrap(), envelope).unwrap();
    Decoded { header, advert, form }
}

fn reemit(decoded: &Decoded) -> Vec<u8> {
    let envelope = Envelope {
        src: decoded.header.src,
        dst: decoded.header.dst,
    };
    let payload = decoded.advert.to_bytes(decoded.form, envelope);
    let mut bytes = vec![0; ipv4::HEADER_LEN];
    decoded.header.emit(&mut bytes);
    bytes.extend_from_slice(&payload);
    bytes
}

fn check_capture(name: &str, version: Version, form: ChecksumForm) -> Vec<Decoded> {
    let packets = vrrp_packets(name);
    assert!(packets.len() >= 10, "{name}: only {} adverts", packets.len());
    let mut decoded_all = Vec::new();
    for (_, bytes) in &packets {
        let decoded = decode(bytes);
        assert_eq!(decoded.advert.version(), version);
        assert_eq!(decoded.form, form, "{name}: checksum form");
        assert_eq!(decoded.header.ttl, 255);
        assert_eq!(decoded.header.tos, ipv4::TOS_NETWORK_CONTROL);
        assert_eq!(decoded.advert.vrid, 10);
        assert_eq!(decoded.advert.addresses, vec![Ipv4Addr::new(10, 0, 0, 31)]);
        assert_eq!(&reemit(&decoded), bytes, "{name}: re-emitted bytes differ");
        decoded_all.push(decoded);
    }
    let priorities: std::collections::BTreeSet<u8> = decoded_all.iter().map(|d| d.advert.priority).collect();
    assert_eq!(priorities.into_iter().collect::<Vec<_>>(), vec![0, 99, 100], "{name}");
    decoded_all
}

#[test]
fn keepalived_v2_password_unicast_adverts_round_trip_byte_for_byte() {
    let adverts = check_capture("v2-pass-unicast.pcap", Version::V2, ChecksumForm::VrrpOnly);
    for decoded in adverts {
        let Body::V2 {
            interval_secs,
            auth_data,
            ..
        } = decoded.advert.body
        else {
            panic!("v2")
        };
        assert_eq!(interval_secs, 1);
        assert_eq!(&auth_data, b"passWord");
    }
}

#[test]
fn keepalived_v3_multicast_adverts_use_the_ipv4_pseudo_header() {
    let adverts = check_capture("v3-multicast.pcap", Version::V3, ChecksumForm::PseudoHeader);
    assert!(adverts
        .iter()
        .all(|d| d.advert.body == Body::V3 { interval_centis: 10 }));
    assert!(adverts.iter().all(|d| d.header.dst == Ipv4Addr::new(224, 0, 0, 18)));
}

#[test]
fn keepalived_v3_unicast_pseudo_header_names_the_peer() {
    let adverts = check_capture("v3-unicast.pcap", Version::V3, ChecksumForm::PseudoHeader);
    assert!(adverts.iter().all(|d| d.header.dst != Ipv4Addr::new(224, 0, 0, 18)));
}

#[test]
fn keepalived_ip_ids_count_up_per_sender() {
    let packets = vrrp_packets("v2-pass-unicast.pcap");
    for sender in [Ipv4Addr::new(10, 0, 0, 21), Ipv4Addr::new(10, 0, 0, 23)] {
        let ids: Vec<u16> = packets
            .iter()
            .map(|(_, b)| decode(b))
            .filter(|d| d.header.src == sender)
            .map(|d| d.header.ident)
            .collect();
        assert!(ids.windows(2).all(|pair| pair[1] == pair[0] + 1), "{sender}: {ids:?}");
    }
}

/// Feeds every advert keepalived sent to an instance of ours configured as the receiving peer, at the captured
/// times: none may be discarded.
fn replay_into_peer(capture: &str, receiver_config: &str, receiver: Ipv4Addr) -> Vec<Action> {
    let path = fixture(receiver_config);
    let instance = config::load(&path, Options { strict: true })
        .unwrap()
        .config
        .instances
        .remove(0);
    let mut machine = Machine::new(instance.settings(Some(receiver)).unwrap());
    let packets = vrrp_packets(capture);
    let start = packets[0].0;
    machine.startup(Duration::ZERO);
    let mut actions = Vec::new();
    for (at, bytes) in packets.iter().map(|(at, bytes)| (*at - start, bytes)) {
        let packet = ipv4::Packet::new_checked(&bytes[..]).unwrap();
        if packet.src() == receiver {
            continue;
        }
        while let Some(timeout) = machine.poll_timeout().filter(|timeout| *timeout <= at) {
            machine.handle_timeout(timeout);
        }
        machine.receive(
            at,
            Received {
                src: packet.src(),
                dst: packet.dst(),
                ttl: packet.ttl(),
                payload: packet.payload(),
            },
        );
        actions.extend(machine.drain_actions());
    }
    actions
}

#[test]
fn keepalived_adverts_pass_our_receive_checks() {
    for (capture, config, receiver) in [
        (
            "v2-pass-unicast.pcap",
            "v2-pass-unicast-haproxy1.conf",
            Ipv4Addr::new(10, 0, 0, 21),
        ),
        (
            "v2-pass-unicast.pcap",
            "v2-pass-unicast-haproxy2.conf",
            Ipv4Addr::new(10, 0, 0, 23),
        ),
        (
            "v3-multicast.pcap",
            "v3-multicast-haproxy1.conf",
            Ipv4Addr::new(10, 0, 0, 21),
        ),
        (
            "v3-multicast.pcap",
            "v3-multicast-haproxy2.conf",
            Ipv4Addr::new(10, 0, 0, 23),
        ),
        (
            "v3-unicast.pcap",
            "v3-unicast-haproxy1.conf",
            Ipv4Addr::new(10, 0, 0, 21),
        ),
    ] {
        let actions = replay_into_peer(capture, config, receiver);
        let discarded: Vec<&Action> = actions
            .iter()
            .filter(|a| matches!(a, Action::Discarded { .. }))
            .collect();
        assert!(discarded.is_empty(), "{capture} into {config}: {discarded:?}");
        let accepted = actions.iter().filter(|a| matches!(a, Action::Accepted { .. })).count();
        assert!(accepted >= 3, "{capture} into {config}: {accepted} accepted");
    }
}

#[test]
fn our_gratuitous_arp_is_byte_for_byte_keepalived_s() {
    let mut reader = PcapReader::new(File::open(fixture("v2-pass-unicast.pcap")).unwrap()).unwrap();
    let vip = Ipv4Addr::new(10, 0, 0, 31);
    let mut compared = 0;
    while let Some(frame) = reader.next_packet() {
        let data = frame.unwrap().data;
        // ARP requests whose sender and target addresses are both the VIP: keepalived's gratuitous ARPs.
        if data.len() >= 42
            && data[12..14] == [0x08, 0x06]
            && data[28..32] == vip.octets()
            && data[38..42] == vip.octets()
        {
            let mac: [u8; 6] = data[6..12].try_into().unwrap();
            assert_eq!(&agent::io::arp::frame(mac, vip)[..], &data[..42]);
            compared += 1;
        }
    }
    assert!(compared >= 10, "only {compared} gratuitous ARPs in the capture");
}
