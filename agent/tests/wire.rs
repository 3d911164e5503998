//! Advertisement encoding: RFC test vectors, every malformed input as an error, round trips as properties.

use std::net::Ipv4Addr;

use agent::wire::vrrp::{password_bytes, Packet, MULTICAST_GROUP};
use agent::wire::{ipv4, AuthType, Body, ChecksumForm, Envelope, Error, Repr, Version};
use proptest::prelude::*;

const H1: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 21);
const H2: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 23);
const VIP: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 31);

fn unicast() -> Envelope {
    Envelope { src: H1, dst: H2 }
}

fn v2(priority: u8, password: &str) -> Repr {
    Repr {
        vrid: 10,
        priority,
        addresses: vec![VIP],
        body: Body::V2 {
            interval_secs: 1,
            auth_type: AuthType::Password,
            auth_data: password_bytes(password),
        },
    }
}

fn v3(priority: u8) -> Repr {
    Repr {
        vrid: 10,
        priority,
        addresses: vec![VIP],
        body: Body::V3 { interval_centis: 100 },
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(" ")
}

#[test]
fn v2_password_advert_matches_the_hand_computed_vector() {
    let bytes = v2(100, "1111").to_bytes(ChecksumForm::VrrpOnly, unicast());
    assert_eq!(
        hex(&bytes),
        "21 0a 64 01 01 01 0d 72 0a 00 00 1f 31 31 31 31 00 00 00 00"
    );
}

#[test]
fn v2_checksum_covers_priority_and_auth_data() {
    let checksum = |repr: Repr| {
        Packet::new_checked(repr.to_bytes(ChecksumForm::VrrpOnly, unicast()))
            .unwrap()
            .checksum()
    };
    assert_eq!(checksum(v2(99, "1111")), 0x0e72);
    assert_eq!(checksum(v2(0, "1111")), 0x7172);
    assert_ne!(checksum(v2(100, "1111")), checksum(v2(100, "2222")));
}

#[test]
fn v2_checksum_ignores_the_ip_addresses() {
    let a = v2(100, "1111").to_bytes(ChecksumForm::PseudoHeader, unicast());
    let b = v2(100, "1111").to_bytes(
        ChecksumForm::PseudoHeader,
        Envelope {
            src: H2,
            dst: MULTICAST_GROUP,
        },
    );
    assert_eq!(a, b);
}

#[test]
fn v3_checksum_with_ipv4_pseudo_header_to_the_multicast_group() {
    let bytes = v3(100).to_bytes(
        ChecksumForm::PseudoHeader,
        Envelope {
            src: H1,
            dst: MULTICAST_GROUP,
        },
    );
    assert_eq!(hex(&bytes), "31 0a 64 01 00 64 75 cd 0a 00 00 1f");
}

#[test]
fn v3_checksum_with_ipv4_pseudo_header_to_the_unicast_peer() {
    let bytes = v3(100).to_bytes(ChecksumForm::PseudoHeader, unicast());
    assert_eq!(&bytes[6..8], &[0x4b, 0xc9]);
}

#[test]
fn v3_checksum_without_pseudo_header_rfc9568() {
    let bytes = v3(100).to_bytes(ChecksumForm::VrrpOnly, unicast());
    assert_eq!(&bytes[6..8], &[0x60, 0x71]);
}

#[test]
fn v3_receiver_accepts_all_three_checksum_forms_and_names_the_one_used() {
    for form in [
        ChecksumForm::PseudoHeader,
        ChecksumForm::VrrpOnly,
        ChecksumForm::PseudoHeaderMulticastGroup,
    ] {
        let bytes = v3(100).to_bytes(form, unicast());
        let (repr, found) = Repr::parse(&Packet::new_checked(&bytes[..]).unwrap(), unicast()).unwrap();
        assert_eq!(repr, v3(100));
        assert_eq!(found, form);
    }
}

#[test]
fn v3_pseudo_header_checksum_fails_for_another_destination() {
    let bytes = v3(100).to_bytes(ChecksumForm::PseudoHeader, unicast());
    let other = Envelope {
        src: H1,
        dst: Ipv4Addr::new(10, 0, 0, 99),
    };
    let error = Repr::parse(&Packet::new_checked(&bytes[..]).unwrap(), other).unwrap_err();
    assert_eq!(
        error,
        Error::Checksum {
            version: Version::V3,
            got: 0x4bc9
        }
    );
}

#[test]
fn v3_reserved_bits_are_ignored_on_receive() {
    let mut bytes = v3(100).to_bytes(ChecksumForm::VrrpOnly, unicast());
    bytes[4] |= 0xf0;
    let mut packet = Packet::new_checked(&mut bytes[..]).unwrap();
    packet.fill_checksum(ChecksumForm::VrrpOnly, unicast());
    let (repr, _) = Repr::parse(&packet, unicast()).unwrap();
    assert_eq!(repr.body, Body::V3 { interval_centis: 100 });
}

#[test]
fn password_is_truncated_to_eight_bytes_and_zero_padded() {
    assert_eq!(&password_bytes("passWord"), b"passWord");
    assert_eq!(&password_bytes("passWord2"), b"passWord");
    assert_eq!(&password_bytes("ab"), b"ab\0\0\0\0\0\0");
}

fn parse(bytes: &[u8]) -> Result<Repr, Error> {
    Packet::new_checked(bytes)
        .and_then(|packet| Repr::parse(&packet, unicast()))
        .map(|(repr, _)| repr)
}

/// A valid v2 advert with one field changed and the checksum fixed up, so only that field is wrong.
fn v2_with(change: impl FnOnce(&mut Vec<u8>)) -> Vec<u8> {
    let mut bytes = v2(100, "1111").to_bytes(ChecksumForm::VrrpOnly, unicast());
    change(&mut bytes);
    if let Ok(mut packet) = Packet::new_checked(&mut bytes[..]) {
        packet.fill_checksum(ChecksumForm::VrrpOnly, unicast());
    }
    bytes
}

#[test]
fn truncated_header_is_an_error() {
    assert_eq!(parse(&[0x21, 0x0a, 0x64]), Err(Error::Truncated { needed: 8, got: 3 }));
    assert_eq!(parse(&[]), Err(Error::Truncated { needed: 8, got: 0 }));
}

#[test]
fn v2_without_its_auth_data_is_truncated() {
    let bytes = v2(100, "1111").to_bytes(ChecksumForm::VrrpOnly, unicast());
    assert_eq!(parse(&bytes[..12]), Err(Error::Truncated { needed: 20, got: 12 }));
}

#[test]
fn count_larger_than_the_addresses_present_is_truncated() {
    let bytes = v2_with(|b| b[3] = 2);
    assert_eq!(parse(&bytes), Err(Error::Truncated { needed: 24, got: 20 }));
}

#[test]
fn trailing_bytes_after_the_announced_addresses_are_an_error() {
    let mut bytes = v3(100).to_bytes(ChecksumForm::VrrpOnly, unicast());
    bytes.extend_from_slice(&[0, 0, 0, 0]);
    assert_eq!(
        parse(&bytes),
        Err(Error::Length {
            count: 1,
            expected: 12,
            got: 16
        })
    );
}

#[test]
fn unknown_version_is_an_error() {
    let bytes = v2_with(|b| b[0] = 0x41);
    assert_eq!(parse(&bytes), Err(Error::Version(4)));
}

#[test]
fn unknown_type_is_an_error() {
    let bytes = v2_with(|b| b[0] = 0x22);
    assert_eq!(parse(&bytes), Err(Error::Type(2)));
}

#[test]
fn count_zero_is_an_error_rfc9568_erratum_8299() {
    let repr = Repr {
        addresses: vec![],
        ..v3(100)
    };
    let bytes = repr.to_bytes(ChecksumForm::VrrpOnly, unicast());
    assert_eq!(parse(&bytes), Err(Error::NoAddresses));
}

#[test]
fn interval_zero_is_an_error_rfc9568_erratum_8301() {
    let repr = Repr {
        body: Body::V3 { interval_centis: 0 },
        ..v3(100)
    };
    assert_eq!(
        parse(&repr.to_bytes(ChecksumForm::VrrpOnly, unicast())),
        Err(Error::ZeroInterval)
    );
    let bytes = v2_with(|b| b[5] = 0);
    assert_eq!(parse(&bytes), Err(Error::ZeroInterval));
}

#[test]
fn bad_checksum_is_an_error() {
    let mut bytes = v2(100, "1111").to_bytes(ChecksumForm::VrrpOnly, unicast());
    bytes[19] ^= 1;
    assert_eq!(
        parse(&bytes),
        Err(Error::Checksum {
            version: Version::V2,
            got: 0x0d72
        })
    );
}

#[test]
fn v2_auth_types_are_reported_as_sent() {
    for (byte, auth_type) in [
        (0, AuthType::None),
        (1, AuthType::Password),
        (2, AuthType::Ah),
        (7, AuthType::Unknown(7)),
    ] {
        let repr = parse(&v2_with(|b| b[4] = byte)).unwrap();
        assert!(matches!(repr.body, Body::V2 { auth_type: found, .. } if found == auth_type));
    }
}

#[test]
fn ipv4_header_round_trips_and_ignores_ethernet_padding() {
    let payload = v2(100, "passWord").to_bytes(ChecksumForm::VrrpOnly, unicast());
    let header = ipv4::Repr {
        src: H1,
        dst: H2,
        protocol: 112,
        ttl: 255,
        tos: ipv4::TOS_NETWORK_CONTROL,
        ident: 0x1234,
        flags_fragment: 0,
        payload_len: payload.len(),
    };
    let mut frame = vec![0; ipv4::HEADER_LEN];
    header.emit(&mut frame);
    frame.extend_from_slice(&payload);
    frame.extend_from_slice(&[0; 6]);
    let packet = ipv4::Packet::new_checked(&frame[..]).unwrap();
    assert_eq!(ipv4::Repr::parse(&packet).unwrap(), header);
    assert_eq!(packet.payload(), &payload[..]);
}

#[test]
fn ipv4_errors_are_values() {
    assert_eq!(
        ipv4::Packet::new_checked(&[0x45; 10][..]).unwrap_err(),
        Error::Truncated { needed: 20, got: 10 }
    );
    let mut header = [0u8; 20];
    header[0] = 0x65;
    assert_eq!(ipv4::Packet::new_checked(&header[..]).unwrap_err(), Error::IpVersion(6));
    header[0] = 0x44;
    header[3] = 20;
    assert!(matches!(
        ipv4::Packet::new_checked(&header[..]),
        Err(Error::IpHeaderLength { .. })
    ));
    header[0] = 0x45;
    header[3] = 40;
    assert_eq!(
        ipv4::Packet::new_checked(&header[..]).unwrap_err(),
        Error::Truncated { needed: 40, got: 20 }
    );
    header[3] = 20;
    let packet = ipv4::Packet::new_checked(&header[..]).unwrap();
    assert_eq!(ipv4::Repr::parse(&packet), Err(Error::IpChecksum));
}

fn any_repr() -> impl Strategy<Value = Repr> {
    let v2 =
        (1u8..=255, any::<u8>(), any::<u8>(), any::<[u8; 8]>()).prop_map(|(interval_secs, auth, _, data)| Body::V2 {
            interval_secs,
            auth_type: AuthType::from_byte(auth),
            auth_data: data,
        });
    let v3 = (1u16..=4095).prop_map(|interval_centis| Body::V3 { interval_centis });
    (
        any::<u8>(),
        any::<u8>(),
        prop::collection::vec(any::<u32>().prop_map(Ipv4Addr::from), 1..=255),
        prop_oneof![v2, v3],
    )
        .prop_map(|(vrid, priority, addresses, body)| Repr {
            vrid,
            priority,
            addresses,
            body,
        })
}

fn any_form() -> impl Strategy<Value = ChecksumForm> {
    prop_oneof![
        Just(ChecksumForm::PseudoHeader),
        Just(ChecksumForm::VrrpOnly),
        Just(ChecksumForm::PseudoHeaderMulticastGroup)
    ]
}

proptest! {
    #[test]
    fn emit_then_parse_returns_the_same_advert(repr in any_repr(), form in any_form(), src: u32, dst: u32) {
        let envelope = Envelope { src: Ipv4Addr::from(src), dst: Ipv4Addr::from(dst) };
        let bytes = repr.to_bytes(form, envelope);
        prop_assert_eq!(bytes.len(), repr.buffer_len());
        let (parsed, _) = Repr::parse(&Packet::new_checked(&bytes[..]).unwrap(), envelope).unwrap();
        prop_assert_eq!(parsed, repr);
    }

    #[test]
    fn parse_never_panics_on_arbitrary_bytes(bytes in prop::collection::vec(any::<u8>(), 0..1100), src: u32, dst: u32) {
        let envelope = Envelope { src: Ipv4Addr::from(src), dst: Ipv4Addr::from(dst) };
        if let Ok(packet) = Packet::new_checked(&bytes[..]) {
            let _ = Repr::parse(&packet, envelope);
        }
        if let Ok(packet) = ipv4::Packet::new_checked(&bytes[..]) {
            let _ = ipv4::Repr::parse(&packet);
            let _ = Packet::new_checked(packet.payload()).map(|inner| Repr::parse(&inner, envelope));
        }
    }

    #[test]
    fn a_single_flipped_bit_never_passes_as_valid_v2(repr in any_repr(), bit in 0usize..160) {
        prop_assume!(matches!(repr.body, Body::V2 { .. }));
        let mut bytes = repr.to_bytes(ChecksumForm::VrrpOnly, unicast());
        let bit = bit % (bytes.len() * 8);
        bytes[bit / 8] ^= 1 << (bit % 8);
        let parsed = Packet::new_checked(&bytes[..]).and_then(|packet| Repr::parse(&packet, unicast()));
        prop_assert!(parsed.is_err());
    }
}
