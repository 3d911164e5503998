//! keepalived.conf, read as keepalived reads it: the VRRP part (`global_defs`, `vrrp_script`, `vrrp_instance`,
//! `vrrp_sync_group`, `include`). Every problem is reported with its file, line and column. Unknown keywords
//! are warnings, as in keepalived, or errors with `strict`; keepalived's own configuration warnings are kept
//! word for word.

mod build;
mod gaps;
mod instance;
mod security;
pub mod syntax;
mod values;

use std::fmt;
use std::net::Ipv4Addr;
use std::path::Path;
use std::time::Duration;

pub use syntax::Location;

use crate::machine::{Authentication, GarpSettings, InitialState, Settings};
use crate::wire::vrrp::MULTICAST_GROUP;
use crate::wire::{ChecksumForm, Version};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    Error,
    Warning,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    pub at: Option<Location>,
    pub severity: Severity,
    pub message: String,
}

impl Diagnostic {
    pub fn new(at: Location, severity: Severity, message: impl Into<String>) -> Diagnostic {
        Diagnostic {
            at: Some(at),
            severity,
            message: message.into(),
        }
    }

    pub fn without_location(severity: Severity, message: impl Into<String>) -> Diagnostic {
        Diagnostic {
            at: None,
            severity,
            message: message.into(),
        }
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let severity = match self.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        match &self.at {
            Some(at) => write!(f, "{at}: {severity}: {}", self.message),
            None => write!(f, "{severity}: {}", self.message),
        }
    }
}

/// The configuration could not be used: every error found, and the warnings that came with them.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigError {
    pub diagnostics: Vec<Diagnostic>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let errors: Vec<String> = self
            .diagnostics
            .iter()
            .filter(|diagnostic| diagnostic.severity == Severity::Error)
            .map(ToString::to_string)
            .collect();
        write!(f, "{}", errors.join("\n"))
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Options {
    /// Unknown keywords and keywords this agent cannot honour are errors instead of warnings.
    pub strict: bool,
}

/// A configuration that can be run, and what was wrong with it but not fatal.
#[derive(Debug, Clone, PartialEq)]
pub struct Loaded {
    pub config: Config,
    pub warnings: Vec<Diagnostic>,
}

/// Every keepalived keyword vrrpd reads but does not carry out, by where it is written (`top level`,
/// `global_defs`, `vrrp_instance`, `vrrp_sync_group`): each one warns, or is an error with `strict`.
pub fn not_carried_out() -> Vec<(&'static str, &'static str)> {
    let sections = [
        ("top level", gaps::TOP_LEVEL),
        ("global_defs", gaps::GLOBAL),
        ("vrrp_instance", gaps::INSTANCE),
        ("vrrp_sync_group", gaps::SYNC_GROUP),
    ];
    sections
        .into_iter()
        .flat_map(|(section, table)| table.iter().map(move |gap| (section, gap.keyword)))
        .collect()
}

/// Reads a configuration file and everything it includes.
pub fn load(path: &Path, options: Options) -> Result<Loaded, ConfigError> {
    let mut diagnostics = Vec::new();
    let statements = syntax::read_file(path, &mut diagnostics);
    build::finish(statements, diagnostics, options)
}

/// Reads configuration text; `name` stands for the file in locations and anchors relative includes.
pub fn parse(text: &str, name: &Path, options: Options) -> Result<Loaded, ConfigError> {
    let mut diagnostics = Vec::new();
    let statements = syntax::read_str(text, name, &mut diagnostics);
    build::finish(statements, diagnostics, options)
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Config {
    pub global: Global,
    pub scripts: Vec<Script>,
    pub instances: Vec<Instance>,
    pub sync_groups: Vec<SyncGroup>,
}

impl Config {
    pub fn script(&self, name: &str) -> Option<&Script> {
        self.scripts.iter().find(|script| script.name == name)
    }

    pub fn instance(&self, name: &str) -> Option<&Instance> {
        self.instances.iter().find(|instance| instance.name == name)
    }
}

/// The VRRP-relevant part of `global_defs`.
#[derive(Debug, Clone, PartialEq)]
pub struct Global {
    pub router_id: Option<String>,
    pub version: Version,
    pub garp_master_delay: Duration,
    pub garp_master_repeat: u32,
    pub garp_master_refresh: Duration,
    pub garp_master_refresh_repeat: u32,
    pub garp_lower_prio_delay: Option<Duration>,
    pub garp_lower_prio_repeat: Option<u32>,
    /// One gratuitous ARP, no second burst.
    pub min_garp: bool,
    pub mcast_group4: Ipv4Addr,
    pub strict: bool,
    pub check_unicast_src: bool,
    pub skip_check_adv_addr: bool,
    pub v3_checksum_as_v2: bool,
    pub lower_prio_no_advert: bool,
    pub higher_prio_send_advert: bool,
    pub startup_delay: Duration,
    /// `vrrp_down_timer_adverts`: the instances' default.
    pub down_timer_adverts: u32,
    pub script_user: Option<User>,
    pub enable_script_security: bool,
    /// `notify_fifo` and `vrrp_notify_fifo`: both get every VRRP state line.
    pub notify_fifos: Vec<NotifyFifo>,
}

/// A FIFO that receives keepalived's state lines (`INSTANCE "VI_1" MASTER 100`), and the script that reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotifyFifo {
    /// `notify_fifo` or `vrrp_notify_fifo` (vrrpd writes the same VRRP lines to both).
    pub keyword: &'static str,
    pub path: std::path::PathBuf,
    /// Who owns the FIFO when vrrpd creates it.
    pub owner: Option<User>,
    pub script: Option<Command>,
    pub at: Location,
}

