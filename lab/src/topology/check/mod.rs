//! Validation: the raw file becomes a [`Topology`], one section at a time, each section in its own file.
//!
//! Problems are reported in the order the sections are checked here, and that order is part of the output (the
//! snapshot tests pin it): keep it when changing a check. Later sections build on earlier ones: interfaces need
//! the segments, routes a host's interfaces, and probes every name of the lab.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::net::Ipv4Addr;
use std::path::Path;

use super::diagnostics::Checker;
use super::raw::{RawHost, RawTopology};
use super::{Host, Machine, Segment, Topology};

mod filesystem;
mod firewall;
mod hosts;
mod impair;
mod interfaces;
mod machines;
mod names;
mod naming;
mod probes;
mod routes;
mod segments;
mod services;
mod sysctls;

/// What must be unique across the whole lab, claimed host by host.
#[derive(Default)]
struct Claimed {
    host_names: HashSet<String>,
    addresses: HashMap<Ipv4Addr, String>,
    /// Every name /etc/hosts gives an address: host names, hostnames, aliases and the `[names]` table.
    etc_names: BTreeSet<String>,
}

impl Checker<'_> {
    pub(super) fn check(&mut self, raw: RawTopology, source: &Path) -> Topology {
        let lab = raw.name.get_ref().clone();
        self.check_lab_name(&lab, raw.name.span());
        let impair_backend = self.check_impair_backend(raw.impair_backend.as_ref());
        let segments = self.check_segments(&raw.segments);
        let machines = self.check_machines(&raw.machines);
        let mut claimed = Claimed::default();
        let hosts: Vec<Host> = (raw.hosts.iter().enumerate())
            .map(|(h, raw_host)| self.check_host(h, raw_host, &segments, &machines, &mut claimed))
            .collect();
        self.check_coordinator_underlay(&raw.hosts, &hosts, &machines);
        let vxlan_port = self.check_vxlan_port(raw.vxlan_port.as_ref());
        let names = self.check_names(&raw.names, &mut claimed.etc_names);
        let mut topology = Topology {
            name: lab,
            source: source.to_path_buf(),
            text: self.text().to_string(),
            segments,
            hosts,
            names,
            tls: raw.tls,
            impair_backend,
            machines,
            vxlan_port,
            machine: None,
        };
        self.check_probes(&raw.hosts, &mut topology);
        self.check_files_and_placeholders(&raw.hosts, &mut topology);
        topology
    }

    /// A host without its probes, which wait until every name of the lab is known.
    fn check_host(
        &mut self,
        h: usize,
        raw: &RawHost,
        segments: &[Segment],
        machines: &[Machine],
        claimed: &mut Claimed,
    ) -> Host {
        let (name, hostname) = self.check_host_identity(h, raw, claimed);
        let machine = self.check_host_machine(h, raw.machine.as_ref(), machines);
        let interfaces = self.check_interfaces(h, &name, &raw.interfaces, segments, &mut claimed.addresses);
        let routes = self.check_routes(h, &name, &raw.routes, &interfaces);
        let sysctls = self.check_sysctls(h, &raw.sysctls);
        let services = self.check_services(h, &raw.services);
        let firewall = raw.firewall.as_ref().map(|fw| self.check_firewall(h, fw));
        let filesystem = self.check_filesystem(h, raw.filesystem.as_ref());
        Host {
            name,
            machine,
            hostname,
            aliases: raw.aliases.iter().map(|a| a.get_ref().clone()).collect(),
            interfaces,
            routes,
            sysctls,
            services,
            firewall,
            probes: Vec::new(),
            filesystem,
            files: Vec::new(),
        }
    }
}

/// An IPv4 address with an optional prefix length, as segments, interfaces, routes and firewall rules write it.
fn parse_net(text: &str) -> Result<(Ipv4Addr, Option<u8>), String> {
    let (addr, prefix) = match text.split_once('/') {
        Some((a, p)) => (a, Some(p)),
        None => (text, None),
    };
    let addr: Ipv4Addr = addr.parse().map_err(|_| format!("`{text}` is not an IPv4 address"))?;
    let prefix = match prefix {
        None => None,
        Some(p) => match p.parse::<u8>() {
            Ok(n) if n <= 32 => Some(n),
            _ => return Err(format!("`{text}` has an invalid prefix length (0-32)")),
        },
    };
    Ok((addr, prefix))
}

impl Checker<'_> {
    /// A number of seconds in `minimum`-3600, or `default` when absent (or, reported, when out of range).
    fn check_seconds(
        &mut self,
        minimum: f64,
        value: &Option<toml::Spanned<f64>>,
        default: f64,
        field: &str,
    ) -> std::time::Duration {
        match value {
            None => std::time::Duration::from_secs_f64(default),
            Some(v) if v.get_ref().is_finite() && (minimum..=3600.0).contains(v.get_ref()) => {
                std::time::Duration::from_secs_f64(*v.get_ref())
            }
            Some(v) => {
                self.report(
                    v.span(),
                    field,
                    format!("{} is not a number of seconds in {minimum}-3600", v.get_ref()),
                );
                std::time::Duration::from_secs_f64(default)
            }
        }
    }
}
