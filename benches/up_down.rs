//! Up+down time of the seed's network (vlan-vrrp.toml: its hosts with the VRRP agents, no Redis) and of flat 100-
//! and 1000-host topologies, each next to the same topology with hosts that share the machine's filesystem (what
//! the hosts' own /run, /tmp, /etc and /var cost) and to a plain iproute2 shell script doing the network's work, in
//! the same run. Run as root: `scripts/bench-up` (or `cargo bench --bench up_down`).

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use halab_tests::{unique_name, workspace_file};
use lab::names::{namespace_name, switch_port_name, SWITCH_HOST};
use lab::topology::{flat_topology_toml, InboundPolicy, Topology};
use lab::Lab;

fn main() {
    if !nix_is_root() {
        eprintln!("the benchmark builds namespaces: run it as root");
        std::process::exit(2);
    }
    let quick = std::env::args().any(|a| a == "--quick");
    let seed = Topology::load(workspace_file("topologies/vlan-vrrp.toml")).unwrap();
    // The network alone: the same namespaces, links, addresses, routes and firewalls, no services or probes.
    let mut network = seed.clone();
    for host in &mut network.hosts {
        host.services.clear();
        host.probes.clear();
    }
    let flat = |n: usize| {
        let name = unique_name("bench");
        Topology::parse(&flat_topology_toml(&name, n), format!("flat-{n}.toml")).unwrap()
    };
    let cases: Vec<(String, Topology, usize, usize)> = if quick {
        vec![
            ("vlan-vrrp.toml network".into(), network, 5, 2),
            ("vlan-vrrp.toml (8 ns)".into(), seed, 5, 2),
            ("flat 100 hosts".into(), flat(100), 2, 1),
        ]
    } else {
        vec![
            ("vlan-vrrp.toml network".into(), network, 20, 5),
            ("vlan-vrrp.toml (8 ns)".into(), seed, 20, 5),
            ("flat 100 hosts".into(), flat(100), 5, 2),
            ("flat 1000 hosts".into(), flat(1000), 3, 1),
        ]
    };
    println!(
        "{:<26} {:>10} {:>10} {:>10} {:>14} {:>11} {:>13} {:>11} {:>12} {:>14}",
        "topology",
        "lab up",
        "lab down",
        "up+down",
        "back-to-back",
        "iproute2",
        "iproute2/lab",
        "shared fs",
        "own/shared",
        "fs per host"
    );
    for (label, topology, lab_runs, script_runs) in cases {
        let (up, down) = up_and_down(&topology, lab_runs);
        let mut shared = topology.clone();
        for host in &mut shared.hosts {
            host.filesystem.shared = true;
        }
        let (shared_up, shared_down) = up_and_down(&shared, lab_runs);
        // Back to back, the next build also waits for the kernel to free the previous lab's namespaces.
        let started = Instant::now();
        for _ in 0..lab_runs {
            let topology = topology.clone().renamed(&unique_name("bench")).unwrap();
            Lab::up(&topology).unwrap().down().unwrap();
        }
        let cycle = started.elapsed() / lab_runs as u32;
        std::thread::sleep(SETTLE);
        let mut script = Vec::new();
        for _ in 0..script_runs {
            let name = unique_name("sh");
            let (up_script, down_script) = iproute2_scripts(&topology.clone().renamed(&name).unwrap());
            let started = Instant::now();
            run_bash(&up_script);
            run_bash(&down_script);
            script.push(started.elapsed());
            std::thread::sleep(SETTLE);
        }
        let script = median(script);
        let total = up + down;
        let shared_total = shared_up + shared_down;
        let per_host = total.saturating_sub(shared_total) / topology.hosts.len() as u32;
        println!(
            "{label:<26} {:>10} {:>10} {:>10} {:>14} {:>11} {:>12.1}x {:>11} {:>11.2}x {:>11.0} us",
            ms(up),
            ms(down),
            ms(total),
            ms(cycle),
            ms(script),
            script.as_secs_f64() / total.as_secs_f64(),
            ms(shared_total),
            total.as_secs_f64() / shared_total.as_secs_f64(),
            per_host.as_secs_f64() * 1e6
        );
    }
}

