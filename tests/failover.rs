//! The seed's failover, proven in the lab: the ten scenario files of `scenarios/` (real namespaces, our VRRP
//! agent running the seed's keepalived.conf files, faults as production has them), played by the same engine as
//! `lab test`. Each file's deadlines come from VRRP's formulas and each ends with a timeline snapshot stored
//! beside it (`scenarios/snapshots/`); `lab test scenarios/ --update` accepts new ones.
//!
//! Each scenario builds its own lab under a unique name. They spend their time waiting on protocol timers, so the
//! runner (libtest-mimic) starts all of them at once unless `--test-threads` says otherwise.

use std::path::PathBuf;
use std::time::Duration;

use halab_tests::failover::{is_state, Scenario, Vrrp};
use halab_tests::scenarios::{files_in, play};
use lab::EventKind;

fn main() {
    let files: Vec<PathBuf> = files_in("scenarios");
    assert!(files.len() >= 12, "the twelve failover scenarios: {files:?}");
    let mut arguments = libtest_mimic::Arguments::from_args();
    arguments.test_threads = arguments.test_threads.or(Some(files.len()));
    let advert_loss = libtest_mimic::Trial::test("13-advert-loss", || {
        advert_loss();
        Ok(())
    });
    let trials = files
        .into_iter()
        .map(|file| {
            let name = file.file_stem().unwrap().to_string_lossy().into_owned();
            libtest_mimic::Trial::test(name, move || {
                let outcome = play(&file, "fo");
                match outcome.failure() {
                    None => Ok(()),
                    Some(failure) => Err(failure.into()),
                }
            })
        })
        .chain([advert_loss])
        .collect();
    libtest_mimic::run(&arguments, trials).exit()
}

/// 30 % of haproxy1's frames are lost on their way to the switch, adverts included. The backup takes over when no
/// advert reaches it for Master_Down_Interval (three lost in a row at advert_int 1), and at no other time: each gap
/// in what haproxy2 received is matched against its takeovers. Which gaps occur is chance; the rule is not.
fn advert_loss() {
    let mut scenario = Scenario::seed("al");
    let master_down = Vrrp::SEED.master_down(99);
    scenario.wait_state(
        "haproxy1",
        "MASTER",
        0,
        Vrrp::SEED.master_down(100) + Duration::from_secs(2),
    );
    let start = scenario.fault("haproxy1", "loss 30");
    std::thread::sleep(Duration::from_secs(30));
    let end = start + 30_000_000_000;
    let events = scenario.lab.timeline().events().to_vec();
    let daemon = |host: &str, wanted: &str| -> Vec<u64> {
        (events.iter())
            .filter(|e| e.at_ns >= start && e.at_ns <= end && e.host.as_deref() == Some(host))
            .filter(|e| {
                matches!(&e.kind, EventKind::Daemon { kind, detail, .. }
                if kind == wanted && (wanted != "advert_received"
                    || detail.get("from").and_then(|f| f.as_str()) == Some("10.0.0.21")))
            })
            .map(|e| e.at_ns)
            .collect()
    };
    let (sent, received) = (daemon("haproxy1", "advert_sent"), daemon("haproxy2", "advert_received"));
    let lost = sent.len().saturating_sub(received.len());
    let (n, p) = (sent.len() as f64, 0.30);
    assert!(
        (lost as f64 - n * p).abs() <= 5.0 * (n * p * (1.0 - p)).sqrt() && lost > 0,
        "{lost} of {} adverts lost at 30 %",
        sent.len()
    );
    // Every silence longer than Master_Down_Interval is one takeover; a silence within 100 ms of it could go
    // either way and is not counted against the agent.
    let mut edges = vec![start];
    edges.extend(&received);
    edges.push(end);
    let gaps: Vec<Duration> = edges.windows(2).map(|w| Duration::from_nanos(w[1] - w[0])).collect();
    let near = |gap: &&Duration| gap.abs_diff(master_down) <= Duration::from_millis(100);
    let certain = gaps.iter().filter(|g| **g > master_down && !near(g)).count();
    let possible = certain + gaps.iter().filter(near).count();
    let takeovers = (events.iter())
        .filter(|e| e.at_ns >= start && e.at_ns <= end && is_state(e, "haproxy2", "MASTER"))
        .count();
    assert!(
        (certain..=possible).contains(&takeovers),
        "{takeovers} takeovers for gaps {gaps:?} (Master_Down_Interval {master_down:?})"
    );
    println!(
        "13-advert-loss: {lost} of {} adverts lost, {certain} silences over Master_Down_Interval, {takeovers} takeovers",
        sent.len()
    );
    scenario.fault("haproxy1", "clear");
    scenario.finish();
}
