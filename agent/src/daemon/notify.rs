//! keepalived's notify scripts, run without blocking the protocol: `notify_master` & co. run their command line,
//! the generic `notify` gets `INSTANCE <name> <STATE> <priority>` appended, as keepalived passes them.

use std::io;
use std::process::{Child, Command as Process, Stdio};
use std::time::{Duration, Instant};

use std::os::unix::process::CommandExt;

use std::collections::HashMap;

use crate::config::{Command, Config, Notifies, User};
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
    /// The credentials of every user the configuration names.
    pub users: Users,
    /// `notify_fifo_script`s: they read their FIFO for the daemon's whole life.
    readers: Vec<Child>,
}

impl Scripts {
    pub fn new(default_user: Option<User>, users: Users) -> Scripts {
        Scripts {
            running: Vec::new(),
            default_user,
            users,
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
        as_user(
            &mut process,
            command.user.as_ref().or(self.default_user.as_ref()),
            &self.users,
        )?;
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

/// Who a script runs as, looked up before the loop needs it: the user database may ask a directory server, and
/// the protocol loop must not wait for one.
#[derive(Debug, Clone)]
pub struct Credentials {
    uid: nix::unistd::Uid,
    gid: nix::unistd::Gid,
    groups: Vec<nix::unistd::Gid>,
}

/// Every user a configuration runs scripts as, with its credentials or why it has none.
pub type Users = HashMap<User, Result<Credentials, String>>;

/// Looks up every user the configuration names for a script (`script_user`, scripts' and notify commands' own).
pub fn look_up_users(config: &Config) -> Users {
    let notifies = config
        .instances
        .iter()
        .map(|instance| &instance.notify)
        .chain(config.sync_groups.iter().map(|group| &group.notify));
    let commands = notifies
        .flat_map(|n| [&n.master, &n.backup, &n.fault, &n.stop, &n.master_rx_lower_pri, &n.any])
        .flatten()
        .chain(
            config
                .global
                .notify_fifos
                .iter()
                .filter_map(|fifo| fifo.script.as_ref()),
        );
    let users = commands
        .filter_map(|command| command.user.as_ref())
        .chain(config.scripts.iter().filter_map(|script| script.user.as_ref()))
        .chain(config.global.script_user.as_ref());
    users
        .map(|user| (user.clone(), credentials(user).map_err(|error| error.to_string())))
        .collect()
}

fn credentials(user: &User) -> io::Result<Credentials> {
    let (uid, gid) = user.ids()?;
    let name = std::ffi::CString::new(user.user.clone()).map_err(io::Error::other)?;
    let groups = nix::unistd::getgrouplist(&name, gid).map_err(io::Error::from)?;
    Ok(Credentials { uid, gid, groups })
}

/// Makes `process` run as `user` (and its group, or the user's own) with the user's supplementary groups, as
/// keepalived's `user`/`script_user` do (initgroups), from credentials looked up beforehand. The child only makes
/// the three system calls, which are safe between fork and exec.
pub fn as_user(process: &mut Process, user: Option<&User>, users: &Users) -> io::Result<()> {
    let Some(user) = user else { return Ok(()) };
    let Credentials { uid, gid, groups } = match users.get(user) {
        Some(Ok(credentials)) => credentials.clone(),
        Some(Err(error)) => return Err(io::Error::new(io::ErrorKind::NotFound, error.clone())),
        None => return Err(io::Error::other(format!("user {} was not looked up", user.user))),
    };
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
