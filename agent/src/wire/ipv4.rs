//! The IPv4 header around an advertisement: raw sockets hand it to us on receive, and keepalived builds it itself
//! (IP_HDRINCL) on send, so both directions need it.

use std::net::Ipv4Addr;

use super::checksum;
use super::Error;

/// Header length without options.
pub const HEADER_LEN: usize = 20;
/// The TOS keepalived sends adverts with: DSCP CS6 (network control).
pub const TOS_NETWORK_CONTROL: u8 = 0xc0;

/// A view over an IPv4 packet (header and payload).
#[derive(Debug, Clone)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Packet<T> {
    pub fn new_unchecked(buffer: T) -> Packet<T> {
        Packet { buffer }
    }

    /// Checks that the header, its options and the total length fit in the buffer. Bytes past the total length
    /// (Ethernet padding) are allowed and ignored by [`Packet::payload`].
    pub fn new_checked(buffer: T) -> Result<Packet<T>, Error> {
        let packet = Packet::new_unchecked(buffer);
        let got = packet.buffer.as_ref().len();
        if got < HEADER_LEN {
            return Err(Error::Truncated {
                needed: HEADER_LEN,
                got,
            });
        }
        if packet.version() != 4 {
            return Err(Error::IpVersion(packet.version()));
        }
        let header_len = packet.header_len();
        let total_len = usize::from(packet.total_len());
        if header_len < HEADER_LEN || total_len < header_len {
            return Err(Error::IpHeaderLength { header_len, total_len });
        }
        if got < total_len {
            return Err(Error::Truncated { needed: total_len, got });
        }
        Ok(packet)
    }

    fn bytes(&self) -> &[u8] {
        self.buffer.as_ref()
    }

    pub fn version(&self) -> u8 {
        self.bytes()[0] >> 4
    }

    pub fn header_len(&self) -> usize {
        usize::from(self.bytes()[0] & 0x0f) * 4
    }

    pub fn tos(&self) -> u8 {
        self.bytes()[1]
    }

    pub fn total_len(&self) -> u16 {
        u16::from_be_bytes([self.bytes()[2], self.bytes()[3]])
    }

    pub fn ident(&self) -> u16 {
        u16::from_be_bytes([self.bytes()[4], self.bytes()[5]])
    }

    /// Flags and fragment offset as one field.
    pub fn flags_fragment(&self) -> u16 {
        u16::from_be_bytes([self.bytes()[6], self.bytes()[7]])
    }

    pub fn ttl(&self) -> u8 {
        self.bytes()[8]
    }

    pub fn protocol(&self) -> u8 {
        self.bytes()[9]
    }

    pub fn header_checksum(&self) -> u16 {
        u16::from_be_bytes([self.bytes()[10], self.bytes()[11]])
    }

    pub fn src(&self) -> Ipv4Addr {
        let b = self.bytes();
        Ipv4Addr::new(b[12], b[13], b[14], b[15])
    }

    pub fn dst(&self) -> Ipv4Addr {
        let b = self.bytes();
        Ipv4Addr::new(b[16], b[17], b[18], b[19])
    }

    pub fn header_checksum_valid(&self) -> bool {
        checksum::of(&self.bytes()[..self.header_len()]) == 0
    }

    /// The bytes between the header and the total length.
    pub fn payload(&self) -> &[u8] {
        &self.bytes()[self.header_len()..usize::from(self.total_len())]
    }
}

/// The header fields an advertisement's sender chooses. Options are never emitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Repr {
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    pub protocol: u8,
    pub ttl: u8,
    pub tos: u8,
    pub ident: u16,
    /// Flags and fragment offset (keepalived sends 0: no DF).
    pub flags_fragment: u16,
    pub payload_len: usize,
}

impl Repr {
    /// Reads the header; the header checksum is verified (the kernel has already done so for sockets, but
    /// captures have not).
    pub fn parse<T: AsRef<[u8]>>(packet: &Packet<T>) -> Result<Repr, Error> {
        if !packet.header_checksum_valid() {
            return Err(Error::IpChecksum);
        }
        Ok(Repr {
            src: packet.src(),
            dst: packet.dst(),
            protocol: packet.protocol(),
            ttl: packet.ttl(),
            tos: packet.tos(),
            ident: packet.ident(),
            flags_fragment: packet.flags_fragment(),
            payload_len: packet.payload().len(),
        })
    }

    /// Writes a 20-byte header with its checksum into the start of `buffer`.
    pub fn emit(&self, buffer: &mut [u8]) {
        let total_len = u16::try_from(HEADER_LEN + self.payload_len).expect("IPv4 packets are at most 65535 bytes");
        let header = &mut buffer[..HEADER_LEN];
        header[0] = 0x45;
        header[1] = self.tos;
        header[2..4].copy_from_slice(&total_len.to_be_bytes());
        header[4..6].copy_from_slice(&self.ident.to_be_bytes());
        header[6..8].copy_from_slice(&self.flags_fragment.to_be_bytes());
        header[8] = self.ttl;
        header[9] = self.protocol;
        header[10..12].copy_from_slice(&[0, 0]);
        header[12..16].copy_from_slice(&self.src.octets());
        header[16..20].copy_from_slice(&self.dst.octets());
        let value = checksum::of(header);
        header[10..12].copy_from_slice(&value.to_be_bytes());
    }
}
