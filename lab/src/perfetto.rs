//! A timeline as a Chrome/Perfetto trace (the JSON "trace event" format that ui.perfetto.dev and chrome://tracing
//! open): one process per host and per segment, a track per service, per VRRP instance, per VIP and per probe.
//! States and outages are spans, faults are instants across the host, everything else an instant on its track.

use serde_json::{json, Value};

use crate::timeline::Timeline;

impl Timeline {
    /// The timeline as trace-event JSON, times in microseconds since the first event: one process per lane group
    /// (the lab first), one thread per track.
    pub fn perfetto(&self) -> String {
        let lanes = self.lanes();
        let micros = |at_ns: u64| at_ns.saturating_sub(lanes.start_ns) as f64 / 1e3;
        let mut events: Vec<Value> = Vec::new();
        for (index, group) in lanes.groups.iter().enumerate() {
            let pid = 1 + index as u32;
            events.push(json!({"ph": "M", "name": "process_name", "pid": pid, "args": {"name": group.name}}));
            events.push(json!({"ph": "M", "name": "process_sort_index", "pid": pid, "args": {"sort_index": pid}}));
            for fault in &group.faults {
                events.push(json!({
                    "ph": "i", "s": "p", "name": format!("fault: {}", fault.name), "pid": pid,
                    "tid": 0, "ts": micros(fault.at_ns), "args": {"event": fault.text}
                }));
            }
            for (index, track) in group.tracks.iter().enumerate() {
                let tid = 1 + index as u32;
                events.push(
                    json!({"ph": "M", "name": "thread_name", "pid": pid, "tid": tid, "args": {"name": track.name}}),
                );
                for span in &track.spans {
                    let (ts, end) = (micros(span.from_ns), micros(span.to_ns));
                    events
                        .push(json!({"ph": "X", "name": span.name, "pid": pid, "tid": tid, "ts": ts, "dur": end - ts}));
                }
                for mark in &track.instants {
                    events.push(json!({
                        "ph": "i", "s": "t", "name": mark.name, "pid": pid, "tid": tid, "ts": micros(mark.at_ns),
                        "args": {"event": mark.text}
                    }));
                }
            }
        }
        json!({"traceEvents": events, "displayTimeUnit": "ms"}).to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::samples::{event, output as line};
    use crate::events::{EventKind, ExitStatus};

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
        let mut spans = spans;
        spans.sort_by(|a, b| a.1.total_cmp(&b.1));
        assert_eq!(
            spans,
            [
                ("running".to_string(), 0.0, 5_001_000.0),
                ("BACKUP".to_string(), 10_000.0, 3_610_000.0),
                ("MASTER".to_string(), 3_620_000.0, 1_381_000.0),
                ("holds 10.0.0.31/32".to_string(), 3_621_000.0, 5_079_000.0),
                ("no answer".to_string(), 5_100_000.0, 3_600_000.0),
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
