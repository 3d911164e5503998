//! Counters per instance and a tiny Prometheus endpoint (`--metrics ADDR`): one request per connection, answered
//! from a thread of its own with the latest rendering the loop published.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::{self, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::machine::State;

#[derive(Default)]
pub struct Counters {
    pub adverts_sent: u64,
    pub adverts_received: u64,
    pub discards: BTreeMap<&'static str, u64>,
    pub transitions: BTreeMap<(&'static str, &'static str), u64>,
}

/// What one instance looks like right now, for rendering.
pub struct Snapshot<'a> {
    pub name: &'a str,
    pub state: State,
    pub priority: u8,
    pub counters: &'a Counters,
}

pub fn render(instances: &[Snapshot<'_>]) -> String {
    let mut text = String::new();
    let mut family = |name: &str, kind: &str, help: &str, lines: &mut dyn FnMut(&mut String)| {
        let _ = writeln!(text, "# HELP {name} {help}\n# TYPE {name} {kind}");
        lines(&mut text);
    };
    family(
        "vrrp_state",
        "gauge",
        "1 for the state the instance is in",
        &mut |out| {
            for instance in instances {
                for state in [State::Initialize, State::Backup, State::Master, State::Fault] {
                    let value = u8::from(instance.state == state);
                    let _ = writeln!(
                        out,
                        "vrrp_state{{instance=\"{}\",state=\"{}\"}} {value}",
                        escape(instance.name),
                        state.name()
                    );
                }
            }
        },
    );
    family("vrrp_priority", "gauge", "effective priority", &mut |out| {
        for instance in instances {
            let _ = writeln!(
                out,
                "vrrp_priority{{instance=\"{}\"}} {}",
                escape(instance.name),
                instance.priority
            );
        }
    });
    family(
        "vrrp_adverts_sent_total",
        "counter",
        "advertisements sent",
        &mut |out| {
            for instance in instances {
                let _ = writeln!(
                    out,
                    "vrrp_adverts_sent_total{{instance=\"{}\"}} {}",
                    escape(instance.name),
                    instance.counters.adverts_sent
                );
            }
        },
    );
    family(
        "vrrp_adverts_received_total",
        "counter",
        "advertisements accepted",
        &mut |out| {
            for instance in instances {
                let value = instance.counters.adverts_received;
                let _ = writeln!(
                    out,
                    "vrrp_adverts_received_total{{instance=\"{}\"}} {value}",
                    escape(instance.name)
                );
            }
        },
    );
    family(
        "vrrp_discards_total",
        "counter",
        "advertisements dropped, by reason",
        &mut |out| {
            for instance in instances {
                for (reason, count) in &instance.counters.discards {
                    let _ = writeln!(
                        out,
                        "vrrp_discards_total{{instance=\"{}\",reason=\"{reason}\"}} {count}",
                        escape(instance.name)
                    );
                }
            }
        },
    );
    family("vrrp_transitions_total", "counter", "state changes", &mut |out| {
        for instance in instances {
            for ((from, to), count) in &instance.counters.transitions {
                let name = escape(instance.name);
                let _ = writeln!(
                    out,
                    "vrrp_transitions_total{{instance=\"{name}\",from=\"{from}\",to=\"{to}\"}} {count}"
                );
            }
        }
    });
    text
}

/// Serves the latest rendering from a thread of its own, so a slow client never holds up the protocol loop (the
/// daemon never changes namespace, so a plain thread is safe here).
pub struct MetricsServer {
    body: Arc<Mutex<String>>,
}

impl MetricsServer {
    pub fn start(address: &str) -> io::Result<MetricsServer> {
        let listener = TcpListener::bind(address)?;
        let body = Arc::new(Mutex::new(String::new()));
        let shared = body.clone();
        std::thread::Builder::new().name("metrics".into()).spawn(move || {
            for stream in listener.incoming() {
                match stream {
                    Ok(stream) => {
                        let text = shared.lock().map(|body| body.clone()).unwrap_or_default();
                        let _ = answer(stream, &text);
                    }
                    // Out of descriptors and the like: wait rather than spin.
                    Err(_) => std::thread::sleep(Duration::from_millis(100)),
                }
            }
        })?;
        Ok(MetricsServer { body })
    }

    pub fn update(&self, text: String) {
        if let Ok(mut body) = self.body.lock() {
            *body = text;
        }
    }
}

/// Reads the request head (up to 8 KiB, until the blank line), answers GET /metrics (or /) with `body`, anything
/// else with 404, and says so in the status line.
fn answer(mut stream: TcpStream, body: &str) -> io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(2)))?;
    stream.set_write_timeout(Some(Duration::from_secs(2)))?;
    let mut head = Vec::new();
    let mut chunk = [0u8; 1024];
    while !head.windows(4).any(|window| window == b"\r\n\r\n") && head.len() < 8192 {
        match stream.read(&mut chunk)? {
            0 => break,
            read => head.extend_from_slice(&chunk[..read]),
        }
    }
    let request = String::from_utf8_lossy(&head);
    let mut words = request.split_whitespace();
    let (method, path) = (words.next().unwrap_or(""), words.next().unwrap_or(""));
    let found = matches!(method, "GET" | "HEAD") && matches!(path, "/metrics" | "/");
    let (status, body) = if found {
        ("200 OK", body)
    } else {
        ("404 Not Found", "not found\n")
    };
    let header = format!(
        "HTTP/1.0 {status}\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    stream.write_all(header.as_bytes())?;
    if method != "HEAD" {
        stream.write_all(body.as_bytes())?;
    }
    Ok(())
}

/// A label value as Prometheus's text format wants it.
fn escape(value: &str) -> String {
    value.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_are_escaped() {
        let counters = Counters::default();
        let snapshot = Snapshot {
            name: "a\"b\\c",
            state: State::Master,
            priority: 100,
            counters: &counters,
        };
        let text = render(&[snapshot]);
        assert!(text.contains(r#"vrrp_priority{instance="a\"b\\c"} 100"#), "{text}");
    }
}
