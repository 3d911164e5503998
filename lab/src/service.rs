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
use crate::topology::{Readiness, Restart, Service};

/// A started service, and the runs it has had: restarts happen in place, so a service is one object for the lab's
/// whole life.
pub struct RunningService {
    pub host: String,
    pub spec: Service,
    pub log: PathBuf,
    identity: HostCommand,
    events: Arc<EventLog>,
    run: Arc<(Mutex<Run>, Condvar)>,
}

/// The service's current process.
struct Run {
    pid: u32,
    /// Set once the process has exited. It is reaped only with this lock held, so a signal sent to its process group
    /// with the lock held and no status yet reaches the service's own group: an unreaped leader keeps its pid, and
    /// so its group id, from being given to anyone else.
    exit: Option<ExitStatus>,
    /// The event log's position when this run started: its readiness line is looked for from there on.
    output_from: usize,
    started: Instant,
    restarts: u32,
    /// The lab is stopping the service (a fault, power-off, teardown): its exit is not a failure to restart after.
    held: bool,
}

impl Run {
    /// Whether the process has exited with a failure that `policy` starts it again after.
    fn restart_coming(&self, policy: Restart) -> bool {
        match (policy, self.exit) {
            (Restart::OnFailure { limit }, Some(status)) => {
                !self.held && status != ExitStatus::Code(0) && self.restarts < limit
            }
            _ => false,
        }
    }
}

/// How long a failed service waits before it is started again (systemd's RestartSec default).
const RESTART_DELAY: Duration = Duration::from_millis(100);

impl RunningService {
    /// Starts `spec` inside the host described by `identity`; output goes to `log` and to `events`.
    pub fn start(
        host: &str,
        spec: &Service,
        identity: &HostCommand,
        log: &Path,
        events: &Arc<EventLog>,
    ) -> io::Result<RunningService> {
        let service = RunningService {
            host: host.to_string(),
            spec: spec.clone(),
            log: log.to_path_buf(),
            identity: identity.clone(),
            events: events.clone(),
            run: Arc::new((
                Mutex::new(Run {
                    pid: 0,
                    exit: Some(ExitStatus::Code(0)),
                    output_from: 0,
                    started: Instant::now(),
                    restarts: 0,
                    held: false,
                }),
                Condvar::new(),
            )),
        };
        service.start_again()?;
        Ok(service)
    }

