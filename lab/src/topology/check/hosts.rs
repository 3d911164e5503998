//! A host's names: its name, hostname and aliases, and the names /etc/hosts gives it, which must be unique across
//! the lab.

use std::collections::{BTreeSet, HashSet};
use std::ops::Range;

use super::naming::check_hostname;
use super::Claimed;
use crate::topology::diagnostics::Checker;
use crate::topology::raw::RawHost;

impl Checker<'_> {
    /// The host's name and hostname (its name unless given).
    pub(super) fn check_host_identity(&mut self, h: usize, raw: &RawHost, claimed: &mut Claimed) -> (String, String) {
        let field = |f: &str| format!("hosts[{h}].{f}");
        let name = raw.name.get_ref().clone();
        self.check_host_names(&name, raw.name.span(), &field("name"));
        let duplicate = !claimed.host_names.insert(name.clone());
        if duplicate {
            self.report(raw.name.span(), &field("name"), format!("duplicate host name `{name}`"));
        }
        let hostname = match &raw.hostname {
            Some(hn) => {
                if let Err(why) = check_hostname(hn.get_ref()) {
                    self.report(
                        hn.span(),
                        &field("hostname"),
                        format!("hostname `{}` {why}", hn.get_ref()),
                    );
                }
                hn.get_ref().clone()
            }
            None => name.clone(),
        };
        for (a, alias) in raw.aliases.iter().enumerate() {
            if let Err(why) = check_hostname(alias.get_ref()) {
                self.report(
                    alias.span(),
                    &field(&format!("aliases[{a}]")),
                    format!("alias `{}` {why}", alias.get_ref()),
                );
            }
        }
        self.claim_etc_names(h, raw, duplicate, &mut claimed.etc_names);
        (name, hostname)
    }

    /// Every name this host answers to in /etc/hosts must be unique across the lab.
    fn claim_etc_names(&mut self, h: usize, raw: &RawHost, duplicate: bool, etc_names: &mut BTreeSet<String>) {
        let field = |f: &str| format!("hosts[{h}].{f}");
        let mut own: Vec<(String, Range<usize>, String)> = Vec::new();
        // A duplicate host name has been reported as such already.
        if !duplicate {
            own.push((raw.name.get_ref().clone(), raw.name.span(), field("name")));
        }
        if let Some(hn) = &raw.hostname {
            own.push((hn.get_ref().clone(), hn.span(), field("hostname")));
        }
        for (a, alias) in raw.aliases.iter().enumerate() {
            own.push((alias.get_ref().clone(), alias.span(), field(&format!("aliases[{a}]"))));
        }
        // A host may repeat one of its own names (a hostname equal to its name) without a problem.
        let mut seen_here = HashSet::new();
        for (n, span, f) in own {
            if seen_here.insert(n.clone()) && !etc_names.insert(n.clone()) {
                self.report(span, &f, format!("name `{n}` is already used by another host"));
            }
        }
    }
}
