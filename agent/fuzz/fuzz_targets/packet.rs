//! Arbitrary bytes as an IPv4 packet and as a bare VRRP message: parsing returns errors, never panics, and
//! whatever parses re-emits to bytes that parse to the same value.
#![no_main]

use std::net::Ipv4Addr;

use agent::wire::vrrp::Packet;
use agent::wire::{ipv4, Envelope, Repr};
use libfuzzer_sys::fuzz_target;

fn check_vrrp(bytes: &[u8], envelope: Envelope) {
    let Ok(packet) = Packet::new_checked(bytes) else { return };
    let Ok((repr, form)) = Repr::parse(&packet, envelope) else { return };
    let again = repr.to_bytes(form, envelope);
    let (reparsed, _) = Repr::parse(&Packet::new_checked(&again[..]).unwrap(), envelope).unwrap();
    assert_eq!(reparsed, repr);
}

fuzz_target!(|data: &[u8]| {
    let envelope = Envelope { src: Ipv4Addr::new(10, 0, 0, 23), dst: Ipv4Addr::new(10, 0, 0, 21) };
    check_vrrp(data, envelope);
    if let Ok(packet) = ipv4::Packet::new_checked(data) {
        if ipv4::Repr::parse(&packet).is_ok() {
            check_vrrp(packet.payload(), Envelope { src: packet.src(), dst: packet.dst() });
        }
    }
});
