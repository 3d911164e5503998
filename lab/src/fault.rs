//! Faults: what `lab fault` does to a running lab, as production breaks. Every fault becomes an event on the
//! timeline, stamped when it starts.

use std::collections::BTreeSet;
use std::fmt;
use std::io;
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::Duration;

use nix::sys::signal::Signal;
use rtnetlink::packet_route::address::AddressAttribute;
use rtnetlink::packet_route::RouteNetlinkMessage;
use serde::{Deserialize, Serialize};

use crate::events::{EventKind, EventLog};
use crate::impair::links::{LinkEnd, Links};
use crate::impair::{self, format_duration, BackendChoice, Burst, Direction, Distribution, Impairment, Percent, Rate};
use crate::net::netlink::{Netlink, Request};
use crate::net::{build, firewall, netns};
use crate::plan::{HostPlan, InterfacePlan, Plan};
use crate::process::{run_tool, HostCommand};
use crate::service::RunningService;
use crate::state::{ActiveFaults, ImpairedLink, LabState};
use crate::teardown;
use crate::topology::{Host, Topology};

/// A fault, as `lab fault LAB HOSTS FAULT...` takes it. This one definition is the command line's grammar, its
/// `--help` (each variant's doc comment) and its completion; [`Fault::parse`] and [`Fault::words`] read and write
/// it as words.
#[derive(Debug, Clone, PartialEq, Eq, clap::Subcommand, Serialize, Deserialize)]
pub enum Fault {
    /// Stop a service: its own stop signal, then SIGKILL after its grace period.
    Stop {
        /// The service; every service of the host when omitted.
        #[arg(value_name = "SERVICE")]
        service: Option<String>,
    },
    /// Start a service that has exited (after stop or crash).
    Start {
        /// The service; every exited service of the host when omitted.
        #[arg(value_name = "SERVICE")]
        service: Option<String>,
    },
    /// Crash a service: SIGKILL to its process group.
    Crash {
        /// The service; every service of the host when omitted.
        #[arg(value_name = "SERVICE")]
        service: Option<String>,
    },
    /// Freeze a service: SIGSTOP to its process group.
    Freeze {
        /// The service; every service of the host when omitted.
        #[arg(value_name = "SERVICE")]
        service: Option<String>,
    },
    /// Thaw a frozen service: SIGCONT to its process group.
    Thaw {
        /// The service; every service of the host when omitted.
        #[arg(value_name = "SERVICE")]
        service: Option<String>,
    },
    /// Reboot the host: power off, wait, power on.
    Reboot {
        /// How long the host stays off, in seconds: 0-3600, e.g. `6`, `6.6` or `6s`.
        #[arg(value_name = "SECONDS", default_value = "1", value_parser = parse_pause, allow_negative_numbers = true)]
        pause: Duration,
    },
    /// Power the host off: every process killed, its links down, the addresses nobody configured gone.
    PowerOff,
    /// Power the host on: links up, routes back, services started again in topology order.
    PowerOn,
    /// Set the host's interfaces down.
    LinkDown {
        /// The interface; all of the host's interfaces when omitted.
        #[arg(value_name = "INTERFACE")]
        interface: Option<String>,
    },
    /// Set the host's interfaces up, with the routes the kernel dropped.
    LinkUp {
        /// The interface; all of the host's interfaces when omitted.
        #[arg(value_name = "INTERFACE")]
        interface: Option<String>,
    },
    /// Cut the hosts off from other hosts: the switch drops the traffic between them, both ways (or, with
    /// `--one-way`, only the hosts' traffic to the others), until `heal`.
    Partition {
        /// Drop only the packets from the hosts to the others: theirs still arrive.
        #[arg(long)]
        one_way: bool,
        /// The hosts on the other side, separated by commas.
        // One word (`Set`, one value), split at its commas.
        #[arg(value_name = "HOST", required = true, num_args = 1, action = clap::ArgAction::Set, value_delimiter = ',')]
        from: Vec<String>,
    },
    /// Remove every partition of the lab.
    Heal,
    /// In a lab spread over machines, cut the underlay between machines: `lab fault vlan m2 cut m3` (HOSTS names
    /// machines here). The tunnels stop carrying frames between them, both ways (or, with `--one-way`, only from
    /// the named machines to the others), until `mend`.
    Cut {
        /// Drop only the frames from these machines to the others: theirs still arrive.
        #[arg(long)]
        one_way: bool,
        /// The machines on the other side, separated by commas.
        #[arg(value_name = "MACHINE", required = true, num_args = 1, action = clap::ArgAction::Set, value_delimiter = ',')]
        to: Vec<String>,
    },
    /// Mend the machines' underlay cuts: every one, or those to the machines named.
    Mend {
        /// The machines on the other side, separated by commas; all when omitted.
        #[arg(value_name = "MACHINE", num_args = 0..=1, action = clap::ArgAction::Set, value_delimiter = ',')]
        to: Vec<String>,
    },
    /// Delay the frames on the hosts' links, with jitter if asked.
    Delay {
        /// e.g. `200ms`, `1.5s`, `250us`; `0` clears it.
        #[arg(value_name = "DELAY", value_parser = impair::parse_duration)]
        delay: Duration,
        /// How far each frame's delay strays from DELAY: ± this (uniform), or this as the standard deviation.
        #[arg(long, value_name = "JITTER", value_parser = impair::parse_duration, default_value = "0")]
        jitter: Duration,
        /// How the jitter is spread.
        #[arg(long, value_enum, default_value_t)]
        distribution: Distribution,
        #[command(flatten)]
        link: LinkChoice,
    },
    /// Drop a share of the frames on the hosts' links, each on its own or in bursts.
    Loss {
        /// 0-100, e.g. `10` or `0.5%`; 0 clears it.
        #[arg(value_name = "PERCENT", value_parser = impair::parse_percent, allow_negative_numbers = true)]
        percent: Percent,
        /// Lose frames in runs this long on average (a Gilbert-Elliott chain) instead of one by one.
        #[arg(long, value_name = "FRAMES", value_parser = impair::parse_burst)]
        burst: Option<Burst>,
        #[command(flatten)]
        link: LinkChoice,
    },
    /// Send a share of the frames on the hosts' links twice.
    Duplicate {
        /// 0-100; 0 clears it.
        #[arg(value_name = "PERCENT", value_parser = impair::parse_percent, allow_negative_numbers = true)]
        percent: Percent,
        #[command(flatten)]
        link: LinkChoice,
    },
    /// Send a share of the frames at once, ahead of the delayed ones (needs a delay on the link).
    Reorder {
        /// 0-100; 0 clears it.
        #[arg(value_name = "PERCENT", value_parser = impair::parse_percent, allow_negative_numbers = true)]
        percent: Percent,
        #[command(flatten)]
        link: LinkChoice,
    },
    /// Flip one bit in a share of the frames on the hosts' links.
    Corrupt {
        /// 0-100; 0 clears it.
        #[arg(value_name = "PERCENT", value_parser = impair::parse_percent, allow_negative_numbers = true)]
        percent: Percent,
        #[command(flatten)]
        link: LinkChoice,
    },
    /// Limit the rate of the hosts' links; frames queue for their turn.
    Rate {
        /// e.g. `1mbit`, `500kbit`, `10mbps`, or `off` to clear it.
        // Spelled out so that clap takes the argument as required and the parser makes the `Option`.
        #[arg(value_name = "RATE", value_parser = impair::parse_rate_or_off)]
        rate: std::option::Option<Rate>,
        #[command(flatten)]
        link: LinkChoice,
    },
    /// Make the hosts' links perfect again, both ways: no delay, loss, duplication, reordering, corruption or rate
    /// limit (partitions stay until `heal`).
    Clear {
        /// One interface; all of the host's interfaces when omitted.
        #[arg(long, value_name = "INTERFACE")]
        interface: Option<String>,
    },
}

