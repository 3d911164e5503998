//! The `lab` command line: parses words, calls the library, prints. Nothing in the library calls back into it.

use std::io::{self, BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{ExitCode, Stdio};
use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};
use nix::sys::signal::{SigSet, Signal};
use serde::Serialize;

use crate::control::{self, Action, Client};
use crate::fault::Fault;
use crate::impair::BackendChoice;
use crate::lab::{self, Lab, LabError};
use crate::names::{self, LabPaths, SWITCH_HOST};
use crate::state::{self, LabState};
use crate::supervisor::{self, EventSink, StopSignals};
use crate::teardown;
use crate::topology::{search, Topology};

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
        /// Topology file, or the name of one (`vlan.toml`, `vlan`) found in `.`, `./topologies` or the installed
        /// topologies (`lab topologies` lists them).
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
        /// Carry out link impairments with this backend instead of the topology's `impair_backend`.
        #[arg(long, value_enum, value_name = "BACKEND")]
        impair_backend: Option<BackendChoice>,
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
        /// Seconds to wait for a lab's supervisor to take it down; past that, the supervisor is killed and the
        /// lab removed without it.
        #[arg(long, default_value_t = 120.0, value_parser = seconds)]
        timeout: f64,
        /// Internal (a coordinator taking its part down): only the lab of this instance; no lab is fine.
        #[arg(long, hide = true, requires = "labs")]
        instance: Option<String>,
    },
    /// Internal: build this machine's part of a lab spread over machines, from the spec its coordinator writes on
    /// stdin; print the lab's instance, then its events as JSON lines; take it down when stdin ends or goes quiet.
    #[command(hide = true)]
    Part,
    /// Internal: what this machine offers a spread lab (JSON), for its coordinator's checks.
    #[command(hide = true)]
    MachineReport {
        #[arg(long)]
        underlay: std::net::Ipv4Addr,
    },
    /// Internal: answer each line on stdin with this machine's CLOCK_MONOTONIC, in nanoseconds.
    #[command(hide = true)]
    Clock,
    /// List the labs on this machine.
    Ls,
    /// List the topologies `lab up NAME` finds, and where.
    Topologies,
    /// Show a lab's hosts, addresses, MACs and services.
    Status {
        /// Lab name (or topology file); every lab when omitted.
        lab: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// List the network faults in force: partitions, and each impaired link with its settings and direction.
    Faults {
        /// Lab name (or topology file).
        lab: String,
        #[arg(long)]
        json: bool,
    },
    /// Inject a fault: `lab fault vlan haproxy1 crash vrrpd`, `lab fault vlan haproxy1 partition haproxy2`,
    /// `lab fault vlan haproxy1 heal`.
    #[command(
        disable_help_subcommand = true,
        subcommand_value_name = "FAULT",
        subcommand_help_heading = "Faults"
    )]
    Fault {
        /// The lab's name.
        lab: String,
        /// The host, or several separated by commas.
        hosts: String,
        #[command(subcommand)]
        fault: Fault,
    },
    /// Draw a topology (a file, or a lab that is up): segments, hosts, addresses, services and extra names.
    Graph {
        /// A topology file (found as `lab up` finds it) or the name of a lab that is up.
        topology: String,
        /// mermaid (default), dot (Graphviz), or svg (drawn here, no Graphviz needed).
        #[arg(long, value_enum, default_value_t = GraphFormat::Mermaid)]
        format: GraphFormat,
    },
    /// Run scenario files: each in a lab of its own, in parallel; exit 0 when all pass, 1 when one fails, 2 for a
    /// bad scenario file (every problem is listed before any lab is built).
    Test(crate::cli_test::TestArguments),
    /// Write the report of a lab that is up: its timeline as a swimlane chart, one self-contained HTML file.
    Report {
        lab: String,
        /// The output file, `-` for standard output.
        #[arg(short, long, default_value = "report.html")]
        output: PathBuf,
    },
    /// Print a lab's merged timeline: kernel, wire, daemons, probes and faults, in time order.
    Timeline {
        lab: String,
        /// text (default), json (one object per line), or perfetto (a Chrome/Perfetto trace: open it in
        /// ui.perfetto.dev).
        #[arg(long, value_enum, default_value_t = TimelineFormat::Text)]
        format: TimelineFormat,
        /// The same as `--format json`.
        #[arg(long, conflicts_with = "format")]
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

fn seconds(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(s) if s.is_finite() && (0.001..=86_400.0).contains(&s) => Ok(s),
        _ => Err(format!("`{text}` is not a number of seconds in 0.001-86400")),
    }
}

