//! Faults: what `lab fault` does to a running lab, as production breaks. Every fault becomes an event on the
//! timeline, stamped when it starts.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::io::{self, Write};
use std::net::Ipv4Addr;
use std::process::Stdio;
use std::time::Duration;

use nix::sys::signal::Signal;
use rtnetlink::packet_route::address::AddressAttribute;
use rtnetlink::packet_route::RouteNetlinkMessage;

use crate::events::EventKind;
use crate::lab::Lab;
use crate::net::netlink::{Netlink, Request};
use crate::net::{build, netns};
use crate::process::HostCommand;
use crate::state;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// The service's own stop signal, then SIGKILL after its grace period.
    Stop {
        service: Option<String>,
    },
    /// Starts a service that has exited (after stop or crash).
    Start {
        service: Option<String>,
    },
    /// SIGKILL to the service's process group.
    Crash {
        service: Option<String>,
    },
    /// SIGSTOP / SIGCONT to the service's process group.
    Freeze {
        service: Option<String>,
    },
    Thaw {
        service: Option<String>,
    },
    /// Power off, wait `pause`, power on: as the seed's `reboot`.
    Reboot {
        pause: Duration,
    },
    /// Every process in the host killed, its links down, the addresses nobody configured gone.
    PowerOff,
    /// Links up, routes back, services started again in topology order.
    PowerOn,
    LinkDown {
        interface: Option<String>,
    },
    LinkUp {
        interface: Option<String>,
    },
    /// Traffic between the fault's hosts and these hosts is dropped by the switch, both ways, until `heal`.
    Partition {
        from: Vec<String>,
    },
    /// Removes every partition of the lab.
    Heal,
    /// The switch drops this percentage of the hosts' outgoing packets at random (0 clears it).
    Loss {
        percent: u8,
    },
    /// Shapes the hosts' outgoing traffic with a token bucket (`tc` rate such as `1mbit`); `None` clears it.
    Rate {
        rate: Option<String>,
    },
}

pub const USAGE: &str = "stop|start|crash|freeze|thaw [SERVICE] | reboot [SECONDS] | power-off | power-on | \
                         link-down|link-up [INTERFACE] | partition HOST[,HOST...] | heal | loss PERCENT | \
                         rate RATE|off";

