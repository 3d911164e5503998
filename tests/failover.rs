//! The seed's failover, proven in the lab: real namespaces, our VRRP agent running the seed's keepalived.conf
//! files, faults as production has them, and what the kernels, the wire, the agents and the client saw, merged into
//! one timeline that is asserted in code (bounds from the protocol's formulas) and kept as an insta snapshot.
//!
//! Each scenario builds its own lab under a unique name. They spend their time waiting on protocol timers, so the
//! runner (libtest-mimic) starts all of them at once unless `--test-threads` says otherwise.

use std::time::Duration;

use halab_tests::failover::{eventually, is_state, seed_config, since, Scenario, Vrrp, VIP};
use lab::events::monotonic_ns;
use lab::EventKind;

fn main() {
    let scenarios: &[(&str, fn())] = &[
        ("start_elects_haproxy1", start_elects_haproxy1),
        ("crash_of_the_master_agent", crash_of_the_master_agent),
        ("graceful_stop_of_the_master_agent", graceful_stop_of_the_master_agent),
        ("haproxy1_returns_and_preempts", haproxy1_returns_and_preempts),
        ("reboot_of_haproxy1_as_in_the_seed", reboot_of_haproxy1_as_in_the_seed),
        ("partition_and_heal", partition_and_heal),
        (
            "nopreempt_keeps_the_vip_on_haproxy2",
            nopreempt_keeps_the_vip_on_haproxy2,
        ),
        (
            "freeze_longer_than_master_down_interval",
            freeze_longer_than_master_down_interval,
        ),
        ("link_down_with_track_interface", link_down_with_track_interface),
        ("vrrpv3_at_a_tenth_of_a_second", vrrpv3_at_a_tenth_of_a_second),
    ];
    halab_tests::run_tests(scenarios, scenarios.len());
}

fn snapshot(name: &str, scenario: &Scenario) {
    let text = scenario.snapshot();
    insta::with_settings!({ snapshot_path => "snapshots", prepend_module_to_snapshot => false }, {
        insta::assert_snapshot!(format!("failover__{name}"), text);
    });
}

/// haproxy1 (priority 100) is elected after its Master_Down_Interval and holds the VIP alone.
fn elect_haproxy1(scenario: &Scenario) -> u64 {
    let master_down = scenario.vrrp.master_down(100);
    let master = scenario.wait_state("haproxy1", "MASTER", 0, master_down + scenario.vrrp.slack() * 4);
    scenario.wait_vip("haproxy1", 0, scenario.vrrp.slack());
    master.at_ns
}

/// The gratuitous ARPs' repeat: keepalived's garp_master_delay, 5 s after becoming master, whatever the interval.
const GARP_REPEAT: Duration = Duration::from_secs(5);

/// haproxy1 elected and done announcing itself (its second GARP burst went out), so a fault that follows cannot
/// race the takeover's own events. Returns when haproxy1 became master.
fn elect_haproxy1_and_settle(scenario: &Scenario) -> u64 {
    let master = elect_haproxy1(scenario);
    scenario.garp_seen_within(
        "haproxy1",
        master + GARP_REPEAT.as_nanos() as u64,
        GARP_REPEAT + scenario.vrrp.slack(),
    );
    scenario.mid_phase("10.0.0.21");
    master
}

const VIP_PROBES: &[&str] = &["vip-tcp", "vip-ping"];

/// After `host` took the VIP: its GARP burst went out and the client answers again, so the next fault starts from
/// a quiet lab.
fn takeover_settles(scenario: &Scenario, host: &str, after_ns: u64) {
    scenario.garp_seen(host, after_ns);
    scenario.client_settles(VIP_PROBES);
    let address = if host == "haproxy1" { "10.0.0.21" } else { "10.0.0.23" };
    scenario.mid_phase(address);
}

