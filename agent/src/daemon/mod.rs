//! The daemon around the sans-IO core: one loop on one thread waits on the VRRP sockets and a signalfd with the
//! earliest timer any machine asked for, feeds machines what arrived and the time, and carries out their actions.

mod metrics;
mod notify;
mod output;
mod pidfile;
mod queue;
mod systemd;
mod track;

use std::io;
use std::net::Ipv4Addr;
use std::os::fd::AsFd;
use std::time::Duration;

use anyhow::{bail, Context};
use nix::poll::{ppoll, PollFd, PollFlags};
use nix::sys::signal::{SigSet, SigmaskHow, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::time::TimeSpec;
use nix::sys::timerfd::{ClockId, Expiration, TimerFd, TimerFlags, TimerSetTimeFlags};
use serde_json::json;

pub use output::{open_for_writing, Destinations, LogTo, Output};
pub use pidfile::PidFile;

use crate::config::{Config, Instance, SyncGroup, VirtualAddress};
use crate::io::arp::GarpSender;
use crate::io::monotonic_now;
use crate::io::netlink::{Interface, LinkMonitor, Netlink};
use crate::io::raw::VrrpSocket;
use crate::machine::{Action, Machine, Notify, Reason, Received, State};
use crate::wire::ipv4;

/// One configured instance and the kernel objects it drives.
struct Running {
    config: Instance,
    machine: Machine,
    interface: Interface,
    socket: VrrpSocket,
    /// Each virtual address with the interface it goes on (its `dev`, else the instance's) and the index of
    /// the gratuitous-ARP sender for that interface.
    addresses: Vec<(VirtualAddress, u32, usize)>,
    garps: Vec<GarpSender>,
    counters: metrics::Counters,
}

/// What the daemon serves besides VRRP.
#[derive(Debug, Default, Clone)]
pub struct Extras {
    /// `--metrics ADDR`: Prometheus text.
    pub metrics: Option<String>,
    /// Where SIGUSR1 writes the state dump (keepalived: /tmp/keepalived.data).
    pub dump_file: Option<std::path::PathBuf>,
    /// The configuration file SIGHUP reloads, and how strictly.
    pub reload_from: Option<(std::path::PathBuf, crate::config::Options)>,
}

pub struct Daemon {
    instances: Vec<Running>,
    netlink: Netlink,
    output: Output,
    scripts: notify::Scripts,
    signals: SignalFd,
    /// Armed at the earliest machine timer, as an absolute CLOCK_MONOTONIC time. poll/select timeouts get 0.1 %
    /// of their length as slack from the kernel (3.6 ms on a Master_Down_Interval); a timerfd gets 50 us.
    timer: TimerFd,
    tracker: track::Tracker,
    links: LinkMonitor,
    metrics: Option<metrics::MetricsServer>,
    dump_file: Option<std::path::PathBuf>,
    reload_from: Option<(std::path::PathBuf, crate::config::Options)>,
    reloads: Reloads,
    /// The notify FIFOs the outputs were opened with (a reload cannot move them).
    notify_fifos: Vec<crate::config::NotifyFifo>,
    /// global_defs' `router_id`, which names the machine in the state dump (keepalived: also in mail and SNMP).
    router_id: Option<String>,
    /// Tells systemd when the daemon is ready, reloading or stopping (`Type=notify`).
    systemd: systemd::Notifier,
    groups: Vec<SyncGroup>,
    /// Each group's state as its scripts were last told (None: not told yet, or its members disagree).
    group_states: Vec<Option<State>>,
    /// Members that changed state on their own since the groups were last synced.
    sync_pending: Vec<(String, State)>,
}

/// Blocks the signals the loop reads from its signalfd, and returns them. Call it before any thread starts (the
/// outputs' writers, the metrics server): threads inherit the mask, and a thread that left SIGTERM unblocked would
/// take it and die with the process, addresses still in place.
pub fn block_signals() -> nix::Result<SigSet> {
    let mut mask = SigSet::empty();
    for signal in [
        Signal::SIGTERM,
        Signal::SIGINT,
        Signal::SIGHUP,
        Signal::SIGUSR1,
        Signal::SIGCHLD,
        Signal::SIGUSR2,
    ] {
        mask.add(signal);
    }
    nix::sys::signal::sigprocmask(SigmaskHow::SIG_BLOCK, Some(&mask), None)?;
    Ok(mask)
}

/// Where the instances' sockets start in the poll set (after the signalfd, the timerfd, the link monitor and the
/// reload wake-up).
const FIRST_SOCKET: usize = 4;

/// Configurations read for SIGHUP on a thread of their own: reading files and looking users up (NSS may ask a
/// directory server) must not hold up the protocol loop. The thread hands its result over and wakes the loop.
struct Reloads {
    wake: std::sync::Arc<nix::sys::eventfd::EventFd>,
    sender: std::sync::mpsc::Sender<Result<(crate::config::Loaded, notify::Users), crate::config::ConfigError>>,
    results: std::sync::mpsc::Receiver<Result<(crate::config::Loaded, notify::Users), crate::config::ConfigError>>,
    reading: bool,
    /// A SIGHUP came while a reading was under way: read again once it is done, the file may have changed since.
    again: bool,
}

impl Reloads {
    fn new() -> nix::Result<Reloads> {
        use nix::sys::eventfd::{EfdFlags, EventFd};
        let wake = EventFd::from_value_and_flags(0, EfdFlags::EFD_NONBLOCK | EfdFlags::EFD_CLOEXEC)?;
        let (sender, results) = std::sync::mpsc::channel();
        Ok(Reloads {
            wake: std::sync::Arc::new(wake),
            sender,
            results,
            reading: false,
            again: false,
        })
    }
}

/// Packets read from one socket per wakeup.
const RECEIVE_BATCH: usize = 64;

/// Why the loop ended.
pub enum Exit {
    Terminated,
}

impl Daemon {
    /// Opens every instance's sockets. Signals are blocked here and read from a signalfd in the loop.
    pub fn new(config: &Config, output: Output, extras: Extras) -> anyhow::Result<Daemon> {
        let mask = block_signals().context("blocking signals")?;
        let signals = SignalFd::with_flags(&mask, SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC)?;
        let mut netlink = Netlink::open().context("opening a netlink socket")?;
        let mut instances = Vec::new();
        for instance in &config.instances {
            instances.push(open_instance(instance, &mut netlink)?);
        }
        if instances.is_empty() {
            bail!("no vrrp_instance in the configuration");
        }
        let timer = TimerFd::new(
            ClockId::CLOCK_MONOTONIC,
            TimerFlags::TFD_NONBLOCK | TimerFlags::TFD_CLOEXEC,
        )?;
        let links = LinkMonitor::open().context("opening a netlink link monitor")?;
        let users = notify::look_up_users(config);
        let mut tracker = track::Tracker::new(config, monotonic_now(), users.clone());
        for interface in netlink.interfaces()? {
            tracker.links.insert(interface.name, interface.running);
        }
        let metrics = match &extras.metrics {
            Some(address) => {
                Some(metrics::MetricsServer::start(address).with_context(|| format!("--metrics {address}"))?)
            }
            None => None,
        };
        let mut output = output;
        if let Some(server) = &metrics {
            output.text(&format!("Serving metrics on http://{}/metrics", server.address));
        }
        let mut scripts = notify::Scripts::new(config.global.script_user.clone(), users);
        for fifo in &config.global.notify_fifos {
            if let Some(command) = &fifo.script {
                scripts
                    .start_fifo_reader(command, &fifo.path)
                    .with_context(|| format!("{}_script", fifo.keyword))?;
            }
        }
        Ok(Daemon {
            instances,
            netlink,
            output,
            scripts,
            reloads: Reloads::new().context("an eventfd for reloads")?,
            notify_fifos: config.global.notify_fifos.clone(),
            router_id: config.global.router_id.clone(),
            systemd: systemd::Notifier::from_environment(),
            signals,
            timer,
            tracker,
            links,
            metrics,
            dump_file: extras.dump_file,
            reload_from: extras.reload_from,
            groups: config.sync_groups.clone(),
            group_states: vec![None; config.sync_groups.len()],
            sync_pending: Vec::new(),
        })
    }

    /// Runs until SIGTERM/SIGINT. Should the loop fail, masters still give up (priority 0) and the addresses are
    /// released before the error is returned.
    pub fn run(&mut self) -> anyhow::Result<Exit> {
        let result = self.run_loop();
        if let Err(error) = &result {
            self.output.text(&format!("{error:#}"));
            self.shutdown();
        }
        result
    }

    /// Before exit: lets the outputs drain for at most `patience` (a reader that never comes back is left behind).
    pub fn finish(&mut self, patience: Duration) {
        self.output.finish(patience);
        self.scripts.stop_readers(patience);
    }

    fn run_loop(&mut self) -> anyhow::Result<Exit> {
        if let Some(delay) = self.instances.first().map(|running| running.config.startup_delay) {
            if !delay.is_zero() {
                self.output
                    .text(&format!("Delaying startup for {} seconds", delay.as_secs_f64()));
            }
        }
        let now = monotonic_now();
        for index in 0..self.instances.len() {
            self.start_instance(index, now);
        }
        self.publish_metrics();
        self.systemd.send("READY=1");
        let mut buffer = vec![0u8; 65536];
        loop {
            let machines = self
                .instances
                .iter()
                .filter_map(|running| running.machine.poll_timeout());
            match machines.chain(self.tracker.next_deadline()).min() {
                // A deadline already past still arms the timer (absolute time 0 would disarm it).
                Some(at) => self.timer.set(
                    Expiration::OneShot(TimeSpec::from(at.max(Duration::from_nanos(1)))),
                    TimerSetTimeFlags::TFD_TIMER_ABSTIME,
                )?,
                None => self.timer.unset()?,
            }
            let ready: Vec<bool> = {
                let mut fds = vec![
                    PollFd::new(self.signals.as_fd(), PollFlags::POLLIN),
                    PollFd::new(self.timer.as_fd(), PollFlags::POLLIN),
                    PollFd::new(self.links.as_fd(), PollFlags::POLLIN),
                    PollFd::new(self.reloads.wake.as_fd(), PollFlags::POLLIN),
                ];
                for running in &self.instances {
                    fds.push(PollFd::new(running.socket.as_fd(), PollFlags::POLLIN));
                }
                match ppoll(&mut fds, None, None) {
                    Ok(_) | Err(nix::errno::Errno::EINTR) => {}
                    Err(error) => return Err(error).context("waiting for packets"),
                }
                fds.iter()
                    .map(|fd| fd.revents().is_some_and(|events| !events.is_empty()))
                    .collect()
            };
            if ready[0] {
                if let Some(exit) = self.handle_signals()? {
                    return Ok(exit);
                }
            }
            if ready[3] {
                self.finish_reload();
            }
            // A reload may have changed the instances: only those that were polled are read.
            for index in 0..self.instances.len() {
                if ready.get(index + FIRST_SOCKET).copied().unwrap_or(false) {
                    self.receive(index, &mut buffer);
                }
            }
            let now = monotonic_now();
            for index in 0..self.instances.len() {
                while let Some(at) = self.instances[index].machine.poll_timeout().filter(|at| *at <= now) {
                    self.instances[index].machine.handle_timeout(at.max(now));
                    self.carry_out(index, now);
                }
            }
            if ready[2] {
                let (mut updates, overrun) = self.links.read();
                if overrun {
                    // Events were lost: take the whole picture again.
                    updates = self.netlink.interfaces().unwrap_or_default();
                }
                for interface in updates {
                    let before = self.tracker.links.insert(interface.name.clone(), interface.running);
                    if before != Some(interface.running) {
                        let state = if interface.running { "up" } else { "down" };
                        self.output.text(&format!("Netlink reports {} {state}", interface.name));
                    }
                }
            }
            for (name, verdict) in self.tracker.poll(now) {
                let line = match verdict {
                    track::Verdict::Succeeded => format!("VRRP_Script({name}) succeeded"),
                    track::Verdict::Failed(Some(code)) => {
                        format!("VRRP_Script({name}) failed (exited with status {code})")
                    }
                    track::Verdict::Failed(None) => format!("VRRP_Script({name}) failed"),
                    track::Verdict::TimedOut => format!("VRRP_Script({name}) timed_out"),
                };
                self.output.text(&line);
            }
            self.apply_tracking(now);
            self.publish_metrics();
        }
    }

    /// A sync group's own scripts and FIFO line run when all its members have reached a state together (any
    /// member's fault is the group's).
    fn notify_groups(&mut self) {
        for index in 0..self.groups.len() {
            let group = &self.groups[index];
            let states: Vec<State> = self
                .instances
                .iter()
                .filter(|running| group.members.contains(&running.config.name))
                .map(|running| running.machine.state())
                .collect();
            let state = if states.contains(&State::Fault) {
                State::Fault
            } else if let Some(first) = states.first().filter(|first| states.iter().all(|s| s == *first)) {
                *first
            } else {
                continue;
            };
            let kind = match state {
                State::Master => Notify::Master,
                State::Backup => Notify::Backup,
                State::Fault => Notify::Fault,
                State::Initialize => continue,
            };
            if self.group_states[index] != Some(state) {
                self.group_states[index] = Some(state);
                self.notify_group(index, kind);
            }
        }
    }

    fn notify_group(&mut self, index: usize, kind: Notify) {
        let group = &self.groups[index];
        let who = notify::Who::Group(&group.name);
        self.output.notify_fifo(&notify::fifo_line(who, kind, 0));
        for error in self.scripts.notify(&group.notify, who, kind, 0) {
            self.output.text(&format!("VRRP_Group({}) {error}", group.name));
        }
    }

    /// Hands the current tracking verdicts to every machine (no-ops when nothing changed).
    /// Tracking first, so an instance whose interface is down starts in FAULT, as keepalived's does.
    fn start_instance(&mut self, index: usize, now: Duration) {
        let (offset, faulty) = self.tracker.effect(&self.instances[index].config);
        self.instances[index].machine.set_priority_offset(now, offset);
        self.instances[index].machine.set_fault(now, faulty);
        self.instances[index].machine.startup(now);
        self.carry_out(index, now);
    }

    fn apply_tracking(&mut self, now: Duration) {
        let effects: Vec<(i32, bool)> = self
            .instances
            .iter()
            .map(|running| self.tracker.effect(&running.config))
            .collect();
        for index in 0..self.instances.len() {
            let (offset, mut faulty) = effects[index];
            // In a sync group, one member's fault is every member's.
            let name = &self.instances[index].config.name;
            for group in self.groups.iter().filter(|group| group.members.contains(name)) {
                faulty |= self
                    .instances
                    .iter()
                    .zip(&effects)
                    .any(|(other, (_, other_faulty))| *other_faulty && group.members.contains(&other.config.name));
            }
            self.instances[index].machine.set_priority_offset(now, offset);
            self.instances[index].machine.set_fault(now, faulty);
            self.carry_out(index, now);
        }
        self.sync_groups(now);
    }

    /// keepalived's vrrp_sync_group: when a member becomes MASTER or BACKUP by itself, the others follow.
    fn sync_groups(&mut self, now: Duration) {
        let pending: Vec<(String, State)> = self.sync_pending.drain(..).collect();
        for (name, state) in pending {
            // Only a member still in that state leads (a later change may have overtaken this one).
            if !self
                .instances
                .iter()
                .any(|running| running.config.name == name && running.machine.state() == state)
            {
                continue;
            }
            let groups: Vec<SyncGroup> = self
                .groups
                .iter()
                .filter(|group| group.members.contains(&name))
                .cloned()
                .collect();
            for group in groups {
                let followers: Vec<usize> = (0..self.instances.len())
                    .filter(|index| {
                        let running = &self.instances[*index];
                        running.config.name != name
                            && group.members.contains(&running.config.name)
                            && running.machine.state() != state
                            && matches!(running.machine.state(), State::Master | State::Backup)
                    })
                    .collect();
                if followers.is_empty() {
                    continue;
                }
                self.output.text(&format!(
                    "VRRP_Group({}) Syncing instances to {} state",
                    group.name,
                    state.name()
                ));
                for index in followers {
                    self.instances[index].machine.sync_to(now, state);
                    self.carry_out(index, now);
                }
            }
        }
    }

    fn publish_metrics(&self) {
        let Some(server) = &self.metrics else { return };
        let snapshots: Vec<metrics::Snapshot<'_>> = self
            .instances
            .iter()
            .map(|running| metrics::Snapshot {
                name: &running.config.name,
                state: running.machine.state(),
                priority: running.machine.effective_priority(),
                counters: &running.counters,
            })
            .collect();
        let dropped: Vec<(&str, u64)> = self
            .output
            .dropped()
            .into_iter()
            .map(|(output, dropped)| (output, dropped.total()))
            .collect();
        server.update(metrics::render(&snapshots, &dropped));
    }

    fn handle_signals(&mut self) -> anyhow::Result<Option<Exit>> {
        while let Some(info) = self.signals.read_signal()? {
            match Signal::try_from(info.ssi_signo as i32) {
                Ok(Signal::SIGTERM | Signal::SIGINT) => {
                    self.shutdown();
                    return Ok(Some(Exit::Terminated));
                }
                Ok(Signal::SIGCHLD) => self.scripts.reap(),
                Ok(Signal::SIGUSR1) => self.dump(),
                // keepalived's statistics dump: the same state dump here (and never the default, which would kill
                // the daemon with its addresses still in place).
                Ok(Signal::SIGUSR2) => self.dump(),
                Ok(Signal::SIGHUP) => self.start_reload(),
                _ => {}
            }
        }
        Ok(None)
    }

    /// SIGHUP: reads the configuration again. Instances whose configuration is unchanged keep running untouched (a
    /// master stays master); changed or removed ones stop as on SIGTERM; new or changed ones start. A
    /// configuration with errors is refused and everything keeps running.
    fn start_reload(&mut self) {
        let Some((path, options)) = self.reload_from.clone() else {
            return;
        };
        if self.reloads.reading {
            self.reloads.again = true;
            return;
        }
        self.output.text("Reloading");
        self.systemd.reloading();
        let (sender, wake) = (self.reloads.sender.clone(), self.reloads.wake.clone());
        let started = std::thread::Builder::new().name("reload".into()).spawn(move || {
            let read = crate::config::load(&path, options).map(|loaded| {
                let users = notify::look_up_users(&loaded.config);
                (loaded, users)
            });
            let _ = sender.send(read);
            let _ = wake.write(1);
        });
        match started {
            Ok(_) => self.reloads.reading = true,
            Err(error) => self
                .output
                .text(&format!("Reload refused: cannot start reading: {error}")),
        }
    }

    /// Applies what the reload thread read, and starts another reading if SIGHUP came meanwhile.
    fn finish_reload(&mut self) {
        let _ = self.reloads.wake.read();
        while let Ok(result) = self.reloads.results.try_recv() {
            self.reloads.reading = false;
            self.reload(result);
            self.systemd.send("READY=1");
        }
        if std::mem::take(&mut self.reloads.again) {
            self.start_reload();
        }
    }

    fn reload(&mut self, result: Result<(crate::config::Loaded, notify::Users), crate::config::ConfigError>) {
        let (loaded, users) = match result {
            Ok(read) => read,
            Err(error) => {
                for diagnostic in &error.diagnostics {
                    self.output.text(&format!("Reload refused: {diagnostic}"));
                }
                return;
            }
        };
        for warning in &loaded.warnings {
            self.output.text(&warning.to_string());
        }
        let now = monotonic_now();
        // Open every new or changed instance first: one that cannot start leaves the running one in place.
        let mut opened = Vec::new();
        for instance in &loaded.config.instances {
            let current = self
                .instances
                .iter()
                .find(|running| running.config.name == instance.name);
            if current.is_some_and(|running| instance.same_as(&running.config)) {
                continue;
            }
            // keepalived delays only the first start.
            let instance = &Instance {
                startup_delay: Duration::ZERO,
                ..instance.clone()
            };
            match open_instance(instance, &mut self.netlink) {
                Ok(running) => opened.push(running),
                Err(error) => self
                    .output
                    .text(&format!("Reload: {error:#}; keeping the running configuration")),
            }
        }
        let retire: Vec<bool> = self
            .instances
            .iter()
            .map(|running| {
                let replaced = opened.iter().any(|new| new.config.name == running.config.name);
                replaced || loaded.config.instance(&running.config.name).is_none()
            })
            .collect();
        for (index, retire) in retire.iter().enumerate() {
            if *retire {
                self.instances[index].machine.shutdown(now);
                self.carry_out(index, now);
            }
        }
        let mut retire = retire.into_iter();
        self.instances.retain(|_| !retire.next().unwrap_or(false));
        let previous = std::mem::take(&mut self.tracker);
        self.tracker = track::Tracker::new(&loaded.config, now, users.clone());
        self.tracker.carry_over(previous);
        // A group that keeps its name keeps what its scripts were last told.
        self.group_states = loaded
            .config
            .sync_groups
            .iter()
            .map(|group| {
                let index = self.groups.iter().position(|old| old.name == group.name)?;
                self.group_states[index]
            })
            .collect();
        self.groups = loaded.config.sync_groups.clone();
        let fifos = |list: &[crate::config::NotifyFifo]| -> Vec<_> {
            list.iter()
                .map(|fifo| {
                    let script = fifo
                        .script
                        .as_ref()
                        .map(|command| (command.line.clone(), command.user.clone()));
                    (fifo.keyword, fifo.path.clone(), fifo.owner.clone(), script)
                })
                .collect()
        };
        if fifos(&loaded.config.global.notify_fifos) != fifos(&self.notify_fifos) {
            self.output
                .text("Reload: notify FIFO changes are not applied: they take effect when vrrpd restarts");
        }
        self.scripts.default_user = loaded.config.global.script_user.clone();
        self.scripts.users = users;
        self.router_id = loaded.config.global.router_id.clone();
        for running in opened {
            self.instances.push(running);
            self.start_instance(self.instances.len() - 1, now);
        }
        self.publish_metrics();
    }

    /// A master sends priority 0 and releases its addresses; every instance runs notify_stop.
    fn shutdown(&mut self) {
        self.systemd.send("STOPPING=1");
        self.output.text("Stopping");
        let now = monotonic_now();
        for index in 0..self.instances.len() {
            self.instances[index].machine.shutdown(now);
            self.carry_out(index, now);
        }
        // Every group, as keepalived does.
        for index in 0..self.groups.len() {
            self.notify_group(index, Notify::Stop);
        }
        self.tracker.kill_all();
        self.scripts.finish(Duration::from_secs(1));
        self.output
            .text(&format!("Stopped vrrpd {}", env!("CARGO_PKG_VERSION")));
    }

    /// SIGUSR1: the instances' state, in the spirit of keepalived's /tmp/keepalived.data, to the dump file
    /// (or the log when none was given).
    fn dump(&mut self) {
        let mut text = String::new();
        if let Some(router_id) = &self.router_id {
            text.push_str(&format!(
                "------< Global definitions >------\n Router ID = {router_id}\n"
            ));
        }
        text.push_str("------< VRRP Topology >------\n");
        for running in &self.instances {
            let machine = &running.machine;
            let settings = machine.settings();
            text.push_str(&format!(
                " VRRP Instance = {}\n   State = {}\n   Interface = {}\n   Virtual Router ID = {}\n   Priority = {}\n   \
                 Effective priority = {}\n   Advert interval = {:?}\n   Master down interval = {:?}\n   \
                 Master = {}\n   Adverts sent = {}, received = {}\n",
                running.config.name,
                machine.state().name(),
                running.interface.name,
                settings.vrid,
                settings.priority,
                machine.effective_priority(),
                settings.advert_interval,
                machine.master_down_interval(),
                machine.master_address().map_or("unknown".to_string(), |address| address.to_string()),
                running.counters.adverts_sent,
                running.counters.adverts_received,
            ));
        }
        match &self.dump_file {
            Some(path) => {
                if let Err(error) = write_dump(path, &text) {
                    self.output.text(&format!("cannot write the state dump: {error}"));
                }
            }
            None => text.lines().for_each(|line| self.output.text(line)),
        }
    }

    /// Reads at most a batch of packets per wakeup, so a flood cannot keep the loop from its timers (poll is
    /// level-triggered: the rest are read next time round).
    fn receive(&mut self, index: usize, buffer: &mut [u8]) {
        for _ in 0..RECEIVE_BATCH {
            let length = match self.instances[index].socket.receive(buffer) {
                Ok(Some(length)) => length,
                Ok(None) => return,
                Err(error) => {
                    self.output.text(&format!(
                        "({}) receive error: {error}",
                        self.instances[index].config.name
                    ));
                    return;
                }
            };
            let now = monotonic_now();
            let Ok(packet) = ipv4::Packet::new_checked(&buffer[..length]) else {
                continue;
            };
            let running = &mut self.instances[index];
            if packet.src() == running.machine.settings().source {
                continue;
            }
            let received = Received {
                src: packet.src(),
                dst: packet.dst(),
                ttl: packet.ttl(),
                payload: packet.payload(),
            };
            running.machine.receive(now, received);
            self.carry_out(index, now);
        }
    }

    /// Carries out every pending action of one instance, in order.
    fn carry_out(&mut self, index: usize, now: Duration) {
        let mut state_changed = false;
        while let Some(action) = self.instances[index].machine.poll_action() {
            let running = &mut self.instances[index];
            let name = running.config.name.clone();
            match action {
                Action::Send(packet) => {
                    if let Err(error) = running.socket.send(&packet) {
                        self.output
                            .text(&format!("({name}) Cant send advert to {} ({error})", packet.dst));
                    } else {
                        running.counters.adverts_sent += 1;
                        let fields = json!({ "to": packet.dst, "priority": packet.priority });
                        self.output.event(now, &name, "advert_sent", fields);
                    }
                }
                Action::AddAddresses => {
                    for (vip, index, _) in &running.addresses {
                        let result = self.netlink.add_address(*index, vip);
                        report(&mut self.output, now, &name, "vip_added", vip.address, result);
                    }
                }
                Action::RemoveAddresses => {
                    for (vip, index, _) in &running.addresses {
                        let result = self.netlink.delete_address(*index, vip);
                        report(&mut self.output, now, &name, "vip_removed", vip.address, result);
                    }
                }
                Action::GratuitousArp { repeat } => {
                    for (vip, _, sender) in &running.addresses {
                        let garp = &mut running.garps[*sender];
                        let mut sent = 0;
                        for _ in 0..repeat {
                            match garp.send(vip.address) {
                                Ok(()) => sent += 1,
                                Err(error) => {
                                    self.output
                                        .text(&format!("({name}) gratuitous ARP for {} failed: {error}", vip.address));
                                    break;
                                }
                            }
                        }
                        let mac = garp.mac().map(|b| format!("{b:02x}")).join(":");
                        let fields = json!({ "address": vip.address, "count": sent, "mac": mac });
                        self.output.event(now, &name, "garp", fields);
                    }
                }
                Action::Notify { kind, priority } => {
                    let who = notify::Who::Instance(&name);
                    self.output.notify_fifo(&notify::fifo_line(who, kind, priority));
                    for error in self.scripts.notify(&running.config.notify, who, kind, priority) {
                        self.output.text(&format!("({name}) {error}"));
                    }
                }
                Action::StateChanged { from, to, reason } => {
                    state_changed = true;
                    *running
                        .counters
                        .transitions
                        .entry((from.name(), to.name()))
                        .or_default() += 1;
                    self.output
                        .event(now, &name, "state", output::state_fields(from, to, reason));
                    if !matches!(reason, Reason::Sync | Reason::Startup) && matches!(to, State::Master | State::Backup)
                    {
                        self.sync_pending.push((name.clone(), to));
                    }
                }
                Action::Accepted { from, priority } => {
                    running.counters.adverts_received += 1;
                    self.output.event(
                        now,
                        &name,
                        "advert_received",
                        json!({ "from": from, "priority": priority }),
                    );
                }
                Action::Discarded { from, reason } => {
                    *running.counters.discards.entry(reason.name()).or_default() += 1;
                    self.output
                        .event(now, &name, "discard", output::discard_fields(from, &reason));
                }
                Action::Log(line) => self.output.line(&line),
            }
        }
        if state_changed {
            self.notify_groups();
        }
    }
}

fn report(output: &mut Output, now: Duration, name: &str, kind: &str, address: Ipv4Addr, result: io::Result<()>) {
    match result {
        Ok(()) => output.event(now, name, kind, json!({ "address": address })),
        Err(error) => output.text(&format!(
            "({name}) {kind} {address} failed: {}",
            explain(&error, "CAP_NET_ADMIN")
        )),
    }
}

/// Whether `path` leads to `file` now (not to something put in its place since): what the daemon made or locked is
/// removed only while its name is still its own.
fn names(path: &std::path::Path, file: &std::fs::File) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (file.metadata(), std::fs::symlink_metadata(path)) {
        (Ok(ours), Ok(named)) => ours.dev() == named.dev() && ours.ino() == named.ino(),
        _ => false,
    }
}

