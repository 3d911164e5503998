//! A host's `firewall`: the inbound ports it accepts, and from where.

use super::parse_net;
use crate::topology::diagnostics::Checker;
use crate::topology::raw::RawFirewall;
use crate::topology::{Firewall, FirewallAllow, InboundPolicy, Ipv4Net};

impl Checker<'_> {
    pub(super) fn check_firewall(&mut self, h: usize, raw: &RawFirewall) -> Firewall {
        let mut allow = Vec::new();
        for (a, rule) in raw.allow.iter().enumerate() {
            if rule.ports.get_ref().is_empty() || rule.ports.get_ref().contains(&0) {
                self.report(
                    rule.ports.span(),
                    &format!("hosts[{h}].firewall.allow[{a}].ports"),
                    "ports must be 1-65535, at least one",
                );
            }
            let mut from = Vec::new();
            for (f, src) in rule.from.iter().enumerate() {
                match parse_net(src.get_ref()) {
                    Ok((addr, prefix)) => from.push(Ipv4Net {
                        addr,
                        prefix: prefix.unwrap_or(32),
                    }),
                    Err(why) => self.report(src.span(), &format!("hosts[{h}].firewall.allow[{a}].from[{f}]"), why),
                }
            }
            allow.push(FirewallAllow {
                ports: rule.ports.get_ref().clone(),
                from,
            });
        }
        Firewall {
            allow,
            inbound: raw.inbound.unwrap_or(InboundPolicy::Accept),
        }
    }
}
