//! What goes into a machine besides time (received adverts) and what comes out of it (actions).

use std::net::Ipv4Addr;

use super::State;
use crate::log::LogLine;

/// An advert as it arrived: the IP header fields the protocol looks at, and the VRRP bytes.
#[derive(Debug, Clone, Copy)]
pub struct Received<'a> {
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    pub ttl: u8,
    pub payload: &'a [u8],
}

/// An advert to send: IP source, destination and the VRRP bytes (TTL 255 and protocol 112 go without saying).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outgoing {
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    pub priority: u8,
    pub payload: Vec<u8>,
}

/// Why the state changed, for machines reading the event stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    Startup,
    /// Master_Down_Timer expired (including after a priority-0 advert shortened it to Skew_Time).
    MasterDown,
    /// The owner starts as master at once.
    Owner,
    HigherPriority {
        from: Ipv4Addr,
        priority: u8,
    },
    SamePriorityHigherAddress {
        from: Ipv4Addr,
    },
    Fault,
    FaultCleared,
    Shutdown,
    /// Another member of the instance's `vrrp_sync_group` changed state.
    Sync,
}

/// Why an advert was dropped; each one is counted by the daemon.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Discard {
    Malformed(crate::wire::Error),
    Ttl(u8),
    Version(u8),
    /// For another virtual router; silent, as on a shared segment this is normal.
    OtherVrid(u8),
    AuthType(u8),
    Password,
    IntervalMismatch,
    Checksum,
    /// The advert lists a different number of addresses than we have.
    AddressCount,
    /// One of our addresses is not in the advert.
    AddressMissing,
    NotAPeer,
    /// Received in a state that does not listen (Initialize, Fault).
    NotListening,
}

impl Discard {
    /// A short stable name, for counters and event streams.
    pub fn name(&self) -> &'static str {
        match self {
            Discard::Malformed(_) => "malformed",
            Discard::Ttl(_) => "ttl",
            Discard::Version(_) => "version",
            Discard::OtherVrid(_) => "other_vrid",
            Discard::AuthType(_) => "auth_type",
            Discard::Password => "password",
            Discard::IntervalMismatch => "interval_mismatch",
            Discard::Checksum => "checksum",
            Discard::AddressCount => "address_count",
            Discard::AddressMissing => "address_missing",
            Discard::NotAPeer => "not_a_peer",
            Discard::NotListening => "not_listening",
        }
    }
}

/// The notify scripts keepalived would run (`notify_master` ... and the generic `notify`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Notify {
    Master,
    Backup,
    Fault,
    Stop,
    /// keepalived's `notify_master_rx_lower_pri`: a master heard a lower priority (another master exists).
    MasterRxLowerPriority,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    Send(Outgoing),
    AddAddresses,
    RemoveAddresses,
    /// Send `repeat` gratuitous ARPs for each virtual address.
    GratuitousArp {
        repeat: u32,
    },
    Notify {
        kind: Notify,
        priority: u8,
    },
    StateChanged {
        from: State,
        to: State,
        reason: Reason,
    },
    /// An advert passed validation and was acted upon.
    Accepted {
        from: Ipv4Addr,
        priority: u8,
    },
    Discarded {
        from: Ipv4Addr,
        reason: Discard,
    },
    Log(LogLine),
}
