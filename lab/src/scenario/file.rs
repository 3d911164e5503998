//! The scenario file as written, every value with its byte span so a problem points at its line and column; the
//! checks in [`super::load`] turn it into a [`super::Scenario`].

use serde::Deserialize;
use toml::Spanned;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawScenario {
    /// The topology file, relative to the scenario's directory (or a name `lab up` finds).
    pub(super) topology: Spanned<String>,
    pub(super) description: Option<String>,
    /// Added to deadlines that say `+ slack`; an expression without `slack` itself.
    pub(super) slack: Option<Spanned<String>>,
    pub(super) snapshot: Option<RawSnapshotSettings>,
    /// Services of the topology run differently in this scenario (another configuration file).
    #[serde(default, rename = "override")]
    pub(super) overrides: Vec<Spanned<RawOverride>>,
    #[serde(default)]
    pub(super) steps: Vec<Spanned<RawStep>>,
}

/// `[[override]] host = "haproxy1", service = "vrrpd", argv = [...]`: `{dir}` is the scenario's directory.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawOverride {
    pub(super) host: Spanned<String>,
    pub(super) service: Spanned<String>,
    pub(super) argv: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSnapshotSettings {
    /// The host whose VRRP instance gives the figures delays are labelled with (default: the lowest priority).
    pub(super) figures_of: Option<Spanned<String>>,
    /// The least slack on every figure (default 50 ms; at least a tenth of the advertisement interval).
    pub(super) margin: Option<Spanned<String>>,
    /// Show only gratuitous ARPs for this address (a name or an address).
    pub(super) arps_for: Option<Spanned<String>>,
    /// Show only these services' output and events (default: all).
    pub(super) services: Option<Vec<Spanned<String>>>,
}

/// One step: exactly one action key, and the settings that action takes.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawStep {
    /// Names the step's moment, for `after`, `before`, `from` and `to` of later steps.
    pub(super) name: Option<Spanned<String>>,
    pub(super) after: Option<Spanned<String>>,
    pub(super) before: Option<Spanned<String>>,
    pub(super) within: Option<Spanned<String>>,
    #[serde(rename = "for")]
    pub(super) window: Option<Spanned<String>>,
    pub(super) at_least: Option<Spanned<toml::Value>>,
    pub(super) at_most: Option<Spanned<toml::Value>>,
    pub(super) ends_within: Option<Spanned<String>>,
    pub(super) outages: Option<Spanned<u32>>,
    pub(super) is: Option<Spanned<String>>,

    // The actions.
    pub(super) fault: Option<Spanned<String>>,
    pub(super) wait: Option<Spanned<toml::Table>>,
    pub(super) last: Option<Spanned<toml::Table>>,
    pub(super) absent: Option<Spanned<toml::Table>>,
    pub(super) count: Option<Spanned<toml::Table>>,
    pub(super) holds: Option<Spanned<RawHolds>>,
    pub(super) outage: Option<Spanned<String>>,
    pub(super) run: Option<Spanned<RawRun>>,
    pub(super) elapsed: Option<Spanned<RawElapsed>>,
    pub(super) overlap: Option<Spanned<String>>,
    pub(super) sequence: Option<Spanned<RawSequence>>,
    pub(super) sleep: Option<Spanned<String>>,
    pub(super) settle: Option<Spanned<Vec<String>>>,
    pub(super) align: Option<Spanned<String>>,
    pub(super) snapshot: Option<Spanned<String>>,
}

/// `holds = { address = "vlan-haproxy", hosts = ["haproxy2"] }`: exactly these hosts have the address.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawHolds {
    pub(super) address: Spanned<String>,
    pub(super) hosts: Vec<Spanned<String>>,
}

/// `run = { host = "redisclient", argv = [...], stdout = "regex", exit = 0 }`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRun {
    pub(super) host: Spanned<String>,
    pub(super) argv: Spanned<Vec<String>>,
    pub(super) stdout: Option<Spanned<String>>,
    pub(super) exit: Option<i32>,
}

/// `elapsed = { from = "crash", to = "takeover" }`, with `is`, `at_least` or `at_most`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawElapsed {
    pub(super) from: Spanned<String>,
    pub(super) to: Spanned<String>,
}

/// `sequence = { host = "haproxy1", service = "vrrpd", lines = ["regex", { line = "regex", at_least = 3 }] }`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSequence {
    pub(super) host: Spanned<String>,
    pub(super) service: Spanned<String>,
    pub(super) lines: Vec<Spanned<RawLine>>,
}

#[derive(Deserialize)]
#[serde(untagged)]
pub(super) enum RawLine {
    Once(String),
    Repeated(RawRepeatedLine),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRepeatedLine {
    pub(super) line: String,
    pub(super) at_least: Option<u32>,
    pub(super) at_most: Option<u32>,
}
