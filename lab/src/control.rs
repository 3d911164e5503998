//! The control socket of a running lab's supervisor, /run/lab/<lab>/control.sock: typed requests and replies, one
//! JSON object per line, shared by the client (`lab` commands) and the server (the supervisor).
//!
//! The socket is root's alone (its directory is 0700, the socket 0600, and the server checks the peer's
//! credentials); every connection is served on a thread of its own with a deadline for its request, so a client
//! that connects and says nothing blocks nobody. Every request names the lab and its instance: a supervisor
//! answers only for the lab it built.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::events::{Event, EventLog};
use crate::fault::Fault;
use crate::names::LabPaths;
use crate::state::LabState;

/// How long a client has to send its request once connected.
const REQUEST_DEADLINE: Duration = Duration::from_secs(5);
/// A request is one short line; anything longer is not a client of ours.
const REQUEST_MAX: u64 = 64 * 1024;
/// Connections served at once; more are refused so a flood of clients cannot exhaust the supervisor's threads.
const CONNECTIONS_MAX: usize = 64;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Request {
    pub lab: String,
    pub instance: String,
    pub action: Action,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "request", rename_all = "snake_case")]
pub enum Action {
    /// The lab's record.
    Status,
    /// Tear the lab down; the reply comes once everything is removed.
    Down,
    /// Inject a fault into each of `hosts`.
    Fault { hosts: Vec<String>, fault: Fault },
    /// Every event so far; with `follow`, then new events as they come, until the lab ends.
    Timeline { follow: bool },
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "reply", rename_all = "snake_case")]
pub enum Reply {
    /// A `down` was received and is under way; `Done` follows once everything is removed.
    Accepted,
    Done,
    Error {
        message: String,
    },
    State {
        state: Box<LabState>,
    },
    Event {
        event: Event,
    },
    /// Events dropped from the supervisor's memory before this reader got them (they are in events.log).
    Missed {
        count: usize,
    },
}

/// What the supervisor itself must act on, with where to send its answer.
pub enum Command {
    Down {
        reply: Responder,
    },
    Fault {
        hosts: Vec<String>,
        fault: Fault,
        reply: Responder,
    },
}

/// The connection a command came on: the supervisor answers on it itself, so its answer to `down` is written
/// before the process ends.
pub struct Responder(UnixStream);

impl Responder {
    pub fn send(&self, answer: Reply) {
        let _ = reply(&self.0, &answer);
    }
}

/// Listens for clients on a thread of its own. `status` and timelines are answered on each connection's thread;
/// `down` and faults go to the supervisor through `commands`.
pub fn serve(
    paths: &LabPaths,
    instance: &str,
    events: Arc<EventLog>,
    commands: mpsc::Sender<Command>,
) -> io::Result<()> {
    let path = paths.control_socket();
    let _ = std::fs::remove_file(&path);
    let listener = UnixListener::bind(&path)?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
    let server = Arc::new(Server {
        paths: paths.clone(),
        instance: instance.to_string(),
        events,
        commands,
        connections: AtomicUsize::new(0),
    });
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else {
                // Out of descriptors, most likely: give the connections being served time to end.
                std::thread::sleep(Duration::from_millis(100));
                continue;
            };
            if server.connections.fetch_add(1, Ordering::SeqCst) >= CONNECTIONS_MAX {
                server.connections.fetch_sub(1, Ordering::SeqCst);
                let _ = reply(
                    &stream,
                    &Reply::Error {
                        message: "too many connections".into(),
                    },
                );
                continue;
            }
            let server = server.clone();
            std::thread::spawn(move || {
                server.serve_one(stream);
                server.connections.fetch_sub(1, Ordering::SeqCst);
            });
        }
    });
    Ok(())
}

struct Server {
    paths: LabPaths,
    instance: String,
    events: Arc<EventLog>,
    commands: mpsc::Sender<Command>,
    connections: AtomicUsize,
}

impl Server {
    fn serve_one(&self, stream: UnixStream) {
        let answer = match self.read_request(&stream) {
            Ok(action) => action,
            Err(message) => {
                let _ = reply(&stream, &Reply::Error { message });
                return;
            }
        };
        let _ = stream.set_read_timeout(None);
        let outcome = match answer {
            Action::Status => match LabState::load(&self.paths) {
                Ok(state) => reply(&stream, &Reply::State { state: Box::new(state) }),
                Err(e) => reply(&stream, &Reply::Error { message: e.to_string() }),
            },
            Action::Timeline { follow } => stream_events(&stream, &self.events, follow),
            Action::Down => self.ask(stream, |reply| Command::Down { reply }),
            Action::Fault { hosts, fault } => self.ask(stream, |reply| Command::Fault { hosts, fault, reply }),
        };
        let _ = outcome;
    }

    /// The request, if it comes from root in time, is well-formed and is for this lab and instance.
    fn read_request(&self, stream: &UnixStream) -> Result<Action, String> {
        let peer = peer_uid(stream).map_err(|e| format!("cannot read the peer's credentials: {e}"))?;
        let line = read_line_before(stream, Instant::now() + REQUEST_DEADLINE);
        // Refused only once its request is read: a client still writing when the answer came and the connection
        // closed would get EPIPE and might never read why.
        if peer != 0 && peer != nix::unistd::geteuid().as_raw() {
            return Err(format!("uid {peer} may not control this lab"));
        }
        let line = line?;
        let request: Request = serde_json::from_slice(&line).map_err(|e| format!("malformed request: {e}"))?;
        if request.lab != self.paths.lab() || request.instance != self.instance {
            return Err(format!(
                "this supervisor runs lab {} instance {}, not lab {} instance {}",
                self.paths.lab(),
                self.instance,
                request.lab,
                request.instance
            ));
        }
        Ok(request.action)
    }