impl Fault {
    /// Reads a fault from its command-line words, e.g. `["crash", "vrrpd"]` or `["loss", "10"]`.
    pub fn parse(words: &[String]) -> Result<Fault, String> {
        let (kind, rest) = words.split_first().ok_or_else(|| format!("name a fault: {USAGE}"))?;
        let optional = |what: &str| -> Result<Option<String>, String> {
            match rest {
                [] => Ok(None),
                [one] => Ok(Some(one.clone())),
                _ => Err(format!("`{kind}` takes at most one {what}")),
            }
        };
        let one = |what: &str| -> Result<&String, String> {
            match rest {
                [one] => Ok(one),
                _ => Err(format!("`{kind}` takes one {what}")),
            }
        };
        let none = || -> Result<(), String> {
            if rest.is_empty() {
                Ok(())
            } else {
                Err(format!("`{kind}` takes no argument"))
            }
        };
        Ok(match kind.as_str() {
            "stop" => Fault::Stop {
                service: optional("service")?,
            },
            "start" => Fault::Start {
                service: optional("service")?,
            },
            "crash" => Fault::Crash {
                service: optional("service")?,
            },
            "freeze" => Fault::Freeze {
                service: optional("service")?,
            },
            "thaw" => Fault::Thaw {
                service: optional("service")?,
            },
            "reboot" => Fault::Reboot {
                pause: match optional("pause in seconds")? {
                    None => Duration::from_secs(1),
                    Some(text) => text
                        .trim_end_matches('s')
                        .parse::<f64>()
                        .ok()
                        .filter(|s| s.is_finite() && (0.0..=3600.0).contains(s))
                        .map(Duration::from_secs_f64)
                        .ok_or_else(|| format!("reboot pause `{text}` is not a number of seconds in 0-3600"))?,
                },
            },
            "power-off" => none().map(|_| Fault::PowerOff)?,
            "power-on" => none().map(|_| Fault::PowerOn)?,
            "link-down" => Fault::LinkDown {
                interface: optional("interface")?,
            },
            "link-up" => Fault::LinkUp {
                interface: optional("interface")?,
            },
            "partition" => Fault::Partition {
                from: one("comma-separated list of hosts")?
                    .split(',')
                    .map(str::to_string)
                    .collect(),
            },
            "heal" => none().map(|_| Fault::Heal)?,
            "loss" => {
                let text = one("percentage")?;
                let percent = text
                    .trim_end_matches('%')
                    .parse::<u8>()
                    .ok()
                    .filter(|p| *p <= 100)
                    .ok_or_else(|| format!("loss `{text}` is not a percentage in 0-100"))?;
                Fault::Loss { percent }
            }
            "rate" => {
                let text = one("rate (e.g. 1mbit) or `off`")?;
                let valid = text == "off"
                    || (text.starts_with(|c: char| c.is_ascii_digit())
                        && text.chars().all(|c| c.is_ascii_alphanumeric() || c == '.'));
                if !valid {
                    return Err(format!(
                        "rate `{text}` is not a tc rate such as 1mbit, 500kbit, or `off`"
                    ));
                }
                Fault::Rate {
                    rate: (text != "off").then(|| text.clone()),
                }
            }
            other => return Err(format!("unknown fault `{other}`: {USAGE}")),
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

impl Lab {
    /// Injects `fault` into `host`. See [`Lab::inject`] for several hosts at once.
    pub fn fault(&mut self, host: &str, fault: &Fault) -> io::Result<()> {
        self.inject(&[host], fault)
    }

    /// Injects `fault` into each of `hosts` (for a partition: cuts them off from the hosts the fault names).
    pub fn inject(&mut self, hosts: &[&str], fault: &Fault) -> io::Result<()> {
        for host in hosts {
            self.topology().host(host).ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::NotFound,
                    format!("lab {} has no host `{host}`", self.name()),
                )
            })?;
        }
        self.events().push(
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
                        self.services[index].stop(&self.events);
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
                    self.network_faults.loss.insert(host.to_string(), *percent);
                    self.write_switch_faults()?;
                }
                Fault::Rate { rate } => self.shape(host, rate.as_deref())?,
                Fault::Partition { .. } | Fault::Heal => unreachable!("handled above"),
            }
        }
        self.save_state()
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
            if running.exit_status().is_some() {
                continue;
            }
            let group = nix::unistd::Pid::from_raw(running.pid as i32);
            nix::sys::signal::killpg(group, signal)?;
            if wait {
                running.wait_exit(Duration::from_secs(10));
            }
        }
        Ok(())
    }

    /// Starts again, in topology order, the services of `host` that have exited.
    fn start_exited(&mut self, host: &str, service: Option<&str>) -> io::Result<()> {
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
            let old = &self.services[index];
            let identity = self.host_command(host)?;
            let (spec, log) = (old.spec.clone(), old.log.clone());
            let started = crate::service::RunningService::start(host, &spec, &identity, &log, &self.events)?;
            let ready = started.wait_ready(&self.netns(host)?, &self.events);
            self.services[index] = started;
            ready?;
        }
        Ok(())
    }

    fn power_off(&mut self, host: &str) -> io::Result<()> {
        let namespace = self.netns(host)?;
        state::kill_namespace_processes(std::slice::from_ref(&namespace));
        for index in self.service_indexes(host, None).unwrap_or_default() {
            self.services[index].wait_exit(Duration::from_secs(10));
        }
        self.set_links(host, None, false)?;
        // A host that comes back has only the addresses its configuration gives it.
        let configured: Vec<Ipv4Addr> = self.addresses(host)?.into_iter().map(|(_, a, _)| a).collect();
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
        let interfaces = &self.topology().host(host).expect("checked host").interfaces;
        let chosen: Vec<u32> = interfaces
            .iter()
            .enumerate()
            .filter(|(_, i)| interface.is_none_or(|name| i.name == name))
            .map(|(n, _)| build::interface_index(n))
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
            requests.extend(build::route_requests(self.topology(), host));
        }
        netns::run_in(&self.netns(host)?, move || Netlink::open()?.apply_replacing(requests))
    }

    fn partition(&mut self, side: &[&str], other: &[String]) -> io::Result<()> {
        let addresses = |lab: &Lab, hosts: &[&str]| -> io::Result<BTreeSet<Ipv4Addr>> {
            let mut all = BTreeSet::new();
            for host in hosts {
                all.extend(lab.addresses(host)?.into_iter().map(|(_, a, _)| a));
            }
            Ok(all)
        };
        let other: Vec<&str> = other.iter().map(String::as_str).collect();
        if let Some(both) = side.iter().find(|h| other.contains(h)) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("host {both} is on both sides of the partition"),
            ));
        }
        let (side_addresses, other_addresses) = (addresses(self, side)?, addresses(self, &other)?);
        for a in &side_addresses {
            for b in &other_addresses {
                self.network_faults.blocked.insert((*a, *b));
                self.network_faults.blocked.insert((*b, *a));
            }
        }
        self.write_switch_faults()
    }

    fn heal(&mut self) -> io::Result<()> {
        self.network_faults.blocked.clear();
        self.write_switch_faults()
    }

    /// Replaces the switch's `lab_fault` table (bridge family: it sees every frame between hosts) with the faults
    /// in force, atomically, in one `nft` run.
    fn write_switch_faults(&self) -> io::Result<()> {
        let faults = &self.network_faults;
        let mut rules = String::from("add table bridge lab_fault\ndelete table bridge lab_fault\n");
        if !faults.blocked.is_empty() || faults.loss.values().any(|p| *p > 0) {
            rules.push_str("table bridge lab_fault {\n  chain forward {\n    type filter hook forward priority -10;\n");
            for (from, to) in &faults.blocked {
                rules.push_str(&format!("    ip saddr {from} ip daddr {to} drop\n"));
            }
            for (host, percent) in faults.loss.iter().filter(|(_, p)| **p > 0) {
                let interfaces = self.topology().host(host).expect("checked host").interfaces.len();
                let ports: Vec<String> = (0..interfaces)
                    .map(|n| format!("\"{}\"", crate::topology::switch_port_name(host, n)))
                    .collect();
                // nft compares against 0-99: everything is a plain drop.
                let chance = if *percent >= 100 {
                    String::new()
                } else {
                    format!("numgen random mod 100 < {percent} ")
                };
                rules.push_str(&format!("    iifname {{ {} }} {chance}drop\n", ports.join(", ")));
            }
            rules.push_str("  }\n}\n");
        }
        let switch = self.topology().netns_name(crate::topology::SWITCH_HOST);
        run_tool(&HostCommand::new(&switch), "nft", &["-f", "-"], Some(&rules))
    }

    fn shape(&self, host: &str, rate: Option<&str>) -> io::Result<()> {
        let command = HostCommand::new(&self.netns(host)?);
        for interface in &self.topology().host(host).expect("checked host").interfaces {
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
    let program = crate::topology::find_program(tool).map_err(|why| io::Error::new(io::ErrorKind::NotFound, why))?;
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
