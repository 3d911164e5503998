//! A keepalived-compatible VRRP agent: the protocol core, without sockets or clocks.
//!
//! - [`wire`]: VRRPv2/v3 advertisements and their IPv4 header, parsed and emitted.
//! - [`machine`]: the RFC 3768 / 5798 / 9568 state machine of one instance, fed inputs and the time, returning actions.
//! - [`log`]: keepalived's log lines, word for word.
//! - [`config`]: keepalived.conf, parsed with positions, turned into machine settings.

pub mod cli;
pub mod config;
pub mod daemon;
pub mod io;
pub mod log;
pub mod machine;
pub mod sim;
pub mod wire;
