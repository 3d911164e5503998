//! What the proxy tells: with `--events`, JSON events, one object per line on stdout, stamped with CLOCK_MONOTONIC
//! in `at_ns` as the lab's timeline and the VRRP agent's events are, so a lab merges them (`events = "stdout"` in a
//! topology); without it, one line on stderr per routing decision (the master, or a refusal and why) and per
//! check that starts or stops failing. A thread of its own writes them: an output that stalls loses lines (past a
//! queue of 4096) but never holds up routing.

use std::io::Write;
use std::sync::mpsc::{sync_channel, SyncSender};

use serde_json::{json, Map, Value};

#[derive(Debug, Clone)]
pub struct Events {
    queue: SyncSender<String>,
    form: Form,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Form {
    /// Every event as JSON on stdout.
    Json,
    /// Decisions and check failures as text on stderr.
    Log,
}

pub fn monotonic_ns() -> u64 {
    let now = nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC).expect("CLOCK_MONOTONIC is always there");
    now.tv_sec() as u64 * 1_000_000_000 + now.tv_nsec() as u64
}

impl Events {
    pub fn to_stdout() -> Events {
        Events::start(Form::Json, Box::new(std::io::stdout()))
    }

    pub fn to_stderr() -> Events {
        Events::start(Form::Log, Box::new(std::io::stderr()))
    }

    fn start(form: Form, mut out: Box<dyn Write + Send>) -> Events {
        let (queue, lines) = sync_channel::<String>(4096);
        std::thread::Builder::new()
            .name("events".into())
            .spawn(move || {
                for line in lines {
                    if writeln!(out, "{line}").and_then(|()| out.flush()).is_err() {
                        return;
                    }
                }
            })
            .expect("the events thread");
        Events { queue, form }
    }

    /// Queues `{"at_ns": now, "event": kind, ...fields}`, or its line of text.
    pub fn emit(&self, kind: &str, fields: Value) {
        let line = match self.form {
            Form::Json => {
                let mut object = Map::new();
                object.insert("at_ns".into(), json!(monotonic_ns()));
                object.insert("event".into(), json!(kind));
                if let Value::Object(fields) = fields {
                    object.extend(fields);
                }
                Value::Object(object).to_string()
            }
            Form::Log => match log_line(kind, &fields) {
                Some(line) => line,
                None => return,
            },
        };
        let _ = self.queue.try_send(line);
    }
}

/// The text of the events a log reader needs: routing decisions and checks that start or stop failing.
fn log_line(kind: &str, fields: &Value) -> Option<String> {
    let text = |name: &str| fields.get(name).and_then(Value::as_str).unwrap_or("");
    let line = match kind {
        "route" if text("route") == "master" => format!("routing clients to master {}", text("master")),
        "route" => format!("refusing clients: {}", text("reason")),
        "check_failed" => format!(
            "{} check of {} failing: {}",
            text("check"),
            text("target"),
            text("error")
        ),
        "check_recovered" => format!("{} check of {} answering again", text("check"), text("target")),
        _ => return None,
    };
    let evidence = fields
        .get("decided_by")
        .map(|e| format!(" (after {e})"))
        .unwrap_or_default();
    Some(format!("sentinel-proxy: {line}{evidence}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decisions_read_as_one_line_each() {
        let master = json!({"route": "master", "master": "10.0.0.12:6379", "decided_by": {"node": "10.0.0.12:6379"}});
        assert_eq!(
            log_line("route", &master).unwrap(),
            "sentinel-proxy: routing clients to master 10.0.0.12:6379 (after {\"node\":\"10.0.0.12:6379\"})"
        );
        let refusal = json!({"route": "refuse", "reason": "no quorum of Sentinels names a master"});
        assert_eq!(
            log_line("route", &refusal).unwrap(),
            "sentinel-proxy: refusing clients: no quorum of Sentinels names a master"
        );
        assert_eq!(log_line("ready", &json!({})), None);
    }
}
