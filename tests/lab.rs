//! The lab runner against real namespaces (run as root): the seed's VLAN, services, teardown, parallel labs.

use std::net::Ipv4Addr;
use std::time::Duration;

use halab_tests::{leftovers, namespace_inodes, root_links, seed_topology, unique_name};
use lab::events::{EventKind, ExitStatus};
use lab::{Lab, Topology};

fn succeeds(lab: &Lab, host: &str, argv: &[&str]) -> bool {
    lab.exec(host, argv).unwrap().status.success()
}

/// TCP connect from `host` to `target:port`, giving up after one second (a dropped SYN never answers).
fn tcp_connects(lab: &Lab, host: &str, target: &str, port: u16) -> bool {
    succeeds(lab, host, &["nc", "-z", "-w", "1", target, &port.to_string()])
}

#[test]
fn seed_vlan_comes_up_with_names_routes_and_firewall() {
    let before = root_links();
    let topology = seed_topology("seed");
    let lab = Lab::up(&topology).unwrap();

    // Every host reaches every other host by its /etc/hosts name.
    let names = [
        "redis-1v",
        "redis-2v",
        "redis-3v",
        "vlan-router",
        "vlan-haproxy1",
        "vlan-redisclient",
        "vlan-haproxy2",
    ];
    for host in ["redisclient", "haproxy1", "redis-2v", "router"] {
        for name in names {
            assert!(
                succeeds(&lab, host, &["ping", "-c", "1", "-W", "2", name]),
                "{host} cannot ping {name}"
            );
        }
    }
    // The VIP's name resolves everywhere even though nobody holds it yet.
    let resolved = lab.exec("redisclient", &["getent", "hosts", "vlan-haproxy"]).unwrap();
    assert_eq!(
        String::from_utf8_lossy(&resolved.stdout).split_whitespace().next(),
        Some("10.0.0.31")
    );
    // Hostnames.
    for (host, hostname) in [
        ("haproxy1", "haproxy1"),
        ("haproxy2", "haproxy2"),
        ("router", "vlan-router"),
        ("redis-1v", "redis-1v"),
    ] {
        let out = lab.exec(host, &["hostname"]).unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), hostname);
    }
    // The router forwards between its legs; other hosts do not.
    let forward = lab.exec("router", &["cat", "/proc/sys/net/ipv4/ip_forward"]).unwrap();
    assert_eq!(String::from_utf8_lossy(&forward.stdout).trim(), "1");
    let forward = lab.exec("haproxy1", &["cat", "/proc/sys/net/ipv4/ip_forward"]).unwrap();
    assert_eq!(String::from_utf8_lossy(&forward.stdout).trim(), "0");
    // Default route via the router, and /sys shows the host's own interfaces.
    let route = lab.exec("redisclient", &["ip", "route", "show", "default"]).unwrap();
    assert!(String::from_utf8_lossy(&route.stdout).contains("via 10.0.0.1 dev eth0"));
    let sys = lab.exec("redisclient", &["ls", "/sys/class/net"]).unwrap();
    assert_eq!(
        String::from_utf8_lossy(&sys.stdout)
            .split_whitespace()
            .collect::<Vec<_>>(),
        ["eth0", "lo"]
    );

    // The seed's firewall: Redis's port answers the proxy hosts, not the client.
    let listener = lab
        .command("redis-1v", "nc")
        .unwrap()
        .args(["-l", "-k", "-p", "6379"])
        .spawn()
        .unwrap();
    let mut listener = KillOnDrop(listener);
    std::thread::sleep(Duration::from_millis(200));
    assert!(
        tcp_connects(&lab, "haproxy1", "redis-1v", 6379),
        "haproxy1 must reach Redis"
    );
    assert!(
        tcp_connects(&lab, "haproxy2", "redis-1v", 6379),
        "haproxy2 must reach Redis"
    );
    assert!(
        !tcp_connects(&lab, "redisclient", "redis-1v", 6379),
        "the client must not reach Redis directly"
    );
    listener.0.kill().unwrap();

    // The API reports what the kernel has.
    assert_eq!(
        lab.addresses("router").unwrap()[1],
        ("eth1".to_string(), Ipv4Addr::new(192, 168, 100, 2), 24)
    );
    let mac = lab.mac("haproxy1", "eth0").unwrap();
    assert_eq!(mac[0] & 1, 0, "unicast MAC");
    assert!(lab.links("haproxy1").unwrap().iter().all(|l| l.up));

    let inodes = namespace_inodes(&lab);
    let name = lab.name().to_string();
    lab.down().unwrap();
    assert_eq!(leftovers(&name, &inodes), Vec::<String>::new());
    assert_eq!(root_links(), before, "the machine's own links changed");
}

