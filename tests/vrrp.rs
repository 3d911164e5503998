//! Our VRRP agent in the seed's lab, with the seed's keepalived.conf files unchanged: haproxy1 is elected, holds
//! the VIP alone, announces it with its own MAC, and the client reaches it.

use std::time::{Duration, Instant};

use halab_tests::vrrp_topology;
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
    let lab = Lab::up(&vrrp_topology("vrrp")).unwrap();
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
    let run = lab.paths().run_dir();
    let log = std::fs::read_to_string(run.join("logs/haproxy1.vrrpd.log")).unwrap();
    assert!(log.contains("(Instance1) Entering MASTER STATE"), "{log}");
    // The agent's JSON events (`--events -`, `events = "stdout"`) are on the lab's timeline.
    let timeline = lab.timeline();
    let daemon_events: Vec<(&str, &serde_json::Value)> = timeline
        .events()
        .iter()
        .filter(|e| e.host.as_deref() == Some("haproxy1"))
        .filter_map(|e| match &e.kind {
            lab::EventKind::Daemon { kind, detail, .. } => Some((kind.as_str(), detail)),
            _ => None,
        })
        .collect();
    assert!(daemon_events
        .iter()
        .any(|(kind, detail)| *kind == "state" && detail["to"] == "MASTER"));
    assert!(daemon_events.iter().any(|(kind, _)| *kind == "garp"));
    lab.down().unwrap();
}

use halab_tests::vrrp::{bare_lab, holds_address as holds, wait_vip, Agent, Daemon};

/// The seed's haproxy1 file with `extra` added to its instance (and `before` ahead of it), written to `dir`.
fn haproxy1_config(dir: &std::path::Path, before: &str, extra: &str) -> String {
    let seed = std::fs::read_to_string(halab_tests::workspace_file("topologies/keepalived-haproxy1.conf")).unwrap();
    let text = format!(
        "{before}\n{}",
        seed.replacen("virtual_ipaddress {", &format!("{extra}\n    virtual_ipaddress {{"), 1)
    );
    let path = dir.join("haproxy1.conf");
    std::fs::write(&path, text).unwrap();
    path.display().to_string()
}

/// Waits until `condition` holds, failing with `what` after `limit`.
fn wait_until(limit: Duration, what: &str, condition: impl Fn() -> bool) {
    let start = Instant::now();
    while !condition() {
        assert!(start.elapsed() < limit, "{what} (waited {limit:?})");
        std::thread::sleep(Duration::from_millis(20));
    }
}

const MDI_BACKUP: Duration = Duration::from_nanos(3_613_281_250);
const MDI_MASTER: Duration = Duration::from_nanos(3_609_375_000);
const MARGIN: Duration = Duration::from_secs(2);

