//! What happened in a lab, in order, stamped with CLOCK_MONOTONIC (one clock for every namespace, and the clock
//! the agent and other observers stamp their own events with).

use std::collections::VecDeque;
use std::net::Ipv4Addr;
use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

/// Nanoseconds of CLOCK_MONOTONIC.
pub fn monotonic_ns() -> u64 {
    let now = nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC).expect("CLOCK_MONOTONIC");
    now.tv_sec() as u64 * 1_000_000_000 + now.tv_nsec() as u64
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// CLOCK_MONOTONIC, nanoseconds.
    pub at_ns: u64,
    /// The host the event belongs to; `None` for the lab itself.
    pub host: Option<String>,
    #[serde(flatten)]
    pub kind: EventKind,
    /// For an event from another machine of a spread lab: which one, and how far off its stamp may be on this
    /// machine's clock.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clock: Option<RemoteClock>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RemoteClock {
    pub machine: String,
    pub uncertainty_ns: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum EventKind {
    LabUp {
        lab: String,
        build_ms: f64,
    },
    LabDown {
        lab: String,
    },
    ServiceStarted {
        service: String,
        pid: u32,
    },
    ServiceReady {
        service: String,
    },
    ServiceOutput {
        service: String,
        stream: Stream,
        line: String,
    },
    ServiceStopping {
        service: String,
        signal: String,
    },
    ServiceExited {
        service: String,
        status: ExitStatus,
    },
    /// The lab started a service again after it failed (`restart = "on-failure"`).
    ServiceRestarted {
        service: String,
        pid: u32,
        /// This restart's number, from 1, and how many the topology allows.
        restart: u32,
        limit: u32,
    },
    /// Something the lab did to a host or the network on purpose (`lab fault`).
    Fault {
        fault: String,
    },
    /// Kernel: an address appeared on or left an interface of the host (netlink, whoever did it).
    AddressAdded {
        interface: String,
        address: String,
    },
    AddressRemoved {
        interface: String,
        address: String,
    },
    /// Kernel: an interface of the host became usable (administratively up with carrier) or stopped being so.
    LinkUp {
        interface: String,
    },
    LinkDown {
        interface: String,
    },
    /// Wire: a VRRP advertisement crossing a segment.
    Vrrp {
        segment: String,
        from: Ipv4Addr,
        to: Ipv4Addr,
        mac: String,
        version: u8,
        vrid: u8,
        priority: u8,
    },
    /// Wire: an ARP reply or announcement (gratuitous: sender and target address are the same).
    Arp {
        segment: String,
        operation: String,
        sender_ip: Ipv4Addr,
        sender_mac: String,
        target_ip: Ipv4Addr,
        gratuitous: bool,
    },
    /// A daemon's own structured event (a JSON line on its stdout, stamped by the daemon).
    Daemon {
        service: String,
        kind: String,
        detail: serde_json::Value,
    },
    /// A client probe stopped getting answers; `at_ns` is when the first unanswered attempt was sent.
    ProbeDown {
        probe: String,
        target: String,
    },
    /// A client probe gets answers again; `at_ns` is when the first answer arrived.
    ProbeUp {
        probe: String,
        target: String,
        outage_ms: f64,
        failed: u32,
    },
    /// A part of a lab spread over machines is up on its machine (its own `lab up`).
    PartUp {
        machine: String,
        build_ms: f64,
    },
    /// A part took itself down (its own `lab down`).
    PartDown {
        machine: String,
    },
    /// A part's session with the coordinator ended: taken down, or lost (the machine or the network went away).
    PartEnded {
        machine: String,
    },
    /// A machine's clock, estimated again: ahead of the coordinator's by `offset_ns`, give or take
    /// `uncertainty_ns` (see `machines::clock`).
    ClockOffset {
        machine: String,
        offset_ns: i64,
        uncertainty_ns: u64,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Stream {
    Stdout,
    Stderr,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExitStatus {
    Code(i32),
    Signal(i32),
}

impl From<std::process::ExitStatus> for ExitStatus {
    fn from(status: std::process::ExitStatus) -> Self {
        use std::os::unix::process::ExitStatusExt;
        match status.code() {
            Some(code) => ExitStatus::Code(code),
            None => ExitStatus::Signal(status.signal().unwrap_or(0)),
        }
    }
}

impl std::fmt::Display for ExitStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ExitStatus::Code(code) => write!(f, "exit code {code}"),
            ExitStatus::Signal(signal) => match nix::sys::signal::Signal::try_from(*signal) {
                Ok(sig) => write!(f, "killed by {sig}"),
                Err(_) => write!(f, "killed by signal {signal}"),
            },
        }
    }
}

