//! Our VRRP agent in the seed's lab, with the seed's keepalived.conf files unchanged: haproxy1 is elected, holds
//! the VIP alone, announces it with its own MAC, and the client reaches it.

use std::time::{Duration, Instant};

use halab_tests::seed_topology;
use lab::Lab;

const VIP: &str = "10.0.0.31";

fn holds_vip(lab: &Lab, host: &str) -> bool {
    let out = lab
        .exec(host, &["ip", "-4", "-o", "addr", "show", "dev", "eth0"])
        .unwrap();
    String::from_utf8_lossy(&out.stdout).contains(&format!("inet {VIP}/32"))
}

fn mac_text(mac: [u8; 6]) -> String {
    mac.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(":")
}

#[test]
fn seed_lab_elects_haproxy1_and_the_client_reaches_the_vip() {
    let lab = Lab::up(&seed_topology("vrrp")).unwrap();
    // Lab::up returns once both agents logged "Entering BACKUP STATE (init)"; haproxy1 (priority 100) takes over
    // after its Master_Down_Interval, 3 + 156/256 s. The bound adds the time both agents took to start.
    let up = Instant::now();
    let bound = Duration::from_secs_f64(3.609375) + Duration::from_secs(2);
    while !holds_vip(&lab, "haproxy1") {
        assert!(up.elapsed() < bound, "haproxy1 did not take {VIP} within {bound:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(!holds_vip(&lab, "haproxy2"), "the VIP is on both hosts");

    let ping = lab
        .exec("redisclient", &["ping", "-c", "1", "-W", "2", "vlan-haproxy"])
        .unwrap();
    assert!(ping.status.success(), "the client cannot ping the VIP");
    let neighbours = lab.exec("redisclient", &["ip", "neigh", "show", VIP]).unwrap();
    let haproxy1 = mac_text(lab.mac("haproxy1", "eth0").unwrap());
    assert!(
        String::from_utf8_lossy(&neighbours.stdout).contains(&haproxy1),
        "the client's ARP entry for {VIP} is not haproxy1's MAC {haproxy1}: {}",
        String::from_utf8_lossy(&neighbours.stdout)
    );

    // haproxy2 stays backup and says why in keepalived's words; the machine-readable stream says the same.
    std::thread::sleep(Duration::from_millis(1500));
    assert!(!holds_vip(&lab, "haproxy2"));
    let run = lab::state::run_dir(lab.name());
    let log = std::fs::read_to_string(run.join("logs/haproxy1.vrrpd.log")).unwrap();
    assert!(log.contains("(Instance1) Entering MASTER STATE"), "{log}");
    let events = std::fs::read_to_string(run.join("haproxy1.vrrpd.events")).unwrap();
    assert!(events
        .lines()
        .any(|line| line.contains(r#""event":"state""#) && line.contains(r#""to":"MASTER""#)));
    assert!(events.contains(r#""event":"garp""#));
    lab.down().unwrap();
}
