//! sentinel-proxy: a TCP proxy that routes Redis clients to the current master, as HAProxy does in the seed, but
//! deciding which node is master from a quorum of Sentinels confirmed by the node itself.
//!
//! Work in progress (issue 6): the protocol pieces are here, sans-IO; the forwarding engine is not yet.
//! - `resp`: the Redis serialization protocol (RESP2), a parser that says "incomplete" instead of blocking and
//!   refuses oversized or malformed input, and the command encoder;
//! - `sentinel`: reading Sentinel's and Redis's answers (`SENTINEL get-master-addr-by-name`, `ROLE`,
//!   `+switch-master`) and the quorum decision;
//! - `config`: the TOML configuration, every problem reported with file, line and column.

pub mod config;
pub mod resp;
pub mod sentinel;
