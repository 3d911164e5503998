//! One ordered story of a lab: every observer's events merged by their CLOCK_MONOTONIC stamps, rendered as text,
//! JSON lines, or a snapshot that stays the same from run to run.
//!
//! A snapshot does not print raw times. Each event is placed relative to the last fault before it (or the start),
//! against figures the caller names (for VRRP: Skew_Time, the advertisement interval, Master_Down_Interval), so a
//! takeover reads `≤ Master_Down_Interval`. Volatile text (MACs, the lab's name, its directories) is replaced by
//! names; events closer together than `together` are sorted by text, because observers on different threads see one
//! instant in any order; a line that repeats within one and a half periods is shown once, so a periodic
//! advertisement is one line however long it ran.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::time::Duration;

use crate::events::{Event, EventKind};

#[derive(Debug, Clone, Default)]
pub struct Timeline {
    events: Vec<Event>,
}

/// How to render a stable snapshot.
#[derive(Clone)]
pub struct SnapshotStyle {
    /// Named durations, shortest first: each event is labelled with the first one its delay fits under.
    pub figures: Vec<(String, Duration)>,
    /// Slack added to every figure (and what counts as "at once").
    pub margin: Duration,
    /// Events closer than this to the previous one are one moment: sorted by text.
    pub together: Duration,
    /// The period of repeating lines (e.g. the advertisement interval).
    pub period: Duration,
    /// Volatile text and the stable name that replaces it, applied in order.
    pub replacements: Vec<(String, String)>,
    /// Probe outages shorter than this are left out: one lost attempt at the instant two hosts swap an address is
    /// chance, not behaviour (the JSON timeline keeps them).
    pub min_outage: Duration,
    /// Ignore events before this CLOCK_MONOTONIC instant (ns), e.g. a start other snapshots already show.
    pub since_ns: Option<u64>,
    /// Ignore events after this CLOCK_MONOTONIC instant (ns).
    pub until_ns: Option<u64>,
    /// How a daemon's own structured event reads in the snapshot, `None` to leave it out: the timeline does not
    /// know any daemon's fields, the caller does (for vrrpd's state changes: `vrrp::state_change_text` in the tests).
    pub daemon_text: fn(&DaemonEvent) -> Option<String>,
    /// Events the snapshot leaves out besides those it always does: a daemon's start-up banner names its version
    /// and pids, which no snapshot should pin.
    pub hides: std::sync::Arc<dyn Fn(&Event) -> bool + Send + Sync>,
}

/// A daemon's structured event, as [`SnapshotStyle::daemon_text`] sees it.
pub struct DaemonEvent<'a> {
    pub host: &'a str,
    pub service: &'a str,
    pub kind: &'a str,
    pub detail: &'a serde_json::Value,
}

/// Leaves every daemon event out of a snapshot: the wire and the daemons' output lines tell the story.
pub fn no_daemon_text(_: &DaemonEvent) -> Option<String> {
    None
}

/// Hides nothing more than a snapshot always does.
pub fn hides_nothing() -> std::sync::Arc<dyn Fn(&Event) -> bool + Send + Sync> {
    std::sync::Arc::new(|_| false)
}

impl Timeline {
    /// Orders `events` by time; events with the same stamp keep the order they were recorded in.
    pub fn new(mut events: Vec<Event>) -> Timeline {
        events.sort_by_key(|e| e.at_ns);
        Timeline { events }
    }

    pub fn events(&self) -> &[Event] {
        &self.events
    }

