//! A second real stack, with Debian's stock daemons as their packages install them: topologies/web-keepalived.toml,
//! two web servers running nginx and keepalived (configuration at /etc/keepalived/keepalived.conf, pid files in
//! /run, logs in /var/log/nginx, no path given anywhere), a VIP that follows nginx through a `vrrp_script`, and a
//! client probing it. Each test asserts with the protocol's own figures and keeps the timeline as a snapshot.
//!
//! These pass only because every host has its own /run, /tmp, /etc and /var: with one /run for the machine, the
//! second keepalived finds the first one's pid file and exits ("daemon is already running").

use std::time::Duration;

use halab_tests::failover::{since, Scenario, Vrrp};
use halab_tests::{unique_name, workspace_file};
use lab::events::monotonic_ns;
use lab::{EventKind, Topology};

const WWW: &str = "10.0.1.100";
const PROBES: &[&str] = &["www-http", "www-ping"];
/// The priorities in topologies/web/keepalived-web*.conf.
const MASTER_PRIORITY: u8 = 100;
const BACKUP_PRIORITY: u8 = 90;
/// keepalived's `vrrp_script chk_nginx`: run every second, failed after 2 failures, each given up to 1 s by curl.
const CHECK_FALL: Duration = Duration::from_secs(2 + 1);

fn main() {
    let tests: &[(&str, fn())] = &[
        ("1_both_keepalived_daemons_run_side_by_side", side_by_side),
        (
            "2_nginx_stop_moves_the_vip_and_start_brings_it_back",
            nginx_stop_and_start,
        ),
        ("3_crash_of_the_master_keepalived", crash_of_the_master),
        ("4_reboot_of_the_master", reboot_of_the_master),
        ("5_the_seeds_experiment_with_debians_keepalived", seed_with_keepalived),
    ];
    halab_tests::run_tests(tests, tests.len());
}

fn web(prefix: &str) -> Scenario {
    let topology = Topology::load(workspace_file("topologies/web-keepalived.toml"))
        .unwrap()
        .renamed(&unique_name(prefix))
        .unwrap();
    let mut scenario = Scenario::of(&topology, Vrrp::SEED, WWW, BACKUP_PRIORITY);
    scenario.only_vip_arps = true;
    // Starting nginx, then keepalived and its first check, takes 50-150 ms, more on a busy machine: "at once" is
    // anything within a quarter of a second.
    scenario.margin_floor = Duration::from_millis(250);
    scenario
}

/// `text`, a snapshot of the scenario's timeline, compared with tests/snapshots/web__NAME.snap.
fn snapshot(name: &str, text: String) {
    insta::with_settings!({ snapshot_path => "snapshots", prepend_module_to_snapshot => false }, {
        insta::assert_snapshot!(format!("web__{name}"), text);
    });
}

fn address(host: &str) -> &'static str {
    match host {
        "web1" => "10.0.1.11",
        _ => "10.0.1.12",
    }
}

/// Which server answered the client through the VIP (the page each host's index.html names).
fn served_by(scenario: &Scenario) -> String {
    let out = scenario
        .lab
        .exec("client", &["curl", "--silent", "--max-time", "2", "http://www/"])
        .unwrap();
    let page = String::from_utf8_lossy(&out.stdout);
    page.lines()
        .find_map(|l| l.strip_prefix("<p>served by "))
        .and_then(|l| l.split_whitespace().next())
        .unwrap_or("nobody")
        .to_string()
}

/// Waits for `host`'s keepalived to log `(web) Entering <state> STATE` at or after `after_ns`.
fn entering(scenario: &Scenario, host: &str, state: &str, after_ns: u64, limit: Duration) -> u64 {
    scenario
        .wait_line(host, &format!("(web) Entering {state} STATE"), after_ns, limit)
        .at_ns
}

/// web1 elected, the VIP on it, its gratuitous ARPs' second burst out and the client answered: a quiet lab for the
/// next fault, injected at the same phase of web1's adverts every run. Returns when web1 became master.
fn elect_web1(scenario: &Scenario) -> u64 {
    let vrrp = scenario.vrrp;
    let limit = vrrp.master_down(MASTER_PRIORITY) + vrrp.slack() * 4;
    let master = entering(scenario, "web1", "MASTER", 0, limit);
    scenario.wait_vip("web1", 0, vrrp.slack());
    // keepalived's garp_master_delay: a second burst 5 s after becoming master.
    // (keepalived logs its state after it has sent the first burst: a little before the line counts.)
    scenario.garp_seen_within("web1", master + 4_500_000_000, Duration::from_secs(5) + vrrp.slack());
    scenario.client_settles(PROBES);
    scenario.mid_phase(address("web1"));
    master
}

