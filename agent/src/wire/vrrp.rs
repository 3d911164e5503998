//! VRRP advertisements over IPv4: version 2 (RFC 3768 §5.1) and version 3 (RFC 9568 §5.2).
//!
//! [`Packet`] is a checked view over the bytes of one advertisement (the IP payload); [`Repr`] is its parsed form.
//! `Repr::parse` accepts every checksum form seen in the wild, `Repr::emit` writes the one asked for.

use std::net::Ipv4Addr;

use super::checksum;
use super::Error;

/// IP protocol number of VRRP.
pub const PROTOCOL: u8 = 112;
/// The IPv4 multicast group adverts go to (RFC 5798 §5.1.1.2).
pub const MULTICAST_GROUP: Ipv4Addr = Ipv4Addr::new(224, 0, 0, 18);
/// The only TTL a sender may use and a multicast receiver may accept.
pub const TTL: u8 = 255;
/// The only packet type defined.
pub const TYPE_ADVERTISEMENT: u8 = 1;
/// Length of the fixed header, before the addresses.
pub const HEADER_LEN: usize = 8;
/// Length of the v2 authentication data that follows the addresses.
pub const AUTH_DATA_LEN: usize = 8;

mod field {
    pub const VERSION_TYPE: usize = 0;
    pub const VRID: usize = 1;
    pub const PRIORITY: usize = 2;
    pub const COUNT: usize = 3;
    /// v2: auth type (byte 4) and interval in seconds (byte 5); v3: 4 reserved bits + 12-bit interval in centiseconds.
    pub const AUTH_TYPE: usize = 4;
    pub const V2_INTERVAL: usize = 5;
    pub const V3_INTERVAL: std::ops::Range<usize> = 4..6;
    pub const CHECKSUM: std::ops::Range<usize> = 6..8;
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Version {
    V2,
    V3,
}

impl Version {
    pub fn number(self) -> u8 {
        match self {
            Version::V2 => 2,
            Version::V3 => 3,
        }
    }
}

/// v2 authentication types (RFC 2338 §5.3.6; RFC 3768 keeps the field, keepalived still speaks type 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AuthType {
    None,
    /// Simple text password: 8 bytes, zero padded.
    Password,
    /// IPsec AH: the VRRP packet is carried inside AH, so the field is only a marker.
    Ah,
    Unknown(u8),
}

impl AuthType {
    pub fn from_byte(byte: u8) -> AuthType {
        match byte {
            0 => AuthType::None,
            1 => AuthType::Password,
            2 => AuthType::Ah,
            other => AuthType::Unknown(other),
        }
    }

    pub fn to_byte(self) -> u8 {
        match self {
            AuthType::None => 0,
            AuthType::Password => 1,
            AuthType::Ah => 2,
            AuthType::Unknown(other) => other,
        }
    }
}

/// How a VRRPv3 checksum over IPv4 is computed. v2 never includes a pseudo-header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ChecksumForm {
    /// keepalived's and FRR's default: an IPv4 pseudo-header with the packet's real destination.
    PseudoHeader,
    /// keepalived before 1.3.6 and old FRR in unicast: the pseudo-header names 224.0.0.18 whatever the destination.
    PseudoHeaderMulticastGroup,
    /// RFC 9568 §5.2.8, Cisco, Juniper, keepalived's `v3_checksum_as_v2`: the VRRP message alone.
    VrrpOnly,
}

/// Version-specific part of an advertisement.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Body {
    V2 {
        /// Advertisement interval in whole seconds.
        interval_secs: u8,
        auth_type: AuthType,
        /// Always on the wire and in the checksum, whatever the auth type.
        auth_data: [u8; AUTH_DATA_LEN],
    },
    V3 {
        /// Maximum advertisement interval in centiseconds (12 bits).
        interval_centis: u16,
    },
}

/// A parsed advertisement.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Repr {
    pub vrid: u8,
    pub priority: u8,
    pub addresses: Vec<Ipv4Addr>,
    pub body: Body,
}

