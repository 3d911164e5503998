//! From statements to a typed [`Config`]: the top level, `global_defs`, `vrrp_script` and `vrrp_sync_group`.
//! Instances are in `instance`, value parsing in `values`.

use std::time::Duration;

use super::gaps;
use super::syntax::{Location, Statement, Word};
use super::values::whole_seconds;
use super::{
    Command, Config, ConfigError, Diagnostic, Global, Loaded, Notifies, NotifyFifo, Options, Script, Severity,
    SyncGroup, Track, User,
};
use crate::wire::Version;

pub(super) fn finish(
    statements: Vec<Statement>,
    diagnostics: Vec<Diagnostic>,
    options: Options,
) -> Result<Loaded, ConfigError> {
    let mut builder = Builder { diagnostics, options };
    let mut config = builder.config(&statements);
    let Builder { mut diagnostics, .. } = builder;
    super::security::apply(&mut config, &mut diagnostics);
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

pub(super) struct Builder {
    pub(super) diagnostics: Vec<Diagnostic>,
    pub(super) options: Options,
}

impl Builder {
    pub(super) fn error(&mut self, at: &Location, message: impl Into<String>) {
        self.diagnostics
            .push(Diagnostic::new(at.clone(), Severity::Error, message));
    }

    pub(super) fn warn(&mut self, at: &Location, message: impl Into<String>) {
        self.diagnostics
            .push(Diagnostic::new(at.clone(), Severity::Warning, message));
    }

    /// A warning, or an error when `strict`.
    pub(super) fn strict_warn(&mut self, at: &Location, message: impl Into<String>) {
        let severity = if self.options.strict {
            Severity::Error
        } else {
            Severity::Warning
        };
        self.diagnostics.push(Diagnostic::new(at.clone(), severity, message));
    }

    pub(super) fn unknown(&mut self, statement: &Statement) {
        let keyword = &statement.keyword.text;
        let message = if keyword.starts_with('@') {
            format!(
                "'{keyword}' line left out: vrrpd has no configuration ids (keepalived's -i), so it reads no \
                 conditional lines"
            )
        } else {
            format!("Unknown keyword '{keyword}'")
        };
        self.strict_warn(&statement.keyword.at, message);
    }

    /// A keyword from one of the `gaps` tables, if it is one: a warning saying what is lost (an error with
    /// `strict`). Returns whether it was.
    pub(super) fn gap(&mut self, statement: &Statement, table: &'static [gaps::Gap]) -> bool {
        let Some(gap) = gaps::find(table, &statement.keyword.text) else {
            return false;
        };
        self.strict_warn(&statement.keyword.at, gap.message());
        true
    }
}

impl Builder {
    pub(super) fn config(&mut self, statements: &[Statement]) -> Config {
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
                _ if self.gap(statement, gaps::TOP_LEVEL) => {}
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

    pub(super) fn global(&mut self, block: &[Statement], global: &mut Global) {
        // `*_fifo_script` may come before its FIFO: attached once the block is read.
        let mut fifo_scripts: Vec<(&Statement, Option<Command>)> = Vec::new();
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
                "vrrp_check_unicast_src" => global.check_unicast_src = self.flag(statement),
                "vrrp_skip_check_adv_addr" => global.skip_check_adv_addr = self.flag(statement),
                "v3_checksum_as_v2" => global.v3_checksum_as_v2 = self.flag(statement),
                "vrrp_lower_prio_no_advert" => global.lower_prio_no_advert = self.flag(statement),
                "vrrp_higher_prio_send_advert" => global.higher_prio_send_advert = self.flag(statement),
                "vrrp_startup_delay" => {
                    global.startup_delay = self.seconds(statement, 0.0, 3600.0).unwrap_or(global.startup_delay)
                }
                "vrrp_down_timer_adverts" => {
                    global.down_timer_adverts = self.one_number(statement, 1, 100).unwrap_or(global.down_timer_adverts)
                }
                // vrrpd always reads a new configuration completely before a reload, and keeps running on errors.
                "reload_check_config" => {}
                "script_user" => global.script_user = self.user(statement, &statement.args),
                "enable_script_security" => global.enable_script_security = self.flag(statement),
                "notify_fifo" | "vrrp_notify_fifo" => self.notify_fifo(statement, global),
                "notify_fifo_script" | "vrrp_notify_fifo_script" => {
                    let command = self.command(statement);
                    fifo_scripts.push((statement, command));
                }
                "vrrp_strict" => {
                    global.strict = self.flag(statement);
                    if global.strict {
                        let message = "'vrrp_strict' is carried out except for no_accept: vrrpd installs no firewall \
                                       rule, so the VIPs accept traffic in every state";
                        self.strict_warn(&statement.keyword.at, message);
                    }
                }
                _ if self.gap(statement, gaps::GLOBAL) => {}
                _ => self.unknown(statement),
            }
        }
        for (statement, command) in fifo_scripts {
            let keyword = statement.keyword.text.as_str();
            let fifo = keyword.trim_end_matches("_script");
            match global.notify_fifos.iter_mut().find(|given| given.keyword == fifo) {
                Some(given) => given.script = command,
                None => self.error(&statement.keyword.at, format!("{keyword} without {fifo}")),
            }
        }
    }

    /// `notify_fifo PATH [USER [GROUP]]`: the owner is given to a FIFO vrrpd creates.
    fn notify_fifo(&mut self, statement: &Statement, global: &mut Global) {
        let Some((path, owner)) = statement.args.split_first() else {
            self.error(
                &statement.keyword.at,
                format!("{}: missing FIFO path", statement.keyword.text),
            );
            return;
        };
        let owner = if owner.is_empty() {
            None
        } else {
            self.user(statement, owner)
        };
        let keyword = if statement.keyword.text == "notify_fifo" {
            "notify_fifo"
        } else {
            "vrrp_notify_fifo"
        };
        // Given again, the later path wins, as in keepalived.
        global.notify_fifos.retain(|given| given.keyword != keyword);
        global.notify_fifos.push(NotifyFifo {
            keyword,
            path: path.text.clone().into(),
            owner,
            script: None,
            at: path.at.clone(),
        });
    }

    pub(super) fn user(&mut self, statement: &Statement, words: &[Word]) -> Option<User> {
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
    pub(super) fn command(&mut self, statement: &Statement) -> Option<Command> {
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

    pub(super) fn name(&mut self, statement: &Statement) -> Option<String> {
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

    pub(super) fn script(&mut self, statement: &Statement) -> Option<Script> {
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
    pub(super) fn weight(&mut self, statement: &Statement) -> Option<(i32, bool)> {
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
    pub(super) fn tracks(&mut self, statement: &Statement) -> Vec<Track> {
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

    pub(super) fn sync_group(&mut self, statement: &Statement) -> Option<SyncGroup> {
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
                "track_interface" | "track_script" => {
                    // Read for their errors, then reported as not carried out.
                    let _ = self.tracks(item);
                    self.gap(item, gaps::SYNC_GROUP);
                }
                // vrrpd applies members' tracking weights as configured, which is what these ask for.
                "global_tracking" | "sync_group_tracking_weight" => {}
                _ if self.gap(item, gaps::SYNC_GROUP) => {}
                keyword if keyword.starts_with("notify") => self.notify(item, &mut group.notify),
                _ => self.unknown(item),
            }
        }
        Some(group)
    }

    pub(super) fn notify(&mut self, statement: &Statement, notify: &mut Notifies) {
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
}