/// Runs the CLI; exit code 2 for bad names, permission problems and usage errors, 130 for an interrupted
/// bring-up, 1 for other failures.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Verb::Up {
            file,
            detach,
            name,
            json,
            impair_backend,
            supervise,
        } => {
            if detach {
                up_detached(&file, name.as_deref(), impair_backend)
            } else {
                up(&file, name.as_deref(), impair_backend, json, supervise)
            }
        }
        Verb::Down {
            labs,
            all,
            timeout,
            instance,
        } => down(labs, all, Duration::from_secs_f64(timeout), instance.as_deref()),
        Verb::Part => part(),
        Verb::MachineReport { underlay } => machine_report(underlay),
        Verb::Clock => crate::machines::report::answer_clock(io::stdin().lock(), io::stdout().lock())
            .map(|()| ExitCode::SUCCESS)
            .map_err(Into::into),
        Verb::Ls => ls(),
        Verb::Topologies => topologies(),
        Verb::Status { lab, json } => status(lab.as_deref(), json),
        Verb::Faults { lab, json } => faults(&lab, json),
        Verb::Exec { lab, host, command } => exec(&lab, &host, command),
        Verb::Fault { lab, hosts, fault } => fault_command(&lab, &hosts, fault),
        Verb::Graph { topology, format } => graph(&topology, format),
        Verb::Timeline {
            lab,
            format,
            json,
            follow,
        } => timeline(&lab, if json { TimelineFormat::Json } else { format }, follow),
        Verb::Test(arguments) => crate::cli_test::test(arguments),
        Verb::Report { lab, output } => report(&lab, &output),
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
                Some(LabError::Permission(_) | LabError::Name(_)) => ExitCode::from(2),
                Some(LabError::Interrupted(_)) => ExitCode::from(130),
                _ => ExitCode::FAILURE,
            }
        }
    }
}

fn load(file: &Path, name: Option<&str>, backend: Option<BackendChoice>) -> anyhow::Result<Topology> {
    if let Some(name) = name {
        names::check_lab(name).map_err(LabError::Name)?;
    }
    let file = search::find(file).map_err(anyhow::Error::msg)?;
    let mut topology = Topology::load(&file).map_err(LabError::from)?;
    topology.impair_backend = backend.unwrap_or(topology.impair_backend);
    Ok(match name {
        Some(name) => topology.renamed(name).map_err(LabError::from)?,
        None => topology,
    })
}

fn up(
    file: &Path,
    name: Option<&str>,
    backend: Option<BackendChoice>,
    json: bool,
    supervise: bool,
) -> anyhow::Result<ExitCode> {
    let topology = load(file, name, backend)?;
    lab::check_privileges()?;
    // Before any thread exists, so every thread inherits the blocked mask and one thread waits for the signals.
    let signals = StopSignals::block()?;
    let lab = Lab::up_with(&topology, &signals.cancel)?;
    let out: Box<dyn Write + Send> = if supervise {
        supervisor::detach(&lab.paths().events_log())?
    } else {
        Box::new(io::stdout())
    };
    supervisor::supervise(lab, signals, EventSink::new(out, json))?;
    Ok(ExitCode::SUCCESS)
}

