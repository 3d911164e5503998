//! The control socket of a running lab's supervisor, /run/lab/<lab>/control.sock: one request line per connection.
//!
//! - `status`: the state as JSON;
//! - `down`: tears the lab down, replies `ok` once everything is removed;
//! - `fault HOST[,HOST...] WORD...`: injects a fault (words as `lab fault` takes them), replies `ok` or `error: ...`;
//! - `timeline`: every event so far, one JSON object per line; `follow`: the same, then new events as they come.

use std::io::{self, BufRead, BufReader, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;
use std::sync::{mpsc, Arc};
use std::time::Duration;

use crate::events::{Event, EventLog};
use crate::fault::Fault;
use crate::state;

pub fn socket_path(lab: &str) -> PathBuf {
    state::run_dir(lab).join("control.sock")
}

/// A request the supervisor itself must act on, with the connection to answer.
pub enum Request {
    Down(UnixStream),
    Fault {
        hosts: Vec<String>,
        fault: Fault,
        reply: UnixStream,
    },
}

/// Listens for clients on a thread of its own. `status` and timelines are answered there (each timeline client
/// on a thread of its own); `down` and faults go to the supervisor through `requests`.
pub fn serve(lab: &str, events: Arc<EventLog>, requests: mpsc::Sender<Request>) -> io::Result<()> {
    let path = socket_path(lab);
    let _ = std::fs::remove_file(&path);
    let listener = UnixListener::bind(&path)?;
    let lab = lab.to_string();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut line = String::new();
            if BufReader::new(&stream).read_line(&mut line).is_err() {
                continue;
            }
            let words: Vec<String> = line.split_whitespace().map(str::to_string).collect();
            match words.first().map(String::as_str) {
                Some("status") => {
                    let reply = state::LabState::load(&lab)
                        .map(|s| serde_json::to_string(&s).expect("serializable state"))
                        .unwrap_or_else(|e| format!("error: {e}"));
                    let _ = writeln!(stream, "{reply}");
                }
                Some("down") => {
                    if requests.send(Request::Down(stream)).is_err() {
                        return;
                    }
                }
                Some("fault") if words.len() >= 3 => match Fault::parse(&words[2..]) {
                    Ok(fault) => {
                        let hosts = words[1].split(',').map(str::to_string).collect();
                        let request = Request::Fault {
                            hosts,
                            fault,
                            reply: stream,
                        };
                        if requests.send(request).is_err() {
                            return;
                        }
                    }
                    Err(why) => {
                        let _ = writeln!(stream, "error: {why}");
                    }
                },
                Some(verb @ ("timeline" | "follow")) => {
                    let (events, follow) = (events.clone(), verb == "follow");
                    std::thread::spawn(move || stream_events(stream, &events, follow));
                }
                _ => {
                    let _ = writeln!(
                        stream,
                        "error: unknown request `{}` (expected status, down, fault, timeline or follow)",
                        line.trim()
                    );
                }
            }
        }
    });
    Ok(())
}

fn stream_events(mut stream: UnixStream, events: &EventLog, follow: bool) {
    let mut sent = 0;
    loop {
        let batch = events.since(sent, Duration::from_millis(200));
        sent += batch.len();
        for event in batch {
            let line = serde_json::to_string(&event).expect("serializable event");
            if writeln!(stream, "{line}").is_err() {
                return;
            }
        }
        if !follow {
            return;
        }
    }
}

/// Asks the supervisor of `lab` to tear it down and waits for it to finish. `Ok(false)`: no supervisor answered.
pub fn request_down(lab: &str, timeout: Duration) -> io::Result<bool> {
    let Ok(mut stream) = UnixStream::connect(socket_path(lab)) else {
        return Ok(false);
    };
    stream.set_read_timeout(Some(timeout))?;
    writeln!(stream, "down")?;
    let mut reply = String::new();
    BufReader::new(&stream).read_line(&mut reply)?;
    match reply.trim() {
        "ok" => Ok(true),
        "" => Ok(false),
        other => Err(io::Error::other(other.to_string())),
    }
}

fn connect(lab: &str) -> io::Result<UnixStream> {
    UnixStream::connect(socket_path(lab)).map_err(|e| {
        io::Error::new(
            e.kind(),
            format!("no supervisor answers for lab {lab} ({e}); is it up (`lab ls`)?"),
        )
    })
}

/// Asks the supervisor of `lab` to inject a fault and waits until it is done.
pub fn request_fault(lab: &str, hosts: &str, words: &[String]) -> io::Result<()> {
    let mut stream = connect(lab)?;
    writeln!(stream, "fault {hosts} {}", words.join(" "))?;
    let mut reply = String::new();
    BufReader::new(&stream).read_line(&mut reply)?;
    match reply.trim() {
        "ok" => Ok(()),
        "" => Err(io::Error::other(
            "the supervisor closed the connection without an answer",
        )),
        other => Err(io::Error::other(other.trim_start_matches("error: ").to_string())),
    }
}

/// Reads the timeline of `lab` from its supervisor, calling `each` per event; with `follow`, until the lab ends or
/// `each` returns false.
pub fn read_timeline(lab: &str, follow: bool, mut each: impl FnMut(Event) -> bool) -> io::Result<()> {
    let mut stream = connect(lab)?;
    writeln!(stream, "{}", if follow { "follow" } else { "timeline" })?;
    for line in BufReader::new(&stream).lines() {
        let event: Event = serde_json::from_str(&line?)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, format!("undecodable event: {e}")))?;
        if !each(event) {
            break;
        }
    }
    Ok(())
}
