//! Faults: what `lab fault` does to a running lab, as production breaks. Every fault becomes an event on the
//! timeline, stamped when it starts.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::io::{self, Write};
use std::net::Ipv4Addr;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use nix::sys::signal::Signal;
use rtnetlink::packet_route::address::AddressAttribute;
use rtnetlink::packet_route::RouteNetlinkMessage;
use serde::{Deserialize, Serialize};

use crate::events::{EventKind, EventLog};
use crate::net::netlink::{Netlink, Request};
use crate::net::{build, firewall, netns};
use crate::plan::{HostPlan, Plan};
use crate::process::HostCommand;
use crate::service::RunningService;
use crate::state::LabState;
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
    /// Cut the hosts off from other hosts: the switch drops the traffic between them, both ways, until `heal`.
    Partition {
        /// The hosts on the other side, separated by commas.
        // One word (`Set`, one value), split at its commas.
        #[arg(value_name = "HOST", required = true, num_args = 1, action = clap::ArgAction::Set, value_delimiter = ',')]
        from: Vec<String>,
    },
    /// Remove every partition of the lab.
    Heal,
    /// Make the switch drop a percentage of the hosts' outgoing packets at random.
    Loss {
        /// 0-100, e.g. `10` or `10%`; 0 clears it.
        #[arg(value_name = "PERCENT", value_parser = parse_percent, allow_negative_numbers = true)]
        percent: u8,
    },
    /// Shape the hosts' outgoing traffic with a token bucket.
    Rate {
        /// A `tc` rate such as `1mbit` or `500kbit`, or `off` to clear it.
        // Spelled out so that clap takes the argument as required and `parse_rate` makes the `Option`.
        #[arg(value_name = "RATE", value_parser = parse_rate)]
        rate: std::option::Option<String>,
    },
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

/// `loss`'s percentage: 0-100, with or without a trailing `%`.
fn parse_percent(text: &str) -> Result<u8, String> {
    text.trim_end_matches('%')
        .parse::<u8>()
        .ok()
        .filter(|p| *p <= 100)
        .ok_or_else(|| format!("`{text}` is not a percentage in 0-100"))
}

/// `rate`'s argument: a `tc` rate (a digit, then letters, digits and dots), or `off` for none.
fn parse_rate(text: &str) -> Result<Option<String>, String> {
    if text == "off" {
        return Ok(None);
    }
    let valid =
        text.starts_with(|c: char| c.is_ascii_digit()) && text.chars().all(|c| c.is_ascii_alphanumeric() || c == '.');
    if !valid {
        return Err(format!("`{text}` is not a tc rate such as 1mbit, 500kbit, or `off`"));
    }
    Ok(Some(text.to_string()))
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
            Fault::Partition { from } => vec!["partition".into(), from.join(",")],
            Fault::Heal => vec!["heal".into()],
            Fault::Loss { percent } => vec!["loss".into(), percent.to_string()],
            Fault::Rate { rate } => vec!["rate".into(), rate.clone().unwrap_or_else(|| "off".into())],
        }
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
            Fault::Partition { from } => write!(f, "partition from {}", from.join(",")),
            Fault::Heal => write!(f, "heal"),
            Fault::Loss { percent } => write!(f, "loss {percent}%"),
            Fault::Rate { rate } => write!(f, "rate {}", rate.as_deref().unwrap_or("off")),
        }
    }
}

