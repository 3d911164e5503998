//! Link impairments measured the way a network engineer would: ping's round trip, datagrams counted by sequence
//! number, a bulk TCP transfer timed. Every test runs on both backends with the same bounds: the relay here, netem
//! on a kernel that has it (CI runs those through `scripts/vm` on Debian's stock kernel; on a kernel without netem
//! they fail, naming it). In the VM everything runs about ten times slower, so bounds on time widen there.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::{Duration, Instant};

use halab_tests::impair::{fault, pair, udp_in, A, B};
use halab_tests::unique_name;
use lab::impair::BackendChoice;
use lab::net::netns;
use lab::{Fault, Lab, Topology};

/// Emulation is about ten times slower: time bounds widen by this much in the VM.
fn slack() -> Duration {
    if std::env::var_os("HALAB_IN_VM").is_some() {
        Duration::from_millis(30)
    } else {
        Duration::from_millis(5)
    }
}

/// Every round trip of `count` pings from `host` to `target`, in milliseconds.
fn ping_rtts(lab: &Lab, host: &str, target: &str, count: usize) -> Vec<f64> {
    let output = lab
        .exec(
            host,
            &["ping", "-n", "-c", &count.to_string(), "-i", "0.05", "-W", "2", target],
        )
        .unwrap();
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|line| line.split("time=").nth(1))
        .filter_map(|rest| rest.trim_end_matches(" ms").parse().ok())
        .collect()
}

fn mean(values: &[f64]) -> f64 {
    values.iter().sum::<f64>() / values.len() as f64
}

/// `count` in `n` trials of chance `p` lies within five standard deviations of the binomial mean.
fn binomial(count: usize, n: usize, p: f64) -> Result<(), String> {
    let (expected, deviation) = (n as f64 * p, (n as f64 * p * (1.0 - p)).sqrt());
    match (count as f64 - expected).abs() <= 5.0 * deviation {
        true => Ok(()),
        false => Err(format!(
            "{count} of {n}, expected {expected:.0} ± {:.0}",
            5.0 * deviation
        )),
    }
}

/// Sends `count` datagrams numbered 0.. from `a` to `b`, `gap` apart, and returns the numbers `b` received, in the
/// order they arrived (a number twice if it came twice).
fn datagrams(lab: &Lab, count: u32, gap: Duration) -> Vec<u32> {
    let receiver = udp_in(lab, "b", &format!("{B}:0"));
    let to = receiver.local_addr().unwrap();
    receiver.set_read_timeout(Some(Duration::from_millis(100))).unwrap();
    let sender = udp_in(lab, "a", &format!("{A}:0"));
    let collector = std::thread::spawn(move || {
        let (mut seen, mut buffer, mut quiet_since) = (Vec::new(), [0u8; 64], Instant::now());
        while quiet_since.elapsed() < Duration::from_secs(2) {
            if let Ok(n) = receiver.recv(&mut buffer) {
                if n >= 4 {
                    seen.push(u32::from_be_bytes(buffer[..4].try_into().unwrap()));
                    quiet_since = Instant::now();
                }
            }
        }
        seen
    });
    let started = Instant::now();
    for number in 0..count {
        let mut payload = [0u8; 32];
        payload[..4].copy_from_slice(&number.to_be_bytes());
        sender.send_to(&payload, to).unwrap();
        // Paced to a schedule, so a slow send does not bunch the rest up.
        let next = started + gap * (number + 1);
        std::thread::sleep(next.saturating_duration_since(Instant::now()));
    }
    collector.join().unwrap()
}

/// How many of `count` datagrams from a (300 us apart) never reached b.
fn lost_of(lab: &Lab, count: u32) -> usize {
    count as usize - datagrams(lab, count, Duration::from_micros(300)).len()
}

fn delay_adds_its_time_to_the_round_trip(backend: BackendChoice) {
    let mut lab = pair("dl", backend, "");
    let before = mean(&ping_rtts(&lab, "a", B, 10));
    fault(&mut lab, "a", "delay 100ms");
    let rtts = ping_rtts(&lab, "a", B, 40);
    assert_eq!(rtts.len(), 40, "every ping answered");
    let added = mean(&rtts) - before;
    let slack = slack().as_secs_f64() * 1e3;
    assert!(
        (added - 100.0).abs() <= slack,
        "added {added:.2} ms, expected 100 ± {slack} ms"
    );
    // The delay is one way (frames from a): b's pings to a see it too, once per round trip.
    let back = mean(&ping_rtts(&lab, "b", A, 10));
    assert!((back - 100.0).abs() <= slack, "b -> a {back:.2} ms");
    // Both ways: twice.
    fault(&mut lab, "a", "delay 100ms --both");
    let both = mean(&ping_rtts(&lab, "a", B, 10));
    assert!((both - 200.0).abs() <= slack, "both ways {both:.2} ms");
    fault(&mut lab, "a", "clear");
    let cleared = mean(&ping_rtts(&lab, "a", B, 10));
    assert!(cleared < slack, "cleared {cleared:.2} ms");
    halab_tests::down_and_check(lab);
}

