//! A part of a spread lab running on another machine: `lab part` there, in the foreground of one SSH session. The
//! coordinator writes the part's spec on the session's stdin and keeps it open; the part prints its instance, then
//! its events as JSON lines, which land in the coordinator's event log on the coordinator's clock. Closing stdin
//! (or losing the session: the coordinator died, or the network did) makes the part take itself down.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::process::{Child, ChildStdin, Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::clock::{Offset, REESTIMATE_EVERY};
use super::report::ClockSession;
use super::ssh::Ssh;
use super::PartSpec;
use crate::events::{Event, EventKind, EventLog, RemoteClock};

/// The line a part prints first: the instance of its lab, which `lab down --instance` checks.
pub const INSTANCE_PREFIX: &str = "instance ";

/// The coordinator writes an empty line to each part this often; a part that hears nothing for
/// [`HEARTBEAT_PATIENCE`] takes itself down (its coordinator died, or the network between them did, and closing
/// the session may never reach it).
pub const HEARTBEAT: Duration = Duration::from_secs(1);
pub const HEARTBEAT_PATIENCE: Duration = Duration::from_secs(15);

/// What the coordinator records of a remote part, before building it and once it is up.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RemoteRecord {
    pub ssh: Ssh,
    /// The part's lab instance there, once it has said.
    pub instance: Option<String>,
    /// The hosts it runs.
    pub hosts: Vec<String>,
}

pub struct RemotePart {
    pub ssh: Ssh,
    pub instance: String,
    lab: String,
    session: Child,
    /// Shared with the heartbeat; taken (closed) to take the part down.
    stdin: Arc<Mutex<Option<ChildStdin>>>,
    offset: Arc<Mutex<Offset>>,
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

impl RemotePart {
    /// Starts the part and returns once it is up (its `lab_up` event has arrived), or with why not: what the part
    /// said on stderr, or that the session ended.
    pub fn start(ssh: Ssh, spec: &PartSpec, offset: Offset, events: Arc<EventLog>) -> io::Result<RemotePart> {
        let mut session = ssh
            .lab(&["part"], false)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()?;
        let mut stdin = session.stdin.take().expect("piped");
        let stdout = BufReader::new(session.stdout.take().expect("piped"));
        let stderr = session.stderr.take().expect("piped");
        let said = Arc::new(Mutex::new(String::new()));
        let collect = {
            let said = said.clone();
            std::thread::spawn(move || {
                let mut text = String::new();
                let _ = BufReader::new(stderr).read_to_string(&mut text);
                said.lock().unwrap_or_else(PoisonError::into_inner).push_str(&text);
            })
        };
        let spec_line = serde_json::to_string(spec).map_err(io::Error::other)? + "\n";
        // A part that exits at once is reported by what it said, below.
        let _ = stdin.write_all(spec_line.as_bytes()).and_then(|()| stdin.flush());
        let stdin = Arc::new(Mutex::new(Some(stdin)));
        let stop: Arc<AtomicBool> = Arc::default();
        let heartbeat = {
            let (stdin, stop) = (stdin.clone(), stop.clone());
            std::thread::spawn(move || beat(&stdin, &stop))
        };
        let offset = Arc::new(Mutex::new(offset));
        let (up_tx, up_rx) = mpsc::channel();
        let reader = {
            let (machine, offset, events) = (ssh.machine.clone(), offset.clone(), events.clone());
            std::thread::spawn(move || read_part(stdout, &machine, &offset, &events, up_tx))
        };
        let mut part = RemotePart {
            ssh,
            instance: String::new(),
            lab: spec.lab.clone(),
            session,
            stdin,
            offset,
            stop,
            threads: vec![reader, heartbeat],
        };
        let mut instance = None;
        for message in up_rx {
            match message {
                PartSays::Instance(id) => instance = Some(id),
                PartSays::Up => {
                    part.instance = instance.unwrap_or_default();
                    part.threads.push(collect);
                    part.keep_clock(events);
                    return Ok(part);
                }
            }
        }
        let _ = collect.join();
        part.stop.store(true, Ordering::SeqCst);
        let status = part.session.wait()?;
        let said = said.lock().unwrap_or_else(PoisonError::into_inner).clone();
        let output = Output {
            status,
            stdout: Vec::new(),
            stderr: said.into_bytes(),
        };
        Err(part.ssh.failed("part", &output))
    }

    /// Estimates the machine's clock offset again every [`REESTIMATE_EVERY`], each estimate an event.
    fn keep_clock(&mut self, events: Arc<EventLog>) {
        let (ssh, offset, stop) = (self.ssh.clone(), self.offset.clone(), self.stop.clone());
        let mut first = Some(*offset.lock().unwrap_or_else(PoisonError::into_inner));
        self.threads.push(std::thread::spawn(move || {
            let mut session = None;
            loop {
                let estimate = match first.take() {
                    Some(estimate) => Some(estimate),
                    None => {
                        if session.is_none() {
                            session = ClockSession::open(&ssh).ok();
                        }
                        match session.as_mut().map(ClockSession::estimate) {
                            Some(Ok(estimate)) => Some(estimate),
                            _ => {
                                session = None;
                                None
                            }
                        }
                    }
                };
                if let Some(estimate) = estimate {
                    *offset.lock().unwrap_or_else(PoisonError::into_inner) = estimate;
                    events.push_at(estimate.measured_at_ns, None, clock_event(&ssh.machine, &estimate));
                }
                let slept = std::time::Instant::now();
                while slept.elapsed() < REESTIMATE_EVERY {
                    if stop.load(Ordering::SeqCst) {
                        return;
                    }
                    std::thread::sleep(Duration::from_millis(100));
                }
            }
        }));
    }

