//! `vrrp_instance`: its keywords, then keepalived's whole-instance rules (`vrrp_complete_instance`) with its
//! warning texts.

use std::time::Duration;

use super::build::Builder;
use super::gaps;
use super::syntax::{Location, Statement, Word};
use super::values::whole_seconds;
use super::{Config, Instance, Notifies, Peer, VirtualAddress};
use crate::machine::{Authentication, GarpSettings, InitialState, OWNER_PRIORITY};
use crate::wire::vrrp::password_bytes;
use crate::wire::{ChecksumForm, Version};

impl Builder {
    /// One `virtual_ipaddress` line.
    pub(super) fn virtual_address(&mut self, line: &Statement) -> Option<VirtualAddress> {
        let keyword = "virtual_ipaddress";
        let first = &line.keyword;
        let (address, prefix_len) = match first.text.split_once('/') {
            Some((address, prefix)) => {
                let prefix_word = Word {
                    text: prefix.to_string(),
                    at: first.at.clone(),
                };
                (address, self.number(keyword, &prefix_word, 0u8, 32)?)
            }
            None => (first.text.as_str(), 32),
        };
        let address = self.address(
            keyword,
            &Word {
                text: address.to_string(),
                at: first.at.clone(),
            },
        )?;
        let mut vip = VirtualAddress {
            address,
            prefix_len,
            broadcast: None,
            dev: None,
            scope: None,
            label: None,
            no_track: false,
        };
        let mut words = line.args.iter();
        while let Some(option) = words.next() {
            let mut value = || {
                let value = words.next();
                if value.is_none() {
                    self.error(&option.at, format!("{keyword}: '{}' needs a value", option.text));
                }
                value
            };
            match option.text.as_str() {
                "brd" | "broadcast" => {
                    if let Some(word) = value() {
                        vip.broadcast = if word.text == "+" || word.text == "-" {
                            None
                        } else {
                            self.address(keyword, word)
                        };
                    }
                }
                "dev" => vip.dev = value().map(|word| word.text.clone()),
                "scope" => vip.scope = value().map(|word| word.text.clone()),
                "label" => vip.label = value().map(|word| word.text.clone()),
                "no_track" => vip.no_track = true,
                "track" => vip.no_track = false,
                "preferred_lft" | "valid_lft" => {
                    let _ = value();
                }
                other => self.error(&option.at, format!("{keyword}: unknown option '{other}'")),
            }
        }
        if let Some(label) = &vip.label {
            if label.len() > 15 {
                let message = format!("{keyword}: label '{label}' is longer than 15 bytes");
                self.error(&line.keyword.at, message);
            }
        }
        Some(vip)
    }

