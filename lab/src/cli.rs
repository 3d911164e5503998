//! The `lab` command line.

use std::io::{self, BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{ExitCode, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use clap::{Parser, Subcommand};
use nix::sys::signal::{SigSet, Signal};
use serde::Serialize;

use crate::control;
use crate::events::EventKind;
use crate::lab::{self, Lab, LabError};
use crate::state::{self, LabState};
use crate::topology::Topology;

#[derive(Parser)]
#[command(name = "lab", version, about = "Network-namespace lab for high-availability setups")]
pub struct Cli {
    #[command(subcommand)]
    command: Verb,
}

#[derive(Subcommand)]
enum Verb {
    /// Build a lab from a topology file and run its services; Ctrl-C (or `lab down`) tears it down.
    Up {
        /// Topology file, e.g. topologies/vlan.toml.
        file: PathBuf,
        /// Run detached: a supervisor keeps the lab up and answers on /run/lab/<lab>/control.sock.
        #[arg(short, long)]
        detach: bool,
        /// Use this lab name instead of the file's `name` (run several labs from one file).
        #[arg(long)]
        name: Option<String>,
        /// Print events as JSON lines.
        #[arg(long)]
        json: bool,
        /// Internal: the detached supervisor reports readiness on stderr, then goes quiet.
        #[arg(long, hide = true)]
        supervise: bool,
    },
    /// Tear down labs, including labs whose runner was killed.
    Down {
        /// Lab names or topology files.
        labs: Vec<String>,
        /// Every lab on this machine.
        #[arg(long, conflicts_with = "labs")]
        all: bool,
    },
    /// List the labs on this machine.
    Ls,
    /// Show a lab's hosts, addresses, MACs and services.
    Status {
        /// Lab name; every lab when omitted.
        lab: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Inject a fault: `lab fault vlan haproxy1 crash vrrpd`, `lab fault vlan haproxy1 partition haproxy2`,
    /// `lab fault vlan haproxy1 heal`. Faults: stop|start|crash|freeze|thaw [SERVICE], reboot [SECONDS],
    /// power-off, power-on, link-down|link-up [INTERFACE], partition HOST[,HOST...], heal, loss PERCENT,
    /// rate RATE|off.
    Fault {
        lab: String,
        /// The host, or several separated by commas.
        hosts: String,
        /// The fault and its arguments.
        #[arg(required = true, num_args = 1.., allow_hyphen_values = true)]
        fault: Vec<String>,
    },
    /// Print a lab's merged timeline: kernel, wire, daemons, probes and faults, in time order.
    Timeline {
        lab: String,
        /// One JSON object per line.
        #[arg(long)]
        json: bool,
        /// Keep printing new events until interrupted.
        #[arg(short, long)]
        follow: bool,
    },
    /// Write the frames crossing a segment as pcap: `lab capture vlan vlan -w - | tshark -r -`.
    Capture {
        lab: String,
        segment: String,
        /// Output file, `-` for standard output.
        #[arg(short = 'w', long = "write")]
        write: PathBuf,
        /// Stop after this many frames.
        #[arg(short = 'c', long)]
        count: Option<u64>,
    },
    /// Run a command inside a host (its namespace, hostname and /etc/hosts): `lab exec vlan redisclient -- bash`.
    Exec {
        lab: String,
        host: String,
        /// The command; an interactive bash when omitted.
        #[arg(last = true)]
        command: Vec<String>,
    },
}

/// Runs the CLI; exit code 2 for permission problems and usage errors, 1 for other failures.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Verb::Up {
            file,
            detach,
            name,
            json,
            supervise,
        } => {
            if detach {
                up_detached(&file, name.as_deref())
            } else {
                up(&file, name.as_deref(), json, supervise)
            }
        }
        Verb::Down { labs, all } => down(labs, all),
        Verb::Ls => ls(),
        Verb::Status { lab, json } => status(lab.as_deref(), json),
        Verb::Exec { lab, host, command } => exec(&lab, &host, command),
        Verb::Fault { lab, hosts, fault } => fault_command(&lab, &hosts, &fault),
        Verb::Timeline { lab, json, follow } => timeline(&lab, json, follow),
        Verb::Capture {
            lab,
            segment,
            write,
            count,
        } => capture(&lab, &segment, &write, count),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("lab: {e}");
            match e.downcast_ref::<LabError>() {
                Some(LabError::Permission(_)) => ExitCode::from(2),
                _ => ExitCode::FAILURE,
            }
        }
    }
}

