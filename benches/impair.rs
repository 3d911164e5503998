//! The impairment backends against the plain bridge, in one run on one machine: the latency the path adds with
//! nothing to do, how exactly a 50 ms delay is kept, and how many small packets per second one impaired link
//! carries. Rows for netem appear where the kernel has it (run through `scripts/vm` on Debian's kernel: there,
//! compare the ratios, not the times). Run as root: `cargo bench --bench impair` (`-- --quick` for fewer samples).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use halab_tests::impair::{fault, pair, udp_in, A, B};
use lab::impair::BackendChoice;
use lab::net::netns;
use lab::Lab;

fn main() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("the benchmark builds namespaces: run it as root");
        std::process::exit(2);
    }
    let quick = std::env::args().any(|a| a == "--quick");
    let samples = if quick { 2_000 } else { 20_000 };
    let netem = halab_tests::impair::kernel_has_netem();
    println!(
        "kernel {}; netem {}",
        kernel(),
        if netem { "present" } else { "absent" }
    );

    println!("\nadded latency, no impairment configured (UDP round trips a -> b -> a, {samples} samples)");
    println!(
        "{:<34} {:>10} {:>10} {:>14} {:>14}",
        "path", "p50", "p99", "p50 - bridge", "p99 - bridge"
    );
    let bridge = round_trips(&mut pair("bi", BackendChoice::Relay, ""), samples, None);
    print_latency("bridge", &bridge, &bridge);
    let mut relay_lab = pair("bi", BackendChoice::Relay, "");
    // A relay stays in the path once it has been needed; cleared, it passes every frame as it comes.
    fault(&mut relay_lab, "a", "delay 1us --both");
    fault(&mut relay_lab, "a", "clear");
    print_latency("relay, cleared", &round_trips(&mut relay_lab, samples, None), &bridge);
    let mut queued = pair("bi", BackendChoice::Relay, "");
    fault(&mut queued, "a", "delay 1us --both");
    print_latency(
        "relay, delay 1us each way",
        &round_trips(&mut queued, samples, None),
        &bridge,
    );
    if netem {
        let mut netem_lab = pair("bi", BackendChoice::Netem, "");
        fault(&mut netem_lab, "a", "delay 1us --both");
        print_latency(
            "netem, delay 1us each way",
            &round_trips(&mut netem_lab, samples, None),
            &bridge,
        );
    }

    println!("\naccuracy of a 50 ms delay on a's frames (error of each round trip against bridge + 50 ms)");
    println!(
        "{:<34} {:>12} {:>12} {:>12}",
        "backend", "mean error", "p99 |error|", "max |error|"
    );
    let accuracy_samples = samples / 10;
    let base = median(&bridge);
    let mut backends = vec![("relay", BackendChoice::Relay)];
    if netem {
        backends.push(("netem", BackendChoice::Netem));
    }
    for (name, backend) in &backends {
        let mut lab = pair("bi", *backend, "");
        fault(&mut lab, "a", "delay 50ms");
        let rtts = round_trips(&mut lab, accuracy_samples, Some(Duration::from_millis(1)));
        let errors: Vec<f64> = rtts.iter().map(|r| (r - base - 50_000.0) / 1000.0).collect();
        let mean = errors.iter().sum::<f64>() / errors.len() as f64;
        let mut absolute: Vec<f64> = errors.iter().map(|e| e.abs()).collect();
        absolute.sort_by(f64::total_cmp);
        println!(
            "{name:<34} {mean:>9.3} ms {:>9.3} ms {:>9.3} ms",
            percentile(&absolute, 0.99),
            absolute.last().unwrap()
        );
    }

    println!("\npackets per second, 64-byte UDP datagrams flooded from a to b for 2 s");
    println!(
        "{:<34} {:>14} {:>14} {:>10}",
        "path", "sent/s", "received/s", "/ bridge"
    );
    let bridge_pps = flood(&mut pair("bi", BackendChoice::Relay, ""), Duration::from_secs(2));
    print_pps("bridge", bridge_pps, bridge_pps);
    let mut cleared = pair("bi", BackendChoice::Relay, "");
    fault(&mut cleared, "a", "delay 1us");
    fault(&mut cleared, "a", "clear");
    print_pps(
        "relay, cleared",
        flood(&mut cleared, Duration::from_secs(2)),
        bridge_pps,
    );
    let mut impaired = pair("bi", BackendChoice::Relay, "");
    fault(&mut impaired, "a", "delay 1ms");
    print_pps(
        "relay, delay 1ms",
        flood(&mut impaired, Duration::from_secs(2)),
        bridge_pps,
    );
    if netem {
        let mut netem_lab = pair("bi", BackendChoice::Netem, "");
        fault(&mut netem_lab, "a", "delay 1ms");
        print_pps(
            "netem, delay 1ms",
            flood(&mut netem_lab, Duration::from_secs(2)),
            bridge_pps,
        );
    }
}

