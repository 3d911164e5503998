//! From statements to a typed [`Config`]: values checked where they are written, then keepalived's whole-instance
//! rules (`vrrp_complete_instance`) applied with its warning texts.

use std::net::Ipv4Addr;
use std::time::Duration;

use super::syntax::{Location, Statement, Word};
use super::{
    Command, Config, ConfigError, Diagnostic, Global, Instance, Loaded, Notifies, Options, Peer, Script, Severity,
    SyncGroup, Track, User, VirtualAddress,
};
use crate::machine::{Authentication, GarpSettings, InitialState, OWNER_PRIORITY};
use crate::wire::vrrp::password_bytes;
use crate::wire::{ChecksumForm, Version};

/// keepalived keywords outside VRRP (the LVS checker, BFD, static addresses...): accepted and left alone.
const OTHER_DAEMONS_BLOCKS: &[&str] = &[
    "virtual_server",
    "virtual_server_group",
    "static_ipaddress",
    "static_routes",
    "static_rules",
    "linkbeat_interfaces",
    "bfd_instance",
    "track_file",
    "vrrp_track_file",
    "track_process",
    "track_bfd",
    "garp_group",
];

/// `global_defs` keywords that do not concern this agent (mail alerts, LVS, SNMP, D-Bus...).
const IGNORED_GLOBALS: &[&str] = &[
    "notification_email",
    "notification_email_from",
    "smtp_server",
    "smtp_connect_timeout",
    "smtp_helo_name",
    "smtp_alert",
    "smtp_alert_vrrp",
    "smtp_alert_checker",
    "lvs_id",
    "lvs_sync_daemon",
    "lvs_flush",
    "lvs_timeouts",
    "enable_snmp_vrrp",
    "enable_snmp_keepalived",
    "enable_snmp_rfcv2",
    "enable_snmp_rfcv3",
    "enable_snmp_checker",
    "enable_traps",
    "enable_dbus",
    "dynamic_interfaces",
    "max_auto_priority",
    "vrrp_priority",
    "checker_priority",
    "bfd_priority",
    "vrrp_no_swap",
    "checker_no_swap",
    "vrrp_rt_priority",
    "checker_rt_priority",
    "vrrp_cpu_affinity",
    "vrrp_garp_interval",
    "vrrp_gna_interval",
    "vrrp_iptables",
    "vrrp_ipsets",
    "nftables",
    "vrrp_notify_priority_changes",
    "script_security",
    "process_names",
    "vrrp_process_name",
    "vrrp_rx_bufs_policy",
    "vrrp_rx_bufs_multiplier",
    "umask",
    "instance",
    "child_wait_time",
];

/// Instance keywords that change nothing this agent does.
const IGNORED_IN_INSTANCE: &[&str] = &[
    "smtp_alert",
    "debug",
    "dont_track_primary",
    "kernel_rx_buf_size",
    "unicast_ttl",
];

/// Instance keywords keepalived honours and this agent cannot (yet): a warning, an error with `strict`.
const UNSUPPORTED_IN_INSTANCE: &[&str] = &[
    "use_vmac",
    "vmac_xmit_base",
    "native_ipv6",
    "virtual_routes",
    "virtual_rules",
    "track_file",
    "track_process",
    "track_bfd",
    "mcast_dst_ip",
    "unicast_fault_no_peer",
    "track_src_ip",
    "old_unicast_checksum",
    "strict_mode",
];

pub(super) fn finish(
    statements: Vec<Statement>,
    diagnostics: Vec<Diagnostic>,
    options: Options,
) -> Result<Loaded, ConfigError> {
    let mut builder = Builder { diagnostics, options };
    let config = builder.config(&statements);
    let Builder { mut diagnostics, .. } = builder;
    // In file order, whichever pass found them.
    diagnostics.sort_by(|a, b| {
        let key = |d: &Diagnostic| d.at.as_ref().map(|at| (at.file.clone(), at.line, at.column));
        key(a).cmp(&key(b))
    });
    if diagnostics
        .iter()
        .any(|diagnostic| diagnostic.severity == Severity::Error)
    {
        return Err(ConfigError { diagnostics });
    }
    Ok(Loaded {
        config,
        warnings: diagnostics,
    })
}

