//! `[[segments]]`: the lab's layer-2 networks, one bridge each.

use std::collections::HashSet;
use std::net::Ipv4Addr;
use std::ops::Range;

use super::naming::check_identifier;
use super::parse_net;
use crate::names::IFNAME_MAX;
use crate::topology::diagnostics::Checker;
use crate::topology::raw::RawSegment;
use crate::topology::{Ipv4Net, Segment};

impl Checker<'_> {
    pub(super) fn check_segments(&mut self, raw: &[RawSegment]) -> Vec<Segment> {
        let mut names = HashSet::new();
        (raw.iter().enumerate())
            .map(|(i, seg)| self.check_segment(i, seg, &mut names))
            .collect()
    }

    fn check_segment(&mut self, i: usize, seg: &RawSegment, names: &mut HashSet<String>) -> Segment {
        let field = |f: &str| format!("segments[{i}].{f}");
        let name = seg.name.get_ref();
        if let Err(why) = check_identifier(name) {
            self.report(seg.name.span(), &field("name"), format!("segment name `{name}` {why}"));
        } else if name.len() > IFNAME_MAX {
            self.report(
                seg.name.span(),
                &field("name"),
                format!(
                    "segment name `{name}` is {} bytes; it names the segment's bridge, and the kernel's limit \
                     for interface names is {IFNAME_MAX}",
                    name.len()
                ),
            );
        }
        if !names.insert(name.clone()) {
            self.report(
                seg.name.span(),
                &field("name"),
                format!("duplicate segment name `{name}`"),
            );
        }
        let subnet = self.check_subnet(seg.subnet.get_ref(), seg.subnet.span(), &field("subnet"));
        if let Some(mtu) = &seg.mtu {
            if !(68..=65535).contains(mtu.get_ref()) {
                self.report(
                    mtu.span(),
                    &field("mtu"),
                    format!("MTU {} is outside 68-65535", mtu.get_ref()),
                );
            }
        }
        if let Some(vlan) = &seg.vlan {
            if !(1..=4094).contains(vlan.get_ref()) {
                self.report(
                    vlan.span(),
                    &field("vlan"),
                    format!("VLAN id {} is outside 1-4094", vlan.get_ref()),
                );
            }
        }
        Segment {
            name: name.clone(),
            subnet,
            mtu: seg.mtu.as_ref().map(|m| *m.get_ref()),
            vlan: seg.vlan.as_ref().map(|v| *v.get_ref()),
            impair: self.check_impair(seg.impair.as_ref(), &field("impair")),
            stretch: None,
        }
    }

    /// A subnet in network form; 0.0.0.0/0 stands in for one that is not, so that checking goes on.
    fn check_subnet(&mut self, text: &str, span: Range<usize>, field: &str) -> Ipv4Net {
        let unspecified = Ipv4Net {
            addr: Ipv4Addr::UNSPECIFIED,
            prefix: 0,
        };
        match parse_net(text) {
            Ok((addr, Some(prefix))) => {
                let net = Ipv4Net { addr, prefix };
                if net.network() != addr {
                    self.report(
                        span,
                        field,
                        format!("`{}` has host bits set; did you mean {}/{prefix}?", net, net.network()),
                    );
                }
                net
            }
            Ok((_, None)) => {
                self.report(span, field, "a subnet needs a prefix length, e.g. 10.0.0.0/24");
                unspecified
            }
            Err(why) => {
                self.report(span, field, why);
                unspecified
            }
        }
    }
}
