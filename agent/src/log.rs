//! keepalived's log lines, word for word as Debian's keepalived 2.2.7 prints them (checked against the binary in
//! `tests/fixtures/keepalived/`), so that whatever watches a keepalived log keeps working. Each line knows whether
//! keepalived prints it only with `-D`. Lines about a sender keep its address for the event stream even where
//! keepalived's text does not show it.

use std::fmt;
use std::net::Ipv4Addr;

/// One log line of one instance: displayed as keepalived writes it after the `Keepalived_vrrp[PID]: ` prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogLine {
    pub instance: String,
    pub message: Message,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    EnteringMasterState,
    EnteringBackupState,
    EnteringFaultState,
    EnteringBackupStateInit,
    EnteringFaultStateInit,
    ReceiveAdvertisementTimeout,
    MasterReceivedHigherPriority {
        from: Ipv4Addr,
        theirs: u8,
        ours: u8,
    },
    MasterReceivedSamePriorityHigherAddress {
        from: Ipv4Addr,
        priority: u8,
    },
    /// A master hears a weaker master (split brain healing); `forcing` unless `lower_prio_no_advert`.
    ReceivedLowerPriority {
        from: Ipv4Addr,
        theirs: u8,
        ours: u8,
        forcing: bool,
    },
    BackupDiscardingLowerPriority {
        from: Ipv4Addr,
        priority: u8,
    },
    BackupReceivedPriorityZero,
    MasterReceivedPriorityZero,
    SentPriorityZero,
    SettingVips,
    RemovingVips,
    SendingGratuitousArps {
        interface: String,
        address: Ipv4Addr,
    },
    ChangingEffectivePriority {
        from: u8,
        to: u8,
    },
    AdvertIntervalUpdated {
        from_ms: u64,
        to_ms: u64,
    },
    StartPreemptDelay {
        delay: std::time::Duration,
    },
    EqualPriorityOurAddress,
    TtlOutOfRange {
        ttl: u8,
        min: u8,
        max: u8,
    },
    StopPreemptDelay,
    InvalidTtl {
        from: Ipv4Addr,
        got: u8,
        expected: u8,
    },
    WrongVersion {
        from: Ipv4Addr,
        got: u8,
        expected: u8,
    },
    IntervalMismatch {
        from: Ipv4Addr,
        mine_secs: u64,
        got_secs: u64,
    },
    InvalidChecksum {
        version: u8,
        from: Ipv4Addr,
    },
    InvalidPassword {
        from: Ipv4Addr,
    },
    WrongAuthType {
        got: u8,
        from: Ipv4Addr,
        expected: u8,
    },
    AddressCountMismatch {
        expected: usize,
        got: usize,
    },
    AddressMissing {
        vrid: u8,
        address: Ipv4Addr,
    },
    NotAUnicastPeer {
        from: Ipv4Addr,
    },
    /// Packets keepalived drops before they reach the instance logic (short, bad type, zero count or interval).
    Malformed {
        from: Ipv4Addr,
        error: String,
    },
}

impl Message {
    /// Lines keepalived writes only with `-D` / `--log-detail`.
    pub fn is_detail(&self) -> bool {
        matches!(
            self,
            Message::ReceiveAdvertisementTimeout
                | Message::BackupReceivedPriorityZero
                | Message::MasterReceivedPriorityZero
                | Message::SentPriorityZero
                | Message::SettingVips
                | Message::RemovingVips
                | Message::SendingGratuitousArps { .. }
                | Message::AdvertIntervalUpdated { .. }
                | Message::StartPreemptDelay { .. }
                | Message::StopPreemptDelay
        )
    }
}

