//! Per-host firewalls as nftables rulesets, loaded with `nft -f -` inside the host's namespace; and the switch's
//! fault table, the rules behind `partition` and `loss`.

use std::collections::BTreeSet;
use std::io::{self, Write};
use std::net::Ipv4Addr;
use std::process::Stdio;

use crate::impair::{Direction, Percent};
use crate::plan::Plan;
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

/// The `nft -f` script that replaces the switch's `lab_fault` table (bridge family: it sees every frame between
/// hosts) with the network faults in force, atomically. `blocked`: (source, destination) pairs whose packets are
/// dropped. `loss`: a bridge port, a direction (frames from the host come in on the port, frames to it go out) and
/// the share to drop at random; 0 drops none. With no fault in force the table is just removed.
pub fn switch_fault_rules(blocked: &BTreeSet<(Ipv4Addr, Ipv4Addr)>, loss: &[(String, Direction, Percent)]) -> String {
    let mut rules = String::from("add table bridge lab_fault\ndelete table bridge lab_fault\n");
    let loss: Vec<_> = loss.iter().filter(|(_, _, p)| !p.is_zero()).collect();
    if blocked.is_empty() && loss.is_empty() {
        return rules;
    }
    // A frame a host sends is lost once, before the bridge floods it (prerouting); a frame to a host is lost on its
    // way out of that host's port (forward, once per port), as are the frames a partition cuts.
    let mut arriving = String::new();
    let mut leaving: String = blocked
        .iter()
        .map(|(from, to)| format!("    ip saddr {from} ip daddr {to} drop\n"))
        .collect();
    for (port, direction, percent) in loss {
        // Hundredths of a percent: nft draws 0-9999, and 100 % is a plain drop.
        let chance = match (percent.value() * 100.0).round() as u32 {
            10_000.. => String::new(),
            n => format!("numgen random mod 10000 < {n} "),
        };
        match direction {
            Direction::From => arriving.push_str(&format!("    iifname \"{port}\" {chance}drop\n")),
            Direction::To => leaving.push_str(&format!("    oifname \"{port}\" {chance}drop\n")),
        }
    }
    rules.push_str("table bridge lab_fault {\n");
    rules.push_str("  chain prerouting {\n    type filter hook prerouting priority -10;\n");
    rules.push_str(&arriving);
    rules.push_str("  }\n  chain forward {\n    type filter hook forward priority -10;\n");
    rules.push_str(&leaving);
    rules.push_str("  }\n}\n");
    rules
}

/// `nft` processes loading firewalls; [`Loading::finish`] waits for them.
pub struct Loading {
    running: Vec<(String, std::process::Child)>,
}

/// Starts loading every host's firewall, one `nft` per host, all at once; the caller goes on building meanwhile.
pub fn start(topology: &Topology, plan: &Plan) -> io::Result<Loading> {
    let mut loading = Loading { running: Vec::new() };
    for (host, host_plan) in topology.hosts.iter().zip(&plan.hosts) {
        let Some(firewall) = &host.firewall else { continue };
        let nft = crate::process::find_program("nft").map_err(|why| {
            io::Error::new(
                io::ErrorKind::NotFound,
                format!("host {} has a firewall, but {why}", host.name),
            )
        })?;
        let mut command = HostCommand::new(&host_plan.namespace.mount)?.command(&nft)?;
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

#[cfg(test)]
mod tests {
    use super::*;

    fn loss(port: &str, direction: Direction, percent: f64) -> (String, Direction, Percent) {
        (port.to_string(), direction, Percent::new(percent).unwrap())
    }

    /// The script, one line per item.
    fn lines(lines: &[&str]) -> String {
        lines.iter().map(|line| format!("{line}\n")).collect()
    }

    const REPLACE: [&str; 2] = ["add table bridge lab_fault", "delete table bridge lab_fault"];

    #[test]
    fn no_fault_only_removes_the_table() {
        assert_eq!(switch_fault_rules(&BTreeSet::new(), &[]), lines(&REPLACE));
        let cleared = [loss("a-0", Direction::From, 0.0), loss("b-1", Direction::To, 0.0)];
        assert_eq!(switch_fault_rules(&BTreeSet::new(), &cleared), lines(&REPLACE));
    }

    #[test]
    fn a_partition_drops_both_directions() {
        let (a, b) = (Ipv4Addr::new(10, 9, 0, 1), Ipv4Addr::new(10, 9, 0, 2));
        let blocked = BTreeSet::from([(b, a), (a, b)]);
        assert_eq!(
            switch_fault_rules(&blocked, &[loss("a-0", Direction::From, 0.0)]),
            lines(&[
                REPLACE[0],
                REPLACE[1],
                "table bridge lab_fault {",
                "  chain prerouting {",
                "    type filter hook prerouting priority -10;",
                "  }",
                "  chain forward {",
                "    type filter hook forward priority -10;",
                "    ip saddr 10.9.0.1 ip daddr 10.9.0.2 drop",
                "    ip saddr 10.9.0.2 ip daddr 10.9.0.1 drop",
                "  }",
                "}",
            ])
        );
    }

    #[test]
    fn loss_drops_at_random_below_100_and_always_at_100_each_way() {
        let loss = [
            loss("a-0", Direction::From, 0.0),
            loss("b-0", Direction::From, 10.0),
            loss("b-1", Direction::To, 0.5),
            loss("c-0", Direction::From, 100.0),
        ];
        assert_eq!(
            switch_fault_rules(&BTreeSet::new(), &loss),
            lines(&[
                REPLACE[0],
                REPLACE[1],
                "table bridge lab_fault {",
                "  chain prerouting {",
                "    type filter hook prerouting priority -10;",
                "    iifname \"b-0\" numgen random mod 10000 < 1000 drop",
                "    iifname \"c-0\" drop",
                "  }",
                "  chain forward {",
                "    type filter hook forward priority -10;",
                "    oifname \"b-1\" numgen random mod 10000 < 50 drop",
                "  }",
                "}",
            ])
        );
    }
}