/// Starts a supervisor (this binary, `up --supervise`) in its own session and returns once the lab is up.
fn up_detached(file: &Path, name: Option<&str>, backend: Option<BackendChoice>) -> anyhow::Result<ExitCode> {
    let topology = load(file, name, backend)?;
    lab::check_privileges()?;
    // Ctrl-C while waiting stops the bring-up: the supervisor gets SIGTERM, cancels and removes what it built.
    let stop_signals: SigSet = [Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP].into_iter().collect();
    stop_signals.thread_block()?;
    let mut command = std::process::Command::new(std::env::current_exe()?);
    let file = search::find(file).map_err(anyhow::Error::msg)?;
    command.args(["up", "--supervise", "--name", &topology.name]).arg(file);
    if let Some(backend) = backend {
        command.args([
            "--impair-backend",
            backend.to_possible_value().expect("no skipped values").get_name(),
        ]);
    }
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
    // A handle on the supervisor itself: once reaped, its pid could be anyone's.
    let supervisor = crate::pidfd::Pidfd::open(child.id() as i32)?;
    std::thread::spawn(move || {
        if stop_signals.wait().is_ok() {
            let _ = supervisor.signal(Signal::SIGTERM);
        }
    });
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

/// The paths of the lab an argument names: a lab name, or else a topology file whose `name` is read. Either way
/// the name is checked before any path is built from it.
fn lab_paths(argument: &str) -> anyhow::Result<LabPaths> {
    // A lab name is taken as one; anything else may name a topology file, found as `lab up` finds it.
    let found = names::check_lab(argument)
        .is_err()
        .then(|| search::find(Path::new(argument)).ok())
        .flatten();
    if let Some(path) = &found {
        let path = path.as_path();
        let text = std::fs::read_to_string(path)?;
        let value: toml::Table = toml::from_str(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        return match value.get("name").and_then(|v| v.as_str()) {
            Some(name) => LabPaths::new(name)
                .map_err(|e| {
                    LabError::Name(names::NameError {
                        reason: format!("{} (read from {})", e.reason, path.display()),
                        ..e
                    })
                })
                .map_err(Into::into),
            None => anyhow::bail!("{}: no `name`", path.display()),
        };
    }
    Ok(LabPaths::new(argument).map_err(LabError::Name)?)
}

fn topologies() -> anyhow::Result<ExitCode> {
    let found = search::list();
    if found.is_empty() {
        let looked: Vec<String> = search::directories().iter().map(|d| d.display().to_string()).collect();
        println!("no topologies in {}", looked.join(", "));
    }
    let width = found.iter().map(|f| f.name.len()).max().unwrap_or(0);
    for topology in found {
        println!(
            "{:width$}  {}  ({})",
            topology.name,
            topology.summary,
            topology.path.display()
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn machine_report(underlay: std::net::Ipv4Addr) -> anyhow::Result<ExitCode> {
    println!(
        "{}",
        serde_json::to_string(&crate::machines::report::this_machine(underlay))?
    );
    Ok(ExitCode::SUCCESS)
}

/// `lab part`: this machine's part of a spread lab, in the foreground of its coordinator's SSH session.
fn part() -> anyhow::Result<ExitCode> {
    use crate::machines::remote::{Outbox, HEARTBEAT_PATIENCE};
    lab::check_privileges()?;
    let mut input = io::stdin().lock();
    let mut line = String::new();
    input.read_line(&mut line)?;
    let spec: crate::machines::PartSpec =
        serde_json::from_str(&line).map_err(|e| anyhow::anyhow!("the part's spec on stdin: {e}"))?;
    let signals = StopSignals::block()?;
    // The coordinator's heartbeats: when they stop (it died, or the network did) or stdin ends (it took the lab
    // down), the part stops as on a signal.
    std::thread::spawn(move || {
        let (beats, heard) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in io::stdin().lock().lines() {
                if line.is_err() || beats.send(()).is_err() {
                    return;
                }
            }
        });
        while heard.recv_timeout(HEARTBEAT_PATIENCE).is_ok() {}
        let _ = nix::sys::signal::kill(nix::unistd::getpid(), Signal::SIGTERM);
    });
    drop(input);
    let lab = Lab::up_machine_part(&spec, &signals.cancel)?;
    // Events go out through a bounded queue: a stalled session never stalls the part.
    supervisor::supervise(lab, signals, EventSink::new(Box::new(Outbox::new(io::stdout())), true))?;
    Ok(ExitCode::SUCCESS)
}

fn down(labs: Vec<String>, all: bool, patience: Duration, instance: Option<&str>) -> anyhow::Result<ExitCode> {
    lab::check_privileges()?;
    let paths: Vec<LabPaths> = if all {
        state::labs()
            .iter()
            .map(|l| LabPaths::new(l))
            .collect::<Result<_, _>>()?
    } else {
        labs.iter().map(|l| lab_paths(l)).collect::<anyhow::Result<_>>()?
    };
    if paths.is_empty() && !all {
        anyhow::bail!("name a lab (or a topology file), or use --all");
    }
    let mut failed = false;
    for lab in paths {
        match teardown::down(&lab, patience, instance) {
            Ok(how) => println!("lab {} is down ({how})", lab.lab()),
            // A coordinator asking for its part: the part took itself down, or never got as far as a record.
            Err(e) if instance.is_some() && e.kind() == io::ErrorKind::NotFound => {
                println!("lab {} is not here: nothing to take down", lab.lab())
            }
            Err(e) => {
                eprintln!("lab: {}: {e}", lab.lab());
                failed = true;
            }
        }
    }
    Ok(if failed { ExitCode::FAILURE } else { ExitCode::SUCCESS })
}

fn ls() -> anyhow::Result<ExitCode> {
    for name in state::labs() {
        let paths = LabPaths::new(&name)?;
        match LabState::load(&paths) {
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

#[derive(Serialize, serde::Deserialize)]
struct Status {
    lab: String,
    phase: state::Phase,
    runner_pid: u32,
    runner_alive: bool,
    hosts: Vec<HostStatus>,
}

#[derive(Serialize, serde::Deserialize)]
struct HostStatus {
    host: String,
    /// The machine it runs on, in a lab spread over machines (`None`: this one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    machine: Option<String>,
    hostname: String,
    netns: String,
    interfaces: Vec<InterfaceStatus>,
    services: Vec<state::ServiceRecord>,
}

#[derive(Serialize, serde::Deserialize)]
struct InterfaceStatus {
    name: String,
    segment: String,
    address: String,
    mac: Option<String>,
    up: Option<bool>,
}

fn lab_status(paths: &LabPaths) -> anyhow::Result<Status> {
    let state = LabState::load(paths).map_err(|e| anyhow::anyhow!("lab {}: {e}", paths.lab()))?;
    let mut hosts = Vec::new();
    for (host, record) in &state.hosts {
        let namespace = paths.namespace(host);
        // A namespace that is no longer the lab's is not entered: its interfaces show as missing.
        let links = state
            .open_namespace(paths, host)
            .and_then(lab::links_in_namespace)
            .unwrap_or_default();
        let interfaces = record
            .interfaces
            .iter()
            .map(|i| {
                let link = links.iter().find(|l| l.name == i.name);
                InterfaceStatus {
                    name: i.name.clone(),
                    segment: i.segment.clone(),
                    address: i.address.clone(),
                    mac: link.and_then(|l| l.mac).map(|m| crate::net::format_mac(&m)),
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
            machine: None,
            hostname: record.hostname.clone(),
            netns: namespace.name,
            interfaces,
            services,
        });
    }
    for remote in &state.remotes {
        match remote_hosts(remote, &state.name) {
            Ok(theirs) => hosts.extend(theirs),
            Err(e) => eprintln!("lab: {e}"),
        }
    }
    Ok(Status {
        lab: state.name.clone(),
        phase: state.phase,
        runner_alive: state.runner_alive(),
        runner_pid: state.runner_pid,
        hosts,
    })
}

/// The hosts of a part on another machine, as its `lab status` there says.
fn remote_hosts(remote: &crate::machines::remote::RemoteRecord, lab: &str) -> anyhow::Result<Vec<HostStatus>> {
    let output = remote.ssh.run(&["status", lab, "--json"])?;
    let parts: Vec<Status> = serde_json::from_slice(&output.stdout).map_err(|e| {
        anyhow::anyhow!(
            "machine {}: its `lab status` said something else ({e})",
            remote.ssh.machine
        )
    })?;
    Ok((parts.into_iter().flat_map(|p| p.hosts))
        .map(|h| HostStatus {
            machine: Some(remote.ssh.machine.clone()),
            ..h
        })
        .collect())
}

fn status(lab: Option<&str>, json: bool) -> anyhow::Result<ExitCode> {
    let labs = match lab {
        Some(lab) => vec![lab_paths(lab)?],
        None => state::labs()
            .iter()
            .map(|l| LabPaths::new(l))
            .collect::<Result<_, _>>()?,
    };
    let all = labs.iter().map(lab_status).collect::<anyhow::Result<Vec<_>>>()?;
    if json {
        println!("{}", serde_json::to_string_pretty(&all)?);
        return Ok(ExitCode::SUCCESS);
    }
    for lab in all {
        print_status(lab);
    }
    Ok(ExitCode::SUCCESS)
}

fn faults(lab: &str, json: bool) -> anyhow::Result<ExitCode> {
    let paths = lab_paths(lab)?;
    let state = LabState::load(&paths).map_err(|e| anyhow::anyhow!("lab {}: {e}", paths.lab()))?;
    let faults = state.faults;
    if json {
        println!("{}", serde_json::to_string_pretty(&faults)?);
        return Ok(ExitCode::SUCCESS);
    }
    if faults.partitions.is_empty() && faults.links.is_empty() && faults.underlay_cuts.is_empty() {
        println!("lab {}: no network fault in force", paths.lab());
        return Ok(ExitCode::SUCCESS);
    }
    let backend = faults
        .backend
        .map_or_else(|| "none needed".to_string(), |b| b.to_string());
    println!("lab {} (impairment backend: {backend})", paths.lab());
    for (from, to) in &faults.partitions {
        println!("  partition  {from} -> {to}");
    }
    for to in &faults.underlay_cuts {
        println!("  underlay cut  this machine -> {to}");
    }
    for link in &faults.links {
        let (host, interface, direction) = (&link.host, &link.interface, link.direction);
        println!("  {host} {interface} {direction:<4}  {}", link.impairment);
    }
    Ok(ExitCode::SUCCESS)
}

fn print_status(lab: Status) {
    let runner = if lab.runner_alive {
        format!("runner pid {}", lab.runner_pid)
    } else {
        "runner gone: `lab down` recovers it".into()
    };
    println!("lab {} ({:?}, {runner})", lab.lab, lab.phase);
    for host in lab.hosts {
        let machine = host.machine.map(|m| format!(", machine {m}")).unwrap_or_default();
        println!(
            "  {} (hostname {}, netns {}{machine})",
            host.host, host.hostname, host.netns
        );
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

/// The record of a lab that is up, and a connection to its supervisor.
fn connect(lab: &str) -> anyhow::Result<Client> {
    let paths = lab_paths(lab)?;
    let state = LabState::load(&paths).map_err(|e| anyhow::anyhow!("lab {lab}: {e}"))?;
    Ok(Client::connect(&paths, &state.instance)?)
}

fn fault_command(lab: &str, hosts: &str, fault: Fault) -> anyhow::Result<ExitCode> {
    lab::check_privileges()?;
    let hosts = hosts.split(',').map(str::to_string).collect();
    let reply = connect(lab)?.request(Action::Fault { hosts, fault }, None)?;
    control::done(reply)?;
    Ok(ExitCode::SUCCESS)
}

/// What `lab graph` draws in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum GraphFormat {
    Mermaid,
    Dot,
    Svg,
}

fn graph(argument: &str, format: GraphFormat) -> anyhow::Result<ExitCode> {
    let topology = match search::find(Path::new(argument)) {
        Ok(file) => Topology::load(&file).map_err(LabError::from)?,
        // A lab that is up: the topology file it was built from, under the lab's name.
        Err(not_found) => {
            let paths = LabPaths::new(argument).map_err(|_| anyhow::Error::msg(not_found))?;
            let state = LabState::load(&paths).map_err(|e| anyhow::anyhow!("lab {argument}: {e}"))?;
            let topology = Topology::load(&state.topology).map_err(LabError::from)?;
            topology.renamed(&state.name).map_err(LabError::from)?
        }
    };
    let text = match format {
        GraphFormat::Mermaid => crate::graph::mermaid(&topology),
        GraphFormat::Dot => crate::graph::dot(&topology),
        GraphFormat::Svg => crate::graph::svg(&topology),
    };
    io::stdout().lock().write_all(text.as_bytes())?;
    Ok(ExitCode::SUCCESS)
}

fn report(lab: &str, output: &Path) -> anyhow::Result<ExitCode> {
    let paths = LabPaths::new(lab).map_err(LabError::Name)?;
    let state = LabState::load(&paths).map_err(|e| anyhow::anyhow!("lab {lab}: {e}"))?;
    let topology = Topology::load(&state.topology).map_err(LabError::from)?;
    let timeline = fetch_timeline(lab)?;
    let report = crate::report::Report {
        title: format!("lab {lab}"),
        timeline: &timeline,
        topology: &topology,
        steps: None,
    };
    let html = report.html();
    if output == Path::new("-") {
        io::stdout().lock().write_all(html.as_bytes())?;
    } else {
        std::fs::write(output, html).map_err(|e| anyhow::anyhow!("{}: {e}", output.display()))?;
        eprintln!("report of lab {lab} written to {}", output.display());
    }
    Ok(ExitCode::SUCCESS)
}

/// How `lab timeline` prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum TimelineFormat {
    Text,
    Json,
    Perfetto,
}

fn timeline(lab: &str, format: TimelineFormat, follow: bool) -> anyhow::Result<ExitCode> {
    if follow && format == TimelineFormat::Perfetto {
        anyhow::bail!("a Perfetto trace is one document: --follow prints text or JSON lines");
    }
    let json = format == TimelineFormat::Json;
    let mut out = io::stdout().lock();
    if !follow {
        let timeline = fetch_timeline(lab)?;
        let text = match format {
            TimelineFormat::Text => timeline.text(),
            TimelineFormat::Json => timeline.json_lines(),
            TimelineFormat::Perfetto => timeline.perfetto(),
        };
        out.write_all(text.as_bytes())?;
        return Ok(ExitCode::SUCCESS);
    }
    let mut start = None;
    let missed = connect(lab)?.timeline(true, |event| {
        let line = if json {
            serde_json::to_string(&event).expect("serializable event")
        } else {
            let start = *start.get_or_insert(event.at_ns);
            format!("{:>11.6}s  {event}", event.at_ns.saturating_sub(start) as f64 / 1e9)
        };
        writeln!(out, "{line}").and_then(|_| out.flush()).is_ok()
    })?;
    report_missed(missed);
    Ok(ExitCode::SUCCESS)
}

/// Everything the lab's supervisor still holds of its timeline.
fn fetch_timeline(lab: &str) -> anyhow::Result<crate::timeline::Timeline> {
    let mut events = Vec::new();
    let missed = connect(lab)?.timeline(false, |event| {
        events.push(event);
        true
    })?;
    report_missed(missed);
    Ok(crate::timeline::Timeline::new(events))
}

fn report_missed(missed: usize) {
    if missed > 0 {
        eprintln!("lab: {missed} earlier events are no longer in the supervisor's memory (see its events.log)");
    }
}

fn capture(lab: &str, segment: &str, write: &Path, count: Option<u64>) -> anyhow::Result<ExitCode> {
    use std::os::fd::AsFd;
    lab::check_privileges()?;
    let paths = lab_paths(lab)?;
    let state = LabState::load(&paths).map_err(|e| anyhow::anyhow!("lab {lab}: {e}"))?;
    state.open_namespace(&paths, SWITCH_HOST)?;
    let switch = paths.namespace(SWITCH_HOST).mount;
    let segments: std::collections::BTreeSet<&str> = state
        .hosts
        .values()
        .flat_map(|h| h.interfaces.iter().map(|i| i.segment.as_str()))
        .collect();
    if !segments.contains(segment) && !state.remotes.is_empty() {
        return capture_elsewhere(&state, segment, write, count);
    }
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

/// The capture of a segment this machine's part does not have, from the first other machine whose part does.
fn capture_elsewhere(state: &LabState, segment: &str, write: &Path, count: Option<u64>) -> anyhow::Result<ExitCode> {
    let count = count.map(|c| c.to_string());
    let mut args = vec!["capture", &state.name, segment, "-w", "-"];
    if let Some(count) = &count {
        args.extend(["-c", count]);
    }
    // A fresh handle per attempt (a machine without the segment writes nothing before it says so).
    let destination = || -> anyhow::Result<Stdio> {
        Ok(match write == Path::new("-") {
            true => Stdio::inherit(),
            false => std::fs::File::create(write)
                .map_err(|e| anyhow::anyhow!("{}: {e}", write.display()))?
                .into(),
        })
    };
    for remote in &state.remotes {
        let mut child = remote.ssh.lab(&args, false);
        child.stdin(Stdio::null()).stdout(destination()?).stderr(Stdio::piped());
        let output = child.output()?;
        let said = String::from_utf8_lossy(&output.stderr);
        if output.status.success() || !said.contains("has no segment") {
            eprint!("{said}");
            return Ok(if output.status.success() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            });
        }
    }
    anyhow::bail!("lab {} has no segment `{segment}` on any machine", state.name)
}

fn exec(lab: &str, host: &str, command: Vec<String>) -> anyhow::Result<ExitCode> {
    use std::io::IsTerminal;
    lab::check_privileges()?;
    let paths = lab_paths(lab)?;
    let state = LabState::load(&paths).map_err(|e| anyhow::anyhow!("lab {lab}: {e}"))?;
    let command = if command.is_empty() {
        vec!["bash".to_string()]
    } else {
        command
    };
    let elsewhere = state.remotes.iter().find(|r| r.hosts.iter().any(|h| h == host));
    let mut child = match elsewhere {
        // A host on another machine of a spread lab: `lab exec` there, over SSH.
        Some(remote) => {
            let mut args = vec!["exec", paths.lab(), host, "--"];
            args.extend(command.iter().map(String::as_str));
            let terminal = io::stdin().is_terminal() && io::stdout().is_terminal();
            remote.ssh.lab(&args, terminal).spawn()?
        }
        None => crate::process::HostCommand::for_recorded_host(&state, &paths, host)?
            .command(&command[0])?
            .args(&command[1..])
            .spawn()
            .map_err(|e| anyhow::anyhow!("{}: {e}", command[0]))?,
    };
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
