//! Kernel networking for a lab: namespaces, links, addresses, routes and firewall rules.

pub mod build;
pub mod firewall;
pub mod netlink;
pub mod netns;