/// The addresses of the IP packet an advertisement travels in: v3 checksums may depend on them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Envelope {
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
}

/// A read (and, over mutable bytes, write) view of an advertisement.
#[derive(Debug, Clone)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// A view without any check: accessors may panic on short buffers. Use for emitting into a sized buffer.
    pub fn new_unchecked(buffer: T) -> Packet<T> {
        Packet { buffer }
    }

    /// A view whose accessors cannot panic: the buffer holds the fixed header, every address the count announces
    /// and (v2) the authentication data, and nothing more.
    pub fn new_checked(buffer: T) -> Result<Packet<T>, Error> {
        let packet = Packet::new_unchecked(buffer);
        packet.check_len()?;
        Ok(packet)
    }

    pub fn check_len(&self) -> Result<(), Error> {
        let got = self.buffer.as_ref().len();
        if got < HEADER_LEN {
            return Err(Error::Truncated {
                needed: HEADER_LEN,
                got,
            });
        }
        let version = self.version_number();
        let auth_len = match version {
            2 => AUTH_DATA_LEN,
            3 => 0,
            other => return Err(Error::Version(other)),
        };
        let needed = HEADER_LEN + 4 * usize::from(self.count()) + auth_len;
        if got < needed {
            return Err(Error::Truncated { needed, got });
        }
        if got > needed {
            return Err(Error::Length {
                count: self.count(),
                expected: needed,
                got,
            });
        }
        Ok(())
    }

    pub fn into_inner(self) -> T {
        self.buffer
    }

    fn bytes(&self) -> &[u8] {
        self.buffer.as_ref()
    }

    pub fn version_number(&self) -> u8 {
        self.bytes()[field::VERSION_TYPE] >> 4
    }

    pub fn version(&self) -> Option<Version> {
        match self.version_number() {
            2 => Some(Version::V2),
            3 => Some(Version::V3),
            _ => None,
        }
    }

    pub fn kind(&self) -> u8 {
        self.bytes()[field::VERSION_TYPE] & 0x0f
    }

    pub fn vrid(&self) -> u8 {
        self.bytes()[field::VRID]
    }

    pub fn priority(&self) -> u8 {
        self.bytes()[field::PRIORITY]
    }

    pub fn count(&self) -> u8 {
        self.bytes()[field::COUNT]
    }

    /// v2 only.
    pub fn auth_type(&self) -> AuthType {
        AuthType::from_byte(self.bytes()[field::AUTH_TYPE])
    }

    /// v2 only: seconds.
    pub fn interval_secs(&self) -> u8 {
        self.bytes()[field::V2_INTERVAL]
    }

    /// v3 only: centiseconds; the 4 reserved bits are ignored, as RFC 9568 §5.2.5 asks.
    pub fn interval_centis(&self) -> u16 {
        let bytes = &self.bytes()[field::V3_INTERVAL];
        u16::from_be_bytes([bytes[0], bytes[1]]) & 0x0fff
    }

    pub fn checksum(&self) -> u16 {
        let bytes = &self.bytes()[field::CHECKSUM];
        u16::from_be_bytes([bytes[0], bytes[1]])
    }

    pub fn address(&self, index: usize) -> Ipv4Addr {
        let start = HEADER_LEN + 4 * index;
        let bytes = &self.bytes()[start..start + 4];
        Ipv4Addr::new(bytes[0], bytes[1], bytes[2], bytes[3])
    }

    pub fn addresses(&self) -> impl Iterator<Item = Ipv4Addr> + '_ {
        (0..usize::from(self.count())).map(|index| self.address(index))
    }

    /// v2 only.
    pub fn auth_data(&self) -> [u8; AUTH_DATA_LEN] {
        let start = HEADER_LEN + 4 * usize::from(self.count());
        let mut data = [0; AUTH_DATA_LEN];
        data.copy_from_slice(&self.bytes()[start..start + AUTH_DATA_LEN]);
        data
    }

    /// The checksum form that makes this packet valid, if any. v2 packets are valid only as [`ChecksumForm::VrrpOnly`].
    pub fn checksum_form(&self, envelope: Envelope) -> Option<ChecksumForm> {
        let bytes = self.bytes();
        if self.version_number() == 2 {
            return (checksum::of(bytes) == 0).then_some(ChecksumForm::VrrpOnly);
        }
        [
            ChecksumForm::PseudoHeader,
            ChecksumForm::VrrpOnly,
            ChecksumForm::PseudoHeaderMulticastGroup,
        ]
        .into_iter()
        .find(|form| checksum::finish(checksum::add(initial_sum(*form, envelope, bytes.len()), bytes)) == 0)
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    fn bytes_mut(&mut self) -> &mut [u8] {
        self.buffer.as_mut()
    }

    pub fn set_version_and_kind(&mut self, version: Version, kind: u8) {
        self.bytes_mut()[field::VERSION_TYPE] = (version.number() << 4) | (kind & 0x0f);
    }

    pub fn set_vrid(&mut self, vrid: u8) {
        self.bytes_mut()[field::VRID] = vrid;
    }

    pub fn set_priority(&mut self, priority: u8) {
        self.bytes_mut()[field::PRIORITY] = priority;
    }

    pub fn set_count(&mut self, count: u8) {
        self.bytes_mut()[field::COUNT] = count;
    }

    pub fn set_auth_type(&mut self, auth_type: AuthType) {
        self.bytes_mut()[field::AUTH_TYPE] = auth_type.to_byte();
    }

    pub fn set_interval_secs(&mut self, secs: u8) {
        self.bytes_mut()[field::V2_INTERVAL] = secs;
    }

    /// Writes the reserved bits as zero.
    pub fn set_interval_centis(&mut self, centis: u16) {
        self.bytes_mut()[field::V3_INTERVAL].copy_from_slice(&(centis & 0x0fff).to_be_bytes());
    }

    pub fn set_checksum(&mut self, value: u16) {
        self.bytes_mut()[field::CHECKSUM].copy_from_slice(&value.to_be_bytes());
    }

    pub fn set_address(&mut self, index: usize, address: Ipv4Addr) {
        let start = HEADER_LEN + 4 * index;
        self.bytes_mut()[start..start + 4].copy_from_slice(&address.octets());
    }

    pub fn set_auth_data(&mut self, data: [u8; AUTH_DATA_LEN]) {
        let start = HEADER_LEN + 4 * usize::from(self.count());
        self.bytes_mut()[start..start + AUTH_DATA_LEN].copy_from_slice(&data);
    }

    /// Computes and stores the checksum in the given form (ignored for v2, which has only one).
    pub fn fill_checksum(&mut self, form: ChecksumForm, envelope: Envelope) {
        self.set_checksum(0);
        let form = if self.version_number() == 2 {
            ChecksumForm::VrrpOnly
        } else {
            form
        };
        let bytes = self.bytes();
        let value = checksum::finish(checksum::add(initial_sum(form, envelope, bytes.len()), bytes));
        self.set_checksum(value);
    }
}

