//! Faults and observers on a two-host lab (run as root): each fault is checked by what the kernel monitor, the
//! probes and the service events report, and through the `lab` binary the same works on a detached lab, with the
//! timeline and a pcap capture.

mod common;
use common::unique;

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use lab::events::monotonic_ns;
use lab::{Event, EventKind, Fault, Lab, Topology};

/// Host `a` probes host `b` by ping and on TCP 7000, where `b` runs a listener.
fn two_hosts(name: &str) -> (Topology, PathBuf) {
    let text = format!(
        r#"
name = "{name}"
[[segments]]
name = "lan"
subnet = "10.9.0.0/24"
[[hosts]]
name = "a"
interfaces = [{{ segment = "lan", address = "10.9.0.1/24" }}]
probes = [
  {{ name = "ping-b", kind = "ping", target = "b", interval = 0.02, timeout = 0.05 }},
  {{ name = "tcp-b", kind = "tcp", target = "b:7000", interval = 0.02, timeout = 0.05 }},
]
[[hosts]]
name = "b"
interfaces = [{{ segment = "lan", address = "10.9.0.2/24" }}]
routes = [{{ to = "10.8.0.0/16", via = "10.9.0.1" }}]
[[hosts.services]]
name = "listener"
argv = ["socat", "-u", "TCP-LISTEN:7000,fork,reuseaddr,backlog=128", "OPEN:/dev/null"]
ready = {{ tcp = 7000 }}
"#
    );
    let path = std::env::temp_dir().join(format!("{name}.toml"));
    std::fs::write(&path, text).unwrap();
    (Topology::load(&path).unwrap(), path)
}

fn fault(lab: &mut Lab, host: &str, words: &str) -> u64 {
    let words: Vec<String> = words.split_whitespace().map(str::to_string).collect();
    let at = monotonic_ns();
    lab.fault(host, &Fault::parse(&words).unwrap()).unwrap();
    at
}

fn wait(lab: &Lab, after: u64, what: &str, wanted: impl Fn(&Event) -> bool) -> Event {
    lab.events()
        .wait_for(Duration::from_secs(5), |e| e.at_ns >= after && wanted(e))
        .unwrap_or_else(|| panic!("{what} not seen:\n{}", lab.timeline().text()))
}

fn probe_down(lab: &Lab, after: u64, probe: &str) -> Event {
    wait(
        lab,
        after,
        &format!("{probe} down"),
        |e| matches!(&e.kind, EventKind::ProbeDown { probe: p, .. } if p == probe),
    )
}

fn probe_up(lab: &Lab, after: u64, probe: &str) -> Event {
    wait(
        lab,
        after,
        &format!("{probe} up"),
        |e| matches!(&e.kind, EventKind::ProbeUp { probe: p, .. } if p == probe),
    )
}

fn link_event(lab: &Lab, after: u64, host: &str, up: bool) -> Event {
    wait(
        lab,
        after,
        &format!("{host} link {}", if up { "up" } else { "down" }),
        |e| {
            e.host.as_deref() == Some(host)
                && if up {
                    matches!(e.kind, EventKind::LinkUp { .. })
                } else {
                    matches!(e.kind, EventKind::LinkDown { .. })
                }
        },
    )
}

fn routes(lab: &Lab, host: &str) -> String {
    String::from_utf8_lossy(&lab.exec(host, &["ip", "route"]).unwrap().stdout).into_owned()
}