    /// The events matching `wanted`, in time order.
    pub fn find<'a>(&'a self, wanted: impl Fn(&Event) -> bool + 'a) -> impl Iterator<Item = &'a Event> + 'a {
        self.events.iter().filter(move |e| wanted(e))
    }

    /// The outages of client probe `probe` that ended: when the first unanswered attempt was sent (ns) and how
    /// long until an answer, in time order of their ends.
    pub fn outages<'a>(&'a self, probe: &'a str) -> impl Iterator<Item = (u64, Duration)> + 'a {
        self.events.iter().filter_map(move |e| match &e.kind {
            EventKind::ProbeUp {
                probe: p, outage_ms, ..
            } if p == probe => {
                let length = Duration::from_secs_f64(outage_ms / 1e3);
                Some((e.at_ns.saturating_sub(length.as_nanos() as u64), length))
            }
            _ => None,
        })
    }

    /// Human-readable: seconds since the first event, then the event. An event from another machine of a spread
    /// lab names its machine and its stamp's uncertainty on this machine's clock; `~` marks an event whose order
    /// against an event of another clock is within their uncertainties (the order shown is not known to be right).
    pub fn text(&self) -> String {
        let start = self.events.first().map_or(0, |e| e.at_ns);
        let uncertain = self.uncertain_order();
        let mut out = String::new();
        for (event, uncertain) in self.events.iter().zip(uncertain) {
            let seconds = (event.at_ns - start) as f64 / 1e9;
            let mark = if uncertain { '~' } else { ' ' };
            let clock = match &event.clock {
                Some(c) => format!("[{} ±{:.3} ms] ", c.machine, c.uncertainty_ns as f64 / 1e6),
                None => String::new(),
            };
            let _ = writeln!(out, "{seconds:>11.6}s {mark}{clock}{event}");
        }
        out
    }

    /// For each event, whether an event stamped by another machine's clock lies within their combined uncertainty
    /// of it: their true order is not known.
    pub fn uncertain_order(&self) -> Vec<bool> {
        fn clock(e: &Event) -> (Option<&str>, u64) {
            e.clock
                .as_ref()
                .map_or((None, 0), |c| (Some(c.machine.as_str()), c.uncertainty_ns))
        }
        let widest = self.events.iter().map(|e| clock(e).1).max().unwrap_or(0);
        let mut uncertain = vec![false; self.events.len()];
        if widest == 0 {
            return uncertain;
        }
        for (i, event) in self.events.iter().enumerate() {
            let (machine, uncertainty) = clock(event);
            for (j, later) in self.events.iter().enumerate().skip(i + 1) {
                let gap = later.at_ns - event.at_ns;
                if gap > uncertainty + widest {
                    break;
                }
                let (other, other_uncertainty) = clock(later);
                if other != machine && gap <= uncertainty + other_uncertainty {
                    uncertain[i] = true;
                    uncertain[j] = true;
                }
            }
        }
        uncertain
    }

    /// One JSON object per line.
    pub fn json_lines(&self) -> String {
        let mut out = String::new();
        for event in &self.events {
            out.push_str(&serde_json::to_string(event).expect("serializable event"));
            out.push('\n');
        }
        out
    }

    /// The stable rendering described in the module documentation, in three parts: the lab's construction
    /// (everything before "lab up", sorted, since services and observers start concurrently), the story, and the
    /// client probes on their own (their attempts run on their own period, so where an answer falls among the
    /// other events of one moment is chance).
    pub fn snapshot(&self, style: &SnapshotStyle) -> String {
        let mut start: Vec<String> = Vec::new();
        let mut story: Vec<Line> = Vec::new();
        let mut probes: Vec<(usize, Line)> = Vec::new();
        let mut anchors: Vec<String> = Vec::new();
        let mut anchor_ns = None;
        let mut last_seen: HashMap<String, u64> = HashMap::new();
        let period_ns = (style.period.as_nanos() as u64) * 3 / 2;
        let first_ns = self.events.first().map_or(0, |e| e.at_ns);
        let blips = self.short_outages(style.min_outage);
        for (index, event) in self.events.iter().enumerate() {
            if blips.contains(&index) {
                continue;
            }
            if style.until_ns.is_some_and(|until| event.at_ns > until) {
                break;
            }
            if style.since_ns.is_some_and(|since| event.at_ns < since) {
                continue;
            }
            if (style.hides)(event) {
                continue;
            }
            let Some(text) = snapshot_text(event, style) else {
                continue;
            };
            let text = style
                .replacements
                .iter()
                .fold(text, |text, (volatile, stable)| text.replace(volatile, stable));
            let is_anchor = matches!(event.kind, EventKind::Fault { .. } | EventKind::LabUp { .. });
            if is_anchor {
                // Times after "lab up" count from the first event: how long the build took is no protocol figure.
                let is_up = matches!(event.kind, EventKind::LabUp { .. });
                anchor_ns = Some(if is_up { first_ns } else { event.at_ns });
                anchors.push(text.trim_start_matches("---- ").to_string());
                last_seen.clear();
            }
            let Some(anchor_ns) = anchor_ns else {
                start.push(text);
                continue;
            };
            let repeated = last_seen
                .insert(text.clone(), event.at_ns)
                .is_some_and(|before| event.at_ns - before <= period_ns);
            if repeated {
                continue;
            }
            let is_probe = matches!(event.kind, EventKind::ProbeDown { .. } | EventKind::ProbeUp { .. });
            let label = if is_anchor {
                String::new()
            } else {
                label(
                    Duration::from_nanos(event.at_ns.saturating_sub(anchor_ns)),
                    style,
                    is_probe,
                )
            };
            let line = Line {
                at_ns: event.at_ns,
                anchor: is_anchor,
                label,
                text,
            };
            if is_probe {
                probes.push((anchors.len() - 1, line));
            } else {
                story.push(line);
            }
        }
        start.sort();
        sort_moments(&mut story, style.together);
        let mut out = String::new();
        for text in start {
            let _ = writeln!(out, "{:<24} {text}", "start");
        }
        for line in &story {
            let _ = writeln!(out, "{:<24} {}", line.label, line.text);
        }
        // Per moment (lab up or fault), per probe, in time order.
        probes.sort_by(|(a, x), (b, y)| (a, probe_name(&x.text)).cmp(&(b, probe_name(&y.text))));
        let mut current = None;
        for (anchor, line) in &probes {
            if current != Some(anchor) {
                let _ = writeln!(out, "\nclient probes since {}:", anchors[*anchor]);
                current = Some(anchor);
            }
            let _ = writeln!(out, "{:<24} {}", line.label, line.text);
        }
        out
    }
}

