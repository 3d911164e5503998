//! Deterministic simulation: several [`Machine`]s on one in-memory segment with a virtual clock. Adverts travel
//! as real bytes (emitted, delivered, parsed), so a scenario exercises the same code as the daemon, and the same
//! inputs always give the same timeline, to the nanosecond.

use std::collections::BTreeSet;
use std::fmt;
use std::net::Ipv4Addr;
use std::time::Duration;

use crate::machine::{Action, Machine, Outgoing, Received, Settings, State, Time};
use crate::wire::vrrp::{MULTICAST_GROUP, TTL};

/// A host on the segment.
pub type HostId = usize;

/// Something that happened, for the timeline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum What {
    /// A keepalived log line; `detail` ones keepalived prints only with `-D`.
    Log {
        line: String,
        detail: bool,
    },
    /// The scenario acted on a host ("crash", "start", "partition" ...).
    Scenario(String),
    AddressesAdded,
    AddressesRemoved,
    GratuitousArps {
        repeat: u32,
    },
    Sent {
        to: Ipv4Addr,
        priority: u8,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub at: Time,
    pub host: String,
    pub what: What,
}

impl fmt::Display for Entry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let at = format!("{:>12.9}", self.at.as_secs_f64());
        let host = &self.host;
        match &self.what {
            What::Log { line, detail: false } => write!(f, "{at} {host} {line}"),
            What::Log { line, detail: true } => write!(f, "{at} {host} [-D] {line}"),
            What::Scenario(action) => write!(f, "{at} {host} ## {action}"),
            What::AddressesAdded => write!(f, "{at} {host} -> addresses added"),
            What::AddressesRemoved => write!(f, "{at} {host} -> addresses removed"),
            What::GratuitousArps { repeat } => write!(f, "{at} {host} -> {repeat} gratuitous ARP(s) per address"),
            What::Sent { to, priority } => write!(f, "{at} {host} -> advert priority {priority} to {to}"),
        }
    }
}

struct Host {
    name: String,
    settings: Settings,
    machine: Machine,
    running: bool,
    /// Whether the kernel holds the virtual addresses (they survive a crash of the agent, not a reboot).
    holds_addresses: bool,
}

struct InFlight {
    at: Time,
    sequence: u64,
    from: HostId,
    packet: Outgoing,
}

pub struct Simulation {
    now: Time,
    hosts: Vec<Host>,
    in_flight: Vec<InFlight>,
    sequence: u64,
    latency: Duration,
    /// Pairs of hosts that cannot hear each other.
    cut: BTreeSet<(HostId, HostId)>,
    timeline: Vec<Entry>,
}

impl Default for Simulation {
    fn default() -> Simulation {
        Simulation::new()
    }
}

impl Simulation {
    pub fn new() -> Simulation {
        Simulation {
            now: Duration::ZERO,
            hosts: Vec::new(),
            in_flight: Vec::new(),
            sequence: 0,
            latency: Duration::ZERO,
            cut: BTreeSet::new(),
            timeline: Vec::new(),
        }
    }

    /// One-way delay of every packet on the segment (zero by default).
    pub fn with_latency(mut self, latency: Duration) -> Simulation {
        self.latency = latency;
        self
    }

    pub fn add_host(&mut self, name: &str, settings: Settings) -> HostId {
        self.hosts.push(Host {
            name: name.to_string(),
            machine: Machine::new(settings.clone()),
            settings,
            running: false,
            holds_addresses: false,
        });
        self.hosts.len() - 1
    }

    pub fn now(&self) -> Time {
        self.now
    }

    pub fn machine(&self, host: HostId) -> &Machine {
        &self.hosts[host].machine
    }

    pub fn state(&self, host: HostId) -> State {
        self.hosts[host].machine.state()
    }

    pub fn holds_addresses(&self, host: HostId) -> bool {
        self.hosts[host].holds_addresses
    }

    pub fn timeline(&self) -> &[Entry] {
        &self.timeline
    }

    /// The timeline from `since` on, one entry per line, times relative to `since`.
    pub fn render_since(&self, since: Time, include: impl Fn(&Entry) -> bool) -> String {
        let mut text = String::new();
        for entry in self.timeline.iter().filter(|entry| entry.at >= since && include(entry)) {
            let relative = Entry {
                at: entry.at - since,
                ..entry.clone()
            };
            text.push_str(&relative.to_string());
            text.push('\n');
        }
        text
    }

    /// Starts (or restarts) the agent on a host now.
    pub fn start(&mut self, host: HostId) {
        self.scenario(host, "start");
        let now = self.now;
        let entry = &mut self.hosts[host];
        entry.machine = Machine::new(entry.settings.clone());
        entry.running = true;
        entry.machine.startup(now);
        self.collect(host);
    }

    /// SIGTERM: the agent shuts down cleanly (priority 0 if master).
    pub fn stop(&mut self, host: HostId) {
        self.scenario(host, "stop");
        let now = self.now;
        self.hosts[host].machine.shutdown(now);
        self.collect(host);
        self.hosts[host].running = false;
    }

    /// SIGKILL: the agent vanishes; whatever addresses it had stay on the interface.
    pub fn crash(&mut self, host: HostId) {
        self.scenario(host, "crash");
        self.hosts[host].running = false;
    }

