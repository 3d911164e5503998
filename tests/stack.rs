//! The seed's whole stack in the lab: three redis-server and three Sentinels from Debian over TLS, two proxy hosts
//! sharing the VIP through our VRRP agent, and a client on redisclient; with our sentinel-proxy (vlan.toml) and,
//! for comparison, with HAProxy 2.6 (vlan-haproxy.toml). Bounds come from the protocols: Master_Down_Interval for
//! the VIP, the Sentinels' own announcements for Redis.
//!
//! Each test builds its own lab. They spend their time waiting on Sentinel and VRRP timers, so the runner
//! (libtest-mimic) runs four at once unless `--test-threads` says otherwise.

use std::net::SocketAddrV4;
use std::time::{Duration, Instant};

use halab_tests::failover::{eventually, since, Vrrp};
use halab_tests::stack::{acknowledged, host_of, redis_hosts, tally, Outcome, Proxy, Stack, INITIAL_MASTER};
use lab::events::monotonic_ns;
use lab::{EventKind, Fault};

fn main() {
    // The failover tests first: test 3's 100 ms bound is about the proxy, not about how many labs share two CPUs,
    // so at most four labs run at once and the short tests fill in as the long ones end.
    let tests: &[(&str, fn())] = &[
        ("3_master_crash", || master_crash(Proxy::Ours)),
        ("3_master_crash_haproxy", || master_crash(Proxy::HAProxy)),
        ("4_restart_and_manual_failover_lose_nothing", || {
            restart_and_manual_failover(Proxy::Ours)
        }),
        ("4_restart_and_manual_failover_haproxy", || {
            restart_and_manual_failover(Proxy::HAProxy)
        }),
        ("5_restart_and_manual_failover_20ms_from_the_proxies_to_redis", || {
            restart_and_manual_failover_with(Proxy::Ours, "stack5", slow_redis_links)
        }),
        ("1_set_and_get_through_the_vip", || {
            set_and_get_through_the_vip(Proxy::Ours)
        }),
        ("1_set_and_get_through_the_vip_haproxy", || {
            set_and_get_through_the_vip(Proxy::HAProxy)
        }),
        ("2_reboot_of_haproxy1_while_reading", reboot_of_haproxy1_while_reading),
        ("6_open_file_limit_with_idle_clients", open_file_limit_with_idle_clients),
    ];
    halab_tests::run_tests(tests, 4);
}

fn fault(stack: &mut Stack, host: &str, words: &str) -> u64 {
    let words: Vec<String> = words.split_whitespace().map(str::to_string).collect();
    let at = monotonic_ns();
    stack.lab.fault(host, &Fault::parse(&words).unwrap()).unwrap();
    at
}

fn text(output: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// The Prometheus text of the proxy on `host`, fetched from redisclient.
fn proxy_metrics(stack: &Stack, host: &str) -> String {
    let url = format!("http://{host}:9121/metrics");
    text(
        &stack
            .lab
            .exec("redisclient", &["curl", "-sS", "-m", "2", &url])
            .unwrap(),
    )
}

/// Test 1: the seed's client command through the VIP, and the firewall keeping the client off the Redis hosts.
fn set_and_get_through_the_vip(proxy: Proxy) {
    let stack = Stack::up("stack1", proxy);
    let set = stack.redis_cli("redisclient", "vlan-haproxy", &["set", "scott", "tiger"]);
    assert_eq!(text(&set).trim(), "OK", "{}", text(&set));
    let get = stack.redis_cli("redisclient", "vlan-haproxy", &["get", "scott"]);
    assert_eq!(text(&get).trim(), "tiger", "{}", text(&get));
    for (host, _) in redis_hosts() {
        let direct = stack.redis_cli("redisclient", host, &["ping"]);
        assert!(
            !direct.status.success() && !text(&direct).contains("PONG"),
            "redisclient reached {host}:6379 directly: {}",
            text(&direct)
        );
        // The proxy hosts may (the same command from haproxy1 answers), so the refusal above is the firewall's.
        let allowed = stack.redis_cli("haproxy1", host, &["ping"]);
        assert!(
            text(&allowed).contains("PONG"),
            "haproxy1 -> {host}: {}",
            text(&allowed)
        );
    }
    if proxy == Proxy::Ours {
        // The VIP holder's metrics name the master and count the clients it relayed.
        let metrics = proxy_metrics(&stack, "vlan-haproxy1");
        assert!(
            metrics.contains(&format!("sentinel_proxy_master{{address=\"{INITIAL_MASTER}\"}} 1")),
            "{metrics}"
        );
        let relayed: u64 = metrics
            .lines()
            .find_map(|l| l.strip_prefix("sentinel_proxy_connections_total "))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0);
        assert!(relayed >= 2, "connections relayed: {relayed}\n{metrics}");
    }
    stack.finish();
}

