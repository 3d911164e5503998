//! Which timeline events a step waits for or counts, matched on the fields the JSON timeline shows
//! (`lab timeline --format json`): `{ event = "arp", gratuitous = true, sender_ip = "vlan-haproxy" }`. Two
//! shorthands read like the story: `state = "MASTER"` (a VRRP daemon entered that state: vrrpd's own event or
//! keepalived's `Entering MASTER STATE` line) and `log = "regex"` (a line a service printed).

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use regex::Regex;
use serde_json::Value;

use crate::events::Event;
use crate::topology::Topology;

/// Every event name of the timeline (`EventKind`'s variants, as JSON names them).
pub const EVENT_NAMES: &[&str] = &[
    "lab_up",
    "lab_down",
    "service_started",
    "service_ready",
    "service_output",
    "service_stopping",
    "service_exited",
    "service_restarted",
    "fault",
    "address_added",
    "address_removed",
    "link_up",
    "link_down",
    "vrrp",
    "arp",
    "daemon",
    "probe_down",
    "probe_up",
];

/// Every field an event can have, besides `event` and `host`.
const FIELD_NAMES: &[&str] = &[
    "lab",
    "build_ms",
    "service",
    "pid",
    "stream",
    "line",
    "signal",
    "status",
    "restart",
    "limit",
    "fault",
    "interface",
    "address",
    "segment",
    "from",
    "to",
    "mac",
    "version",
    "vrid",
    "priority",
    "operation",
    "sender_ip",
    "sender_mac",
    "target_ip",
    "gratuitous",
    "kind",
    "detail",
    "probe",
    "target",
    "outage_ms",
    "failed",
];

/// Fields holding an IPv4 address: a host's or a `[names]` name is resolved to its address.
const ADDRESS_FIELDS: &[&str] = &["address", "from", "to", "sender_ip", "target_ip"];

/// A checked description of events.
#[derive(Debug, Clone)]
pub struct Matcher {
    /// Field → wanted value, compared with the event's JSON.
    fields: BTreeMap<String, Value>,
    state: Option<String>,
    log: Option<Regex>,
    /// MAC fields that name a host: its MAC is known once the lab is up (see [`Matcher::with_macs`]).
    mac_of_host: Vec<(String, String)>,
    /// The text the scenario wrote, for messages.
    pub text: String,
}

/// A matcher's problem: the field it is about and what is wrong.
pub type MatcherProblem = (String, String);

impl Matcher {
    /// Checks `table` against the topology: known fields and events, existing hosts, services and probes, valid
    /// regular expressions. Every problem is returned, not only the first.
    pub fn new(table: &toml::Table, topology: &Topology) -> Result<Matcher, Vec<MatcherProblem>> {
        let mut problems = Vec::new();
        let mut fields = BTreeMap::new();
        let mut state = None;
        let mut log = None;
        let mut mac_of_host = Vec::new();
        for (key, value) in table {
            let mut problem = |message: String| problems.push((key.clone(), message));
            match key.as_str() {
                "state" => match value.as_str() {
                    Some(s) if ["INIT", "BACKUP", "MASTER", "FAULT"].contains(&s) => state = Some(s.to_string()),
                    _ => problem("is one of INIT, BACKUP, MASTER, FAULT".into()),
                },
                "log" => match value.as_str().map(Regex::new) {
                    Some(Ok(regex)) => log = Some(regex),
                    Some(Err(e)) => problem(super::regex_problem(&e)),
                    None => problem("is a regular expression, as a string".into()),
                },
                "event" => match value.as_str() {
                    Some(name) if EVENT_NAMES.contains(&name) => {
                        fields.insert(key.clone(), Value::from(name));
                    }
                    _ => problem(format!("is one of {}", EVENT_NAMES.join(", "))),
                },
                "host" => match value.as_str() {
                    Some(host) if topology.host(host).is_some() => {
                        fields.insert(key.clone(), Value::from(host));
                    }
                    _ => problem(format!(
                        "`{}` is not a host of topology `{}`",
                        value.as_str().unwrap_or("?"),
                        topology.name
                    )),
                },
                "mac" | "sender_mac" if value.as_str().is_some_and(|v| topology.host(v).is_some()) => {
                    mac_of_host.push((key.clone(), value.as_str().unwrap_or_default().to_string()));
                }
                _ if FIELD_NAMES.contains(&key.as_str()) => match wanted_value(key, value, topology) {
                    Ok(value) => {
                        fields.insert(key.clone(), value);
                    }
                    Err(why) => problem(why),
                },
                _ => problem(format!(
                    "unknown field; an event has event, host, {}, and the shorthands state and log",
                    FIELD_NAMES.join(", ")
                )),
            }
        }
        check_names(&fields, topology, &mut problems);
        if table.is_empty() {
            problems.push((String::new(), "matches every event: name at least one field".into()));
        }
        if !problems.is_empty() {
            return Err(problems);
        }
        Ok(Matcher {
            fields,
            state,
            log,
            mac_of_host,
            text: toml::Value::Table(table.clone()).to_string().replace('\n', " "),
        })
    }

