//! What the daemon tells people and programs: keepalived's log lines (console with keepalived's date prefix, or
//! syslog), and one JSON object per line for machines, stamped with CLOCK_MONOTONIC like the lab's events.

use std::ffi::CString;
use std::fs::File;
use std::io;
use std::net::Ipv4Addr;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::time::Duration;

use serde_json::{json, Value};

use super::queue::{Descriptor, Destination, Dropped, LineQueue};
use crate::config::NotifyFifo;
use crate::log::LogLine;
use crate::machine::{Discard, Reason, State};

/// Where the daemon's log lines go, as keepalived's `-l` and `-G` say: both, either, or (`-G` alone) nowhere.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogTo {
    /// `-l`: stderr, each line behind keepalived's date prefix.
    pub console: bool,
    /// syslog, as `Keepalived_vrrp`, in this facility (`-S 0..7`: LOG_LOCAL0..7; default LOG_DAEMON); `None`
    /// with `-G`.
    pub syslog: Option<libc::c_int>,
}

/// Where each output goes; `None` for what is not wanted.
#[derive(Debug, Clone, Default)]
pub struct Destinations<'a> {
    /// `--events`: a path, or `-` for stdout.
    pub events: Option<&'a str>,
    /// `notify_fifo` / `vrrp_notify_fifo`: keepalived's state lines.
    pub notify_fifos: &'a [NotifyFifo],
}

pub struct Output {
    /// Print the lines keepalived prints only with `-D`.
    pub detail: bool,
    /// The console's queue (lines get the date prefix), and syslog's.
    console: Option<LineQueue>,
    syslog: Option<LineQueue>,
    events: Option<LineQueue>,
    /// Each FIFO's queue, named by its keyword (`notify_fifo`, `vrrp_notify_fifo`).
    notify_fifos: Vec<(&'static str, LineQueue)>,
    /// FIFOs this daemon made, removed at exit (keepalived leaves alone the ones it found).
    made: Vec<(std::path::PathBuf, File)>,
}

/// Stays in its queue's thread: syslog(3) blocks when the log socket's reader (journald, rsyslog) stalls.
struct Syslog;

impl Destination for Syslog {
    fn write_line(&mut self, line: &str) -> io::Result<()> {
        let message = CString::new(line).map_err(io::Error::other)?;
        // SAFETY: both strings are NUL-terminated and the format has one %s.
        unsafe { libc::syslog(libc::LOG_INFO, c"%s".as_ptr(), message.as_ptr()) };
        Ok(())
    }
}

impl Output {
    pub fn new(detail: bool, log_to: LogTo, to: Destinations<'_>) -> io::Result<Output> {
        let console = match log_to.console {
            true => Some(LineQueue::start(
                "console",
                Descriptor::duplicate(io::stderr())?,
                Some(lost_log_lines),
            )?),
            false => None,
        };
        let syslog = match log_to.syslog {
            Some(facility) => {
                let ident = CString::new("Keepalived_vrrp").expect("no NUL");
                // SAFETY: openlog keeps the pointer; leaking the CString keeps it valid for the process's lifetime.
                unsafe { libc::openlog(ident.into_raw(), libc::LOG_PID, facility) };
                Some(LineQueue::start("syslog", Syslog, Some(lost_log_lines))?)
            }
            None => None,
        };
        let events = match to.events {
            None => None,
            Some("-") => Some(Descriptor::duplicate(io::stdout())?),
            Some(path) => Some(Descriptor(open_for_writing(Path::new(path), true)?)),
        };
        let events = events
            .map(|destination| LineQueue::start("events", destination, Some(lost_events)))
            .transpose()?;
        let mut notify_fifos = Vec::new();
        let mut made = Vec::new();
        for fifo in to.notify_fifos {
            let (file, created) = open_fifo(fifo)?;
            if created {
                made.push((fifo.path.clone(), file.try_clone()?));
            }
            let queue = LineQueue::start(fifo.keyword, Descriptor(file), None)?;
            notify_fifos.push((fifo.keyword, queue));
        }
        Ok(Output {
            detail,
            console,
            syslog,
            events,
            notify_fifos,
            made,
        })
    }

