//! keepalived's notify scripts, run without blocking the protocol: `notify_master` & co. run their command line,
//! the generic `notify` gets `INSTANCE <name> <STATE> <priority>` appended, as keepalived passes them.

use std::io;
use std::process::{Child, Command as Process, Stdio};
use std::time::{Duration, Instant};

use std::os::unix::process::CommandExt;

use crate::config::{Command, Instance, User};
use crate::machine::Notify;

/// Children still running, reaped as they exit.
#[derive(Default)]
pub struct Scripts {
    running: Vec<(String, Child)>,
    /// `script_user` from global_defs: who runs a command that names no user of its own.
    pub default_user: Option<User>,
}

impl Scripts {
    pub fn new(default_user: Option<User>) -> Scripts {
        Scripts {
            running: Vec::new(),
            default_user,
        }
    }

    pub fn notify(&mut self, instance: &Instance, kind: Notify, priority: u8) -> Vec<io::Error> {
        let notify = &instance.notify;
        let (specific, state) = match kind {
            Notify::Master => (&notify.master, "MASTER"),
            Notify::Backup => (&notify.backup, "BACKUP"),
            Notify::Fault => (&notify.fault, "FAULT"),
            Notify::Stop => (&notify.stop, "STOP"),
            Notify::MasterRxLowerPriority => (&notify.master_rx_lower_pri, "MASTER_RX_LOWER_PRI"),
        };
        let mut errors = Vec::new();
        if let Some(command) = specific {
            if let Err(error) = self.spawn(command, &[]) {
                errors.push(error);
            }
        }
        if let (Some(command), false) = (&notify.any, kind == Notify::MasterRxLowerPriority) {
            let args = [
                "INSTANCE".to_string(),
                instance.name.clone(),
                state.to_string(),
                priority.to_string(),
            ];
            if let Err(error) = self.spawn(command, &args) {
                errors.push(error);
            }
        }
        errors
    }

    fn spawn(&mut self, command: &Command, args: &[String]) -> io::Result<()> {
        // The command line is split by the shell, as users quote it in keepalived.conf; extra arguments follow it.
        let mut process = Process::new("/bin/sh");
        process
            .arg("-c")
            .arg(format!("{} \"$@\"", command.line))
            .arg("notify")
            .args(args)
            .stdin(Stdio::null());
        as_user(&mut process, command.user.as_ref().or(self.default_user.as_ref()))?;
        let child = process
            .spawn()
            .map_err(|error| io::Error::new(error.kind(), format!("cannot run {:?}: {error}", command.line)))?;
        self.running.push((command.line.clone(), child));
        Ok(())
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
    let found = nix::unistd::User::from_name(&user.user)
        .map_err(io::Error::from)?
        .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, format!("no user named {}", user.user)))?;
    let gid = match &user.group {
        Some(group) => {
            nix::unistd::Group::from_name(group)
                .map_err(io::Error::from)?
                .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, format!("no group named {group}")))?
                .gid
        }
        None => found.gid,
    };
    let name = std::ffi::CString::new(user.user.clone()).map_err(io::Error::other)?;
    let groups = nix::unistd::getgrouplist(&name, gid).map_err(io::Error::from)?;
    let uid = found.uid;
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