/// `elapsed` matches the protocol's `figure`: not early (2 ms allowed for two threads reading the clock), and at
/// most the scenario's slack late.
/// When the last advert from `address` crossed the wire before `before_ns`.
fn last_advert(scenario: &Scenario, address: &str, before_ns: u64) -> u64 {
    let adverts = scenario.adverts(address, 0, before_ns);
    adverts.last().unwrap_or_else(|| panic!("no advert from {address}")).0
}

// 1 -----------------------------------------------------------------------------------------------------------

fn start_elects_haproxy1() {
    let scenario = Scenario::seed("fo1");
    // The agent's own stamp of its start (the lab's "started" event is written after fork returns, which on a busy
    // machine can be later than the agent's first instructions).
    let started = scenario
        .wait_state("haproxy1", "BACKUP", 0, Duration::from_secs(1))
        .at_ns;
    let master = elect_haproxy1(&scenario);
    let master_down = scenario.vrrp.master_down(100);
    scenario.on_time(
        "haproxy1's election after BACKUP (init)",
        since(started, master),
        master_down,
    );
    assert!(scenario.holds_vip("haproxy1") && !scenario.holds_vip("haproxy2"));
    scenario.garp_seen("haproxy1", master);
    // The client reaches the VIP, on its TCP port and by ping.
    for probe in ["vip-tcp", "vip-ping"] {
        scenario.wait_after(
            master,
            Duration::from_secs(2),
            &format!("probe {probe} answered"),
            |e| matches!(&e.kind, EventKind::ProbeUp { probe: p, .. } if p == probe),
        );
    }
    scenario.client_settles(VIP_PROBES);
    snapshot("1_start", &scenario);
    scenario.finish();
}

// 2 -----------------------------------------------------------------------------------------------------------

fn crash_of_the_master_agent() {
    let mut scenario = Scenario::seed("fo2");
    elect_haproxy1_and_settle(&scenario);
    let crash = scenario.fault("haproxy1", "crash vrrpd");
    let master_down = scenario.vrrp.master_down(99);
    let master = scenario.wait_state("haproxy2", "MASTER", crash, master_down + scenario.vrrp.slack());
    // RFC 3768 6.4.2: the backup takes over Master_Down_Interval after the last advertisement it heard.
    let last = last_advert(&scenario, "10.0.0.21", crash);
    scenario.on_time(
        "haproxy2's takeover after the last advert",
        since(last, master.at_ns),
        master_down,
    );
    scenario.wait_vip("haproxy2", crash, scenario.vrrp.slack());
    scenario.garp_seen("haproxy2", crash);
    // The crashed agent could not release the VIP: haproxy1's kernel still has it, as with keepalived.
    assert!(scenario.holds_vip("haproxy1"));
    // The client's outage, if any: within Master_Down_Interval of the crash.
    std::thread::sleep(Duration::from_millis(300));
    for (start, length) in scenario.outages("vip-tcp", crash) {
        assert!(since(crash, start) + length <= master_down + scenario.vrrp.slack());
        println!("vip-tcp outage after the crash: {length:?}");
    }
    scenario.client_settles(VIP_PROBES);
    snapshot("2_crash", &scenario);
    scenario.finish();
}

// 3 -----------------------------------------------------------------------------------------------------------

fn graceful_stop_of_the_master_agent() {
    let mut scenario = Scenario::seed("fo3");
    elect_haproxy1_and_settle(&scenario);
    let stop = scenario.fault("haproxy1", "stop vrrpd");
    let skew = scenario.vrrp.skew(99);
    let master = scenario.wait_state("haproxy2", "MASTER", stop, skew + scenario.vrrp.slack());
    // The stopping master sends priority 0; the backup then waits only Skew_Time.
    let goodbye = scenario
        .adverts("10.0.0.21", stop, master.at_ns)
        .into_iter()
        .find(|(_, priority)| *priority == 0)
        .expect("haproxy1 sent priority 0")
        .0;
    scenario.on_time(
        "haproxy2's takeover after priority 0",
        since(goodbye, master.at_ns),
        skew,
    );
    scenario.wait_vip("haproxy2", stop, scenario.vrrp.slack());
    assert!(!scenario.holds_vip("haproxy1"), "a stopped agent releases the VIP");
    scenario.garp_seen("haproxy2", stop);
    scenario.client_settles(VIP_PROBES);
    snapshot("3_graceful_stop", &scenario);
    scenario.finish();
}