fn initial_sum(form: ChecksumForm, envelope: Envelope, len: usize) -> u32 {
    // VRRP messages are at most 8 + 255 * 4 + 8 bytes, so the length always fits.
    let len = len as u16;
    match form {
        ChecksumForm::VrrpOnly => 0,
        ChecksumForm::PseudoHeader => checksum::ipv4_pseudo_header(envelope.src, envelope.dst, PROTOCOL, len),
        ChecksumForm::PseudoHeaderMulticastGroup => {
            checksum::ipv4_pseudo_header(envelope.src, MULTICAST_GROUP, PROTOCOL, len)
        }
    }
}

impl Repr {
    pub fn version(&self) -> Version {
        match self.body {
            Body::V2 { .. } => Version::V2,
            Body::V3 { .. } => Version::V3,
        }
    }

    /// The advertisement interval in centiseconds, whatever the version.
    pub fn interval_centis(&self) -> u32 {
        match self.body {
            Body::V2 { interval_secs, .. } => u32::from(interval_secs) * 100,
            Body::V3 { interval_centis } => u32::from(interval_centis),
        }
    }

    /// Parses and validates an advertisement: version, type, address count, interval and checksum (any form,
    /// see [`ChecksumForm`]). Returns the form that matched, so a receiver can answer in kind.
    pub fn parse<T: AsRef<[u8]>>(packet: &Packet<T>, envelope: Envelope) -> Result<(Repr, ChecksumForm), Error> {
        packet.check_len()?;
        let version = packet.version().ok_or(Error::Version(packet.version_number()))?;
        if packet.kind() != TYPE_ADVERTISEMENT {
            return Err(Error::Type(packet.kind()));
        }
        if packet.count() == 0 {
            return Err(Error::NoAddresses);
        }
        let body = match version {
            Version::V2 => Body::V2 {
                interval_secs: packet.interval_secs(),
                auth_type: packet.auth_type(),
                auth_data: packet.auth_data(),
            },
            Version::V3 => Body::V3 {
                interval_centis: packet.interval_centis(),
            },
        };
        let repr = Repr {
            vrid: packet.vrid(),
            priority: packet.priority(),
            addresses: packet.addresses().collect(),
            body,
        };
        if repr.interval_centis() == 0 {
            return Err(Error::ZeroInterval);
        }
        let form = packet.checksum_form(envelope).ok_or(Error::Checksum {
            version,
            got: packet.checksum(),
        })?;
        Ok((repr, form))
    }