    /// The matcher with the MACs of the hosts it names filled in (`sender_mac = "haproxy1"`).
    pub fn with_macs(&self, mac_of: impl Fn(&str) -> Option<String>) -> Result<Matcher, String> {
        let mut bound = self.clone();
        for (key, host) in self.mac_of_host.iter() {
            let mac = mac_of(host).ok_or_else(|| format!("no MAC for host `{host}`"))?;
            bound.fields.insert(key.clone(), Value::from(mac));
        }
        bound.mac_of_host.clear();
        Ok(bound)
    }

    pub fn matches(&self, event: &Event) -> bool {
        let json = serde_json::to_value(event).unwrap_or_default();
        self.fields
            .iter()
            .all(|(key, wanted)| json.get(key).is_some_and(|seen| contains(seen, wanted)))
            && self.state.as_deref().is_none_or(|state| entered_state(&json, state))
            && self.log.as_ref().is_none_or(|log| {
                json.get("event").and_then(Value::as_str) == Some("service_output")
                    && json
                        .get("line")
                        .and_then(Value::as_str)
                        .is_some_and(|line| log.is_match(line))
            })
    }
}

/// The value a field is compared with: TOML's, with names in address fields resolved.
fn wanted_value(key: &str, value: &toml::Value, topology: &Topology) -> Result<Value, String> {
    if ADDRESS_FIELDS.contains(&key) {
        if let Some(name) = value.as_str() {
            let address = topology.resolve(name).ok_or_else(|| {
                format!(
                    "`{name}` is neither an address nor a name in topology `{}`",
                    topology.name
                )
            })?;
            return Ok(Value::from(address.to_string()));
        }
    }
    serde_json::to_value(value).map_err(|e| e.to_string())
}

/// Services and probes named in a matcher exist (on its host, if it names one).
fn check_names(fields: &BTreeMap<String, Value>, topology: &Topology, problems: &mut Vec<MatcherProblem>) {
    let hosts: Vec<_> = match fields.get("host").and_then(Value::as_str) {
        Some(host) => topology.host(host).into_iter().collect(),
        None => topology.hosts.iter().collect(),
    };
    if let Some(service) = fields.get("service").and_then(Value::as_str) {
        if !hosts.iter().any(|h| h.services.iter().any(|s| s.name == service)) {
            problems.push(("service".into(), format!("no host here runs a service `{service}`")));
        }
    }
    if let Some(probe) = fields.get("probe").and_then(Value::as_str) {
        if !hosts.iter().any(|h| h.probes.iter().any(|p| p.name == probe)) {
            problems.push(("probe".into(), format!("no host here has a probe `{probe}`")));
        }
    }
}

