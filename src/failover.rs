//! The seed's lab as failover scenarios use it: its VRRP figures, variants of its keepalived.conf files, waits on
//! the lab's timeline, and snapshots in terms of the protocol's own durations.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use lab::events::monotonic_ns;
use lab::{Event, EventKind, Fault, Lab};

use crate::{vrrp_topology, workspace_file};

pub const VIP: &str = "10.0.0.31";

/// The timers of a VRRP instance, from RFC 3768 (v2) and RFC 5798 (v3).
#[derive(Debug, Clone, Copy)]
pub struct Vrrp {
    pub version: u8,
    pub interval: Duration,
}

impl Vrrp {
    /// The seed: VRRPv2, advert_int 1.
    pub const SEED: Vrrp = Vrrp {
        version: 2,
        interval: Duration::from_secs(1),
    };

    /// Skew_Time: (256 - priority) / 256 s in v2, times Master_Adver_Interval in v3.
    pub fn skew(&self, priority: u8) -> Duration {
        let unit = if self.version == 3 {
            self.interval
        } else {
            Duration::from_secs(1)
        };
        unit * (256 - u32::from(priority)) / 256
    }

    /// Master_Down_Interval: 3 x the advertisement interval + Skew_Time.
    pub fn master_down(&self, priority: u8) -> Duration {
        self.interval * 3 + self.skew(priority)
    }

    /// Slack for timing assertions: half an interval, plus 100 ms for a loaded machine running every scenario at
    /// once. A real regression (one interval late, a missed timer) is still far outside it.
    pub fn slack(&self) -> Duration {
        self.interval / 2 + Duration::from_millis(100)
    }
}

/// One scenario's lab: the seed topology under a unique name, optionally with other keepalived.conf files.
pub struct Scenario {
    pub lab: Lab,
    pub vrrp: Vrrp,
    /// The address the agents move.
    pub vip: String,
    /// The backup's priority: its Skew_Time and Master_Down_Interval are the snapshot's figures.
    pub backup_priority: u8,
    /// The snapshot shows only the VIP's gratuitous ARPs.
    pub only_vip_arps: bool,
    /// The least slack of the snapshot's figures: 50 ms, more for stacks whose daemons take longer to start.
    pub margin_floor: Duration,
    /// The services whose output and events the snapshot shows (all when `None`): a whole stack's Redis servers and
    /// Sentinels tell another story than the VIP's.
    pub shown_services: Option<&'static [&'static str]>,
    /// When the first fault was injected: snapshots start there (the start is the first scenario's snapshot).
    first_fault_ns: Option<u64>,
    _configs: Option<ConfigDirectory>,
}

/// The generated keepalived.conf files, removed with the scenario.
struct ConfigDirectory(PathBuf);

impl Drop for ConfigDirectory {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

impl Scenario {
    /// The seed's lab as `topologies/vlan.toml` describes it.
    pub fn seed(prefix: &str) -> Scenario {
        Scenario::start(prefix, Vrrp::SEED, None)
    }

    /// The seed's lab with `haproxy1`/`haproxy2` running these keepalived.conf texts instead of the seed's.
    pub fn with_configs(prefix: &str, vrrp: Vrrp, haproxy1: &str, haproxy2: &str) -> Scenario {
        Scenario::start(prefix, vrrp, Some([haproxy1, haproxy2]))
    }

    fn start(prefix: &str, vrrp: Vrrp, configs: Option<[&str; 2]>) -> Scenario {
        let mut topology = vrrp_topology(prefix);
        let directory = configs.map(|texts| {
            let directory = std::env::temp_dir().join(format!("failover-{}", topology.name));
            std::fs::create_dir_all(&directory).unwrap();
            for (n, text) in texts.iter().enumerate() {
                let host = format!("haproxy{}", n + 1);
                let path = directory.join(format!("{host}.conf"));
                std::fs::write(&path, text).unwrap();
                let seed_name = format!("{{dir}}/keepalived-{host}.conf");
                for host in topology.hosts.iter_mut().filter(|h| h.name == host) {
                    for service in &mut host.services {
                        for arg in &mut service.argv {
                            if *arg == seed_name {
                                *arg = path.display().to_string();
                            }
                        }
                    }
                }
            }
            crate::show_in_hosts(&mut topology, &directory);
            ConfigDirectory(directory)
        });
        let mut scenario = Scenario::of(&topology, vrrp, VIP, 99);
        scenario._configs = directory;
        scenario
    }

    /// Any topology whose VRRP agents move `vip`, the backup at `backup_priority`.
    pub fn of(topology: &lab::Topology, vrrp: Vrrp, vip: &str, backup_priority: u8) -> Scenario {
        Scenario {
            lab: Lab::up(topology).unwrap(),
            vrrp,
            vip: vip.to_string(),
            backup_priority,
            only_vip_arps: false,
            margin_floor: Duration::from_millis(50),
            shown_services: None,
            first_fault_ns: None,
            _configs: None,
        }
    }

