//! What a machine says about itself before the coordinator builds anything there (`lab machine-report`), and the
//! coordinator's verdict on every machine of a spread lab: reachable, the same `lab`, the kernel features a part
//! needs, the underlay address present (and its MTU), and its clock's offset.

use std::collections::BTreeMap;
use std::io::{self, BufRead, BufReader, Write};
use std::net::Ipv4Addr;
use std::path::Path;
use std::process::{Child, ChildStdin, ChildStdout, Stdio};

use serde::{Deserialize, Serialize};

use super::clock::{Exchange, Offset, EXCHANGES};
use super::ssh::Ssh;
use super::Placement;
use crate::events::monotonic_ns;

/// The kernel features a part needs, as the modules that provide them, and what for.
pub const FEATURES: [(&str, &str); 4] = [
    ("vxlan", "the tunnels of stretched segments"),
    ("bridge", "segments"),
    ("veth", "host links"),
    ("nf_tables", "firewalls and faults"),
];

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MachineReport {
    /// `lab`'s version there.
    pub version: String,
    /// `uname -r`.
    pub kernel: String,
    /// Of [`FEATURES`], those this machine's kernel cannot give.
    pub missing: Vec<String>,
    /// The interface holding the underlay address, and its MTU; `None` if no interface has it.
    pub underlay: Option<(String, u32)>,
}

/// This machine's report, for a lab whose tunnels use `underlay` here.
pub fn this_machine(underlay: Ipv4Addr) -> MachineReport {
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|k| k.trim().to_string())
        .unwrap_or_default();
    let missing = FEATURES
        .iter()
        .filter(|(module, _)| !kernel_has(&kernel, module))
        .map(|(module, _)| module.to_string())
        .collect();
    MachineReport {
        version: env!("CARGO_PKG_VERSION").to_string(),
        kernel,
        missing,
        underlay: underlay_link(underlay),
    }
}

