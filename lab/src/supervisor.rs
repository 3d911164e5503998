//! The runner of a lab that is up: it prints (or logs) the lab's events, answers the control socket, injects the
//! faults it is asked for, and takes the lab down on a stop signal or a `down` request.

use std::fs::File;
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::Duration;

use nix::sys::signal::{SigSet, Signal};

use crate::control::{self, Command, Reply};
use crate::events::{EventKind, ExitStatus};
use crate::lab::{Cancel, Lab};

/// A detached lab's events.log is rotated to events.log.1 past this size, so a lab left up for days stays bounded.
pub const EVENTS_LOG_CAP: u64 = 64 * 1024 * 1024;

/// How each service ended, by host and service.
pub type Statuses = Vec<(String, String, ExitStatus)>;

enum Input {
    /// SIGINT, SIGTERM or SIGHUP.
    Signal,
    Control(Command),
}

/// The stop signals, blocked in every thread (call before any thread exists: threads inherit the mask) and
/// waited for by one thread of their own. The first one cancels a bring-up in progress, then stops the lab.
pub struct StopSignals {
    pub cancel: Cancel,
    received: mpsc::Receiver<()>,
}

impl StopSignals {
    pub fn block() -> io::Result<StopSignals> {
        let signals: SigSet = [Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP].into_iter().collect();
        signals.thread_block()?;
        let cancel = Cancel::on_signals();
        let (tx, received) = mpsc::channel();
        let flag = cancel.clone();
        std::thread::spawn(move || {
            while signals.wait().is_ok() {
                flag.cancel();
                if tx.send(()).is_err() {
                    return;
                }
            }
        });
        Ok(StopSignals { cancel, received })
    }
}

/// Where the events go: the terminal of a foreground lab, or a detached lab's events.log.
pub struct EventSink {
    out: Box<dyn Write + Send>,
    json: bool,
}

impl EventSink {
    pub fn new(out: Box<dyn Write + Send>, json: bool) -> EventSink {
        EventSink { out, json }
    }

    fn write(&mut self, event: &crate::Event) -> io::Result<()> {
        if self.json {
            writeln!(
                self.out,
                "{}",
                serde_json::to_string(event).expect("serializable event")
            )
        } else {
            writeln!(self.out, "{event}")
        }
    }
}

/// Runs `lab` until a stop signal or a `down` request, then takes it down. Returns how its services ended.
pub fn supervise(mut lab: Lab, signals: StopSignals, mut sink: EventSink) -> io::Result<Statuses> {
    let (input_tx, input) = mpsc::channel::<Input>();
    let (control_tx, control_rx) = mpsc::channel();
    control::serve(lab.paths(), &lab.state().instance, lab.events().clone(), control_tx)?;
    forward(control_rx, input_tx.clone(), Input::Control);
    forward(signals.received, input_tx, |()| Input::Signal);

    let mut cursor = 0;
    let down_reply = loop {
        let batch = lab.events().since(cursor, Duration::ZERO);
        cursor = batch.next;
        let mut exited = false;
        for event in &batch.events {
            sink.write(event)?;
            exited |= matches!(
                event.kind,
                EventKind::ServiceExited { .. } | EventKind::ServiceRestarted { .. }
            );
        }
        sink.out.flush()?;
        if exited {
            lab.save_state()?;
        }
        match input.recv_timeout(Duration::from_millis(50)) {
            Ok(Input::Control(Command::Fault { hosts, fault, reply })) => {
                let hosts: Vec<&str> = hosts.iter().map(String::as_str).collect();
                let answer = match lab.inject(&hosts, &fault) {
                    Ok(()) => Reply::Done,
                    Err(e) => Reply::Error { message: e.to_string() },
                };
                reply.send(answer);
            }
            Ok(Input::Control(Command::Down { reply })) => {
                reply.send(Reply::Accepted);
                break Some(reply);
            }
            Ok(Input::Signal) | Err(mpsc::RecvTimeoutError::Disconnected) => break None,
            Err(mpsc::RecvTimeoutError::Timeout) => {}
        }
    };
    let name = lab.name().to_string();
    let statuses = lab.down();
    if let Ok(statuses) = &statuses {
        for (host, service, status) in statuses {
            let _ = writeln!(sink.out, "{host}/{service}: {status}");
        }
        let _ = writeln!(sink.out, "lab {name} is down");
    }
    let outcome = match &statuses {
        Ok(_) => Reply::Done,
        Err(e) => Reply::Error { message: e.to_string() },
    };
    if let Some(reply) = down_reply {
        reply.send(outcome.clone());
    }
    // Requests that came in meanwhile get an answer too, not a closed connection.
    while let Ok(late) = input.try_recv() {
        match late {
            Input::Control(Command::Down { reply }) => reply.send(outcome.clone()),
            Input::Control(Command::Fault { reply, .. }) => reply.send(Reply::Error {
                message: format!("lab {name} is down"),
            }),
            Input::Signal => {}
        }
    }
    statuses
}

