//! Our agent against keepalived 2.2.7 (Debian package) in the seed's lab, both ways round, with the seed's
//! configuration files: the same master is elected, and each side's crash and return move the VIP as they do
//! between two of our agents. Also a VRRPv3 multicast pair at advert_int 0.1.
//!
//! Bounds come from the protocol: Master_Down_Interval = 3 x interval + (256 - priority) / 256 x interval, plus a
//! margin for process start-up and scheduling.

use std::fs::File;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use halab_tests::{seed_topology, workspace_file};
use lab::{Lab, Topology};

const VIP: &str = "10.0.0.31";
const MARGIN: Duration = Duration::from_secs(2);

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Agent {
    Ours,
    Keepalived,
}

/// A VRRP daemon running in a lab host; killed (SIGKILL, a crash) when dropped.
struct Daemon {
    child: Child,
    log: PathBuf,
}

impl Daemon {
    fn start(lab: &Lab, host: &str, agent: Agent, config: &str, dir: &std::path::Path) -> Daemon {
        let config = workspace_file(config).display().to_string();
        let log = dir.join(format!("{host}.{agent:?}.log"));
        let program = match agent {
            Agent::Ours => "vrrpd",
            Agent::Keepalived => "keepalived",
        };
        let mut command = lab.command(host, program).unwrap();
        match agent {
            Agent::Ours => command.args(["-f", &config, "-l", "-D"]),
            Agent::Keepalived => {
                let pid = dir.join(format!("{host}.pid")).display().to_string();
                let vrrp_pid = dir.join(format!("{host}.vrrp.pid")).display().to_string();
                command.args(["-n", "-l", "-D", "-G", "-P", "-f", &config, "-p", &pid, "-r", &vrrp_pid])
            }
        };
        // Appended: a restarted daemon keeps the earlier run's lines.
        let file = File::options().create(true).append(true).open(&log).unwrap();
        // Its own process group: keepalived forks its VRRP process, and a crash must take both.
        let child = command
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(file.try_clone().unwrap())
            .stderr(file)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {program} (apt-get install keepalived?): {e}"));
        Daemon { child, log }
    }

