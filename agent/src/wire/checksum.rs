//! The Internet checksum (RFC 1071) and the IPv4 pseudo-header VRRPv3 may include.

use std::net::Ipv4Addr;

/// Adds `data` to a running one's complement sum, 16 bits at a time in network order.
/// An odd trailing byte counts as the high byte of a zero-padded word.
pub fn add(mut sum: u32, data: &[u8]) -> u32 {
    let mut words = data.chunks_exact(2);
    for word in &mut words {
        sum += u32::from(u16::from_be_bytes([word[0], word[1]]));
    }
    if let [last] = words.remainder() {
        sum += u32::from(*last) << 8;
    }
    sum
}

/// Folds the carries back in and complements: the value that goes into a checksum field.
pub fn finish(mut sum: u32) -> u16 {
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// The checksum of `data` alone.
pub fn of(data: &[u8]) -> u16 {
    finish(add(0, data))
}

/// The sum of the IPv4 pseudo-header {source, destination, zero, protocol, length} (RFC 768 layout).
pub fn ipv4_pseudo_header(src: Ipv4Addr, dst: Ipv4Addr, protocol: u8, length: u16) -> u32 {
    let mut sum = add(0, &src.octets());
    sum = add(sum, &dst.octets());
    sum += u32::from(protocol);
    sum + u32::from(length)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc1071_example_sums_to_ddf2() {
        // RFC 1071 §3: the bytes 00 01 f2 03 f4 f5 f6 f7 have the one's complement sum ddf2.
        let bytes = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
        assert_eq!(finish(add(0, &bytes)), !0xddf2);
    }

    #[test]
    fn a_buffer_containing_its_own_checksum_sums_to_zero() {
        let mut bytes = vec![
            0x45, 0x00, 0x00, 0x28, 0x12, 0x34, 0x00, 0x00, 0xff, 0x70, 0, 0, 10, 0, 0, 21, 10, 0, 0, 23,
        ];
        let checksum = of(&bytes);
        bytes[10..12].copy_from_slice(&checksum.to_be_bytes());
        assert_eq!(of(&bytes), 0);
    }

    #[test]
    fn odd_length_pads_with_a_zero_byte() {
        assert_eq!(of(&[0x12, 0x34, 0x56]), of(&[0x12, 0x34, 0x56, 0x00]));
    }
}
