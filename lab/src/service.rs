//! Services: long-running programs declared in the topology, started in their host in topology order, their
//! output kept in per-service log files and turned into events, stopped with their own signal and grace period.

use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::time::{Duration, Instant};

use nix::sys::signal::{killpg, Signal};
use nix::sys::wait::{waitid, Id, WaitPidFlag};
use nix::unistd::Pid;

use crate::events::{EventKind, EventLog, ExitStatus, Stream};
use crate::net::netns;
use crate::process::HostCommand;
use crate::topology::{Readiness, Service};

/// A started service.
pub struct RunningService {
    pub host: String,
    pub spec: Service,
    pub pid: u32,
    pub log: PathBuf,
    /// The event log's position when the service started: its readiness line is looked for from there on.
    output_from: usize,
    /// Set once the service has exited. Its process is reaped only with this lock held, so a signal sent to its
    /// process group with the lock held and no status yet reaches the service's own group: an unreaped leader
    /// keeps its pid, and so its group id, from being given to anyone else.
    exit: Arc<(Mutex<Option<ExitStatus>>, Condvar)>,
}

impl RunningService {
    /// Starts `spec` inside the host described by `identity`; output goes to `log` and to `events`.
    pub fn start(
        host: &str,
        spec: &Service,
        identity: &HostCommand,
        log: &Path,
        events: &Arc<EventLog>,
    ) -> io::Result<RunningService> {
        // As validation found it: the workspace's own daemons next to this lab first, then PATH.
        let program = crate::process::find_program(&spec.argv[0])
            .map(|path| path.into_os_string())
            .unwrap_or_else(|_| spec.argv[0].clone().into());
        let mut command = identity.command(&program)?;
        command
            .arg0(&spec.argv[0])
            .args(&spec.argv[1..])
            .envs(&spec.env)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            // Its own process group, so the stop signal reaches whatever the service forks too.
            .process_group(0);
        if let Some(cwd) = &spec.cwd {
            command.current_dir(cwd);
        }
        let file = Arc::new(Mutex::new(OpenOptions::new().create(true).append(true).open(log)?));
        let mut child: Child = command.spawn().map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("cannot start service {host}/{} ({}): {e}", spec.name, spec.argv[0]),
            )
        })?;
        let pid = child.id();
        let output_from = events.end();
        events.push(
            Some(host),
            EventKind::ServiceStarted {
                service: spec.name.clone(),
                pid,
            },
        );

        let pipes = [
            (
                child.stdout.take().map(|s| Box::new(s) as Box<dyn Read + Send>),
                Stream::Stdout,
            ),
            (
                child.stderr.take().map(|s| Box::new(s) as Box<dyn Read + Send>),
                Stream::Stderr,
            ),
        ];
        for (pipe, stream) in pipes {
            let Some(pipe) = pipe else { continue };
            let (file, events, host, service) = (file.clone(), events.clone(), host.to_string(), spec.name.clone());
            let structured = stream == Stream::Stdout && spec.events_on_stdout;
            std::thread::spawn(move || copy_lines(pipe, stream, structured, &file, &events, &host, &service));
        }

        let exit = Arc::new((Mutex::new(None), Condvar::new()));
        {
            let (exit, events, host, service) = (exit.clone(), events.clone(), host.to_string(), spec.name.clone());
            std::thread::spawn(move || {
                // Wait for the exit without reaping, then reap under the lock (see `exit`).
                let leader = || Id::Pid(Pid::from_raw(pid as i32));
                while waitid(leader(), WaitPidFlag::WEXITED | WaitPidFlag::WNOWAIT) == Err(nix::errno::Errno::EINTR) {}
                let mut exited = exit.0.lock().unwrap_or_else(PoisonError::into_inner);
                let status: ExitStatus = child.wait().map(Into::into).unwrap_or(ExitStatus::Code(-1));
                *exited = Some(status);
                drop(exited);
                exit.1.notify_all();
                events.push(Some(&host), EventKind::ServiceExited { service, status });
            });
        }
        Ok(RunningService {
            host: host.to_string(),
            spec: spec.clone(),
            pid,
            log: log.to_path_buf(),
            output_from,
            exit,
        })
    }

    pub fn exit_status(&self) -> Option<ExitStatus> {
        *self.exit.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Sends `signal` to the service's process group unless the service has exited; returns whether it was sent.
    pub fn signal(&self, signal: Signal) -> io::Result<bool> {
        let exited = self.exit.0.lock().unwrap_or_else(PoisonError::into_inner);
        if exited.is_some() {
            return Ok(false);
        }
        match killpg(Pid::from_raw(self.pid as i32), signal) {
            // A service that made itself a group (or session) of its own still has its pid, unreaped.
            Err(nix::errno::Errno::ESRCH) => nix::sys::signal::kill(Pid::from_raw(self.pid as i32), signal)?,
            other => other?,
        }
        Ok(true)
    }

    /// Waits until the service has exited or `timeout` has passed.
    pub fn wait_exit(&self, timeout: Duration) -> Option<ExitStatus> {
        let guard = self.exit.0.lock().unwrap_or_else(PoisonError::into_inner);
        let (guard, _) = self
            .exit
            .1
            .wait_timeout_while(guard, timeout, |s| s.is_none())
            .unwrap_or_else(PoisonError::into_inner);
        *guard
    }

    /// Waits for the service's readiness check; a service without one is ready once started. Gives up early, with
    /// an `Interrupted` error, once `cancelled` says so.
    pub fn wait_ready(&self, namespace: &Path, events: &EventLog, cancelled: &dyn Fn() -> bool) -> io::Result<()> {
        let Some(ready) = &self.spec.ready else {
            return Ok(());
        };
        let deadline = Instant::now() + self.spec.ready_timeout;
        let not_ready = |why: String| {
            io::Error::new(
                io::ErrorKind::TimedOut,
                format!(
                    "service {}/{} {why} (log: {})",
                    self.host,
                    self.spec.name,
                    self.log.display()
                ),
            )
        };
        let mut cursor = self.output_from;
        loop {
            if cancelled() {
                return Err(io::Error::new(io::ErrorKind::Interrupted, "interrupted"));
            }
            if let Some(status) = self.exit_status() {
                return Err(not_ready(format!("exited before it was ready: {status}")));
            }
            let is_ready = match ready {
                Readiness::Tcp(port) => tcp_listening(namespace, *port),
                Readiness::File(path) => path.exists(),
                // Waits on the event log itself, from where this run of the service started: the line is seen the
                // moment it is read, and a line of an earlier run does not count.
                Readiness::Log(text) => {
                    let batch = events.since(cursor, Duration::from_millis(5));
                    cursor = batch.next;
                    batch.events.iter().any(|e| {
                        e.host.as_deref() == Some(self.host.as_str())
                            && matches!(&e.kind, EventKind::ServiceOutput { service, line, .. }
                                if service == &self.spec.name && line.contains(text.as_str()))
                    })
                }
            };
            if is_ready {
                events.push(
                    Some(&self.host),
                    EventKind::ServiceReady {
                        service: self.spec.name.clone(),
                    },
                );
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(not_ready(format!(
                    "was not ready after {:?} ({ready:?})",
                    self.spec.ready_timeout
                )));
            }
            if !matches!(ready, Readiness::Log(_)) {
                std::thread::sleep(Duration::from_millis(5));
            }
        }
    }

    /// Sends the stop signal, then SIGKILL after the grace period; returns how the service ended.
    pub fn stop(&self, events: &EventLog) -> ExitStatus {
        if let Some(status) = self.exit_status() {
            return status;
        }
        let signal = self.spec.stop_signal;
        events.push(
            Some(&self.host),
            EventKind::ServiceStopping {
                service: self.spec.name.clone(),
                signal: signal.to_string(),
            },
        );
        let _ = self.signal(signal);
        // A frozen service handles its stop signal only once it runs again.
        let _ = self.signal(Signal::SIGCONT);
        if let Some(status) = self.wait_exit(self.spec.grace) {
            return status;
        }
        let _ = self.signal(Signal::SIGKILL);
        self.wait_exit(Duration::from_secs(10))
            .unwrap_or(ExitStatus::Signal(Signal::SIGKILL as i32))
    }
}