// 4 -----------------------------------------------------------------------------------------------------------

/// How long both kernels had the VIP at once, from the kernel monitors' add/remove events after `after_ns`.
fn vip_overlap(scenario: &Scenario, after_ns: u64) -> Duration {
    let mut holding = [false, false];
    let mut both_since = None;
    let mut overlap = Duration::ZERO;
    for event in scenario.lab.timeline().events().iter().filter(|e| e.at_ns >= after_ns) {
        let host = match event.host.as_deref() {
            Some("haproxy1") => 0,
            Some("haproxy2") => 1,
            _ => continue,
        };
        match &event.kind {
            EventKind::AddressAdded { address, .. } if address.starts_with(VIP) => holding[host] = true,
            EventKind::AddressRemoved { address, .. } if address.starts_with(VIP) => holding[host] = false,
            _ => continue,
        }
        match (holding == [true, true], both_since) {
            (true, None) => both_since = Some(event.at_ns),
            (false, Some(start)) => {
                overlap += since(start, event.at_ns);
                both_since = None;
            }
            _ => {}
        }
    }
    assert!(both_since.is_none(), "the VIP stayed on both hosts");
    overlap
}

fn haproxy1_returns_and_preempts() {
    let mut scenario = Scenario::seed("fo4");
    elect_haproxy1_and_settle(&scenario);
    let stop = scenario.fault("haproxy1", "stop vrrpd");
    scenario.wait_vip("haproxy2", stop, scenario.vrrp.skew(99) + scenario.vrrp.slack());
    takeover_settles(&scenario, "haproxy2", stop);
    let start = scenario.fault("haproxy1", "start vrrpd");
    let master_down = scenario.vrrp.master_down(100);
    let master = scenario.wait_state("haproxy1", "MASTER", start, master_down + scenario.vrrp.slack());
    scenario.on_time("haproxy1's return", since(start, master.at_ns), master_down);
    scenario.wait_state("haproxy2", "BACKUP", master.at_ns, scenario.vrrp.slack());
    assert!(eventually(scenario.vrrp.slack(), || scenario.holds_vip("haproxy1")
        && !scenario.holds_vip("haproxy2")));

    scenario.wait_line("haproxy1", "Entering MASTER STATE", start, scenario.vrrp.slack());
    scenario.wait_line("haproxy2", "Entering BACKUP STATE", master.at_ns, scenario.vrrp.slack());
    // The seed's sequence (../shared/fixtures/seed-timeline-haproxy1-return.log), line for line. How many adverts
    // haproxy1 discards depends on where haproxy2's advert phase falls in its 3.609 s wait: 3 (the seed's) or 4.
    let haproxy1 = scenario.agent_lines("haproxy1", start);
    let discard = "(Instance1) received lower priority (99) advert from 10.0.0.23 - discarding";
    let discards = haproxy1.iter().filter(|l| *l == discard).count();
    assert!((3..=4).contains(&discards), "{haproxy1:#?}");
    let mut expected = vec!["(Instance1) Entering BACKUP STATE (init)"];
    expected.extend(std::iter::repeat_n(discard, discards));
    expected.push("(Instance1) Entering MASTER STATE");
    let seen: Vec<&str> = haproxy1
        .iter()
        .map(String::as_str)
        .filter(|l| expected.contains(l))
        .collect();
    assert_eq!(seen, expected);
    let haproxy2 = scenario.agent_lines("haproxy2", master.at_ns);
    let step_down = [
        "(Instance1) Master received advert from 10.0.0.21 with higher priority 100, ours 99",
        "(Instance1) Entering BACKUP STATE",
    ];
    assert_eq!(&haproxy2[..2], &step_down, "{haproxy2:#?}");

    // Never on both hosts longer than one advert takes to cross the lab: the new master adds the VIP right after
    // its advert, the old one removes it when that advert arrives.
    let overlap = vip_overlap(&scenario, start);
    assert!(
        overlap < Duration::from_millis(50),
        "the VIP was on both hosts for {overlap:?}"
    );
    println!("VIP on both hosts during preemption: {overlap:?}");
    scenario.client_settles(VIP_PROBES);
    snapshot("4_return", &scenario);
    scenario.finish();
}