#[test]
fn faults_are_seen_by_the_kernel_the_probes_and_the_services() {
    let (topology, file) = two_hosts(&unique("flt"));
    let mut lab = Lab::up(&topology).unwrap();
    std::thread::sleep(Duration::from_millis(200));
    assert!(
        !lab.timeline()
            .events()
            .iter()
            .any(|e| matches!(e.kind, EventKind::ProbeDown { .. })),
        "b answers from the start"
    );

    // Link down and up: the kernel monitor sees both, the probe loses b and finds it again, routes come back.
    let t = fault(&mut lab, "b", "link-down eth0");
    link_event(&lab, t, "b", false);
    probe_down(&lab, t, "ping-b");
    assert!(
        !routes(&lab, "b").contains("10.8.0.0/16"),
        "the kernel drops a route whose link goes down"
    );
    let t = fault(&mut lab, "b", "link-up eth0");
    link_event(&lab, t, "b", true);
    probe_up(&lab, t, "ping-b");
    assert!(
        routes(&lab, "b").contains("10.8.0.0/16 via 10.9.0.1"),
        "{}",
        routes(&lab, "b")
    );

    // Partition and heal, in the switch: the hosts' own rules are untouched.
    let t = fault(&mut lab, "a", "partition b");
    probe_down(&lab, t, "ping-b");
    let t = fault(&mut lab, "a", "heal");
    probe_up(&lab, t, "ping-b");

    // All packets lost, then none.
    let t = fault(&mut lab, "b", "loss 100");
    probe_down(&lab, t, "ping-b");
    let t = fault(&mut lab, "b", "loss 0");
    probe_up(&lab, t, "ping-b");

    // Crash and start: the service's exit and its new start are events; TCP follows.
    let t = fault(&mut lab, "b", "crash listener");
    wait(&lab, t, "the listener killed", |e| {
        matches!(
            &e.kind,
            EventKind::ServiceExited {
                status: lab::events::ExitStatus::Signal(9),
                ..
            }
        )
    });
    probe_down(&lab, t, "tcp-b");
    let t = fault(&mut lab, "b", "start listener");
    wait(&lab, t, "the listener started", |e| {
        matches!(e.kind, EventKind::ServiceStarted { .. })
    });
    probe_up(&lab, t, "tcp-b");

    // Freeze and thaw: the process is stopped (state T), then runs again.
    let state = |lab: &Lab| {
        let pid = lab.service("b", "listener").unwrap().pid();
        std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .unwrap()
            .rsplit(") ")
            .next()
            .unwrap()[..1]
            .to_string()
    };
    // Signals are delivered asynchronously: the state changes within moments, not at once.
    let becomes = |lab: &Lab, stopped: bool| {
        let deadline = std::time::Instant::now() + Duration::from_secs(2);
        while (state(lab) == "T") != stopped && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(1));
        }
        (state(lab) == "T") == stopped
    };
    fault(&mut lab, "b", "freeze listener");
    assert!(becomes(&lab, true), "frozen: {}", state(&lab));
    fault(&mut lab, "b", "thaw listener");
    assert!(becomes(&lab, false), "thawed: {}", state(&lab));

    // Reboot: links down, everything killed, the pause, then links, routes and services back.
    let t = fault(&mut lab, "b", "reboot 0.5");
    link_event(&lab, t, "b", false);
    let down = probe_down(&lab, t, "ping-b");
    let up = probe_up(&lab, t, "ping-b");
    assert!(Duration::from_nanos(up.at_ns - down.at_ns) >= Duration::from_millis(400));
    assert!(
        lab.service("b", "listener").unwrap().exit_status().is_none(),
        "the listener runs again"
    );
    assert!(routes(&lab, "b").contains("10.8.0.0/16 via 10.9.0.1"));

    // Rate: carried out in the switch by the impairment backend, never inside the host (b sees no qdisc of its
    // own); the lab's record lists it until it is turned off. tests/impair.rs measures what it does.
    fault(&mut lab, "b", "rate 1mbit");
    let qdisc = |lab: &Lab| {
        String::from_utf8_lossy(&lab.exec("b", &["tc", "qdisc", "show", "dev", "eth0"]).unwrap().stdout).into_owned()
    };
    assert!(
        !qdisc(&lab).contains("tbf") && !qdisc(&lab).contains("netem"),
        "{}",
        qdisc(&lab)
    );
    let listed = |lab: &Lab| -> Vec<String> {
        let record = lab::state::LabState::load(lab.paths()).unwrap().faults;
        (record.links.iter())
            .map(|l| format!("{} {} {} {}", l.host, l.interface, l.direction, l.settings))
            .collect()
    };
    assert_eq!(listed(&lab), ["b eth0 from rate 1mbit"]);
    fault(&mut lab, "b", "rate off");
    assert!(listed(&lab).is_empty(), "{:?}", listed(&lab));

    // Every fault is on the timeline, and mistakes are refused with a reason.
    let faults = lab
        .timeline()
        .events()
        .iter()
        .filter(|e| matches!(e.kind, EventKind::Fault { .. }))
        .count();
    assert_eq!(faults, 14);
    let error = lab.fault("nobody", &Fault::Heal).unwrap_err().to_string();
    assert!(error.contains("no host `nobody`"), "{error}");
    let error = lab.fault("a", &Fault::Crash { service: None }).unwrap_err().to_string();
    assert!(error.contains("host a runs no service"), "{error}");
    assert!(Fault::parse(&["explode".into()])
        .unwrap_err()
        .contains("unrecognized subcommand 'explode'"));
    assert!(Fault::parse(&["loss".into(), "120".into()])
        .unwrap_err()
        .contains("`120` is not a percentage in 0-100"));

    lab.down().unwrap();
    let _ = std::fs::remove_file(file);
}