    pub(super) fn instance(&mut self, statement: &Statement, config: &Config) -> Option<Instance> {
        let name = self.name(statement)?;
        let at = statement.keyword.at.clone();
        let global = &config.global;
        let block = self.block(statement);
        let mut instance = Instance {
            name: name.clone(),
            at: at.clone(),
            initial_state: InitialState::Backup,
            interface: None,
            vrid: 0,
            priority: 0,
            advert_interval: Duration::from_secs(1),
            version: global.version,
            authentication: Authentication::None,
            unicast_src_ip: None,
            unicast_peers: Vec::new(),
            mcast_src_ip: None,
            multicast_group: global.mcast_group4,
            virtual_addresses: Vec::new(),
            virtual_addresses_excluded: Vec::new(),
            nopreempt: false,
            preempt_delay: Duration::ZERO,
            garp: GarpSettings::default(),
            lower_prio_no_advert: global.lower_prio_no_advert,
            higher_prio_send_advert: global.higher_prio_send_advert,
            down_timer_adverts: global.down_timer_adverts,
            accept: !global.strict,
            check_unicast_src: global.check_unicast_src,
            skip_check_adv_addr: global.skip_check_adv_addr,
            track_interfaces: Vec::new(),
            track_scripts: Vec::new(),
            notify: Notifies::default(),
            startup_delay: global.startup_delay,
            checksum_form: if global.v3_checksum_as_v2 {
                ChecksumForm::VrrpOnly
            } else {
                ChecksumForm::PseudoHeader
            },
        };
        let mut garp_master_delay = Some(global.garp_master_delay);
        let mut garp_master_repeat = global.garp_master_repeat;
        let mut garp_master_refresh = global.garp_master_refresh;
        let mut garp_master_refresh_repeat = global.garp_master_refresh_repeat;
        let mut garp_lower_prio_delay = global.garp_lower_prio_delay;
        let mut garp_lower_prio_repeat = global.garp_lower_prio_repeat;
        let mut advert_int: Option<(Duration, Location)> = None;
        let mut authentication: Option<(Location, Option<String>, Option<Word>)> = None;
        let mut vrid_at = None;
        let mut priority_given = false;
        let mut preempt_delay_at = None;
        let mut nopreempt_at = None;
        for item in block {
            let keyword = item.keyword.text.as_str();
            match keyword {
                "state" => {
                    if let Some(word) = self.one(item) {
                        instance.initial_state = match word.text.as_str() {
                            "MASTER" => InitialState::Master,
                            "BACKUP" => InitialState::Backup,
                            other => {
                                self.warn(
                                    &word.at,
                                    format!("({name}) unknown state '{other}', defaulting to BACKUP"),
                                );
                                InitialState::Backup
                            }
                        };
                    }
                }
                "interface" => instance.interface = self.one(item).map(|word| word.text.clone()),
                "virtual_router_id" => {
                    vrid_at = Some(item.keyword.at.clone());
                    instance.vrid = self.one_number(item, 1, 255).unwrap_or(0);
                }
                "priority" => {
                    priority_given = true;
                    instance.priority = self.one_number(item, 1, 255).unwrap_or(100);
                }
                "advert_int" => {
                    if let Some(interval) = self.seconds(item, 0.01, 255.0) {
                        advert_int = Some((interval, item.args[0].at.clone()));
                    }
                }
                "version" => {
                    if let Some(version) = self.one_number::<u8>(item, 2, 3) {
                        instance.version = if version == 2 { Version::V2 } else { Version::V3 };
                    }
                }
                "authentication" => {
                    let block = self.block(item);
                    let mut kind = None;
                    let mut password = None;
                    for line in block {
                        match line.keyword.text.as_str() {
                            "auth_type" => kind = self.one(line).map(|word| word.text.clone()),
                            "auth_pass" => password = self.one(line).cloned(),
                            _ => self.unknown(line),
                        }
                    }
                    authentication = Some((item.keyword.at.clone(), kind, password));
                }
                "unicast_src_ip" => {
                    if let Some(word) = self.one(item) {
                        instance.unicast_src_ip = self.address(keyword, word);
                    }
                }
                "mcast_src_ip" => {
                    if let Some(word) = self.one(item) {
                        instance.mcast_src_ip = self.address(keyword, word);
                    }
                }
                "unicast_peer" => {
                    for line in self.block(item) {
                        if let Some(peer) = self.peer(line) {
                            instance.unicast_peers.push(peer);
                        }
                    }
                }
                "virtual_ipaddress" | "virtual_ipaddress_excluded" => {
                    for line in self.block(item) {
                        if let Some(vip) = self.virtual_address(line) {
                            if keyword == "virtual_ipaddress" {
                                instance.virtual_addresses.push(vip);
                            } else {
                                instance.virtual_addresses_excluded.push(vip);
                            }
                        }
                    }
                }
                "nopreempt" => {
                    nopreempt_at = Some(item.keyword.at.clone());
                    instance.nopreempt = true;
                }
                "preempt" => instance.nopreempt = false,
                "preempt_delay" => {
                    preempt_delay_at = Some(item.keyword.at.clone());
                    instance.preempt_delay = self.seconds(item, 0.0, 1000.0).unwrap_or_default();
                }
                "garp_master_delay" => garp_master_delay = self.one_number(item, 0, 1000).map(whole_seconds),
                "garp_master_repeat" => {
                    garp_master_repeat = self.one_number(item, 1, 1000).unwrap_or(garp_master_repeat)
                }
                "garp_master_refresh" => {
                    garp_master_refresh = self
                        .one_number(item, 0, 1_000_000)
                        .map_or(garp_master_refresh, whole_seconds)
                }
                "garp_master_refresh_repeat" => {
                    garp_master_refresh_repeat = self.one_number(item, 1, 1000).unwrap_or(garp_master_refresh_repeat)
                }
                "garp_lower_prio_delay" => garp_lower_prio_delay = self.one_number(item, 0, 1000).map(whole_seconds),
                "garp_lower_prio_repeat" => garp_lower_prio_repeat = self.one_number(item, 0, 1000),
                "lower_prio_no_advert" => instance.lower_prio_no_advert = self.flag(item),
                "higher_prio_send_advert" => instance.higher_prio_send_advert = self.flag(item),
                "down_timer_adverts" => {
                    instance.down_timer_adverts = self.one_number(item, 1, 100).unwrap_or(global.down_timer_adverts)
                }
                "accept" => instance.accept = true,
                "check_unicast_src" => instance.check_unicast_src = true,
                "skip_check_adv_addr" => instance.skip_check_adv_addr = self.flag(item),
                "track_interface" => instance.track_interfaces = self.tracks(item),
                "track_script" => instance.track_scripts = self.tracks(item),
                "mcast_dst_ip" => {
                    if let Some(word) = self.one(item) {
                        instance.multicast_group = self.address(keyword, word).unwrap_or(instance.multicast_group);
                    }
                }
                _ if self.gap(item, gaps::INSTANCE) => {}
                keyword if keyword.starts_with("notify") => self.notify(item, &mut instance.notify),
                _ => self.unknown(item),
            }
        }

        // Whole-instance rules, in the spirit of keepalived's vrrp_complete_instance().
        if vrid_at.is_none() {
            self.error(&at, format!("({name}) the virtual router id must be set"));
            return None;
        }
        if instance.vrid == 0 {
            return None;
        }
        if !priority_given {
            // keepalived derives a missing priority from the state.
            instance.priority = if instance.initial_state == InitialState::Master {
                OWNER_PRIORITY
            } else {
                100
            };
        }
        if let Some((interval, interval_at)) = advert_int {
            instance.advert_interval = self.round_interval(&name, instance.version, interval, &interval_at);
        }
        if let Some((auth_at, kind, password)) = authentication {
            instance.authentication =
                self.authentication(&name, instance.version, &auth_at, kind, password, global.strict);
        }
        if instance.nopreempt && instance.initial_state == InitialState::Master {
            let at = nopreempt_at.clone().unwrap_or(at.clone());
            self.warn(
                &at,
                format!("({name}) Warning - nopreempt will not work with initial state MASTER - clearing"),
            );
            instance.nopreempt = false;
        }
        if instance.nopreempt && instance.priority == OWNER_PRIORITY {
            let at = nopreempt_at.clone().unwrap_or(at.clone());
            let message = format!(
                "({name}) nopreempt is incompatible with priority {}. resetting nopreempt",
                instance.priority
            );
            self.warn(&at, message);
            instance.nopreempt = false;
        }
        if let Some(delay_at) = preempt_delay_at.filter(|_| instance.preempt_delay > Duration::ZERO) {
            if instance.initial_state == InitialState::Master {
                self.warn(
                    &delay_at,
                    format!("({name}) Warning - preempt delay will not work with initial state MASTER - clearing"),
                );
                instance.preempt_delay = Duration::ZERO;
            } else if instance.nopreempt {
                self.warn(
                    &delay_at,
                    format!("({name}) preempt_delay is incompatible with nopreempt mode - resetting"),
                );
                instance.preempt_delay = Duration::ZERO;
            } else if global.strict {
                self.warn(
                    &delay_at,
                    format!("({name}) preempt_delay is incompatible with strict mode - resetting"),
                );
                instance.preempt_delay = Duration::ZERO;
            }
        }
        if global.strict && !instance.unicast_peers.is_empty() {
            self.error(&at, format!("({name}) unicast_peer is not allowed with vrrp_strict"));
        }
        if instance.interface.is_none() && instance.unicast_peers.is_empty() {
            self.error(&at, format!("({name}) no interface: multicast adverts need one"));
        }
        if instance.virtual_addresses.is_empty() {
            self.warn(&at, format!("({name}) No VIP specified; at least one is required"));
        }
        if instance.virtual_addresses.len() > 255 {
            self.error(
                &at,
                format!("({name}) more than 255 virtual addresses: an advert cannot carry them"),
            );
        }
        for track in &instance.track_scripts {
            if config.script(&track.name).is_none() {
                self.warn(
                    &track.at,
                    format!("({name}) track script {} not found, ignoring...", track.name),
                );
            }
        }
        instance
            .track_scripts
            .retain(|track| config.script(&track.name).is_some());
        instance.garp = GarpSettings {
            master_repeat: if global.min_garp { 1 } else { garp_master_repeat },
            master_delay: if global.min_garp {
                None
            } else {
                garp_master_delay.filter(|delay| !delay.is_zero())
            },
            master_refresh: Some(garp_master_refresh).filter(|period| !period.is_zero()),
            master_refresh_repeat: garp_master_refresh_repeat,
            lower_prio_repeat: Some(garp_lower_prio_repeat.unwrap_or(garp_master_repeat)).filter(|repeat| *repeat > 0),
            lower_prio_delay: Some(garp_lower_prio_delay.unwrap_or(garp_master_delay.unwrap_or_default()))
                .filter(|delay| !delay.is_zero()),
        };
        if global.strict {
            instance.lower_prio_no_advert = true;
            instance.garp.lower_prio_repeat = None;
            instance.garp.lower_prio_delay = None;
        }
        Some(instance)
    }