fn jitter_spreads_the_delay_within_its_band(backend: BackendChoice) {
    let mut lab = pair("jt", backend, "");
    // ARP first: a ping waiting for its neighbour's address would count that wait too.
    ping_rtts(&lab, "a", B, 1);
    fault(&mut lab, "a", "delay 100ms --jitter 20ms");
    let rtts = ping_rtts(&lab, "a", B, 60);
    let slack = slack().as_secs_f64() * 1e3;
    assert!(
        rtts.iter().all(|r| (80.0 - slack..=120.0 + slack).contains(r)),
        "a round trip outside 100 ± 20 ms: {rtts:?}"
    );
    let spread = rtts.iter().cloned().fold(f64::MIN, f64::max) - rtts.iter().cloned().fold(f64::MAX, f64::min);
    // 60 draws from a 40 ms wide uniform band span well over half of it.
    assert!(spread > 20.0, "the delays hardly vary: {rtts:?}");
    halab_tests::down_and_check(lab);
}

fn loss_follows_the_binomial_law_each_way(backend: BackendChoice) {
    let mut lab = pair("ls", backend, "");
    let n = 3000;
    for (words, chance) in [("loss 1", 0.01), ("loss 10", 0.10), ("loss 10 --to", 0.10)] {
        // `--to` goes on b: the frames the switch delivers to it.
        let host = if words.ends_with("--to") { "b" } else { "a" };
        fault(&mut lab, host, words);
        binomial(lost_of(&lab, n), n as usize, chance).unwrap_or_else(|e| panic!("{words}: lost {e}"));
        fault(&mut lab, host, "clear");
    }
    halab_tests::down_and_check(lab);
}

fn bursty_loss_keeps_its_rate_in_runs(backend: BackendChoice) {
    let mut lab = pair("bl", backend, "");
    fault(&mut lab, "a", "loss 10 --burst 5");
    let n = 5000;
    let received: std::collections::BTreeSet<u32> =
        datagrams(&lab, n, Duration::from_micros(300)).into_iter().collect();
    let lost: Vec<bool> = (0..n).map(|i| !received.contains(&i)).collect();
    let lost_count = lost.iter().filter(|l| **l).count();
    let runs = lost.windows(2).filter(|w| !w[0] && w[1]).count().max(1);
    let mean_run = lost_count as f64 / runs as f64;
    // A chain's runs make the count vary more than independent loss: a wide band, but runs of about 5 (not 1).
    assert!(
        (0.05..=0.15).contains(&(lost_count as f64 / n as f64)),
        "lost {lost_count} of {n}"
    );
    assert!((3.0..=8.0).contains(&mean_run), "mean run {mean_run:.2} frames");
    halab_tests::down_and_check(lab);
}

fn duplication_and_reordering_show_in_sequence_numbers(backend: BackendChoice) {
    let mut lab = pair("dr", backend, "");
    let n = 2000;
    fault(&mut lab, "a", "duplicate 10");
    let seen = datagrams(&lab, n, Duration::from_micros(300));
    let mut counts = BTreeMap::new();
    for number in &seen {
        *counts.entry(*number).or_insert(0) += 1;
    }
    let twice = counts.values().filter(|c| **c == 2).count();
    assert_eq!(counts.len(), n as usize, "every datagram arrived");
    binomial(twice, n as usize, 0.10).unwrap_or_else(|e| panic!("duplicated {e}"));
    fault(&mut lab, "a", "clear");
    fault(&mut lab, "a", "delay 20ms");
    fault(&mut lab, "a", "reorder 25");
    let seen = datagrams(&lab, n, Duration::from_millis(1));
    assert_eq!(seen.len(), n as usize, "every datagram arrived once");
    // A reordered datagram skips the 20 ms delay and arrives ahead of the ~20 sent just before it.
    let overtaking = seen
        .iter()
        .enumerate()
        .filter(|(i, number)| seen[i + 1..].iter().any(|later| later < number))
        .count();
    binomial(overtaking, n as usize, 0.25).unwrap_or_else(|e| panic!("overtook {e}"));
    halab_tests::down_and_check(lab);
}

