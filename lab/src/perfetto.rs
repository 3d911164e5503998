//! A timeline as a Chrome/Perfetto trace (the JSON "trace event" format that ui.perfetto.dev and chrome://tracing
//! open): one process per host and per segment, a track per service, per VRRP instance, per VIP and per probe.
//! States and outages are spans, faults are instants across the host, everything else an instant on its track.

use std::collections::BTreeMap;

use serde_json::{json, Value};

use crate::events::{Event, EventKind};
use crate::timeline::{without_console_date, Timeline};

/// The process of events that belong to no host (the lab's own, faults on several hosts).
const LAB_PID: u32 = 1;

impl Timeline {
    /// The timeline as trace-event JSON, times in microseconds since the first event.
    pub fn perfetto(&self) -> String {
        let mut trace = Trace::new(self.events().first().map_or(0, |e| e.at_ns));
        for event in self.events() {
            trace.add(event);
        }
        let end = self.events().last().map_or(0, |e| e.at_ns);
        trace.finish(end)
    }
}

/// A track: a process (host or segment) and a thread in it.
type Track = (u32, u32);

struct Trace {
    start_ns: u64,
    events: Vec<Value>,
    processes: BTreeMap<String, u32>,
    threads: BTreeMap<(u32, String), u32>,
    /// Spans still open, by track: their name and when they began.
    open: BTreeMap<Track, (String, u64)>,
}

impl Trace {
    fn new(start_ns: u64) -> Trace {
        let mut trace = Trace {
            start_ns,
            events: Vec::new(),
            processes: BTreeMap::new(),
            threads: BTreeMap::new(),
            open: BTreeMap::new(),
        };
        trace.process("lab");
        trace
    }

    fn micros(&self, at_ns: u64) -> f64 {
        at_ns.saturating_sub(self.start_ns) as f64 / 1e3
    }

    /// The process named `name`, announced the first time it is used.
    fn process(&mut self, name: &str) -> u32 {
        if let Some(pid) = self.processes.get(name) {
            return *pid;
        }
        let pid = LAB_PID + self.processes.len() as u32;
        self.processes.insert(name.to_string(), pid);
        self.events
            .push(json!({"ph": "M", "name": "process_name", "pid": pid, "args": {"name": name}}));
        self.events
            .push(json!({"ph": "M", "name": "process_sort_index", "pid": pid, "args": {"sort_index": pid}}));
        pid
    }

    /// The track `name` of process `pid`, announced the first time it is used.
    fn thread(&mut self, pid: u32, name: &str) -> Track {
        let key = (pid, name.to_string());
        if let Some(tid) = self.threads.get(&key) {
            return (pid, *tid);
        }
        let tid = 1 + self.threads.keys().filter(|(p, _)| *p == pid).count() as u32;
        self.threads.insert(key, tid);
        self.events
            .push(json!({"ph": "M", "name": "thread_name", "pid": pid, "tid": tid, "args": {"name": name}}));
        (pid, tid)
    }

    fn instant(&mut self, track: Track, at_ns: u64, name: &str, text: &str) {
        let ts = self.micros(at_ns);
        self.events.push(json!({
            "ph": "i", "s": "t", "name": name, "pid": track.0, "tid": track.1, "ts": ts, "args": {"event": text}
        }));
    }

    /// Ends the span open on `track`, if any.
    fn close(&mut self, track: Track, at_ns: u64) {
        if let Some((name, from_ns)) = self.open.remove(&track) {
            let (ts, end) = (self.micros(from_ns), self.micros(at_ns));
            self.events.push(json!({
                "ph": "X", "name": name, "pid": track.0, "tid": track.1, "ts": ts, "dur": (end - ts).max(0.0)
            }));
        }
    }

    /// Begins a span on `track`, ending the one open there.
    fn open(&mut self, track: Track, at_ns: u64, name: String) {
        self.close(track, at_ns);
        self.open.insert(track, (name, at_ns));
    }