    /// Hands a command, with the connection to answer on, to the supervisor.
    fn ask(&self, stream: UnixStream, command: impl FnOnce(Responder) -> Command) -> io::Result<()> {
        let answer_here = stream.try_clone()?;
        if self.commands.send(command(Responder(stream))).is_err() {
            return reply(
                &answer_here,
                &Reply::Error {
                    message: "the lab is going down".into(),
                },
            );
        }
        Ok(())
    }
}

/// One line (at most [`REQUEST_MAX`] bytes), read before `deadline` however slowly its bytes arrive.
fn read_line_before(mut stream: &UnixStream, deadline: Instant) -> Result<Vec<u8>, String> {
    let mut line = Vec::new();
    let mut byte = [0u8; 512];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(format!("no complete request within {REQUEST_DEADLINE:?}"));
        }
        stream.set_read_timeout(Some(left)).map_err(|e| e.to_string())?;
        let n = match stream.read(&mut byte) {
            Ok(0) => return Err("the connection ended before a request".into()),
            Ok(n) => n,
            Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => continue,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e.to_string()),
        };
        line.extend_from_slice(&byte[..n]);
        if let Some(end) = line.iter().position(|b| *b == b'\n') {
            line.truncate(end);
            return Ok(line);
        }
        if line.len() as u64 > REQUEST_MAX {
            return Err(format!("a request is one line of at most {REQUEST_MAX} bytes"));
        }
    }
}

fn peer_uid(stream: &UnixStream) -> io::Result<u32> {
    use nix::sys::socket::{getsockopt, sockopt::PeerCredentials};
    Ok(getsockopt(stream, PeerCredentials).map_err(io::Error::from)?.uid())
}

fn reply(mut stream: &UnixStream, reply: &Reply) -> io::Result<()> {
    let mut line = serde_json::to_vec(reply).expect("serializable reply");
    line.push(b'\n');
    stream.write_all(&line)
}

fn stream_events(stream: &UnixStream, events: &EventLog, follow: bool) -> io::Result<()> {
    let mut cursor = 0;
    loop {
        let batch = events.since(cursor, Duration::from_millis(200));
        cursor = batch.next;
        if batch.missed > 0 {
            reply(stream, &Reply::Missed { count: batch.missed })?;
        }
        for event in batch.events {
            reply(stream, &Reply::Event { event })?;
        }
        if !follow {
            return reply(stream, &Reply::Done);
        }
    }
}

/// A connection to the supervisor of one lab instance.
pub struct Client {
    lab: String,
    instance: String,
    stream: UnixStream,
    /// One reader for the whole connection: replies may arrive together, and a reader dropped between two lines
    /// would lose the second.
    replies: BufReader<UnixStream>,
}

impl Client {
    pub fn connect(paths: &LabPaths, instance: &str) -> io::Result<Client> {
        let stream = UnixStream::connect(paths.control_socket()).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!(
                    "no supervisor answers for lab {} ({e}); is it up (`lab ls`)?",
                    paths.lab()
                ),
            )
        })?;
        Ok(Client {
            lab: paths.lab().to_string(),
            instance: instance.to_string(),
            replies: BufReader::new(stream.try_clone()?),
            stream,
        })
    }

    /// Sends `action` and reads the first reply, waiting at most `timeout` (forever with `None`).
    pub fn request(&mut self, action: Action, timeout: Option<Duration>) -> io::Result<Reply> {
        self.send(action)?;
        self.next_reply(timeout)?
            .ok_or_else(|| io::Error::other("the supervisor closed the connection without an answer"))
    }

    fn send(&mut self, action: Action) -> io::Result<()> {
        let request = Request {
            lab: self.lab.clone(),
            instance: self.instance.clone(),
            action,
        };
        let mut line = serde_json::to_vec(&request).expect("serializable request");
        line.push(b'\n');
        self.stream.write_all(&line)
    }

    /// The next reply, waiting at most `timeout` (forever with `None`); `None` once the supervisor hung up.
    pub fn next_reply(&mut self, timeout: Option<Duration>) -> io::Result<Option<Reply>> {
        self.stream.set_read_timeout(timeout)?;
        let mut line = String::new();
        if self.replies.read_line(&mut line)? == 0 {
            return Ok(None);
        }
        serde_json::from_str(&line)
            .map(Some)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, format!("undecodable reply: {e}")))
    }

    /// Reads the timeline, calling `each` per event; with `follow`, until the lab ends or `each` returns false.
    /// Returns how many events the supervisor had already dropped from memory (they are in its events.log).
    pub fn timeline(mut self, follow: bool, mut each: impl FnMut(Event) -> bool) -> io::Result<usize> {
        let mut missed = 0;
        self.send(Action::Timeline { follow })?;
        while let Some(reply) = self.next_reply(None)? {
            match reply {
                Reply::Event { event } => {
                    if !each(event) {
                        break;
                    }
                }
                Reply::Missed { count } => missed += count,
                Reply::Done => break,
                Reply::Error { message } => return Err(io::Error::other(message)),
                Reply::State { .. } | Reply::Accepted => {}
            }
        }
        Ok(missed)
    }
}

/// The answer of a request that only succeeds or fails.
pub fn done(reply: Reply) -> io::Result<()> {
    match reply {
        Reply::Done => Ok(()),
        Reply::Error { message } => Err(io::Error::other(message)),
        other => Err(io::Error::other(format!("unexpected reply {other:?}"))),
    }
}
