//! A lab spread over machines against the same lab on one machine, on the VMs of scripts/machines (Debian's kernel,
//! emulated: compare the ratios, not the times): bring-up, the clock offsets' uncertainty, and what a stretched
//! segment (VXLAN between two machines) costs against a local one in round-trip time and TCP throughput.
//! Run as root: `scripts/machines cargo bench --bench machines` (`-- --quick` for fewer runs).

use std::time::{Duration, Instant};

use halab_tests::machines::Machines;
use lab::machines::report::ClockSession;
use lab::{Lab, Topology};

fn main() {
    let Some(machines) = Machines::from_env() else {
        eprintln!("this benchmark needs machines: run it as `scripts/machines cargo bench --bench machines`");
        std::process::exit(2);
    };
    let quick = std::env::args().any(|a| a == "--quick");
    let runs = if quick { 1 } else { 3 };

    println!("bring-up of vlan-vrrp.toml (7 hosts, 2 VRRP agents, 2 listeners), median of {runs}");
    let one = bring_up(&machines, runs, |_| "m1");
    let three = bring_up(&machines, runs, |host| match host {
        "haproxy1" => "m2",
        "haproxy2" | "redisclient" => "m3",
        _ => "m1",
    });
    println!("{:<36} {:>10.1} s", "all hosts on m1", one.as_secs_f64());
    println!(
        "{:<36} {:>10.1} s   {:.2}x one machine",
        "spread over m1, m2, m3",
        three.as_secs_f64(),
        three.as_secs_f64() / one.as_secs_f64()
    );

    let estimates = if quick { 5 } else { 20 };
    println!("\nclock offsets: {estimates} estimates per machine (each the tightest of 16 round trips over SSH)");
    println!(
        "{:<8} {:>16} {:>16} {:>16} {:>18}",
        "machine", "uncertainty p50", "uncertainty max", "offset spread", "under 1 ms"
    );
    for (name, _) in &machines.machines {
        clock(&machines, name, estimates);
    }

    println!("\nsegment between a and b: both on m1 (local) or a on m1 and b on m2 (stretched over VXLAN)");
    let local = pair(&machines, "m1");
    let stretched = pair(&machines, "m2");
    println!("{:<36} {:>12} {:>14}", "segment", "ping RTT avg", "TCP throughput");
    println!("{:<36} {:>9.3} ms {:>9.1} Mbit/s", "local (bridge)", local.0, local.1);
    println!(
        "{:<36} {:>9.3} ms {:>9.1} Mbit/s   RTT {:.2}x, throughput {:.2}x local",
        "stretched (VXLAN, MTU 1450)",
        stretched.0,
        stretched.1,
        stretched.0 / local.0,
        stretched.1 / local.1
    );
}

/// The median time `Lab::up` takes for vlan-vrrp.toml with hosts placed by `place`.
fn bring_up(machines: &Machines, runs: usize, place: impl Fn(&str) -> &'static str) -> Duration {
    let path = halab_tests::workspace_file("topologies/vlan-vrrp.toml");
    let text = machines.spread(&std::fs::read_to_string(&path).unwrap(), place);
    let mut times: Vec<Duration> = (0..runs)
        .map(|_| {
            let topology = Topology::parse(&text, &path)
                .unwrap()
                .renamed(&halab_tests::unique_name("bup"))
                .unwrap();
            let started = Instant::now();
            let lab = Lab::up(&topology).unwrap();
            let took = started.elapsed();
            lab.down().unwrap();
            took
        })
        .collect();
    times.sort();
    times[times.len() / 2]
}

fn clock(machines: &Machines, name: &str, estimates: usize) {
    let ssh = machines.ssh_access(name);
    let mut session = ClockSession::open(&ssh).unwrap();
    let offsets: Vec<_> = (0..estimates).map(|_| session.estimate().unwrap()).collect();
    let mut uncertainties: Vec<u64> = offsets.iter().map(|o| o.uncertainty_ns).collect();
    uncertainties.sort();
    let spread =
        offsets.iter().map(|o| o.offset_ns).max().unwrap() - offsets.iter().map(|o| o.offset_ns).min().unwrap();
    let under = uncertainties.iter().filter(|u| **u < 1_000_000).count();
    println!(
        "{:<8} {:>13.3} ms {:>13.3} ms {:>13.3} ms {:>12} of {}",
        name,
        uncertainties[uncertainties.len() / 2] as f64 / 1e6,
        *uncertainties.last().unwrap() as f64 / 1e6,
        spread as f64 / 1e6,
        under,
        estimates
    );
}

/// Ping round trip (ms, average of 50) and TCP throughput (Mbit/s, 16 MiB) from a on m1 to b on `b_machine`.
fn pair(machines: &Machines, b_machine: &str) -> (f64, f64) {
    let text = format!(
        "name = \"pair\"\n\n[[segments]]\nname = \"net\"\nsubnet = \"10.9.0.0/24\"\n\n\
         [[hosts]]\nname = \"a\"\nmachine = \"m1\"\ninterfaces = [{{ segment = \"net\", address = \"10.9.0.2/24\" }}]\n\n\
         [[hosts]]\nname = \"b\"\nmachine = \"{b_machine}\"\ninterfaces = [{{ segment = \"net\", address = \"10.9.0.3/24\" }}]\n\n{}",
        machines.table()
    );
    let path = halab_tests::workspace_file("topologies/pair.toml");
    let topology = Topology::parse(&text, &path)
        .unwrap()
        .renamed(&halab_tests::unique_name("pair"))
        .unwrap();
    let lab = Lab::up(&topology).unwrap();
    let ping = lab
        .exec("a", &["ping", "-q", "-c", "50", "-i", "0.05", "10.9.0.3"])
        .unwrap();
    let ping = String::from_utf8_lossy(&ping.stdout).to_string();
    // rtt min/avg/max/mdev = 0.041/0.052/0.101/0.011 ms
    let average: f64 = ping
        .lines()
        .find_map(|l| l.split(" = ").nth(1))
        .and_then(|v| v.split('/').nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("ping said {ping}"));
    // socat on b times what one connection brings, from its first byte to its end (the sender's own time would end
    // while megabytes still sit in socket buffers); a on m1 sends 16 MiB once b listens (its session over SSH
    // takes seconds to start).
    let (nanos, received) = std::thread::scope(|scope| {
        let server = scope.spawn(|| {
            let count = "timeout 180 socat -u TCP-LISTEN:5001,reuseaddr - | \
                         { head -c 1 >/dev/null; s=$(date +%s%N); n=$(wc -c); e=$(date +%s%N); \
                         echo $((n + 1)) $((e - s)); }";
            lab.exec("b", &["sh", "-c", count]).unwrap()
        });
        let send = "for i in $(seq 300); do \
                    if dd if=/dev/zero bs=64k count=256 2>/dev/null | socat -u - TCP:10.9.0.3:5001 2>/dev/null; \
                    then exit 0; fi; sleep 0.2; done; exit 1";
        let client = lab.exec("a", &["sh", "-c", send]).unwrap();
        assert!(client.status.success(), "a could not send");
        let server = server.join().unwrap();
        let said = String::from_utf8_lossy(&server.stdout).to_string();
        let numbers: Vec<f64> = said.split_whitespace().filter_map(|w| w.parse().ok()).collect();
        assert_eq!(numbers.len(), 2, "b said {said:?}");
        (numbers[1], numbers[0] as usize)
    });
    assert_eq!(received, 256 * 65536, "b received {received} bytes");
    lab.down().unwrap();
    (average, received as f64 * 8.0 / nanos * 1e3)
}
