//! The topology file as written. Every value keeps its byte span, so that a check can point at the exact line and
//! column of what it rejects; the checks in [`super::check`] turn these structs into the validated model.

use std::collections::BTreeMap;

use serde::Deserialize;
use toml::Spanned;

use super::InboundPolicy;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTopology {
    pub(super) name: Spanned<String>,
    #[serde(default)]
    pub(super) segments: Vec<RawSegment>,
    #[serde(default)]
    pub(super) hosts: Vec<RawHost>,
    #[serde(default)]
    pub(super) names: BTreeMap<String, Spanned<String>>,
    #[serde(default)]
    pub(super) tls: bool,
    /// `"auto"` (default), `"netem"` or `"relay"`.
    pub(super) impair_backend: Option<Spanned<String>>,
    /// `[machines.NAME]`: the machines a lab spreads over.
    #[serde(default)]
    pub(super) machines: BTreeMap<String, Spanned<RawMachine>>,
    /// The UDP port of the VXLAN tunnels between machines (default 14789).
    pub(super) vxlan_port: Option<Spanned<u16>>,
}

/// `[machines.NAME]`: how the coordinator reaches a machine, and the address its tunnels use.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawMachine {
    /// An SSH destination (`root@10.1.0.2`, a `Host` of ssh_config); absent for the coordinator itself.
    pub(super) ssh: Option<Spanned<String>>,
    /// Its address on the network between the machines: VXLAN's local and remote end.
    pub(super) underlay: Spanned<String>,
    /// How to run `lab` there, as shell words (default `lab`).
    pub(super) command: Option<Spanned<String>>,
    /// Options given to ssh before the destination (`["-F", "lab.ssh_config"]`).
    #[serde(default)]
    pub(super) ssh_options: Vec<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSegment {
    pub(super) name: Spanned<String>,
    pub(super) subnet: Spanned<String>,
    pub(super) mtu: Option<Spanned<u32>>,
    pub(super) vlan: Option<Spanned<u16>>,
    /// Every interface on the segment, unless it has its own.
    pub(super) impair: Option<Spanned<RawImpair>>,
}

/// `impair = { ... }`: what the link does to frames, in the words `lab fault` uses.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawImpair {
    pub(super) delay: Option<Spanned<String>>,
    pub(super) jitter: Option<Spanned<String>>,
    pub(super) distribution: Option<Spanned<String>>,
    pub(super) loss: Option<Spanned<String>>,
    pub(super) burst: Option<Spanned<String>>,
    pub(super) duplicate: Option<Spanned<String>>,
    pub(super) reorder: Option<Spanned<String>>,
    pub(super) corrupt: Option<Spanned<String>>,
    pub(super) rate: Option<Spanned<String>>,
    /// `"from"` the host (default), `"to"` it, or `"both"`.
    pub(super) direction: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawHost {
    pub(super) name: Spanned<String>,
    /// The machine (of `[machines]`) the host runs on; the coordinator when absent.
    pub(super) machine: Option<Spanned<String>>,
    pub(super) hostname: Option<Spanned<String>>,
    #[serde(default)]
    pub(super) aliases: Vec<Spanned<String>>,
    #[serde(default)]
    pub(super) interfaces: Vec<RawInterface>,
    #[serde(default)]
    pub(super) routes: Vec<RawRoute>,
    #[serde(default)]
    pub(super) sysctls: BTreeMap<String, Spanned<toml::Value>>,
    #[serde(default)]
    pub(super) services: Vec<RawService>,
    pub(super) firewall: Option<RawFirewall>,
    #[serde(default)]
    pub(super) probes: Vec<RawProbe>,
    pub(super) filesystem: Option<Spanned<RawFilesystem>>,
    #[serde(default)]
    pub(super) files: Vec<RawFile>,
}

/// `[hosts.filesystem]`: how the host's private filesystem is laid out.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawFilesystem {
    /// `"empty"` or `"machine"`: what the host's /var starts with.
    pub(super) var: Option<Spanned<String>>,
    /// More directories of the host's own.
    #[serde(default)]
    pub(super) private: Vec<Spanned<String>>,
    #[serde(default)]
    pub(super) binds: Vec<RawBind>,
    /// The host sees the machine's own filesystem (only /etc/hosts and the hostname are its own).
    pub(super) shared: Option<Spanned<bool>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawBind {
    /// On the machine; relative to the topology's directory.
    pub(super) source: Spanned<String>,
    /// In the host.
    pub(super) target: Spanned<String>,
    #[serde(default)]
    pub(super) read_only: bool,
}

/// `[[hosts.files]]`: a file placed into the host's filesystem when the lab is built.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawFile {
    pub(super) path: Spanned<String>,
    /// A file on the machine, relative to the topology's directory.
    pub(super) source: Option<Spanned<String>>,
    pub(super) text: Option<Spanned<String>>,
    /// An integer (`0o640`) or a string of octal digits (`"0640"`).
    pub(super) mode: Option<Spanned<toml::Value>>,
    /// `user` or `user:group`, looked up on the machine.
    pub(super) owner: Option<Spanned<String>>,
    /// Whether placeholders in the content are filled in (default true).
    pub(super) template: Option<bool>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawProbe {
    pub(super) name: Spanned<String>,
    pub(super) kind: Spanned<String>,
    pub(super) target: Spanned<String>,
    /// Seconds between attempts.
    pub(super) interval: Option<Spanned<f64>>,
    /// Seconds one attempt waits for its answer.
    pub(super) timeout: Option<Spanned<f64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawInterface {
    pub(super) name: Option<Spanned<String>>,
    pub(super) segment: Spanned<String>,
    pub(super) address: Spanned<String>,
    pub(super) mac: Option<Spanned<String>>,
    pub(super) impair: Option<Spanned<RawImpair>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRoute {
    pub(super) to: Spanned<String>,
    pub(super) via: Spanned<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawService {
    pub(super) name: Spanned<String>,
    pub(super) argv: Spanned<Vec<String>>,
    #[serde(default)]
    pub(super) env: BTreeMap<String, String>,
    pub(super) cwd: Option<String>,
    pub(super) ready: Option<Spanned<RawReady>>,
    /// Seconds to wait for readiness.
    pub(super) ready_timeout: Option<Spanned<f64>>,
    pub(super) stop_signal: Option<Spanned<String>>,
    /// Seconds between the stop signal and SIGKILL.
    pub(super) grace: Option<Spanned<f64>>,
    /// `"stdout"`: the service writes JSON events there (vrrpd --events -).
    pub(super) events: Option<Spanned<String>>,
    /// `"no"` (default) or `"on-failure"`.
    pub(super) restart: Option<Spanned<String>>,
    /// How many restarts `on-failure` makes at most.
    pub(super) restart_limit: Option<Spanned<u32>>,
    /// Seconds a service without a readiness check must keep running for `lab up` to count it as started.
    pub(super) settle: Option<Spanned<f64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawReady {
    pub(super) tcp: Option<u16>,
    pub(super) file: Option<String>,
    pub(super) log: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawFirewall {
    #[serde(default)]
    pub(super) allow: Vec<RawAllow>,
    pub(super) inbound: Option<InboundPolicy>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAllow {
    pub(super) ports: Spanned<Vec<u16>>,
    pub(super) from: Vec<Spanned<String>>,
}