    pub(super) fn peer(&mut self, line: &Statement) -> Option<Peer> {
        let address = self.address("unicast_peer", &line.keyword)?;
        let mut peer = Peer {
            address,
            min_ttl: None,
            max_ttl: None,
        };
        let mut words = line.args.iter();
        while let Some(option) = words.next() {
            let Some(value) = words.next() else {
                self.error(&option.at, format!("unicast_peer: '{}' needs a value", option.text));
                break;
            };
            match option.text.as_str() {
                "min_ttl" => peer.min_ttl = self.number("min_ttl", value, 0, 255),
                "max_ttl" => peer.max_ttl = self.number("max_ttl", value, 0, 255),
                other => self.error(&option.at, format!("unicast_peer: unknown option '{other}'")),
            }
        }
        Some(peer)
    }

    /// v2 adverts carry whole seconds, v3 centiseconds: keepalived rounds half up, with these warnings.
    pub(super) fn round_interval(
        &mut self,
        name: &str,
        version: Version,
        interval: Duration,
        at: &Location,
    ) -> Duration {
        let micros = interval.as_micros() as u64;
        let seconds = micros as f64 / 1e6;
        match version {
            Version::V2 => {
                if micros.is_multiple_of(1_000_000) {
                    return interval;
                }
                self.warn(
                    at,
                    format!("({name}) VRRPv2 advertisement interval {seconds:.6}s must be an integer. rounding"),
                );
                Duration::from_secs(((micros + 500_000) / 1_000_000).max(1))
            }
            Version::V3 => {
                if micros.is_multiple_of(10_000) && micros <= 40_950_000 {
                    return interval;
                }
                if micros > 40_950_000 {
                    let message = format!(
                        "({name}) VRRPv3 advertisement interval {seconds:.2}s is out of range. Must be less than 40.96s. Setting to 40.95s"
                    );
                    self.warn(at, message);
                    return Duration::from_millis(40_950);
                }
                let message =
                    format!("({name}) VRRPv3 advertisement interval {seconds:.6}s must be in units of 10ms - rounding");
                self.warn(at, message);
                Duration::from_micros((((micros + 5_000) / 10_000).max(1)) * 10_000)
            }
        }
    }

