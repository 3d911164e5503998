//! Per-host firewalls as nftables rulesets, loaded with `nft -f -` inside the host's namespace.

use std::io::{self, Write};
use std::process::Stdio;

use crate::process::HostCommand;
use crate::topology::{Firewall, InboundPolicy, Topology};

/// The ruleset for one host. Ports named in an `allow` rule accept TCP only from that rule's sources; every other
/// packet to those ports is dropped. Other inbound traffic follows the firewall's `inbound` policy.
pub fn ruleset(firewall: &Firewall) -> String {
    let policy = match firewall.inbound {
        InboundPolicy::Accept => "accept",
        InboundPolicy::Drop => "drop",
    };
    let mut rules = String::new();
    rules.push_str("table inet lab {\n  chain input {\n");
    rules.push_str(&format!(
        "    type filter hook input priority filter; policy {policy};\n"
    ));
    rules.push_str("    iif \"lo\" accept\n");
    if firewall.inbound == InboundPolicy::Drop {
        rules.push_str("    ct state established,related accept\n");
        rules.push_str("    icmp type echo-request accept\n");
    }
    for allow in &firewall.allow {
        let ports = join(allow.ports.iter());
        if !allow.from.is_empty() {
            rules.push_str(&format!(
                "    tcp dport {{ {ports} }} ip saddr {{ {} }} accept\n",
                join(allow.from.iter())
            ));
        }
    }
    let guarded: std::collections::BTreeSet<u16> =
        firewall.allow.iter().flat_map(|a| a.ports.iter().copied()).collect();
    if !guarded.is_empty() {
        rules.push_str(&format!("    tcp dport {{ {} }} drop\n", join(guarded.iter())));
    }
    rules.push_str("  }\n}\n");
    rules
}

fn join<T: std::fmt::Display>(items: impl Iterator<Item = T>) -> String {
    items.map(|i| i.to_string()).collect::<Vec<_>>().join(", ")
}

/// `nft` processes loading firewalls; [`Loading::finish`] waits for them.
pub struct Loading {
    running: Vec<(String, std::process::Child)>,
}

/// Starts loading every host's firewall, one `nft` per host, all at once; the caller goes on building meanwhile.
pub fn start(topology: &Topology) -> io::Result<Loading> {
    let mut loading = Loading { running: Vec::new() };
    for host in &topology.hosts {
        let Some(firewall) = &host.firewall else { continue };
        let nft = crate::topology::find_program("nft").map_err(|why| {
            io::Error::new(
                io::ErrorKind::NotFound,
                format!("host {} has a firewall, but {why}", host.name),
            )
        })?;
        let mut command = HostCommand::new(&topology.netns_name(&host.name)).command(&nft)?;
        command
            .args(["-f", "-"])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = command.spawn()?;
        child
            .stdin
            .take()
            .expect("piped")
            .write_all(ruleset(firewall).as_bytes())?;
        loading.running.push((host.name.clone(), child));
    }
    Ok(loading)
}

impl Loading {
    pub fn finish(mut self) -> io::Result<()> {
        let mut first_error = None;
        for (host, child) in std::mem::take(&mut self.running) {
            let output = child.wait_with_output()?;
            if !output.status.success() && first_error.is_none() {
                first_error = Some(io::Error::other(format!(
                    "nft rejected the firewall of host {host}: {}",
                    String::from_utf8_lossy(&output.stderr).trim()
                )));
            }
        }
        first_error.map_or(Ok(()), Err)
    }
}

/// A build that failed before `finish` reaps its `nft` processes instead of leaving zombies.
impl Drop for Loading {
    fn drop(&mut self) {
        for (_, child) in &mut self.running {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