/// Test 2: the seed's experiment. haproxy1 reboots while the client keeps reading `scott` through the VIP; the VIP
/// moves to haproxy2 and back (preemption), and every answer is "tiger".
fn reboot_of_haproxy1_while_reading() {
    let mut stack = Stack::up("stack2", Proxy::Ours);
    let set = stack.redis_cli("redisclient", "vlan-haproxy", &["set", "scott", "tiger"]);
    assert_eq!(text(&set).trim(), "OK");
    assert!(
        eventually(Duration::from_secs(10), || stack.holds_vip("haproxy1")),
        "haproxy1 never took the VIP"
    );
    let reader = stack.reader(Duration::from_millis(20));
    std::thread::sleep(Duration::from_secs(1));
    let rebooted = fault(&mut stack, "haproxy1", "reboot 6.6");
    // haproxy2 takes over within Master_Down_Interval of haproxy1's last advert; haproxy1 preempts after its own
    // Master_Down_Interval once back.
    let vrrp = Vrrp::SEED;
    let bound = vrrp.master_down(99) + vrrp.slack() + Duration::from_secs(1);
    let took_over = stack
        .lab
        .events()
        .wait_for(Duration::from_secs(15), |e| {
            e.at_ns > rebooted
                && e.host.as_deref() == Some("haproxy2")
                && matches!(&e.kind, EventKind::AddressAdded { address, .. } if address.starts_with("10.0.0.31/"))
        })
        .expect("haproxy2 never took the VIP");
    let back = stack
        .lab
        .events()
        .wait_for(Duration::from_secs(30), |e| {
            e.at_ns > took_over.at_ns
                && e.host.as_deref() == Some("haproxy1")
                && matches!(&e.kind, EventKind::AddressAdded { address, .. } if address.starts_with("10.0.0.31/"))
        })
        .expect("haproxy1 never took the VIP back");
    std::thread::sleep(Duration::from_secs(2));
    let attempts = reader.finish();
    let wrong: Vec<_> = attempts
        .iter()
        .filter(|a| matches!(a.outcome, Outcome::Refused(_)))
        .collect();
    assert!(wrong.is_empty(), "answers other than \"tiger\": {wrong:?}");
    let answered = |from: u64, to: u64| {
        attempts
            .iter()
            .any(|a| a.outcome == Outcome::Acknowledged && a.sent_ns > from && a.done_ns < to)
    };
    assert!(
        answered(took_over.at_ns, back.at_ns),
        "no answer while haproxy2 held the VIP"
    );
    assert!(
        answered(back.at_ns, monotonic_ns()),
        "no answer after haproxy1 took the VIP back"
    );
    let reading = tally(&attempts);
    assert!(
        reading.longest_gap <= bound,
        "reads stopped for {:?}, more than Master_Down_Interval + slack = {bound:?}",
        reading.longest_gap
    );
    println!(
        "reboot: {} reads answered \"tiger\", {} failed (reconnecting), longest gap {:?} (bound {bound:?}); VIP to \
         haproxy2 {:?} after the reboot, back on haproxy1 {:?} after that",
        reading.acknowledged,
        reading.failed,
        reading.longest_gap,
        since(rebooted, took_over.at_ns),
        since(took_over.at_ns, back.at_ns)
    );
    let get = stack.redis_cli("redisclient", "vlan-haproxy", &["get", "scott"]);
    assert_eq!(text(&get).trim(), "tiger");
    stack.finish();
}

/// The master the Sentinels agree on, other than `old`, waiting up to `limit`.
/// `SENTINEL FAILOVER mymaster` to the first Sentinel, answered OK; when it was asked (CLOCK_MONOTONIC ns).
fn manual_failover(stack: &Stack) -> u64 {
    let asked = monotonic_ns();
    let answer = stack
        .command(
            "haproxy1",
            halab_tests::stack::sentinels()[0],
            &["SENTINEL", "FAILOVER", "mymaster"],
        )
        .unwrap();
    assert_eq!(answer.as_text(), Some("OK"), "SENTINEL FAILOVER answered {answer}");
    asked
}