/// Network faults in force, kept so each change rewrites the switch's fault table whole. They live in the lab's
/// switch namespace, as a broken network would: hosts see their packets vanish, not a local error.
#[derive(Debug, Default)]
pub struct NetworkFaults {
    /// (source, destination) pairs whose packets are dropped.
    blocked: BTreeSet<(Ipv4Addr, Ipv4Addr)>,
    /// Host -> percentage of its outgoing packets dropped.
    loss: BTreeMap<String, u8>,
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

impl Injection<'_> {
    /// Injects `fault` into each of `hosts` (for a partition: cuts them off from the hosts the fault names).
    pub fn inject(&mut self, hosts: &[&str], fault: &Fault) -> io::Result<()> {
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
            Fault::Partition { from } => return self.partition(hosts, from),
            Fault::Heal => return self.heal(),
            _ => {}
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
                Fault::Loss { percent } => {
                    self.network.loss.insert(host.to_string(), *percent);
                    self.write_switch_faults()?;
                }
                Fault::Rate { rate } => self.shape(host, rate.as_deref())?,
                Fault::Partition { .. } | Fault::Heal => unreachable!("handled above"),
            }
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
        let chosen: Vec<u32> = host_plan
            .interfaces
            .iter()
            .filter(|i| interface.is_none_or(|name| i.name == name))
            .map(|i| i.index)
            .collect();
        if chosen.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!("host {host} has no interface `{}`", interface.unwrap_or("")),
            ));
        }
        let mut requests: Vec<Request> = chosen
            .into_iter()
            .map(|index| {
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
        })
    }

    fn addresses(&self, hosts: &[&str]) -> io::Result<BTreeSet<Ipv4Addr>> {
        let mut all = BTreeSet::new();
        for host in hosts {
            all.extend(self.host(host)?.interfaces.iter().map(|i| i.address));
        }
        Ok(all)
    }

    fn partition(&mut self, side: &[&str], other: &[String]) -> io::Result<()> {
        let other: Vec<&str> = other.iter().map(String::as_str).collect();
        if let Some(both) = side.iter().find(|h| other.contains(h)) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("host {both} is on both sides of the partition"),
            ));
        }
        let (side_addresses, other_addresses) = (self.addresses(side)?, self.addresses(&other)?);
        for a in &side_addresses {
            for b in &other_addresses {
                self.network.blocked.insert((*a, *b));
                self.network.blocked.insert((*b, *a));
            }
        }
        self.write_switch_faults()
    }

    fn heal(&mut self) -> io::Result<()> {
        self.network.blocked.clear();
        self.write_switch_faults()
    }

    /// Replaces the switch's `lab_fault` table with the faults in force, atomically, in one `nft` run (see
    /// [`firewall::switch_fault_rules`]).
    fn write_switch_faults(&self) -> io::Result<()> {
        let loss: Vec<(Vec<String>, u8)> = self
            .network
            .loss
            .iter()
            .map(|(host, percent)| {
                let ports = self.host_plan(host)?.interfaces.iter().map(|i| i.switch_port.clone());
                Ok((ports.collect(), *percent))
            })
            .collect::<io::Result<_>>()?;
        let rules = firewall::switch_fault_rules(&self.network.blocked, &loss);
        run_tool(
            &HostCommand::new(&self.plan.switch.mount)?,
            "nft",
            &["-f", "-"],
            Some(&rules),
        )
    }

    fn shape(&self, host: &str, rate: Option<&str>) -> io::Result<()> {
        let command = HostCommand::new(&self.host_plan(host)?.namespace.mount)?;
        for interface in &self.host(host)?.interfaces {
            let name = interface.name.as_str();
            match rate {
                Some(rate) => run_tool(
                    &command,
                    "tc",
                    &[
                        "qdisc", "replace", "dev", name, "root", "tbf", "rate", rate, "burst", "32kbit", "latency",
                        "400ms",
                    ],
                    None,
                )?,
                // Deleting a root qdisc that was never added fails; clearing twice is not an error.
                None => {
                    let _ = run_tool(&command, "tc", &["qdisc", "del", "dev", name, "root"], None);
                }
            }
        }
        Ok(())
    }
}

