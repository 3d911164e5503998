//! Packets on the wire, smoltcp style: a checked view over bytes (`Packet`) and a parsed value (`Repr`) with
//! `parse` and `emit`. Every malformed input is an [`Error`], never a panic.
//!
//! IPv4 only for now; VRRPv3 over IPv6 would add an `ipv6` view and the IPv6 pseudo-header next to these.

pub mod checksum;
pub mod ipv4;
pub mod vrrp;

pub use vrrp::{AuthType, Body, ChecksumForm, Envelope, Repr, Version};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    #[error("truncated: {got} bytes where {needed} are needed")]
    Truncated { needed: usize, got: usize },
    #[error("{got} bytes where {count} addresses make {expected}")]
    Length { count: u8, expected: usize, got: usize },
    #[error("VRRP version {0} (2 and 3 are known)")]
    Version(u8),
    #[error("VRRP packet type {0} (only 1, advertisement, exists)")]
    Type(u8),
    #[error("no virtual addresses (count 0)")]
    NoAddresses,
    #[error("advertisement interval 0")]
    ZeroInterval,
    #[error("invalid VRRPv{} checksum {got:#06x}", version.number())]
    Checksum { version: Version, got: u16 },
    #[error("IP version {0} where 4 is expected")]
    IpVersion(u8),
    #[error("IPv4 header length {header_len} with total length {total_len}")]
    IpHeaderLength { header_len: usize, total_len: usize },
    #[error("invalid IPv4 header checksum")]
    IpChecksum,
}
