//! Labs spread over machines: three VMs on Debian's stock kernel (scripts/machines), driven over SSH from this
//! machine, the coordinator. Outside scripts/machines (`scripts/test-machines` runs them) these tests are listed
//! as ignored. One at a time: three emulated machines share this machine's CPUs, and one test powers a machine
//! off, so it runs last.
//!
//! Emulation is about ten times slower than the machine, and three VMs share two CPUs: bounds are the protocol's
//! (Master_Down_Interval, the advertisement interval) plus [`SLACK`], and the time a fault takes to reach its
//! machine over SSH is not counted (bounds start at the fault's own event, stamped where it happened).

use std::time::Duration;

use halab_tests::failover::is_state;
use halab_tests::machines::Machines;
use lab::{Event, EventKind, Fault, Lab, Topology};

/// What emulated machines add to a protocol's bound.
const SLACK: Duration = Duration::from_secs(10);
/// Priority 99, advert_int 1: 3 x 1 s + (256 - 99) / 256 s.
const MASTER_DOWN_INTERVAL: Duration = Duration::from_millis(3613);
/// How long a part's services may take to start on an emulated machine.
const STARTUP: Duration = Duration::from_secs(180);

fn main() {
    let tests: &[(&str, fn())] = &[
        (
            "1_the_seed_split_across_three_machines",
            seed_split_across_three_machines,
        ),
        ("2_an_underlay_cut_splits_the_brain", underlay_cut_splits_the_brain),
        (
            "3_unready_machines_fail_before_anything_is_built",
            unready_machines_fail_before_building,
        ),
        (
            "4_a_killed_coordinator_leaves_nothing",
            killed_coordinator_leaves_nothing,
        ),
        (
            "5_a_machine_dying_during_up_leaves_nothing",
            machine_dying_during_up_leaves_nothing,
        ),
    ];
    let mut arguments = libtest_mimic::Arguments::from_args();
    arguments.test_threads = Some(1);
    let available = Machines::from_env().is_some();
    let trials = tests
        .iter()
        .map(|&(name, test)| {
            libtest_mimic::Trial::test(name, move || halab_tests::as_trial(test)).with_ignored_flag(!available)
        })
        .collect();
    libtest_mimic::run(&arguments, trials).exit()
}

/// The seed's hosts placed as the issue asks: Redis (and the router) on m1, haproxy1 on m2, haproxy2 and the
/// client on m3.
fn seed_place(host: &str) -> &'static str {
    match host {
        "haproxy1" => "m2",
        "haproxy2" | "redisclient" => "m3",
        _ => "m1",
    }
}

/// A topology file of the workspace, spread over the machines, under a unique lab name. Its text names this
/// checkout's files (`{dir}`), which every machine sees at the same path.
fn spread(machines: &Machines, file: &str, prefix: &str) -> Topology {
    let path = halab_tests::workspace_file(file);
    let text = machines.spread(&std::fs::read_to_string(&path).unwrap(), seed_place);
    Topology::parse(&text, &path)
        .unwrap()
        .renamed(&halab_tests::unique_name(prefix))
        .unwrap()
}

fn wait(lab: &Lab, after_ns: u64, limit: Duration, what: &str, wanted: impl Fn(&Event) -> bool) -> Event {
    lab.events()
        .wait_for(limit, |e| e.at_ns >= after_ns && wanted(e))
        .unwrap_or_else(|| panic!("no {what} within {limit:?}:\n{}", lab.timeline().text()))
}

fn wait_state(lab: &Lab, host: &str, state: &str, after_ns: u64, limit: Duration) -> Event {
    wait(lab, after_ns, limit, &format!("{host} entering {state}"), |e| {
        is_state(e, host, state)
    })
}

/// Injects a fault and returns its events (`count` of them: a cut both ways is two halves), each stamped on the
/// machine that carried it out, in time order.
fn fault_events(lab: &mut Lab, targets: &str, words: &str, count: usize) -> Vec<Event> {
    let words: Vec<String> = words.split_whitespace().map(str::to_string).collect();
    let before = lab.events().end();
    let targets: Vec<&str> = targets.split(',').collect();
    lab.inject(&targets, &Fault::parse(&words).unwrap()).unwrap();
    // Remote events arrive a moment after the fault's SSH session ends.
    let deadline = std::time::Instant::now() + SLACK;
    let mut cursor = before;
    let mut found = Vec::new();
    while found.len() < count {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        assert!(
            !left.is_zero(),
            "{count} `{}` fault events, {} seen",
            words[0],
            found.len()
        );
        let batch = lab.events().since(cursor, left);
        cursor = batch.next;
        found.extend(batch.events.into_iter().filter(
            |e| matches!(&e.kind, EventKind::Fault { fault } if fault.split_whitespace().any(|w| w == words[0])),
        ));
    }
    found.sort_by_key(|e| e.at_ns);
    found
}

