//! A host's `interfaces`: one veth pair each, the host's end named here and the other end a port of the segment's
//! bridge in the switch namespace.

use std::collections::{HashMap, HashSet};
use std::net::Ipv4Addr;

use super::naming::check_identifier;
use super::parse_net;
use crate::names::{switch_port_name, IFNAME_MAX};
use crate::topology::diagnostics::Checker;
use crate::topology::raw::RawInterface;
use crate::topology::{Interface, Segment};

impl Checker<'_> {
    /// `addresses` holds every address claimed so far in the lab, with its host.
    pub(super) fn check_interfaces(
        &mut self,
        h: usize,
        host: &str,
        raw: &[RawInterface],
        segments: &[Segment],
        addresses: &mut HashMap<Ipv4Addr, String>,
    ) -> Vec<Interface> {
        let mut names = HashSet::new();
        let mut interfaces = Vec::new();
        for (n, raw_if) in raw.iter().enumerate() {
            let field = |f: &str| format!("hosts[{h}].interfaces[{n}].{f}");
            let name = self.check_interface_name(n, host, raw_if, &mut names, &field);
            let segment = self.find_segment(raw_if, segments, &field);
            let (address, prefix) = self.check_interface_address(raw_if, segment, &field);
            if address != Ipv4Addr::UNSPECIFIED {
                if let Some(owner) = addresses.insert(address, host.to_string()) {
                    self.report(
                        raw_if.address.span(),
                        &field("address"),
                        format!("duplicate address {address}: host `{owner}` has it already"),
                    );
                }
            }
            let mac = raw_if.mac.as_ref().and_then(|m| match parse_mac(m.get_ref()) {
                Ok(mac) => Some(mac),
                Err(why) => {
                    self.report(m.span(), &field("mac"), why);
                    None
                }
            });
            let impair = match &raw_if.impair {
                Some(own) => self.check_impair(Some(own), &field("impair")),
                None => segment.map(|s| s.impair.clone()).unwrap_or_default(),
            };
            interfaces.push(Interface {
                name,
                segment: raw_if.segment.get_ref().clone(),
                address,
                prefix,
                mac,
                impair,
            });
        }
        interfaces
    }

    /// The interface's name (`eth<n>` unless given), unique in its host; `names` holds the host's names so far.
    fn check_interface_name(
        &mut self,
        n: usize,
        host: &str,
        raw: &RawInterface,
        names: &mut HashSet<String>,
        field: &dyn Fn(&str) -> String,
    ) -> String {
        let name = (raw.name.as_ref())
            .map(|s| s.get_ref().clone())
            .unwrap_or_else(|| format!("eth{n}"));
        // A default name has no place in the file: point at the interface's segment instead.
        let span = (raw.name.as_ref())
            .map(|s| s.span())
            .unwrap_or_else(|| raw.segment.span());
        if name.len() > IFNAME_MAX {
            self.report(
                span.clone(),
                &field("name"),
                format!(
                    "interface name `{name}` is {} bytes, over the kernel's limit of {IFNAME_MAX}",
                    name.len()
                ),
            );
        } else if let Err(why) = check_identifier(&name) {
            self.report(span.clone(), &field("name"), format!("interface name `{name}` {why}"));
        } else if name == "lo" {
            self.report(span.clone(), &field("name"), "`lo` is the loopback interface");
        }
        if !names.insert(name.clone()) {
            self.report(
                span,
                &field("name"),
                format!("duplicate interface name `{name}` in host `{host}`"),
            );
        }
        // A host name too long for even its first port has been reported with the host's name.
        let port = switch_port_name(host, n);
        if port.len() > IFNAME_MAX && switch_port_name(host, 0).len() <= IFNAME_MAX {
            self.report(
                raw.segment.span(),
                &field("segment"),
                format!("the switch-side interface name `{port}` is over the kernel's limit of {IFNAME_MAX}"),
            );
        }
        name
    }

    fn find_segment<'s>(
        &mut self,
        raw: &RawInterface,
        segments: &'s [Segment],
        field: &dyn Fn(&str) -> String,
    ) -> Option<&'s Segment> {
        let segment = segments.iter().find(|s| &s.name == raw.segment.get_ref());
        if segment.is_none() {
            let known: Vec<&str> = segments.iter().map(|s| s.name.as_str()).collect();
            self.report(
                raw.segment.span(),
                &field("segment"),
                format!(
                    "unknown segment `{}` (segments: {})",
                    raw.segment.get_ref(),
                    known.join(", ")
                ),
            );
        }
        segment
    }

    /// The address and its prefix length (the segment's unless given); 0.0.0.0 for an address that does not parse.
    fn check_interface_address(
        &mut self,
        raw: &RawInterface,
        segment: Option<&Segment>,
        field: &dyn Fn(&str) -> String,
    ) -> (Ipv4Addr, u8) {
        let (address, prefix) = match parse_net(raw.address.get_ref()) {
            Ok((addr, prefix)) => {
                let prefix = match (prefix, segment) {
                    (Some(p), Some(seg)) if p != seg.subnet.prefix => {
                        self.report(
                            raw.address.span(),
                            &field("address"),
                            format!("prefix /{p} differs from segment `{}` ({})", seg.name, seg.subnet),
                        );
                        p
                    }
                    (Some(p), _) => p,
                    (None, Some(seg)) => seg.subnet.prefix,
                    (None, None) => 32,
                };
                (addr, prefix)
            }
            Err(why) => {
                self.report(raw.address.span(), &field("address"), why);
                (Ipv4Addr::UNSPECIFIED, 32)
            }
        };
        if let Some(seg) = segment {
            if address != Ipv4Addr::UNSPECIFIED {
                self.check_address_in_segment(raw, address, seg, field);
            }
        }
        (address, prefix)
    }

    fn check_address_in_segment(
        &mut self,
        raw: &RawInterface,
        address: Ipv4Addr,
        seg: &Segment,
        field: &dyn Fn(&str) -> String,
    ) {
        if !seg.subnet.contains(address) {
            self.report(
                raw.address.span(),
                &field("address"),
                format!("{address} is outside segment `{}` ({})", seg.name, seg.subnet),
            );
        } else if seg.subnet.prefix < 31 && (address == seg.subnet.network() || address == seg.subnet.broadcast()) {
            self.report(
                raw.address.span(),
                &field("address"),
                format!(
                    "{address} is the network or broadcast address of segment `{}`",
                    seg.name
                ),
            );
        }
    }
}

fn parse_mac(text: &str) -> Result<[u8; 6], String> {
    let parts: Vec<&str> = text.split(':').collect();
    let mut mac = [0u8; 6];
    if parts.len() != 6 {
        return Err(format!("`{text}` is not a MAC address like 02:00:00:00:00:01"));
    }
    for (byte, part) in mac.iter_mut().zip(&parts) {
        *byte = u8::from_str_radix(part, 16)
            .map_err(|_| format!("`{text}` is not a MAC address like 02:00:00:00:00:01"))?;
    }
    if mac[0] & 1 == 1 {
        return Err(format!(
            "`{text}` is a multicast MAC address; an interface needs a unicast one"
        ));
    }
    if mac == [0; 6] {
        return Err("the all-zero MAC address cannot be assigned".into());
    }
    Ok(mac)
}
