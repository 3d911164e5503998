//! JSON events, one object per line on stdout, stamped with CLOCK_MONOTONIC in `at_ns` as the lab's timeline and
//! the VRRP agent's events are, so a lab merges them (`events = "stdout"` in a topology).

use std::io::Write;

use serde_json::{json, Map, Value};

#[derive(Debug, Clone, Copy)]
pub struct Events {
    pub enabled: bool,
}

pub fn monotonic_ns() -> u64 {
    let now = nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC).expect("CLOCK_MONOTONIC is always there");
    now.tv_sec() as u64 * 1_000_000_000 + now.tv_nsec() as u64
}

impl Events {
    /// Writes `{"at_ns": now, "event": kind, ...fields}`.
    pub fn emit(&self, kind: &str, fields: Value) {
        if !self.enabled {
            return;
        }
        let mut object = Map::new();
        object.insert("at_ns".into(), json!(monotonic_ns()));
        object.insert("event".into(), json!(kind));
        if let Value::Object(fields) = fields {
            object.extend(fields);
        }
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{}", Value::Object(object));
        let _ = out.flush();
    }
}