/// A link fault that sets one share of frames (duplicated, reordered, corrupted), made from the share and where.
type SetShare = fn(Percent, LinkChoice) -> Fault;

/// What a link fault changes in a link's settings.
pub type Change<'a> = Box<dyn Fn(&mut Impairment) + 'a>;

/// Which of a host's links a link fault acts on, and which way.
#[derive(Debug, Clone, Default, PartialEq, Eq, clap::Args, Serialize, Deserialize)]
pub struct LinkChoice {
    /// The frames the switch delivers to the host.
    #[arg(long, group = "direction")]
    pub to: bool,
    /// The frames the host sends (the default).
    #[arg(long, group = "direction")]
    pub from: bool,
    /// Both ways.
    #[arg(long, group = "direction")]
    pub both: bool,
    /// One interface; all of the host's interfaces when omitted.
    #[arg(long, value_name = "INTERFACE")]
    pub interface: Option<String>,
}

impl LinkChoice {
    pub fn directions(&self) -> Vec<Direction> {
        match (self.to, self.both) {
            (true, _) => vec![Direction::To],
            (_, true) => vec![Direction::From, Direction::To],
            _ => vec![Direction::From],
        }
    }

    fn words(&self) -> Vec<String> {
        let mut words = Vec::new();
        for (flag, set) in [("--to", self.to), ("--from", self.from), ("--both", self.both)] {
            if set {
                words.push(flag.to_string());
            }
        }
        if let Some(interface) = &self.interface {
            words.extend(["--interface".to_string(), interface.clone()]);
        }
        words
    }
}

/// `reboot`'s pause: seconds in 0-3600, with or without a trailing `s`.
fn parse_pause(text: &str) -> Result<Duration, String> {
    text.trim_end_matches('s')
        .parse::<f64>()
        .ok()
        .filter(|s| s.is_finite() && (0.0..=3600.0).contains(s))
        .map(Duration::from_secs_f64)
        .ok_or_else(|| format!("`{text}` is not a number of seconds in 0-3600"))
}

