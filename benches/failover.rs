//! Failover detection, ours against keepalived 2.2.7 in the same run, on the seed's lab and configs.
//!
//! For each implementation: crash the master (SIGKILL) N times and measure, on the backup, from the last advert
//! it received from the master to the VIP appearing on its interface (both seen from inside the backup's
//! namespace: a raw socket for adverts, netlink for addresses). Subtracting the theoretical Master_Down_Interval
//! (3.61328125 s for priority 99) leaves the implementation's overhead. Then stop the master gracefully N times
//! and measure from its priority-0 advert to the VIP on the backup, against Skew_Time (0.61328125 s).
//!
//! `cargo bench --bench failover` as root (keepalived installed); `-- N` to change the count (default 20).

use std::time::Duration;

use halab_tests::vrrp::{bare_lab, holds_vip, wait_vip, Agent, Daemon, Observer, Seen, VIP};

const MDI_BACKUP: Duration = Duration::from_nanos(3_613_281_250);
const SKEW_BACKUP: Duration = Duration::from_nanos(613_281_250);
const MDI_MASTER: Duration = Duration::from_nanos(3_609_375_000);
const H1_CONF: &str = "topologies/keepalived-haproxy1.conf";
const H2_CONF: &str = "topologies/keepalived-haproxy2.conf";

fn main() {
    if !nix::unistd::Uid::effective().is_root() {
        eprintln!("the benchmark builds namespaces: run it as root");
        std::process::exit(2);
    }
    let runs: usize = std::env::args().skip(1).find_map(|arg| arg.parse().ok()).unwrap_or(20);
    let mut rows = Vec::new();
    for agent in [Agent::Ours, Agent::Keepalived] {
        let (crash, graceful) = measure(agent, runs);
        rows.push((agent, crash, graceful));
    }
    println!("\nfailover overhead above theory, {runs} runs each (ms; median / worst)");
    println!(
        "{:<12} {:>24} {:>26}",
        "agent", "crash: minus MDI 3.613 s", "stop: minus Skew 0.613 s"
    );
    for (agent, crash, graceful) in &rows {
        println!(
            "{:<12} {:>11.2} / {:>9.2} {:>13.2} / {:>9.2}",
            format!("{agent:?}"),
            median(crash),
            worst(crash),
            median(graceful),
            worst(graceful)
        );
    }
    let (ours, theirs) = (&rows[0], &rows[1]);
    println!(
        "median overhead, ours - keepalived: crash {:+.2} ms, stop {:+.2} ms",
        median(&ours.1) - median(&theirs.1),
        median(&ours.2) - median(&theirs.2)
    );
}

/// Overheads in milliseconds (crash, graceful stop).
fn measure(agent: Agent, runs: usize) -> (Vec<f64>, Vec<f64>) {
    let (lab, dir) = bare_lab("bfo");
    let observer = Observer::start(lab.netns_path("haproxy2").unwrap());
    let _h2 = Daemon::start(&lab, "haproxy2", agent, H2_CONF, &dir);
    let mut h1 = Daemon::start(&lab, "haproxy1", agent, H1_CONF, &dir);
    let settle = |lab: &lab::Lab| {
        wait_vip(lab, "haproxy1", MDI_MASTER + Duration::from_secs(3));
        while holds_vip(lab, "haproxy2") {
            std::thread::sleep(Duration::from_millis(10));
        }
        std::thread::sleep(Duration::from_millis(1300));
    };
    settle(&lab);
    let mut crash = Vec::new();
    for run in 0..runs {
        let earlier = observer.drain();
        h1.crash();
        let (added, before) = observer
            .wait_for(
                Duration::from_secs(10),
                |seen| matches!(seen, Seen::AddressAdded { address, .. } if address.to_string() == VIP),
            )
            .expect("the backup took the VIP");
        let last = earlier
            .iter()
            .chain(&before)
            .rev()
            .find_map(|seen| match seen {
                Seen::Advert { at, from, priority } if from.octets()[3] == 21 && *priority > 0 => Some(*at),
                _ => None,
            })
            .expect("an advert from haproxy1 before the crash");
        let Seen::AddressAdded { at, .. } = added else {
            unreachable!()
        };
        let overhead = (at - last).as_secs_f64() * 1e3 - MDI_BACKUP.as_secs_f64() * 1e3;
        eprintln!("{agent:?} crash {run}: {:.2} ms above MDI", overhead);
        crash.push(overhead);
        h1 = Daemon::start(&lab, "haproxy1", agent, H1_CONF, &dir);
        settle(&lab);
    }
    let mut graceful = Vec::new();
    for run in 0..runs {
        observer.drain();
        h1.stop();
        let is_vip = |seen: &Seen| matches!(seen, Seen::AddressAdded { address, .. } if address.to_string() == VIP);
        let (added, before) = observer
            .wait_for(Duration::from_secs(10), is_vip)
            .expect("the backup took the VIP");
        let zero = before
            .iter()
            .find_map(|seen| match seen {
                Seen::Advert { at, from, priority: 0 } if from.octets()[3] == 21 => Some(*at),
                _ => None,
            })
            .expect("a priority-0 advert from haproxy1");
        let Seen::AddressAdded { at, .. } = added else {
            unreachable!()
        };
        let overhead = (at - zero).as_secs_f64() * 1e3 - SKEW_BACKUP.as_secs_f64() * 1e3;
        eprintln!("{agent:?} stop {run}: {:.2} ms above Skew_Time", overhead);
        graceful.push(overhead);
        h1 = Daemon::start(&lab, "haproxy1", agent, H1_CONF, &dir);
        settle(&lab);
    }
    drop(h1);
    drop(observer);
    lab.down().unwrap();
    let _ = std::fs::remove_dir_all(dir);
    (crash, graceful)
}

fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    sorted[sorted.len() / 2]
}

fn worst(values: &[f64]) -> f64 {
    values.iter().copied().fold(f64::MIN, f64::max)
}
