//! Running VRRP daemons (ours or keepalived) in a lab host, for the interop tests and the failover benchmark.

use std::fs::File;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use lab::{Lab, Topology};

use crate::{seed_topology, workspace_file};

pub const VIP: &str = "10.0.0.31";

/// Which implementation runs.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Agent {
    Ours,
    Keepalived,
}

/// A VRRP daemon running in a lab host; killed (SIGKILL, a crash) when dropped.
pub struct Daemon {
    child: Child,
    log: PathBuf,
}

impl Daemon {
    pub fn start(lab: &Lab, host: &str, agent: Agent, config: &str, dir: &std::path::Path) -> Daemon {
        Daemon::start_with(lab, host, agent, config, dir, &[])
    }

    /// `config` is relative to the workspace, or absolute; `extra` goes after the usual options.
    pub fn start_with(
        lab: &Lab,
        host: &str,
        agent: Agent,
        config: &str,
        dir: &std::path::Path,
        extra: &[&str],
    ) -> Daemon {
        let config = workspace_file(config).display().to_string();
        let log = dir.join(format!("{host}.{agent:?}.log"));
        let program = match agent {
            Agent::Ours => "vrrpd",
            Agent::Keepalived => "keepalived",
        };
        let mut command = lab.command(host, program).unwrap();
        match agent {
            Agent::Ours => command.args(["-f", &config, "-l", "-G", "-D"]).args(extra),
            Agent::Keepalived => {
                let pid = dir.join(format!("{host}.pid")).display().to_string();
                let vrrp_pid = dir.join(format!("{host}.vrrp.pid")).display().to_string();
                command
                    .args(["-n", "-l", "-D", "-G", "-P", "-f", &config, "-p", &pid, "-r", &vrrp_pid])
                    .args(extra)
            }
        };
        // Appended: a restarted daemon keeps the earlier run's lines.
        let file = File::options().create(true).append(true).open(&log).unwrap();
        // Its own process group: keepalived forks its VRRP process, and a crash must take both.
        let child = command
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(file.try_clone().unwrap())
            .stderr(file)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {program} (apt-get install keepalived?): {e}"));
        Daemon { child, log }
    }

    /// Ours, with stdout and stderr going where the test says (a pipe nobody reads, say) instead of the log.
    pub fn start_ours_with_output(
        lab: &Lab,
        host: &str,
        config: &str,
        extra: &[&str],
        stdout: Stdio,
        stderr: Stdio,
    ) -> Daemon {
        let config = workspace_file(config).display().to_string();
        let child = lab
            .command(host, "vrrpd")
            .unwrap()
            .args(["-f", &config])
            .args(extra)
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr)
            .spawn()
            .unwrap();
        Daemon {
            child,
            log: PathBuf::from("/dev/null"),
        }
    }

    /// Waits at most `limit` for the daemon to exit; its status, or `None` if it is still running.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Sends `signal` to this daemon only (pkill would reach every test's daemons: lab hosts share the PID space).
    pub fn signal(&self, signal: nix::sys::signal::Signal) {
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.child.id() as i32), signal).unwrap();
    }

    /// What the daemon has written so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn crash(mut self) -> String {
        self.signal_group(nix::sys::signal::Signal::SIGKILL);
        let _ = self.child.wait();
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn stop(mut self) -> String {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
        let _ = self.child.wait();
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Daemon {
    pub fn signal_group(&self, signal: nix::sys::signal::Signal) {
        let group = nix::unistd::Pid::from_raw(-(self.child.id() as i32));
        let _ = nix::sys::signal::kill(group, signal);
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.signal_group(nix::sys::signal::Signal::SIGKILL);
        let _ = self.child.wait();
    }
}

pub fn holds_vip(lab: &Lab, host: &str) -> bool {
    holds_address(lab, host, VIP)
}

/// Whether `host` has `address` (as a /32) on its eth0 now.
pub fn holds_address(lab: &Lab, host: &str, address: &str) -> bool {
    let out = lab
        .exec(host, &["ip", "-4", "-o", "addr", "show", "dev", "eth0"])
        .unwrap();
    String::from_utf8_lossy(&out.stdout).contains(&format!("inet {address}/32"))
}

/// Waits until `host` holds the VIP, at most `bound`; returns how long it took.
pub fn wait_vip(lab: &Lab, host: &str, bound: Duration) -> Duration {
    let start = Instant::now();
    while !holds_vip(lab, host) {
        assert!(start.elapsed() < bound, "{host} did not take {VIP} within {bound:?}");
        std::thread::sleep(Duration::from_millis(10));
    }
    start.elapsed()
}

/// The seed's lab without its own VRRP services: the test starts the daemons itself.
pub fn bare_lab(prefix: &str) -> (Lab, PathBuf) {
    let mut topology: Topology = seed_topology(prefix);
    for host in &mut topology.hosts {
        host.services.clear();
    }
    let dir = std::env::temp_dir().join(format!("interop-{}", topology.name));
    std::fs::create_dir_all(&dir).unwrap();
    crate::show_in_hosts(&mut topology, &dir);
    let lab = Lab::up(&topology).unwrap();
    (lab, dir)
}

/// One VRRP advert as it arrived in a host: its IP source and destination and the addresses it announces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WireAdvert {
    pub from: std::net::Ipv4Addr,
    pub to: std::net::Ipv4Addr,
    pub priority: u8,
    pub addresses: Vec<std::net::Ipv4Addr>,
}