// 5 -----------------------------------------------------------------------------------------------------------

fn reboot_of_haproxy1_as_in_the_seed() {
    let mut scenario = Scenario::seed("fo5");
    let elected = elect_haproxy1_and_settle(&scenario);
    assert!(
        !scenario.outages("vip-ping", elected).is_empty() || scenario.outages("vip-ping", 0).len() == 1,
        "the client pings the VIP"
    );
    assert!(
        scenario.outages("haproxy1-ping", 0).is_empty(),
        "haproxy1's own address answers from the start"
    );
    // A pause longer than Master_Down_Interval plus GARP's 5 s repeat, so haproxy2 is master well before haproxy1
    // comes back, as in the seed. haproxy2 takes over 3.02 s after this phase-pinned fault; a 6.6 s pause brings
    // haproxy1 back 0.4 s before one of haproxy2's adverts, as the faults are pinned.
    let reboot = scenario.fault("haproxy1", "reboot 6.6");
    let master_down = scenario.vrrp.master_down(99);
    let haproxy2 = scenario.wait_state("haproxy2", "MASTER", reboot, master_down + scenario.vrrp.slack());
    let back = scenario.wait_after(reboot, Duration::from_secs(2), "haproxy1's agent restarted", |e| {
        e.host.as_deref() == Some("haproxy1")
            && matches!(&e.kind, EventKind::ServiceStarted { service, .. } if service == "vrrpd")
    });
    assert!(haproxy2.at_ns < back.at_ns);
    let master_down_1 = scenario.vrrp.master_down(100);
    let haproxy1 = scenario.wait_state("haproxy1", "MASTER", back.at_ns, master_down_1 + scenario.vrrp.slack());
    scenario.wait_vip("haproxy1", back.at_ns, scenario.vrrp.slack());
    assert!(eventually(scenario.vrrp.slack(), || !scenario.holds_vip("haproxy2")));
    std::thread::sleep(Duration::from_millis(300));

    // The VIP answered throughout but for the failover gap; haproxy1's own address went away with it and came back.
    let vip = scenario.outages("vip-ping", reboot);
    assert!(
        !vip.is_empty(),
        "the VIP should have stopped answering while nobody held it"
    );
    for (start, length) in &vip {
        assert!(since(reboot, *start) + *length <= master_down + scenario.vrrp.slack());
        println!("VIP outage: {length:?}");
    }
    let own = scenario.outages("haproxy1-ping", reboot);
    assert_eq!(own.len(), 1, "{own:?}");
    // Its address was gone for the pause, give or take one probe attempt at either end.
    assert!(
        own[0].1 >= Duration::from_millis(6000),
        "haproxy1 answered during its reboot: {own:?}"
    );
    assert!(haproxy1.at_ns > back.at_ns);
    scenario.client_settles(&["vip-tcp", "vip-ping", "haproxy1-ping"]);
    snapshot("5_reboot", &scenario);
    scenario.finish();
}

// 6 -----------------------------------------------------------------------------------------------------------