    pub fn buffer_len(&self) -> usize {
        let auth_len = match self.body {
            Body::V2 { .. } => AUTH_DATA_LEN,
            Body::V3 { .. } => 0,
        };
        HEADER_LEN + 4 * self.addresses.len() + auth_len
    }

    /// Writes the advertisement into a buffer of exactly [`Repr::buffer_len`] bytes, checksum included.
    ///
    /// Panics if the buffer has the wrong size or there are more than 255 addresses: both are programming errors.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, packet: &mut Packet<T>, form: ChecksumForm, envelope: Envelope) {
        assert_eq!(
            packet.bytes().len(),
            self.buffer_len(),
            "VRRP buffer must match the advertisement's length"
        );
        let count = u8::try_from(self.addresses.len()).expect("at most 255 addresses in an advertisement");
        packet.set_version_and_kind(self.version(), TYPE_ADVERTISEMENT);
        packet.set_vrid(self.vrid);
        packet.set_priority(self.priority);
        packet.set_count(count);
        for (index, address) in self.addresses.iter().enumerate() {
            packet.set_address(index, *address);
        }
        match self.body {
            Body::V2 {
                interval_secs,
                auth_type,
                auth_data,
            } => {
                packet.set_auth_type(auth_type);
                packet.set_interval_secs(interval_secs);
                packet.set_auth_data(auth_data);
            }
            Body::V3 { interval_centis } => packet.set_interval_centis(interval_centis),
        }
        packet.fill_checksum(form, envelope);
    }

    /// The advertisement as a fresh byte vector.
    pub fn to_bytes(&self, form: ChecksumForm, envelope: Envelope) -> Vec<u8> {
        let mut packet = Packet::new_unchecked(vec![0; self.buffer_len()]);
        self.emit(&mut packet, form, envelope);
        packet.into_inner()
    }
}

/// The 8 bytes a v2 `auth_type PASS` password occupies: truncated to 8 bytes, zero padded.
pub fn password_bytes(password: &str) -> [u8; AUTH_DATA_LEN] {
    let mut data = [0; AUTH_DATA_LEN];
    let bytes = password.as_bytes();
    let len = bytes.len().min(AUTH_DATA_LEN);
    data[..len].copy_from_slice(&bytes[..len]);
    data
}
