//! The `[names]` table: extra /etc/hosts entries for addresses no host owns, such as a VIP.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;

use toml::Spanned;

use super::naming::check_hostname;
use crate::topology::diagnostics::Checker;

impl Checker<'_> {
    /// `etc_names` holds the names the hosts took already.
    pub(super) fn check_names(
        &mut self,
        raw: &BTreeMap<String, Spanned<String>>,
        etc_names: &mut BTreeSet<String>,
    ) -> BTreeMap<String, Ipv4Addr> {
        let mut names = BTreeMap::new();
        for (name, addr) in raw {
            let field = format!("names.{name}");
            if let Err(why) = check_hostname(name) {
                self.report(addr.span(), &field, format!("name `{name}` {why}"));
            }
            if !etc_names.insert(name.clone()) {
                self.report(
                    addr.span(),
                    &field,
                    format!("name `{name}` is already a host's name or alias"),
                );
            }
            match addr.get_ref().parse::<Ipv4Addr>() {
                Ok(ip) => {
                    names.insert(name.clone(), ip);
                }
                Err(_) => self.report(
                    addr.span(),
                    &field,
                    format!("`{}` is not an IPv4 address", addr.get_ref()),
                ),
            }
        }
        names
    }
}