    /// Starts the service again if it has exited (a `start` fault, power-on); its restart count starts over.
    pub fn start_again(&self) -> io::Result<()> {
        let mut run = self.lock();
        if run.exit.is_none() {
            return Ok(());
        }
        let child = self.spawn()?;
        *run = Run {
            pid: child.id(),
            exit: None,
            output_from: self.events.end(),
            started: Instant::now(),
            restarts: 0,
            held: false,
        };
        self.events.push(
            Some(&self.host),
            EventKind::ServiceStarted {
                service: self.spec.name.clone(),
                pid: run.pid,
            },
        );
        drop(run);
        let watcher = self.watcher();
        std::thread::spawn(move || watcher.watch(child));
        Ok(())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Run> {
        self.run.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// One process of the service, its output copied to the log and the events.
    fn spawn(&self) -> io::Result<Child> {
        let spec = &self.spec;
        // As validation found it: the workspace's own daemons next to this lab first, then PATH.
        let program = crate::process::find_program(&spec.argv[0])
            .map(|path| path.into_os_string())
            .unwrap_or_else(|_| spec.argv[0].clone().into());
        let mut command = self.identity.command_in(&program, spec.cwd.as_deref())?;
        command
            .arg0(&spec.argv[0])
            .args(&spec.argv[1..])
            .envs(&spec.env)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            // Its own process group, so the stop signal reaches whatever the service forks too.
            .process_group(0);
        let file = Arc::new(Mutex::new(
            OpenOptions::new().create(true).append(true).open(&self.log)?,
        ));
        let mut child: Child = command.spawn().map_err(|e| {
            io::Error::new(
                e.kind(),
                format!(
                    "cannot start service {}/{} ({}): {e}",
                    self.host, spec.name, spec.argv[0]
                ),
            )
        })?;
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
            let (file, events, host, service) =
                (file.clone(), self.events.clone(), self.host.clone(), spec.name.clone());
            let structured = stream == Stream::Stdout && spec.events_on_stdout;
            std::thread::spawn(move || copy_lines(pipe, stream, structured, &file, &events, &host, &service));
        }
        Ok(child)
    }

    fn watcher(&self) -> RunningService {
        RunningService {
            host: self.host.clone(),
            spec: self.spec.clone(),
            log: self.log.clone(),
            identity: self.identity.clone(),
            events: self.events.clone(),
            run: self.run.clone(),
        }
    }

    /// Waits for each process of the service to exit, records it, and starts the next one while the restart policy
    /// says so.
    fn watch(self, mut child: Child) {
        loop {
            // Wait for the exit without reaping, then reap under the lock (see `Run::exit`).
            let leader = || Id::Pid(Pid::from_raw(child.id() as i32));
            while waitid(leader(), WaitPidFlag::WEXITED | WaitPidFlag::WNOWAIT) == Err(nix::errno::Errno::EINTR) {}
            let mut run = self.lock();
            let status: ExitStatus = child.wait().map(Into::into).unwrap_or(ExitStatus::Code(-1));
            run.exit = Some(status);
            let restart = run.restart_coming(self.spec.restart);
            drop(run);
            self.run.1.notify_all();
            self.events.push(
                Some(&self.host),
                EventKind::ServiceExited {
                    service: self.spec.name.clone(),
                    status,
                },
            );
            if !restart {
                return;
            }
            std::thread::sleep(RESTART_DELAY);
            let mut run = self.lock();
            // Started again by a fault meanwhile, or being stopped: not for this watcher to restart.
            if run.exit.is_none() || run.held {
                return;
            }
            child = match self.spawn() {
                Ok(child) => child,
                Err(e) => {
                    // No restart is coming any more: the service has ended.
                    run.restarts = u32::MAX;
                    self.events.push(
                        Some(&self.host),
                        EventKind::ServiceOutput {
                            service: self.spec.name.clone(),
                            stream: Stream::Stderr,
                            line: format!("lab: cannot restart: {e}"),
                        },
                    );
                    return;
                }
            };
            run.restarts += 1;
            run.pid = child.id();
            run.exit = None;
            run.output_from = self.events.end();
            run.started = Instant::now();
            let limit = match self.spec.restart {
                Restart::OnFailure { limit } => limit,
                Restart::No => 0,
            };
            self.events.push(
                Some(&self.host),
                EventKind::ServiceRestarted {
                    service: self.spec.name.clone(),
                    pid: run.pid,
                    restart: run.restarts,
                    limit,
                },
            );
        }
    }

    /// The pid of the service's current (or last) process.
    pub fn pid(&self) -> u32 {
        self.lock().pid
    }

    /// Marks the service as being stopped by the lab: its next exit is not a failure to restart after.
    pub fn hold(&self) {
        self.lock().held = true;
    }

    pub fn exit_status(&self) -> Option<ExitStatus> {
        self.lock().exit
    }

    /// Sends `signal` to the service's process group unless the service has exited; returns whether it was sent.
    pub fn signal(&self, signal: Signal) -> io::Result<bool> {
        let run = self.lock();
        if run.exit.is_some() {
            return Ok(false);
        }
        let pid = Pid::from_raw(run.pid as i32);
        match killpg(pid, signal) {
            // A service that made itself a group (or session) of its own still has its pid, unreaped.
            Err(nix::errno::Errno::ESRCH) => nix::sys::signal::kill(pid, signal)?,
            other => other?,
        }
        Ok(true)
    }

    /// Waits until the service has exited or `timeout` has passed.
    pub fn wait_exit(&self, timeout: Duration) -> Option<ExitStatus> {
        let guard = self.lock();
        let (guard, _) = self
            .run
            .1
            .wait_timeout_while(guard, timeout, |run| run.exit.is_none())
            .unwrap_or_else(PoisonError::into_inner);
        guard.exit
    }

    /// How the service ended, if it has and its restart policy will not start it again (read under one lock, so a
    /// restart in between is never taken for an end).
    fn ended(&self) -> Option<ExitStatus> {
        let run = self.lock();
        let status = run.exit?;
        (!run.restart_coming(self.spec.restart)).then_some(status)
    }

    /// Waits for the service's readiness check; a service without one is ready once started (see
    /// [`RunningService::check_settled`] for whether it stays up). Gives up early, with an `Interrupted` error, once
    /// `cancelled` says so. An exit before it is ready is an error with the end of the service's log, unless its
    /// restart policy starts it again.
    pub fn wait_ready(&self, namespace: &Path, events: &EventLog, cancelled: &dyn Fn() -> bool) -> io::Result<()> {
        let Some(ready) = &self.spec.ready else {
            return Ok(());
        };
        let deadline = Instant::now() + self.spec.ready_timeout;
        let mut run_from = self.lock().output_from;
        let mut cursor = run_from;
        loop {
            if cancelled() {
                return Err(io::Error::new(io::ErrorKind::Interrupted, "interrupted"));
            }
            if let Some(status) = self.ended() {
                return Err(self.failed_to_start(&format!("exited before it was ready: {status}")));
            }
            // A restarted run's readiness line counts from its own start.
            let output_from = self.lock().output_from;
            if output_from != run_from {
                (run_from, cursor) = (output_from, output_from);
            }
            let is_ready = self.exit_status().is_none()
                && match ready {
                    Readiness::Tcp(port) => tcp_listening(namespace, *port),
                    Readiness::File(path) => self.locate(path).exists(),
                    // Waits on the event log itself, from where this run of the service started: the line is seen
                    // the moment it is read, and a line of an earlier run does not count.
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
                return Err(self.failed_to_start(&format!(
                    "was not ready after {:?} ({ready:?})",
                    self.spec.ready_timeout
                )));
            }
            if !matches!(ready, Readiness::Log(_)) {
                std::thread::sleep(Duration::from_millis(5));
            }
        }
    }

    /// For a service without a readiness check: whether it is still running (or restarting) once it has run for its
    /// settle time, waiting for that moment if it has not come yet. Its exit is an error with the end of its log.
    pub fn check_settled(&self) -> io::Result<()> {
        if self.spec.ready.is_some() {
            return Ok(());
        }
        let started = self.lock().started;
        std::thread::sleep((started + self.spec.settle).saturating_duration_since(Instant::now()));
        match self.ended() {
            Some(status) => Err(self.failed_to_start(&format!(
                "exited while the lab was starting ({status}, within its settle time of {:?})",
                self.spec.settle
            ))),
            None => Ok(()),
        }
    }

    /// Where a path of the host is on the machine (the path itself for a host sharing the machine's files).
    fn locate(&self, path: &Path) -> PathBuf {
        match self.identity.view() {
            Some(view) => view.locate(path, true).unwrap_or_else(|_| view.machine_path(path)),
            None => path.to_path_buf(),
        }
    }

    /// The error for a service that did not start, with the last lines of its log: the log itself goes with the lab.
    fn failed_to_start(&self, why: &str) -> io::Error {
        // The output threads write what the process printed last a moment after it exits.
        std::thread::sleep(Duration::from_millis(50));
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        let tail = &lines[lines.len().saturating_sub(LOG_TAIL)..];
        let mut message = format!("service {}/{} {why}", self.host, self.spec.name);
        if tail.is_empty() {
            message.push_str("; it wrote nothing");
        } else {
            message.push_str(&format!("; the last {} lines of its log:", tail.len()));
            for line in tail {
                message.push_str(&format!("\n    {line}"));
            }
        }
        io::Error::other(message)
    }

    /// Sends the stop signal, then SIGKILL after the grace period; returns how the service ended.
    pub fn stop(&self, events: &EventLog) -> ExitStatus {
        self.hold();
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

/// How many lines of a service's log an error about its start shows.
const LOG_TAIL: usize = 12;

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