/// Loaded, built in, or loadable (modprobe loads it: the build would, a moment later).
fn kernel_has(kernel: &str, module: &str) -> bool {
    if Path::new("/sys/module").join(module).exists() {
        return true;
    }
    let builtin = std::fs::read_to_string(format!("/lib/modules/{kernel}/modules.builtin")).unwrap_or_default();
    if builtin.lines().any(|l| l.ends_with(&format!("/{module}.ko"))) {
        return true;
    }
    std::process::Command::new("modprobe")
        .args(["-q", module])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// The interface of this machine's own namespace that has `address`, and its MTU (read, never changed).
fn underlay_link(address: Ipv4Addr) -> Option<(String, u32)> {
    #[derive(Deserialize)]
    struct Link {
        ifname: String,
        mtu: u32,
        #[serde(default)]
        addr_info: Vec<Address>,
    }
    #[derive(Deserialize)]
    struct Address {
        local: Option<String>,
    }
    let output = std::process::Command::new("ip")
        .args(["-j", "-4", "address", "show"])
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .ok()?;
    let links: Vec<Link> = serde_json::from_slice(&output.stdout).ok()?;
    let wanted = address.to_string();
    links
        .into_iter()
        .find(|l| l.addr_info.iter().any(|a| a.local.as_deref() == Some(&wanted)))
        .map(|l| (l.ifname, l.mtu))
}

/// What the checks found: each machine's underlay MTU and clock offset (`None`: the coordinator).
#[derive(Debug, Clone, Default)]
pub struct Checked {
    pub underlay_mtus: BTreeMap<Option<String>, u32>,
    pub offsets: BTreeMap<String, Offset>,
}

/// Checks every machine of `placement` in parallel; every problem found, each naming its machine, or what the
/// build needs from them.
pub fn check_machines(placement: &Placement) -> Result<Checked, Vec<String>> {
    let mut problems = Vec::new();
    let mut checked = Checked::default();
    if let Some(coordinator) = &placement.coordinator {
        let report = this_machine(coordinator.underlay);
        problems.extend(verdict(&coordinator.name, coordinator.underlay, &report));
        if let Some((_, mtu)) = report.underlay {
            checked.underlay_mtus.insert(None, mtu);
        }
    }
    let results: Vec<(String, io::Result<(MachineReport, Offset)>)> = std::thread::scope(|scope| {
        let threads: Vec<_> = (placement.remote.iter())
            .filter_map(|m| Some((m, Ssh::to(m)?)))
            .map(|(machine, ssh)| {
                let underlay = machine.underlay;
                (machine.name.clone(), scope.spawn(move || check_one(&ssh, underlay)))
            })
            .collect();
        threads
            .into_iter()
            .map(|(name, t)| {
                (
                    name,
                    t.join().unwrap_or_else(|_| Err(io::Error::other("check panicked"))),
                )
            })
            .collect()
    });
    let underlays: BTreeMap<&str, Ipv4Addr> = placement.remote.iter().map(|m| (m.name.as_str(), m.underlay)).collect();
    for (name, result) in results {
        match result {
            Ok((report, offset)) => {
                problems.extend(verdict(&name, underlays[name.as_str()], &report));
                if let Some((_, mtu)) = report.underlay {
                    checked.underlay_mtus.insert(Some(name.clone()), mtu);
                }
                checked.offsets.insert(name, offset);
            }
            Err(e) => problems.push(e.to_string()),
        }
    }
    match problems.is_empty() {
        true => Ok(checked),
        false => Err(problems),
    }
}

/// What is wrong with a machine, from its report.
fn verdict(name: &str, underlay: Ipv4Addr, report: &MachineReport) -> Vec<String> {
    let mut problems = Vec::new();
    let ours = env!("CARGO_PKG_VERSION");
    if report.version != ours {
        problems.push(format!(
            "machine {name} has lab {} and the coordinator {ours}: run the same version on every machine",
            report.version
        ));
    }
    for module in &report.missing {
        let why = FEATURES.iter().find(|(m, _)| m == module).map_or("", |(_, why)| why);
        problems.push(format!(
            "machine {name}: its kernel ({}) has no {module} ({why})",
            report.kernel
        ));
    }
    if report.underlay.is_none() {
        problems.push(format!(
            "machine {name}: no interface has its underlay address {underlay} ([machines.{name}] underlay)"
        ));
    }
    problems
}

/// The report of one machine, and its clock offset.
fn check_one(ssh: &Ssh, underlay: Ipv4Addr) -> io::Result<(MachineReport, Offset)> {
    let output = ssh.run(&["machine-report", "--underlay", &underlay.to_string()])?;
    let report: MachineReport = serde_json::from_slice(&output.stdout).map_err(|e| {
        io::Error::other(format!(
            "machine {}: its `lab machine-report` answered something else than a report ({e}): is `{}` this \
             project's lab?",
            ssh.machine, ssh.command
        ))
    })?;
    let offset = ClockSession::open(ssh)?.estimate()?;
    Ok((report, offset))
}

/// `lab clock` on a machine: it answers each line with its CLOCK_MONOTONIC.
pub struct ClockSession {
    machine: String,
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

impl ClockSession {
    pub fn open(ssh: &Ssh) -> io::Result<ClockSession> {
        let mut child = ssh
            .lab(&["clock"], false)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()?;
        let stdin = child.stdin.take().expect("piped");
        let stdout = BufReader::new(child.stdout.take().expect("piped"));
        Ok(ClockSession {
            machine: ssh.machine.clone(),
            child,
            stdin,
            stdout,
        })
    }

    fn exchange(&mut self, line: &mut String) -> io::Result<Exchange> {
        let sent_ns = monotonic_ns();
        self.stdin.write_all(b"\n")?;
        self.stdin.flush()?;
        line.clear();
        if self.stdout.read_line(line)? == 0 {
            return Err(io::Error::other(format!(
                "machine {}: its clock stopped answering",
                self.machine
            )));
        }
        let received_ns = monotonic_ns();
        let remote_ns = line
            .trim()
            .parse()
            .map_err(|_| io::Error::other(format!("machine {}: `lab clock` answered {line:?}", self.machine)))?;
        Ok(Exchange {
            sent_ns,
            remote_ns,
            received_ns,
        })
    }

    /// The tightest of [`EXCHANGES`] round trips (the first one, which also waits for the session, is not kept).
    pub fn estimate(&mut self) -> io::Result<Offset> {
        let mut line = String::new();
        self.exchange(&mut line)?;
        let exchanges = (0..EXCHANGES)
            .map(|_| self.exchange(&mut line))
            .collect::<io::Result<Vec<_>>>()?;
        Offset::best(&exchanges).ok_or_else(|| io::Error::other("no usable round trip"))
    }
}

impl Drop for ClockSession {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `lab clock`'s side: one CLOCK_MONOTONIC reading per line read, until stdin ends.
pub fn answer_clock(input: impl BufRead, mut output: impl Write) -> io::Result<()> {
    for line in input.lines() {
        line?;
        writeln!(output, "{}", monotonic_ns())?;
        output.flush()?;
    }
    Ok(())
}
