//! Our agent against keepalived 2.2.7 (Debian package) in the seed's lab, both ways round, with the seed's
//! configuration files: the same master is elected, and each side's crash and return move the VIP as they do
//! between two of our agents. Also a VRRPv3 multicast pair at advert_int 0.1.
//!
//! Bounds come from the protocol: Master_Down_Interval = 3 x interval + (256 - priority) / 256 x interval, plus a
//! margin for process start-up and scheduling.

use std::time::{Duration, Instant};

use halab_tests::vrrp::{bare_lab, holds_vip, wait_vip, Agent, Daemon};

const MARGIN: Duration = Duration::from_secs(2);

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