impl Default for Global {
    fn default() -> Global {
        Global {
            router_id: None,
            version: Version::V2,
            garp_master_delay: Duration::from_secs(5),
            garp_master_repeat: 5,
            garp_master_refresh: Duration::ZERO,
            garp_master_refresh_repeat: 1,
            garp_lower_prio_delay: None,
            garp_lower_prio_repeat: None,
            min_garp: false,
            mcast_group4: MULTICAST_GROUP,
            strict: false,
            check_unicast_src: false,
            skip_check_adv_addr: false,
            v3_checksum_as_v2: false,
            lower_prio_no_advert: false,
            higher_prio_send_advert: false,
            startup_delay: Duration::ZERO,
            down_timer_adverts: 3,
            script_user: None,
            enable_script_security: false,
            notify_fifos: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct User {
    pub user: String,
    pub group: Option<String>,
}

impl User {
    /// The user's id and the group's (the user's own group when none is given), from the machine's user database.
    pub fn ids(&self) -> std::io::Result<(nix::unistd::Uid, nix::unistd::Gid)> {
        use std::io;
        let found = nix::unistd::User::from_name(&self.user)
            .map_err(io::Error::from)?
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, format!("no user named {}", self.user)))?;
        let gid = match &self.group {
            Some(group) => {
                nix::unistd::Group::from_name(group)
                    .map_err(io::Error::from)?
                    .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, format!("no group named {group}")))?
                    .gid
            }
            None => found.gid,
        };
        Ok((found.uid, gid))
    }
}

/// A command line keepalived runs (`notify_*`, `script`), optionally as another user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Command {
    pub line: String,
    pub user: Option<User>,
    pub at: Location,
}

/// `vrrp_script NAME { ... }`: exit status 0 is success.
#[derive(Debug, Clone, PartialEq)]
pub struct Script {
    pub name: String,
    pub command: Command,
    pub interval: Duration,
    pub timeout: Option<Duration>,
    /// 0: failure puts the tracking instances in FAULT; otherwise added to their priority while succeeding
    /// (positive) or while failing (negative).
    pub weight: i32,
    pub reverse: bool,
    pub rise: u32,
    pub fall: u32,
    pub user: Option<User>,
    pub init_fail: bool,
    pub at: Location,
}

/// A tracked interface or script, with the weight the instance gives it (None: the object's own, or FAULT).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Track {
    pub name: String,
    pub weight: Option<i32>,
    pub reverse: bool,
    pub at: Location,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peer {
    pub address: Ipv4Addr,
    pub min_ttl: Option<u8>,
    pub max_ttl: Option<u8>,
}