fn corruption_is_caught_by_checksums(backend: BackendChoice) {
    let mut lab = pair("cr", backend, "");
    // a learns b's MAC first: a corrupted ARP request would otherwise hold every datagram of the next second in a
    // neighbour queue a few packets long (seen: 2748 of 3000 lost, in a third of the runs).
    assert_eq!(ping_rtts(&lab, "a", B, 1).len(), 1, "b answers a");
    fault(&mut lab, "a", "corrupt 10");
    // Every flipped bit lands in a header or payload a checksum covers: the receiver drops the datagram.
    binomial(lost_of(&lab, 3000), 3000, 0.10).unwrap_or_else(|e| panic!("dropped {e}"));
    halab_tests::down_and_check(lab);
}

fn a_rate_limit_paces_a_bulk_transfer(backend: BackendChoice) {
    let mut lab = pair("rt", backend, "");
    fault(&mut lab, "a", "rate 8mbit");
    let listener = netns::run_in(lab.netns_path("b").unwrap(), move || TcpListener::bind((B, 0))).unwrap();
    let port = listener.local_addr().unwrap().port();
    let stream = netns::run_in(lab.netns_path("a").unwrap(), move || TcpStream::connect((B, port))).unwrap();
    let reader = std::thread::spawn(move || {
        let (mut connection, _) = listener.accept().unwrap();
        let mut all = Vec::new();
        connection.read_to_end(&mut all).unwrap();
        (all.len(), Instant::now())
    });
    let bytes = 4_000_000;
    let started = Instant::now();
    let mut stream = stream;
    stream.write_all(&vec![7u8; bytes]).unwrap();
    drop(stream);
    let (received, finished) = reader.join().unwrap();
    assert_eq!(received, bytes);
    let seconds = finished.duration_since(started).as_secs_f64();
    let mbit = bytes as f64 * 8.0 / seconds / 1e6;
    // Headers ride on the limited link too: the payload gets a little under 8 Mbit/s, never more.
    assert!(
        (6.8..=8.0).contains(&mbit),
        "{mbit:.2} Mbit/s of payload through an 8 Mbit/s link"
    );
    halab_tests::down_and_check(lab);
}