    /// Injects a fault given as `lab fault` words (`"crash vrrpd"`); returns when it started (CLOCK_MONOTONIC ns).
    pub fn fault(&mut self, host: &str, words: &str) -> u64 {
        let words: Vec<String> = words.split_whitespace().map(str::to_string).collect();
        let fault = Fault::parse(&words).unwrap();
        let before = monotonic_ns();
        self.lab.fault(host, &fault).unwrap();
        let at_ns = self
            .wait(Duration::from_secs(1), &format!("the fault event of `{fault}`"), |e| {
                e.at_ns >= before && matches!(&e.kind, EventKind::Fault { .. })
            })
            .at_ns;
        self.first_fault_ns.get_or_insert(at_ns);
        at_ns
    }

    /// The first event at or after `after_ns` that matches, waiting up to `limit`; panics naming `what`.
    pub fn wait_after(&self, after_ns: u64, limit: Duration, what: &str, wanted: impl Fn(&Event) -> bool) -> Event {
        self.lab
            .events()
            .wait_for(limit, |e| e.at_ns >= after_ns && wanted(e))
            .unwrap_or_else(|| panic!("{what}: not seen within {limit:?}\n{}", self.lab.timeline().text()))
    }

    pub fn wait(&self, limit: Duration, what: &str, wanted: impl Fn(&Event) -> bool) -> Event {
        self.wait_after(0, limit, what, wanted)
    }

    /// Waits for `host`'s agent to report entering `state` at or after `after_ns`.
    pub fn wait_state(&self, host: &str, state: &str, after_ns: u64, limit: Duration) -> Event {
        self.wait_after(after_ns, limit, &format!("{host} entering {state}"), |e| {
            is_state(e, host, state)
        })
    }

    /// Waits until `host`'s kernel reports the VIP added at or after `after_ns`.
    pub fn wait_vip(&self, host: &str, after_ns: u64, limit: Duration) -> Event {
        let prefix = format!("{}/", self.vip);
        self.wait_after(after_ns, limit, &format!("{} on {host}", self.vip), |e| {
            e.host.as_deref() == Some(host)
                && matches!(&e.kind, EventKind::AddressAdded { address, .. } if address.starts_with(&prefix))
        })
    }

    /// Whether the kernel of `host` has the VIP now.
    pub fn holds_vip(&self, host: &str) -> bool {
        let out = self
            .lab
            .exec(host, &["ip", "-4", "-o", "addr", "show", "dev", "eth0"])
            .unwrap();
        String::from_utf8_lossy(&out.stdout).contains(&format!("inet {}/", self.vip))
    }

    /// Waits for `host`'s agent to log a line containing `text` at or after `after_ns` (lines are stamped when the
    /// lab reads them, a little after the agent's own event for the same moment).
    pub fn wait_line(&self, host: &str, text: &str, after_ns: u64, limit: Duration) -> Event {
        self.wait_after(after_ns, limit, &format!("{host} logging `{text}`"), |e| {
            e.host.as_deref() == Some(host)
                && matches!(&e.kind, EventKind::ServiceOutput { line, .. } if line.contains(text))
        })
    }

    /// The agent's log lines on `host` from `after_ns` on, without keepalived's date prefix.
    pub fn agent_lines(&self, host: &str, after_ns: u64) -> Vec<String> {
        self.lab
            .timeline()
            .events()
            .iter()
            .filter(|e| e.at_ns >= after_ns && e.host.as_deref() == Some(host))
            .filter_map(|e| match &e.kind {
                EventKind::ServiceOutput { service, line, .. } if service == "vrrpd" => {
                    Some(lab::timeline::without_console_date(line).to_string())
                }
                _ => None,
            })
            .collect()
    }

    /// The wire's VRRP adverts from `from` (an address) between the two instants.
    pub fn adverts(&self, from: &str, after_ns: u64, before_ns: u64) -> Vec<(u64, u8)> {
        self.lab
            .timeline()
            .events()
            .iter()
            .filter(|e| e.at_ns >= after_ns && e.at_ns <= before_ns)
            .filter_map(|e| match &e.kind {
                EventKind::Vrrp {
                    from: source, priority, ..
                } if source.to_string() == from => Some((e.at_ns, *priority)),
                _ => None,
            })
            .collect()
    }

    /// Outage windows of a client probe that began at or after `after_ns`: (start, length).
    pub fn outages(&self, probe: &str, after_ns: u64) -> Vec<(u64, Duration)> {
        let timeline = self.lab.timeline();
        let outages = timeline
            .outages(probe)
            .filter(|(start, _)| *start >= after_ns)
            .collect();
        outages
    }

    /// The snapshot's slack on every figure: a tenth of the interval, and never under `margin_floor` (starting a
    /// process or waking a thread on a machine running every scenario at once can take tens of milliseconds).
    pub fn margin(&self) -> Duration {
        (self.vrrp.interval / 10).max(self.margin_floor)
    }