/// The words of a fault alone, as a command line of their own, for [`Fault::parse`].
#[derive(clap::Parser)]
#[command(
    name = "fault",
    disable_help_subcommand = true,
    subcommand_value_name = "FAULT",
    subcommand_help_heading = "Faults"
)]
struct FaultWords {
    #[command(subcommand)]
    fault: Fault,
}

impl Fault {
    /// Reads a fault from its command-line words, e.g. `["crash", "vrrpd"]` or `["loss", "10"]`. The error is
    /// clap's message, without colours.
    pub fn parse(words: &[String]) -> Result<Fault, String> {
        <FaultWords as clap::Parser>::try_parse_from(std::iter::once("fault").chain(words.iter().map(String::as_str)))
            .map(|parsed| parsed.fault)
            .map_err(|e| e.render().to_string().trim_end().to_string())
    }

    /// The command-line words of this fault: `Fault::parse(&fault.words())` is `fault` again.
    pub fn words(&self) -> Vec<String> {
        let with =
            |word: &str, argument: &Option<String>| std::iter::once(word.to_string()).chain(argument.clone()).collect();
        match self {
            Fault::Stop { service } => with("stop", service),
            Fault::Start { service } => with("start", service),
            Fault::Crash { service } => with("crash", service),
            Fault::Freeze { service } => with("freeze", service),
            Fault::Thaw { service } => with("thaw", service),
            Fault::Reboot { pause } => vec!["reboot".into(), pause.as_secs_f64().to_string()],
            Fault::PowerOff => vec!["power-off".into()],
            Fault::PowerOn => vec!["power-on".into()],
            Fault::LinkDown { interface } => with("link-down", interface),
            Fault::LinkUp { interface } => with("link-up", interface),
            Fault::Partition { one_way, from } => {
                let flag = one_way.then(|| "--one-way".to_string());
                std::iter::once("partition".into())
                    .chain(flag)
                    .chain([from.join(",")])
                    .collect()
            }
            Fault::Heal => vec!["heal".into()],
            Fault::Cut { one_way, to } => {
                let flag = one_way.then(|| "--one-way".to_string());
                std::iter::once("cut".into())
                    .chain(flag)
                    .chain([to.join(",")])
                    .collect()
            }
            Fault::Mend { to } if to.is_empty() => vec!["mend".into()],
            Fault::Mend { to } => vec!["mend".into(), to.join(",")],
            Fault::Clear { interface } => match interface {
                Some(interface) => vec!["clear".into(), "--interface".into(), interface.clone()],
                None => vec!["clear".into()],
            },
            link_fault => {
                let (words, link) = link_fault.link_words().expect("every other fault acts on links");
                words.into_iter().chain(link.words()).collect()
            }
        }
    }

    /// The link faults that give one direction of `interface` the settings `impairment`, in an order the checks
    /// accept (the delay before the reordering that needs it).
    pub fn link(interface: &crate::topology::Interface, direction: Direction, impairment: &Impairment) -> Vec<Fault> {
        let link = LinkChoice {
            to: direction == Direction::To,
            interface: Some(interface.name.clone()),
            ..Default::default()
        };
        let mut faults = Vec::new();
        if !impairment.delay.is_zero() {
            faults.push(Fault::Delay {
                delay: impairment.delay,
                jitter: impairment.jitter,
                distribution: impairment.distribution,
                link: link.clone(),
            });
        }
        if !impairment.loss.is_zero() {
            faults.push(Fault::Loss {
                percent: impairment.loss,
                burst: impairment.burst,
                link: link.clone(),
            });
        }
        let shares: [(Percent, SetShare); 3] = [
            (impairment.duplicate, |percent, link| Fault::Duplicate { percent, link }),
            (impairment.reorder, |percent, link| Fault::Reorder { percent, link }),
            (impairment.corrupt, |percent, link| Fault::Corrupt { percent, link }),
        ];
        for (percent, fault) in shares {
            if !percent.is_zero() {
                faults.push(fault(percent, link.clone()));
            }
        }
        if let Some(rate) = impairment.rate {
            faults.push(Fault::Rate { rate: Some(rate), link });
        }
        faults
    }

    /// A link fault's own words (without where it acts), and where it acts.
    fn link_words(&self) -> Option<(Vec<String>, &LinkChoice)> {
        let percent = |word: &str, percent: &Percent| vec![word.to_string(), percent.to_string()];
        Some(match self {
            Fault::Delay {
                delay,
                jitter,
                distribution,
                link,
            } => {
                let mut words = vec!["delay".to_string(), format_duration(*delay)];
                if !jitter.is_zero() {
                    words.extend(["--jitter".to_string(), format_duration(*jitter)]);
                }
                if *distribution != Distribution::default() {
                    words.extend(["--distribution".to_string(), "normal".to_string()]);
                }
                (words, link)
            }
            Fault::Loss {
                percent: p,
                burst,
                link,
            } => {
                let mut words = percent("loss", p);
                if let Some(burst) = burst {
                    words.extend(["--burst".to_string(), burst.to_string()]);
                }
                (words, link)
            }
            Fault::Duplicate { percent: p, link } => (percent("duplicate", p), link),
            Fault::Reorder { percent: p, link } => (percent("reorder", p), link),
            Fault::Corrupt { percent: p, link } => (percent("corrupt", p), link),
            Fault::Rate { rate, link } => {
                let rate = rate.map_or_else(|| "off".to_string(), |r| r.to_string());
                (vec!["rate".to_string(), rate], link)
            }
            _ => return None,
        })
    }