/// After `host` took the VIP: the client answers again, and the next fault starts at the usual phase.
fn takeover_settles(scenario: &Scenario, host: &str, after_ns: u64) {
    scenario.garp_seen(host, after_ns);
    scenario.client_settles(PROBES);
    scenario.mid_phase(address(host));
}

fn pid_file(scenario: &Scenario, host: &str, path: &str) -> Option<u32> {
    let out = scenario.lab.exec(host, &["cat", path]).unwrap();
    String::from_utf8_lossy(&out.stdout).trim().parse().ok()
}

// 1 -----------------------------------------------------------------------------------------------------------

/// Both keepalived daemons keep their default pid file, each in its own host's /run, and run side by side; web1
/// (priority 100) is elected after its Master_Down_Interval and serves the VIP.
fn side_by_side() {
    let scenario = web("web1s");
    let vrrp = scenario.vrrp;
    let started = scenario.wait_line("web1", "(web) Entering BACKUP STATE", 0, Duration::from_secs(5));
    let master = elect_web1(&scenario);
    assert!(
        since(started.at_ns, master) <= vrrp.master_down(MASTER_PRIORITY) + vrrp.slack(),
        "web1 took {:?} to become master",
        since(started.at_ns, master)
    );
    for host in ["web1", "web2"] {
        for service in ["keepalived", "nginx"] {
            let running = scenario.lab.service(host, service).unwrap();
            assert_eq!(running.exit_status(), None, "{host}/{service} exited");
            let pid_path = format!("/run/{service}.pid");
            assert_eq!(
                pid_file(&scenario, host, &pid_path),
                Some(running.pid()),
                "{host}'s {pid_path} is not its own {service}'s"
            );
        }
    }
    // Neither wrote the machine's own pid file.
    let machine = std::fs::read_to_string("/run/keepalived.pid")
        .ok()
        .and_then(|p| p.trim().parse().ok());
    for host in ["web1", "web2"] {
        assert_ne!(machine, Some(scenario.lab.service(host, "keepalived").unwrap().pid()));
    }
    assert!(scenario.holds_vip("web1") && !scenario.holds_vip("web2"));
    assert_eq!(served_by(&scenario), "web1");
    // web2 stays backup: it hears web1 and never enters MASTER.
    assert!(scenario
        .lab
        .events()
        .all()
        .iter()
        .all(|e| !(e.host.as_deref() == Some("web2")
            && matches!(&e.kind, EventKind::ServiceOutput { line, .. } if line.contains("Entering MASTER")))));
    // The order of events without figures: a snapshot counts the time after "lab up" from the lab's first event,
    // and how long two nginx and two keepalived take to start on a busy machine is no protocol figure. The code
    // above holds web1's election to its Master_Down_Interval.
    snapshot("1_start", scenario.snapshot_with(Vec::new()));
    scenario.finish();
}

// 2 -----------------------------------------------------------------------------------------------------------

/// nginx stops on web1: its check fails after `fall` runs, web1 enters FAULT and sends priority 0, and web2 takes
/// the VIP within its Skew_Time. nginx starts again: the check succeeds, web1 comes back as backup and preempts
/// after its Master_Down_Interval.
fn nginx_stop_and_start() {
    let mut scenario = web("web2s");
    let vrrp = scenario.vrrp;
    elect_web1(&scenario);
    let stopped = scenario.fault("web1", "stop nginx");
    let fault = entering(&scenario, "web1", "FAULT", stopped, CHECK_FALL + vrrp.slack() * 2);
    assert!(
        since(stopped, fault) <= CHECK_FALL + vrrp.slack() * 2,
        "web1 noticed nginx's stop after {:?}",
        since(stopped, fault)
    );
    entering(
        &scenario,
        "web2",
        "MASTER",
        fault,
        vrrp.skew(BACKUP_PRIORITY) + vrrp.slack() * 2,
    );
    scenario.wait_vip("web2", fault, vrrp.skew(BACKUP_PRIORITY) + vrrp.slack() * 2);
    assert!(!scenario.holds_vip("web1"), "web1 kept the VIP in FAULT");
    assert_eq!(served_by(&scenario), "web2");
    takeover_settles(&scenario, "web2", fault);

    let started = scenario.fault("web1", "start nginx");
    let backup = entering(
        &scenario,
        "web1",
        "BACKUP",
        started,
        Duration::from_secs(1) + vrrp.slack() * 2,
    );
    entering(
        &scenario,
        "web1",
        "MASTER",
        backup,
        vrrp.master_down(MASTER_PRIORITY) + vrrp.slack() * 2,
    );
    scenario.wait_vip("web1", backup, vrrp.slack());
    assert!(!scenario.holds_vip("web2"), "web2 kept the VIP after web1 preempted");
    assert_eq!(served_by(&scenario), "web1");
    takeover_settles(&scenario, "web1", backup);
    snapshot("2_nginx_stop_and_start", scenario.snapshot());
    scenario.finish();
}