fn new_master(stack: &Stack, old: SocketAddrV4, limit: Duration) -> SocketAddrV4 {
    let started = Instant::now();
    loop {
        let named = stack.sentinels_name();
        if let Some(Some(master)) = named.first() {
            if *master != old && named.iter().all(|n| *n == Some(*master)) {
                return *master;
            }
        }
        assert!(
            started.elapsed() < limit,
            "no new master within {limit:?}: Sentinels name {named:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Test 3: the master's redis-server crashes; Sentinel promotes a replica; writes through the VIP succeed again
/// soon after a quorum of Sentinels published `+switch-master`.
fn master_crash(proxy: Proxy) {
    let mut stack = Stack::up("stack3", proxy);
    let old: SocketAddrV4 = INITIAL_MASTER.parse().unwrap();
    let writer = stack.writer(Duration::from_millis(10));
    std::thread::sleep(Duration::from_secs(1));
    let crashed = fault(&mut stack, host_of(old), "crash redis");
    let master = new_master(&stack, old, Duration::from_secs(30));
    std::thread::sleep(Duration::from_secs(2));
    let attempts = writer.finish();
    let announcements = stack.switch_announcements(crashed);
    assert!(
        announcements.len() >= 2,
        "fewer than 2 +switch-master: {announcements:?}"
    );
    let quorum_ns = announcements[1].1;
    let first_ack = attempts
        .iter()
        .find(|a| a.sent_ns > crashed && a.outcome == Outcome::Acknowledged)
        .unwrap_or_else(|| panic!("no write succeeded after the crash"));
    let after_quorum = first_ack.done_ns as i64 - quorum_ns as i64;
    // When the proxy on the VIP holder (haproxy1) started routing to the new master, for the message.
    let routed = stack.lab.events().all().into_iter().find(|e| {
        e.at_ns > crashed
            && e.host.as_deref() == Some("haproxy1")
            && matches!(&e.kind, EventKind::Daemon { kind, detail, .. }
                if kind == "route" && detail.get("master").and_then(|m| m.as_str()) == Some(&master.to_string()))
    });
    let routed = routed.map(|e| format!("{:.1} ms", (e.at_ns as i64 - quorum_ns as i64) as f64 / 1e6));
    let lost = stack.missing(master, &acknowledged(&attempts));
    let writes = tally(&attempts);
    if std::env::var_os("STACK_DEBUG").is_some() {
        for a in attempts
            .iter()
            .filter(|a| a.done_ns + 200_000_000 > quorum_ns && a.sent_ns <= first_ack.sent_ns)
        {
            println!(
                "  {} sent {:+.1} ms done {:+.1} ms {:?}",
                a.key,
                (a.sent_ns as i64 - quorum_ns as i64) as f64 / 1e6,
                (a.done_ns as i64 - quorum_ns as i64) as f64 / 1e6,
                a.outcome
            );
        }
    }
    println!(
        "{}: master crash: proxy routes to {master} {} after the quorum's +switch-master, first write acknowledged \
         {:.1} ms after it ({:.2} s after the crash); writes: {} acknowledged, {} refused, {} failed, longest gap {:?}; acknowledged but lost: {}",
        proxy.label(),
        routed.unwrap_or_else(|| "(no route event)".into()),
        after_quorum as f64 / 1e6,
        since(crashed, first_ack.done_ns).as_secs_f64(),
        writes.acknowledged,
        writes.refused,
        writes.failed,
        writes.longest_gap,
        lost.len()
    );
    if proxy == Proxy::Ours {
        assert!(
            after_quorum <= 100_000_000,
            "writes resumed {:.1} ms after the quorum published +switch-master (bound 100 ms)",
            after_quorum as f64 / 1e6
        );
        // The metrics tell the same story: one switch, the new master marked, the old one no longer.
        let metrics = proxy_metrics(&stack, "vlan-haproxy1");
        for line in [
            format!("sentinel_proxy_master{{address=\"{master}\"}} 1"),
            format!("sentinel_proxy_master{{address=\"{old}\"}} 0"),
            "sentinel_proxy_master_switches_total 1".to_string(),
        ] {
            assert!(metrics.lines().any(|l| l == line), "no `{line}` in\n{metrics}");
        }
        let refused: Vec<_> = attempts
            .iter()
            .filter(|a| matches!(a.outcome, Outcome::Refused(_)))
            .collect();
        assert!(
            refused.is_empty(),
            "Redis refused writes the proxy routed: {:?}",
            &refused[..refused.len().min(5)]
        );
    }
    stack.finish();
}

/// Test 4: after a failover the old master restarts (and says master for ~10 s until Sentinel converts it), then
/// an operator runs `SENTINEL FAILOVER`; a writer counts acknowledged SETs all along. With sentinel-proxy every one
/// of them is on the final master; HAProxy's losses are reported.
fn restart_and_manual_failover(proxy: Proxy) {
    restart_and_manual_failover_with(proxy, "stack4", |_| {})
}

/// Every frame to or from a Redis host (its server and its Sentinel) waits 20 ms: 20 ms each way between the
/// proxies and Redis, 40 ms between Redis hosts.
fn slow_redis_links(topology: &mut lab::Topology) {
    let delay = lab::impair::Impairment {
        delay: Duration::from_millis(20),
        ..Default::default()
    };
    for host in topology.hosts.iter_mut().filter(|h| h.name.starts_with("redis-")) {
        for interface in &mut host.interfaces {
            interface.impair = vec![
                (lab::impair::Direction::From, delay),
                (lab::impair::Direction::To, delay),
            ];
        }
    }
}

/// Test 4 on a topology changed by `edit` first.
fn restart_and_manual_failover_with(proxy: Proxy, prefix: &str, edit: fn(&mut lab::Topology)) {
    let mut stack = Stack::up_with(prefix, proxy, edit);
    let old: SocketAddrV4 = INITIAL_MASTER.parse().unwrap();
    let writer = stack.writer(Duration::from_millis(10));
    std::thread::sleep(Duration::from_secs(1));
    let crashed = fault(&mut stack, host_of(old), "crash redis");
    let promoted = new_master(&stack, old, Duration::from_secs(30));
    let restarted = fault(&mut stack, host_of(old), "start redis");
    // Sentinel converts the restarted node into a replica after it has seen it as master for 8 s.
    let converted = eventually(Duration::from_secs(30), || {
        stack
            .command("haproxy1", old, &["ROLE"])
            .map(|v| proxy::sentinel::role(&v) == Ok(proxy::sentinel::Role::Replica))
            .unwrap_or(false)
    });
    assert!(converted, "the old master was never made a replica");
    stack.settle(Duration::from_secs(30));
    let manual = manual_failover(&stack);
    let last = new_master(&stack, promoted, Duration::from_secs(30));
    std::thread::sleep(Duration::from_secs(1));
    let attempts = writer.finish();
    let final_master = stack.settle(Duration::from_secs(30));
    let lost = stack.missing(final_master, &acknowledged(&attempts));
    let sent_at = |key: &String| attempts.iter().find(|a| &a.key == key).map(|a| a.sent_ns).unwrap_or(0);
    let lost_after_restart = lost
        .iter()
        .filter(|k| (restarted..manual).contains(&sent_at(k)))
        .count();
    let lost_after_manual = lost.iter().filter(|k| sent_at(k) >= manual).count();
    let writes = tally(&attempts);
    if std::env::var_os("STACK_DEBUG").is_some() {
        let mut reasons = std::collections::BTreeMap::new();
        for attempt in &attempts {
            if let Outcome::Failed(why) = &attempt.outcome {
                *reasons.entry(why.clone()).or_insert(0) += 1;
            }
        }
        println!("failures by reason: {reasons:?}");
    }
    println!(
        "{}: crash -> {promoted}, old master restarted, SENTINEL FAILOVER -> {last} (final {final_master}); writes: \
         {} acknowledged, {} refused (e.g. -READONLY), {} failed; acknowledged but lost: {} ({} after the restart, {} \
         after SENTINEL FAILOVER); crash at +0, restart at +{:.1} s",
        proxy.label(),
        writes.acknowledged,
        writes.refused,
        writes.failed,
        lost.len(),
        lost_after_restart,
        lost_after_manual,
        since(crashed, restarted).as_secs_f64()
    );
    if proxy == Proxy::Ours {
        let context = |key: &String| {
            let attempt = attempts.iter().find(|a| &a.key == key).unwrap();
            let lines: Vec<String> = stack
                .lab
                .timeline()
                .text()
                .lines()
                .filter(|l| {
                    [
                        "proxy event",
                        "failover",
                        "switch",
                        "MASTER MODE",
                        "selected",
                        "promoted",
                    ]
                    .iter()
                    .any(|w| l.contains(w))
                })
                .map(str::to_string)
                .collect();
            format!(
                "{key} sent at {} ns, acknowledged at {} ns\n{}",
                attempt.sent_ns,
                attempt.done_ns,
                lines.join("\n")
            )
        };
        assert!(
            lost.is_empty(),
            "{} acknowledged writes lost: {:?}\n{}",
            lost.len(),
            &lost[..lost.len().min(10)],
            lost.first().map(context).unwrap_or_default()
        );
    }
    stack.finish();
}

/// The proxies run under `ulimit -n 256` (prlimit) with two relay threads.
fn limit_open_files(topology: &mut lab::Topology) {
    for host in &mut topology.hosts {
        for service in host.services.iter_mut().filter(|s| s.name == "proxy") {
            let mut argv = vec!["prlimit".to_string(), "--nofile=256".into(), "--".into()];
            argv.append(&mut service.argv);
            argv.extend(["--threads".to_string(), "2".into()]);
            service.argv = argv;
        }
    }
}

/// Opens `count` TCP connections from redisclient to the VIP and sends nothing: the ones the proxy closes at once
/// (within `patience`) are counted, the others returned, still open.
fn idle_clients(stack: &Stack, count: usize, patience: Duration) -> (Vec<std::net::TcpStream>, usize) {
    let vip: std::net::SocketAddr = "10.0.0.31:6379".parse().unwrap();
    halab_tests::stack::in_host(&stack.lab, "redisclient", move || {
        Box::pin(async move {
            let clients: Vec<std::net::TcpStream> =
                (0..count).map(|_| std::net::TcpStream::connect(vip).unwrap()).collect();
            let mut open = Vec::new();
            let mut closed = 0;
            for mut client in clients {
                client.set_read_timeout(Some(patience)).unwrap();
                match std::io::Read::read(&mut client, &mut [0u8; 16]) {
                    Ok(0) => closed += 1,
                    Ok(_) => panic!("an idle client was sent something"),
                    Err(_) => open.push(client),
                }
            }
            (open, closed)
        })
    })
}

/// Test 6: each proxy under `ulimit -n 256` fits its connection limit to it and keeps descriptors for its checks;
/// 200 idle clients fill it, the rest are closed at once, and a SENTINEL FAILOVER still moves the route with no
/// acknowledged write lost.
fn open_file_limit_with_idle_clients() {
    let stack = Stack::up_with("stack5", Proxy::Ours, limit_open_files);
    let metrics = proxy_metrics(&stack, "vlan-haproxy1");
    let limit: usize = metrics
        .lines()
        .find_map(|l| l.strip_prefix("sentinel_proxy_connection_limit "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("{metrics}"));
    // Two relay threads, one frontend, three Sentinels and three servers keep 85 of 256: (256 - 85) / 2.
    assert_eq!(limit, 85, "{metrics}");

    let (mut open, closed) = idle_clients(&stack, 200, Duration::from_millis(300));
    assert_eq!(
        (open.len(), closed),
        (limit, 200 - limit),
        "idle clients kept and closed"
    );

    // Room for the writer, then a manual failover while the rest stay idle.
    open.truncate(limit - 20);
    let writer = stack.writer(Duration::from_millis(10));
    std::thread::sleep(Duration::from_secs(1));
    let old = stack.settle(Duration::from_secs(10));
    let manual = manual_failover(&stack);
    let promoted = new_master(&stack, old, Duration::from_secs(30));
    let routed = eventually(Duration::from_secs(10), || {
        proxy_metrics(&stack, "vlan-haproxy1").contains(&format!("sentinel_proxy_master{{address=\"{promoted}\"}} 1"))
    });
    assert!(routed, "the proxy never routed to {promoted}");
    std::thread::sleep(Duration::from_secs(1));
    let attempts = writer.finish();
    let final_master = stack.settle(Duration::from_secs(30));
    let lost = stack.missing(final_master, &acknowledged(&attempts));
    let after: Vec<_> = attempts
        .iter()
        .filter(|a| a.sent_ns > manual && a.outcome == Outcome::Acknowledged)
        .collect();
    let writes = tally(&attempts);
    println!(
        "open-file limit 256: {limit} clients relayed at most, {closed} of 200 idle clients closed at once; \
         SENTINEL FAILOVER {old} -> {promoted}; writes {} acknowledged ({} after the failover), {} refused, {} \
         failed, {} acknowledged but lost",
        writes.acknowledged,
        after.len(),
        writes.refused,
        writes.failed,
        lost.len()
    );
    assert!(lost.is_empty(), "acknowledged writes lost: {lost:?}");
    assert!(!after.is_empty(), "no write was acknowledged after the failover");
    // The idle clients were relayed to the old master: the switch cut them.
    for mut client in open {
        client.set_read_timeout(Some(Duration::from_secs(1))).unwrap();
        assert!(
            matches!(std::io::Read::read(&mut client, &mut [0u8; 16]), Ok(0)),
            "an idle client outlived the switch"
        );
    }
    stack.finish();
}
