//! A timeline read as lanes: per host and per segment, tracks of spans (a service running, a VRRP instance's
//! state, an address held, a probe's outage, the impairments on a host's links) and instants (adverts, ARPs,
//! output), plus faults. The Perfetto
//! trace and the HTML report both draw this one reading.

use serde_json::Value;

use crate::events::{Event, EventKind};
use crate::fault::Fault;
use crate::impair::Impairment;
use crate::timeline::{without_console_date, Timeline};

/// The group of events that belong to no host (the lab's own, faults on several hosts).
pub const LAB_GROUP: &str = "lab";

#[derive(Debug, Clone, Default)]
pub struct Lanes {
    pub start_ns: u64,
    pub end_ns: u64,
    /// The lab first, then hosts and segments in the order they first appear.
    pub groups: Vec<Group>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupKind {
    Lab,
    Host,
    Segment,
}

#[derive(Debug, Clone)]
pub struct Group {
    /// A host's name, `wire SEGMENT`, or `lab`.
    pub name: String,
    pub kind: GroupKind,
    pub tracks: Vec<Track>,
    /// Named by the fault's words (`crash vrrpd`).
    pub faults: Vec<Mark>,
    /// The settings each link track's faults have built up, by track name.
    links: Vec<(String, Impairment)>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TrackKind {
    Service,
    Vrrp,
    Address,
    Probe,
    /// The impairments set on a host's links from one scope (`link from`, `link eth1 to`): a span while any is in
    /// force, named by the settings.
    Link,
    Wire,
    Events,
}

#[derive(Debug, Clone)]
pub struct Track {
    /// `service S`, `vrrp S INSTANCE`, `address A`, `probe P`, the segment's name, or `events`.
    pub name: String,
    pub kind: TrackKind,
    pub spans: Vec<Span>,
    pub instants: Vec<Mark>,
    /// The span still open and when it began.
    open: Option<(String, u64)>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Span {
    pub name: String,
    pub from_ns: u64,
    pub to_ns: u64,
    /// Still going when the timeline ended.
    pub open_at_end: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Mark {
    pub at_ns: u64,
    pub name: String,
    /// The event as the text timeline shows it.
    pub text: String,
}

impl Timeline {
    pub fn lanes(&self) -> Lanes {
        let mut lanes = Lanes {
            start_ns: self.events().first().map_or(0, |e| e.at_ns),
            end_ns: self.events().last().map_or(0, |e| e.at_ns),
            groups: Vec::new(),
        };
        lanes.group(LAB_GROUP, GroupKind::Lab);
        for event in self.events() {
            lanes.add(event);
        }
        let end = lanes.end_ns;
        for track in lanes.groups.iter_mut().flat_map(|g| &mut g.tracks) {
            track.close(end, true);
        }
        lanes
    }
}

impl Lanes {
    fn group(&mut self, name: &str, kind: GroupKind) -> usize {
        if let Some(index) = self.groups.iter().position(|g| g.name == name) {
            return index;
        }
        self.groups.push(Group {
            name: name.to_string(),
            kind,
            tracks: Vec::new(),
            faults: Vec::new(),
            links: Vec::new(),
        });
        self.groups.len() - 1
    }

    fn track(&mut self, group: usize, name: &str, kind: TrackKind) -> &mut Track {
        let tracks = &mut self.groups[group].tracks;
        let index = match tracks.iter().position(|t| t.name == name) {
            Some(index) => index,
            None => {
                tracks.push(Track {
                    name: name.to_string(),
                    kind,
                    spans: Vec::new(),
                    instants: Vec::new(),
                    open: None,
                });
                tracks.len() - 1
            }
        };
        &mut tracks[index]
    }

    fn add(&mut self, event: &Event) {
        let text = event.to_string();
        let at = event.at_ns;
        let host_name = event.host.clone().unwrap_or_else(|| LAB_GROUP.into());
        let mark = |name: &str| Mark {
            at_ns: at,
            name: name.to_string(),
            text: text.clone(),
        };
        if let EventKind::Vrrp { segment, .. } | EventKind::Arp { segment, .. } = &event.kind {
            let group = self.group(&format!("wire {segment}"), GroupKind::Segment);
            let name = match &event.kind {
                EventKind::Vrrp { .. } => "advert",
                EventKind::Arp { gratuitous: true, .. } => "gratuitous arp",
                _ => "arp",
            };
            self.track(group, segment, TrackKind::Wire).instants.push(mark(name));
            return;
        }
        if let EventKind::Fault { fault } = &event.kind {
            // A fault on several hosts (a partition) is the lab's; on one host, that host's.
            let group = if host_name.contains(',') {
                0
            } else {
                self.group(&host_name, GroupKind::Host)
            };
            self.groups[group].faults.push(mark(fault));
            if group != 0 {
                self.follow_links(group, fault, at);
            }
            return;
        }
        let kind = if host_name == LAB_GROUP {
            GroupKind::Lab
        } else {
            GroupKind::Host
        };
        let group = self.group(&host_name, kind);
        match &event.kind {
            EventKind::ServiceStarted { service, .. } | EventKind::ServiceRestarted { service, .. } => {
                self.track(group, &format!("service {service}"), TrackKind::Service)
                    .open("running", at);
            }
            EventKind::ServiceExited { service, .. } => {
                let track = self.track(group, &format!("service {service}"), TrackKind::Service);
                track.close(at, false);
                track.instants.push(mark("exited"));
                // A daemon that is gone believes nothing: its instances' states end with it.
                let prefix = format!("vrrp {service} ");
                for track in self.groups[group]
                    .tracks
                    .iter_mut()
                    .filter(|t| t.name.starts_with(&prefix))
                {
                    track.close(at, false);
                }
            }
            EventKind::ServiceOutput { service, line, .. } => match vrrp_state(without_console_date(line)) {
                Some((instance, state)) => {
                    self.track(group, &format!("vrrp {service} {instance}"), TrackKind::Vrrp)
                        .open(state, at);
                }
                None => self
                    .track(group, &format!("service {service}"), TrackKind::Service)
                    .instants
                    .push(mark("output")),
            },
            EventKind::AddressAdded { address, .. } => {
                self.track(group, &format!("address {address}"), TrackKind::Address)
                    .open(&format!("holds {address}"), at);
            }
            EventKind::AddressRemoved { address, .. } => {
                self.track(group, &format!("address {address}"), TrackKind::Address)
                    .close(at, false);
            }
            EventKind::ProbeDown { probe, .. } => {
                self.track(group, &format!("probe {probe}"), TrackKind::Probe)
                    .open("no answer", at);
            }
            EventKind::ProbeUp { probe, .. } => {
                self.track(group, &format!("probe {probe}"), TrackKind::Probe)
                    .close(at, false);
            }
            _ => {
                let name = serde_json::to_value(&event.kind)
                    .ok()
                    .and_then(|v| v.get("event").and_then(Value::as_str).map(str::to_string))
                    .unwrap_or_else(|| "event".into());
                self.track(group, "events", TrackKind::Events)
                    .instants
                    .push(mark(&name));
            }
        }
    }
}

impl Lanes {
    /// A link fault (or `clear`) on one host: the settings of the links it names change, and so do their spans.
    fn follow_links(&mut self, group: usize, fault: &str, at: u64) {
        let words: Vec<String> = fault.split_whitespace().map(str::to_string).collect();
        let Ok(fault) = Fault::parse(&words) else {
            return;
        };
        if let Fault::Clear { interface } = &fault {
            let cleared = |name: &str| {
                interface
                    .as_ref()
                    .is_none_or(|i| name.split(' ').nth(1) == Some(i.as_str()))
            };
            for track in self.groups[group]
                .tracks
                .iter_mut()
                .filter(|t| t.kind == TrackKind::Link)
            {
                if cleared(&track.name) {
                    track.close(at, false);
                }
            }
            self.groups[group].links.retain(|(name, _)| !cleared(name));
            return;
        }
        let Some((link, change)) = fault.link_change() else {
            return;
        };
        for direction in link.directions() {
            let name = match &link.interface {
                Some(interface) => format!("link {interface} {direction}"),
                None => format!("link {direction}"),
            };
            let links = &mut self.groups[group].links;
            let index = links.iter().position(|(n, _)| *n == name).unwrap_or_else(|| {
                links.push((name.clone(), Impairment::default()));
                links.len() - 1
            });
            change(&mut links[index].1);
            let settings = links[index].1;
            let track = self.track(group, &name, TrackKind::Link);
            match settings.is_perfect() {
                true => track.close(at, false),
                false => track.open(&settings.to_string(), at),
            }
        }
    }
}

impl Track {
    /// Begins a span, ending the one open.
    fn open(&mut self, name: &str, at_ns: u64) {
        self.close(at_ns, false);
        self.open = Some((name.to_string(), at_ns));
    }

    fn close(&mut self, at_ns: u64, at_end: bool) {
        if let Some((name, from_ns)) = self.open.take() {
            self.spans.push(Span {
                name,
                from_ns,
                to_ns: at_ns.max(from_ns),
                open_at_end: at_end,
            });
        }
    }
}

/// keepalived's (and vrrpd's) `(INSTANCE) Entering STATE STATE` line: the instance and the state.
pub fn vrrp_state(line: &str) -> Option<(&str, &str)> {
    let rest = line.strip_prefix('(')?;
    let (instance, rest) = rest.split_once(") Entering ")?;
    let state = rest.split_whitespace().next()?;
    rest.split_whitespace().nth(1).filter(|w| *w == "STATE")?;
    Some((instance, state))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::samples::event;

    fn fault(at_ms: u64, words: &str) -> Event {
        event(at_ms, "a", EventKind::Fault { fault: words.into() })
    }

    /// Each scope of a host's links is a track whose spans name the settings in force, built up fault by fault.
    #[test]
    fn link_faults_are_spans_of_the_settings_in_force() {
        let timeline = Timeline::new(vec![
            fault(1, "delay 100ms"),
            fault(2, "loss 5%"),
            fault(3, "delay 0"),
            fault(4, "clear"),
            fault(5, "rate 1mbit --to --interface eth0"),
            fault(6, "crash vrrpd"),
        ]);
        let lanes = timeline.lanes();
        let host = lanes.groups.iter().find(|g| g.name == "a").unwrap();
        let spans = |name: &str| -> Vec<(String, u64, u64, bool)> {
            let track = host.tracks.iter().find(|t| t.name == name).unwrap();
            assert_eq!(track.kind, TrackKind::Link);
            let ms = |ns: u64| ns / 1_000_000;
            (track.spans.iter())
                .map(|s| (s.name.clone(), ms(s.from_ns), ms(s.to_ns), s.open_at_end))
                .collect()
        };
        assert_eq!(
            spans("link from"),
            [
                ("delay 100ms".into(), 1, 2, false),
                ("delay 100ms loss 5%".into(), 2, 3, false),
                ("loss 5%".into(), 3, 4, false),
            ]
        );
        assert_eq!(spans("link eth0 to"), [("rate 1mbit".into(), 5, 6, true)]);
        assert_eq!(host.faults.len(), 6, "every fault is still an instant");
    }
}
