//! The proxy's configuration file (TOML). Every problem is reported at once, each with file, line, column and
//! field, before anything listens.
//!
//! ```toml
//! [[frontends]]
//! bind = "0.0.0.0:6379"
//!
//! [backend]
//! servers = ["10.0.0.11:6379", "10.0.0.12:6379", "10.0.0.13:6379"]
//! sentinels = ["10.0.0.11:26379", "10.0.0.12:26379", "10.0.0.13:26379"]   # none: role checks only
//! master_name = "mymaster"
//! quorum = 2                  # default: a majority of the Sentinels
//! allow_minority_quorum = false  # a quorum below a majority is refused unless this says true
//! check_interval = 0.5        # seconds
//! connect_timeout = 1.0       # seconds
//! max_connections = 10000
//!
//! metrics = "127.0.0.1:9121"  # Prometheus text on GET /metrics (optional)
//!
//! [tls]                       # for the proxy's own connections to Redis and Sentinel
//! ca = "/run/lab/vlan/tls/ca.crt"
//! cert = "/run/lab/vlan/tls/haproxy1.crt"
//! key = "/run/lab/vlan/tls/haproxy1.key"
//! ```

use std::fmt;
use std::net::{SocketAddr, SocketAddrV4};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub frontends: Vec<SocketAddr>,
    pub servers: Vec<SocketAddrV4>,
    pub sentinels: Vec<SocketAddrV4>,
    pub master_name: Option<String>,
    pub quorum: usize,
    pub check_interval: Duration,
    pub connect_timeout: Duration,
    pub max_connections: usize,
    pub tls: Option<Tls>,
    /// Where Prometheus metrics are served, if anywhere.
    pub metrics: Option<SocketAddr>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tls {
    pub ca: PathBuf,
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub file: String,
    pub line: usize,
    pub column: usize,
    pub field: String,
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}: ", self.file, self.line, self.column)?;
        if !self.field.is_empty() {
            write!(f, "{}: ", self.field)?;
        }
        write!(f, "{}", self.message)
    }
}

/// Every problem of a configuration file, in file order.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigError {
    pub problems: Vec<Problem>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let lines: Vec<String> = self.problems.iter().map(ToString::to_string).collect();
        write!(f, "{}", lines.join("\n"))
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    frontends: Vec<RawFrontend>,
    backend: Spanned<RawBackend>,
    tls: Option<Spanned<RawTls>>,
    metrics: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFrontend {
    bind: Spanned<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBackend {
    #[serde(default)]
    servers: Vec<Spanned<String>>,
    #[serde(default)]
    sentinels: Vec<Spanned<String>>,
    master_name: Option<Spanned<String>>,
    quorum: Option<Spanned<i64>>,
    #[serde(default)]
    allow_minority_quorum: bool,
    check_interval: Option<Spanned<f64>>,
    connect_timeout: Option<Spanned<f64>>,
    max_connections: Option<Spanned<i64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTls {
    ca: Spanned<String>,
    cert: Option<Spanned<String>>,
    key: Option<Spanned<String>>,
}

struct Checker<'a> {
    text: &'a str,
    file: String,
    problems: Vec<Problem>,
}

impl Checker<'_> {
    fn report(&mut self, span: Range<usize>, field: &str, message: impl Into<String>) {
        let before = &self.text[..span.start.min(self.text.len())];
        let line = before.matches('\n').count() + 1;
        let column = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
        self.problems.push(Problem {
            file: self.file.clone(),
            line,
            column,
            field: field.to_string(),
            message: message.into(),
        });
    }

    fn address_v4(&mut self, value: &Spanned<String>, field: &str) -> Option<SocketAddrV4> {
        match value.get_ref().parse() {
            Ok(address) => Some(address),
            Err(_) => {
                let message = format!(
                    "`{}` is not an IPv4 address:port such as 10.0.0.12:6379",
                    value.get_ref()
                );
                self.report(value.span(), field, message);
                None
            }
        }
    }

    fn seconds(&mut self, value: &Option<Spanned<f64>>, field: &str, default: f64) -> Duration {
        match value {
            None => Duration::from_secs_f64(default),
            Some(v) if v.get_ref().is_finite() && *v.get_ref() > 0.0 && *v.get_ref() <= 3600.0 => {
                Duration::from_secs_f64(*v.get_ref())
            }
            Some(v) => {
                self.report(
                    v.span(),
                    field,
                    format!("{} is not a number of seconds in (0, 3600]", v.get_ref()),
                );
                Duration::from_secs_f64(default)
            }
        }
    }
}

