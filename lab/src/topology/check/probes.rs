//! A host's `probes`: clients that try a target from the host. Targets may name any host or extra name, so probes
//! are checked last, against the otherwise complete topology.

use std::collections::HashSet;
use std::net::Ipv4Addr;

use super::naming::check_identifier;
use crate::topology::diagnostics::Checker;
use crate::topology::raw::{RawHost, RawProbe};
use crate::topology::{Probe, ProbeKind, Topology};

impl Checker<'_> {
    pub(super) fn check_probes(&mut self, raw: &[RawHost], topology: &mut Topology) {
        for (h, raw_host) in raw.iter().enumerate() {
            let mut seen = HashSet::new();
            let mut probes = Vec::new();
            for (p, raw_probe) in raw_host.probes.iter().enumerate() {
                let field = |f: &str| format!("hosts[{h}].probes[{p}].{f}");
                if !seen.insert(raw_probe.name.get_ref().clone()) {
                    self.report(
                        raw_probe.name.span(),
                        &field("name"),
                        format!("duplicate probe name `{}`", raw_probe.name.get_ref()),
                    );
                }
                probes.extend(self.check_probe(topology, raw_probe, &field));
            }
            if let Some(host) = topology.hosts.get_mut(h) {
                host.probes = probes;
            }
        }
    }

    fn check_probe(&mut self, topology: &Topology, raw: &RawProbe, field: &dyn Fn(&str) -> String) -> Option<Probe> {
        let name = raw.name.get_ref().clone();
        if let Err(why) = check_identifier(&name) {
            self.report(raw.name.span(), &field("name"), format!("probe name `{name}` {why}"));
        }
        let kind = self.check_probe_kind(topology, raw, field)?;
        let interval = self.check_seconds(0.001, &raw.interval, 0.1, &field("interval"));
        let timeout = self.check_seconds(0.001, &raw.timeout, 0.2, &field("timeout"));
        Some(Probe {
            name,
            kind,
            target: raw.target.get_ref().clone(),
            interval,
            timeout,
        })
    }

    fn check_probe_kind(
        &mut self,
        topology: &Topology,
        raw: &RawProbe,
        field: &dyn Fn(&str) -> String,
    ) -> Option<ProbeKind> {
        let target = raw.target.get_ref();
        match raw.kind.get_ref().as_str() {
            "tcp" => {
                let Some((host, port)) = target.rsplit_once(':') else {
                    self.report(
                        raw.target.span(),
                        &field("target"),
                        format!("a tcp probe needs `host:port`, not `{target}`"),
                    );
                    return None;
                };
                let port = match port.parse::<u16>() {
                    Ok(port) if port > 0 => port,
                    _ => {
                        self.report(
                            raw.target.span(),
                            &field("target"),
                            format!("`{port}` is not a port (1-65535)"),
                        );
                        return None;
                    }
                };
                let address = self.resolve_target(topology, raw, host, field)?;
                Some(ProbeKind::Tcp { address, port })
            }
            "ping" => Some(ProbeKind::Ping {
                address: self.resolve_target(topology, raw, target, field)?,
            }),
            other => {
                self.report(
                    raw.kind.span(),
                    &field("kind"),
                    format!("unknown probe kind `{other}` (expected tcp or ping)"),
                );
                None
            }
        }
    }

    fn resolve_target(
        &mut self,
        topology: &Topology,
        raw: &RawProbe,
        host: &str,
        field: &dyn Fn(&str) -> String,
    ) -> Option<Ipv4Addr> {
        let address = topology.resolve(host);
        if address.is_none() {
            self.report(
                raw.target.span(),
                &field("target"),
                format!("`{host}` is neither an IPv4 address nor a name of this topology"),
            );
        }
        address
    }
}