impl std::fmt::Display for Event {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let host = self.host.as_deref().unwrap_or("lab");
        match &self.kind {
            EventKind::LabUp { lab, build_ms } => {
                write!(f, "{host}: lab {lab} is up (built in {build_ms:.1} ms)")
            }
            EventKind::LabDown { lab } => write!(f, "{host}: lab {lab} is down"),
            EventKind::ServiceStarted { service, pid } => {
                write!(f, "{host}/{service}: started, pid {pid}")
            }
            EventKind::ServiceReady { service } => write!(f, "{host}/{service}: ready"),
            EventKind::ServiceOutput { service, stream, line } => {
                let mark = if *stream == Stream::Stderr { "!" } else { "|" };
                write!(f, "{host}/{service} {mark} {line}")
            }
            EventKind::ServiceStopping { service, signal } => {
                write!(f, "{host}/{service}: stopping with {signal}")
            }
            EventKind::ServiceExited { service, status } => {
                write!(f, "{host}/{service}: exited, {status}")
            }
            EventKind::ServiceRestarted {
                service,
                pid,
                restart,
                limit,
            } => write!(f, "{host}/{service}: restarted ({restart} of {limit}), pid {pid}"),
            EventKind::Fault { fault } => write!(f, "{host}: fault: {fault}"),
            EventKind::AddressAdded { interface, address } => write!(f, "{host} kernel: + {address} on {interface}"),
            EventKind::AddressRemoved { interface, address } => {
                write!(f, "{host} kernel: - {address} on {interface}")
            }
            EventKind::LinkUp { interface } => write!(f, "{host} kernel: {interface} up"),
            EventKind::LinkDown { interface } => write!(f, "{host} kernel: {interface} down"),
            EventKind::Vrrp {
                segment,
                from,
                to,
                mac,
                version,
                vrid,
                priority,
            } => write!(
                f,
                "wire {segment}: VRRPv{version} vrid {vrid} priority {priority} {from} ({mac}) -> {to}"
            ),
            EventKind::Arp {
                segment,
                operation,
                sender_ip,
                sender_mac,
                target_ip,
                gratuitous,
            } => {
                if *gratuitous {
                    write!(
                        f,
                        "wire {segment}: gratuitous ARP {operation} {sender_ip} is-at {sender_mac}"
                    )
                } else {
                    write!(
                        f,
                        "wire {segment}: ARP {operation} {sender_ip} is-at {sender_mac} to {target_ip}"
                    )
                }
            }
            EventKind::Daemon { service, kind, detail } => write!(f, "{host}/{service} event {kind} {detail}"),
            EventKind::ProbeDown { probe, target } => write!(f, "{host} probe {probe} ({target}): no answer"),
            EventKind::ProbeUp {
                probe,
                target,
                outage_ms,
                failed,
            } => write!(
                f,
                "{host} probe {probe} ({target}): answers again after {outage_ms:.1} ms ({failed} attempts failed)"
            ),
            EventKind::PartUp { machine, build_ms } => {
                write!(f, "{host}: machine {machine}'s part is up (built in {build_ms:.1} ms)")
            }
            EventKind::PartDown { machine } => write!(f, "{host}: machine {machine}'s part is down"),
            EventKind::PartEnded { machine } => write!(f, "{host}: machine {machine}'s part has ended"),
            EventKind::ClockOffset {
                machine,
                offset_ns,
                uncertainty_ns,
            } => write!(
                f,
                "{host}: machine {machine}'s clock is {:+.3} ms off ours, give or take {:.3} ms",
                *offset_ns as f64 / 1e6,
                *uncertainty_ns as f64 / 1e6
            ),
        }
    }
}

