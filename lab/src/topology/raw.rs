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
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSegment {
    pub(super) name: Spanned<String>,
    pub(super) subnet: Spanned<String>,
    pub(super) mtu: Option<Spanned<u32>>,
    pub(super) vlan: Option<Spanned<u16>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawHost {
    pub(super) name: Spanned<String>,
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
