//! A host's `routes`: each gateway must be reachable on one of the host's own subnets.

use std::net::Ipv4Addr;

use super::parse_net;
use crate::topology::diagnostics::Checker;
use crate::topology::raw::RawRoute;
use crate::topology::{Interface, Ipv4Net, Route};

impl Checker<'_> {
    pub(super) fn check_routes(
        &mut self,
        h: usize,
        host: &str,
        raw: &[RawRoute],
        interfaces: &[Interface],
    ) -> Vec<Route> {
        let mut routes = Vec::new();
        for (r, raw_route) in raw.iter().enumerate() {
            let field = |f: &str| format!("hosts[{h}].routes[{r}].{f}");
            let to = if raw_route.to.get_ref() == "default" {
                None
            } else {
                match parse_net(raw_route.to.get_ref()) {
                    Ok((addr, Some(prefix))) => Some(Ipv4Net { addr, prefix }),
                    Ok((addr, None)) => Some(Ipv4Net { addr, prefix: 32 }),
                    Err(why) => {
                        self.report(raw_route.to.span(), &field("to"), format!("{why} (or `default`)"));
                        None
                    }
                }
            };
            let via = self.check_gateway(host, raw_route, interfaces, &field);
            routes.push(Route { to, via });
        }
        routes
    }

    fn check_gateway(
        &mut self,
        host: &str,
        raw: &RawRoute,
        interfaces: &[Interface],
        field: &dyn Fn(&str) -> String,
    ) -> Ipv4Addr {
        match raw.via.get_ref().parse::<Ipv4Addr>() {
            Ok(via) => {
                let on_link = interfaces.iter().any(|i| {
                    Ipv4Net {
                        addr: i.address,
                        prefix: i.prefix,
                    }
                    .contains(via)
                });
                if !on_link {
                    self.report(
                        raw.via.span(),
                        &field("via"),
                        format!("gateway {via} is not on any of host `{host}`'s interfaces' subnets"),
                    );
                }
                via
            }
            Err(_) => {
                self.report(
                    raw.via.span(),
                    &field("via"),
                    format!("`{}` is not an IPv4 address", raw.via.get_ref()),
                );
                Ipv4Addr::UNSPECIFIED
            }
        }
    }
}