    /// For a link fault: where it acts, and what it changes in each link's settings.
    pub fn link_change(&self) -> Option<(&LinkChoice, Change<'_>)> {
        Some(match self {
            Fault::Delay {
                delay,
                jitter,
                distribution,
                link,
            } => (
                link,
                Box::new(|i: &mut Impairment| {
                    (i.delay, i.jitter, i.distribution) = (*delay, *jitter, *distribution);
                }),
            ),
            Fault::Loss { percent, burst, link } => (
                link,
                Box::new(|i: &mut Impairment| (i.loss, i.burst) = (*percent, *burst)),
            ),
            Fault::Duplicate { percent, link } => (link, Box::new(|i: &mut Impairment| i.duplicate = *percent)),
            Fault::Reorder { percent, link } => (link, Box::new(|i: &mut Impairment| i.reorder = *percent)),
            Fault::Corrupt { percent, link } => (link, Box::new(|i: &mut Impairment| i.corrupt = *percent)),
            Fault::Rate { rate, link } => (link, Box::new(|i: &mut Impairment| i.rate = *rate)),
            _ => return None,
        })
    }
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let with = |f: &mut fmt::Formatter<'_>, word: &str, argument: &Option<String>| match argument {
            Some(argument) => write!(f, "{word} {argument}"),
            None => write!(f, "{word}"),
        };
        match self {
            Fault::Stop { service } => with(f, "stop", service),
            Fault::Start { service } => with(f, "start", service),
            Fault::Crash { service } => with(f, "crash", service),
            Fault::Freeze { service } => with(f, "freeze", service),
            Fault::Thaw { service } => with(f, "thaw", service),
            Fault::Reboot { pause } => write!(f, "reboot {}s", pause.as_secs_f64()),
            Fault::PowerOff => write!(f, "power-off"),
            Fault::PowerOn => write!(f, "power-on"),
            Fault::LinkDown { interface } => with(f, "link-down", interface),
            Fault::LinkUp { interface } => with(f, "link-up", interface),
            Fault::Partition { one_way: false, from } => write!(f, "partition from {}", from.join(",")),
            Fault::Partition { one_way: true, from } => write!(f, "partition one-way to {}", from.join(",")),
            Fault::Heal => write!(f, "heal"),
            other => write!(f, "{}", other.words().join(" ")),
        }
    }
}

/// Network faults in force, kept so each change rewrites the switch's fault table whole. They live in the lab's
/// switch namespace, as a broken network would: hosts see their packets vanish or arrive late, not a local error.
pub struct NetworkFaults {
    /// (from, to) host pairs: the first's packets to the second are dropped.
    blocked: BTreeSet<(String, String)>,
    links: Links,
    /// In a part of a spread lab, the machines this one's tunnels no longer send to.
    underlay_cuts: BTreeSet<String>,
}

impl NetworkFaults {
    pub fn new(plan: &Plan, backend: BackendChoice) -> NetworkFaults {
        NetworkFaults {
            blocked: BTreeSet::new(),
            links: Links::new(plan.switch.mount.clone(), backend),
            underlay_cuts: BTreeSet::new(),
        }
    }

    /// Stops what runs on the lab's behalf (the relays) before the lab's namespaces go.
    pub fn stop(&mut self) {
        self.links.stop_relays();
    }

    /// What is in force, for the lab's record and `lab faults`.
    pub fn record(&self) -> ActiveFaults {
        ActiveFaults {
            backend: self.links.backend(),
            partitions: self.blocked.iter().cloned().collect(),
            links: self
                .links
                .active()
                .map(|(end, impairment)| ImpairedLink {
                    host: end.host.clone(),
                    interface: end.interface.clone(),
                    direction: end.direction,
                    settings: impairment.to_string(),
                    impairment: *impairment,
                })
                .collect(),
            underlay_cuts: self.underlay_cuts.iter().cloned().collect(),
        }
    }
}

/// The parts of a running lab a fault acts on, lent by [`Lab::inject`](crate::Lab::inject): the lab's own fields
/// stay the lab's, and what a fault may change (its services, the network faults in force) is handed over
/// explicitly.
pub struct Injection<'a> {
    pub topology: &'a Topology,
    pub plan: &'a Plan,
    pub state: &'a LabState,
    pub events: &'a Arc<EventLog>,
    pub services: &'a mut Vec<RunningService>,
    pub network: &'a mut NetworkFaults,
}