impl Config {
    pub fn load(path: impl AsRef<Path>) -> Result<Config, ConfigError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            problems: vec![Problem {
                file: path.display().to_string(),
                line: 0,
                column: 0,
                field: String::new(),
                message: format!("cannot read the configuration: {e}"),
            }],
        })?;
        Config::parse(&text, &path.display().to_string())
    }

    /// Checks configuration text; `file` only names it in messages.
    pub fn parse(text: &str, file: &str) -> Result<Config, ConfigError> {
        let mut checker = Checker {
            text,
            file: file.to_string(),
            problems: Vec::new(),
        };
        let raw: RawConfig = match toml::from_str(text) {
            Ok(raw) => raw,
            Err(e) => {
                checker.report(e.span().unwrap_or(0..0), "", e.message().to_string());
                return Err(ConfigError {
                    problems: checker.problems,
                });
            }
        };
        let config = check(&mut checker, raw);
        if checker.problems.is_empty() {
            Ok(config)
        } else {
            checker.problems.sort_by_key(|p| (p.line, p.column));
            Err(ConfigError {
                problems: checker.problems,
            })
        }
    }
}

fn check(checker: &mut Checker, raw: RawConfig) -> Config {
    let mut frontends = Vec::new();
    for (i, frontend) in raw.frontends.iter().enumerate() {
        match frontend.bind.get_ref().parse::<SocketAddr>() {
            Ok(address) => frontends.push(address),
            Err(_) => checker.report(
                frontend.bind.span(),
                &format!("frontends[{i}].bind"),
                format!(
                    "`{}` is not an address:port such as 0.0.0.0:6379",
                    frontend.bind.get_ref()
                ),
            ),
        }
    }
    if raw.frontends.is_empty() {
        checker.report(
            0..0,
            "frontends",
            "no frontend: add [[frontends]] with bind = \"0.0.0.0:6379\"",
        );
    }
    let backend_span = raw.backend.span();
    let backend = raw.backend.into_inner();
    let servers: Vec<SocketAddrV4> = backend
        .servers
        .iter()
        .enumerate()
        .filter_map(|(i, s)| checker.address_v4(s, &format!("backend.servers[{i}]")))
        .collect();
    let sentinels: Vec<SocketAddrV4> = backend
        .sentinels
        .iter()
        .enumerate()
        .filter_map(|(i, s)| checker.address_v4(s, &format!("backend.sentinels[{i}]")))
        .collect();
    if backend.servers.is_empty() && backend.sentinels.is_empty() {
        checker.report(backend_span.clone(), "backend", "give `servers`, `sentinels`, or both");
    }
    let master_name = backend.master_name.as_ref().map(|n| n.get_ref().clone());
    if !backend.sentinels.is_empty() && master_name.is_none() {
        checker.report(
            backend_span.clone(),
            "backend.master_name",
            "Sentinels need the master's name (`master_name`)",
        );
    }
    let majority = backend.sentinels.len() / 2 + 1;
    let quorum = match &backend.quorum {
        None => majority,
        Some(q)
            if *q.get_ref() >= 1
                && (*q.get_ref() as usize) < majority
                && (*q.get_ref() as usize) <= backend.sentinels.len()
                && !backend.allow_minority_quorum =>
        {
            checker.report(
                q.span(),
                "backend.quorum",
                format!(
                    "quorum {} is below a majority of the {} Sentinels given ({majority}): that many Sentinels \
                     could name a master the others do not, and two such groups could disagree; set \
                     `allow_minority_quorum = true` to accept it",
                    q.get_ref(),
                    backend.sentinels.len()
                ),
            );
            majority
        }
        Some(q) if *q.get_ref() >= 1 && (*q.get_ref() as usize) <= backend.sentinels.len() => *q.get_ref() as usize,
        Some(q) => {
            checker.report(
                q.span(),
                "backend.quorum",
                format!(
                    "quorum {} is not between 1 and the {} Sentinels given",
                    q.get_ref(),
                    backend.sentinels.len()
                ),
            );
            majority
        }
    };
    let check_interval = checker.seconds(&backend.check_interval, "backend.check_interval", 0.5);
    let connect_timeout = checker.seconds(&backend.connect_timeout, "backend.connect_timeout", 1.0);
    let max_connections = match &backend.max_connections {
        None => 10_000,
        Some(m) if (1..=1_000_000).contains(m.get_ref()) => *m.get_ref() as usize,
        Some(m) => {
            checker.report(
                m.span(),
                "backend.max_connections",
                format!("{} is not in 1-1000000", m.get_ref()),
            );
            10_000
        }
    };
    let tls = raw.tls.map(|tls| {
        let tls = tls.into_inner();
        let mut file = |value: &Spanned<String>, field: &str| {
            let path = PathBuf::from(value.get_ref());
            if !path.is_file() {
                checker.report(value.span(), field, format!("no such file `{}`", path.display()));
            }
            path
        };
        let ca = file(&tls.ca, "tls.ca");
        let cert = tls.cert.as_ref().map(|c| file(c, "tls.cert"));
        let key = tls.key.as_ref().map(|k| file(k, "tls.key"));
        if cert.is_some() != key.is_some() {
            let span = tls.cert.as_ref().or(tls.key.as_ref()).map(|s| s.span()).unwrap_or(0..0);
            checker.report(span, "tls", "a client certificate needs both `cert` and `key`");
        }
        Tls { ca, cert, key }
    });
    let metrics = raw
        .metrics
        .as_ref()
        .and_then(|m| match m.get_ref().parse::<SocketAddr>() {
            Ok(address) => Some(address),
            Err(_) => {
                checker.report(
                    m.span(),
                    "metrics",
                    format!("`{}` is not an address:port such as 127.0.0.1:9121", m.get_ref()),
                );
                None
            }
        });
    Config {
        frontends,
        servers,
        sentinels,
        master_name,
        quorum,
        check_interval,
        connect_timeout,
        max_connections,
        tls,
        metrics,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEED: &str = r#"
[[frontends]]
bind = "0.0.0.0:6379"

[backend]
servers = ["10.0.0.11:6379", "10.0.0.12:6379", "10.0.0.13:6379"]
sentinels = ["10.0.0.11:26379", "10.0.0.12:26379", "10.0.0.13:26379"]
master_name = "mymaster"
quorum = 2
"#;

    #[test]
    fn the_seed_setup() {
        let config = Config::parse(SEED, "proxy.toml").unwrap();
        assert_eq!(config.frontends, vec!["0.0.0.0:6379".parse::<SocketAddr>().unwrap()]);
        assert_eq!(config.servers.len(), 3);
        assert_eq!(config.sentinels[1], "10.0.0.12:26379".parse::<SocketAddrV4>().unwrap());
        assert_eq!(config.master_name.as_deref(), Some("mymaster"));
        assert_eq!((config.quorum, config.max_connections), (2, 10_000));
        assert_eq!(config.check_interval, Duration::from_millis(500));
        assert_eq!(config.tls, None);
    }

    #[test]
    fn a_quorum_below_a_majority_is_refused_unless_allowed() {
        let minority = SEED.replace("quorum = 2", "quorum = 1");
        let error = Config::parse(&minority, "proxy.toml").unwrap_err().to_string();
        assert_eq!(
            error,
            "proxy.toml:9:10: backend.quorum: quorum 1 is below a majority of the 3 Sentinels given (2): that many \
             Sentinels could name a master the others do not, and two such groups could disagree; set \
             `allow_minority_quorum = true` to accept it"
        );
        let allowed = minority.replace("quorum = 1", "quorum = 1\nallow_minority_quorum = true");
        assert_eq!(Config::parse(&allowed, "proxy.toml").unwrap().quorum, 1);
    }

    #[test]
    fn every_problem_at_once_with_its_place() {
        let text = r#"[[frontends]]
bind = "everywhere"

[backend]
sentinels = ["10.0.0.11:26379", "nowhere"]
quorum = 5
check_interval = -1

[tls]
ca = "/nonexistent/ca.crt"
cert = "/nonexistent/x.crt"
"#;
        let error = Config::parse(text, "proxy.toml").unwrap_err().to_string();
        assert_eq!(
            error,
            "proxy.toml:2:8: frontends[0].bind: `everywhere` is not an address:port such as 0.0.0.0:6379\n\
             proxy.toml:4:1: backend.master_name: Sentinels need the master's name (`master_name`)\n\
             proxy.toml:5:33: backend.sentinels[1]: `nowhere` is not an IPv4 address:port such as 10.0.0.12:6379\n\
             proxy.toml:6:10: backend.quorum: quorum 5 is not between 1 and the 2 Sentinels given\n\
             proxy.toml:7:18: backend.check_interval: -1 is not a number of seconds in (0, 3600]\n\
             proxy.toml:10:6: tls.ca: no such file `/nonexistent/ca.crt`\n\
             proxy.toml:11:8: tls.cert: no such file `/nonexistent/x.crt`\n\
             proxy.toml:11:8: tls: a client certificate needs both `cert` and `key`"
        );
    }

    #[test]
    fn syntax_and_unknown_fields() {
        let error = Config::parse("[backend]\nservers = [\"10.0.0.11:6379\"]\nretries = 3\n", "p.toml").unwrap_err();
        let text = error.to_string();
        assert!(text.starts_with("p.toml:3:1: unknown field `retries`"), "{text}");
        let error = Config::parse("[backend\n", "p.toml").unwrap_err().to_string();
        assert!(error.starts_with("p.toml:1:"), "{error}");
    }
}