struct KillOnDrop(std::process::Child);
impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn drop_removes_everything_even_on_a_panic_in_a_wait() {
    let topology = seed_topology("drop");
    let name = topology.name.clone();
    let inodes = std::sync::Mutex::new(Vec::new());
    let result = std::panic::catch_unwind(|| {
        let lab = Lab::up(&topology).unwrap();
        // Something still running inside a host when the lab goes away.
        // Deliberately not waited for: the lab's teardown must kill it.
        #[allow(clippy::zombie_processes)]
        let _sleeper = lab
            .command("redisclient", "sleep")
            .unwrap()
            .arg("1000")
            .spawn()
            .unwrap();
        *inodes.lock().unwrap() = namespace_inodes(&lab);
        // The test fails inside a predicate waiting on the event log: teardown must still get at the log.
        lab.events()
            .wait_for(Duration::from_secs(1), |_| panic!("a failing test"));
    });
    assert!(result.is_err());
    assert_eq!(leftovers(&name, &inodes.lock().unwrap()), Vec::<String>::new());
}

#[test]
fn two_labs_from_one_file_run_side_by_side() {
    let first = Lab::up(&seed_topology("twin")).unwrap();
    let second = Lab::up(&seed_topology("twin")).unwrap();
    assert!(succeeds(
        &first,
        "redisclient",
        &["ping", "-c", "1", "-W", "2", "10.0.0.21"]
    ));
    assert!(succeeds(
        &second,
        "redisclient",
        &["ping", "-c", "1", "-W", "2", "10.0.0.21"]
    ));
    // Same addresses, different networks: a MAC seen in one lab is not the other's.
    assert_ne!(
        first.mac("haproxy1", "eth0").unwrap(),
        second.mac("haproxy1", "eth0").unwrap()
    );
    let same_name = Lab::up(first.topology());
    assert!(
        matches!(same_name, Err(lab::LabError::AlreadyUp(_))),
        "a second lab under a taken name must be refused"
    );
    // The refused attempt must not have damaged the running lab.
    assert!(succeeds(
        &first,
        "redisclient",
        &["ping", "-c", "1", "-W", "2", "10.0.0.21"]
    ));
}