    fn crash(mut self) -> String {
        self.signal_group(nix::sys::signal::Signal::SIGKILL);
        let _ = self.child.wait();
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn stop(mut self) -> String {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
        let _ = self.child.wait();
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Daemon {
    fn signal_group(&self, signal: nix::sys::signal::Signal) {
        let group = nix::unistd::Pid::from_raw(-(self.child.id() as i32));
        let _ = nix::sys::signal::kill(group, signal);
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.signal_group(nix::sys::signal::Signal::SIGKILL);
        let _ = self.child.wait();
    }
}

fn holds_vip(lab: &Lab, host: &str) -> bool {
    let out = lab
        .exec(host, &["ip", "-4", "-o", "addr", "show", "dev", "eth0"])
        .unwrap();
    String::from_utf8_lossy(&out.stdout).contains(&format!("inet {VIP}/32"))
}

/// Waits until `host` holds the VIP, at most `bound`; returns how long it took.
fn wait_vip(lab: &Lab, host: &str, bound: Duration) -> Duration {
    let start = Instant::now();
    while !holds_vip(lab, host) {
        assert!(start.elapsed() < bound, "{host} did not take {VIP} within {bound:?}");
        std::thread::sleep(Duration::from_millis(10));
    }
    start.elapsed()
}

/// The seed's lab without its own VRRP services: the test starts the daemons itself.
fn bare_lab(prefix: &str) -> (Lab, PathBuf) {
    let mut topology: Topology = seed_topology(prefix);
    for host in &mut topology.hosts {
        host.services.clear();
    }
    let lab = Lab::up(&topology).unwrap();
    let dir = std::env::temp_dir().join(format!("interop-{}", lab.name()));
    std::fs::create_dir_all(&dir).unwrap();
    (lab, dir)
}

fn seconds(value: f64) -> Duration {
    Duration::from_secs_f64(value)
}

/// haproxy1 (priority 100) runs `first`, haproxy2 (99) runs `second`, with the seed's v2 PASS unicast files.
fn seed_pair(first: Agent, second: Agent) {
    let (lab, dir) = bare_lab(if first == Agent::Ours { "iopo" } else { "iopk" });
    let h1_conf = "topologies/keepalived-haproxy1.conf";
    let h2_conf = "topologies/keepalived-haproxy2.conf";
    let mdi_h1 = seconds(3.609375);
    let mdi_h2 = seconds(3.61328125);

    // Election: both start together; haproxy1 wins after its own Master_Down_Interval.
    let h2 = Daemon::start(&lab, "haproxy2", second, h2_conf, &dir);
    let h1 = Daemon::start(&lab, "haproxy1", first, h1_conf, &dir);
    wait_vip(&lab, "haproxy1", mdi_h1 + MARGIN);
    std::thread::sleep(seconds(1.5));
    assert!(
        !holds_vip(&lab, "haproxy2"),
        "{first:?}/{second:?}: VIP on both after election"
    );

    // haproxy1 crashes: haproxy2 takes over within its Master_Down_Interval of the last advert.
    let h1_log = h1.crash();
    wait_vip(&lab, "haproxy2", mdi_h2 + MARGIN);
    assert!(h1_log.contains("Entering MASTER STATE"), "{h1_log}");

    // haproxy1 returns (its stale VIP is removed at start) and preempts after its own Master_Down_Interval.
    let h1 = Daemon::start(&lab, "haproxy1", first, h1_conf, &dir);
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        !holds_vip(&lab, "haproxy1"),
        "a returning agent must clear its stale VIP and wait"
    );
    wait_vip(&lab, "haproxy1", mdi_h1 + MARGIN);
    let start = Instant::now();
    while holds_vip(&lab, "haproxy2") {
        assert!(
            start.elapsed() < seconds(1.0),
            "haproxy2 kept the VIP after haproxy1 preempted"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    let h1_log = h1.stop();
    assert!(
        h1_log.contains("received lower priority (99) advert from 10.0.0.23 - discarding"),
        "{h1_log}"
    );

    // Graceful stop (priority 0): haproxy2 takes over after Skew_Time, well under a Master_Down_Interval.
    let took = wait_vip(&lab, "haproxy2", seconds(0.61328125) + MARGIN);
    assert!(
        took < mdi_h2,
        "{first:?}/{second:?}: takeover after a priority-0 advert took {took:?}"
    );
    let h2_log = h2.stop();
    assert!(
        h2_log.contains("Master received advert from 10.0.0.21 with higher priority 100, ours 99"),
        "{h2_log}"
    );
    lab.down().unwrap();
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn keepalived_on_haproxy1_ours_on_haproxy2() {
    seed_pair(Agent::Keepalived, Agent::Ours);
}

#[test]
fn ours_on_haproxy1_keepalived_on_haproxy2() {
    seed_pair(Agent::Ours, Agent::Keepalived);
}

#[test]
fn vrrp_v3_multicast_at_a_tenth_of_a_second_both_ways() {
    for (first, second) in [(Agent::Ours, Agent::Keepalived), (Agent::Keepalived, Agent::Ours)] {
        let (lab, dir) = bare_lab("iov3");
        let h1_conf = "agent/tests/fixtures/keepalived/v3-multicast-haproxy1.conf";
        let h2_conf = "agent/tests/fixtures/keepalived/v3-multicast-haproxy2.conf";
        let _h2 = Daemon::start(&lab, "haproxy2", second, h2_conf, &dir);
        let h1 = Daemon::start(&lab, "haproxy1", first, h1_conf, &dir);
        wait_vip(&lab, "haproxy1", seconds(0.3609375) + MARGIN);
        std::thread::sleep(seconds(0.5));
        assert!(!holds_vip(&lab, "haproxy2"), "{first:?}/{second:?}: VIP on both");
        h1.crash();
        wait_vip(&lab, "haproxy2", seconds(0.361328125) + MARGIN);
        lab.down().unwrap();
        let _ = std::fs::remove_dir_all(dir);
    }
}
