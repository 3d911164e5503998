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

/// The coordinator writes an empty line to each part this often; a part that hears nothing for
/// [`HEARTBEAT_PATIENCE`] takes itself down (its coordinator died, or the network between them did, and closing
/// the session may never reach it).
pub const HEARTBEAT: Duration = Duration::from_secs(1);
pub const HEARTBEAT_PATIENCE: Duration = Duration::from_secs(15);

/// What the coordinator records of a remote part, before building it and once it is up.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RemoteRecord {
    pub ssh: Ssh,
    /// The part's lab instance there, chosen by the coordinator.
    pub instance: String,
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
    /// said on stderr, that the session ended, or that `cancel` was set (the part is then told to stop).
    pub fn start(
        ssh: Ssh,
        spec: &PartSpec,
        offset: Offset,
        events: Arc<EventLog>,
        cancel: &crate::lab::Cancel,
    ) -> io::Result<RemotePart> {
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
            // What it says, up to [`SAID_LIMIT`]; the rest is read and dropped, so the part never blocks on it.
            std::thread::spawn(move || {
                let mut kept = Vec::new();
                let mut stderr = stderr;
                let _ = (&mut stderr).take(SAID_LIMIT).read_to_end(&mut kept);
                said.lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .push_str(&String::from_utf8_lossy(&kept));
                let _ = io::copy(&mut stderr, &mut io::sink());
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
            instance: spec.instance.clone(),
            lab: spec.lab.clone(),
            session,
            stdin,
            offset,
            stop,
            threads: vec![reader, heartbeat],
        };
        loop {
            match up_rx.recv_timeout(Duration::from_millis(100)) {
                Ok(()) => {
                    part.threads.push(collect);
                    part.keep_clock(events);
                    return Ok(part);
                }
                Err(mpsc::RecvTimeoutError::Timeout) if cancel.is_cancelled() => {
                    // Told to stop, the part removes what it built and its session ends.
                    part.close_stdin();
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
            }
        }
        let _ = collect.join();
        part.stop.store(true, Ordering::SeqCst);
        let status = part.session.wait()?;
        if cancel.is_cancelled() {
            return Err(io::Error::new(
                io::ErrorKind::Interrupted,
                format!("machine {}: interrupted", part.ssh.machine),
            ));
        }
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
        self.ssh.run(&args).map(drop)
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
        down_there(&self.ssh, &self.instance, &self.lab, patience)
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
    down_there(&record.ssh, &record.instance, lab, patience)
}

fn down_there(ssh: &Ssh, instance: &str, lab: &str, patience: Duration) -> io::Result<()> {
    let timeout = format!("{}", patience.as_secs_f64());
    ssh.run(&["down", lab, "--timeout", &timeout, "--instance", instance])
        .map(drop)
}

pub fn clock_event(machine: &str, offset: &Offset) -> EventKind {
    EventKind::ClockOffset {
        machine: machine.to_string(),
        offset_ns: offset.offset_ns,
        uncertainty_ns: offset.uncertainty_ns,
    }
}

/// A part's way out to its coordinator: what the part writes is queued, up to [`OUTBOX_LIMIT`] flushes, and
/// written by a thread of its own; when the queue is full (the session stalled), writes are dropped and counted, so
/// the part's loop never blocks on its output and always hears its stop.
pub struct Outbox {
    pending: Vec<u8>,
    queue: mpsc::SyncSender<Vec<u8>>,
    dropped: u64,
}

pub const OUTBOX_LIMIT: usize = 4096;

impl Outbox {
    pub fn new(mut out: impl Write + Send + 'static) -> Outbox {
        let (queue, items) = mpsc::sync_channel::<Vec<u8>>(OUTBOX_LIMIT);
        std::thread::spawn(move || {
            for item in items {
                if out.write_all(&item).and_then(|()| out.flush()).is_err() {
                    return;
                }
            }
        });
        Outbox {
            pending: Vec::new(),
            queue,
            dropped: 0,
        }
    }
}

impl Write for Outbox {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        self.pending.extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let item = std::mem::take(&mut self.pending);
        match self.queue.try_send(item) {
            Ok(()) => Ok(()),
            Err(mpsc::TrySendError::Full(_)) => {
                self.dropped += 1;
                Ok(())
            }
            Err(mpsc::TrySendError::Disconnected(_)) => Err(io::ErrorKind::BrokenPipe.into()),
        }
    }
}

/// How much of what a part says on stderr is kept for an error message.
const SAID_LIMIT: u64 = 64 * 1024;

/// The part's stdout: its events, each put on the coordinator's clock with the offset's uncertainty; its own
/// `lab up` and `lab down` become the part's (the lab is up when every part is, which the coordinator says). Other
/// lines (the part's closing words) are not events. When the stream ends, whether asked to or not, that is an event
/// too: a part that went away is on the timeline.
fn read_part(stdout: impl BufRead, machine: &str, offset: &Mutex<Offset>, events: &EventLog, up: mpsc::Sender<()>) {
    let to_local = |mut event: Event| {
        let offset = *offset.lock().unwrap_or_else(PoisonError::into_inner);
        event.at_ns = offset.to_local(event.at_ns);
        event.clock = Some(RemoteClock {
            machine: machine.to_string(),
            uncertainty_ns: offset.uncertainty_ns,
        });
        event
    };
    for line in stdout.split(b'\n') {
        let Ok(line) = line else { break };
        let Ok(mut event) = serde_json::from_slice::<Event>(&line) else {
            continue;
        };
        let part_up = matches!(event.kind, EventKind::LabUp { .. });
        event.kind = match event.kind {
            EventKind::LabUp { build_ms, .. } => EventKind::PartUp {
                machine: machine.to_string(),
                build_ms,
            },
            EventKind::LabDown { .. } => EventKind::PartDown {
                machine: machine.to_string(),
            },
            kind => kind,
        };
        events.push_event(to_local(event));
        if part_up {
            let _ = up.send(());
        }
    }
    let ended = EventKind::PartEnded {
        machine: machine.to_string(),
    };
    events.push(None, ended);
}