fn load(file: &Path, name: Option<&str>) -> anyhow::Result<Topology> {
    let topology = Topology::load(file).map_err(LabError::from)?;
    Ok(match name {
        Some(name) => topology.renamed(name).map_err(LabError::from)?,
        None => topology,
    })
}

fn up(file: &Path, name: Option<&str>, json: bool, supervise: bool) -> anyhow::Result<ExitCode> {
    let topology = load(file, name)?;
    lab::check_privileges()?;
    // Block the stop signals before any thread exists, so they all inherit the mask and one thread waits for them.
    let stop_signals: SigSet = [Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP].into_iter().collect();
    stop_signals.thread_block()?;
    let (stop_tx, stop_rx) = mpsc::channel::<Option<control::Request>>();
    {
        let stop_tx = stop_tx.clone();
        std::thread::spawn(move || {
            if stop_signals.wait().is_ok() {
                let _ = stop_tx.send(None);
            }
        });
    }

    let mut lab = Lab::up(&topology)?;
    let (control_tx, control_rx) = mpsc::channel();
    control::serve(lab.name(), lab.events().clone(), control_tx)?;
    std::thread::spawn(move || {
        for request in control_rx {
            let _ = stop_tx.send(Some(request));
        }
    });

    let mut out: Box<dyn Write> = if supervise {
        // The parent waits for this line, then the supervisor writes its events to the run directory only.
        eprintln!("ready");
        redirect_stdio_to_null()?;
        Box::new(std::fs::File::create(state::run_dir(lab.name()).join("events.log"))?)
    } else {
        Box::new(io::stdout())
    };
    let mut seen = 0;
    let request = loop {
        let events = lab.events().since(seen, Duration::ZERO);
        seen += events.len();
        for event in &events {
            if json {
                writeln!(out, "{}", serde_json::to_string(event)?)?;
            } else {
                writeln!(out, "{event}")?;
            }
            if matches!(event.kind, EventKind::ServiceExited { .. }) {
                lab.save_state()?;
            }
        }
        out.flush()?;
        match stop_rx.recv_timeout(Duration::from_millis(50)) {
            Ok(Some(control::Request::Fault {
                hosts,
                fault,
                mut reply,
            })) => {
                let hosts: Vec<&str> = hosts.iter().map(String::as_str).collect();
                let _ = match lab.inject(&hosts, &fault) {
                    Ok(()) => writeln!(reply, "ok"),
                    Err(e) => writeln!(reply, "error: {e}"),
                };
            }
            Ok(request) => break request,
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => break None,
        }
    };
    let statuses = lab.down()?;
    for (host, service, status) in statuses {
        let _ = writeln!(out, "{host}/{service}: {status}");
    }
    let _ = writeln!(out, "lab {} is down", topology.name);
    if let Some(control::Request::Down(mut client)) = request {
        let _ = writeln!(client, "ok");
    }
    Ok(ExitCode::SUCCESS)
}

