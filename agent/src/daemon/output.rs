//! What the daemon tells people and programs: keepalived's log lines (console with keepalived's date prefix, or
//! syslog), and one JSON object per line for machines, stamped with CLOCK_MONOTONIC like the lab's events.

use std::ffi::CString;
use std::fs::File;
use std::io::{self, Write};
use std::net::Ipv4Addr;
use std::time::Duration;

use serde_json::{json, Value};

use crate::log::LogLine;
use crate::machine::{Discard, Reason, State};

pub struct Output {
    /// Print the lines keepalived prints only with `-D`.
    pub detail: bool,
    /// Console (`-l`) rather than syslog.
    pub console: bool,
    events: Option<Box<dyn Write>>,
}

impl Output {
    pub fn new(detail: bool, console: bool, events: Option<&str>) -> io::Result<Output> {
        let events: Option<Box<dyn Write>> = match events {
            None => None,
            Some("-") => Some(Box::new(io::stdout())),
            Some(path) => Some(Box::new(File::create(path)?)),
        };
        if !console {
            let ident = CString::new("Keepalived_vrrp").expect("no NUL");
            // SAFETY: openlog keeps the pointer; leaking the CString keeps it valid for the process's lifetime.
            unsafe { libc::openlog(ident.into_raw(), libc::LOG_PID, libc::LOG_DAEMON) };
        }
        Ok(Output {
            detail,
            console,
            events,
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
        if self.console {
            let now = console_time();
            let mut stderr = io::stderr().lock();
            let _ = writeln!(stderr, "{now}: {text}");
        } else if let Ok(message) = CString::new(text) {
            // SAFETY: both strings are NUL-terminated and the format has one %s.
            unsafe { libc::syslog(libc::LOG_INFO, c"%s".as_ptr(), message.as_ptr()) };
        }
    }

    pub fn event(&mut self, at: Duration, instance: &str, kind: &str, fields: Value) {
        let Some(events) = &mut self.events else { return };
        let mut object = json!({ "at_ns": at.as_nanos() as u64, "instance": instance, "event": kind });
        if let (Some(object), Value::Object(fields)) = (object.as_object_mut(), fields) {
            object.extend(fields);
        }
        let _ = writeln!(events, "{object}");
        let _ = events.flush();
    }
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