// 3 -----------------------------------------------------------------------------------------------------------

/// keepalived on web1 is killed (SIGKILL): no priority-0 advert, so web2 takes over after its Master_Down_Interval,
/// and the client follows its gratuitous ARP although web1's kernel still has the address.
fn crash_of_the_master() {
    let mut scenario = web("web3s");
    let vrrp = scenario.vrrp;
    elect_web1(&scenario);
    let crash = scenario.fault("web1", "crash keepalived");
    let master = entering(
        &scenario,
        "web2",
        "MASTER",
        crash,
        vrrp.master_down(BACKUP_PRIORITY) + vrrp.slack(),
    );
    assert!(
        since(crash, master) + vrrp.interval >= vrrp.master_down(BACKUP_PRIORITY),
        "web2 took over {:?} after the crash, sooner than Master_Down_Interval allows",
        since(crash, master)
    );
    scenario.wait_vip("web2", crash, vrrp.master_down(BACKUP_PRIORITY) + vrrp.slack());
    assert_eq!(served_by(&scenario), "web2");
    takeover_settles(&scenario, "web2", crash);
    snapshot("3_crash", scenario.snapshot());
    scenario.finish();
}

// 4 -----------------------------------------------------------------------------------------------------------

/// web1 reboots: web2 takes over; web1 comes back with an empty /run and /tmp and the /etc and /var it had, its
/// daemons start again from their default paths, and web1 preempts.
fn reboot_of_the_master() {
    let mut scenario = web("web4s");
    let vrrp = scenario.vrrp;
    elect_web1(&scenario);
    let write = "echo before > /run/marker; echo before > /tmp/marker; echo before > /etc/marker; \
                 echo before > /var/lib/marker";
    assert!(scenario
        .lab
        .exec("web1", &["sh", "-c", write])
        .unwrap()
        .status
        .success());
    let old_pid = pid_file(&scenario, "web1", "/run/keepalived.pid");
    // The fault at the usual phase of web1's adverts, the commands above done.
    scenario.mid_phase(address("web1"));
    let rebooted = scenario.fault("web1", "reboot 1");
    let took_over = scenario.wait_vip("web2", rebooted, vrrp.master_down(BACKUP_PRIORITY) + vrrp.slack());
    entering(
        &scenario,
        "web1",
        "MASTER",
        took_over.at_ns,
        Duration::from_secs(5) + vrrp.master_down(MASTER_PRIORITY) + vrrp.slack(),
    );
    scenario.wait_vip("web1", took_over.at_ns, vrrp.slack());
    let check = "for f in /run/marker /tmp/marker /etc/marker /var/lib/marker; do \
                 if [ -e $f ]; then echo $f kept; else echo $f gone; fi; done";
    let listing = scenario.lab.exec("web1", &["sh", "-c", check]).unwrap();
    assert_eq!(
        String::from_utf8_lossy(&listing.stdout),
        "/run/marker gone\n/tmp/marker gone\n/etc/marker kept\n/var/lib/marker kept\n"
    );
    let new_pid = pid_file(&scenario, "web1", "/run/keepalived.pid");
    assert_eq!(new_pid, Some(scenario.lab.service("web1", "keepalived").unwrap().pid()));
    assert_ne!(new_pid, old_pid);
    assert_eq!(served_by(&scenario), "web1");
    takeover_settles(&scenario, "web1", took_over.at_ns);
    println!(
        "reboot: web2 had the VIP {:?} after the fault, web1 again {:?} after that",
        since(rebooted, took_over.at_ns),
        since(took_over.at_ns, monotonic_ns())
    );
    // After power-on, web2's takeover and web1's preemption both count from the power-on, and web1's also from
    // how long its daemons took to start: one bucket holds both, whatever the machine's load.
    let figures = vec![
        ("Skew_Time".into(), vrrp.skew(BACKUP_PRIORITY)),
        ("advert_int".into(), vrrp.interval),
        (
            "Master_Down_Interval+advert_int".into(),
            vrrp.master_down(BACKUP_PRIORITY) + vrrp.interval,
        ),
    ];
    snapshot("4_reboot", scenario.snapshot_with(figures));
    scenario.finish();
}