impl<'a> Injection<'a> {
    /// Injects `fault` into each of `hosts` (for a partition: cuts them off from the hosts the fault names).
    pub fn inject(&mut self, hosts: &[&str], fault: &Fault) -> io::Result<()> {
        if let Fault::Cut { .. } | Fault::Mend { .. } = fault {
            return self.underlay(hosts, fault);
        }
        for host in hosts {
            self.host_plan(host)?;
        }
        self.events.push(
            Some(&hosts.join(",")),
            EventKind::Fault {
                fault: fault.to_string(),
            },
        );
        match fault {
            Fault::Partition { one_way, from } => return self.partition(hosts, from, *one_way),
            Fault::Heal => return self.heal(),
            Fault::Clear { interface } => {
                let both = [Direction::From, Direction::To];
                let clear = |i: &mut Impairment| *i = Impairment::default();
                let changed =
                    (hosts.iter()).try_for_each(|host| self.change_links(host, interface.as_deref(), &both, &clear));
                let written = self.write_switch_faults();
                return changed.and(written);
            }
            _ => {}
        }
        if let Some((link, change)) = fault.link_change() {
            let changed = (hosts.iter())
                .try_for_each(|host| self.change_links(host, link.interface.as_deref(), &link.directions(), &*change));
            // Whatever changed before a failure (a relay now in a port's place) is what the table must follow.
            let written = self.write_switch_faults();
            return changed.and(written);
        }
        for host in hosts {
            match fault {
                Fault::Stop { service } => {
                    for index in self.service_indexes(host, service.as_deref())? {
                        self.services[index].stop(self.events);
                    }
                }
                Fault::Start { service } => self.start_exited(host, service.as_deref())?,
                Fault::Crash { service } => self.signal_services(host, service.as_deref(), Signal::SIGKILL, true)?,
                Fault::Freeze { service } => self.signal_services(host, service.as_deref(), Signal::SIGSTOP, false)?,
                Fault::Thaw { service } => self.signal_services(host, service.as_deref(), Signal::SIGCONT, false)?,
                Fault::Reboot { pause } => {
                    self.power_off(host)?;
                    std::thread::sleep(*pause);
                    // The host's return is a moment of its own on the timeline: what follows counts from it.
                    let fault = format!("{fault}: power-on");
                    self.events.push(Some(host), EventKind::Fault { fault });
                    self.power_on(host)?;
                }
                Fault::PowerOff => self.power_off(host)?,
                Fault::PowerOn => self.power_on(host)?,
                Fault::LinkDown { interface } => self.set_links(host, interface.as_deref(), false)?,
                Fault::LinkUp { interface } => self.set_links(host, interface.as_deref(), true)?,
                _ => unreachable!("network faults are handled above"),
            }
        }
        Ok(())
    }

    /// A cut or mend of this machine's tunnels (in a part of a spread lab; the coordinator turns a cut both ways
    /// into each side's one-way half): flood entries removed or restored.
    fn underlay(&mut self, machines: &[&str], fault: &Fault) -> io::Result<()> {
        let invalid = |why: String| io::Error::new(io::ErrorKind::InvalidInput, why);
        let here = self.topology.machine.as_deref();
        let Some(here) = here.filter(|here| machines == [*here]) else {
            return Err(invalid(match here {
                None => format!(
                    "lab {} is not spread over machines: no underlay to cut",
                    self.plan.lab()
                ),
                Some(here) => format!("this part of lab {} is machine {here}'s", self.plan.lab()),
            }));
        };
        let tunnels: Vec<_> = self.plan.segments.iter().filter_map(|s| s.vxlan.as_ref()).collect();
        let peers: BTreeSet<&str> = tunnels
            .iter()
            .flat_map(|v| v.stretch.peers.iter().map(|(name, _)| name.as_str()))
            .collect();
        let (cut, named) = match fault {
            Fault::Cut { one_way: false, .. } => {
                return Err(invalid(
                    "a part cuts only its own frames (`cut --one-way`): cut both ways from the coordinator".into(),
                ))
            }
            Fault::Cut { to, .. } => (true, to.clone()),
            Fault::Mend { to } if to.is_empty() => (false, self.network.underlay_cuts.iter().cloned().collect()),
            Fault::Mend { to } => (false, to.clone()),
            _ => unreachable!("only cut and mend come here"),
        };
        if let Some(unknown) = named.iter().find(|m| !peers.contains(m.as_str())) {
            let known: Vec<&str> = peers.iter().copied().collect();
            return Err(invalid(format!(
                "machine {here} shares no segment with machine `{unknown}` (it does with: {})",
                known.join(", ")
            )));
        }
        self.events.push(
            None,
            EventKind::Fault {
                fault: format!("underlay of {here}: {fault}"),
            },
        );
        let switch = HostCommand::new(&self.plan.switch.mount)?;
        for machine in named {
            if cut == self.network.underlay_cuts.contains(&machine) {
                continue;
            }
            for vxlan in &tunnels {
                if let Some((_, address)) = vxlan.stretch.peers.iter().find(|(name, _)| *name == machine) {
                    build::flood(&switch, &vxlan.name, *address, !cut)?;
                }
            }
            match cut {
                true => self.network.underlay_cuts.insert(machine),
                false => self.network.underlay_cuts.remove(&machine),
            };
        }
        Ok(())
    }

