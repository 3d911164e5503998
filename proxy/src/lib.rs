//! sentinel-proxy: a TCP proxy that routes Redis clients to the current master, as HAProxy does in the seed, but
//! deciding which node is master from a quorum of Sentinels confirmed by the node itself.
//!
//! Work in progress (issue 6): the protocol pieces (sans-IO), the routing decision, the relay and the frontend
//! listener are here; the I/O that feeds the tracker (Sentinel connections, subscriptions, ROLE checks), TLS,
//! metrics, events and the binary are not yet.
//! - `resp`: the Redis serialization protocol (RESP2), a parser that says "incomplete" instead of blocking and
//!   refuses oversized or malformed input, and the command encoder;
//! - `sentinel`: reading Sentinel's and Redis's answers (`SENTINEL get-master-addr-by-name`, `ROLE`,
//!   `+switch-master`) and the quorum decision;
//! - `config`: the TOML configuration, every problem reported with file, line and column;
//! - `tracker`: the routing decision (quorum candidate confirmed by `ROLE`; role checks only without Sentinels,
//!   refusing a split brain);
//! - `relay`: one client connection forwarded byte for byte to its backend (half-close passed on, TCP_NODELAY),
//!   cut at once when the route stops naming its backend;
//! - `listener`: a frontend that relays each client to the master of the moment, and closes at once a client that
//!   arrives with no master or beyond the connection limit.

pub mod checks;
pub mod config;
pub mod events;
pub mod listener;
pub mod metrics;
pub mod relay;
pub mod resp;
pub mod router;
pub mod sentinel;
pub mod tls;
pub mod tracker;