/// Copies a service's output to its log file and the event log. With `structured`, JSON lines carrying `at_ns` and
/// `event` become daemon events at the daemon's own time; anything else stays a plain output line.
fn copy_lines(
    pipe: Box<dyn Read + Send>,
    stream: Stream,
    structured: bool,
    file: &Mutex<File>,
    events: &EventLog,
    host: &str,
    service: &str,
) {
    let mut reader = BufReader::new(pipe);
    let mut line = Vec::new();
    while matches!(reader.read_until(b'\n', &mut line), Ok(n) if n > 0) {
        let _ = file.lock().unwrap().write_all(&line);
        let text = String::from_utf8_lossy(&line)
            .trim_end_matches(['\n', '\r'])
            .to_string();
        if structured {
            if let Some((at_ns, kind)) = daemon_event(&text, service) {
                events.push_at(at_ns, Some(host), kind);
                line.clear();
                continue;
            }
        }
        events.push(
            Some(host),
            EventKind::ServiceOutput {
                service: service.to_string(),
                stream,
                line: text,
            },
        );
        line.clear();
    }
}

fn daemon_event(line: &str, service: &str) -> Option<(u64, EventKind)> {
    let serde_json::Value::Object(mut object) = serde_json::from_str(line).ok()? else {
        return None;
    };
    let at_ns = object.get("at_ns")?.as_u64()?;
    let kind = object.get("event")?.as_str()?.to_string();
    object.remove("at_ns");
    object.remove("event");
    Some((
        at_ns,
        EventKind::Daemon {
            service: service.to_string(),
            kind,
            detail: serde_json::Value::Object(object),
        },
    ))
}

/// Whether a socket listens on TCP `port` inside the namespace. Reads the kernel's table rather than connecting,
/// so the check itself never shows up as a client to the service.
fn tcp_listening(namespace: &Path, port: u16) -> bool {
    netns::run_in(namespace, move || {
        // thread-self: /proc/self/net would show the namespace of the process's main thread.
        let table = std::fs::read_to_string("/proc/thread-self/net/tcp")?;
        Ok(table.lines().skip(1).any(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            // Field 1 is local address:port in hex, field 3 the state; 0A is LISTEN.
            fields.len() > 3
                && fields[3] == "0A"
                && fields[1]
                    .rsplit(':')
                    .next()
                    .and_then(|p| u16::from_str_radix(p, 16).ok())
                    == Some(port)
        }))
    })
    .unwrap_or(false)
}