/// `host probe NAME (target): ...` -> NAME.
fn probe_name(text: &str) -> &str {
    text.split_whitespace().nth(2).unwrap_or(text)
}

impl Timeline {
    /// Indexes of the down and up events of every probe outage shorter than `shorter_than`.
    fn short_outages(&self, shorter_than: Duration) -> std::collections::HashSet<usize> {
        let mut down_at: HashMap<&str, usize> = HashMap::new();
        let mut hidden = std::collections::HashSet::new();
        for (index, event) in self.events.iter().enumerate() {
            match &event.kind {
                EventKind::ProbeDown { probe, .. } => {
                    down_at.insert(probe, index);
                }
                EventKind::ProbeUp { probe, outage_ms, .. } => {
                    if let Some(down) = down_at.remove(probe.as_str()) {
                        if Duration::from_secs_f64(outage_ms / 1e3) < shorter_than {
                            hidden.extend([down, index]);
                        }
                    }
                }
                _ => {}
            }
        }
        hidden
    }
}

struct Line {
    at_ns: u64,
    anchor: bool,
    label: String,
    text: String,
}

/// Sorts by text each run of lines closer than `together` to the previous one (an anchor always stands alone).
fn sort_moments(lines: &mut [Line], together: Duration) {
    let together_ns = together.as_nanos() as u64;
    let mut start = 0;
    while start < lines.len() {
        let mut end = start + 1;
        while end < lines.len()
            && !lines[end].anchor
            && !lines[start].anchor
            && lines[end].at_ns - lines[end - 1].at_ns < together_ns
        {
            end += 1;
        }
        lines[start..end].sort_by(|a, b| a.text.cmp(&b.text));
        start = end;
    }
}

/// The first figure `delay` fits under. Probes only get the longest figure: their attempts run on their own period
/// and wait on the client's ARP retries (one a second), so a finer label would depend on where an attempt fell.
fn label(delay: Duration, style: &SnapshotStyle, coarse: bool) -> String {
    if delay <= style.margin && !coarse {
        return "at once".into();
    }
    let figures = if coarse {
        &style.figures[style.figures.len().saturating_sub(1)..]
    } else {
        &style.figures[..]
    };
    for (name, figure) in figures {
        if delay <= *figure + style.margin {
            return format!("≤ {name}");
        }
    }
    match style.figures.last() {
        Some((name, _)) => format!("> {name}"),
        None => "later".into(),
    }
}

/// What a snapshot shows of an event, without numbers that change from run to run; `None` hides it (advert
/// counters and other per-packet daemon events: the wire shows the packets themselves).
fn snapshot_text(event: &Event, style: &SnapshotStyle) -> Option<String> {
    let host = event.host.as_deref().unwrap_or("lab");
    Some(match &event.kind {
        EventKind::LabUp { .. } => "---- lab up".into(),
        EventKind::Fault { fault } => format!("---- fault on {host}: {fault}"),
        EventKind::LabDown { .. } => "lab: down".into(),
        EventKind::ServiceStarted { service, .. } => format!("{host}/{service}: started"),
        EventKind::ServiceRestarted {
            service,
            restart,
            limit,
            ..
        } => format!("{host}/{service}: restarted ({restart} of {limit})"),
        EventKind::ServiceOutput { service, line, .. } => {
            let line = without_console_date(line);
            if line.trim().is_empty() {
                return None;
            }
            format!("{host}/{service} | {line}")
        }
        EventKind::Daemon { service, kind, detail } => (style.daemon_text)(&DaemonEvent {
            host,
            service,
            kind,
            detail,
        })?,
        EventKind::Arp { gratuitous: false, .. } => return None,
        EventKind::ProbeDown { probe, target } => format!("{host} probe {probe} ({target}): no answer"),
        EventKind::ProbeUp { probe, target, .. } => format!("{host} probe {probe} ({target}): answers again"),
        _ => event.to_string(),
    })
}

