//! A network-namespace lab for high-availability setups: builds a topology out of namespaces, veth pairs and
//! bridges, runs services inside its hosts, and removes every trace afterwards.

pub mod cli;
pub mod control;
pub mod events;
pub mod fault;
pub mod lab;
pub mod net;
pub mod observe;
pub mod process;
pub mod service;
pub mod state;
pub mod timeline;
pub mod tls;
pub mod topology;

pub use events::{Event, EventKind, EventLog};
pub use fault::Fault;
pub use lab::{Lab, LabError, LinkInfo};
pub use timeline::{SnapshotStyle, Timeline};
pub use topology::Topology;