    pub fn line(&mut self, line: &LogLine) {
        if line.message.is_detail() && !self.detail {
            return;
        }
        self.text(&line.to_string());
    }

    /// A line without an instance (startup, shutdown, errors).
    pub fn text(&mut self, text: &str) {
        if let Some(console) = &self.console {
            console.push(format!("{}: {text}", console_time()));
        }
        if let Some(syslog) = &self.syslog {
            syslog.push(text.to_string());
        }
    }

    pub fn event(&mut self, at: Duration, instance: &str, kind: &str, fields: Value) {
        let Some(events) = &self.events else { return };
        let mut object = json!({ "at_ns": at.as_nanos() as u64, "instance": instance, "event": kind });
        if let (Some(object), Value::Object(fields)) = (object.as_object_mut(), fields) {
            object.extend(fields);
        }
        events.push(object.to_string());
    }

    /// One line of keepalived's notify FIFO format (see `notify::fifo_line`).
    pub fn notify_fifo(&mut self, line: &str) {
        for (_, fifo) in &self.notify_fifos {
            fifo.push(line.to_string());
        }
    }

    /// Lines lost so far per output, for the metrics.
    pub fn dropped(&self) -> Vec<(&'static str, Dropped)> {
        let mut dropped = Vec::new();
        dropped.extend(self.console.as_ref().map(|queue| ("console", queue.dropped())));
        dropped.extend(self.syslog.as_ref().map(|queue| ("syslog", queue.dropped())));
        dropped.extend(self.events.as_ref().map(|queue| ("events", queue.dropped())));
        dropped.extend(
            self.notify_fifos
                .iter()
                .map(|(keyword, queue)| (*keyword, queue.dropped())),
        );
        dropped
    }

    /// At exit: lets every output drain for at most `patience` in all.
    pub fn finish(&mut self, patience: Duration) {
        let deadline = std::time::Instant::now() + patience;
        let queues = [self.console.as_mut(), self.syslog.as_mut(), self.events.as_mut()];
        let fifos = self.notify_fifos.iter_mut().map(|(_, queue)| queue);
        for queue in queues.into_iter().flatten().chain(fifos) {
            queue.finish(deadline.saturating_duration_since(std::time::Instant::now()));
        }
        self.remove_made_fifos();
    }