    /// The timeline so far (from the first fault on, if there was one), as the snapshot shows it.
    pub fn snapshot(&self) -> String {
        self.snapshot_with(vec![
            ("Skew_Time".into(), self.vrrp.skew(self.backup_priority)),
            ("advert_int".into(), self.vrrp.interval),
            (
                "Master_Down_Interval".into(),
                self.vrrp.master_down(self.backup_priority),
            ),
        ])
    }

    /// [`Scenario::snapshot`] with other figures (shortest first) to label the delays.
    pub fn snapshot_with(&self, figures: Vec<(String, Duration)>) -> String {
        let settings = lab::scenario::SnapshotSettings {
            figures,
            margin: self.margin(),
            period: self.vrrp.interval,
            arps_for: self
                .only_vip_arps
                .then(|| self.vip.parse().expect("the VIP is an address")),
            services: self.shown_services.map(|s| s.iter().map(|s| s.to_string()).collect()),
        };
        let style = lab::scenario::snapshot::style(&settings, &self.lab, self.first_fault_ns, monotonic_ns());
        self.lab.timeline().snapshot(&style)
    }

    /// Asserts that `elapsed` is the protocol's `figure`, no sooner and no later than the slack allows.
    pub fn on_time(&self, what: &str, elapsed: Duration, figure: Duration) {
        assert!(
            elapsed + Duration::from_millis(2) >= figure && elapsed <= figure + self.vrrp.slack(),
            "{what} took {elapsed:?}; the protocol's figure is {figure:?}"
        );
    }

    pub fn mac_of(&self, host: &str) -> String {
        lab::net::format_mac(&self.lab.mac(host, "eth0").unwrap())
    }

    /// A gratuitous ARP for the VIP with `host`'s MAC crossed the wire at or after `after_ns`.
    pub fn garp_seen(&self, host: &str, after_ns: u64) {
        self.garp_seen_within(host, after_ns, self.vrrp.slack());
    }

    pub fn garp_seen_within(&self, host: &str, after_ns: u64, limit: Duration) {
        let mac = self.mac_of(host);
        let vip = self.vip.clone();
        self.wait_after(after_ns, limit, &format!("a GARP for {vip} from {host}"), |e| {
            matches!(&e.kind, EventKind::Arp { gratuitous: true, sender_ip, sender_mac, .. }
                if sender_ip.to_string() == vip && *sender_mac == mac)
        });
    }

    /// Sleeps until the moment of the master's advert period (the master at `address`) that puts its next advert
    /// half-way between the snapshot's "at once" and "≤ Skew_Time" labels: a fault injected then meets the
    /// protocol's period at the same phase in every run, so no label depends on luck.
    pub fn mid_phase(&self, address: &str) {
        let source = address.parse().expect("an IPv4 address");
        let (interval, skew) = (self.vrrp.interval, self.vrrp.skew(self.backup_priority));
        lab::scenario::run::align_to_adverts(&self.lab, &[source], interval, self.margin(), skew)
            .unwrap_or_else(|why| panic!("{address} {why}"));
    }

    /// Lets the client's probes finish what is in flight (an attempt waits up to 100 ms), then waits until each
    /// probe that stopped answering answers again, so the snapshot ends on a settled client.
    pub fn client_settles(&self, probes: &[&str]) {
        let probes: Vec<String> = probes.iter().map(|p| p.to_string()).collect();
        lab::scenario::run::settle(&self.lab, &probes).unwrap_or_else(|why| panic!("{why}"));
    }

    /// Takes the lab down and checks nothing of it is left.
    pub fn finish(self) {
        crate::down_and_check(self.lab);
    }
}

pub use lab::scenario::snapshot::{protocol_line, vrrpd_state_change};

pub fn is_state(event: &Event, host: &str, state: &str) -> bool {
    event.host.as_deref() == Some(host)
        && matches!(&event.kind, EventKind::Daemon { kind, detail, .. }
            if kind == "state" && detail.get("to").and_then(|v| v.as_str()) == Some(state))
}

/// The seed's keepalived.conf of `host` with `edit` applied to its text.
pub fn seed_config(host: &str, edit: impl Fn(String) -> String) -> String {
    let text = std::fs::read_to_string(workspace_file(&format!("topologies/keepalived-{host}.conf"))).unwrap();
    edit(text)
}

/// Seconds between two CLOCK_MONOTONIC instants.
pub fn since(from_ns: u64, to_ns: u64) -> Duration {
    Duration::from_nanos(to_ns.saturating_sub(from_ns))
}

/// Polls `condition` every 10 ms until it holds; false after `limit`.
pub fn eventually(limit: Duration, condition: impl Fn() -> bool) -> bool {
    let start = Instant::now();
    while !condition() {
        if start.elapsed() > limit {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    true
}
