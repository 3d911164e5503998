//! Everything the daemon touches outside the process: the clock, VRRP's raw socket, interface addresses over
//! rtnetlink and gratuitous ARP over AF_PACKET. The protocol core never sees any of it.

pub mod arp;
pub mod netlink;
pub mod raw;

use std::time::Duration;

/// CLOCK_MONOTONIC as a [`Duration`]: the machine's time base, and the lab's, so events merge into one timeline.
pub fn monotonic_now() -> Duration {
    let now = nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC).expect("CLOCK_MONOTONIC is always there");
    Duration::new(now.tv_sec() as u64, now.tv_nsec() as u32)
}