/// How many events a lab keeps in memory by default: days of a busy detached lab would otherwise grow without
/// limit. Older events are dropped from memory (a detached supervisor has written them to events.log).
pub const DEFAULT_CAPACITY: usize = 200_000;

/// The lab's events, shared by the threads that produce them and whoever waits for one. Positions are absolute
/// (the n-th event ever recorded), so a reader's cursor stays valid when old events are dropped.
pub struct EventLog {
    inner: Mutex<Retained>,
    changed: Condvar,
    capacity: usize,
}

#[derive(Default)]
struct Retained {
    events: VecDeque<Event>,
    /// How many events were dropped from the front: the absolute position of `events[0]`.
    dropped: usize,
}

impl Retained {
    fn end(&self) -> usize {
        self.dropped + self.events.len()
    }

    fn from(&self, position: usize) -> impl Iterator<Item = &Event> {
        self.events.iter().skip(position.saturating_sub(self.dropped))
    }
}

impl Default for EventLog {
    fn default() -> Self {
        EventLog::with_capacity(DEFAULT_CAPACITY)
    }
}

/// Events read from a position on, and the position to read from next.
#[derive(Debug, Default)]
pub struct Batch {
    pub events: Vec<Event>,
    /// Events that were dropped before this reader got to them.
    pub missed: usize,
    pub next: usize,
}

impl EventLog {
    pub fn with_capacity(capacity: usize) -> EventLog {
        EventLog {
            inner: Mutex::default(),
            changed: Condvar::new(),
            capacity: capacity.max(1),
        }
    }

    /// The lock, even if a thread panicked while holding it: events stay readable for teardown and reports.
    fn lock(&self) -> MutexGuard<'_, Retained> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub fn push(&self, host: Option<&str>, kind: EventKind) {
        self.push_at(monotonic_ns(), host, kind);
    }

    /// An event stamped by its source (a daemon's own clock reading, a probe's send time).
    pub fn push_at(&self, at_ns: u64, host: Option<&str>, kind: EventKind) {
        self.push_event(Event {
            at_ns,
            host: host.map(str::to_string),
            kind,
            clock: None,
        });
    }

    /// An event made elsewhere (another machine's, already on this machine's clock).
    pub fn push_event(&self, event: Event) {
        let mut retained = self.lock();
        retained.events.push_back(event);
        if retained.events.len() > self.capacity {
            retained.events.pop_front();
            retained.dropped += 1;
        }
        drop(retained);
        self.changed.notify_all();
    }

    /// Every event still in memory, in recording order.
    pub fn all(&self) -> Vec<Event> {
        self.lock().events.iter().cloned().collect()
    }

    /// The position the next event will take.
    pub fn end(&self) -> usize {
        self.lock().end()
    }

    /// How many events were dropped from memory so far.
    pub fn dropped(&self) -> usize {
        self.lock().dropped
    }

    /// Events from absolute position `from` on, waiting up to `timeout` for at least one.
    pub fn since(&self, from: usize, timeout: Duration) -> Batch {
        let retained = self.lock();
        let (retained, _) = self
            .changed
            .wait_timeout_while(retained, timeout, |r| r.end() <= from)
            .unwrap_or_else(PoisonError::into_inner);
        Batch {
            events: retained.from(from).cloned().collect(),
            missed: retained.dropped.saturating_sub(from),
            next: retained.end().max(from),
        }
    }

    /// The first event (already recorded or still to come) that matches, or `None` after `timeout`. `matches` runs
    /// without the log's lock held, so a predicate that panics or blocks cannot wedge the lab's other threads.
    pub fn wait_for(&self, timeout: Duration, matches: impl Fn(&Event) -> bool) -> Option<Event> {
        let deadline = Instant::now() + timeout;
        let mut checked = 0;
        loop {
            let batch = self.since(checked, deadline.saturating_duration_since(Instant::now()));
            if let Some(found) = batch.events.into_iter().find(|e| matches(e)) {
                return Some(found);
            }
            checked = batch.next;
            if Instant::now() >= deadline {
                return None;
            }
        }
    }
}