fn forward<T: Send + 'static>(from: mpsc::Receiver<T>, to: mpsc::Sender<Input>, wrap: fn(T) -> Input) {
    std::thread::spawn(move || {
        for item in from {
            if to.send(wrap(item)).is_err() {
                return;
            }
        }
    });
}

/// For the detached supervisor once its lab is up: tells the waiting parent (one line on stderr), lets go of the
/// parent's pipes, and returns the lab's events.log to write events to.
pub fn detach(events_log: &Path) -> io::Result<Box<dyn Write + Send>> {
    let log = CappedFile::create(events_log.to_path_buf(), EVENTS_LOG_CAP)?;
    // A parent that is gone (Ctrl-C) cannot be told; the lab stays up, detached, as asked.
    let _ = writeln!(io::stderr(), "ready");
    redirect_stdio_to_null()?;
    Ok(Box::new(log))
}

fn redirect_stdio_to_null() -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let null = std::fs::OpenOptions::new().write(true).open("/dev/null")?;
    for fd in [1, 2] {
        // SAFETY: dup2 onto the standard descriptors; the old ones were pipes to a parent that has gone.
        if unsafe { libc::dup2(null.as_raw_fd(), fd) } < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// A log file that is moved to `<path>.1` (replacing the previous one) once it holds `cap` bytes, so at most twice
/// `cap` is ever kept.
pub struct CappedFile {
    path: PathBuf,
    file: File,
    written: u64,
    cap: u64,
}

impl CappedFile {
    pub fn create(path: PathBuf, cap: u64) -> io::Result<CappedFile> {
        Ok(CappedFile {
            file: open_private(&path)?,
            path,
            written: 0,
            cap,
        })
    }

    fn rotate(&mut self) -> io::Result<()> {
        let mut previous = self.path.clone().into_os_string();
        previous.push(".1");
        std::fs::rename(&self.path, previous)?;
        self.file = open_private(&self.path)?;
        self.written = 0;
        Ok(())
    }
}

fn open_private(path: &Path) -> io::Result<File> {
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
}

impl Write for CappedFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.written >= self.cap {
            self.rotate()?;
        }
        let n = self.file.write(buf)?;
        self.written += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capped_file_keeps_at_most_two_generations() {
        let dir = std::env::temp_dir().join(format!("capped-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("events.log");
        let mut file = CappedFile::create(path.clone(), 100).unwrap();
        for _ in 0..50 {
            file.write_all(&[b'x'; 30]).unwrap();
        }
        let current = std::fs::metadata(&path).unwrap().len();
        let previous = std::fs::metadata(dir.join("events.log.1")).unwrap().len();
        assert!(current <= 120 && previous <= 120, "{current} {previous}");
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 2);
        std::fs::remove_dir_all(dir).unwrap();
    }
}