    fn host_plan(&self, host: &str) -> io::Result<&HostPlan> {
        self.plan.host_or_error(host)
    }

    fn host(&self, host: &str) -> io::Result<&Host> {
        self.topology
            .host(host)
            .ok_or_else(|| crate::plan::unknown_host(self.plan.lab(), host))
    }

    fn service_indexes(&self, host: &str, service: Option<&str>) -> io::Result<Vec<usize>> {
        let indexes: Vec<usize> = (0..self.services.len())
            .filter(|&i| self.services[i].host == host && service.is_none_or(|s| self.services[i].spec.name == s))
            .collect();
        if indexes.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                match service {
                    Some(service) => format!("host {host} has no service `{service}`"),
                    None => format!("host {host} runs no service"),
                },
            ));
        }
        Ok(indexes)
    }

    fn signal_services(&self, host: &str, service: Option<&str>, signal: Signal, wait: bool) -> io::Result<()> {
        for index in self.service_indexes(host, service)? {
            let running = &self.services[index];
            if running.signal(signal)? && wait {
                running.wait_exit(Duration::from_secs(10));
            }
        }
        Ok(())
    }

    /// Starts again, in topology order, the services of `host` that have exited.
    fn start_exited(&mut self, host: &str, service: Option<&str>) -> io::Result<()> {
        let namespace = self.host_plan(host)?.namespace.mount.clone();
        for index in self.service_indexes(host, service)? {
            if self.services[index].exit_status().is_none() {
                if service.is_some() {
                    return Err(io::Error::new(
                        io::ErrorKind::AlreadyExists,
                        format!("service {host}/{} is running", self.services[index].spec.name),
                    ));
                }
                continue;
            }
            let service = &self.services[index];
            service.start_again()?;
            service.wait_ready(&namespace, self.events, &|| false)?;
        }
        Ok(())
    }

    /// Every process of the host killed (no service restarts after it), its /run and /tmp emptied as memory is, its
    /// links down, and the addresses nobody configured gone.
    fn power_off(&mut self, host: &str) -> io::Result<()> {
        let host_plan = self.host_plan(host)?;
        let (namespace, fs) = (host_plan.namespace.mount.clone(), host_plan.fs.clone());
        let indexes = self.service_indexes(host, None).unwrap_or_default();
        for index in &indexes {
            self.services[*index].hold();
        }
        if let Some(identity) = self.state.namespaces.get(host).map(|n| n.identity) {
            teardown::kill_processes_in(&[identity]);
        }
        for index in indexes {
            self.services[index].wait_exit(Duration::from_secs(10));
        }
        crate::hostfs::forget_volatile(self.host(host)?, &fs)?;
        self.set_links(host, None, false)?;
        // A host that comes back has only the addresses its configuration gives it.
        let configured: Vec<Ipv4Addr> = self.host(host)?.interfaces.iter().map(|i| i.address).collect();
        netns::run_in(&namespace, move || {
            let mut netlink = Netlink::open()?;
            let stale: Vec<Request> = netlink
                .addresses()?
                .into_iter()
                .filter(|message| {
                    message.attributes.iter().any(|a| {
                        matches!(a, AddressAttribute::Local(std::net::IpAddr::V4(ip))
                            if !configured.contains(ip) && !ip.is_loopback())
                    })
                })
                .map(|message| Request::new("remove an address", RouteNetlinkMessage::DelAddress(message)))
                .collect();
            netlink.apply(stale)
        })
    }

    fn power_on(&mut self, host: &str) -> io::Result<()> {
        self.set_links(host, None, true)?;
        if self.service_indexes(host, None).is_ok() {
            self.start_exited(host, None)?;
        }
        Ok(())
    }

    /// Sets a host's interfaces (one, or all) down or up; up also restores the routes the kernel dropped.
    fn set_links(&self, host: &str, interface: Option<&str>, up: bool) -> io::Result<()> {
        let host_plan = self.host_plan(host)?;
        let ports = self.ports(host, interface)?;
        let mut requests: Vec<Request> = (ports.iter())
            .map(|port| {
                let index = port.index;
                let message = if up {
                    build::set_up(index)
                } else {
                    build::set_down(index)
                };
                Request::new(
                    format!("set interface {index} of {host} {}", if up { "up" } else { "down" }),
                    message,
                )
            })
            .collect();
        if up {
            requests.extend(build::route_requests(self.host(host)?, &host_plan.namespace.name));
        }
        netns::run_in(&host_plan.namespace.mount, move || {
            Netlink::open()?.apply_replacing(requests)
        })?;
        ports
            .iter()
            .try_for_each(|port| self.network.links.follow_link(port, up))
    }

    /// The switch-side plans of a host's interfaces: one, or all; an error if it has no such interface.
    fn ports(&self, host: &str, interface: Option<&str>) -> io::Result<Vec<&'a InterfacePlan>> {
        let plan: &'a Plan = self.plan;
        let ports: Vec<&InterfacePlan> = (plan.host_or_error(host)?.interfaces.iter())
            .filter(|i| interface.is_none_or(|name| i.name == name))
            .collect();
        if ports.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!("host {host} has no interface `{}`", interface.unwrap_or("")),
            ));
        }
        Ok(ports)
    }

    fn addresses(&self, hosts: &[&str]) -> io::Result<BTreeSet<Ipv4Addr>> {
        let mut all = BTreeSet::new();
        for host in hosts {
            all.extend(self.host(host)?.interfaces.iter().map(|i| i.address));
        }
        Ok(all)
    }

    /// Drops the packets from the hosts on `side` to those on `other`, and (unless `one_way`) back.
    fn partition(&mut self, side: &[&str], other: &[String], one_way: bool) -> io::Result<()> {
        if let Some(both) = side.iter().find(|h| other.iter().any(|o| o == *h)) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("host {both} is on both sides of the partition"),
            ));
        }
        for host in other {
            self.host(host)?;
        }
        let before = self.network.blocked.clone();
        for a in side {
            for b in other {
                self.network.blocked.insert((a.to_string(), b.clone()));
                if !one_way {
                    self.network.blocked.insert((b.clone(), a.to_string()));
                }
            }
        }
        // A partition the switch refused is not in force, and must not come into force with a later rewrite.
        self.write_switch_faults()
            .inspect_err(|_| self.network.blocked = before)
    }

    /// Changes the settings of a host's links (one interface, or all) in the given directions.
    fn change_links(
        &mut self,
        host: &str,
        interface: Option<&str>,
        directions: &[Direction],
        change: &dyn Fn(&mut Impairment),
    ) -> io::Result<()> {
        let topology = self.topology;
        for port in self.ports(host, interface)? {
            let mtu = topology.segment(&port.segment).and_then(|s| s.mtu);
            for direction in directions {
                let end = LinkEnd {
                    host: host.to_string(),
                    interface: port.name.clone(),
                    direction: *direction,
                };
                let mut impairment = self.network.links.get(&end);
                change(&mut impairment);
                self.network.links.set(port, mtu, end, impairment)?;
            }
        }
        Ok(())
    }

    fn heal(&mut self) -> io::Result<()> {
        self.network.blocked.clear();
        self.write_switch_faults()
    }

    /// Replaces the switch's `lab_fault` table with the faults in force, atomically, in one `nft` run (see
    /// [`firewall::switch_fault_rules`]).
    fn write_switch_faults(&self) -> io::Result<()> {
        let mut blocked = BTreeSet::new();
        for (from, to) in &self.network.blocked {
            for a in self.addresses(&[from])? {
                blocked.extend(self.addresses(&[to])?.into_iter().map(|b| (a, b)));
            }
        }
        let plan = self.plan;
        let port = |end: &LinkEnd| {
            let host = plan.host(&end.host)?;
            host.interfaces.iter().find(|i| i.name == end.interface).cloned()
        };
        let loss = self.network.links.switch_loss(&port);
        let rules = firewall::switch_fault_rules(&blocked, &loss);
        run_tool(
            &HostCommand::new(&self.plan.switch.mount)?,
            "nft",
            &["-f", "-"],
            Some(&rules),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(text: &str) -> Vec<String> {
        text.split_whitespace().map(str::to_string).collect()
    }

    #[test]
    fn the_grammar_is_a_valid_clap_command() {
        <FaultWords as clap::CommandFactory>::command().debug_assert();
    }

    #[test]
    fn words_read_back_as_the_same_fault() {
        let texts = [
            "stop",
            "stop vrrpd",
            "start",
            "start vrrpd",
            "crash",
            "crash redis",
            "freeze redis",
            "thaw",
            "reboot",
            "reboot 0",
            "reboot 6.6",
            "reboot 3600",
            "power-off",
            "power-on",
            "link-down",
            "link-down eth0",
            "link-up eth1",
            "partition b",
            "partition b,c",
            "partition --one-way b",
            "heal",
            "delay 200ms",
            "delay 1.5s --jitter 20ms --distribution normal --to --interface eth1",
            "delay 0 --both",
            "loss 0",
            "loss 10",
            "loss 0.5% --to",
            "loss 100 --burst 4 --from",
            "duplicate 1 --both",
            "reorder 25% --interface eth0",
            "corrupt 0.1",
            "rate 1mbit",
            "rate 1500kbit --to",
            "rate off",
            "clear",
            "clear --interface eth0",
        ];
        for text in texts {
            let fault = Fault::parse(&words(text)).unwrap_or_else(|e| panic!("{text}: {e}"));
            assert_eq!(
                Fault::parse(&fault.words()),
                Ok(fault.clone()),
                "{text}: {:?}",
                fault.words()
            );
        }
    }

    #[test]
    fn the_words_of_before_still_parse() {
        let cases = [
            ("stop", Fault::Stop { service: None }),
            (
                "crash vrrpd",
                Fault::Crash {
                    service: Some("vrrpd".into()),
                },
            ),
            (
                "reboot",
                Fault::Reboot {
                    pause: Duration::from_secs(1),
                },
            ),
            (
                "reboot 6.6",
                Fault::Reboot {
                    pause: Duration::from_secs_f64(6.6),
                },
            ),
            (
                "reboot 6s",
                Fault::Reboot {
                    pause: Duration::from_secs(6),
                },
            ),
            ("power-off", Fault::PowerOff),
            (
                "link-down eth0",
                Fault::LinkDown {
                    interface: Some("eth0".into()),
                },
            ),
            (
                "partition a,b,c",
                Fault::Partition {
                    one_way: false,
                    from: vec!["a".into(), "b".into(), "c".into()],
                },
            ),
            ("heal", Fault::Heal),
            (
                "loss 10%",
                Fault::Loss {
                    percent: Percent::new(10.0).unwrap(),
                    burst: None,
                    link: LinkChoice::default(),
                },
            ),
            (
                "rate 500kbit",
                Fault::Rate {
                    rate: Some(impair::parse_rate("500kbit").unwrap()),
                    link: LinkChoice::default(),
                },
            ),
            (
                "rate off",
                Fault::Rate {
                    rate: None,
                    link: LinkChoice::default(),
                },
            ),
        ];
        for (text, fault) in cases {
            assert_eq!(Fault::parse(&words(text)), Ok(fault), "{text}");
        }
    }

    #[test]
    fn link_faults_act_where_and_which_way_they_say() {
        let link = |text: &str| match Fault::parse(&words(text)).unwrap() {
            Fault::Delay { link, .. } => (link.directions(), link.interface),
            other => panic!("{other:?}"),
        };
        assert_eq!(link("delay 1s"), (vec![Direction::From], None));
        assert_eq!(link("delay 1s --to"), (vec![Direction::To], None));
        assert_eq!(
            link("delay 1s --both --interface eth1"),
            (vec![Direction::From, Direction::To], Some("eth1".into()))
        );
    }

    #[test]
    fn mistakes_are_refused_with_the_reason() {
        let refused = |text: &str, reason: &str| {
            let error = Fault::parse(&words(text)).unwrap_err();
            assert!(error.contains(reason), "`{text}`: {error}");
            assert!(!error.contains('\x1b'), "no colours: {error:?}");
        };
        refused("", "");
        refused("explode", "unrecognized subcommand 'explode'");
        refused("stop a b", "unexpected argument 'b'");
        refused("heal now", "unexpected argument 'now'");
        refused("partition", "<HOST>");
        refused("partition a b", "unexpected argument 'b'");
        refused("loss", "<PERCENT>");
        refused("loss 120", "`120` is not a percentage in 0-100");
        refused("loss -5", "`-5` is not a percentage in 0-100");
        refused("loss 10 --burst 0", "`0` is not a mean burst length");
        refused("delay", "<DELAY>");
        refused("delay 200", "`200` is not a duration");
        refused("delay 1s --to --from", "cannot be used with");
        refused("reorder 10 --jitter 1ms", "unexpected argument '--jitter'");
        refused("partition --one-way", "<HOST>");
        refused("reboot 3601", "`3601` is not a number of seconds in 0-3600");
        refused("reboot -1", "`-1` is not a number of seconds in 0-3600");
        refused("reboot inf", "0-3600");
        refused("rate", "<RATE>");
        refused("rate fast", "`fast` is not a rate");
        refused("rate 1mbit/s", "`1mbit/s` is not a rate");
    }

    #[test]
    fn faults_display_as_before() {
        let shown: Vec<String> = [
            "stop",
            "crash vrrpd",
            "reboot",
            "reboot 6.6",
            "power-off",
            "link-down eth0",
            "partition a,b",
            "heal",
            "loss 10%",
            "rate 1mbit",
            "rate off",
            "partition --one-way a",
            "delay 100ms --jitter 10ms --to",
            "loss 1 --burst 3",
            "clear",
        ]
        .into_iter()
        .map(|text| Fault::parse(&words(text)).unwrap().to_string())
        .collect();
        assert_eq!(
            shown,
            [
                "stop",
                "crash vrrpd",
                "reboot 1s",
                "reboot 6.6s",
                "power-off",
                "link-down eth0",
                "partition from a,b",
                "heal",
                "loss 10%",
                "rate 1mbit",
                "rate off",
                "partition one-way to a",
                "delay 100ms --jitter 10ms --to",
                "loss 1% --burst 3",
                "clear",
            ]
        );
    }

    #[test]
    fn faults_round_trip_through_serde() {
        for text in [
            "crash vrrpd",
            "reboot 6.6",
            "partition a,b",
            "partition --one-way a",
            "loss 10",
            "loss 0.5 --burst 3 --to --interface eth1",
            "delay 1.5s --jitter 20ms --distribution normal --both",
            "duplicate 1",
            "reorder 25",
            "corrupt 0.1",
            "rate 1mbit --to",
            "rate off",
            "clear --interface eth0",
            "heal",
        ] {
            let fault = Fault::parse(&words(text)).unwrap();
            let json = serde_json::to_string(&fault).unwrap();
            assert_eq!(serde_json::from_str::<Fault>(&json).unwrap(), fault, "{json}");
        }
    }
}