    pub fn machine(&self) -> &str {
        &self.ssh.machine
    }

    pub fn record(&self, hosts: Vec<String>) -> RemoteRecord {
        RemoteRecord {
            ssh: self.ssh.clone(),
            instance: Some(self.instance.clone()),
            hosts,
        }
    }

    /// `argv` in `host`, to the end.
    pub fn exec(&self, host: &str, argv: &[&str]) -> io::Result<Output> {
        let mut args = vec!["exec", &self.lab, host, "--"];
        args.extend(argv);
        self.ssh
            .lab(&args, false)
            .stdin(Stdio::null())
            .output()
            .map_err(|e| io::Error::new(e.kind(), format!("machine {}: {e}", self.ssh.machine)))
    }

    /// A fault, in its words, on `hosts` of this part.
    pub fn fault(&self, hosts: &[&str], words: &[String]) -> io::Result<()> {
        let hosts = hosts.join(",");
        let mut args = vec!["fault", &self.lab, &hosts];
        args.extend(words.iter().map(String::as_str));
        self.ssh.run(&args, None).map(drop)
    }

    /// Takes the part down: its session's stdin closes, and the part removes itself. If the session is gone,
    /// `lab down` there removes what is left (checking that it is this part's instance).
    pub fn down(mut self, patience: Duration) -> io::Result<()> {
        self.stop.store(true, Ordering::SeqCst);
        self.close_stdin();
        let started = std::time::Instant::now();
        let ended = loop {
            match self.session.try_wait()? {
                Some(status) => break Some(status),
                None if started.elapsed() > patience => break None,
                None => std::thread::sleep(Duration::from_millis(50)),
            }
        };
        if ended.is_none() {
            let _ = self.session.kill();
            let _ = self.session.wait();
        }
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
        if ended.is_some_and(|s| s.success()) {
            return Ok(());
        }
        down_recorded(&self.record(Vec::new()), &self.lab, patience)
    }
}

impl RemotePart {
    fn close_stdin(&mut self) {
        drop(self.stdin.lock().unwrap_or_else(PoisonError::into_inner).take());
    }
}

impl Drop for RemotePart {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        self.close_stdin();
        let _ = self.session.wait();
    }
}

/// The heartbeat: an empty line every [`HEARTBEAT`] until stopped or the session's stdin is closed.
fn beat(stdin: &Mutex<Option<ChildStdin>>, stop: &AtomicBool) {
    while !stop.load(Ordering::SeqCst) {
        std::thread::sleep(HEARTBEAT);
        let mut stdin = stdin.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(pipe) = stdin.as_mut() else { return };
        if pipe.write_all(b"\n").and_then(|()| pipe.flush()).is_err() {
            return;
        }
    }
}

/// `lab down` of a recorded part on its machine: what the coordinator does for a lab whose runner was killed, and
/// after a part's session was lost. A part that left nothing is fine.
pub fn down_recorded(record: &RemoteRecord, lab: &str, patience: Duration) -> io::Result<()> {
    let timeout = format!("{}", patience.as_secs_f64());
    let mut args = vec!["down", lab, "--timeout", &timeout];
    if let Some(instance) = &record.instance {
        args.extend(["--instance", instance]);
    }
    record.ssh.run(&args, None).map(drop)
}

pub fn clock_event(machine: &str, offset: &Offset) -> EventKind {
    EventKind::ClockOffset {
        machine: machine.to_string(),
        offset_ns: offset.offset_ns,
        uncertainty_ns: offset.uncertainty_ns,
    }
}

enum PartSays {
    Instance(String),
    Up,
}

/// The part's stdout: its instance, then its events, each put on the coordinator's clock with the offset's
/// uncertainty. Other lines (the part's closing words) are not events.
fn read_part(
    stdout: impl BufRead,
    machine: &str,
    offset: &Mutex<Offset>,
    events: &EventLog,
    says: mpsc::Sender<PartSays>,
) {
    for line in stdout.lines() {
        let Ok(line) = line else { return };
        if let Some(instance) = line.strip_prefix(INSTANCE_PREFIX) {
            let _ = says.send(PartSays::Instance(instance.trim().to_string()));
            continue;
        }
        let Ok(mut event) = serde_json::from_str::<Event>(&line) else {
            continue;
        };
        let offset = *offset.lock().unwrap_or_else(PoisonError::into_inner);
        event.at_ns = offset.to_local(event.at_ns);
        event.clock = Some(RemoteClock {
            machine: machine.to_string(),
            uncertainty_ns: offset.uncertainty_ns,
        });
        let up = matches!(event.kind, EventKind::LabUp { .. });
        events.push_event(event);
        if up {
            let _ = says.send(PartSays::Up);
        }
    }
}