fn fault(lab: &mut Lab, targets: &str, words: &str) -> Event {
    fault_events(lab, targets, words, 1).remove(0)
}

fn elapsed(from: &Event, to: &Event) -> Duration {
    Duration::from_nanos(to.at_ns.saturating_sub(from.at_ns))
}

fn text(output: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// `redis-cli` through the VIP from redisclient, as the seed runs it; retried until it answers `expected` or
/// `limit` passes.
fn redis_through_vip(lab: &Lab, arguments: &[&str], expected: &str, limit: Duration) {
    let ca = format!("/run/lab/{}/tls/ca.crt", lab.name());
    let mut argv = vec!["timeout", "5", "redis-cli", "-h", "10.0.0.31", "--tls", "--cacert", &ca];
    argv.extend_from_slice(arguments);
    let started = std::time::Instant::now();
    loop {
        let output = lab.exec("redisclient", &argv).unwrap();
        let said = text(&output);
        if said.trim() == expected {
            return;
        }
        assert!(
            started.elapsed() < limit,
            "redis-cli {arguments:?} said {said:?} for {limit:?}"
        );
        std::thread::sleep(Duration::from_secs(1));
    }
}

fn mac_of(lab: &Lab, host: &str) -> String {
    text(&lab.exec(host, &["cat", "/sys/class/net/eth0/address"]).unwrap())
        .trim()
        .to_string()
}

fn no_leftovers(machines: &Machines, lab: &str) {
    for (machine, _) in &machines.machines {
        let left = machines.leftovers(machine, lab);
        assert!(left.is_empty(), "lab {lab} left on {machine}: {left}");
    }
    assert!(
        !std::path::Path::new("/run/lab").join(lab).exists(),
        "lab {lab} left its run directory here"
    );
}

/// The seed's experiment with its hosts on three machines: set and get through the VIP, the election across
/// machines, haproxy1's crash moving the VIP to haproxy2 (the client's ARP entry following the gratuitous ARP
/// over VXLAN), and haproxy1's return preempting; one timeline with every machine's clock on the coordinator's.
fn seed_split_across_three_machines() {
    let machines = Machines::get();
    let topology = spread(&machines, "topologies/vlan.toml", "spread");
    let name = topology.name.clone();
    let mut lab = Lab::up(&topology).unwrap();
    wait_state(&lab, "haproxy1", "MASTER", 0, STARTUP);
    redis_through_vip(&lab, &["SET", "scott", "tiger"], "OK", STARTUP);
    redis_through_vip(&lab, &["GET", "scott"], "tiger", SLACK);

    let crash = fault(&mut lab, "haproxy1", "crash vrrpd");
    let master = wait_state(&lab, "haproxy2", "MASTER", crash.at_ns, MASTER_DOWN_INTERVAL + SLACK);
    assert!(
        elapsed(&crash, &master) <= MASTER_DOWN_INTERVAL + SLACK,
        "haproxy2 took over {:?} after the crash",
        elapsed(&crash, &master)
    );
    let haproxy2_mac = mac_of(&lab, "haproxy2");
    let started = std::time::Instant::now();
    loop {
        let neighbour = text(&lab.exec("redisclient", &["ip", "neigh", "show", "10.0.0.31"]).unwrap());
        if neighbour.contains(&haproxy2_mac) {
            break;
        }
        assert!(
            started.elapsed() < SLACK,
            "redisclient's ARP entry for the VIP is {neighbour:?}, not haproxy2's {haproxy2_mac}"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    redis_through_vip(&lab, &["GET", "scott"], "tiger", SLACK * 3);

    let start = fault(&mut lab, "haproxy1", "start vrrpd");
    wait_state(
        &lab,
        "haproxy1",
        "MASTER",
        start.at_ns,
        MASTER_DOWN_INTERVAL + SLACK + STARTUP,
    );
    wait_state(
        &lab,
        "haproxy2",
        "BACKUP",
        start.at_ns,
        MASTER_DOWN_INTERVAL + SLACK + STARTUP,
    );

    let timeline = lab.timeline();
    let story = timeline.text();
    for machine in ["m1", "m2", "m3"] {
        assert!(story.contains(&format!("machine {machine}'s clock is")), "{story}");
        assert!(story.contains(&format!("[{machine} ±")), "{story}");
    }
    // The last estimate of each machine's clock, for the log.
    for machine in ["m1", "m2", "m3"] {
        let wanted = format!("machine {machine}'s clock is");
        println!("{}", story.lines().rfind(|l| l.contains(&wanted)).unwrap());
    }
    lab.down().unwrap();
    no_leftovers(&machines, &name);
}

/// The underlay between haproxy1's machine and haproxy2's cut: each side hears nothing of the other and both are
/// master; mended, haproxy2 hears haproxy1's higher priority and steps back.
fn underlay_cut_splits_the_brain() {
    let machines = Machines::get();
    let topology = spread(&machines, "topologies/vlan-vrrp.toml", "cut");
    let name = topology.name.clone();
    let mut lab = Lab::up(&topology).unwrap();
    wait_state(&lab, "haproxy1", "MASTER", 0, STARTUP);
    // haproxy2 is BACKUP from its start, or steps back to it from an early MASTER when haproxy1's adverts arrive.
    wait_state(&lab, "haproxy2", "BACKUP", 0, STARTUP);

    // Two halves: m2 stops sending to m3, and m3 to m2.
    let halves = fault_events(&mut lab, "m2", "cut m3", 2);
    let (cut, cut_done) = (&halves[0], &halves[1]);
    let master = wait_state(&lab, "haproxy2", "MASTER", cut.at_ns, MASTER_DOWN_INTERVAL + SLACK * 2);
    // haproxy1 stays master all along: a split brain.
    std::thread::sleep(Duration::from_secs(3));
    let stepped_back = (lab.timeline())
        .find(|e| e.at_ns >= cut.at_ns && is_state(e, "haproxy1", "BACKUP"))
        .count();
    assert_eq!(
        stepped_back,
        0,
        "haproxy1 left MASTER during the cut:\n{}",
        lab.timeline().text()
    );

    let mend = fault(&mut lab, "m2", "mend");
    let backup = wait_state(
        &lab,
        "haproxy2",
        "BACKUP",
        mend.at_ns,
        Duration::from_secs(1) + SLACK * 2,
    );
    assert!(backup.at_ns > master.at_ns);
    // While cut, neither machine's wire saw the other side's adverts (each its own side's, yes).
    let timeline = lab.timeline();
    let heard = |machine: &str, from: &str| {
        (timeline.find(|e| e.at_ns > cut_done.at_ns + 100_000_000 && e.at_ns < mend.at_ns))
            .filter(|e| e.clock.as_ref().is_some_and(|c| c.machine == machine))
            .filter(|e| matches!(&e.kind, EventKind::Vrrp { from: f, .. } if f.to_string() == from))
            .count()
    };
    assert_eq!(heard("m2", "10.0.0.23"), 0, "m2 saw haproxy2's adverts during the cut");
    assert_eq!(heard("m3", "10.0.0.21"), 0, "m3 saw haproxy1's adverts during the cut");
    assert!(
        heard("m3", "10.0.0.23") > 0,
        "m3 saw none of haproxy2's own adverts during the cut"
    );
    assert!(
        heard("m2", "10.0.0.21") > 0,
        "m2 saw none of haproxy1's own adverts during the cut"
    );
    lab.down().unwrap();
    no_leftovers(&machines, &name);
}

/// An unreachable machine, or one whose kernel lacks VXLAN: `lab up` fails naming it, before anything is built
/// anywhere.
fn unready_machines_fail_before_building() {
    let machines = Machines::get();
    // A machine nobody answers for.
    let path = halab_tests::workspace_file("topologies/vlan-vrrp.toml");
    let place = |host: &str| if host == "haproxy2" { "m9" } else { seed_place(host) };
    let gone = machines.spread(&std::fs::read_to_string(&path).unwrap(), place)
        + &machines.entry("m9", "192.168.77.99".parse().unwrap());
    let topology = Topology::parse(&gone, &path)
        .unwrap()
        .renamed(&halab_tests::unique_name("gone"))
        .unwrap();
    let error = Lab::up(&topology)
        .err()
        .expect("a lab on an unreachable machine")
        .to_string();
    assert!(error.contains("machine m9 (m9) is unreachable"), "{error}");
    no_leftovers(&machines, &topology.name);

    // m2 without VXLAN: the module unloaded, and loading it refused.
    let hide = "rmmod vxlan && echo 'install vxlan /bin/false' > /etc/modprobe.d/halab-no-vxlan.conf";
    let hidden = machines.ssh("m2", hide);
    assert!(hidden.status.success(), "{}", text(&hidden));
    let topology = spread(&machines, "topologies/vlan-vrrp.toml", "novxlan");
    let result = Lab::up(&topology).err().map(|e| e.to_string());
    let restored = machines.ssh("m2", "rm /etc/modprobe.d/halab-no-vxlan.conf && modprobe vxlan");
    assert!(restored.status.success(), "{}", text(&restored));
    let error = result.expect("a lab on a machine without VXLAN");
    assert!(error.contains("machine m2") && error.contains("vxlan"), "{error}");
    assert!(
        !error.contains("machine m1") && !error.contains("machine m3"),
        "{error}"
    );
    no_leftovers(&machines, &topology.name);
}

/// The coordinator's runner (a detached `lab up`) killed outright: each part hears its session end and takes itself
/// down, and `lab down` on the coordinator removes what is left here and asks every machine.
fn killed_coordinator_leaves_nothing() {
    let machines = Machines::get();
    let lab_binary = halab_tests::workspace_binary("lab");
    let name = halab_tests::unique_name("killed");
    // A file beside the topology it spreads, so `{dir}` is the same; removed at once (the parts get its text).
    let source = halab_tests::workspace_file("topologies/vlan-vrrp.toml");
    let spread_text = machines.spread(&std::fs::read_to_string(&source).unwrap(), seed_place);
    let file = source.with_file_name(format!(".{name}.toml"));
    std::fs::write(&file, spread_text).unwrap();
    let up = std::process::Command::new(&lab_binary)
        .args(["up", "--detach", "--name", &name])
        .arg(&file)
        .output()
        .unwrap();
    std::fs::remove_file(&file).unwrap();
    assert!(up.status.success(), "{}", text(&up));
    let paths = lab::names::LabPaths::new(&name).unwrap();
    let state = lab::state::LabState::load(&paths).unwrap();
    assert_eq!(state.remotes.len(), 3, "{:?}", state.remotes);
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(state.runner_pid as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    // The parts go when their sessions end (or, were the network gone too, when the heartbeats stop).
    let patience = lab::machines::remote::HEARTBEAT_PATIENCE + SLACK * 3;
    let started = std::time::Instant::now();
    for (machine, _) in &machines.machines {
        loop {
            let left = machines.leftovers(machine, &name);
            if left.is_empty() {
                break;
            }
            assert!(
                started.elapsed() < patience,
                "lab {name} still on {machine} after {patience:?}: {left}"
            );
            std::thread::sleep(Duration::from_secs(1));
        }
    }
    let down = std::process::Command::new(&lab_binary)
        .args(["down", &name])
        .output()
        .unwrap();
    assert!(down.status.success(), "{}", text(&down));
    no_leftovers(&machines, &name);
}

/// m2 powers off while the lab is being built: `lab up` fails, and nothing of the lab is left on the others (nor
/// here). Last: m2 stays off.
fn machine_dying_during_up_leaves_nothing() {
    let machines = Machines::get();
    let topology = spread(&machines, "topologies/vlan-vrrp.toml", "dying");
    let name = topology.name.clone();
    let up = std::thread::spawn(move || Lab::up(&topology).err().map(|e| e.to_string()));
    // m2's part exists once its run directory does.
    let started = std::time::Instant::now();
    while !text(&machines.ssh("m2", &format!("ls -d /run/lab/{name}"))).contains(&name) {
        assert!(started.elapsed() < STARTUP, "m2's part never started");
        std::thread::sleep(Duration::from_millis(200));
    }
    let _ = std::process::Command::new("timeout")
        .arg("5")
        .arg("ssh")
        .arg("-F")
        .arg(&machines.ssh_config)
        .args(["m2", "echo o > /proc/sysrq-trigger"])
        .output();
    let error = up.join().unwrap().expect("a lab whose machine died while it was built");
    assert!(error.contains("machine m2"), "{error}");
    for machine in ["m1", "m3"] {
        let left = machines.leftovers(machine, &name);
        assert!(left.is_empty(), "lab {name} left on {machine}: {left}");
    }
    assert!(!std::path::Path::new("/run/lab").join(&name).exists());
}