/// One line of `virtual_ipaddress`: `ADDRESS[/PREFIX] [brd B] [dev IF] [scope S] [label L] [no_track]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VirtualAddress {
    pub address: Ipv4Addr,
    /// 32 when not given, as keepalived does.
    pub prefix_len: u8,
    pub broadcast: Option<Ipv4Addr>,
    pub dev: Option<String>,
    pub scope: Option<String>,
    pub label: Option<String>,
    pub no_track: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Notifies {
    pub master: Option<Command>,
    pub backup: Option<Command>,
    pub fault: Option<Command>,
    pub stop: Option<Command>,
    pub master_rx_lower_pri: Option<Command>,
    /// Generic `notify`: called with `INSTANCE|GROUP NAME STATE PRIORITY` appended.
    pub any: Option<Command>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Instance {
    pub name: String,
    pub at: Location,
    pub initial_state: InitialState,
    pub interface: Option<String>,
    pub vrid: u8,
    pub priority: u8,
    pub advert_interval: Duration,
    pub version: Version,
    pub authentication: Authentication,
    pub unicast_src_ip: Option<Ipv4Addr>,
    pub unicast_peers: Vec<Peer>,
    pub mcast_src_ip: Option<Ipv4Addr>,
    /// global_defs' `vrrp_mcast_group4`.
    pub multicast_group: Ipv4Addr,
    pub virtual_addresses: Vec<VirtualAddress>,
    /// Installed and released with the others, never announced in adverts.
    pub virtual_addresses_excluded: Vec<VirtualAddress>,
    pub nopreempt: bool,
    pub preempt_delay: Duration,
    pub garp: GarpSettings,
    pub lower_prio_no_advert: bool,
    pub higher_prio_send_advert: bool,
    pub down_timer_adverts: u32,
    /// keepalived accepts packets to the addresses unless strict mode asks otherwise.
    pub accept: bool,
    pub check_unicast_src: bool,
    pub skip_check_adv_addr: bool,
    pub track_interfaces: Vec<Track>,
    pub track_scripts: Vec<Track>,
    pub notify: Notifies,
    pub checksum_form: ChecksumForm,
    /// global_defs' `vrrp_startup_delay`.
    pub startup_delay: Duration,
}

impl Instance {
    /// The same configuration, wherever in the files it is written (locations are not compared).
    pub fn same_as(&self, other: &Instance) -> bool {
        self.without_locations() == other.without_locations()
    }

    fn without_locations(&self) -> Instance {
        let nowhere = Location {
            file: std::sync::Arc::from(Path::new("")),
            line: 0,
            column: 0,
        };
        let mut copy = self.clone();
        copy.at = nowhere.clone();
        // It only matters at the daemon's first start.
        copy.startup_delay = Duration::ZERO;
        for track in copy.track_scripts.iter_mut().chain(copy.track_interfaces.iter_mut()) {
            track.at = nowhere.clone();
        }
        let notify = &mut copy.notify;
        for command in [
            &mut notify.master,
            &mut notify.backup,
            &mut notify.fault,
            &mut notify.stop,
        ]
        .into_iter()
        .chain([&mut notify.master_rx_lower_pri, &mut notify.any])
        .flatten()
        {
            command.at = nowhere.clone();
        }
        copy
    }

    /// The state machine's settings. `interface_address` is the instance interface's primary IPv4 address, the
    /// advert source when neither `unicast_src_ip` nor `mcast_src_ip` is configured.
    pub fn settings(&self, interface_address: Option<Ipv4Addr>) -> Result<Settings, String> {
        let source = self
            .unicast_src_ip
            .or(self.mcast_src_ip)
            .or(interface_address)
            .ok_or_else(|| {
                format!(
                    "({}) no source address: set unicast_src_ip or give the interface an IPv4 address",
                    self.name
                )
            })?;
        Ok(Settings {
            name: self.name.clone(),
            interface: self.interface.clone().unwrap_or_default(),
            version: self.version,
            vrid: self.vrid,
            priority: self.priority,
            initial_state: self.initial_state,
            advert_interval: self.advert_interval,
            preempt: !self.nopreempt,
            preempt_delay: self.preempt_delay,
            authentication: self.authentication.clone(),
            source,
            peers: self.unicast_peers.iter().map(|peer| peer.address).collect(),
            multicast_group: self.multicast_group,
            peer_ttl_limits: self
                .unicast_peers
                .iter()
                .filter(|peer| peer.min_ttl.is_some() || peer.max_ttl.is_some())
                .map(|peer| (peer.address, peer.min_ttl.unwrap_or(0), peer.max_ttl.unwrap_or(255)))
                .collect(),
            addresses: self.virtual_addresses.iter().map(|vip| vip.address).collect(),
            garp: self.garp.clone(),
            lower_prio_no_advert: self.lower_prio_no_advert,
            higher_prio_send_advert: self.higher_prio_send_advert,
            down_timer_adverts: self.down_timer_adverts,
            checksum_form: self.checksum_form,
            check_unicast_src: self.check_unicast_src,
            skip_check_adv_addr: self.skip_check_adv_addr,
            startup_delay: self.startup_delay,
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncGroup {
    pub name: String,
    pub at: Location,
    pub members: Vec<String>,
    pub track_interfaces: Vec<Track>,
    pub track_scripts: Vec<Track>,
    pub notify: Notifies,
}