#[test]
fn services_start_in_order_log_and_stop_with_their_signal() {
    let name = unique_name("svc");
    let text = format!(
        r#"
name = "{name}"
[[segments]]
name = "lan"
subnet = "10.1.0.0/24"
[[hosts]]
name = "server"
interfaces = [{{ segment = "lan", address = "10.1.0.1", mac = "02:00:00:00:01:01" }}]
[[hosts.services]]
name = "listener"
argv = ["nc", "-l", "-k", "-p", "7000"]
ready = {{ tcp = 7000 }}
[[hosts.services]]
name = "stubborn"
argv = ["sh", "-c", "trap '' TERM; echo started as $(hostname); echo oops >&2; while true; do sleep 0.05; done"]
ready = {{ log = "started as server" }}
grace = 0.3
[[hosts]]
name = "client"
interfaces = [{{ segment = "lan", address = "10.1.0.2" }}]
"#
    );
    let topology = Topology::parse(&text, "services.toml").unwrap();
    let lab = Lab::up(&topology).unwrap();
    assert_eq!(lab.mac("server", "eth0").unwrap(), [2, 0, 0, 0, 1, 1]);
    assert!(tcp_connects(&lab, "client", "server", 7000));

    let kinds: Vec<String> = lab
        .events()
        .all()
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::ServiceStarted { service, .. } => Some(format!("started {service}")),
            EventKind::ServiceReady { service } => Some(format!("ready {service}")),
            EventKind::LabUp { .. } => Some("lab up".into()),
            _ => None,
        })
        .collect();
    assert_eq!(
        kinds,
        [
            "started listener",
            "ready listener",
            "started stubborn",
            "ready stubborn",
            "lab up"
        ]
    );
    let log = std::fs::read_to_string(&lab.service("server", "stubborn").unwrap().log).unwrap();
    assert!(log.contains("started as server") && log.contains("oops"), "{log}");

    let name = lab.name().to_string();
    let inodes = namespace_inodes(&lab);
    let statuses = lab.down().unwrap();
    // Stopped last-started first; nc dies of SIGTERM, the stubborn one needs SIGKILL after its grace period.
    assert_eq!(
        statuses,
        [
            ("server".to_string(), "stubborn".to_string(), ExitStatus::Signal(9)),
            ("server".to_string(), "listener".to_string(), ExitStatus::Signal(15)),
        ]
    );
    assert_eq!(leftovers(&name, &inodes), Vec::<String>::new());
}

#[test]
fn a_service_that_never_gets_ready_fails_the_lab_and_leaves_nothing() {
    let name = unique_name("notready");
    let text = format!(
        r#"
name = "{name}"
[[segments]]
name = "lan"
subnet = "10.2.0.0/24"
[[hosts]]
name = "a"
interfaces = [{{ segment = "lan", address = "10.2.0.1" }}]
[[hosts.services]]
name = "quits"
argv = ["sh", "-c", "echo bye; exit 3"]
ready = {{ tcp = 9 }}
"#
    );
    let error = Lab::up(&Topology::parse(&text, "t.toml").unwrap())
        .err()
        .expect("must fail");
    let message = error.to_string();
    assert!(
        message.contains("service a/quits exited before it was ready: exit code 3"),
        "{message}"
    );
    assert_eq!(leftovers(&name, &[]), Vec::<String>::new());
}

#[test]
fn a_stale_runner_never_touches_a_newer_lab_of_the_same_name() {
    let topology = Topology::parse(
        &lab::topology::flat_topology_toml(&unique_name("stale"), 2),
        "stale.toml",
    )
    .unwrap();
    let name = topology.name.clone();
    let stale = Lab::up(&topology).unwrap();
    let stale_namespaces = namespace_inodes(&stale);
    // What `lab down` does once it has given up on a runner: remove the lab from its record, runner or not.
    let hosts: Vec<String> = topology.hosts.iter().map(|h| h.name.clone()).collect();
    lab::teardown::remove(stale.paths(), &hosts, None, stale.state().etc_hosts).unwrap();
    assert_eq!(leftovers(&name, &stale_namespaces), Vec::<String>::new());

    let newer = Lab::up(&topology).unwrap();
    // The stale runner goes away: its teardown finds a run directory that is not the one it created (often with
    // the same inode number: file systems reuse them, so only the record's instance id tells).
    drop(stale);
    assert!(newer
        .exec("h1", &["ping", "-c1", "-W2", "h2"])
        .unwrap()
        .status
        .success());
    assert!(newer.paths().state_file().exists());
    let newer_namespaces = namespace_inodes(&newer);
    newer.down().unwrap();
    assert_eq!(leftovers(&name, &newer_namespaces), Vec::<String>::new());
}
