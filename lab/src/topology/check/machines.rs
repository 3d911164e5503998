//! `[machines]` and each host's `machine`: the machines a lab spreads over, and which one runs each host.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use toml::Spanned;

use super::naming::check_identifier;
use crate::topology::diagnostics::Checker;
use crate::topology::raw::{RawHost, RawMachine};
use crate::topology::{Host, Machine, DEFAULT_VXLAN_PORT};

impl Checker<'_> {
    pub(super) fn check_machines(&mut self, raw: &BTreeMap<String, Spanned<RawMachine>>) -> Vec<Machine> {
        let mut underlays = HashMap::new();
        let mut coordinators = Vec::new();
        let mut machines = Vec::new();
        for (name, machine) in raw {
            let field = |f: &str| format!("machines.{name}.{f}");
            if let Err(why) = check_identifier(name) {
                self.report(
                    machine.span(),
                    &format!("machines.{name}"),
                    format!("machine name `{name}` {why}"),
                );
            }
            let machine = machine.get_ref();
            let ssh = machine.ssh.as_ref().map(|ssh| {
                if let Err(why) = check_ssh_word(ssh.get_ref()) {
                    self.report(
                        ssh.span(),
                        &field("ssh"),
                        format!("SSH destination `{}` {why}", ssh.get_ref()),
                    );
                }
                ssh.get_ref().clone()
            });
            if ssh.is_none() {
                coordinators.push(name.clone());
            }
            let underlay = match machine.underlay.get_ref().parse() {
                Ok(address) => address,
                Err(_) => {
                    let text = machine.underlay.get_ref();
                    self.report(
                        machine.underlay.span(),
                        &field("underlay"),
                        format!("`{text}` is not an IPv4 address"),
                    );
                    std::net::Ipv4Addr::UNSPECIFIED
                }
            };
            if let Some(other) = underlays.insert(underlay, name.clone()) {
                self.report(
                    machine.underlay.span(),
                    &field("underlay"),
                    format!("machine `{other}` already has the underlay address {underlay}"),
                );
            }
            let command = match &machine.command {
                Some(command) if command.get_ref().trim().is_empty() => {
                    self.report(command.span(), &field("command"), "is empty: leave it out to run `lab`");
                    "lab".to_string()
                }
                Some(command) => command.get_ref().clone(),
                None => "lab".to_string(),
            };
            for (o, option) in machine.ssh_options.iter().enumerate() {
                if option.get_ref().is_empty() {
                    self.report(option.span(), &field(&format!("ssh_options[{o}]")), "is empty");
                }
            }
            machines.push(Machine {
                name: name.clone(),
                ssh,
                underlay,
                command,
                ssh_options: machine.ssh_options.iter().map(|o| o.get_ref().clone()).collect(),
            });
        }
        if coordinators.len() > 1 {
            let second = &raw[&coordinators[1]];
            self.report(
                second.span(),
                &format!("machines.{}", coordinators[1]),
                format!(
                    "machines `{}` and `{}` both have no `ssh`, which marks the coordinator (the machine `lab up` \
                     runs on): give every other machine an SSH destination",
                    coordinators[0], coordinators[1]
                ),
            );
        }
        machines
    }

    /// The host's machine, `None` for the coordinator's (by omission, or by naming the machine without `ssh`).
    pub(super) fn check_host_machine(
        &mut self,
        h: usize,
        raw: Option<&Spanned<String>>,
        machines: &[Machine],
    ) -> Option<String> {
        let raw = raw?;
        let name = raw.get_ref();
        match machines.iter().find(|m| &m.name == name) {
            Some(machine) => machine.ssh.as_ref().map(|_| name.clone()),
            None => {
                let known: Vec<&str> = machines.iter().map(|m| m.name.as_str()).collect();
                let hint = match known.is_empty() {
                    true => "the topology has no [machines] table".to_string(),
                    false => format!("[machines] has {}", known.join(", ")),
                };
                self.report(
                    raw.span(),
                    &format!("hosts[{h}].machine"),
                    format!("no machine `{name}`: {hint}"),
                );
                None
            }
        }
    }

    /// A segment with hosts on the coordinator and on another machine needs the coordinator's underlay address.
    pub(super) fn check_coordinator_underlay(&mut self, raw: &[RawHost], hosts: &[Host], machines: &[Machine]) {
        if machines.iter().any(|m| m.ssh.is_none()) {
            return;
        }
        let mut machines_by_segment: BTreeMap<&str, BTreeSet<Option<&str>>> = BTreeMap::new();
        for host in hosts {
            for interface in &host.interfaces {
                let on = machines_by_segment.entry(&interface.segment).or_default();
                on.insert(host.machine.as_deref());
            }
        }
        for (h, host) in hosts.iter().enumerate() {
            if host.machine.is_some() {
                continue;
            }
            let stretched = host.interfaces.iter().find_map(|i| {
                let on = &machines_by_segment[i.segment.as_str()];
                let other = on.iter().flatten().next()?;
                Some((i.segment.as_str(), *other))
            });
            if let Some((segment, other)) = stretched {
                self.report(
                    raw[h].name.span(),
                    &format!("hosts[{h}].machine"),
                    format!(
                        "host `{}` runs on the coordinator (it names no machine) and segment `{segment}` also has \
                         hosts on machine `{other}`: add the coordinator to [machines] without `ssh`, with its \
                         underlay address, or put the host on a machine",
                        host.name
                    ),
                );
                return;
            }
        }
    }

    pub(super) fn check_vxlan_port(&mut self, raw: Option<&Spanned<u16>>) -> u16 {
        match raw {
            Some(port) if *port.get_ref() == 0 => {
                self.report(port.span(), "vxlan_port", "port 0 is not a UDP port");
                DEFAULT_VXLAN_PORT
            }
            Some(port) => *port.get_ref(),
            None => DEFAULT_VXLAN_PORT,
        }
    }
}

/// An SSH destination is one word that ssh cannot read as an option.
fn check_ssh_word(text: &str) -> Result<(), String> {
    if text.is_empty() {
        return Err("is empty".into());
    }
    if text.starts_with('-') {
        return Err("starts with `-`, which ssh would read as an option (options go in `ssh_options`)".into());
    }
    if let Some(bad) = text.chars().find(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!("contains {bad:?}"));
    }
    Ok(())
}
