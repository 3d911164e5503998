//! report.html for a 100,000-event timeline (the target: at most 1 s and 5 MB), against the plain text
//! rendering of the same timeline in the same run: `cargo bench --bench report`.

use std::time::{Duration, Instant};

use lab::events::{Event, EventKind, Stream};

/// A day-like run of the seed's lab: adverts every second from the master, a probe outage and a state change
/// every few hundred events, daemon lines and gratuitous ARPs around them.
fn events(count: usize) -> Vec<Event> {
    let event = |i: usize, host: Option<&str>, kind: EventKind| Event {
        at_ns: i as u64 * 10_000_000,
        host: host.map(str::to_string),
        kind,
        clock: None,
    };
    (0..count)
        .map(|i| match i % 500 {
            0 => event(
                i,
                Some("redisclient"),
                EventKind::ProbeDown {
                    probe: "vip-tcp".into(),
                    target: "vip".into(),
                },
            ),
            7 => event(
                i,
                Some("redisclient"),
                EventKind::ProbeUp {
                    probe: "vip-tcp".into(),
                    target: "vip".into(),
                    outage_ms: 70.0,
                    failed: 1,
                },
            ),
            100 | 350 => {
                let state = if i % 1000 < 500 { "MASTER" } else { "BACKUP" };
                event(
                    i,
                    Some(if i % 2 == 0 { "haproxy1" } else { "haproxy2" }),
                    EventKind::ServiceOutput {
                        service: "vrrpd".into(),
                        stream: Stream::Stderr,
                        line: format!("(Instance1) Entering {state} STATE"),
                    },
                )
            }
            101 => event(
                i,
                Some("haproxy1"),
                EventKind::AddressAdded {
                    interface: "eth0".into(),
                    address: "10.0.0.31/32".into(),
                },
            ),
            351 => event(
                i,
                Some("haproxy1"),
                EventKind::AddressRemoved {
                    interface: "eth0".into(),
                    address: "10.0.0.31/32".into(),
                },
            ),
            102..=106 => event(
                i,
                None,
                EventKind::Arp {
                    segment: "vlan".into(),
                    operation: "request".into(),
                    sender_ip: "10.0.0.31".parse().unwrap(),
                    sender_mac: "02:00:00:00:00:01".into(),
                    target_ip: "10.0.0.31".parse().unwrap(),
                    gratuitous: true,
                },
            ),
            _ => event(
                i,
                None,
                EventKind::Vrrp {
                    segment: "vlan".into(),
                    from: "10.0.0.21".parse().unwrap(),
                    to: "10.0.0.23".parse().unwrap(),
                    mac: "02:00:00:00:00:01".into(),
                    version: 2,
                    vrid: 10,
                    priority: 100,
                },
            ),
        })
        .collect()
}

fn best_of(runs: usize, mut work: impl FnMut() -> usize) -> (Duration, usize) {
    let mut best = Duration::MAX;
    let mut size = 0;
    for _ in 0..runs {
        let start = Instant::now();
        size = work();
        best = best.min(start.elapsed());
    }
    (best, size)
}

fn main() {
    // The report reads the topology only for hosts' own addresses, which it leaves out.
    let topology = lab::Topology::parse(&lab::topology::flat_topology_toml("bench", 3), "bench.toml").unwrap();
    let timeline = lab::Timeline::new(events(100_000));
    let (text_time, text_size) = best_of(3, || timeline.text().len());
    let (report_time, report_size) = best_of(3, || {
        lab::report::Report {
            title: "bench".into(),
            timeline: &timeline,
            topology: &topology,
            steps: None,
        }
        .html()
        .len()
    });
    println!("100000 events, best of 3:");
    println!(
        "  text timeline (baseline) {:>8.1} ms {:>6.2} MB",
        text_time.as_secs_f64() * 1e3,
        text_size as f64 / 1e6
    );
    println!(
        "  report.html              {:>8.1} ms {:>6.2} MB   {:.2}x the text's time (target: <= 1000 ms, <= 5 MB)",
        report_time.as_secs_f64() * 1e3,
        report_size as f64 / 1e6,
        report_time.as_secs_f64() / text_time.as_secs_f64()
    );
}