/// Events for the renderings' tests.
#[cfg(test)]
pub(crate) mod samples {
    use super::{Event, EventKind, Stream};

    pub(crate) fn event(at_ms: u64, host: &str, kind: EventKind) -> Event {
        Event {
            at_ns: at_ms * 1_000_000,
            host: Some(host.into()),
            kind,
            clock: None,
        }
    }

    /// A line vrrpd wrote.
    pub(crate) fn output(line: &str) -> EventKind {
        EventKind::ServiceOutput {
            service: "vrrpd".into(),
            stream: Stream::Stderr,
            line: line.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fault(n: usize) -> EventKind {
        EventKind::Fault { fault: format!("f{n}") }
    }

    #[test]
    fn old_events_leave_memory_and_cursors_stay_valid() {
        let log = EventLog::with_capacity(3);
        for n in 0..5 {
            log.push(None, fault(n));
        }
        assert_eq!(log.all().len(), 3);
        assert_eq!(log.dropped(), 2);
        let batch = log.since(0, Duration::ZERO);
        assert_eq!((batch.missed, batch.next, batch.events.len()), (2, 5, 3));
        assert_eq!(batch.events[0].kind, fault(2));
        let batch = log.since(4, Duration::ZERO);
        assert_eq!((batch.missed, batch.next, batch.events.len()), (0, 5, 1));
        let batch = log.since(5, Duration::ZERO);
        assert_eq!((batch.next, batch.events.len()), (5, 0));
    }

    #[test]
    fn wait_for_sees_recorded_and_coming_events() {
        let log = std::sync::Arc::new(EventLog::default());
        log.push(None, fault(0));
        assert!(log.wait_for(Duration::ZERO, |e| e.kind == fault(0)).is_some());
        let writer = log.clone();
        let thread = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(20));
            writer.push(None, fault(1));
        });
        assert!(log.wait_for(Duration::from_secs(10), |e| e.kind == fault(1)).is_some());
        assert!(log
            .wait_for(Duration::from_millis(10), |e| e.kind == fault(2))
            .is_none());
        thread.join().unwrap();
    }

    #[test]
    fn predicates_run_without_the_lock() {
        let log = std::sync::Arc::new(EventLog::default());
        log.push(None, fault(0));
        let (done_tx, done) = std::sync::mpsc::channel();
        let reader = log.clone();
        std::thread::spawn(move || {
            // A predicate that uses the log itself would deadlock if it ran under the log's lock.
            let found = reader.wait_for(Duration::from_secs(1), |_| reader.end() > 0);
            let _ = done_tx.send(found.is_some());
        });
        assert_eq!(done.recv_timeout(Duration::from_secs(10)), Ok(true));
    }

    #[test]
    fn a_panicking_predicate_leaves_the_log_usable() {
        let log = EventLog::default();
        log.push(None, fault(0));
        let panicked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            log.wait_for(Duration::from_secs(1), |_| panic!("a caller's bug"))
        }));
        assert!(panicked.is_err());
        log.push(None, fault(1));
        assert_eq!(log.all().len(), 2);
        assert_eq!(log.since(0, Duration::ZERO).events.len(), 2);
    }
}