/// The dump goes to a regular file only: the loop writes it itself, and a FIFO or a device could block it.
fn write_dump(path: &std::path::Path, text: &str) -> io::Result<()> {
    use std::io::Write;
    let mut file = open_for_writing(path, true)?;
    if !file.metadata()?.is_file() {
        return Err(io::Error::other(format!("{}: not a regular file", path.display())));
    }
    file.write_all(text.as_bytes())
}

/// Names the capability an EPERM is about.
pub fn explain(error: &io::Error, capability: &str) -> String {
    if error.raw_os_error() == Some(libc::EPERM) {
        format!("{error} (this needs {capability})")
    } else {
        error.to_string()
    }
}

fn open_instance(instance: &Instance, netlink: &mut Netlink) -> anyhow::Result<Running> {
    let name = &instance.name;
    let Some(interface_name) = &instance.interface else {
        bail!("({name}) no interface: this agent needs `interface` even with unicast peers");
    };
    let interface = netlink
        .interface(interface_name)
        .with_context(|| format!("({name}) interface {interface_name}"))?;
    let vips: Vec<Ipv4Addr> = instance
        .virtual_addresses
        .iter()
        .chain(&instance.virtual_addresses_excluded)
        .map(|vip| vip.address)
        .collect();
    let primary = netlink.primary_address(interface.index, &vips)?;
    let settings = instance.settings(primary).map_err(anyhow::Error::msg)?;
    let group = Some(instance.multicast_group).filter(|_| instance.unicast_peers.is_empty());
    let socket = VrrpSocket::open(interface_name, interface.index, group)
        .map_err(|error| anyhow::anyhow!("({name}) opening the VRRP socket: {}", explain(&error, "CAP_NET_RAW")))?;
    let mut garps: Vec<(String, GarpSender)> = Vec::new();
    let mut addresses = Vec::new();
    for vip in instance
        .virtual_addresses
        .iter()
        .chain(&instance.virtual_addresses_excluded)
    {
        let dev = vip.dev.as_deref().unwrap_or(interface_name);
        let index = if dev == interface_name {
            interface.index
        } else {
            netlink
                .interface(dev)
                .with_context(|| format!("({name}) virtual_ipaddress {} dev {dev}", vip.address))?
                .index
        };
        let sender = match garps.iter().position(|(open, _)| open == dev) {
            Some(position) => position,
            None => {
                let target = if dev == interface_name {
                    interface.clone()
                } else {
                    netlink.interface(dev)?
                };
                let garp = GarpSender::open(&target).map_err(|error| {
                    anyhow::anyhow!(
                        "({name}) opening a packet socket for ARP on {dev}: {}",
                        explain(&error, "CAP_NET_RAW")
                    )
                })?;
                garps.push((dev.to_string(), garp));
                garps.len() - 1
            }
        };
        addresses.push((vip.clone(), index, sender));
    }
    Ok(Running {
        counters: metrics::Counters::default(),
        config: instance.clone(),
        machine: Machine::new(settings),
        interface,
        socket,
        addresses,
        garps: garps.into_iter().map(|(_, garp)| garp).collect(),
    })
}