fn redirect_stdio_to_null() -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let null = std::fs::OpenOptions::new().write(true).open("/dev/null")?;
    for fd in [1, 2] {
        // SAFETY: dup2 onto the standard descriptors; the old ones were pipes to a parent that has gone.
        if unsafe { libc::dup2(null.as_raw_fd(), fd) } < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Starts a supervisor (this binary, `up --supervise`) in its own session and returns once the lab is up.
fn up_detached(file: &Path, name: Option<&str>) -> anyhow::Result<ExitCode> {
    let topology = load(file, name)?;
    lab::check_privileges()?;
    let mut command = std::process::Command::new(std::env::current_exe()?);
    command.args(["up", "--supervise", "--name", &topology.name]).arg(file);
    command
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    // SAFETY: setsid is async-signal-safe; the supervisor must not die with this terminal's session.
    unsafe {
        std::os::unix::process::CommandExt::pre_exec(&mut command, || {
            nix::unistd::setsid().map(drop).map_err(io::Error::from)
        });
    }
    let mut child = command.spawn()?;
    let mut stderr = BufReader::new(child.stderr.take().expect("piped"));
    let mut report = String::new();
    let mut line = String::new();
    while stderr.read_line(&mut line)? > 0 {
        if line.trim() == "ready" {
            println!(
                "lab {} is up (supervisor pid {}); `lab down {}` takes it down",
                topology.name,
                child.id(),
                topology.name
            );
            return Ok(ExitCode::SUCCESS);
        }
        report.push_str(&line);
        line.clear();
    }
    let status = child.wait()?;
    eprint!("{report}");
    anyhow::bail!(
        "the supervisor of lab {} exited ({status}) before the lab was up",
        topology.name
    )
}

/// A lab name, or the name inside a topology file.
fn lab_name(argument: &str) -> anyhow::Result<String> {
    let path = Path::new(argument);
    if path.is_file() {
        let text = std::fs::read_to_string(path)?;
        let value: toml::Table = toml::from_str(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        return match value.get("name").and_then(|v| v.as_str()) {
            Some(name) => Ok(name.to_string()),
            None => anyhow::bail!("{}: no `name`", path.display()),
        };
    }
    Ok(argument.to_string())
}

fn down(labs: Vec<String>, all: bool) -> anyhow::Result<ExitCode> {
    lab::check_privileges()?;
    let names = if all {
        state::labs()
    } else {
        labs.iter().map(|l| lab_name(l)).collect::<anyhow::Result<_>>()?
    };
    if names.is_empty() && !all {
        anyhow::bail!("name a lab (or a topology file), or use --all");
    }
    let mut failed = false;
    for name in names {
        match down_one(&name) {
            Ok(how) => println!("lab {name} is down ({how})"),
            Err(e) => {
                eprintln!("lab: {name}: {e}");
                failed = true;
            }
        }
    }
    Ok(if failed { ExitCode::FAILURE } else { ExitCode::SUCCESS })
}

fn down_one(name: &str) -> anyhow::Result<&'static str> {
    let state = match LabState::load(name) {
        Ok(state) => state,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            // A runner killed between creating the run directory and writing the state had created nothing else.
            if state::run_dir(name).is_dir() {
                std::fs::remove_dir_all(state::run_dir(name))?;
                return Ok("removed a run directory without state: its runner died before building anything");
            }
            anyhow::bail!("no such lab (nothing in {})", state::run_dir(name).display())
        }
        Err(e) => return Err(e.into()),
    };
    if state.runner_alive() && control::request_down(name, Duration::from_secs(120)).unwrap_or(false) {
        return Ok("stopped by its supervisor");
    }
    state::remove(&state)?;
    Ok(if state.runner_alive() {
        "removed while its runner still holds it"
    } else {
        "recovered: its runner was gone"
    })
}

fn ls() -> anyhow::Result<ExitCode> {
    for name in state::labs() {
        match LabState::load(&name) {
            Ok(s) => {
                let runner = if s.runner_alive() {
                    format!("runner {}", s.runner_pid)
                } else {
                    "runner gone".into()
                };
                println!("{name}\t{:?}\t{} hosts\t{runner}", s.phase, s.hosts.len());
            }
            Err(e) => println!("{name}\tunreadable state: {e}"),
        }
    }
    Ok(ExitCode::SUCCESS)
}

