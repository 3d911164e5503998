//! Client probes: from inside a host, try a target every interval (a TCP handshake, or an ICMP echo) and record
//! each outage window: it starts when the first unanswered attempt was sent and ends when the first answer after it
//! arrived; the number of attempts that failed in between is kept too.

use std::fs::File;
use std::io;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use nix::sched::{setns, CloneFlags};
use socket2::{Domain, Protocol, Socket, Type};

use crate::events::{monotonic_ns, EventKind, EventLog};
use crate::topology::{Probe, ProbeKind};

/// Starts `probe` on a thread that lives in `namespace` (its sockets are the host's).
pub fn start(
    host: &str,
    namespace: &std::path::Path,
    probe: &Probe,
    events: Arc<EventLog>,
    stop: Arc<AtomicBool>,
) -> io::Result<JoinHandle<()>> {
    let namespace_file = File::open(namespace)?;
    let (host, probe) = (host.to_string(), probe.clone());
    // ICMP echo identifiers are shared by every raw socket of the namespace: each probe picks its own.
    let identifier = (std::process::id() as u16) ^ (monotonic_ns() as u16);
    std::thread::Builder::new()
        .name(format!("probe-{}", probe.name))
        .spawn(move || {
            if setns(&namespace_file, CloneFlags::CLONE_NEWNET).is_err() {
                return;
            }
            run(&host, &probe, identifier, &events, &stop);
        })
}

fn run(host: &str, probe: &Probe, identifier: u16, events: &EventLog, stop: &AtomicBool) {
    let mut outage: Option<(u64, u32)> = None;
    let mut sequence: u16 = 0;
    while !stop.load(Ordering::Relaxed) {
        let started = Instant::now();
        let sent_ns = monotonic_ns();
        sequence = sequence.wrapping_add(1);
        let answered = match probe.kind {
            ProbeKind::Tcp { address, port } => tcp_connects(address, port, probe.timeout),
            ProbeKind::Ping { address } => echo_answered(address, identifier, sequence, probe.timeout),
        };
        match (answered, outage) {
            (false, None) => {
                outage = Some((sent_ns, 1));
                events.push_at(
                    sent_ns,
                    Some(host),
                    EventKind::ProbeDown {
                        probe: probe.name.clone(),
                        target: probe.target.clone(),
                    },
                );
            }
            (false, Some((since, failed))) => outage = Some((since, failed + 1)),
            (true, Some((since, failed))) => {
                outage = None;
                let answered_ns = monotonic_ns();
                events.push_at(
                    answered_ns,
                    Some(host),
                    EventKind::ProbeUp {
                        probe: probe.name.clone(),
                        target: probe.target.clone(),
                        outage_ms: (answered_ns - since) as f64 / 1e6,
                        failed,
                    },
                );
            }
            (true, None) => {}
        }
        // In short naps, so a stopping lab does not wait out a long interval.
        while let Some(rest) = probe.interval.checked_sub(started.elapsed()) {
            if stop.load(Ordering::Relaxed) {
                return;
            }
            std::thread::sleep(rest.min(Duration::from_millis(20)));
        }
    }
}

fn tcp_connects(address: Ipv4Addr, port: u16, timeout: Duration) -> bool {
    let Ok(socket) = Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP)) else {
        return false;
    };
    let target = SocketAddr::V4(SocketAddrV4::new(address, port));
    socket.connect_timeout(&target.into(), timeout).is_ok()
}

/// Sends one ICMP echo request and waits for its reply (same identifier and sequence) up to `timeout`.
fn echo_answered(address: Ipv4Addr, identifier: u16, sequence: u16, timeout: Duration) -> bool {
    let Ok(socket) = Socket::new(Domain::IPV4, Type::RAW, Some(Protocol::ICMPV4)) else {
        return false;
    };
    let mut request = [0u8; 16];
    request[0] = 8; // echo request
    request[4..6].copy_from_slice(&identifier.to_be_bytes());
    request[6..8].copy_from_slice(&sequence.to_be_bytes());
    request[8..16].copy_from_slice(b"lab-prob");
    let checksum = pnet_packet::util::checksum(&request, 1);
    request[2..4].copy_from_slice(&checksum.to_be_bytes());
    let target = SocketAddr::V4(SocketAddrV4::new(address, 0));
    if socket.send_to(&request, &target.into()).is_err() {
        return false;
    }
    let deadline = Instant::now() + timeout;
    let mut buffer = [0u8; 1500];
    loop {
        let Some(left) = deadline.checked_duration_since(Instant::now()).filter(|d| !d.is_zero()) else {
            return false;
        };
        if socket.set_read_timeout(Some(left)).is_err() {
            return false;
        }
        // `Read` on a socket reference fills an initialised buffer.
        let Ok(length) = io::Read::read(&mut &socket, &mut buffer) else {
            return false;
        };
        let packet = &buffer[..length];
        let header = usize::from(packet.first().copied().unwrap_or(0) & 0x0f) * 4;
        let Some(reply) = packet.get(header..header + 8) else {
            continue;
        };
        let from_target = packet.get(12..16) == Some(&address.octets()[..]);
        if from_target
            && reply[0] == 0
            && reply[4..6] == identifier.to_be_bytes()
            && reply[6..8] == sequence.to_be_bytes()
        {
            return true;
        }
    }
}