fn a_topology_impairs_its_segment_from_the_start(backend: BackendChoice) {
    let lab = pair("tp", backend, r#"impair = { delay = "50ms", loss = "0%" }"#);
    // The first pings also wait for ARP, itself delayed: they are not what is measured.
    ping_rtts(&lab, "a", B, 2);
    let rtts = ping_rtts(&lab, "a", B, 10);
    let slack = slack().as_secs_f64() * 1e3;
    // Each host's frames wait 50 ms on their way in: 100 ms a round trip.
    assert!((mean(&rtts) - 100.0).abs() <= slack, "{rtts:?}");
    let record = lab::state::LabState::load(lab.paths()).unwrap().faults;
    let shown: Vec<String> = record
        .links
        .iter()
        .map(|l| format!("{} {} {} {}", l.host, l.interface, l.direction, l.impairment))
        .collect();
    assert_eq!(shown, ["a eth0 from delay 50ms", "b eth0 from delay 50ms"]);
    let faults: Vec<String> = lab
        .timeline()
        .events()
        .iter()
        .filter_map(|e| match &e.kind {
            lab::EventKind::Fault { fault } => Some(format!("{}: {fault}", e.host.as_deref().unwrap_or(""))),
            _ => None,
        })
        .collect();
    assert_eq!(
        faults,
        ["a: delay 50ms --interface eth0", "b: delay 50ms --interface eth0"]
    );
    halab_tests::down_and_check(lab);
}

/// Random loss stays the switch's once the relay stands in for a's port: its rule follows the port the frames now
/// cross (and with netem, nothing moves).
fn random_loss_follows_the_port_in_the_bridge(backend: BackendChoice) {
    let mut lab = pair("lr", backend, "");
    fault(&mut lab, "a", "loss 10");
    fault(&mut lab, "a", "delay 1ms");
    binomial(lost_of(&lab, 3000), 3000, 0.10).unwrap_or_else(|e| panic!("lost {e}"));
    halab_tests::down_and_check(lab);
}

/// A host's link going down takes its impaired link down too: nothing reaches it, and once up, all is as before.
fn link_down_and_up_through_an_impaired_link(backend: BackendChoice) {
    let mut lab = pair("ld", backend, "");
    fault(&mut lab, "a", "delay 20ms --both");
    assert!(ping_rtts(&lab, "b", A, 1).len() == 1, "b reaches a");
    fault(&mut lab, "a", "link-down");
    assert!(
        ping_rtts(&lab, "b", A, 2).is_empty(),
        "b reached a while a's link was down"
    );
    fault(&mut lab, "a", "link-up");
    let rtts = ping_rtts(&lab, "b", A, 5);
    assert!(!rtts.is_empty(), "b does not reach a after link-up");
    let slack = slack().as_secs_f64() * 1e3;
    assert!((rtts.last().unwrap() - 40.0).abs() <= slack, "{rtts:?}");
    halab_tests::down_and_check(lab);
}

/// One-way partition: a's packets to b vanish, b's still reach a (nftables, either backend).
fn a_one_way_partition_cuts_one_direction(backend: BackendChoice) {
    let mut lab = pair("ow", backend, "");
    fault(&mut lab, "a", "partition --one-way b");
    let from_a = udp_in(&lab, "a", &format!("{A}:0"));
    let at_b = udp_in(&lab, "b", &format!("{B}:0"));
    for socket in [&from_a, &at_b] {
        socket.set_read_timeout(Some(Duration::from_millis(500))).unwrap();
    }
    from_a.send_to(b"a to b", at_b.local_addr().unwrap()).unwrap();
    assert!(at_b.recv(&mut [0u8; 16]).is_err(), "a's datagram reached b");
    at_b.send_to(b"b to a", from_a.local_addr().unwrap()).unwrap();
    let mut buffer = [0u8; 16];
    let n = from_a.recv(&mut buffer).expect("b's datagram reaches a");
    assert_eq!(&buffer[..n], b"b to a");
    fault(&mut lab, "a", "heal");
    from_a.send_to(b"healed", at_b.local_addr().unwrap()).unwrap();
    assert!(at_b.recv(&mut buffer).is_ok(), "healed, a reaches b");
    halab_tests::down_and_check(lab);
}

/// The same bodies on both backends: `relay` here, `netem` where the kernel has it (`scripts/vm`).
macro_rules! on_both_backends {
    ($($test:ident),* $(,)?) => {
        mod relay {
            $(#[test]
            fn $test() {
                super::$test(lab::impair::BackendChoice::Relay);
            })*
        }
        mod netem {
            $(#[test]
            #[ignore = "needs netem (sch_netem): CI runs it on Debian's kernel through scripts/vm"]
            fn $test() {
                super::$test(lab::impair::BackendChoice::Netem);
            })*
        }
    };
}

on_both_backends!(
    delay_adds_its_time_to_the_round_trip,
    jitter_spreads_the_delay_within_its_band,
    loss_follows_the_binomial_law_each_way,
    bursty_loss_keeps_its_rate_in_runs,
    duplication_and_reordering_show_in_sequence_numbers,
    corruption_is_caught_by_checksums,
    a_rate_limit_paces_a_bulk_transfer,
    a_topology_impairs_its_segment_from_the_start,
    a_one_way_partition_cuts_one_direction,
    random_loss_follows_the_port_in_the_bridge,
    link_down_and_up_through_an_impaired_link,
);

/// `auto` takes netem where the kernel has it and the relay where it does not; `netem` on a kernel without it
/// fails with a sentence naming the module.
#[test]
fn the_backend_is_chosen_by_what_the_kernel_has() {
    let mut lab = pair("ab", BackendChoice::Auto, "");
    fault(&mut lab, "a", "delay 1ms");
    let chosen = lab::state::LabState::load(lab.paths()).unwrap().faults.backend.unwrap();
    let netem = halab_tests::impair::kernel_has_netem();
    let expected = if netem { "netem" } else { "relay" };
    assert_eq!(chosen.to_string(), expected);
    halab_tests::down_and_check(lab);
    if !netem {
        let mut topology = Topology::parse(
            "name = 'n'\n[[segments]]\nname = 'lan'\nsubnet = '10.9.0.0/24'\n[[hosts]]\nname = 'a'\n\
             interfaces = [{ segment = 'lan', address = '10.9.0.1/24' }]\n",
            "n.toml",
        )
        .unwrap()
        .renamed(&unique_name("nn"))
        .unwrap();
        topology.impair_backend = BackendChoice::Netem;
        let mut lab = Lab::up(&topology).unwrap();
        let error = lab
            .fault("a", &Fault::parse(&["delay".into(), "1ms".into()]).unwrap())
            .unwrap_err();
        assert!(
            error.to_string().contains("this kernel has no netem (sch_netem)"),
            "{error}"
        );
        halab_tests::down_and_check(lab);
    }
}
