//! Whole scenarios in virtual time: the seed's two agents on one segment, adverts as real bytes, timers exact.
//! Each scenario asserts its key times against the protocol's formulas and keeps its timeline as a snapshot.

use std::net::Ipv4Addr;
use std::path::Path;
use std::time::Duration;

use agent::config::{self, Options};
use agent::machine::{skew_time, Authentication, InitialState, Settings, State};
use agent::sim::{Entry, HostId, Simulation, What};
use agent::wire::Version;

const H1: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 21);
const H2: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 23);

fn secs(value: f64) -> Duration {
    Duration::from_secs_f64(value)
}

/// The seed's instance on haproxy1 (100, MASTER) or haproxy2 (99, BACKUP), read from the seed's own files.
fn seed(first: bool) -> Settings {
    let file = if first {
        "keepalived-haproxy1.conf"
    } else {
        "keepalived-haproxy2.conf"
    };
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/seed")
        .join(file);
    let loaded = config::load(&path, Options { strict: true }).unwrap();
    loaded.config.instances[0].settings(None).unwrap()
}

struct Pair {
    sim: Simulation,
    h1: HostId,
    h2: HostId,
}

fn pair(h1: Settings, h2: Settings) -> Pair {
    let mut sim = Simulation::new();
    let h1 = sim.add_host("haproxy1", h1);
    let h2 = sim.add_host("haproxy2", h2);
    Pair { sim, h1, h2 }
}

/// Both start at 0; haproxy1's shorter Master_Down_Interval (3.609375 s) makes it master first.
fn seed_pair_settled() -> Pair {
    let mut p = pair(seed(true), seed(false));
    p.sim.start(p.h1);
    p.sim.start(p.h2);
    p.sim.run_until(secs(10.0));
    assert_eq!(p.sim.state(p.h1), State::Master);
    assert_eq!(p.sim.state(p.h2), State::Backup);
    p
}

/// When `host` logged `text` (a substring of a log line) at or after `since`.
fn logged_at(sim: &Simulation, host: &str, text: &str, since: Duration) -> Duration {
    find(sim, since, |entry| {
        entry.host == host && matches!(&entry.what, What::Log { line, .. } if line.contains(text))
    })
    .unwrap_or_else(|| panic!("{host} never logged {text:?} after {since:?}"))
}

fn find(sim: &Simulation, since: Duration, predicate: impl Fn(&Entry) -> bool) -> Option<Duration> {
    sim.timeline()
        .iter()
        .find(|entry| entry.at >= since && predicate(entry))
        .map(|entry| entry.at)
}

/// The last advert `host` sent before `before`.
fn last_advert(sim: &Simulation, host: &str, before: Duration) -> Duration {
    sim.timeline()
        .iter()
        .rev()
        .find(|entry| entry.at <= before && entry.host == host && matches!(entry.what, What::Sent { .. }))
        .map(|entry| entry.at)
        .expect("an advert was sent")
}

fn everything(_: &Entry) -> bool {
    true
}

/// Lines a keepalived started without `-D` would print.
fn plain_log(entry: &Entry) -> bool {
    matches!(entry.what, What::Log { detail: false, .. })
}

#[test]
fn startup_state_master_below_255_waits_its_master_down_interval() {
    let mut p = pair(seed(true), seed(false));
    p.sim.start(p.h1);
    p.sim.start(p.h2);
    p.sim.run_until(secs(5.0));
    // 3 + (256 - 100) / 256 = 3.609375 s: `state MASTER` does not shorten it.
    assert_eq!(
        logged_at(&p.sim, "haproxy1", "Entering MASTER STATE", Duration::ZERO),
        secs(3.609375)
    );
    assert_eq!(p.sim.state(p.h2), State::Backup);
    assert!(p.sim.holds_addresses(p.h1) && !p.sim.holds_addresses(p.h2));
    insta::assert_snapshot!(p.sim.render_since(Duration::ZERO, everything));
}

#[test]
fn seed_haproxy1_comes_back_and_preempts() {
    let mut p = seed_pair_settled();
    p.sim.power_off(p.h1);
    p.sim.run_until(secs(20.5));
    assert_eq!(p.sim.state(p.h2), State::Master);
    let back = p.sim.now();
    p.sim.start(p.h1);
    p.sim.run_for(secs(6.0));

    // haproxy1 waits its own Master_Down_Interval, discarding haproxy2's weaker adverts, then preempts.
    let master = logged_at(&p.sim, "haproxy1", "Entering MASTER STATE", back);
    assert_eq!(master - back, secs(3.609375));
    let stepped_down = logged_at(&p.sim, "haproxy2", "Entering BACKUP STATE", back);
    assert_eq!(stepped_down, master);
    assert!(p.sim.holds_addresses(p.h1) && !p.sim.holds_addresses(p.h2));

    // The seed's keepalived log, line for line (syslog prefixes stripped).
    let seed_log = include_str!("fixtures/seed/seed-timeline-haproxy1-return.log");
    let expected: Vec<String> = seed_log
        .lines()
        .map(|line| {
            let host = line.split_whitespace().nth(3).unwrap();
            let message = line.split_once("]: ").unwrap().1;
            format!("{host} {message}")
        })
        .collect();
    let ours: Vec<String> = p
        .sim
        .timeline()
        .iter()
        .filter(|entry| entry.at >= back && plain_log(entry))
        .map(|entry| match &entry.what {
            What::Log { line, .. } => format!("{} {line}", entry.host),
            _ => unreachable!(),
        })
        .collect();
    assert_eq!(ours, expected);
    insta::assert_snapshot!(p.sim.render_since(back, everything));
}