// 5 -----------------------------------------------------------------------------------------------------------

/// The seed's experiment on topologies/vlan-keepalived.toml: its whole stack with Debian's keepalived reading the
/// seed's keepalived.conf files from /etc/keepalived. `SET scott tiger` through the VIP; haproxy1 reboots; the VIP
/// moves to haproxy2 and `GET scott` still answers; haproxy1 returns and preempts, and `GET scott` answers again.
fn seed_with_keepalived() {
    let topology = Topology::load(workspace_file("topologies/vlan-keepalived.toml"))
        .unwrap()
        .renamed(&unique_name("webseed"))
        .unwrap();
    let mut scenario = Scenario::of(&topology, Vrrp::SEED, "10.0.0.31", 99);
    scenario.only_vip_arps = true;
    scenario.shown_services = Some(&["keepalived"]);
    let vrrp = scenario.vrrp;
    let ca = scenario.lab.paths().tls_dir().join("ca.crt").display().to_string();
    let redis = |scenario: &Scenario, words: &[&str]| -> String {
        let mut argv = vec![
            "timeout",
            "2",
            "redis-cli",
            "--tls",
            "--cacert",
            &ca,
            "-h",
            "vlan-haproxy",
        ];
        argv.extend_from_slice(words);
        let out = scenario.lab.exec("redisclient", &argv).unwrap();
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    let master = scenario
        .wait_line(
            "haproxy1",
            "(Instance1) Entering MASTER STATE",
            0,
            Duration::from_secs(10),
        )
        .at_ns;
    scenario.wait_vip("haproxy1", 0, vrrp.slack());
    // The proxies route once the Sentinels agree on the master.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while redis(&scenario, &["set", "scott", "tiger"]) != "OK" {
        assert!(std::time::Instant::now() < deadline, "SET scott never answered OK");
        std::thread::sleep(Duration::from_millis(200));
    }
    scenario.garp_seen_within("haproxy1", master + 4_500_000_000, Duration::from_secs(30));
    scenario.client_settles(&["vip-tcp", "vip-ping"]);
    scenario.mid_phase("10.0.0.21");

    let rebooted = scenario.fault("haproxy1", "reboot 6.6");
    let took_over = entering_seed(
        &scenario,
        "haproxy2",
        "MASTER",
        rebooted,
        vrrp.master_down(99) + vrrp.slack(),
    );
    scenario.wait_vip("haproxy2", rebooted, vrrp.master_down(99) + vrrp.slack());
    assert_eq!(
        redis(&scenario, &["get", "scott"]),
        "tiger",
        "GET scott through haproxy2"
    );
    let back = entering_seed(
        &scenario,
        "haproxy1",
        "MASTER",
        took_over,
        Duration::from_secs(7) + vrrp.master_down(100) + vrrp.slack(),
    );
    scenario.wait_vip("haproxy1", took_over, vrrp.slack());
    scenario.garp_seen_within("haproxy1", took_over, Duration::from_secs(1));
    scenario.client_settles(&["vip-tcp", "vip-ping"]);
    assert_eq!(
        redis(&scenario, &["get", "scott"]),
        "tiger",
        "GET scott after haproxy1's return"
    );
    println!(
        "seed with keepalived: haproxy2 master {:?} after the reboot, haproxy1 again {:?} after that",
        since(rebooted, took_over),
        since(took_over, back)
    );
    snapshot("5_seed_reboot", scenario.snapshot());
    scenario.finish();
}

fn entering_seed(scenario: &Scenario, host: &str, state: &str, after_ns: u64, limit: Duration) -> u64 {
    scenario
        .wait_line(host, &format!("(Instance1) Entering {state} STATE"), after_ns, limit)
        .at_ns
}