/// `seen` has `wanted`: equal values, a table's fields (recursively), or an address with its prefix length
/// (`10.0.0.31/24` has `10.0.0.31`).
fn contains(seen: &Value, wanted: &Value) -> bool {
    match (seen, wanted) {
        (Value::Object(seen), Value::Object(wanted)) => wanted
            .iter()
            .all(|(key, wanted)| seen.get(key).is_some_and(|seen| contains(seen, wanted))),
        (Value::String(seen), Value::String(wanted)) => {
            seen == wanted
                || seen
                    .strip_prefix(wanted.as_str())
                    .is_some_and(|rest| rest.starts_with('/'))
        }
        (Value::Number(seen), Value::Number(wanted)) => seen.as_f64() == wanted.as_f64(),
        _ => seen == wanted,
    }
}

/// A VRRP daemon entered `state`: vrrpd's structured event, or the log line keepalived and vrrpd both print.
fn entered_state(json: &Value, state: &str) -> bool {
    let event = json.get("event").and_then(Value::as_str);
    match event {
        Some("daemon") => {
            json.get("kind").and_then(Value::as_str) == Some("state")
                && json.pointer("/detail/to").and_then(Value::as_str) == Some(state)
        }
        Some("service_output") => json
            .get("line")
            .and_then(Value::as_str)
            .is_some_and(|line| line.contains(&format!("Entering {state} STATE"))),
        _ => false,
    }
}

/// An address a matcher names, for steps that look at the kernel's addresses.
pub fn resolve_address(name: &str, topology: &Topology) -> Result<Ipv4Addr, String> {
    topology.resolve(name).ok_or_else(|| {
        format!(
            "`{name}` is neither an address nor a name in topology `{}`",
            topology.name
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::EventKind;

    fn topology() -> Topology {
        Topology::parse(&crate::topology::flat_topology_toml("m", 2), "m.toml").unwrap()
    }

    fn matcher(text: &str) -> Result<Matcher, Vec<MatcherProblem>> {
        Matcher::new(&text.parse::<toml::Table>().unwrap(), &topology())
    }

    fn event(kind: EventKind) -> Event {
        Event {
            at_ns: 1,
            host: Some("h1".into()),
            kind,
            clock: None,
        }
    }

    #[test]
    fn fields_shorthands_and_addresses() {
        let added = event(EventKind::AddressAdded {
            interface: "eth0".into(),
            address: "10.0.0.31/24".into(),
        });
        assert!(matcher("event = 'address_added'\naddress = '10.0.0.31'")
            .unwrap()
            .matches(&added));
        assert!(!matcher("event = 'address_removed'").unwrap().matches(&added));
        assert!(!matcher("address = '10.0.0.3'").unwrap().matches(&added));
        let line = |line: &str| {
            event(EventKind::ServiceOutput {
                service: "s".into(),
                stream: crate::events::Stream::Stdout,
                line: line.into(),
            })
        };
        assert!(matcher("state = 'MASTER'")
            .unwrap()
            .matches(&line("(VI_1) Entering MASTER STATE")));
        assert!(!matcher("state = 'BACKUP'")
            .unwrap()
            .matches(&line("(VI_1) Entering MASTER STATE")));
        assert!(matcher("log = 'MASTER ST'")
            .unwrap()
            .matches(&line("(VI_1) Entering MASTER STATE")));
        let daemon = event(EventKind::Daemon {
            service: "vrrpd".into(),
            kind: "state".into(),
            detail: serde_json::json!({"from": "BACKUP", "to": "MASTER", "instance": "VI_1"}),
        });
        assert!(matcher("state = 'MASTER'\nhost = 'h1'").unwrap().matches(&daemon));
        assert!(matcher("detail = { instance = 'VI_1' }").unwrap().matches(&daemon));
        assert!(!matcher("detail = { instance = 'VI_2' }").unwrap().matches(&daemon));
    }

    #[test]
    fn every_mistake_is_named() {
        let problems =
            matcher("event = 'adress_added'\nhost = 'h9'\nlog = '('\ncolour = 1\nstate = 'master'").unwrap_err();
        let fields: Vec<&str> = problems.iter().map(|(field, _)| field.as_str()).collect();
        assert_eq!(fields, ["colour", "event", "host", "log", "state"]);
    }
}