    fn add(&mut self, event: &Event) {
        let text = event.to_string();
        let host = event.host.clone().unwrap_or_else(|| "lab".into());
        match &event.kind {
            EventKind::Vrrp { segment, .. } | EventKind::Arp { segment, .. } => {
                let pid = self.process(&format!("wire {segment}"));
                let track = self.thread(pid, segment);
                let name = if matches!(event.kind, EventKind::Vrrp { .. }) {
                    "advert"
                } else {
                    "arp"
                };
                self.instant(track, event.at_ns, name, &text);
            }
            EventKind::Fault { fault } => {
                // A fault on several hosts (a partition) is the lab's; on one host, that host's.
                let pid = if host.contains(',') {
                    LAB_PID
                } else {
                    self.process(&host)
                };
                let ts = self.micros(event.at_ns);
                self.events.push(json!({
                    "ph": "i", "s": "p", "name": format!("fault: {fault}"), "pid": pid, "tid": 0, "ts": ts,
                    "args": {"event": text}
                }));
            }
            EventKind::ServiceStarted { service, .. } | EventKind::ServiceRestarted { service, .. } => {
                let pid = self.process(&host);
                let track = self.thread(pid, &format!("service {service}"));
                self.open(track, event.at_ns, "running".into());
            }
            EventKind::ServiceExited { service, .. } => {
                let pid = self.process(&host);
                let track = self.thread(pid, &format!("service {service}"));
                self.close(track, event.at_ns);
                self.instant(track, event.at_ns, "exited", &text);
                // A daemon that is gone believes nothing: its instances' states end with it.
                let prefix = format!("vrrp {service} ");
                let states: Vec<Track> = (self.threads.iter())
                    .filter(|((p, name), _)| *p == pid && name.starts_with(&prefix))
                    .map(|((p, _), tid)| (*p, *tid))
                    .collect();
                for track in states {
                    self.close(track, event.at_ns);
                }
            }
            EventKind::ServiceOutput { service, line, .. } => {
                let pid = self.process(&host);
                let line = without_console_date(line);
                if let Some((instance, state)) = vrrp_state(line) {
                    let track = self.thread(pid, &format!("vrrp {service} {instance}"));
                    self.open(track, event.at_ns, state.to_string());
                } else {
                    let track = self.thread(pid, &format!("service {service}"));
                    self.instant(track, event.at_ns, "output", &text);
                }
            }
            EventKind::AddressAdded { address, .. } => {
                let pid = self.process(&host);
                let track = self.thread(pid, &format!("address {address}"));
                self.open(track, event.at_ns, format!("holds {address}"));
            }
            EventKind::AddressRemoved { address, .. } => {
                let pid = self.process(&host);
                let track = self.thread(pid, &format!("address {address}"));
                self.close(track, event.at_ns);
            }
            EventKind::ProbeDown { probe, .. } => {
                let pid = self.process(&host);
                let track = self.thread(pid, &format!("probe {probe}"));
                self.open(track, event.at_ns, "no answer".into());
            }
            EventKind::ProbeUp { probe, .. } => {
                let pid = self.process(&host);
                let track = self.thread(pid, &format!("probe {probe}"));
                self.close(track, event.at_ns);
            }
            _ => {
                let pid = self.process(&host);
                let track = self.thread(pid, "events");
                let name = serde_json::to_value(&event.kind)
                    .ok()
                    .and_then(|v| v.get("event").and_then(Value::as_str).map(str::to_string))
                    .unwrap_or_else(|| "event".into());
                self.instant(track, event.at_ns, &name, &text);
            }
        }
    }

    /// Ends every open span at `end_ns` and writes the trace.
    fn finish(mut self, end_ns: u64) -> String {
        let open: Vec<Track> = self.open.keys().copied().collect();
        for track in open {
            self.close(track, end_ns);
        }
        json!({"traceEvents": self.events, "displayTimeUnit": "ms"}).to_string()
    }
}

/// keepalived's (and vrrpd's) `(INSTANCE) Entering STATE STATE` line: the instance and the state.
fn vrrp_state(line: &str) -> Option<(&str, &str)> {
    let rest = line.strip_prefix('(')?;
    let (instance, rest) = rest.split_once(") Entering ")?;
    let state = rest.split_whitespace().next()?;
    rest.split_whitespace().nth(1).filter(|w| *w == "STATE")?;
    Some((instance, state))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::samples::{event, output as line};
    use crate::events::ExitStatus;

    #[test]
    fn states_outages_and_addresses_are_spans_and_faults_instants() {
        let events = vec![
            event(
                0,
                "h1",
                EventKind::ServiceStarted {
                    service: "vrrpd".into(),
                    pid: 7,
                },
            ),
            event(
                10,
                "h1",
                line("Mon Nov 30 13:41:46 2026: (Instance1) Entering BACKUP STATE (init)"),
            ),
            event(3620, "h1", line("(Instance1) Entering MASTER STATE")),
            event(
                3621,
                "h1",
                EventKind::AddressAdded {
                    interface: "eth0".into(),
                    address: "10.0.0.31/32".into(),
                },
            ),
            event(
                5000,
                "h1",
                EventKind::Fault {
                    fault: "crash vrrpd".into(),
                },
            ),
            event(
                5001,
                "h1",
                EventKind::ServiceExited {
                    service: "vrrpd".into(),
                    status: ExitStatus::Signal(9),
                },
            ),
            event(
                5100,
                "c",
                EventKind::ProbeDown {
                    probe: "vip".into(),
                    target: "vip".into(),
                },
            ),
            event(
                8700,
                "c",
                EventKind::ProbeUp {
                    probe: "vip".into(),
                    target: "vip".into(),
                    outage_ms: 3600.0,
                    failed: 9,
                },
            ),
        ];
        let trace: Value = serde_json::from_str(&Timeline::new(events).perfetto()).unwrap();
        let all = trace["traceEvents"].as_array().unwrap();
        let spans: Vec<(String, f64, f64)> = all
            .iter()
            .filter(|e| e["ph"] == "X")
            .map(|e| {
                (
                    e["name"].as_str().unwrap().to_string(),
                    e["ts"].as_f64().unwrap(),
                    e["dur"].as_f64().unwrap(),
                )
            })
            .collect();
        assert_eq!(
            spans,
            [
                ("BACKUP".to_string(), 10_000.0, 3_610_000.0),
                ("running".to_string(), 0.0, 5_001_000.0),
                ("MASTER".to_string(), 3_620_000.0, 1_381_000.0),
                ("no answer".to_string(), 5_100_000.0, 3_600_000.0),
                ("holds 10.0.0.31/32".to_string(), 3_621_000.0, 5_079_000.0),
            ]
        );
        let fault = all.iter().find(|e| e["ph"] == "i" && e["s"] == "p").unwrap();
        assert_eq!(fault["name"], "fault: crash vrrpd");
        let names: Vec<&str> = all
            .iter()
            .filter(|e| e["name"] == "thread_name")
            .map(|e| e["args"]["name"].as_str().unwrap())
            .collect();
        assert_eq!(
            names,
            [
                "service vrrpd",
                "vrrp vrrpd Instance1",
                "address 10.0.0.31/32",
                "probe vip"
            ]
        );
    }
}
