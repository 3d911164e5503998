//! The two-host lab the impairment tests and benchmark measure through, and what they measure with.

use std::net::{SocketAddr, UdpSocket};

use lab::impair::BackendChoice;
use lab::net::netns;
use lab::{Fault, Lab, Topology};

use crate::unique_name;

pub const A: &str = "10.9.0.1";
pub const B: &str = "10.9.0.2";

/// Hosts a (A) and b (B) on one segment, with `segment_extra` added to the segment's table, impaired by `backend`.
pub fn pair(prefix: &str, backend: BackendChoice, segment_extra: &str) -> Lab {
    let text = format!(
        r#"
name = "pair"

[[segments]]
name = "lan"
subnet = "10.9.0.0/24"
{segment_extra}

[[hosts]]
name = "a"
interfaces = [{{ segment = "lan", address = "{A}/24" }}]

[[hosts]]
name = "b"
interfaces = [{{ segment = "lan", address = "{B}/24" }}]
"#
    );
    let mut topology = Topology::parse(&text, "pair.toml")
        .unwrap()
        .renamed(&unique_name(prefix))
        .unwrap();
    topology.impair_backend = backend;
    Lab::up(&topology).unwrap()
}

/// Injects a fault given as `lab fault` words; panics with the lab's reason if it is refused.
pub fn fault(lab: &mut Lab, host: &str, words: &str) {
    let words: Vec<String> = words.split_whitespace().map(str::to_string).collect();
    let fault = Fault::parse(&words).unwrap();
    lab.fault(host, &fault).unwrap_or_else(|e| panic!("{e}"));
}

/// A UDP socket in `host`, bound to `address` (port 0: any), with a receive buffer of 8 MiB: a reading thread
/// held off the CPU for a moment by the labs running beside it must not turn into datagrams lost at the socket,
/// counted against the link.
pub fn udp_in(lab: &Lab, host: &str, address: &str) -> UdpSocket {
    let address: SocketAddr = address.parse().unwrap();
    let socket = netns::run_in(lab.netns_path(host).unwrap(), move || UdpSocket::bind(address)).unwrap();
    let size: libc::c_int = 8 << 20;
    // SAFETY: an int option from a live local on a socket we own; root may exceed rmem_max (SO_RCVBUFFORCE).
    let set = unsafe {
        libc::setsockopt(
            std::os::fd::AsRawFd::as_raw_fd(&socket),
            libc::SOL_SOCKET,
            libc::SO_RCVBUFFORCE,
            (&size as *const libc::c_int).cast(),
            size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    assert_eq!(set, 0, "SO_RCVBUFFORCE: {}", std::io::Error::last_os_error());
    socket
}

/// Whether this kernel has netem, asked as the lab asks (`lab::impair::netem::available`), in a namespace of its own
/// (never the machine's).
pub fn kernel_has_netem() -> bool {
    let name = unique_name("probe");
    let ip = |args: &[&str]| {
        std::process::Command::new("ip")
            .args(args)
            .status()
            .is_ok_and(|s| s.success())
    };
    assert!(ip(&["netns", "add", &name]), "ip netns add {name}");
    let namespace = std::path::Path::new("/run/netns").join(&name);
    let has = ip(&["-n", &name, "link", "set", "lo", "up"])
        && lab::process::HostCommand::new(&namespace).is_ok_and(|host| lab::impair::netem::available(&host).is_ok());
    assert!(ip(&["netns", "del", &name]), "ip netns del {name}");
    has
}