fn partition_and_heal() {
    let mut scenario = Scenario::seed("fo6");
    elect_haproxy1_and_settle(&scenario);
    let cut = scenario.fault("haproxy1", "partition haproxy2");
    let master_down = scenario.vrrp.master_down(99);
    scenario.wait_state("haproxy2", "MASTER", cut, master_down + scenario.vrrp.slack());
    // Neither hears the other: both are master and both hold the VIP, as the protocol says.
    assert!(eventually(scenario.vrrp.slack(), || scenario.holds_vip("haproxy1")
        && scenario.holds_vip("haproxy2")));
    std::thread::sleep(Duration::from_millis(500));
    let heal = scenario.fault("haproxy1", "heal");
    let interval = scenario.vrrp.interval;
    let backup = scenario.wait_state("haproxy2", "BACKUP", heal, interval + scenario.vrrp.slack());
    assert!(since(heal, backup.at_ns) <= interval + scenario.vrrp.slack());
    let step_down = "(Instance1) Master received advert from 10.0.0.21 with higher priority 100, ours 99";
    scenario.wait_line("haproxy2", step_down, heal, scenario.vrrp.slack());
    assert!(eventually(scenario.vrrp.slack(), || scenario.holds_vip("haproxy1")
        && !scenario.holds_vip("haproxy2")));
    scenario.client_settles(VIP_PROBES);
    snapshot("6_partition", &scenario);
    scenario.finish();
}

// 7 -----------------------------------------------------------------------------------------------------------

fn nopreempt_keeps_the_vip_on_haproxy2() {
    let nopreempt = |text: String| {
        text.replace("state MASTER", "state BACKUP")
            .replace("advert_int 1", "advert_int 1\n    nopreempt")
    };
    let mut scenario = Scenario::with_configs(
        "fo7",
        Vrrp::SEED,
        &seed_config("haproxy1", nopreempt),
        &seed_config("haproxy2", nopreempt),
    );
    elect_haproxy1_and_settle(&scenario);
    let stop = scenario.fault("haproxy1", "stop vrrpd");
    scenario.wait_vip("haproxy2", stop, scenario.vrrp.skew(99) + scenario.vrrp.slack());
    takeover_settles(&scenario, "haproxy2", stop);
    let start = scenario.fault("haproxy1", "start vrrpd");
    // Past the moment a preempting haproxy1 would have taken over, haproxy2 still holds the VIP.
    // (and past haproxy2's own GARP repeat, which then always shows in the snapshot).
    std::thread::sleep(scenario.vrrp.master_down(100) + Duration::from_secs(2));
    assert!(scenario.holds_vip("haproxy2") && !scenario.holds_vip("haproxy1"));
    let took_over = scenario
        .lab
        .timeline()
        .find(|e| e.at_ns >= start && is_state(e, "haproxy1", "MASTER"))
        .count();
    assert_eq!(took_over, 0);
    scenario.client_settles(VIP_PROBES);
    snapshot("7_nopreempt", &scenario);
    scenario.finish();
}

// 8 -----------------------------------------------------------------------------------------------------------

fn freeze_longer_than_master_down_interval() {
    let mut scenario = Scenario::seed("fo8");
    elect_haproxy1_and_settle(&scenario);
    let freeze = scenario.fault("haproxy1", "freeze vrrpd");
    let master_down = scenario.vrrp.master_down(99);
    scenario.wait_state("haproxy2", "MASTER", freeze, master_down + scenario.vrrp.slack());
    // Thawed past haproxy1's pending timers, so it wakes up to them all at once, and half-way between two of
    // haproxy2's adverts, so which comes first is not a matter of luck.
    std::thread::sleep(Duration::from_millis(2500));
    let thaw = scenario.fault("haproxy1", "thaw vrrpd");
    // haproxy1 wakes up as master with the higher priority: haproxy2 steps down at its first advert.
    scenario.wait_state(
        "haproxy2",
        "BACKUP",
        thaw,
        scenario.vrrp.interval + scenario.vrrp.slack(),
    );
    std::thread::sleep(scenario.vrrp.interval * 2);
    assert!(scenario.holds_vip("haproxy1") && !scenario.holds_vip("haproxy2"));
    let masters_after = scenario
        .lab
        .timeline()
        .find(|e| e.at_ns > thaw && (is_state(e, "haproxy1", "BACKUP") || is_state(e, "haproxy2", "MASTER")))
        .count();
    assert_eq!(masters_after, 0, "a single master after the thaw");
    scenario.client_settles(VIP_PROBES);
    snapshot("8_freeze", &scenario);
    scenario.finish();
}