/// Runs an iproute2/nftables tool inside a host and turns its complaint into the error.
fn run_tool(host: &HostCommand, tool: &str, args: &[&str], stdin: Option<&str>) -> io::Result<()> {
    let program = crate::process::find_program(tool).map_err(|why| io::Error::new(io::ErrorKind::NotFound, why))?;
    let mut child = host
        .command(&program)?
        .args(args)
        .stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()?;
    if let Some(text) = stdin {
        child.stdin.take().expect("piped").write_all(text.as_bytes())?;
    }
    let output = child.wait_with_output()?;
    if output.status.success() {
        Ok(())
    } else {
        Err(io::Error::other(format!(
            "{tool} {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr).trim()
        )))
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
        let service = |name: Option<&str>| name.map(str::to_string);
        let faults = [
            Fault::Stop { service: None },
            Fault::Stop {
                service: service(Some("vrrpd")),
            },
            Fault::Start { service: None },
            Fault::Start {
                service: service(Some("vrrpd")),
            },
            Fault::Crash { service: None },
            Fault::Crash {
                service: service(Some("redis")),
            },
            Fault::Freeze { service: None },
            Fault::Freeze {
                service: service(Some("redis")),
            },
            Fault::Thaw { service: None },
            Fault::Thaw {
                service: service(Some("redis")),
            },
            Fault::Reboot {
                pause: Duration::from_secs(1),
            },
            Fault::Reboot { pause: Duration::ZERO },
            Fault::Reboot {
                pause: Duration::from_millis(6600),
            },
            Fault::Reboot {
                pause: Duration::from_secs(3600),
            },
            Fault::PowerOff,
            Fault::PowerOn,
            Fault::LinkDown { interface: None },
            Fault::LinkDown {
                interface: Some("eth0".into()),
            },
            Fault::LinkUp { interface: None },
            Fault::LinkUp {
                interface: Some("eth1".into()),
            },
            Fault::Partition { from: vec!["b".into()] },
            Fault::Partition {
                from: vec!["b".into(), "c".into()],
            },
            Fault::Heal,
            Fault::Loss { percent: 0 },
            Fault::Loss { percent: 10 },
            Fault::Loss { percent: 100 },
            Fault::Rate {
                rate: Some("1mbit".into()),
            },
            Fault::Rate {
                rate: Some("1.5mbit".into()),
            },
            Fault::Rate { rate: None },
        ];
        for fault in faults {
            assert_eq!(Fault::parse(&fault.words()), Ok(fault.clone()), "{:?}", fault.words());
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
                "reboot 6",
                Fault::Reboot {
                    pause: Duration::from_secs(6),
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
            ("reboot 0", Fault::Reboot { pause: Duration::ZERO }),
            ("power-off", Fault::PowerOff),
            ("power-on", Fault::PowerOn),
            (
                "link-down eth0",
                Fault::LinkDown {
                    interface: Some("eth0".into()),
                },
            ),
            ("link-up", Fault::LinkUp { interface: None }),
            (
                "partition haproxy2",
                Fault::Partition {
                    from: vec!["haproxy2".into()],
                },
            ),
            (
                "partition a,b,c",
                Fault::Partition {
                    from: vec!["a".into(), "b".into(), "c".into()],
                },
            ),
            ("heal", Fault::Heal),
            ("loss 10", Fault::Loss { percent: 10 }),
            ("loss 10%", Fault::Loss { percent: 10 }),
            ("loss 100", Fault::Loss { percent: 100 }),
            (
                "rate 500kbit",
                Fault::Rate {
                    rate: Some("500kbit".into()),
                },
            ),
            ("rate off", Fault::Rate { rate: None }),
        ];
        for (text, fault) in cases {
            assert_eq!(Fault::parse(&words(text)), Ok(fault), "{text}");
        }
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
        refused("reboot 3601", "`3601` is not a number of seconds in 0-3600");
        refused("reboot -1", "`-1` is not a number of seconds in 0-3600");
        refused("reboot inf", "0-3600");
        refused("rate", "<RATE>");
        refused("rate fast", "`fast` is not a tc rate");
        refused("rate 1mbit/s", "`1mbit/s` is not a tc rate");
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
            ]
        );
    }

    #[test]
    fn faults_round_trip_through_serde() {
        for text in [
            "crash vrrpd",
            "reboot 6.6",
            "partition a,b",
            "loss 10",
            "rate off",
            "heal",
        ] {
            let fault = Fault::parse(&words(text)).unwrap();
            let json = serde_json::to_string(&fault).unwrap();
            assert_eq!(serde_json::from_str::<Fault>(&json).unwrap(), fault, "{json}");
        }
    }
}