/// keepalived's console lines start with the local date (`Wed Nov 25 10:38:06 2026: `); this is the line without it.
pub fn without_console_date(line: &str) -> &str {
    let bytes = line.as_bytes();
    let looks_dated = bytes.len() > 26
        && bytes[3] == b' '
        && bytes[7] == b' '
        && bytes[13] == b':'
        && bytes[16] == b':'
        && &line[24..26] == ": ";
    if looks_dated {
        &line[26..]
    } else {
        line
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::samples::{event, output};

    #[test]
    fn an_order_within_the_clocks_uncertainty_is_marked() {
        let fault = |at_ms, host: &str| event(at_ms, host, EventKind::Fault { fault: "crash".into() });
        let remote = |at_ms, host: &str, machine: &str| Event {
            clock: Some(crate::events::RemoteClock {
                machine: machine.into(),
                uncertainty_ns: 2_000_000,
            }),
            ..fault(at_ms, host)
        };
        // a (here) and b (m2, ±2 ms) 1 ms apart: either may be first. c 10 ms later is not in doubt, nor are two
        // events of one machine's clock, whatever their distance.
        let timeline = Timeline::new(vec![
            fault(100, "a"),
            remote(101, "b", "m2"),
            fault(110, "c"),
            remote(120, "d", "m3"),
            remote(121, "e", "m3"),
        ]);
        assert_eq!(timeline.uncertain_order(), [true, true, false, false, false]);
        let text = timeline.text();
        assert!(text.contains("0.001000s ~[m2 ±2.000 ms] b: fault: crash"), "{text}");
        assert!(text.contains("0.010000s  c: fault: crash"), "{text}");
    }

    fn style() -> SnapshotStyle {
        SnapshotStyle {
            figures: vec![
                ("Skew_Time".into(), Duration::from_millis(613)),
                ("Master_Down_Interval".into(), Duration::from_millis(3613)),
            ],
            margin: Duration::from_millis(100),
            together: Duration::from_millis(20),
            period: Duration::from_secs(1),
            replacements: vec![("10.0.0.21".into(), "haproxy1".into())],
            min_outage: Duration::ZERO,
            since_ns: None,
            until_ns: None,
            daemon_text: no_daemon_text,
            hides: hides_nothing(),
        }
    }

    #[test]
    fn snapshot_labels_sorts_collapses_and_replaces() {
        let up = EventKind::LabUp {
            lab: "x".into(),
            build_ms: 1.0,
        };
        let fault = EventKind::Fault {
            fault: "crash vrrpd".into(),
        };
        let probe_down = EventKind::ProbeDown {
            probe: "vip".into(),
            target: "vip".into(),
        };
        let timeline = Timeline::new(vec![
            event(0, "h2", output("started")),
            event(
                1,
                "h1",
                output("Wed Nov 25 10:38:06 2026: (I) Entering BACKUP STATE (init)"),
            ),
            event(2, "h1", up),
            event(1000, "h2", output("discarding 10.0.0.21")),
            event(2000, "h2", output("discarding 10.0.0.21")),
            event(5000, "h1", fault),
            event(5001, "c", probe_down),
            // Recorded in this order, 5 ms apart: one moment, sorted.
            event(8000, "h2", output("b")),
            event(8005, "h2", output("a")),
            event(9500, "h2", output("late")),
        ]);
        let text = timeline.snapshot(&style());
        assert_eq!(
            text,
            "start                    h1/vrrpd | (I) Entering BACKUP STATE (init)\n\
             start                    h2/vrrpd | started\n\
             \x20                        ---- lab up\n\
             ≤ Master_Down_Interval   h2/vrrpd | discarding haproxy1\n\
             \x20                        ---- fault on h1: crash vrrpd\n\
             ≤ Master_Down_Interval   h2/vrrpd | a\n\
             ≤ Master_Down_Interval   h2/vrrpd | b\n\
             > Master_Down_Interval   h2/vrrpd | late\n\
             \n\
             client probes since fault on h1: crash vrrpd:\n\
             ≤ Master_Down_Interval   c probe vip (vip): no answer\n"
        );
    }

    #[test]
    fn a_line_that_returns_after_a_pause_is_shown_again() {
        let up = EventKind::LabUp {
            lab: "x".into(),
            build_ms: 1.0,
        };
        let timeline = Timeline::new(vec![
            event(0, "h", up),
            event(0, "h", output("tick")),
            event(1000, "h", output("tick")),
            event(5000, "h", output("tick")),
        ]);
        assert_eq!(timeline.snapshot(&style()).matches("tick").count(), 2);
    }
}
