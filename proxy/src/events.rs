//! JSON events, one object per line on stdout, stamped with CLOCK_MONOTONIC in `at_ns` as the lab's timeline and
//! the VRRP agent's events are, so a lab merges them (`events = "stdout"` in a topology). A thread of their own
//! writes them: a stdout that stalls loses events (past a queue of 4096) but never holds up routing.

use std::io::Write;
use std::sync::mpsc::{sync_channel, SyncSender};

use serde_json::{json, Map, Value};

#[derive(Debug, Clone)]
pub struct Events {
    queue: Option<SyncSender<String>>,
}

pub fn monotonic_ns() -> u64 {
    let now = nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC).expect("CLOCK_MONOTONIC is always there");
    now.tv_sec() as u64 * 1_000_000_000 + now.tv_nsec() as u64
}

impl Events {
    pub fn disabled() -> Events {
        Events { queue: None }
    }

    pub fn to_stdout() -> Events {
        let (queue, lines) = sync_channel::<String>(4096);
        std::thread::Builder::new()
            .name("events".into())
            .spawn(move || {
                let mut out = std::io::stdout().lock();
                for line in lines {
                    if writeln!(out, "{line}").and_then(|()| out.flush()).is_err() {
                        return;
                    }
                }
            })
            .expect("the events thread");
        Events { queue: Some(queue) }
    }

    /// Queues `{"at_ns": now, "event": kind, ...fields}`.
    pub fn emit(&self, kind: &str, fields: Value) {
        let Some(queue) = &self.queue else { return };
        let mut object = Map::new();
        object.insert("at_ns".into(), json!(monotonic_ns()));
        object.insert("event".into(), json!(kind));
        if let Value::Object(fields) = fields {
            object.extend(fields);
        }
        let _ = queue.try_send(Value::Object(object).to_string());
    }
}