    /// FIFOs this daemon made go with it, if the name still leads to the one it made.
    fn remove_made_fifos(&mut self) {
        for (path, file) in self.made.drain(..) {
            if super::names(&path, &file) {
                let _ = std::fs::remove_file(&path);
            }
        }
    }
}

impl Drop for Output {
    /// Also when the daemon never got to run (an interface missing, say).
    fn drop(&mut self) {
        self.remove_made_fifos();
    }
}

/// In the log's own words, once it gets through again.
fn lost_log_lines(count: u64) -> String {
    format!("{count} log lines were dropped: the log's reader was not keeping up")
}

/// A JSON event like the others, so that readers of the stream see the gap.
fn lost_events(count: u64) -> String {
    let now = crate::io::monotonic_now();
    json!({ "at_ns": now.as_nanos() as u64, "event": "events_dropped", "count": count }).to_string()
}

/// Opens a file the daemon writes (events, dump) without following a symlink at its last component, created
/// 0644 when missing, truncated when `truncate`. A FIFO without a reader is an error, not a wait.
pub fn open_for_writing(path: &Path, truncate: bool) -> io::Result<File> {
    let file = File::options()
        .write(true)
        .create(true)
        .truncate(truncate)
        .mode(0o644)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(path)
        .map_err(|error| named(path, error))?;
    blocking(&file)?;
    Ok(file)
}

/// keepalived's notify FIFO: created when missing (and given to its owner); opened read-write, so that opening never
/// waits for a reader and a reader that comes and goes does not break the daemon's end. Says whether it was made.
fn open_fifo(fifo: &NotifyFifo) -> io::Result<(File, bool)> {
    use std::os::unix::fs::FileTypeExt;
    let path = &fifo.path;
    let created = match nix::unistd::mkfifo(path, nix::sys::stat::Mode::from_bits_truncate(0o600)) {
        Ok(()) => true,
        Err(nix::errno::Errno::EEXIST) => false,
        Err(error) => return Err(named(path, error.into())),
    };
    // Something already there is opened only once it is known to be a FIFO: opening a device read-write as root
    // can do things of its own.
    let found = std::fs::symlink_metadata(path).map_err(|error| named(path, error))?;
    if !found.file_type().is_fifo() {
        return Err(named(path, io::Error::other("exists and is not a FIFO")));
    }
    let file = File::options()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(path)
        .map_err(|error| named(path, error))?;
    if !file.metadata()?.file_type().is_fifo() || !super::names(path, &file) {
        return Err(named(path, io::Error::other("changed while it was being opened")));
    }
    if let (true, Some(owner)) = (created, &fifo.owner) {
        let (uid, gid) = owner.ids()?;
        nix::unistd::fchown(&file, Some(uid), Some(gid)).map_err(|error| named(path, error.into()))?;
    }
    blocking(&file)?;
    Ok((file, created))
}

/// The queue's thread may block on it; the protocol loop never writes to it.
fn blocking(file: &File) -> io::Result<()> {
    use nix::fcntl::{fcntl, FcntlArg, OFlag};
    let flags = OFlag::from_bits_truncate(fcntl(file, FcntlArg::F_GETFL)?);
    fcntl(file, FcntlArg::F_SETFL(flags - OFlag::O_NONBLOCK))?;
    Ok(())
}

fn named(path: &Path, error: io::Error) -> io::Error {
    let hint = match error.raw_os_error() {
        Some(libc::ELOOP) => " (a symlink: vrrpd does not follow one here)",
        Some(libc::ENXIO) => " (a FIFO nobody reads)",
        _ => "",
    };
    io::Error::new(error.kind(), format!("{}: {error}{hint}", path.display()))
}

/// Local time as keepalived's console prefix writes it (`Wed Nov 25 10:38:06 2026`). glibc's localtime_r reads the
/// time zone once; chrono re-checks /etc/localtime after a second of silence, which cost milliseconds on the very
/// line that announces a takeover.
fn console_time() -> String {
    // SAFETY: time/localtime_r/strftime write only into the buffers given; tm is plain data.
    unsafe {
        let now = libc::time(std::ptr::null_mut());
        let mut tm: libc::tm = std::mem::zeroed();
        libc::localtime_r(&now, &mut tm);
        let mut buffer = [0u8; 64];
        let written = libc::strftime(
            buffer.as_mut_ptr().cast(),
            buffer.len(),
            c"%a %b %e %H:%M:%S %Y".as_ptr(),
            &tm,
        );
        String::from_utf8_lossy(&buffer[..written]).into_owned()
    }
}

pub fn state_fields(from: State, to: State, reason: Reason) -> Value {
    let (reason, peer, priority): (&str, Option<Ipv4Addr>, Option<u8>) = match reason {
        Reason::Startup => ("startup", None, None),
        Reason::MasterDown => ("master_down", None, None),
        Reason::Owner => ("owner", None, None),
        Reason::HigherPriority { from, priority } => ("higher_priority", Some(from), Some(priority)),
        Reason::SamePriorityHigherAddress { from } => ("same_priority_higher_address", Some(from), None),
        Reason::Fault => ("fault", None, None),
        Reason::FaultCleared => ("fault_cleared", None, None),
        Reason::Shutdown => ("shutdown", None, None),
        Reason::Sync => ("sync_group", None, None),
    };
    json!({ "from": from.name(), "to": to.name(), "reason": reason, "peer": peer, "peer_priority": priority })
}

pub fn discard_fields(from: Ipv4Addr, reason: &Discard) -> Value {
    json!({ "from": from, "reason": reason.name() })
}
