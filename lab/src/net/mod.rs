//! Kernel networking for a lab: namespaces, links, addresses, routes and firewall rules.

pub mod build;
pub mod firewall;
pub mod netlink;
pub mod netns;

/// A MAC address as `ip link` prints it.
pub fn format_mac(mac: &[u8; 6]) -> String {
    mac.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(":")
}
