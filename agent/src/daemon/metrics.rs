//! Counters per instance and a tiny Prometheus endpoint (`--metrics ADDR`): one request per connection, answered
//! from a thread of its own with the latest rendering the loop published.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::{self, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

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

/// `dropped`: lines each output lost because its reader did not keep up.
pub fn render(instances: &[Snapshot<'_>], dropped: &[(&str, u64)]) -> String {
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
    family(
        "vrrp_output_lines_dropped_total",
        "counter",
        "log, event and notify FIFO lines lost because the reader did not keep up",
        &mut |out| {
            for (output, count) in dropped {
                let _ = writeln!(out, "vrrp_output_lines_dropped_total{{output=\"{output}\"}} {count}");
            }
        },
    );
    text
}

/// Serves the latest rendering, each scrape from a thread of its own, so neither a slow client nor a silent one
/// holds up the protocol loop or another scrape (the daemon never changes namespace, so plain threads are safe).
pub struct MetricsServer {
    body: Arc<Mutex<String>>,
    pub address: std::net::SocketAddr,
}

/// Scrapes answered at once; a connection beyond them is closed at once.
const MAX_SCRAPES: usize = 16;

/// How long one scrape may take, from accept to the last byte of the answer.
const SCRAPE_DEADLINE: Duration = Duration::from_secs(2);

impl MetricsServer {
    pub fn start(address: &str) -> io::Result<MetricsServer> {
        let listener = TcpListener::bind(address)?;
        let bound = listener.local_addr()?;
        let body = Arc::new(Mutex::new(String::new()));
        let shared = body.clone();
        let active = Arc::new(AtomicUsize::new(0));
        std::thread::Builder::new().name("metrics".into()).spawn(move || {
            for stream in listener.incoming() {
                let stream = match stream {
                    Ok(stream) => stream,
                    // Out of descriptors and the like: wait rather than spin.
                    Err(_) => {
                        std::thread::sleep(Duration::from_millis(100));
                        continue;
                    }
                };
                if active.fetch_add(1, Ordering::SeqCst) >= MAX_SCRAPES {
                    active.fetch_sub(1, Ordering::SeqCst);
                    continue;
                }
                let (body, scraping) = (shared.clone(), active.clone());
                let spawned = std::thread::Builder::new().name("scrape".into()).spawn(move || {
                    let text = body.lock().map(|body| body.clone()).unwrap_or_default();
                    let _ = answer(stream, &text, Instant::now() + SCRAPE_DEADLINE);
                    scraping.fetch_sub(1, Ordering::SeqCst);
                });
                if spawned.is_err() {
                    active.fetch_sub(1, Ordering::SeqCst);
                }
            }
        })?;
        Ok(MetricsServer { body, address: bound })
    }

    pub fn update(&self, text: String) {
        if let Ok(mut body) = self.body.lock() {
            *body = text;
        }
    }
}

/// Reads the request head (up to 8 KiB, until the blank line), answers GET /metrics (or /) with `body`, anything
/// else with 404, and says so in the status line; gives up at `deadline` however the client trickles.
fn answer(mut stream: TcpStream, body: &str, deadline: Instant) -> io::Result<()> {
    let remaining = || {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            Err(io::Error::from(io::ErrorKind::TimedOut))
        } else {
            Ok(left)
        }
    };
    let mut head = Vec::new();
    let mut chunk = [0u8; 1024];
    while !head.windows(4).any(|window| window == b"\r\n\r\n") && head.len() < 8192 {
        stream.set_read_timeout(Some(remaining()?))?;
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
    let mut out = header.into_bytes();
    if method != "HEAD" {
        out.extend_from_slice(body.as_bytes());
    }
    // A reader that takes a byte at a time gets the time left, not a fresh timeout per write.
    let mut rest = out.as_slice();
    while !rest.is_empty() {
        stream.set_write_timeout(Some(remaining()?))?;
        match stream.write(rest)? {
            0 => return Err(io::ErrorKind::WriteZero.into()),
            written => rest = &rest[written..],
        }
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
    fn silent_clients_do_not_hold_up_a_scrape() {
        let server = MetricsServer::start("127.0.0.1:0").unwrap();
        server.update("vrrp_priority{instance=\"a\"} 100\n".to_string());
        // Connected, and never a byte: each holds a scrape thread until the deadline.
        let silent: Vec<TcpStream> = (0..8).map(|_| TcpStream::connect(server.address).unwrap()).collect();
        let start = Instant::now();
        let mut scrape = TcpStream::connect(server.address).unwrap();
        scrape.write_all(b"GET /metrics HTTP/1.0\r\n\r\n").unwrap();
        let mut answer = String::new();
        scrape.read_to_string(&mut answer).unwrap();
        assert!(answer.starts_with("HTTP/1.0 200 OK"), "{answer}");
        assert!(answer.ends_with("vrrp_priority{instance=\"a\"} 100\n"), "{answer}");
        assert!(start.elapsed() < SCRAPE_DEADLINE / 2, "{:?}", start.elapsed());
        drop(silent);
    }

    #[test]
    fn label_values_are_escaped() {
        let counters = Counters::default();
        let snapshot = Snapshot {
            name: "a\"b\\c",
            state: State::Master,
            priority: 100,
            counters: &counters,
        };
        let text = render(&[snapshot], &[("events", 3)]);
        assert!(
            text.contains(r#"vrrp_output_lines_dropped_total{output="events"} 3"#),
            "{text}"
        );
        assert!(text.contains(r#"vrrp_priority{instance="a\"b\\c"} 100"#), "{text}");
    }
}