/// The median `Lab::up` and `Lab::down` times of `runs` labs of `topology`, one at a time.
fn up_and_down(topology: &Topology, runs: usize) -> (Duration, Duration) {
    let mut up = Vec::new();
    let mut down = Vec::new();
    for _ in 0..runs {
        let topology = topology.clone().renamed(&unique_name("bench")).unwrap();
        let started = Instant::now();
        let lab = Lab::up(&topology).unwrap();
        up.push(started.elapsed());
        let started = Instant::now();
        lab.down().unwrap();
        down.push(started.elapsed());
        // The kernel frees deleted namespaces in the background; let it finish so runs do not overlap.
        std::thread::sleep(SETTLE);
    }
    (median(up), median(down))
}

const SETTLE: Duration = Duration::from_millis(500);

fn nix_is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(2) == Some("0"))
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1e3)
}

fn run_bash(script: &str) {
    use std::io::Write;
    let mut bash = std::process::Command::new("bash")
        .args(["-e", "-s"])
        .stdin(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    bash.stdin.take().unwrap().write_all(script.as_bytes()).unwrap();
    let status = bash.wait().unwrap();
    assert!(status.success(), "the iproute2 baseline failed");
}

/// The same work as `Lab::up`/`down`, written the way one would by hand with iproute2 (one command per step).
fn iproute2_scripts(topology: &Topology) -> (String, String) {
    let switch = namespace_name(&topology.name, SWITCH_HOST);
    let mut up = String::new();
    let mut down = String::new();
    writeln!(up, "ip netns add {switch}").unwrap();
    writeln!(up, "ip netns exec {switch} sysctl -qw net.ipv6.conf.all.disable_ipv6=1").unwrap();
    writeln!(up, "ip -n {switch} link set lo up").unwrap();
    for segment in &topology.segments {
        writeln!(up, "ip -n {switch} link add {} type bridge", segment.name).unwrap();
        writeln!(up, "ip -n {switch} link set {} up", segment.name).unwrap();
    }
    for host in &topology.hosts {
        let ns = namespace_name(&topology.name, &host.name);
        writeln!(up, "ip netns add {ns}").unwrap();
        writeln!(up, "ip netns exec {ns} sysctl -qw net.ipv6.conf.all.disable_ipv6=1").unwrap();
        writeln!(up, "ip -n {ns} link set lo up").unwrap();
        for (n, iface) in host.interfaces.iter().enumerate() {
            let port = switch_port_name(&host.name, n);
            writeln!(
                up,
                "ip -n {switch} link add {port} type veth peer name {} netns {ns}",
                iface.name
            )
            .unwrap();
            writeln!(up, "ip -n {switch} link set {port} master {} up", iface.segment).unwrap();
            writeln!(
                up,
                "ip -n {ns} addr add {}/{} dev {}",
                iface.address, iface.prefix, iface.name
            )
            .unwrap();
            writeln!(up, "ip -n {ns} link set {} up", iface.name).unwrap();
        }
        for route in &host.routes {
            let to = route.to.map_or("default".to_string(), |t| t.to_string());
            writeln!(up, "ip -n {ns} route add {to} via {}", route.via).unwrap();
        }
        for (key, value) in &host.sysctls {
            writeln!(up, "ip netns exec {ns} sysctl -qw {key}={value}").unwrap();
        }
        if let Some(firewall) = &host.firewall {
            assert_eq!(firewall.inbound, InboundPolicy::Accept);
            let rules = lab::net::firewall::ruleset(firewall);
            writeln!(up, "ip netns exec {ns} nft -f - <<'RULES'\n{rules}RULES").unwrap();
        }
        writeln!(up, "mkdir -p /etc/netns/{ns}").unwrap();
        writeln!(
            up,
            "cat > /etc/netns/{ns}/hosts <<'HOSTS'\n{}HOSTS",
            topology.etc_hosts()
        )
        .unwrap();
        writeln!(down, "ip netns del {ns}").unwrap();
        writeln!(down, "rm -r /etc/netns/{ns}").unwrap();
    }
    writeln!(down, "ip netns del {switch}").unwrap();
    (up, down)
}