    /// The host goes down: the agent is gone and so are its addresses.
    pub fn power_off(&mut self, host: HostId) {
        self.scenario(host, "power off");
        self.hosts[host].running = false;
        self.hosts[host].holds_addresses = false;
    }

    /// A tracked interface or script goes down (`true`) or comes back.
    pub fn set_fault(&mut self, host: HostId, faulty: bool) {
        self.scenario(host, if faulty { "fault" } else { "fault cleared" });
        let now = self.now;
        self.hosts[host].machine.set_fault(now, faulty);
        self.collect(host);
    }

    pub fn set_priority_offset(&mut self, host: HostId, offset: i32) {
        self.scenario(host, &format!("priority offset {offset}"));
        let now = self.now;
        self.hosts[host].machine.set_priority_offset(now, offset);
        self.collect(host);
    }

    /// Hosts `a` and `b` stop hearing each other, both ways.
    pub fn partition(&mut self, a: HostId, b: HostId) {
        self.scenario(a, &format!("partition from {}", self.hosts[b].name));
        self.cut.insert((a.min(b), a.max(b)));
    }

    pub fn heal(&mut self) {
        self.timeline.push(Entry {
            at: self.now,
            host: "segment".into(),
            what: What::Scenario("heal".into()),
        });
        self.cut.clear();
    }

    pub fn run_for(&mut self, duration: Duration) {
        self.run_until(self.now + duration);
    }

    /// Processes every delivery and timer due up to `until`, in time order; at equal times deliveries go first,
    /// then timers by host order, then whatever those produced. The clock ends at `until`.
    pub fn run_until(&mut self, until: Time) {
        loop {
            let delivery = self
                .in_flight
                .iter()
                .enumerate()
                .min_by_key(|(_, f)| (f.at, f.sequence))
                .map(|(i, f)| (i, f.at));
            let timer = self
                .hosts
                .iter()
                .enumerate()
                .filter(|(_, host)| host.running)
                .filter_map(|(id, host)| host.machine.poll_timeout().map(|at| (id, at)))
                .min_by_key(|(id, at)| (*at, *id));
            let next = match (delivery, timer) {
                (Some((index, at)), Some((_, timer_at))) if at <= timer_at => Next::Deliver(index, at),
                (Some((index, at)), None) => Next::Deliver(index, at),
                (_, Some((host, at))) => Next::Timer(host, at),
                (None, None) => break,
            };
            match next {
                Next::Deliver(_, at) | Next::Timer(_, at) if at > until => break,
                Next::Deliver(index, at) => {
                    self.now = at;
                    let flight = self.in_flight.swap_remove(index);
                    self.deliver(flight);
                }
                Next::Timer(host, at) => {
                    self.now = at;
                    self.hosts[host].machine.handle_timeout(at);
                    self.collect(host);
                }
            }
        }
        self.now = until;
    }

    fn deliver(&mut self, flight: InFlight) {
        let packet = flight.packet;
        for to in 0..self.hosts.len() {
            let host = &self.hosts[to];
            let addressed = if packet.dst == MULTICAST_GROUP {
                to != flight.from
            } else {
                host.settings.source == packet.dst
            };
            if !addressed || !host.running || self.cut.contains(&(flight.from.min(to), flight.from.max(to))) {
                continue;
            }
            let received = Received {
                src: packet.src,
                dst: packet.dst,
                ttl: TTL,
                payload: &packet.payload,
            };
            self.hosts[to].machine.receive(self.now, received);
            self.collect(to);
        }
    }

    /// Moves a machine's actions into the timeline and the segment.
    fn collect(&mut self, host: HostId) {
        let actions = self.hosts[host].machine.drain_actions();
        let name = self.hosts[host].name.clone();
        for action in actions {
            let what = match action {
                Action::Log(line) => What::Log {
                    detail: line.message.is_detail(),
                    line: line.to_string(),
                },
                Action::Send(packet) => {
                    let what = What::Sent {
                        to: packet.dst,
                        priority: packet.priority,
                    };
                    self.sequence += 1;
                    let at = self.now + self.latency;
                    self.in_flight.push(InFlight {
                        at,
                        sequence: self.sequence,
                        from: host,
                        packet,
                    });
                    what
                }
                Action::AddAddresses => {
                    self.hosts[host].holds_addresses = true;
                    What::AddressesAdded
                }
                Action::RemoveAddresses => {
                    self.hosts[host].holds_addresses = false;
                    What::AddressesRemoved
                }
                Action::GratuitousArp { repeat } => What::GratuitousArps { repeat },
                Action::Notify { .. } | Action::StateChanged { .. } | Action::Accepted { .. } => continue,
                Action::Discarded { .. } => continue,
            };
            self.timeline.push(Entry {
                at: self.now,
                host: name.clone(),
                what,
            });
        }
    }

    fn scenario(&mut self, host: HostId, action: &str) {
        let name = self.hosts[host].name.clone();
        self.timeline.push(Entry {
            at: self.now,
            host: name,
            what: What::Scenario(action.to_string()),
        });
    }
}

enum Next {
    Deliver(usize, Time),
    Timer(HostId, Time),
}
