//! Running `lab` on another machine: OpenSSH's client, in batch mode, with the machine's own options first (ssh
//! keeps the first value it is given for an option, so the topology's `ssh_options` override these defaults).

use std::io;
use std::process::{Command, Output, Stdio};

use serde::{Deserialize, Serialize};

use crate::topology::Machine;

/// How to reach one machine; recorded in the coordinator's state so `lab down` can reach it after a crash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ssh {
    pub machine: String,
    pub destination: String,
    pub options: Vec<String>,
    /// `lab` there, as shell words.
    pub command: String,
}

/// Never ask for a password; give up on a machine that does not answer; notice one that stops answering (a part's
/// session is how the coordinator learns that its machine is gone).
const DEFAULTS: [&str; 10] = [
    "-o",
    "BatchMode=yes",
    "-o",
    "ConnectTimeout=10",
    "-o",
    "ServerAliveInterval=2",
    "-o",
    "ServerAliveCountMax=5",
    "-o",
    "LogLevel=ERROR",
];

impl Ssh {
    /// `None` for the coordinator, which is not reached over SSH.
    pub fn to(machine: &Machine) -> Option<Ssh> {
        Some(Ssh {
            machine: machine.name.clone(),
            destination: machine.ssh.clone()?,
            options: machine.ssh_options.clone(),
            command: machine.command.clone(),
        })
    }

    /// `lab ARGS...` on the machine; `terminal` asks for a pseudo-terminal (an interactive `lab exec`).
    pub fn lab(&self, args: &[&str], terminal: bool) -> Command {
        let mut command = Command::new("ssh");
        command.args(&self.options).args(DEFAULTS);
        if terminal {
            command.arg("-t");
        }
        let words: Vec<String> = args.iter().map(|a| quote(a)).collect();
        command
            .arg("--")
            .arg(&self.destination)
            .arg(format!("{} {}", self.command, words.join(" ")));
        command
    }

    /// Runs `lab ARGS...` there to the end; a failure (ssh's or the command's) names the machine and carries what
    /// the command said on stderr.
    pub fn run(&self, args: &[&str]) -> io::Result<Output> {
        let output = self
            .lab(args, false)
            .stdin(Stdio::null())
            .output()
            .map_err(|e| io::Error::new(e.kind(), format!("machine {}: running ssh: {e}", self.machine)))?;
        if output.status.success() {
            return Ok(output);
        }
        Err(self.failed(&args.join(" "), &output))
    }

    /// The error of `lab WHAT` that ended with `output`: ssh exits with 255 for its own failures.
    pub fn failed(&self, what: &str, output: &Output) -> io::Error {
        let said = String::from_utf8_lossy(&output.stderr);
        let said = said.trim();
        let said = said.strip_prefix("lab: ").unwrap_or(said);
        let message = match output.status.code() {
            // ssh's own failure, or the remote command killed by a signal (ssh says nothing then).
            Some(255) if said.is_empty() => format!(
                "machine {} ({}): ssh failed: unreachable, or `lab {what}` there died of a signal",
                self.machine, self.destination
            ),
            Some(255) => format!(
                "machine {} ({}) is unreachable over SSH: {said}",
                self.machine, self.destination
            ),
            _ => format!(
                "machine {}: `lab {what}` failed ({}): {said}",
                self.machine, output.status
            ),
        };
        io::Error::other(message)
    }
}

/// One word for the remote shell.
fn quote(word: &str) -> String {
    shlex::try_quote(word).map_or_else(|_| "''".to_string(), |q| q.into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_reach_the_remote_shell_as_they_are() {
        let ssh = Ssh {
            machine: "m1".into(),
            destination: "root@10.1.0.2".into(),
            options: vec!["-F".into(), "my config".into()],
            command: "PATH=/opt/lab:$PATH lab".into(),
        };
        let command = ssh.lab(&["exec", "vlan", "a", "--", "sh", "-c", "echo $HOME; rm -rf /"], false);
        let args: Vec<_> = command.get_args().map(|a| a.to_str().unwrap()).collect();
        assert_eq!(&args[..2], ["-F", "my config"]);
        assert_eq!(args[args.len() - 2], "root@10.1.0.2");
        assert_eq!(
            args[args.len() - 1],
            "PATH=/opt/lab:$PATH lab exec vlan a -- sh -c 'echo $HOME; rm -rf /'"
        );
    }
}
