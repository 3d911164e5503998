//! Throughput and added latency of sentinel-proxy next to HAProxy 2.6 and a direct connection, in one lab and one
//! run: `redis-benchmark -c 50 -n 200000 -t set,get` with -P 1 and -P 16, plain and TLS (passed through by both
//! proxies), medians of 3; then one connection (-c 1) for the latency each proxy adds at p50. Run as root with a
//! release build of the proxy first in PATH: `scripts/bench-proxy` (`--quick` for a short run).
//!
//! The lab: redis (redis-server, plain on 6380 and TLS on 6379), proxy (sentinel-proxy on 7380/7379 and HAProxy on
//! 8380/8379, both checking the node's role as they do in the stack), client (redis-benchmark). Three namespaces on
//! one bridge: every byte crosses veth pairs as between machines, on the machine's two cores.

use std::time::Duration;

use halab_tests::unique_name;
use lab::{Lab, Topology};

const HAPROXY_CFG: &str = r#"global
    maxconn 8000
    nbthread 2
defaults
    mode tcp
    timeout connect 1s
    timeout client 1h
    timeout server 1h
    timeout check 1s
frontend plain
    bind *:8380
    default_backend plain
frontend tls
    bind *:8379
    default_backend tls
backend plain
    option tcp-check
    tcp-check send PING\r\ninfo\ replication\r\nQUIT\r\n
    tcp-check expect string role:master
    server redis 10.9.0.10:6380 check inter 1s
backend tls
    option tcp-check
    tcp-check connect default
    tcp-check send PING\r\ninfo\ replication\r\nQUIT\r\n
    tcp-check expect string role:master
    server redis 10.9.0.10:6379 check inter 1s check-ssl verify required ca-file "${TLS_DIR}/ca.crt" crt "${TLS_DIR}/proxy.pem"
"#;

fn topology(haproxy_cfg: &str) -> String {
    format!(
        r#"name = "{name}"
tls = true

[[segments]]
name = "lan"
subnet = "10.9.0.0/24"

[[hosts]]
name = "redis"
interfaces = [{{ segment = "lan", address = "10.9.0.10/24" }}]
[[hosts.services]]
name = "redis"
argv = ["redis-server", "--bind", "10.9.0.10", "--port", "6380", "--tls-port", "6379",
  "--tls-cert-file", "{{tls}}/redis.crt", "--tls-key-file", "{{tls}}/redis.key", "--tls-ca-cert-file", "{{tls}}/ca.crt",
  "--tls-auth-clients", "optional", "--protected-mode", "no", "--save", "", "--appendonly", "no", "--dir", "{{run}}"]
ready = {{ tcp = 6379 }}

[[hosts]]
name = "proxy"
interfaces = [{{ segment = "lan", address = "10.9.0.20/24" }}]
[[hosts.services]]
name = "sentinel-proxy-plain"
argv = ["sentinel-proxy", "--bind", "0.0.0.0:7380", "--server", "10.9.0.10:6380", "--check-interval", "1"]
ready = {{ tcp = 7380 }}
[[hosts.services]]
name = "sentinel-proxy-tls"
argv = ["sentinel-proxy", "--bind", "0.0.0.0:7379", "--server", "10.9.0.10:6379", "--check-interval", "1",
  "--tls-ca", "{{tls}}/ca.crt", "--tls-cert", "{{tls}}/proxy.crt", "--tls-key", "{{tls}}/proxy.key"]
ready = {{ tcp = 7379 }}
# At Debian's own path in the proxy host's /etc.
[[hosts.files]]
path = "/etc/haproxy/haproxy.cfg"
source = "{haproxy_cfg}"
template = false

[[hosts.services]]
name = "haproxy"
argv = ["haproxy", "-db", "-f", "/etc/haproxy/haproxy.cfg"]
env = {{ TLS_DIR = "{{tls}}" }}
ready = {{ tcp = 8379 }}

[[hosts]]
name = "client"
interfaces = [{{ segment = "lan", address = "10.9.0.30/24" }}]
"#,
        name = unique_name("benchproxy"),
    )
}