/// Round trips in microseconds: b echoes every datagram; with `gap`, a sends one every `gap` without waiting for
/// the answers (a delay longer than the gap keeps several in flight), otherwise one at a time.
fn round_trips(lab: &mut Lab, count: usize, gap: Option<Duration>) -> Vec<f64> {
    let (echo, client) = (udp_in(lab, "b", &format!("{B}:0")), udp_in(lab, "a", &format!("{A}:0")));
    let echo_address = echo.local_addr().unwrap();
    echo.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let echoer = std::thread::spawn({
        let stop = stop.clone();
        move || {
            let mut buffer = [0u8; 64];
            while !stop.load(Ordering::Relaxed) {
                if let Ok((n, from)) = echo.recv_from(&mut buffer) {
                    let _ = echo.send_to(&buffer[..n], from);
                }
            }
        }
    });
    client.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    // Warm-up: ARP, and a relay's first frames.
    for _ in 0..20 {
        client.send_to(&[0u8; 16], echo_address).unwrap();
        let _ = client.recv(&mut [0u8; 64]);
    }
    let epoch = Instant::now();
    let stamp =
        move |buffer: &mut [u8; 16]| buffer[..8].copy_from_slice(&(epoch.elapsed().as_nanos() as u64).to_be_bytes());
    let mut rtts = Vec::with_capacity(count);
    match gap {
        None => {
            for _ in 0..count {
                let mut payload = [0u8; 16];
                stamp(&mut payload);
                client.send_to(&payload, echo_address).unwrap();
                let mut answer = [0u8; 64];
                if client.recv(&mut answer).is_ok() {
                    rtts.push(elapsed_us(epoch, &answer));
                }
            }
        }
        Some(gap) => {
            let sender = client.try_clone().unwrap();
            let pacer = std::thread::spawn(move || {
                let started = Instant::now();
                for n in 0..count {
                    let mut payload = [0u8; 16];
                    stamp(&mut payload);
                    sender.send_to(&payload, echo_address).unwrap();
                    let next = started + gap * (n as u32 + 1);
                    std::thread::sleep(next.saturating_duration_since(Instant::now()));
                }
            });
            let mut answer = [0u8; 64];
            while rtts.len() < count && client.recv(&mut answer).is_ok() {
                rtts.push(elapsed_us(epoch, &answer));
            }
            pacer.join().unwrap();
        }
    }
    stop.store(true, Ordering::Relaxed);
    echoer.join().unwrap();
    rtts
}

fn elapsed_us(epoch: Instant, answer: &[u8]) -> f64 {
    let sent = u64::from_be_bytes(answer[..8].try_into().unwrap());
    (epoch.elapsed().as_nanos() as u64 - sent) as f64 / 1000.0
}

/// Datagrams per second sent by a and arriving at b's interface, flooding for `length`. b's kernel counts them (a
/// reading thread would compete with the path being measured for the machine's two cores).
fn flood(lab: &mut Lab, length: Duration) -> (f64, f64) {
    let source = udp_in(lab, "a", &format!("{A}:0"));
    // Nobody listens: b's kernel counts the datagram on eth0, then answers port unreachable (rate-limited).
    let to: std::net::SocketAddr = format!("{B}:9").parse().unwrap();
    source.send_to(&[0u8; 64], to).unwrap();
    std::thread::sleep(Duration::from_millis(100));
    let before = rx_packets(lab, "b");
    let started = Instant::now();
    let mut sent = 0u64;
    while started.elapsed() < length {
        for _ in 0..64 {
            if source.send_to(&[0u8; 64], to).is_ok() {
                sent += 1;
            }
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    // What the relay still holds arrives within its delay.
    std::thread::sleep(Duration::from_millis(50));
    let got = rx_packets(lab, "b") - before;
    (sent as f64 / seconds, got as f64 / seconds)
}

/// Packets received on `host`'s eth0, as its kernel counts them.
fn rx_packets(lab: &Lab, host: &str) -> u64 {
    netns::run_in(lab.netns_path(host).unwrap(), || {
        // /proc/thread-self/net is this thread's namespace, the host's.
        let table = std::fs::read_to_string("/proc/thread-self/net/dev")?;
        let line = table
            .lines()
            .find(|l| l.trim_start().starts_with("eth0:"))
            .expect("eth0");
        Ok(line.split_whitespace().nth(2).unwrap().parse().unwrap())
    })
    .unwrap()
}

fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    percentile(&sorted, 0.5)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn print_latency(label: &str, rtts: &[f64], bridge: &[f64]) {
    let mut sorted = rtts.to_vec();
    sorted.sort_by(f64::total_cmp);
    let mut base = bridge.to_vec();
    base.sort_by(f64::total_cmp);
    let (p50, p99) = (percentile(&sorted, 0.5), percentile(&sorted, 0.99));
    println!(
        "{label:<34} {p50:>7.1} us {p99:>7.1} us {:>11.1} us {:>11.1} us",
        p50 - percentile(&base, 0.5),
        p99 - percentile(&base, 0.99)
    );
}

fn print_pps(label: &str, (sent, received): (f64, f64), (_, bridge): (f64, f64)) {
    println!("{label:<34} {sent:>14.0} {received:>14.0} {:>9.2}x", received / bridge);
}

fn kernel() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .unwrap_or_default()
        .trim()
        .to_string()
}
