//! The same situations keepalived 2.2.7 was put in (tests/fixtures/keepalived/discards, recorded with -D), with
//! the same configuration files, replayed in virtual time: every line keepalived wrote about its instance, we
//! write too, to the letter.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use agent::config::{self, Options};
use agent::sim::{Simulation, What};

fn case_dir(case: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/keepalived/discards")
        .join(case)
}

/// keepalived's lines about its instance, without the time prefix, as a set.
fn keepalived_lines(case: &str, host: &str) -> BTreeSet<String> {
    let log = std::fs::read_to_string(case_dir(case).join(format!("{host}.log"))).unwrap();
    log.lines()
        .filter_map(|line| line.split_once(" 2026: ").map(|(_, text)| text.to_string()))
        .filter(|text| text.starts_with("(Instance1)"))
        .collect()
}

/// Runs host a (10.0.0.21) and b (10.0.0.23) from the case's files: b first, a after `a_after`, then both stop.
fn our_lines(case: &str, a_after: Duration) -> [BTreeSet<String>; 2] {
    let mut sim = Simulation::new();
    let mut hosts = Vec::new();
    for (host, address) in [("a", Ipv4Addr::new(10, 0, 0, 21)), ("b", Ipv4Addr::new(10, 0, 0, 23))] {
        let loaded = config::load(&case_dir(case).join(format!("{host}.conf")), Options::default()).unwrap();
        let settings = loaded.config.instances[0].settings(Some(address)).unwrap();
        hosts.push(sim.add_host(host, settings));
    }
    sim.start(hosts[1]);
    sim.run_for(a_after);
    sim.start(hosts[0]);
    sim.run_for(Duration::from_secs(12));
    sim.stop(hosts[0]);
    sim.run_for(Duration::from_secs(2));
    sim.stop(hosts[1]);
    let lines = |host: &str| -> BTreeSet<String> {
        sim.timeline()
            .iter()
            .filter(|entry| entry.host == host)
            .filter_map(|entry| match &entry.what {
                What::Log { line, .. } => Some(line.clone()),
                _ => None,
            })
            .collect()
    };
    [lines("a"), lines("b")]
}

fn assert_same_lines(case: &str, a_after: Duration) {
    let ours = our_lines(case, a_after);
    for (index, host) in ["a", "b"].into_iter().enumerate() {
        let theirs = keepalived_lines(case, host);
        let missing: Vec<&String> = theirs.difference(&ours[index]).collect();
        let extra: Vec<&String> = ours[index].difference(&theirs).collect();
        assert!(
            missing.is_empty() && extra.is_empty(),
            "{case} {host}: missing {missing:#?}\nextra {extra:#?}"
        );
    }
}

#[test]
fn wrong_password() {
    assert_same_lines("01-wrong-password", Duration::from_secs(5));
}

#[test]
fn password_against_no_authentication() {
    assert_same_lines("02-auth-vs-none", Duration::from_secs(5));
}

#[test]
fn v2_interval_mismatch() {
    assert_same_lines("03-advert-int-mismatch", Duration::from_secs(5));
}

#[test]
fn version_mismatch() {
    assert_same_lines("04-version-mismatch", Duration::from_secs(5));
}

#[test]
fn address_count_mismatch() {
    assert_same_lines("06a-vip-count-mismatch", Duration::from_secs(5));
}

#[test]
fn address_list_mismatch() {
    assert_same_lines("06b-vip-address-mismatch", Duration::from_secs(5));
}

#[test]
fn preempt_delay() {
    assert_same_lines("12-preempt-delay", Duration::from_secs(5));
}