    pub(super) fn authentication(
        &mut self,
        name: &str,
        version: Version,
        at: &Location,
        kind: Option<String>,
        password: Option<Word>,
        strict: bool,
    ) -> Authentication {
        if version == Version::V3 {
            self.warn(
                at,
                format!("({name}) VRRP version 3 does not support authentication. Ignoring."),
            );
            return Authentication::None;
        }
        if strict {
            self.warn(
                at,
                format!("({name}) Strict mode does not support authentication. Ignoring."),
            );
            return Authentication::None;
        }
        match kind.as_deref() {
            Some("PASS") => {}
            Some("AH") => {
                self.strict_warn(
                    at,
                    format!("({name}) auth_type AH is not supported by this agent - ignoring"),
                );
                return Authentication::None;
            }
            Some(other) => {
                self.error(at, format!("({name}) unknown authentication type '{other}'"));
                return Authentication::None;
            }
            None => {
                self.error(at, format!("({name}) authentication without auth_type"));
                return Authentication::None;
            }
        }
        let Some(password) = password else {
            self.warn(
                at,
                format!("({name}) Authentication specified but no password given. Ignoring"),
            );
            return Authentication::None;
        };
        if password.text.len() > 8 {
            self.warn(&password.at, "Truncating auth_pass to 8 characters");
        }
        Authentication::Password(password_bytes(&password.text))
    }
}