#[test]
fn master_crash_backup_takes_over_one_master_down_interval_after_the_last_advert() {
    let mut p = seed_pair_settled();
    p.sim.crash(p.h1);
    let crash = p.sim.now();
    p.sim.run_for(secs(5.0));
    let last = last_advert(&p.sim, "haproxy1", crash);
    let master = logged_at(&p.sim, "haproxy2", "Entering MASTER STATE", crash);
    // 3 + (256 - 99) / 256 = 3.61328125 s after the last advert heard.
    assert_eq!(master - last, secs(3.61328125));
    // A crashed agent leaves its addresses behind: both hosts hold the VIP (keepalived issue #672).
    assert!(p.sim.holds_addresses(p.h1) && p.sim.holds_addresses(p.h2));
    insta::assert_snapshot!(p.sim.render_since(crash, everything));
}

#[test]
fn graceful_stop_sends_priority_zero_and_backup_takes_over_after_skew_time() {
    let mut p = seed_pair_settled();
    p.sim.stop(p.h1);
    let stop = p.sim.now();
    p.sim.run_for(secs(2.0));
    let master = logged_at(&p.sim, "haproxy2", "Entering MASTER STATE", stop);
    assert_eq!(master - stop, secs(0.61328125));
    assert_eq!(master - stop, skew_time(99, secs(1.0)));
    assert!(!p.sim.holds_addresses(p.h1) && p.sim.holds_addresses(p.h2));
    insta::assert_snapshot!(p.sim.render_since(stop, everything));
}

#[test]
fn split_brain_both_masters_then_heal_the_lower_steps_down_within_one_interval() {
    let mut p = seed_pair_settled();
    p.sim.partition(p.h1, p.h2);
    let cut = p.sim.now();
    p.sim.run_for(secs(5.0));
    assert_eq!(p.sim.state(p.h1), State::Master);
    assert_eq!(p.sim.state(p.h2), State::Master);
    p.sim.heal();
    let heal = p.sim.now();
    p.sim.run_for(secs(3.0));
    let stepped_down = logged_at(&p.sim, "haproxy2", "Entering BACKUP STATE", heal);
    assert!(
        stepped_down - heal <= secs(1.0),
        "one master within one advert interval"
    );
    // haproxy2's advert reached haproxy1 first: haproxy1 answered at once instead of waiting for its timer.
    let forced = logged_at(
        &p.sim,
        "haproxy1",
        "with lower priority 99, ours 100, forcing new election",
        heal,
    );
    assert_eq!(forced, stepped_down);
    assert_eq!(p.sim.state(p.h1), State::Master);
    assert!(p.sim.holds_addresses(p.h1) && !p.sim.holds_addresses(p.h2));
    insta::assert_snapshot!(p.sim.render_since(cut, everything));
}

#[test]
fn equal_priorities_the_higher_address_wins() {
    let mut h1 = seed(true);
    h1.initial_state = InitialState::Backup;
    let mut h2 = seed(false);
    h2.priority = 100;
    // With some latency both time out before hearing the other, as on a real segment.
    let mut sim = Simulation::new().with_latency(Duration::from_micros(50));
    let a = sim.add_host("haproxy1", h1);
    let b = sim.add_host("haproxy2", h2);
    sim.start(a);
    sim.start(b);
    sim.run_until(secs(8.0));
    assert_eq!(sim.state(a), State::Backup);
    assert_eq!(sim.state(b), State::Master);
    logged_at(
        &sim,
        "haproxy1",
        "with same priority 100 but higher IP address than ours",
        Duration::ZERO,
    );
    insta::assert_snapshot!(sim.render_since(Duration::ZERO, everything));
}

#[test]
fn nopreempt_returning_higher_priority_stays_backup() {
    let mut h1 = seed(true);
    h1.initial_state = InitialState::Backup;
    h1.preempt = false;
    let mut p = pair(h1, seed(false));
    p.sim.start(p.h1);
    p.sim.start(p.h2);
    p.sim.run_until(secs(10.0));
    p.sim.power_off(p.h1);
    p.sim.run_until(secs(20.5));
    let back = p.sim.now();
    p.sim.start(p.h1);
    p.sim.run_for(secs(30.0));
    assert_eq!(p.sim.state(p.h1), State::Backup);
    assert_eq!(p.sim.state(p.h2), State::Master);
    assert!(find(
        &p.sim,
        back,
        |e| matches!(&e.what, What::Log { line, .. } if line.contains("discarding"))
    )
    .is_none());
    insta::assert_snapshot!(p.sim.render_since(back, plain_log));
}