impl fmt::Display for LogLine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = &self.instance;
        match &self.message {
            Message::EnteringMasterState => write!(f, "({name}) Entering MASTER STATE"),
            Message::EnteringBackupState => write!(f, "({name}) Entering BACKUP STATE"),
            Message::EnteringFaultState => write!(f, "({name}) Entering FAULT STATE"),
            Message::EnteringBackupStateInit => write!(f, "({name}) Entering BACKUP STATE (init)"),
            Message::EnteringFaultStateInit => write!(f, "({name}) Entering FAULT STATE (init)"),
            Message::ReceiveAdvertisementTimeout => write!(f, "({name}) Receive advertisement timeout"),
            Message::MasterReceivedHigherPriority { from, theirs, ours } => {
                write!(f, "({name}) Master received advert from {from} with higher priority {theirs}, ours {ours}")
            }
            Message::MasterReceivedSamePriorityHigherAddress { from, priority } => write!(
                f,
                "({name}) Master received advert from {from} with same priority {priority} but higher IP address than ours"
            ),
            Message::ReceivedLowerPriority { from, theirs, ours, forcing } => {
                let suffix = if *forcing { ", forcing new election" } else { "" };
                write!(f, "({name}) Received advert from {from} with lower priority {theirs}, ours {ours}{suffix}")
            }
            Message::BackupDiscardingLowerPriority { from, priority } => {
                write!(f, "({name}) received lower priority ({priority}) advert from {from} - discarding")
            }
            Message::BackupReceivedPriorityZero => write!(f, "({name}) Backup received priority 0 advertisement"),
            Message::MasterReceivedPriorityZero => write!(f, "({name}) Master received priority 0 message"),
            Message::SentPriorityZero => write!(f, "({name}) sent 0 priority"),
            Message::SettingVips => write!(f, "({name}) setting VIPs."),
            Message::RemovingVips => write!(f, "({name}) removing VIPs."),
            Message::SendingGratuitousArps { interface, address } => {
                write!(f, "({name}) Sending/queueing gratuitous ARPs on {interface} for {address}")
            }
            Message::ChangingEffectivePriority { from, to } => {
                write!(f, "({name}) Changing effective priority from {from} to {to}")
            }
            Message::AdvertIntervalUpdated { from_ms, to_ms } => {
                write!(f, "({name}) advertisement interval updated from {from_ms}ms to {to_ms}ms by master")
            }
            Message::StartPreemptDelay { delay } => {
                write!(f, "({name}) start preempt delay ({}.{:06})", delay.as_secs(), delay.subsec_micros())
            }
            Message::TtlOutOfRange { ttl, min, max } => write!(f, "({name}) TTL/HL {ttl} not in range {min} - {max}"),
            Message::EqualPriorityOurAddress => {
                write!(f, "({name}) WARNING - equal priority advert received from remote host with our IP address.")
            }
            Message::StopPreemptDelay => write!(f, "({name}) stop preempt delay"),
            Message::InvalidTtl { got, expected, .. } => {
                write!(f, "({name}) invalid TTL/HL. Received {got} and expect {expected}")
            }
            Message::WrongVersion { got, expected, .. } => {
                write!(f, "({name}) wrong version. Received {got} and expect {expected}")
            }
            Message::IntervalMismatch { mine_secs, got_secs, .. } => {
                write!(f, "({name}) advertisement interval mismatch mine={mine_secs} sec rcv'd={got_secs} sec")
            }
            Message::InvalidChecksum { version, .. } => write!(f, "({name}) Invalid VRRPv{version} checksum"),
            Message::InvalidPassword { .. } => write!(f, "({name}) received an invalid passwd!"),
            Message::WrongAuthType { got, expected, .. } => {
                write!(f, "({name}) received a {got} auth, expecting {expected}!")
            }
            Message::AddressCountMismatch { expected, got } => {
                write!(f, "({name}) received an unexpected ip number count {got}, expected {expected}!")
            }
            Message::AddressMissing { vrid, address } => {
                write!(f, "({name}) ip address associated with VRID {vrid} not present in MASTER advert: {address}")
            }
            Message::NotAUnicastPeer { from } => write!(f, "({name}) unicast source address {from} not a unicast peer"),
            Message::Malformed { from, error } => write!(f, "({name}) invalid packet from {from}: {error}"),
        }
    }
}
