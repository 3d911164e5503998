//! sentinel-proxy's command line: a configuration file, or the same settings as flags. One definition, read by
//! the binary and by the generator of completions and manual pages.

use std::path::PathBuf;

use clap::Parser;

#[derive(Parser, Debug)]
#[command(
    name = "sentinel-proxy",
    version,
    about = "A TCP proxy sending Redis clients to the master a quorum of Sentinels names"
)]
pub struct Flags {
    /// The configuration file (TOML); without it, the flags below describe the whole configuration.
    #[arg(short = 'f', long = "config")]
    pub config: Option<PathBuf>,
    /// Check the configuration and exit.
    #[arg(long)]
    pub check: bool,
    /// Write JSON events (route changes with their evidence, check failures) to stdout, one per line (without it,
    /// routing decisions and failing checks are logged on stderr).
    #[arg(long)]
    pub events: bool,
    /// Frontend address:port (repeatable).
    #[arg(long)]
    pub bind: Vec<String>,
    /// Redis server address:port (repeatable).
    #[arg(long)]
    pub server: Vec<String>,
    /// Sentinel address:port (repeatable).
    #[arg(long)]
    pub sentinel: Vec<String>,
    #[arg(long)]
    pub master_name: Option<String>,
    /// Sentinels that must name the same master (default: a majority of those given).
    #[arg(long)]
    pub quorum: Option<i64>,
    /// Accept a quorum below a majority of the Sentinels given (a minority can then name the master).
    #[arg(long)]
    pub allow_minority_quorum: bool,
    /// Seconds between checks.
    #[arg(long)]
    pub check_interval: Option<f64>,
    /// Seconds to connect to a backend or get a check's answer.
    #[arg(long)]
    pub connect_timeout: Option<f64>,
    #[arg(long)]
    pub max_connections: Option<i64>,
    /// Threads relaying client connections (default: one per CPU); checks run on a thread of their own.
    #[arg(long)]
    pub threads: Option<usize>,
    /// Serve Prometheus metrics on this address:port.
    #[arg(long)]
    pub metrics: Option<String>,
    /// CA for the proxy's own TLS connections to Redis and Sentinel.
    #[arg(long)]
    pub tls_ca: Option<String>,
    #[arg(long)]
    pub tls_cert: Option<String>,
    #[arg(long)]
    pub tls_key: Option<String>,
}

impl Flags {
    /// The flags as the TOML they stand for, so one checker validates both ways of configuring.
    pub fn as_toml(&self) -> String {
        let list = |items: &[String]| {
            let quoted: Vec<String> = items.iter().map(|i| format!("{i:?}")).collect();
            format!("[{}]", quoted.join(", "))
        };
        let mut text = String::new();
        if let Some(metrics) = &self.metrics {
            text += &format!("metrics = {metrics:?}\n");
        }
        for bind in &self.bind {
            text += &format!("[[frontends]]\nbind = {bind:?}\n");
        }
        text += &format!(
            "[backend]\nservers = {}\nsentinels = {}\n",
            list(&self.server),
            list(&self.sentinel)
        );
        if let Some(name) = &self.master_name {
            text += &format!("master_name = {name:?}\n");
        }
        if let Some(quorum) = self.quorum {
            text += &format!("quorum = {quorum}\n");
        }
        if self.allow_minority_quorum {
            text += "allow_minority_quorum = true\n";
        }
        if let Some(seconds) = self.check_interval {
            text += &format!("check_interval = {seconds:?}\n");
        }
        if let Some(seconds) = self.connect_timeout {
            text += &format!("connect_timeout = {seconds:?}\n");
        }
        if let Some(limit) = self.max_connections {
            text += &format!("max_connections = {limit}\n");
        }
        if let Some(ca) = &self.tls_ca {
            text += &format!("[tls]\nca = {ca:?}\n");
            if let Some(cert) = &self.tls_cert {
                text += &format!("cert = {cert:?}\n");
            }
            if let Some(key) = &self.tls_key {
                text += &format!("key = {key:?}\n");
            }
        }
        text
    }

    pub fn describes_backend(&self) -> bool {
        !(self.bind.is_empty() && self.server.is_empty() && self.sentinel.is_empty())
    }
}