// 9 -----------------------------------------------------------------------------------------------------------

fn link_down_with_track_interface() {
    let tracking = |text: String| {
        text.replace(
            "advert_int 1",
            "advert_int 1\n    track_interface {\n        eth0\n    }",
        )
    };
    let mut scenario = Scenario::with_configs(
        "fo9",
        Vrrp::SEED,
        &seed_config("haproxy1", tracking),
        &seed_config("haproxy2", |t| t),
    );
    elect_haproxy1_and_settle(&scenario);
    let down = scenario.fault("haproxy1", "link-down eth0");
    scenario.wait_state("haproxy1", "FAULT", down, scenario.vrrp.slack());
    let master_down = scenario.vrrp.master_down(99);
    scenario.wait_state("haproxy2", "MASTER", down, master_down + scenario.vrrp.slack());
    scenario.wait_vip("haproxy2", down, scenario.vrrp.slack());
    assert!(!scenario.holds_vip("haproxy1"), "an agent in FAULT releases the VIP");
    scenario.garp_seen("haproxy2", down);
    scenario.client_settles(VIP_PROBES);
    snapshot("9_link_down", &scenario);
    scenario.finish();
}

// 10 ----------------------------------------------------------------------------------------------------------

fn vrrpv3_at_a_tenth_of_a_second() {
    let v3 = |text: String| {
        let start = text.find("    authentication {").unwrap();
        let end = start + text[start..].find("}\n").unwrap() + 2;
        format!("{}{}", &text[..start], &text[end..])
            .replace("advert_int 1", "advert_int 0.1")
            .replace("vrrp_instance Instance1 {", "vrrp_instance Instance1 {\n    version 3")
    };
    let vrrp = Vrrp {
        version: 3,
        interval: Duration::from_millis(100),
    };
    let mut scenario = Scenario::with_configs("fo10", vrrp, &seed_config("haproxy1", v3), &seed_config("haproxy2", v3));
    elect_haproxy1_and_settle(&scenario);
    let crash = scenario.fault("haproxy1", "crash vrrpd");
    let master_down = vrrp.master_down(99);
    let master = scenario.wait_state("haproxy2", "MASTER", crash, master_down + vrrp.slack());
    let last = last_advert(&scenario, "10.0.0.21", crash);
    scenario.on_time(
        "haproxy2's takeover after the last advert",
        since(last, master.at_ns),
        master_down,
    );
    takeover_settles(&scenario, "haproxy2", crash);
    // haproxy1 returns (its VIP is still in the kernel after the crash: the restarted agent removes it first).
    let start = scenario.fault("haproxy1", "start vrrpd");
    let master_down_1 = vrrp.master_down(100);
    let back = scenario.wait_state("haproxy1", "MASTER", start, master_down_1 + vrrp.slack());
    scenario.on_time("haproxy1's return", since(start, back.at_ns), master_down_1);
    scenario.wait_state("haproxy2", "BACKUP", back.at_ns, vrrp.slack());
    assert!(eventually(vrrp.slack(), || scenario.holds_vip("haproxy1")
        && !scenario.holds_vip("haproxy2")));
    std::thread::sleep(vrrp.interval * 3);
    // It advertises every tenth of a second again.
    let adverts = scenario.adverts("10.0.0.21", back.at_ns, monotonic_ns());
    assert!(adverts.len() >= 2, "{adverts:?}");
    scenario.client_settles(VIP_PROBES);
    snapshot("10_vrrpv3", &scenario);
    scenario.finish();
}