fn lab_binary(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_lab"))
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

#[test]
fn the_cli_injects_faults_prints_the_timeline_and_captures_pcap() {
    let name = unique("fcl");
    let (_, file) = two_hosts(&name);
    let up = lab_binary(&["up", "-d", file.to_str().unwrap()]);
    assert!(up.status.success(), "{}", String::from_utf8_lossy(&up.stderr));

    // A capture of three frames while a pings b.
    let pcap = std::env::temp_dir().join(format!("{name}.pcap"));
    let mut capture = Command::new(env!("CARGO_BIN_EXE_lab"))
        .args(["capture", &name, "lan", "-w", pcap.to_str().unwrap(), "-c", "3"])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let ping = lab_binary(&["exec", &name, "a", "--", "ping", "-c", "3", "-i", "0.2", "b"]);
    assert!(ping.status.success());
    assert!(capture.wait().unwrap().success());
    let mut reader = pcap_file::pcap::PcapReader::new(std::fs::File::open(&pcap).unwrap()).unwrap();
    let mut frames = 0;
    while let Some(packet) = reader.next_packet() {
        packet.unwrap();
        frames += 1;
    }
    assert_eq!(frames, 3);
    assert_eq!(reader.header().datalink, pcap_file::DataLink::ETHERNET);

    let down = lab_binary(&["fault", &name, "b", "link-down"]);
    assert!(down.status.success(), "{}", String::from_utf8_lossy(&down.stderr));
    std::thread::sleep(Duration::from_millis(200));
    let json = lab_binary(&["timeline", &name, "--json"]);
    let events: Vec<Event> = String::from_utf8_lossy(&json.stdout)
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    assert!(events
        .iter()
        .any(|e| matches!(&e.kind, EventKind::Fault { fault } if fault == "link-down")));
    assert!(events
        .iter()
        .any(|e| e.host.as_deref() == Some("b") && matches!(e.kind, EventKind::LinkDown { .. })));
    assert!(events.iter().any(|e| matches!(e.kind, EventKind::ProbeDown { .. })));
    assert!(events.windows(2).all(|w| w[0].at_ns <= w[1].at_ns), "in time order");
    let text = String::from_utf8_lossy(&lab_binary(&["timeline", &name]).stdout).into_owned();
    assert!(
        text.contains("b: fault: link-down") && text.contains("b kernel: eth0 down"),
        "{text}"
    );

    let bad = lab_binary(&["fault", &name, "b", "explode"]);
    assert!(!bad.status.success());
    // clap names the word it does not know (and a fault it might have meant).
    assert!(
        String::from_utf8_lossy(&bad.stderr).contains("unrecognized subcommand 'explode'"),
        "{}",
        String::from_utf8_lossy(&bad.stderr)
    );
    let nobody = lab_binary(&["fault", &name, "nobody", "heal"]);
    assert!(String::from_utf8_lossy(&nobody.stderr).contains("no host `nobody`"));
    let no_segment = lab_binary(&["capture", &name, "wan", "-w", "-"]);
    assert!(String::from_utf8_lossy(&no_segment.stderr).contains("no segment `wan` (segments: lan)"));

    assert!(lab_binary(&["down", &name]).status.success());
    let _ = std::fs::remove_file(file);
    let _ = std::fs::remove_file(pcap);
}
