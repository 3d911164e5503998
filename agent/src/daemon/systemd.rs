//! systemd's readiness protocol (sd_notify(3)), for `Type=notify` units: one datagram per state to the socket named
//! in `$NOTIFY_SOCKET` (a path, or `@` for an abstract name). Sent without waiting: systemd not reading must not
//! hold up the loop. Without the variable (not started by systemd) nothing is sent.

use std::os::linux::net::SocketAddrExt;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};

pub struct Notifier {
    socket: Option<(UnixDatagram, SocketAddr)>,
}

impl Notifier {
    pub fn from_environment() -> Notifier {
        let socket = std::env::var_os("NOTIFY_SOCKET").and_then(|name| {
            let name = name.into_encoded_bytes();
            let address = match name.strip_prefix(b"@") {
                Some(abstract_name) => <SocketAddr as SocketAddrExt>::from_abstract_name(abstract_name).ok()?,
                None => SocketAddr::from_pathname(std::ffi::OsStr::from_bytes(&name)).ok()?,
            };
            let socket = UnixDatagram::unbound().ok()?;
            socket.set_nonblocking(true).ok()?;
            Some((socket, address))
        });
        Notifier { socket }
    }

    /// `READY=1`, `RELOADING=1`, `STOPPING=1`, `STATUS=...`; lines joined with newlines.
    pub fn send(&self, state: &str) {
        if let Some((socket, address)) = &self.socket {
            let _ = socket.send_to_addr(state.as_bytes(), address);
        }
    }

    /// RELOADING with the CLOCK_MONOTONIC time systemd wants beside it (`Type=notify-reload`).
    pub fn reloading(&self) {
        let now = crate::io::monotonic_now();
        self.send(&format!("RELOADING=1\nMONOTONIC_USEC={}", now.as_micros()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_reach_the_socket_systemd_names() {
        let dir = std::env::temp_dir().join(format!("sd-notify-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("notify.sock");
        let systemd = UnixDatagram::bind(&path).unwrap();
        let notifier = Notifier {
            socket: Some((
                UnixDatagram::unbound().unwrap(),
                SocketAddr::from_pathname(&path).unwrap(),
            )),
        };
        notifier.send("READY=1");
        let mut buffer = [0u8; 64];
        let n = systemd.recv(&mut buffer).unwrap();
        assert_eq!(&buffer[..n], b"READY=1");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
