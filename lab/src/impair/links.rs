//! The impairments in force in one lab, by link end, and the backend that carries them out. The backend is chosen
//! when a link is first impaired, once for the lab: every link of a lab behaves the same way.

use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::relay::Relay;
use super::{netem, Backend, BackendChoice, Direction, Impairment, Percent};
use crate::net::build::{set_down, set_up};
use crate::net::netlink::{Netlink, Request};
use crate::net::netns;
use crate::plan::InterfacePlan;
use crate::process::HostCommand;

/// One direction of one host interface's link to its switch.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct LinkEnd {
    pub host: String,
    pub interface: String,
    pub direction: Direction,
}

pub struct Links {
    /// The lab's switch namespace, where every backend works.
    switch: PathBuf,
    choice: BackendChoice,
    backend: Option<Backend>,
    settings: BTreeMap<LinkEnd, Impairment>,
    /// By switch port.
    relays: BTreeMap<String, Relay>,
    /// Switch ports whose ifb (netem, frames from the host) exists.
    ifbs: BTreeSet<String>,
}

impl Links {
    pub fn new(switch: PathBuf, choice: BackendChoice) -> Links {
        Links {
            switch,
            choice,
            backend: None,
            settings: BTreeMap::new(),
            relays: BTreeMap::new(),
            ifbs: BTreeSet::new(),
        }
    }

    pub fn backend(&self) -> Option<Backend> {
        self.backend
    }

    /// The settings of one link end (a perfect link if it was never impaired).
    pub fn get(&self, end: &LinkEnd) -> Impairment {
        self.settings.get(end).copied().unwrap_or_default()
    }

    /// Every impaired link end, in order.
    pub fn active(&self) -> impl Iterator<Item = (&LinkEnd, &Impairment)> {
        self.settings.iter().filter(|(_, i)| !i.is_perfect())
    }

    /// Gives one link end new settings. The backend's part is applied here; random loss is the caller's to write
    /// into the switch's table (see [`Links::switch_loss`]). `mtu` is the segment's, if it sets one.
    pub fn set(
        &mut self,
        port: &InterfacePlan,
        mtu: Option<u32>,
        end: LinkEnd,
        impairment: Impairment,
    ) -> io::Result<()> {
        impairment.check().map_err(|why| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{} {}: {why}", end.host, end.interface),
            )
        })?;
        let queued = impairment.for_backend();
        if queued != self.get(&end).for_backend() {
            match self.resolve_backend()? {
                Backend::Netem => {
                    let switch = HostCommand::new(&self.switch)?;
                    if end.direction == Direction::From && !self.ifbs.contains(&port.switch_port) {
                        netem::redirect_to_ifb(&switch, port)?;
                        self.ifbs.insert(port.switch_port.clone());
                    }
                    netem::apply(&switch, port, end.direction, &queued)?;
                }
                Backend::Relay => {
                    if !self.relays.contains_key(&port.switch_port) {
                        let relay = Relay::insert(&self.switch, port, mtu)?;
                        self.relays.insert(port.switch_port.clone(), relay);
                    }
                    self.relays[&port.switch_port].set(end.direction, queued);
                }
            }
        }
        self.settings.insert(end, impairment);
        Ok(())
    }

    /// A host's link went down or came up. A relay keeps the bridge's port up on its own, so its end follows the
    /// host's (the bridge then stops forwarding to the port, as it does for a host's own port), and on the way down
    /// it forgets the frames it held for the host.
    pub fn follow_link(&self, port: &InterfacePlan, up: bool) -> io::Result<()> {
        let Some(relay) = self.relays.get(&port.switch_port) else {
            return Ok(());
        };
        if !up {
            relay.forget_frames_to_host();
        }
        let (index, name) = (port.relay_end_index, port.relay_end.clone());
        let message = if up { set_up(index) } else { set_down(index) };
        netns::run_in(&self.switch, move || {
            Netlink::open()?.apply(vec![Request::new(
                format!("set {name} {}", if up { "up" } else { "down" }),
                message,
            )])
        })
    }

    /// Stops every relay (their sockets hold the switch namespace): the lab is going down.
    pub fn stop_relays(&mut self) {
        self.relays.clear();
    }

    /// The random loss in force, for the switch's nftables table: the bridge port a link's frames cross (the
    /// relay's, once it stands in for the host's port), the direction and the share to drop.
    pub fn switch_loss(&self, ports: &dyn Fn(&LinkEnd) -> Option<InterfacePlan>) -> Vec<(String, Direction, Percent)> {
        self.active()
            .filter(|(_, impairment)| !impairment.random_loss().is_zero())
            .filter_map(|(end, impairment)| {
                let port = ports(end)?;
                let bridge_port = match self.relays.contains_key(&port.switch_port) {
                    true => port.relay_port,
                    false => port.switch_port,
                };
                Some((bridge_port, end.direction, impairment.random_loss()))
            })
            .collect()
    }

    fn resolve_backend(&mut self) -> io::Result<Backend> {
        if let Some(backend) = self.backend {
            return Ok(backend);
        }
        let netem = || netem::available(&HostCommand::new(&self.switch)?).map_err(io::Error::other);
        let backend = match self.choice {
            BackendChoice::Relay => Backend::Relay,
            BackendChoice::Auto => match netem() {
                Ok(()) => Backend::Netem,
                Err(_) => Backend::Relay,
            },
            BackendChoice::Netem => {
                netem().map_err(|why| {
                    io::Error::new(
                        io::ErrorKind::Unsupported,
                        format!(
                            "the lab asks for the netem impairment backend, but this kernel has no netem \
                             (sch_netem): {why}; use impair_backend = \"auto\" or \"relay\""
                        ),
                    )
                })?;
                Backend::Netem
            }
        };
        self.backend = Some(backend);
        Ok(backend)
    }
}