#[test]
fn a_failing_weighted_script_hands_the_vip_over_and_its_recovery_takes_it_back() {
    let (lab, dir) = bare_lab("vtrk");
    let flag = dir.join("fail");
    let script = format!(
        "vrrp_script chk {{\n    script \"test ! -e {}\"\n    interval 0.2\n    timeout 2\n    fall 1\n    rise 1\n    weight -4\n}}",
        flag.display()
    );
    let config = haproxy1_config(&dir, &script, "    track_script {\n        chk\n    }");
    let _h2 = Daemon::start(
        &lab,
        "haproxy2",
        Agent::Ours,
        "topologies/keepalived-haproxy2.conf",
        &dir,
    );
    let h1 = Daemon::start(&lab, "haproxy1", Agent::Ours, &config, &dir);
    wait_vip(&lab, "haproxy1", MDI_MASTER + MARGIN);

    // 96 < 99: haproxy2 discards haproxy1's adverts and takes over when its timer runs out.
    std::fs::write(&flag, "").unwrap();
    wait_vip(&lab, "haproxy2", Duration::from_millis(400) + MDI_BACKUP + MARGIN);
    let log = h1.log();
    assert!(log.contains("VRRP_Script(chk) failed (exited with status 1)"), "{log}");
    assert!(
        log.contains("(Instance1) Changing effective priority from 100 to 96"),
        "{log}"
    );
    assert!(
        log.contains("Master received advert from 10.0.0.23 with higher priority 99, ours 96"),
        "{log}"
    );

    std::fs::remove_file(&flag).unwrap();
    wait_vip(&lab, "haproxy1", Duration::from_millis(400) + MDI_MASTER + MARGIN);
    assert!(h1.log().contains("VRRP_Script(chk) succeeded"));
    assert!(
        !holds_vip(&lab, "haproxy2") || {
            std::thread::sleep(Duration::from_millis(200));
            !holds_vip(&lab, "haproxy2")
        }
    );
    lab.down().unwrap();
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn the_masters_interface_going_down_is_a_fault_and_coming_back_preempts() {
    let (lab, dir) = bare_lab("vflt");
    let _h2 = Daemon::start(
        &lab,
        "haproxy2",
        Agent::Ours,
        "topologies/keepalived-haproxy2.conf",
        &dir,
    );
    let h1 = Daemon::start(
        &lab,
        "haproxy1",
        Agent::Ours,
        "topologies/keepalived-haproxy1.conf",
        &dir,
    );
    wait_vip(&lab, "haproxy1", MDI_MASTER + MARGIN);
    assert!(lab
        .exec("haproxy1", &["ip", "link", "set", "eth0", "down"])
        .unwrap()
        .status
        .success());
    wait_vip(&lab, "haproxy2", MDI_BACKUP + MARGIN);
    let log = h1.log();
    assert!(
        log.contains("Netlink reports eth0 down") && log.contains("(Instance1) Entering FAULT STATE"),
        "{log}"
    );
    assert!(!holds_vip(&lab, "haproxy1"), "a faulty master releases the VIP");
    assert!(lab
        .exec("haproxy1", &["ip", "link", "set", "eth0", "up"])
        .unwrap()
        .status
        .success());
    wait_vip(&lab, "haproxy1", MDI_MASTER + MARGIN);
    assert!(h1.log().contains("Netlink reports eth0 up"));
    lab.down().unwrap();
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn metrics_and_state_dump() {
    let (lab, dir) = bare_lab("vmet");
    let dump = dir.join("vrrpd.data");
    let dump_arg = dump.display().to_string();
    let h1 = Daemon::start_with(
        &lab,
        "haproxy1",
        Agent::Ours,
        "topologies/keepalived-haproxy1.conf",
        &dir,
        &["--metrics", "127.0.0.1:9650", "--dump-file", &dump_arg],
    );
    wait_vip(&lab, "haproxy1", MDI_MASTER + MARGIN);
    let get = "printf 'GET /metrics HTTP/1.0\\r\\n\\r\\n' | nc -w 2 127.0.0.1 9650";
    let out = lab.exec("haproxy1", &["sh", "-c", get]).unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains(r#"vrrp_state{instance="Instance1",state="MASTER"} 1"#),
        "{text}"
    );
    assert!(text.contains(r#"vrrp_priority{instance="Instance1"} 100"#), "{text}");
    assert!(
        text.contains(r#"vrrp_transitions_total{instance="Instance1",from="BACKUP",to="MASTER"} 1"#),
        "{text}"
    );
    assert!(text.contains("vrrp_adverts_sent_total"), "{text}");
    let other = "printf 'GET /other HTTP/1.0\\r\\n\\r\\n' | nc -w 2 127.0.0.1 9650";
    let out = lab.exec("haproxy1", &["sh", "-c", other]).unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("HTTP/1.0 404"));
    h1.signal(nix::sys::signal::Signal::SIGUSR1);
    wait_until(Duration::from_secs(2), "no state dump", || dump.exists());
    let data = std::fs::read_to_string(&dump).unwrap();
    assert!(
        data.contains("State = MASTER") && data.contains("Virtual Router ID = 10"),
        "{data}"
    );
    drop(h1);
    lab.down().unwrap();
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn runs_with_only_net_raw_and_net_admin_and_names_a_missing_capability() {
    let (lab, dir) = bare_lab("vcap");
    let config = halab_tests::workspace_file("topologies/keepalived-haproxy1.conf")
        .display()
        .to_string();
    let vrrpd = std::env::current_exe()
        .unwrap()
        .parent()
        .unwrap()
        .parent()
        .unwrap()
        .join("vrrpd");
    let vrrpd = vrrpd.display().to_string();
    // Without CAP_NET_RAW: a clear error naming it.
    let out = lab
        .exec(
            "haproxy1",
            &[
                "setpriv",
                "--bounding-set=-all,+net_admin",
                &vrrpd,
                "-f",
                &config,
                "-l",
                "-G",
            ],
        )
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && stderr.contains("CAP_NET_RAW"), "{stderr}");
    // With exactly CAP_NET_RAW and CAP_NET_ADMIN: elected, VIP added, GARPs sent.
    let mut command = lab.command("haproxy1", "setpriv").unwrap();
    command.args([
        "--bounding-set=-all,+net_raw,+net_admin",
        &vrrpd,
        "-f",
        &config,
        "-l",
        "-G",
    ]);
    let log = std::fs::File::create(dir.join("cap.log")).unwrap();
    let mut child = command.stdout(log.try_clone().unwrap()).stderr(log).spawn().unwrap();
    wait_vip(&lab, "haproxy1", MDI_MASTER + MARGIN);
    let _ = child.kill();
    let _ = child.wait();
    let text = std::fs::read_to_string(dir.join("cap.log")).unwrap();
    assert!(!text.contains("failed"), "{text}");
    lab.down().unwrap();
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn sighup_keeps_an_unchanged_master_and_applies_a_change() {
    let (lab, dir) = bare_lab("vhup");
    let config = haproxy1_config(&dir, "# first version", "");
    let h1 = Daemon::start(&lab, "haproxy1", Agent::Ours, &config, &dir);
    wait_vip(&lab, "haproxy1", MDI_MASTER + MARGIN);
    let hup = || h1.signal(nix::sys::signal::Signal::SIGHUP);

    // A comment moves the instance down a line: not a change. The master stays master, VIP untouched.
    haproxy1_config(&dir, "# second version\n# one more line", "");
    hup();
    std::thread::sleep(Duration::from_millis(500));
    assert!(holds_vip(&lab, "haproxy1"));
    let log = h1.log();
    assert!(log.contains("Reloading") && !log.contains("removing VIPs."), "{log}");

    // A broken file is refused; everything keeps running.
    std::fs::write(&config, "vrrp_instance Instance1 {\n    priority 300\n}\n").unwrap();
    hup();
    std::thread::sleep(Duration::from_millis(500));
    assert!(holds_vip(&lab, "haproxy1"));
    assert!(h1.log().contains("Reload refused:"), "{}", h1.log());

    // A new virtual address: the instance restarts with it (priority 0, then a new election).
    let text = std::fs::read_to_string(halab_tests::workspace_file("topologies/keepalived-haproxy1.conf")).unwrap();
    std::fs::write(&config, text.replace("10.0.0.31", "10.0.0.31\n        10.0.0.32")).unwrap();
    hup();
    wait_until(MDI_MASTER + MARGIN, "the new address never came", || {
        let out = lab
            .exec("haproxy1", &["ip", "-4", "-o", "addr", "show", "dev", "eth0"])
            .unwrap();
        String::from_utf8_lossy(&out.stdout).contains("inet 10.0.0.32/32")
    });
    assert!(h1.log().contains("sent 0 priority"));
    lab.down().unwrap();
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn notify_and_track_scripts_run_as_the_configured_user() {
    use std::os::unix::fs::PermissionsExt;
    let (lab, dir) = bare_lab("vusr");
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).unwrap();
    let notify_file = dir.join("notify-user");
    let script_file = dir.join("script-user");
    let script = format!(
        "vrrp_script chk {{\n    script \"/bin/sh -c 'id -un > {}'\"\n    interval 1\n    user nobody\n}}",
        script_file.display()
    );
    let extra = format!(
        "    track_script {{\n        chk\n    }}\n    notify_master \"/bin/sh -c 'id -un > {}'\" nobody",
        notify_file.display()
    );
    let config = haproxy1_config(&dir, &script, &extra);
    let _h1 = Daemon::start(&lab, "haproxy1", Agent::Ours, &config, &dir);
    wait_vip(&lab, "haproxy1", MDI_MASTER + MARGIN);
    wait_until(Duration::from_secs(2), "the scripts did not run", || {
        notify_file.exists() && script_file.exists()
    });
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(std::fs::read_to_string(&notify_file).unwrap().trim(), "nobody");
    assert_eq!(std::fs::read_to_string(&script_file).unwrap().trim(), "nobody");
    lab.down().unwrap();
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn addresses_honour_prefix_dev_and_label_and_are_gone_after_sigterm() {
    let (lab, dir) = bare_lab("vdev");
    let config = dir.join("router.conf");
    std::fs::write(
        &config,
        "vrrp_instance R {\n    interface eth0\n    virtual_router_id 20\n    priority 100\n    virtual_ipaddress {\n        \
         10.0.0.33\n        192.168.100.50/24 dev eth1 label eth1:vip\n    }\n}\n",
    )
    .unwrap();
    let router = Daemon::start(&lab, "router", Agent::Ours, &config.display().to_string(), &dir);
    let addresses = |dev: &str| {
        let out = lab
            .exec("router", &["ip", "-4", "-o", "addr", "show", "dev", dev])
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    wait_until(MDI_MASTER + MARGIN, "no VIP on eth0", || {
        addresses("eth0").contains("inet 10.0.0.33/32")
    });
    let eth1 = addresses("eth1");
    assert!(
        eth1.contains("inet 192.168.100.50/24") && eth1.contains("eth1:vip"),
        "{eth1}"
    );
    router.stop();
    assert!(!addresses("eth0").contains("10.0.0.33") && !addresses("eth1").contains("192.168.100.50"));
    lab.down().unwrap();
    let _ = std::fs::remove_dir_all(dir);
}

/// Two instances in one sync group: VI_1 (VRID 10, 10.0.0.31, advert 1 s) and VI_2 (VRID 11, 10.0.0.32,
/// advert 2 s, tracking `chk` on haproxy1 when `flag` is given), haproxy1 at 100, haproxy2 at 99.
fn group_config(dir: &std::path::Path, host: &str, flag: Option<&std::path::Path>) -> String {
    let (me, peer, priority) = if host == "haproxy1" {
        (21, 23, 100)
    } else {
        (23, 21, 99)
    };
    let instance = |name: &str, vrid: u8, vip: u8, interval: u8, extra: &str| {
        format!(
            "vrrp_instance {name} {{\n    interface eth0\n    virtual_router_id {vrid}\n    priority {priority}\n    \
             advert_int {interval}\n    unicast_src_ip 10.0.0.{me}\n    unicast_peer {{\n        10.0.0.{peer}\n    }}\n    \
             virtual_ipaddress {{\n        10.0.0.{vip}\n    }}\n{extra}}}\n"
        )
    };
    let (script, track) = match flag {
        Some(flag) => (
            format!(
                "vrrp_script chk {{\n    script \"test ! -e {}\"\n    interval 0.2\n    timeout 2\n}}\n",
                flag.display()
            ),
            "    track_script {\n        chk\n    }\n".to_string(),
        ),
        None => (String::new(), String::new()),
    };
    let text = format!(
        "{script}vrrp_sync_group G {{\n    group {{\n        VI_1\n        VI_2\n    }}\n}}\n{}{}",
        instance("VI_1", 10, 31, 1, ""),
        instance("VI_2", 11, 32, 2, &track)
    );
    let path = dir.join(format!("{host}-group.conf"));
    std::fs::write(&path, text).unwrap();
    path.display().to_string()
}

#[test]
fn a_sync_group_moves_together_on_fault_and_on_takeover() {
    let (lab, dir) = bare_lab("vsyn");
    let flag = dir.join("fail");
    let h2 = Daemon::start(
        &lab,
        "haproxy2",
        Agent::Ours,
        &group_config(&dir, "haproxy2", None),
        &dir,
    );
    let h1 = Daemon::start(
        &lab,
        "haproxy1",
        Agent::Ours,
        &group_config(&dir, "haproxy1", Some(&flag)),
        &dir,
    );
    // VI_2's Master_Down_Interval is 2 x 3 + 156/256 x 2 s; both are on haproxy1 once it has passed.
    let mdi_vi2 = Duration::from_secs_f64(6.0 + 2.0 * 156.0 / 256.0);
    wait_until(mdi_vi2 + MARGIN, "haproxy1 never held both", || {
        holds(&lab, "haproxy1", "10.0.0.31") && holds(&lab, "haproxy1", "10.0.0.32")
    });

    // Only VI_2 tracks the script, but the group faults together: both addresses move to haproxy2.
    std::fs::write(&flag, "").unwrap();
    wait_until(
        Duration::from_secs(3),
        "haproxy2 never took both after the fault",
        || holds(&lab, "haproxy2", "10.0.0.31") && holds(&lab, "haproxy2", "10.0.0.32"),
    );
    assert_eq!(h1.log().matches("Entering FAULT STATE").count(), 2, "{}", h1.log());
    std::fs::remove_file(&flag).unwrap();
    wait_until(mdi_vi2 + MARGIN, "haproxy1 never took both back", || {
        holds(&lab, "haproxy1", "10.0.0.31") && holds(&lab, "haproxy1", "10.0.0.32")
    });

    // haproxy1 crashes: VI_1 times out after ~3.6 s and VI_2 follows at once instead of after its own ~7.2 s.
    h1.crash();
    let crash = Instant::now();
    wait_until(MDI_BACKUP + MARGIN, "VI_2 did not follow VI_1", || {
        holds(&lab, "haproxy2", "10.0.0.32")
    });
    assert!(crash.elapsed() < mdi_vi2, "VI_2 waited for its own timer");
    assert!(
        h2.log().contains("VRRP_Group(G) Syncing instances to MASTER state"),
        "{}",
        h2.log()
    );
    lab.down().unwrap();
    let _ = std::fs::remove_dir_all(dir);
}
