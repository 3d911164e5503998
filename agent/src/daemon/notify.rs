//! keepalived's notify scripts, run without blocking the protocol: `notify_master` & co. run their command line,
//! the generic `notify` gets `INSTANCE <name> <STATE> <priority>` appended, as keepalived passes them.

use std::io;
use std::process::{Child, Command as Process, Stdio};
use std::time::{Duration, Instant};

use std::os::unix::process::CommandExt;

use crate::config::{Command, Notifies, User};
use crate::machine::Notify;

/// Whose state changed.
#[derive(Debug, Clone, Copy)]
pub enum Who<'a> {
    Instance(&'a str),
    Group(&'a str),
}

impl Who<'_> {
    fn scope(&self) -> &'static str {
        match self {
            Who::Instance(_) => "INSTANCE",
            Who::Group(_) => "GROUP",
        }
    }

    fn name(&self) -> &str {
        match self {
            Who::Instance(name) | Who::Group(name) => name,
        }
    }
}

/// The state as keepalived names it to scripts and FIFO readers.
fn state_word(kind: Notify) -> &'static str {
    match kind {
        Notify::Master => "MASTER",
        Notify::Backup => "BACKUP",
        Notify::Fault => "FAULT",
        Notify::Stop => "STOP",
        Notify::MasterRxLowerPriority => "MASTER_RX_LOWER_PRI",
    }
}

/// One line of keepalived's notify FIFO: `INSTANCE "VI_1" MASTER 100`, `GROUP "G1" BACKUP 0`.
pub fn fifo_line(who: Who<'_>, kind: Notify, priority: u8) -> String {
    format!("{} \"{}\" {} {priority}", who.scope(), who.name(), state_word(kind))
}

/// Children still running, reaped as they exit.
#[derive(Default)]
pub struct Scripts {
    running: Vec<(String, Child)>,
    /// `script_user` from global_defs: who runs a command that names no user of its own.
    pub default_user: Option<User>,
    /// `notify_fifo_script`s: they read their FIFO for the daemon's whole life.
    readers: Vec<Child>,
}

impl Scripts {
    pub fn new(default_user: Option<User>) -> Scripts {
        Scripts {
            running: Vec::new(),
            default_user,
            readers: Vec::new(),
        }
    }

    /// Runs an instance's or a sync group's scripts for a state change. `priority` is the instance's effective
    /// priority; keepalived gives groups 0.
    pub fn notify(&mut self, notify: &Notifies, who: Who<'_>, kind: Notify, priority: u8) -> Vec<io::Error> {
        let specific = match kind {
            Notify::Master => &notify.master,
            Notify::Backup => &notify.backup,
            Notify::Fault => &notify.fault,
            Notify::Stop => &notify.stop,
            Notify::MasterRxLowerPriority => &notify.master_rx_lower_pri,
        };
        let mut errors = Vec::new();
        if let Some(command) = specific {
            if let Err(error) = self.spawn(command, &[]) {
                errors.push(error);
            }
        }
        if let (Some(command), false) = (&notify.any, kind == Notify::MasterRxLowerPriority) {
            let args = [
                who.scope().to_string(),
                who.name().to_string(),
                state_word(kind).to_string(),
                priority.to_string(),
            ];
            if let Err(error) = self.spawn(command, &args) {
                errors.push(error);
            }
        }
        errors
    }

    /// A long-running reader of a notify FIFO (`notify_fifo_script`), given the FIFO's path as its last argument.
    pub fn start_fifo_reader(&mut self, command: &Command, fifo: &std::path::Path) -> io::Result<()> {
        let reader = self.start(command, &[fifo.display().to_string()])?;
        self.readers.push(reader);
        Ok(())
    }

    /// At exit, once the last lines are in the FIFO: SIGTERM to the readers, as keepalived does, then SIGKILL to
    /// those still there after `patience`.
    pub fn stop_readers(&mut self, patience: Duration) {
        for reader in &self.readers {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(reader.id() as i32),
                nix::sys::signal::SIGTERM,
            );
        }
        let deadline = Instant::now() + patience;
        while Instant::now() < deadline {
            self.readers
                .retain_mut(|reader| !matches!(reader.try_wait(), Ok(Some(_)) | Err(_)));
            if self.readers.is_empty() {
                return;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        for reader in &mut self.readers {
            let _ = reader.kill();
            let _ = reader.wait();
        }
        self.readers.clear();
    }

    fn spawn(&mut self, command: &Command, args: &[String]) -> io::Result<()> {
        let child = self.start(command, args)?;
        self.running.push((command.line.clone(), child));
        Ok(())
    }

    fn start(&self, command: &Command, args: &[String]) -> io::Result<Child> {
        // The command line is split by the shell, as users quote it in keepalived.conf; extra arguments follow it.
        let mut process = Process::new("/bin/sh");
        process
            .arg("-c")
            .arg(format!("{} \"$@\"", command.line))
            .arg("notify")
            .args(args)
            .stdin(Stdio::null());
        as_user(&mut process, command.user.as_ref().or(self.default_user.as_ref()))?;
        process
            .spawn()
            .map_err(|error| io::Error::new(error.kind(), format!("cannot run {:?}: {error}", command.line)))
    }

    /// Collects children that have exited.
    pub fn reap(&mut self) {
        self.running
            .retain_mut(|(_, child)| !matches!(child.try_wait(), Ok(Some(_)) | Err(_)));
    }

    /// At shutdown: gives scripts up to `limit` to finish (keepalived waits 1 s for notify_stop), then kills them.
    pub fn finish(&mut self, limit: Duration) {
        let deadline = Instant::now() + limit;
        while !self.running.is_empty() && Instant::now() < deadline {
            self.reap();
            std::thread::sleep(Duration::from_millis(5));
        }
        for (_, child) in &mut self.running {
            let _ = child.kill();
            let _ = child.wait();
        }
        self.running.clear();
    }
}

/// Makes `process` run as `user` (and its group, or the user's own) with the user's supplementary groups, as
/// keepalived's `user`/`script_user` do (initgroups). Everything that reads /etc is done here, in the parent; the
/// child only makes the three system calls, which are safe between fork and exec.
pub fn as_user(process: &mut Process, user: Option<&User>) -> io::Result<()> {
    let Some(user) = user else { return Ok(()) };
    let (uid, gid) = user.ids()?;
    let name = std::ffi::CString::new(user.user.clone()).map_err(io::Error::other)?;
    let groups = nix::unistd::getgrouplist(&name, gid).map_err(io::Error::from)?;
    // SAFETY: setgroups, setgid and setuid are async-signal-safe system calls; nothing is allocated.
    unsafe {
        process.pre_exec(move || {
            nix::unistd::setgroups(&groups)?;
            nix::unistd::setgid(gid)?;
            nix::unistd::setuid(uid)?;
            Ok(())
        });
    }
    Ok(())
}