#[derive(Clone, Copy, PartialEq)]
enum Path {
    Direct,
    Ours,
    HAProxy,
}

impl Path {
    fn label(self) -> &'static str {
        match self {
            Path::Direct => "direct",
            Path::Ours => "sentinel-proxy",
            Path::HAProxy => "HAProxy 2.6",
        }
    }

    fn target(self, tls: bool) -> (&'static str, &'static str) {
        match (self, tls) {
            (Path::Direct, false) => ("10.9.0.10", "6380"),
            (Path::Direct, true) => ("10.9.0.10", "6379"),
            (Path::Ours, false) => ("10.9.0.20", "7380"),
            (Path::Ours, true) => ("10.9.0.20", "7379"),
            (Path::HAProxy, false) => ("10.9.0.20", "8380"),
            (Path::HAProxy, true) => ("10.9.0.20", "8379"),
        }
    }
}

/// One redis-benchmark run: requests per second and p50 latency (ms) per test, in the order of `tests`.
fn benchmark(
    lab: &Lab,
    path: Path,
    tls: bool,
    clients: u32,
    requests: u32,
    pipeline: u32,
    tests: &str,
) -> Vec<(f64, f64)> {
    let (host, port) = path.target(tls);
    let ca = lab.paths().tls_dir().join("ca.crt").display().to_string();
    let (c, n, p) = (clients.to_string(), requests.to_string(), pipeline.to_string());
    let mut argv = vec![
        "redis-benchmark",
        "-h",
        host,
        "-p",
        port,
        "-c",
        &c,
        "-n",
        &n,
        "-P",
        &p,
        "-t",
        tests,
        "--csv",
    ];
    if tls {
        argv.extend(["--tls", "--cacert", &ca]);
    }
    let output = lab.exec("client", &argv).unwrap();
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{argv:?}: {text}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    text.lines()
        .skip(1)
        .map(|line| {
            let fields: Vec<f64> = line
                .split(',')
                .skip(1)
                .map(|f| f.trim_matches('"').parse().unwrap())
                .collect();
            (fields[0], fields[3])
        })
        .collect()
}

/// User and system CPU time a process (all its threads) has used so far, in clock ticks (1/100 s on Linux).
fn cpu_ticks(pid: u32) -> (u64, u64) {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // The command name may hold spaces; fields are counted after its closing parenthesis.
    let fields: Vec<&str> = stat[stat.rfind(')').unwrap() + 2..].split_whitespace().collect();
    (fields[11].parse().unwrap(), fields[12].parse().unwrap())
}

/// The process serving `path` in `mode`.
fn proxy_pid(lab: &Lab, path: Path, tls: bool) -> Option<u32> {
    let service = match (path, tls) {
        (Path::Direct, _) => return None,
        (Path::Ours, false) => "sentinel-proxy-plain",
        (Path::Ours, true) => "sentinel-proxy-tls",
        (Path::HAProxy, _) => "haproxy",
    };
    lab.service("proxy", service).map(|s| s.pid())
}

