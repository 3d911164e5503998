//! sentinel-proxy: a TCP proxy that routes Redis clients to the current master, as HAProxy does in the seed, but
//! deciding which node is master from a quorum of Sentinels confirmed by the node itself.
//!
//! Modules, from the wire up:
//! - `resp`: the Redis serialization protocol (RESP2), a parser that says "incomplete" instead of blocking and
//!   refuses oversized or malformed input, and the command encoder;
//! - `sentinel`: reading Sentinel's and Redis's answers (`SENTINEL get-master-addr-by-name`, `ROLE`,
//!   `+switch-master`, failover start/end announcements) and the quorum decision;
//! - `config`: the TOML configuration, every problem reported with file, line and column;
//! - `tracker`: the routing decision, sans-IO (quorum candidate confirmed by `ROLE`, held while a failover is
//!   announced or a replica was promoted; role checks only without Sentinels, refusing a split brain);
//! - `checks`: the proxy's own connections to Sentinels and nodes (polls, subscriptions, ROLE), over `tls`;
//! - `router`: applies the checks' evidence to the tracker and publishes the route, with `events` and `metrics`;
//! - `relay`: one client connection forwarded byte for byte to its backend (half-close passed on, TCP_NODELAY),
//!   cut at once when the route stops naming its backend;
//! - `listener`: a frontend that relays each client to the master of the moment, and closes at once a client that
//!   arrives with no master or beyond the connection limit;
//! - `descriptors`: the open-file budget: the limit raised, a reserve kept for checks, the connection limit fitted.

pub mod checks;
pub mod cli;
pub mod config;
pub mod descriptors;
pub mod events;
pub mod listener;
pub mod metrics;
pub mod relay;
pub mod resp;
pub mod router;
pub mod sentinel;
pub mod tls;
pub mod tracker;
