//! The machines of `scripts/machines` (VMs on Debian's stock kernel, on one bridge in a namespace of this
//! machine), for tests of labs spread over machines: their SSH access, and topologies that use them.

use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::process::Output;

/// The VMs `scripts/machines` started, as its environment names them.
pub struct Machines {
    pub ssh_config: PathBuf,
    /// Name (m1, m2, ...) and underlay address.
    pub machines: Vec<(String, Ipv4Addr)>,
}

impl Machines {
    /// The machines, or `None` outside `scripts/machines`.
    pub fn from_env() -> Option<Machines> {
        let ssh_config = std::env::var_os("HALAB_MACHINES_SSH_CONFIG")?.into();
        let machines = std::env::var("HALAB_MACHINES")
            .ok()?
            .split_whitespace()
            .filter_map(|pair| {
                let (name, address) = pair.split_once('=')?;
                Some((name.to_string(), address.parse().ok()?))
            })
            .collect();
        Some(Machines { ssh_config, machines })
    }

    /// The machines, or a panic that says how to get them.
    pub fn get() -> Machines {
        Machines::from_env().expect("no machines: run this test through scripts/machines (scripts/test-machines does)")
    }

    /// How `lab` runs on the machines: this build's, with the workspace's programs first in PATH (an SSH session's
    /// PATH is short).
    pub fn lab_command() -> String {
        let lab = crate::workspace_binary("lab");
        let bin = lab.parent().unwrap().display().to_string();
        format!(
            "PATH={bin}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin {}",
            lab.display()
        )
    }

    /// How the lab reaches machine `name` (what its `[machines]` entry says).
    pub fn ssh_access(&self, name: &str) -> lab::machines::ssh::Ssh {
        lab::machines::ssh::Ssh {
            machine: name.to_string(),
            destination: name.to_string(),
            options: vec!["-F".into(), self.ssh_config.display().to_string()],
            command: Machines::lab_command(),
        }
    }

    /// A `[machines]` entry for machine `name`.
    pub fn entry(&self, name: &str, underlay: Ipv4Addr) -> String {
        format!(
            "[machines.{name}]\nssh = \"{name}\"\nunderlay = \"{underlay}\"\ncommand = \"{}\"\nssh_options = [\"-F\", \"{}\"]\n\n",
            Machines::lab_command(),
            self.ssh_config.display()
        )
    }

    /// The `[machines]` table of every machine.
    pub fn table(&self) -> String {
        self.machines
            .iter()
            .map(|(name, address)| self.entry(name, *address))
            .collect()
    }

    /// `text` (a topology file's) with each host put on the machine `place` gives it, and the machines' table
    /// appended.
    pub fn spread(&self, text: &str, place: impl Fn(&str) -> &'static str) -> String {
        let mut out = String::new();
        let mut in_host = false;
        for line in text.lines() {
            out.push_str(line);
            out.push('\n');
            if line.trim() == "[[hosts]]" {
                in_host = true;
            } else if in_host {
                if let Some(name) = line.trim().strip_prefix("name = \"").and_then(|r| r.strip_suffix('"')) {
                    out.push_str(&format!("machine = \"{}\"\n", place(name)));
                    in_host = false;
                }
            }
        }
        out.push('\n');
        out.push_str(&self.table());
        out
    }

    /// A shell command on machine `name` (as root, outside any lab).
    pub fn ssh(&self, name: &str, command: &str) -> Output {
        std::process::Command::new("ssh")
            .arg("-F")
            .arg(&self.ssh_config)
            .args([name, command])
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap()
    }

    /// What lab `lab` left on machine `name`: its run directory, namespaces and /etc/netns entries.
    pub fn leftovers(&self, name: &str, lab: &str) -> String {
        let command = format!(
            "ls -d /run/lab/{lab} /run/netns/{lab}-* /etc/netns/{lab}-* 2>/dev/null; ip netns list | grep '^{lab}-' || true"
        );
        String::from_utf8_lossy(&self.ssh(name, &command).stdout)
            .trim()
            .to_string()
    }
}
