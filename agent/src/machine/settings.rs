//! What one instance is configured to be: everything the protocol needs, nothing about sockets.

use std::net::Ipv4Addr;
use std::time::Duration;

use crate::wire::vrrp::{AUTH_DATA_LEN, MULTICAST_GROUP};
use crate::wire::{ChecksumForm, Version};

/// What the configuration asks the instance to start as. Only an owner (priority 255) starting as master skips
/// the backup wait, as in keepalived.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InitialState {
    Master,
    Backup,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Authentication {
    None,
    /// `auth_type PASS`: the password's first 8 bytes, zero padded.
    Password([u8; AUTH_DATA_LEN]),
}

/// Gratuitous ARP scheduling (keepalived's `garp_*` keywords).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GarpSettings {
    /// ARPs per address in each burst on becoming master.
    pub master_repeat: u32,
    /// Delay of the second burst after becoming master; `None` for no second burst.
    pub master_delay: Option<Duration>,
    /// Period of refresh bursts while master; `None` for none.
    pub master_refresh: Option<Duration>,
    pub master_refresh_repeat: u32,
    /// ARPs per address when a master hears a lower priority (split-brain healing); `None` for none.
    /// keepalived defaults both lower-priority settings to the master ones.
    pub lower_prio_repeat: Option<u32>,
    /// Delay of the second lower-priority burst; `None` for no second burst.
    pub lower_prio_delay: Option<Duration>,
}

impl Default for GarpSettings {
    fn default() -> GarpSettings {
        GarpSettings {
            master_repeat: 5,
            master_delay: Some(Duration::from_secs(5)),
            master_refresh: None,
            master_refresh_repeat: 1,
            lower_prio_repeat: Some(5),
            lower_prio_delay: Some(Duration::from_secs(5)),
        }
    }
}

/// Everything the protocol needs to know about one instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// Instance name, as logged: `(name) Entering MASTER STATE`.
    pub name: String,
    pub interface: String,
    pub version: Version,
    pub vrid: u8,
    /// Configured priority, 1-255.
    pub priority: u8,
    pub initial_state: InitialState,
    /// v2: whole seconds; v3: a multiple of 10 ms.
    pub advert_interval: Duration,
    pub preempt: bool,
    /// Zero for none.
    pub preempt_delay: Duration,
    pub authentication: Authentication,
    /// Our primary address: the source of our adverts and the tie-break on equal priority.
    pub source: Ipv4Addr,
    /// Unicast peers; empty means multicast to `multicast_group`.
    pub peers: Vec<Ipv4Addr>,
    /// Where multicast adverts go: 224.0.0.18 unless `vrrp_mcast_group4` says otherwise.
    pub multicast_group: Ipv4Addr,
    /// keepalived's per-peer `min_ttl` / `max_ttl`: unicast adverts from that peer outside the range are dropped.
    pub peer_ttl_limits: Vec<(Ipv4Addr, u8, u8)>,
    /// The virtual addresses announced in adverts.
    pub addresses: Vec<Ipv4Addr>,
    pub garp: GarpSettings,
    /// keepalived's `lower_prio_no_advert`: a master does not answer a lower priority with an advert.
    pub lower_prio_no_advert: bool,
    /// keepalived's `higher_prio_send_advert`: a master hearing a better one advertises once before stepping down,
    /// so a third router that missed the better master's adverts still learns a master exists.
    pub higher_prio_send_advert: bool,
    /// keepalived's `down_timer_adverts` (RFC: 3).
    pub down_timer_adverts: u32,
    /// How v3 checksums are sent (received adverts may use any form).
    pub checksum_form: ChecksumForm,
    /// keepalived's `check_unicast_src`: adverts from addresses that are not peers are dropped.
    pub check_unicast_src: bool,
    /// keepalived's `skip_check_adv_addr`: the address list of adverts from the known master is not checked.
    pub skip_check_adv_addr: bool,
    /// keepalived's `vrrp_startup_delay`: after startup, Master_Down_Timer counts from the end of this delay
    /// (adverts heard meanwhile are processed as usual), and an owner waits for it before taking over.
    pub startup_delay: Duration,
}

impl Settings {
    /// The seed's shape: v2, VRID and priority given, one-second adverts, preempt on, keepalived's defaults.
    pub fn new(name: &str, vrid: u8, priority: u8, source: Ipv4Addr) -> Settings {
        Settings {
            name: name.to_string(),
            interface: "eth0".to_string(),
            version: Version::V2,
            vrid,
            priority,
            initial_state: InitialState::Backup,
            advert_interval: Duration::from_secs(1),
            preempt: true,
            preempt_delay: Duration::ZERO,
            authentication: Authentication::None,
            source,
            peers: Vec::new(),
            multicast_group: MULTICAST_GROUP,
            peer_ttl_limits: Vec::new(),
            addresses: Vec::new(),
            garp: GarpSettings::default(),
            lower_prio_no_advert: false,
            higher_prio_send_advert: false,
            down_timer_adverts: 3,
            checksum_form: ChecksumForm::PseudoHeader,
            check_unicast_src: false,
            skip_check_adv_addr: false,
            startup_delay: Duration::ZERO,
        }
    }

    pub(super) fn is_unicast(&self) -> bool {
        !self.peers.is_empty()
    }

    pub(super) fn destinations(&self) -> Vec<Ipv4Addr> {
        if self.is_unicast() {
            self.peers.clone()
        } else {
            vec![self.multicast_group]
        }
    }
}