#[derive(Serialize)]
struct Status {
    lab: String,
    phase: state::Phase,
    runner_pid: u32,
    runner_alive: bool,
    hosts: Vec<HostStatus>,
}

#[derive(Serialize)]
struct HostStatus {
    host: String,
    hostname: String,
    netns: String,
    interfaces: Vec<InterfaceStatus>,
    services: Vec<state::ServiceRecord>,
}

#[derive(Serialize)]
struct InterfaceStatus {
    name: String,
    segment: String,
    address: String,
    mac: Option<String>,
    up: Option<bool>,
}

fn status(lab: Option<&str>, json: bool) -> anyhow::Result<ExitCode> {
    let names = match lab {
        Some(lab) => vec![lab_name(lab)?],
        None => state::labs(),
    };
    let mut all = Vec::new();
    for name in names {
        let state = LabState::load(&name).map_err(|e| anyhow::anyhow!("lab {name}: {e}"))?;
        let mut hosts = Vec::new();
        for (host, record) in &state.hosts {
            let links = lab::links_in(&record.netns).unwrap_or_default();
            let interfaces = record
                .interfaces
                .iter()
                .map(|i| {
                    let link = links.iter().find(|l| l.name == i.name);
                    InterfaceStatus {
                        name: i.name.clone(),
                        segment: i.segment.clone(),
                        address: i.address.clone(),
                        mac: link.and_then(|l| l.mac).map(|m| format_mac(&m)),
                        up: link.map(|l| l.up),
                    }
                })
                .collect();
            let services = record
                .services
                .iter()
                .map(|s| {
                    let mut s = s.clone();
                    let alive = s.pid.is_some_and(state::process_alive);
                    if s.state == "running" && !alive {
                        s.state = "gone".into();
                    }
                    s
                })
                .collect();
            hosts.push(HostStatus {
                host: host.clone(),
                hostname: record.hostname.clone(),
                netns: record.netns.clone(),
                interfaces,
                services,
            });
        }
        all.push(Status {
            lab: name,
            phase: state.phase.clone(),
            runner_alive: state.runner_alive(),
            runner_pid: state.runner_pid,
            hosts,
        });
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&all)?);
        return Ok(ExitCode::SUCCESS);
    }
    for lab in all {
        let runner = if lab.runner_alive {
            format!("runner pid {}", lab.runner_pid)
        } else {
            "runner gone: `lab down` recovers it".into()
        };
        println!("lab {} ({:?}, {runner})", lab.lab, lab.phase);
        for host in lab.hosts {
            println!("  {} (hostname {}, netns {})", host.host, host.hostname, host.netns);
            for i in host.interfaces {
                let state = match i.up {
                    Some(true) => "up",
                    Some(false) => "down",
                    None => "missing",
                };
                println!(
                    "    {} {} on {} mac {} {state}",
                    i.name,
                    i.address,
                    i.segment,
                    i.mac.as_deref().unwrap_or("-")
                );
            }
            for s in host.services {
                let pid = s.pid.map(|p| format!(" pid {p}")).unwrap_or_default();
                println!("    service {}: {}{pid} (log {})", s.name, s.state, s.log.display());
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub fn format_mac(mac: &[u8; 6]) -> String {
    mac.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(":")
}

fn fault_command(lab: &str, hosts: &str, words: &[String]) -> anyhow::Result<ExitCode> {
    lab::check_privileges()?;
    // Checked here too, so a typo is reported without a round trip.
    crate::fault::Fault::parse(words).map_err(|why| anyhow::anyhow!(why))?;
    control::request_fault(lab, hosts, words)?;
    Ok(ExitCode::SUCCESS)
}

fn timeline(lab: &str, json: bool, follow: bool) -> anyhow::Result<ExitCode> {
    let mut out = io::stdout().lock();
    if !follow {
        let mut events = Vec::new();
        control::read_timeline(lab, false, |event| {
            events.push(event);
            true
        })?;
        let timeline = crate::timeline::Timeline::new(events);
        let text = if json { timeline.json_lines() } else { timeline.text() };
        out.write_all(text.as_bytes())?;
        return Ok(ExitCode::SUCCESS);
    }
    let mut start = None;
    control::read_timeline(lab, true, |event| {
        let line = if json {
            serde_json::to_string(&event).expect("serializable event")
        } else {
            let start = *start.get_or_insert(event.at_ns);
            format!("{:>11.6}s  {event}", event.at_ns.saturating_sub(start) as f64 / 1e9)
        };
        writeln!(out, "{line}").and_then(|_| out.flush()).is_ok()
    })?;
    Ok(ExitCode::SUCCESS)
}

fn capture(lab: &str, segment: &str, write: &Path, count: Option<u64>) -> anyhow::Result<ExitCode> {
    use std::os::fd::AsFd;
    lab::check_privileges()?;
    let state = LabState::load(lab).map_err(|e| anyhow::anyhow!("lab {lab}: {e}"))?;
    let switch = format!("{}-{}", state.name, crate::topology::SWITCH_HOST);
    let segments: std::collections::BTreeSet<&str> = state
        .hosts
        .values()
        .flat_map(|h| h.interfaces.iter().map(|i| i.segment.as_str()))
        .collect();
    if !segments.contains(segment) {
        let known: Vec<&str> = segments.into_iter().collect();
        anyhow::bail!("lab {lab} has no segment `{segment}` (segments: {})", known.join(", "));
    }
    // Ctrl-C ends the capture cleanly: the file keeps every frame written so far.
    let stop_signals: SigSet = [Signal::SIGINT, Signal::SIGTERM].into_iter().collect();
    stop_signals.thread_block()?;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    {
        let stop = stop.clone();
        std::thread::spawn(move || {
            if stop_signals.wait().is_ok() {
                stop.store(true, std::sync::atomic::Ordering::Relaxed);
            }
        });
    }
    // Unbuffered: a reader such as tshark sees each frame as it is written.
    let out: std::fs::File = if write == Path::new("-") {
        std::fs::File::from(io::stdout().as_fd().try_clone_to_owned()?)
    } else {
        std::fs::File::create(write).map_err(|e| anyhow::anyhow!("{}: {e}", write.display()))?
    };
    let written = crate::observe::wire::write_pcap(&switch, segment, out, count, &stop)?;
    if write != Path::new("-") {
        eprintln!("{written} frames written to {}", write.display());
    }
    Ok(ExitCode::SUCCESS)
}

fn exec(lab: &str, host: &str, command: Vec<String>) -> anyhow::Result<ExitCode> {
    lab::check_privileges()?;
    let state = LabState::load(lab).map_err(|e| anyhow::anyhow!("lab {lab}: {e}"))?;
    let command = if command.is_empty() {
        vec!["bash".to_string()]
    } else {
        command
    };
    let mut child = lab::host_command(&state, host)?
        .command(&command[0])?
        .args(&command[1..])
        .spawn()
        .map_err(|e| anyhow::anyhow!("{}: {e}", command[0]))?;
    // The terminal's Ctrl-C belongs to the command; this process just waits for it.
    // SAFETY: setting a signal disposition to ignore has no preconditions.
    unsafe {
        nix::sys::signal::signal(Signal::SIGINT, nix::sys::signal::SigHandler::SigIgn)?;
        nix::sys::signal::signal(Signal::SIGQUIT, nix::sys::signal::SigHandler::SigIgn)?;
    }
    let status = child.wait()?;
    use std::os::unix::process::ExitStatusExt;
    Ok(ExitCode::from(
        status.code().unwrap_or_else(|| 128 + status.signal().unwrap_or(0)) as u8,
    ))
}