#[test]
fn preempt_delay_postpones_the_takeover() {
    let mut h1 = seed(true);
    h1.initial_state = InitialState::Backup;
    h1.preempt_delay = secs(5.0);
    let mut p = pair(h1, seed(false));
    p.sim.start(p.h2);
    p.sim.run_until(secs(10.0));
    let back = p.sim.now();
    p.sim.start(p.h1);
    p.sim.run_for(secs(15.0));
    let master = logged_at(&p.sim, "haproxy1", "Entering MASTER STATE", back);
    let first_heard = logged_at(&p.sim, "haproxy1", "start preempt delay (5.000000)", back);
    // Adverts heard during the delay still reset the timer; afterwards they are discarded and the timer runs out.
    assert!(
        master - first_heard >= secs(5.0),
        "took over {:?} after the delay started",
        master - first_heard
    );
    assert!(master - first_heard <= secs(5.0 + 3.609375));
    insta::assert_snapshot!(p.sim.render_since(back, everything));
}

#[test]
fn vrrp_v3_at_a_tenth_of_a_second_is_ten_times_faster() {
    let v3 = |first: bool| {
        let mut settings = seed(first);
        settings.version = Version::V3;
        settings.authentication = Authentication::None;
        settings.peers.clear();
        settings.advert_interval = secs(0.1);
        settings
    };
    let mut p = pair(v3(true), v3(false));
    p.sim.start(p.h1);
    p.sim.start(p.h2);
    p.sim.run_until(secs(1.0));
    assert_eq!(
        logged_at(&p.sim, "haproxy1", "Entering MASTER STATE", Duration::ZERO),
        secs(0.3609375)
    );
    p.sim.crash(p.h1);
    let crash = p.sim.now();
    p.sim.run_for(secs(1.0));
    let last = last_advert(&p.sim, "haproxy1", crash);
    let takeover = logged_at(&p.sim, "haproxy2", "Entering MASTER STATE", crash);
    assert_eq!(takeover - last, secs(0.361328125));
    p.sim.power_off(p.h1);
    p.sim.run_for(secs(0.05));
    let back = p.sim.now();
    p.sim.start(p.h1);
    p.sim.run_for(secs(1.0));
    assert_eq!(
        logged_at(&p.sim, "haproxy1", "Entering MASTER STATE", back) - back,
        secs(0.3609375)
    );
    assert_eq!(p.sim.state(p.h2), State::Backup);
    insta::assert_snapshot!(p.sim.render_since(crash, plain_log));
}

#[test]
fn v3_backup_learns_the_masters_interval() {
    let mut h1 = seed(true);
    h1.version = Version::V3;
    h1.authentication = Authentication::None;
    h1.advert_interval = secs(0.5);
    let mut h2 = h1.clone();
    h2.priority = 99;
    h2.source = H2;
    h2.peers = vec![H1];
    h2.advert_interval = secs(1.0);
    let mut p = pair(h1, h2);
    p.sim.start(p.h1);
    p.sim.start(p.h2);
    p.sim.run_until(secs(5.0));
    assert_eq!(p.sim.machine(p.h2).master_adver_interval(), secs(0.5));
    // Master_Down_Interval now follows 0.5 s: 3 * 0.5 + 157/256 * 0.5.
    assert_eq!(p.sim.machine(p.h2).master_down_interval(), secs(1.5 + 0.306640625));
    logged_at(
        &p.sim,
        "haproxy2",
        "advertisement interval updated from 1000ms to 500ms by master",
        Duration::ZERO,
    );
}

#[test]
fn fault_on_the_master_gives_up_with_priority_zero_and_returns_as_backup() {
    let mut p = seed_pair_settled();
    p.sim.set_fault(p.h1, true);
    let fault = p.sim.now();
    p.sim.run_for(secs(2.0));
    assert_eq!(p.sim.state(p.h1), State::Fault);
    assert_eq!(
        logged_at(&p.sim, "haproxy2", "Entering MASTER STATE", fault) - fault,
        secs(0.61328125)
    );
    p.sim.set_fault(p.h1, false);
    let cleared = p.sim.now();
    p.sim.run_for(secs(5.0));
    assert_eq!(
        logged_at(&p.sim, "haproxy1", "Entering MASTER STATE", cleared) - cleared,
        secs(3.609375)
    );
    insta::assert_snapshot!(p.sim.render_since(fault, plain_log));
}

#[test]
fn a_weight_dropping_the_master_below_the_backup_hands_over() {
    let mut p = seed_pair_settled();
    p.sim.set_priority_offset(p.h1, -4);
    let dropped = p.sim.now();
    p.sim.run_for(secs(5.0));
    // The master advertises 96 at once; haproxy2 (99, preempting) discards it and takes over on its timer.
    assert_eq!(p.sim.state(p.h2), State::Master);
    assert_eq!(p.sim.state(p.h1), State::Backup);
    insta::assert_snapshot!(p.sim.render_since(dropped, plain_log));
}
