//! The open-file budget. Each relayed client holds two descriptors (its own and its backend's), and the proxy's
//! own checks, listeners and metrics need theirs whatever the clients do: a check that cannot reconnect because
//! clients took every descriptor would leave the proxy routing on stale evidence. So at start the soft limit is
//! raised to the hard one, a reserve is set aside, and the connection limit is what is left, halved.

use std::io;

/// What the proxy keeps for itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Needs {
    pub relay_threads: usize,
    pub frontends: usize,
    pub sentinels: usize,
    pub servers: usize,
}

impl Needs {
    /// Descriptors that are never a client's: standard streams and each runtime's own (epoll, eventfd, timer) with
    /// room to spare; a listener per frontend and relay thread, and the spare each of them keeps to close clients
    /// at once when descriptors run out; the metrics listener and its scrapes; and every check connection twice
    /// over (a check reconnecting holds its old socket for a moment).
    pub fn reserved(&self) -> u64 {
        let runtimes = self.relay_threads + 1;
        let checks = 2 * self.sentinels + self.servers + 1;
        let listeners = self.frontends * self.relay_threads;
        let total = 32 + 4 * runtimes + 2 * listeners + 17 + 2 * checks;
        total as u64
    }
}

/// The open-file limit, the soft one raised to the hard one where the kernel allows it: (limit, hard limit, why it
/// could not be raised).
pub fn raise_open_files() -> io::Result<(u64, u64, Option<io::Error>)> {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE)?;
    if soft >= hard {
        return Ok((soft, hard, None));
    }
    match setrlimit(Resource::RLIMIT_NOFILE, hard, hard) {
        Ok(()) => Ok((hard, hard, None)),
        // A hard limit above the kernel's nr_open, say: the soft limit stays, and is what the budget is made of.
        Err(error) => Ok((soft, hard, Some(error.into()))),
    }
}

/// How many clients fit in `limit` descriptors once `reserved` are set aside.
pub fn client_capacity(limit: u64, reserved: u64) -> usize {
    usize::try_from(limit.saturating_sub(reserved) / 2).unwrap_or(usize::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_seed_setup_fits_about_eighty_clients_in_256_descriptors() {
        let needs = Needs {
            relay_threads: 2,
            frontends: 1,
            sentinels: 3,
            servers: 3,
        };
        let reserved = needs.reserved();
        assert_eq!(reserved, 32 + 12 + 4 + 17 + 20);
        assert_eq!(client_capacity(256, reserved), 85);
        assert_eq!(client_capacity(1_048_576, reserved), 524_245);
        assert_eq!(client_capacity(64, reserved), 0);
    }
}