fn median(mut samples: Vec<f64>) -> f64 {
    samples.sort_by(|a, b| a.partial_cmp(b).unwrap());
    samples[samples.len() / 2]
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let (requests, repeats) = if quick { (50_000, 1) } else { (200_000, 3) };
    let proxy = std::process::Command::new("sh")
        .args(["-c", "command -v sentinel-proxy"])
        .output()
        .unwrap();
    println!("sentinel-proxy: {}", String::from_utf8_lossy(&proxy.stdout).trim());

    let config = std::env::temp_dir().join(format!("bench-haproxy-{}.cfg", std::process::id()));
    std::fs::write(&config, HAPROXY_CFG).unwrap();
    let topology = Topology::parse(&topology(&config.display().to_string()), "bench-proxy.toml").unwrap();
    let lab = Lab::up(&topology).unwrap();
    // Let both proxies see the node as master (first checks) before measuring.
    std::thread::sleep(Duration::from_secs(3));

    let paths = [Path::Direct, Path::Ours, Path::HAProxy];
    // Per path: user ticks, system ticks, requests served while they were counted.
    let mut cpu = [(0u64, 0u64, 0u64); 3];
    println!(
        "redis-benchmark -c 50 -n {requests} -t set,get, median of {repeats}, requests per second (ratio to HAProxy, to direct)"
    );
    println!(
        "{:<6} {:<4} {:<4} {:>12} {:>26} {:>24}",
        "mode",
        "P",
        "test",
        Path::Direct.label(),
        Path::Ours.label(),
        Path::HAProxy.label()
    );
    for tls in [false, true] {
        for pipeline in [1, 16] {
            // Interleaved repetitions: a slow moment of the machine hits every path alike.
            let mut samples: Vec<Vec<Vec<f64>>> = vec![vec![Vec::new(); 2]; paths.len()];
            for _ in 0..repeats {
                for (i, path) in paths.iter().enumerate() {
                    let pid = proxy_pid(&lab, *path, tls);
                    let before = pid.map(cpu_ticks);
                    let results = benchmark(&lab, *path, tls, 50, requests, pipeline, "set,get");
                    if let (Some(pid), Some((user, system))) = (pid, before) {
                        let (user_after, system_after) = cpu_ticks(pid);
                        cpu[i].0 += user_after - user;
                        cpu[i].1 += system_after - system;
                        cpu[i].2 += 2 * requests as u64;
                    }
                    for (t, (rps, _)) in results.iter().enumerate() {
                        samples[i][t].push(*rps);
                    }
                }
            }
            for (t, test) in ["SET", "GET"].iter().enumerate() {
                let direct = median(samples[0][t].clone());
                let ours = median(samples[1][t].clone());
                let haproxy = median(samples[2][t].clone());
                println!(
                    "{:<6} {:<4} {:<4} {:>12.0} {:>10.0} ({:>4.2}x, {:>4.2}x) {:>14.0} ({:>4.2}x)",
                    if tls { "TLS" } else { "plain" },
                    pipeline,
                    test,
                    direct,
                    ours,
                    ours / haproxy,
                    ours / direct,
                    haproxy,
                    haproxy / direct
                );
            }
        }
    }

    // Where a proxy's time goes: nearly all of it is system time (sending through veth and bridge runs the whole
    // path to the receiving socket in the sender's system call), which no user-space proxy can shave.
    for (i, path) in paths.iter().enumerate().skip(1) {
        let (user, system, served) = cpu[i];
        let per_request = |ticks: u64| ticks as f64 * 10_000.0 / served.max(1) as f64;
        println!(
            "{}: CPU per request (all -c 50 runs above) {:.2} µs user + {:.2} µs system",
            path.label(),
            per_request(user),
            per_request(system)
        );
    }

    let single = if quick { 10_000 } else { 50_000 };
    println!("redis-benchmark -c 1 -n {single} -t get -P 1, median of {repeats}: p50 latency and what each proxy adds");
    for tls in [false, true] {
        let mut p50: Vec<Vec<f64>> = vec![Vec::new(); paths.len()];
        for _ in 0..repeats {
            for (i, path) in paths.iter().enumerate() {
                p50[i].push(benchmark(&lab, *path, tls, 1, single, 1, "get")[0].1);
            }
        }
        let p50: Vec<f64> = p50.into_iter().map(median).collect();
        println!(
            "{:<6} direct p50 {:.0} µs; sentinel-proxy {:.0} µs (+{:.0} µs); HAProxy 2.6 {:.0} µs (+{:.0} µs)",
            if tls { "TLS" } else { "plain" },
            p50[0] * 1e3,
            p50[1] * 1e3,
            (p50[1] - p50[0]) * 1e3,
            p50[2] * 1e3,
            (p50[2] - p50[0]) * 1e3
        );
    }
    lab.down().unwrap();
    let _ = std::fs::remove_file(config);
}