/// Every advert that reaches `host`'s eth0 for `duration`, with `group` joined there so that multicast adverts to
/// any group arrive whatever daemon runs in the host.
pub fn capture_adverts(lab: &Lab, host: &str, group: std::net::Ipv4Addr, duration: Duration) -> Vec<WireAdvert> {
    let path = lab.netns_path(host).unwrap().to_path_buf();
    // A thread of its own enters the namespace (sockets belong to the namespace of the thread that opens them).
    std::thread::spawn(move || {
        let namespace = File::open(&path).unwrap();
        nix::sched::setns(namespace, nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
        let socket = socket2::Socket::new(
            socket2::Domain::IPV4,
            socket2::Type::RAW,
            Some(socket2::Protocol::from(112)),
        )
        .unwrap();
        let index = nix::net::if_::if_nametoindex("eth0").unwrap();
        socket
            .join_multicast_v4_n(&group, &socket2::InterfaceIndexOrAddress::Index(index))
            .unwrap();
        socket.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
        let deadline = Instant::now() + duration;
        let mut adverts = Vec::new();
        let mut buffer = vec![0u8; 65536];
        while Instant::now() < deadline {
            let Ok(length) = std::io::Read::read(&mut &socket, &mut buffer) else {
                continue;
            };
            let Ok(ip) = agent::wire::ipv4::Packet::new_checked(&buffer[..length]) else {
                continue;
            };
            let Ok(vrrp) = agent::wire::vrrp::Packet::new_checked(ip.payload()) else {
                continue;
            };
            adverts.push(WireAdvert {
                from: ip.src(),
                to: ip.dst(),
                priority: vrrp.priority(),
                addresses: vrrp.addresses().collect(),
            });
        }
        adverts
    })
    .join()
    .unwrap()
}

/// What a host saw, stamped with CLOCK_MONOTONIC when it was read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seen {
    Advert {
        at: Duration,
        from: std::net::Ipv4Addr,
        priority: u8,
    },
    AddressAdded {
        at: Duration,
        address: std::net::Ipv4Addr,
    },
    AddressRemoved {
        at: Duration,
        address: std::net::Ipv4Addr,
    },
}

