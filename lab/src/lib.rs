//! A network-namespace lab for high-availability setups: builds a topology out of namespaces, veth pairs and
//! bridges, runs services inside its hosts, and removes every trace afterwards.
//!
//! Data flows one way: topology file → validated [`Topology`] → [`plan::Plan`] (every derived name, computed once
//! from names [`names`] has checked) → running [`Lab`] (what it created, with identities teardown checks) → events
//! → [`Timeline`] → renderings. [`supervisor`] runs a lab that is up and answers its [`control`] socket; the
//! command line ([`cli`]) sits on top and nothing below calls into it.

pub mod artifacts;
pub mod cli;
mod cli_test;
pub mod control;
pub mod events;
pub mod fault;
pub mod graph;
pub mod hostfs;
pub mod impair;
pub mod lab;
pub mod lanes;
pub mod machines;
mod markup;
pub mod names;
pub mod net;
pub mod observe;
pub mod perfetto;
pub mod pidfd;
pub mod plan;
pub mod process;
pub mod report;
pub mod scenario;
pub mod service;
pub mod state;
pub mod supervisor;
pub mod teardown;
pub mod timeline;
pub mod tls;
pub mod topology;

pub use events::{Event, EventKind, EventLog};
pub use fault::Fault;
pub use lab::{Lab, LabError, LinkInfo};
pub use timeline::{SnapshotStyle, Timeline};
pub use topology::Topology;