struct Builder {
    diagnostics: Vec<Diagnostic>,
    options: Options,
}

impl Builder {
    fn error(&mut self, at: &Location, message: impl Into<String>) {
        self.diagnostics
            .push(Diagnostic::new(at.clone(), Severity::Error, message));
    }

    fn warn(&mut self, at: &Location, message: impl Into<String>) {
        self.diagnostics
            .push(Diagnostic::new(at.clone(), Severity::Warning, message));
    }

    /// A warning, or an error when `strict`.
    fn strict_warn(&mut self, at: &Location, message: impl Into<String>) {
        let severity = if self.options.strict {
            Severity::Error
        } else {
            Severity::Warning
        };
        self.diagnostics.push(Diagnostic::new(at.clone(), severity, message));
    }

    fn unknown(&mut self, statement: &Statement) {
        self.strict_warn(
            &statement.keyword.at,
            format!("Unknown keyword '{}'", statement.keyword.text),
        );
    }

    fn unsupported(&mut self, statement: &Statement) {
        let message = format!("'{}' is not supported by this agent - ignoring", statement.keyword.text);
        self.strict_warn(&statement.keyword.at, message);
    }

    /// The block of a block keyword; an error if it has none.
    fn block<'a>(&mut self, statement: &'a Statement) -> &'a [Statement] {
        match &statement.block {
            Some(block) => block,
            None => {
                self.error(
                    &statement.keyword.at,
                    format!("{}: missing '{{' block", statement.keyword.text),
                );
                &[]
            }
        }
    }

    /// The single argument of a keyword; extra arguments are an error too.
    fn one<'a>(&mut self, statement: &'a Statement) -> Option<&'a Word> {
        let keyword = &statement.keyword;
        match statement.args.as_slice() {
            [word] => Some(word),
            [] => {
                self.error(&keyword.at, format!("{}: missing value", keyword.text));
                None
            }
            [_, extra, ..] => {
                self.error(&extra.at, format!("{}: unexpected '{}'", keyword.text, extra.text));
                None
            }
        }
    }

    fn number<T>(&mut self, keyword: &str, word: &Word, min: T, max: T) -> Option<T>
    where
        T: TryFrom<i64> + Into<i64> + std::fmt::Display + Copy,
    {
        match word.text.parse::<i64>() {
            Ok(value) if value >= min.into() && value <= max.into() => T::try_from(value).ok(),
            Ok(_) => {
                self.error(
                    &word.at,
                    format!("{keyword}: number '{}' outside range [{min}, {max}]", word.text),
                );
                None
            }
            Err(_) => {
                self.error(&word.at, format!("{keyword}: invalid number '{}'", word.text));
                None
            }
        }
    }

    fn one_number<T>(&mut self, statement: &Statement, min: T, max: T) -> Option<T>
    where
        T: TryFrom<i64> + Into<i64> + std::fmt::Display + Copy,
    {
        let word = self.one(statement)?;
        self.number(&statement.keyword.text, word, min, max)
    }

    /// Decimal seconds with up to microsecond precision, within `[min, max]` seconds.
    fn seconds(&mut self, statement: &Statement, min: f64, max: f64) -> Option<Duration> {
        let word = self.one(statement)?;
        let keyword = &statement.keyword.text;
        let Some(micros) = parse_micros(&word.text) else {
            self.error(&word.at, format!("{keyword}: invalid number '{}'", word.text));
            return None;
        };
        let value = micros as f64 / 1e6;
        if value < min || value > max {
            self.error(
                &word.at,
                format!("{keyword}: number '{}' outside range [{min}, {max}]", word.text),
            );
            return None;
        }
        Some(Duration::from_micros(micros))
    }

    fn address(&mut self, keyword: &str, word: &Word) -> Option<Ipv4Addr> {
        match word.text.parse::<Ipv4Addr>() {
            Ok(address) => Some(address),
            Err(_) if word.text.contains(':') => {
                self.error(
                    &word.at,
                    format!("{keyword}: '{}': IPv6 is not supported yet", word.text),
                );
                None
            }
            Err(_) => {
                self.error(&word.at, format!("{keyword}: invalid IPv4 address '{}'", word.text));
                None
            }
        }
    }

    /// Flags like `vrrp_strict` take an optional true/false (keepalived's `get_value_str` booleans).
    fn flag(&mut self, statement: &Statement) -> bool {
        match statement.args.as_slice() {
            [] => true,
            [word] => match word.text.to_ascii_lowercase().as_str() {
                "true" | "on" | "yes" => true,
                "false" | "off" | "no" => false,
                _ => {
                    self.error(
                        &word.at,
                        format!(
                            "{}: expected true or false, not '{}'",
                            statement.keyword.text, word.text
                        ),
                    );
                    false
                }
            },
            [_, extra, ..] => {
                self.error(
                    &extra.at,
                    format!("{}: unexpected '{}'", statement.keyword.text, extra.text),
                );
                false
            }
        }
    }

    fn config(&mut self, statements: &[Statement]) -> Config {
        let mut config = Config::default();
        let mut instances = Vec::new();
        for statement in statements {
            match statement.keyword.text.as_str() {
                "global_defs" => {
                    let block = self.block(statement);
                    self.global(block, &mut config.global);
                }
                "vrrp_script" => {
                    if let Some(script) = self.script(statement) {
                        if config.script(&script.name).is_some() {
                            self.error(
                                &statement.keyword.at,
                                format!("vrrp_script {} defined twice", script.name),
                            );
                        }
                        config.scripts.push(script);
                    }
                }
                "vrrp_instance" => instances.push(statement),
                "vrrp_sync_group" => {
                    if let Some(group) = self.sync_group(statement) {
                        config.sync_groups.push(group);
                    }
                }
                keyword if OTHER_DAEMONS_BLOCKS.contains(&keyword) => {}
                _ => self.unknown(statement),
            }
        }
        // Instances last: they inherit global defaults wherever global_defs appears in the file.
        for statement in instances {
            if let Some(instance) = self.instance(statement, &config) {
                if config.instance(&instance.name).is_some() {
                    self.error(
                        &statement.keyword.at,
                        format!("vrrp_instance {} defined twice", instance.name),
                    );
                }
                let clash = config.instances.iter().find(|other| {
                    other.vrid == instance.vrid
                        && other.interface == instance.interface
                        && other.version == instance.version
                });
                if let Some(other) = clash {
                    let message = format!(
                        "({}) virtual_router_id {} is already used by {} on the same interface",
                        instance.name, instance.vrid, other.name
                    );
                    self.error(&instance.at, message);
                }
                config.instances.push(instance);
            }
        }
        for group in &config.sync_groups {
            for member in &group.members {
                if config.instance(member).is_none() {
                    let message = format!("vrrp_sync_group {}: no vrrp_instance named {member}", group.name);
                    self.diagnostics
                        .push(Diagnostic::new(group.at.clone(), Severity::Error, message));
                }
            }
        }
        config
    }

    fn global(&mut self, block: &[Statement], global: &mut Global) {
        for statement in block {
            let keyword = statement.keyword.text.as_str();
            match keyword {
                "router_id" => global.router_id = self.one(statement).map(|word| word.text.clone()),
                "vrrp_version" => {
                    if let Some(version) = self.one_number::<u8>(statement, 2, 3) {
                        global.version = if version == 2 { Version::V2 } else { Version::V3 };
                    }
                }
                "vrrp_garp_master_delay" => {
                    global.garp_master_delay = self
                        .one_number(statement, 0, 1000)
                        .map_or(global.garp_master_delay, whole_seconds)
                }
                "vrrp_garp_master_repeat" => {
                    global.garp_master_repeat = self.one_number(statement, 1, 1000).unwrap_or(global.garp_master_repeat)
                }
                "vrrp_garp_master_refresh" => {
                    global.garp_master_refresh = self
                        .one_number(statement, 0, 1_000_000)
                        .map_or(global.garp_master_refresh, whole_seconds)
                }
                "vrrp_garp_master_refresh_repeat" => {
                    global.garp_master_refresh_repeat = self
                        .one_number(statement, 1, 1000)
                        .unwrap_or(global.garp_master_refresh_repeat)
                }
                "vrrp_garp_lower_prio_delay" => {
                    global.garp_lower_prio_delay = self.one_number(statement, 0, 1000).map(whole_seconds)
                }
                "vrrp_garp_lower_prio_repeat" => global.garp_lower_prio_repeat = self.one_number(statement, 0, 1000),
                "vrrp_min_garp" => global.min_garp = self.flag(statement),
                "vrrp_mcast_group4" => {
                    if let Some(word) = self.one(statement) {
                        global.mcast_group4 = self.address(keyword, word).unwrap_or(global.mcast_group4);
                    }
                }
                "vrrp_strict" => global.strict = self.flag(statement),
                "vrrp_check_unicast_src" => global.check_unicast_src = self.flag(statement),
                "vrrp_skip_check_adv_addr" => global.skip_check_adv_addr = self.flag(statement),
                "v3_checksum_as_v2" => global.v3_checksum_as_v2 = self.flag(statement),
                "vrrp_lower_prio_no_advert" => global.lower_prio_no_advert = self.flag(statement),
                "vrrp_higher_prio_send_advert" => global.higher_prio_send_advert = self.flag(statement),
                "vrrp_startup_delay" => {
                    global.startup_delay = self.seconds(statement, 0.0, 3600.0).unwrap_or(global.startup_delay)
                }
                "script_user" => global.script_user = self.user(statement, &statement.args),
                "enable_script_security" => global.enable_script_security = self.flag(statement),
                "vrrp_notify_fifo" => global.notify_fifo = self.one(statement).map(|word| word.text.clone()),
                "net_namespace" | "vrrp_mcast_group6" | "vrrp_garp_interval" | "vrrp_gna_interval" => {
                    self.unsupported(statement)
                }
                keyword if IGNORED_GLOBALS.contains(&keyword) => {}
                _ => self.unknown(statement),
            }
        }
    }

    fn user(&mut self, statement: &Statement, words: &[Word]) -> Option<User> {
        match words {
            [user] => Some(User {
                user: user.text.clone(),
                group: None,
            }),
            [user, group] => Some(User {
                user: user.text.clone(),
                group: Some(group.text.clone()),
            }),
            [] => {
                self.error(
                    &statement.keyword.at,
                    format!("{}: missing user name", statement.keyword.text),
                );
                None
            }
            [_, _, extra, ..] => {
                self.error(
                    &extra.at,
                    format!("{}: unexpected '{}'", statement.keyword.text, extra.text),
                );
                None
            }
        }
    }

    /// `notify_master "/path/script args" [user [group]]`.
    fn command(&mut self, statement: &Statement) -> Option<Command> {
        let Some((line, rest)) = statement.args.split_first() else {
            self.error(
                &statement.keyword.at,
                format!("{}: missing command", statement.keyword.text),
            );
            return None;
        };
        let user = if rest.is_empty() {
            None
        } else {
            self.user(statement, rest)
        };
        Some(Command {
            line: line.text.clone(),
            user,
            at: line.at.clone(),
        })
    }

    fn name(&mut self, statement: &Statement) -> Option<String> {
        match statement.args.as_slice() {
            [name] => Some(name.text.clone()),
            [] => {
                self.error(
                    &statement.keyword.at,
                    format!("{}: missing name", statement.keyword.text),
                );
                None
            }
            [_, extra, ..] => {
                self.error(
                    &extra.at,
                    format!("{}: unexpected '{}'", statement.keyword.text, extra.text),
                );
                None
            }
        }
    }

    fn script(&mut self, statement: &Statement) -> Option<Script> {
        let name = self.name(statement)?;
        let block = self.block(statement);
        let mut script = Script {
            name: name.clone(),
            command: Command {
                line: String::new(),
                user: None,
                at: statement.keyword.at.clone(),
            },
            interval: Duration::from_secs(1),
            timeout: None,
            weight: 0,
            reverse: false,
            rise: 1,
            fall: 1,
            user: None,
            init_fail: false,
            at: statement.keyword.at.clone(),
        };
        let mut has_command = false;
        for item in block {
            match item.keyword.text.as_str() {
                "script" => {
                    if let Some(command) = self.command(item) {
                        script.command = Command { user: None, ..command };
                        has_command = true;
                    }
                }
                "interval" => script.interval = self.seconds(item, 0.000001, 86400.0).unwrap_or(script.interval),
                "timeout" => script.timeout = self.seconds(item, 0.000001, 86400.0),
                "weight" => {
                    if let Some((weight, reverse)) = self.weight(item) {
                        script.weight = weight;
                        script.reverse = reverse;
                    }
                }
                "rise" => script.rise = self.one_number(item, 1, 1_000_000).unwrap_or(script.rise),
                "fall" => script.fall = self.one_number(item, 1, 1_000_000).unwrap_or(script.fall),
                "user" => script.user = self.user(item, &item.args),
                "init_fail" => script.init_fail = self.flag(item),
                _ => self.unknown(item),
            }
        }
        if !has_command {
            self.error(&statement.keyword.at, format!("vrrp_script {name}: no 'script' given"));
            return None;
        }
        Some(script)
    }

    /// `weight N [reverse]`, N in [-253, 253].
    fn weight(&mut self, statement: &Statement) -> Option<(i32, bool)> {
        let (value, rest) = statement.args.split_first().or_else(|| {
            self.error(&statement.keyword.at, "weight: missing value");
            None
        })?;
        let weight = self.number("weight", value, -253, 253)?;
        match rest {
            [] => Some((weight, false)),
            [word] if word.text == "reverse" => Some((weight, true)),
            [extra, ..] => {
                self.error(&extra.at, format!("weight: unexpected '{}'", extra.text));
                None
            }
        }
    }

    /// Lines of `track_interface` / `track_script`: `NAME [weight N [reverse]]`.
    fn tracks(&mut self, statement: &Statement) -> Vec<Track> {
        let block = self.block(statement);
        let mut tracks = Vec::new();
        for line in block {
            let mut track = Track {
                name: line.keyword.text.clone(),
                weight: None,
                reverse: false,
                at: line.keyword.at.clone(),
            };
            match line.args.split_first() {
                None => {}
                Some((word, _)) if word.text == "weight" => {
                    let weight_statement = Statement {
                        keyword: word.clone(),
                        args: line.args[1..].to_vec(),
                        block: None,
                    };
                    if let Some((weight, reverse)) = self.weight(&weight_statement) {
                        track.weight = Some(weight);
                        track.reverse = reverse;
                    }
                }
                Some((word, _)) => self.error(
                    &word.at,
                    format!("{}: unexpected '{}'", statement.keyword.text, word.text),
                ),
            }
            tracks.push(track);
        }
        tracks
    }

    fn sync_group(&mut self, statement: &Statement) -> Option<SyncGroup> {
        let name = self.name(statement)?;
        let block = self.block(statement);
        let mut group = SyncGroup {
            name,
            at: statement.keyword.at.clone(),
            members: Vec::new(),
            track_interfaces: Vec::new(),
            track_scripts: Vec::new(),
            notify: Notifies::default(),
        };
        for item in block {
            match item.keyword.text.as_str() {
                "group" => {
                    let members = self.block(item);
                    for member in members {
                        group.members.push(member.keyword.text.clone());
                        if let Some(extra) = member.args.first() {
                            self.error(&extra.at, format!("group: unexpected '{}'", extra.text));
                        }
                    }
                }
                "track_interface" => group.track_interfaces = self.tracks(item),
                "track_script" => group.track_scripts = self.tracks(item),
                "smtp_alert" | "global_tracking" | "sync_group_tracking_weight" => {}
                keyword if keyword.starts_with("notify") => self.notify(item, &mut group.notify),
                _ => self.unknown(item),
            }
        }
        Some(group)
    }

    fn notify(&mut self, statement: &Statement, notify: &mut Notifies) {
        let command = self.command(statement);
        match statement.keyword.text.as_str() {
            "notify_master" => notify.master = command,
            "notify_backup" => notify.backup = command,
            "notify_fault" => notify.fault = command,
            "notify_stop" => notify.stop = command,
            "notify_master_rx_lower_pri" => notify.master_rx_lower_pri = command,
            "notify" => notify.any = command,
            _ => self.unknown(statement),
        }
    }

    /// One `virtual_ipaddress` line.
    fn virtual_address(&mut self, line: &Statement) -> Option<VirtualAddress> {
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

    fn instance(&mut self, statement: &Statement, config: &Config) -> Option<Instance> {
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
            virtual_addresses: Vec::new(),
            virtual_addresses_excluded: Vec::new(),
            nopreempt: false,
            preempt_delay: Duration::ZERO,
            garp: GarpSettings::default(),
            lower_prio_no_advert: global.lower_prio_no_advert,
            higher_prio_send_advert: global.higher_prio_send_advert,
            down_timer_adverts: 3,
            accept: !global.strict,
            check_unicast_src: global.check_unicast_src,
            skip_check_adv_addr: global.skip_check_adv_addr,
            track_interfaces: Vec::new(),
            track_scripts: Vec::new(),
            notify: Notifies::default(),
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
                "down_timer_adverts" => instance.down_timer_adverts = self.one_number(item, 1, 100).unwrap_or(3),
                "accept" => instance.accept = true,
                "no_accept" => instance.accept = false,
                "check_unicast_src" => instance.check_unicast_src = true,
                "skip_check_adv_addr" => instance.skip_check_adv_addr = self.flag(item),
                "track_interface" => instance.track_interfaces = self.tracks(item),
                "track_script" => instance.track_scripts = self.tracks(item),
                keyword if keyword.starts_with("notify") => self.notify(item, &mut instance.notify),
                keyword if IGNORED_IN_INSTANCE.contains(&keyword) => {}
                keyword if UNSUPPORTED_IN_INSTANCE.contains(&keyword) => self.unsupported(item),
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

    fn peer(&mut self, line: &Statement) -> Option<Peer> {
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
    fn round_interval(&mut self, name: &str, version: Version, interval: Duration, at: &Location) -> Duration {
        let micros = interval.as_micros() as u64;
        let seconds = micros as f64 / 1e6;
        match version {
            Version::V2 => {
                if micros % 1_000_000 == 0 {
                    return interval;
                }
                self.warn(
                    at,
                    format!("({name}) VRRPv2 advertisement interval {seconds:.6}s must be an integer. rounding"),
                );
                Duration::from_secs(((micros + 500_000) / 1_000_000).max(1))
            }
            Version::V3 => {
                if micros % 10_000 == 0 && micros <= 40_950_000 {
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

    fn authentication(
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

/// Decimal seconds ("1", "0.1", "1.000001") to microseconds, without going through floating point.
fn parse_micros(text: &str) -> Option<u64> {
    let (whole, fraction) = text.split_once('.').unwrap_or((text, ""));
    if whole.is_empty() && fraction.is_empty() {
        return None;
    }
    if !whole.chars().all(|c| c.is_ascii_digit()) || !fraction.chars().all(|c| c.is_ascii_digit()) || fraction.len() > 6
    {
        return None;
    }
    let whole: u64 = if whole.is_empty() { 0 } else { whole.parse().ok()? };
    let mut micros = 0;
    for digit in fraction.chars().chain(std::iter::repeat('0')).take(6) {
        micros = micros * 10 + u64::from(digit.to_digit(10)?);
    }
    whole.checked_mul(1_000_000)?.checked_add(micros)
}

fn whole_seconds(seconds: u32) -> Duration {
    Duration::from_secs(u64::from(seconds))
}

#[cfg(test)]
mod tests {
    use super::parse_micros;

    #[test]
    fn decimal_seconds_are_exact_to_the_microsecond() {
        assert_eq!(parse_micros("1"), Some(1_000_000));
        assert_eq!(parse_micros("0.1"), Some(100_000));
        assert_eq!(parse_micros(".5"), Some(500_000));
        assert_eq!(parse_micros("1.000001"), Some(1_000_001));
        assert_eq!(parse_micros("1.0000001"), None);
        assert_eq!(parse_micros("-1"), None);
        assert_eq!(parse_micros("1e3"), None);
        assert_eq!(parse_micros("."), None);
    }
}