/// Watches one lab host from inside its namespace: every VRRP packet that arrives (a raw socket gets a copy
/// whatever daemon runs) and every IPv4 address added or removed (netlink), independent of what daemons log.
pub struct Observer {
    seen: std::sync::mpsc::Receiver<Seen>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Observer {
    /// Watches from inside the namespace mounted at `namespace` (`Lab::netns_path`).
    pub fn start(namespace: &std::path::Path) -> Observer {
        let (sender, seen) = std::sync::mpsc::channel();
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (ready_sender, ready) = std::sync::mpsc::channel();
        let path = namespace.to_path_buf();
        let stopping = stop.clone();
        // A thread of its own that enters the namespace and never leaves it (sockets belong to the namespace of the
        // thread that opens them).
        let thread = std::thread::spawn(move || {
            let namespace = File::open(&path).unwrap();
            nix::sched::setns(namespace, nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
            let vrrp = socket2::Socket::new(
                socket2::Domain::IPV4,
                socket2::Type::RAW,
                Some(socket2::Protocol::from(112)),
            )
            .unwrap();
            vrrp.set_nonblocking(true).unwrap();
            let mut netlink = rtnetlink::sys::Socket::new(rtnetlink::sys::protocols::NETLINK_ROUTE).unwrap();
            const RTMGRP_IPV4_IFADDR: u32 = 0x10;
            netlink
                .bind(&rtnetlink::sys::SocketAddr::new(0, RTMGRP_IPV4_IFADDR))
                .unwrap();
            netlink.set_non_blocking(true).unwrap();
            ready_sender.send(()).unwrap();
            observe(&vrrp, &mut netlink, &sender, &stopping);
        });
        ready.recv().unwrap();
        Observer {
            seen,
            stop,
            thread: Some(thread),
        }
    }

    /// Everything seen so far.
    pub fn drain(&self) -> Vec<Seen> {
        self.seen.try_iter().collect()
    }

    /// Waits up to `limit` for something matching; returns it and everything seen before it.
    pub fn wait_for(&self, limit: Duration, wanted: impl Fn(&Seen) -> bool) -> Option<(Seen, Vec<Seen>)> {
        let deadline = Instant::now() + limit;
        let mut before = Vec::new();
        loop {
            let left = deadline.checked_duration_since(Instant::now())?;
            let seen = self.seen.recv_timeout(left).ok()?;
            if wanted(&seen) {
                return Some((seen, before));
            }
            before.push(seen);
        }
    }
}

impl Drop for Observer {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

pub use agent::io::monotonic_now;

fn observe(
    vrrp: &socket2::Socket,
    netlink: &mut rtnetlink::sys::Socket,
    sender: &std::sync::mpsc::Sender<Seen>,
    stop: &std::sync::atomic::AtomicBool,
) {
    use std::os::fd::AsFd;

    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    use rtnetlink::packet_core::NetlinkPayload;
    use rtnetlink::packet_route::address::AddressAttribute;
    use rtnetlink::packet_route::RouteNetlinkMessage;

    let mut buffer = vec![0u8; 65536];
    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
        let mut fds = [
            PollFd::new(vrrp.as_fd(), PollFlags::POLLIN),
            PollFd::new(netlink.as_fd(), PollFlags::POLLIN),
        ];
        let _ = poll(&mut fds, PollTimeout::from(50u16));
        let at = monotonic_now();
        // `Read` on a socket reference fills an initialised buffer: no unsafe needed.
        while let Ok(length) = std::io::Read::read(&mut &*vrrp, &mut buffer) {
            let packet = &buffer[..length];
            let header_len = usize::from(packet[0] & 0x0f) * 4;
            if length > header_len + 2 {
                let from = std::net::Ipv4Addr::new(packet[12], packet[13], packet[14], packet[15]);
                let _ = sender.send(Seen::Advert {
                    at,
                    from,
                    priority: packet[header_len + 2],
                });
            }
        }
        while let Ok(size) = netlink.recv(&mut &mut buffer[..], 0) {
            for message in agent::io::netlink::split(&buffer[..size]).flatten() {
                let (added, attributes) = match message.payload {
                    NetlinkPayload::InnerMessage(RouteNetlinkMessage::NewAddress(a)) => (true, a.attributes),
                    NetlinkPayload::InnerMessage(RouteNetlinkMessage::DelAddress(a)) => (false, a.attributes),
                    _ => continue,
                };
                for attribute in attributes {
                    if let AddressAttribute::Local(std::net::IpAddr::V4(address)) = attribute {
                        let seen = if added {
                            Seen::AddressAdded { at, address }
                        } else {
                            Seen::AddressRemoved { at, address }
                        };
                        let _ = sender.send(seen);
                    }
                }
            }
        }
    }
}
