//! The protocol's own durations, so a scenario's deadlines read like the RFC: each VRRP instance of the topology
//! (found in the keepalived.conf its vrrpd or keepalived service reads) gives `advert_int`, `skew_time` and
//! `master_down_interval`, and a small expression language adds slack to them:
//! `master_down_interval(haproxy2) + slack`, `2 * advert_int(haproxy1) - 100ms`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::topology::placeholders::Facts;
use crate::topology::{Host, Topology};

/// keepalived's configuration file when no `-f` names one.
const KEEPALIVED_DEFAULT: &str = "/etc/keepalived/keepalived.conf";

/// One VRRP instance as its configuration sets it.
#[derive(Debug, Clone, PartialEq)]
pub struct VrrpInstance {
    pub host: String,
    pub name: String,
    pub priority: u8,
    pub advert_int: Duration,
    /// Master_Down_Interval's count of adverts (3 unless the configuration says otherwise).
    pub down_adverts: u32,
    pub addresses: Vec<std::net::Ipv4Addr>,
}

impl VrrpInstance {
    /// Skew_Time: (256 - priority) / 256 of the advertisement interval (RFC 3768 §6.1 with v2's whole seconds,
    /// RFC 9568 §6.1).
    pub fn skew_time(&self) -> Duration {
        agent::machine::skew_time(self.priority, self.advert_int)
    }

    /// Master_Down_Interval: three intervals plus Skew_Time.
    pub fn master_down_interval(&self) -> Duration {
        self.advert_int * self.down_adverts + self.skew_time()
    }
}

/// Every VRRP instance of a topology.
#[derive(Debug, Clone, Default)]
pub struct Figures {
    pub instances: Vec<VrrpInstance>,
}

impl Figures {
    /// Reads the VRRP configuration of every host that runs vrrpd or keepalived. A configuration that cannot be
    /// read is a problem only when a scenario names its host (`problems` keeps it for then).
    pub fn of(topology: &Topology) -> (Figures, Vec<(String, String)>) {
        let mut figures = Figures::default();
        let mut problems = Vec::new();
        let dir = topology.directory();
        for host in &topology.hosts {
            let facts = Facts {
                topology,
                host,
                dir: &dir,
                paths: None,
            };
            for config in vrrp_configs(host) {
                match read_config(&facts, host, &config) {
                    Ok(text) => match agent::config::parse(&text, &config, agent::config::Options::default()) {
                        Ok(loaded) => figures
                            .instances
                            .extend(loaded.config.instances.iter().map(|i| VrrpInstance {
                                host: host.name.clone(),
                                name: i.name.clone(),
                                priority: i.priority,
                                advert_int: i.advert_interval,
                                down_adverts: i.down_timer_adverts,
                                addresses: i.virtual_addresses.iter().map(|v| v.address).collect(),
                            })),
                        Err(e) => problems.push((host.name.clone(), format!("{}: {e}", config.display()))),
                    },
                    Err(why) => problems.push((host.name.clone(), why)),
                }
            }
        }
        (figures, problems)
    }

    /// The instance of `host` (named, or the host's only one).
    pub fn instance(&self, host: &str, name: Option<&str>) -> Result<&VrrpInstance, String> {
        let of_host: Vec<&VrrpInstance> = self.instances.iter().filter(|i| i.host == host).collect();
        match (name, of_host.as_slice()) {
            (_, []) => Err(format!("host `{host}` runs no VRRP instance the lab can read")),
            (None, [only]) => Ok(only),
            (None, _) => Err(format!(
                "host `{host}` has several VRRP instances ({}): name one",
                of_host.iter().map(|i| i.name.as_str()).collect::<Vec<_>>().join(", ")
            )),
            (Some(name), _) => of_host
                .into_iter()
                .find(|i| i.name == name)
                .ok_or_else(|| format!("host `{host}` has no VRRP instance `{name}`")),
        }
    }

    /// The advertisement interval every instance shares, if they share one.
    pub fn common_advert_int(&self) -> Option<Duration> {
        let first = self.instances.first()?.advert_int;
        self.instances.iter().all(|i| i.advert_int == first).then_some(first)
    }

    /// The backup: the instance with the lowest priority (its Skew_Time and Master_Down_Interval are the longest).
    pub fn backup(&self) -> Option<&VrrpInstance> {
        self.instances.iter().min_by_key(|i| i.priority)
    }
}

/// The configuration files the host's VRRP daemons read: `-f FILE` / `--use-file FILE`, or keepalived's default.
fn vrrp_configs(host: &Host) -> Vec<PathBuf> {
    let mut configs = Vec::new();
    for service in &host.services {
        let program = service
            .argv
            .first()
            .map(|p| Path::new(p).file_name().unwrap_or_default());
        let Some(program) = program.and_then(|p| p.to_str()) else {
            continue;
        };
        if program != "vrrpd" && program != "keepalived" {
            continue;
        }
        let mut named = None;
        for (i, arg) in service.argv.iter().enumerate() {
            if let Some(file) = arg.strip_prefix("--use-file=") {
                named = Some(file.to_string());
            } else if arg == "-f" || arg == "--use-file" {
                named = service.argv.get(i + 1).cloned();
            }
        }
        configs.push(PathBuf::from(named.unwrap_or_else(|| KEEPALIVED_DEFAULT.to_string())));
    }
    configs
}

/// The text of a configuration file as the host would read it: a file the topology places there, or the file on
/// the machine.
fn read_config(facts: &Facts, host: &Host, path: &Path) -> Result<String, String> {
    let expanded = facts
        .expand(&path.display().to_string())
        .map_err(|(_, why)| format!("{}: {why}", path.display()))?;
    let path = PathBuf::from(expanded);
    if let Some(placed) = host.files.iter().find(|f| f.path == path) {
        let bytes = placed
            .content(facts)
            .map_err(|e| format!("placed at {}: {e}", path.display()))?;
        return String::from_utf8(bytes).map_err(|_| format!("{}: not UTF-8 text", path.display()));
    }
    std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))
}

/// A duration written with the protocol's figures, evaluated when the scenario is read.
#[derive(Debug, Clone, PartialEq)]
pub struct Expression {
    pub text: String,
    pub value: Duration,
}

/// What names in an expression stand for.
pub struct Scope<'a> {
    pub figures: &'a Figures,
    /// `slack`, if the scenario has one yet (it is itself an expression, without `slack`).
    pub slack: Option<Duration>,
}

impl Expression {
    pub fn parse(text: &str, scope: &Scope) -> Result<Expression, String> {
        let tokens = tokens(text)?;
        let mut parser = Parser { tokens, at: 0, scope };
        let value = parser.sum()?;
        if let Some(token) = parser.tokens.get(parser.at) {
            return Err(format!("unexpected `{}` in `{text}`", token.text()));
        }
        if value < 0.0 {
            return Err(format!("`{text}` is negative ({value:.3} s)"));
        }
        Ok(Expression {
            text: text.to_string(),
            value: Duration::from_secs_f64(value),
        })
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Token {
    /// A number in seconds if it had a unit, else a plain factor.
    Number(f64, bool),
    Name(String),
    Symbol(char),
}

impl Token {
    fn text(&self) -> String {
        match self {
            Token::Number(n, _) => n.to_string(),
            Token::Name(name) => name.clone(),
            Token::Symbol(c) => c.to_string(),
        }
    }
}

fn tokens(text: &str) -> Result<Vec<Token>, String> {
    let mut tokens = Vec::new();
    let mut rest = text.trim_start();
    while let Some(c) = rest.chars().next() {
        if c.is_ascii_digit() || c == '.' {
            let end = rest
                .find(|c: char| !(c.is_ascii_digit() || c == '.'))
                .unwrap_or(rest.len());
            let number: f64 = rest[..end]
                .parse()
                .map_err(|_| format!("`{}` is not a number", &rest[..end]))?;
            rest = &rest[end..];
            let unit_end = rest.find(|c: char| !c.is_ascii_alphabetic()).unwrap_or(rest.len());
            let scale = match &rest[..unit_end] {
                "" => None,
                "s" => Some(1.0),
                "ms" => Some(1e-3),
                "us" => Some(1e-6),
                "m" | "min" => Some(60.0),
                unit => return Err(format!("unknown unit `{unit}` (s, ms, us or min)")),
            };
            rest = &rest[unit_end..];
            tokens.push(match scale {
                Some(scale) => Token::Number(number * scale, true),
                None => Token::Number(number, false),
            });
        } else if c.is_ascii_alphabetic() || c == '_' {
            let end = rest
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '-'))
                .unwrap_or(rest.len());
            tokens.push(Token::Name(rest[..end].to_string()));
            rest = &rest[end..];
        } else if "+-*/(),".contains(c) {
            tokens.push(Token::Symbol(c));
            rest = &rest[1..];
        } else {
            return Err(format!("unexpected `{c}`"));
        }
        rest = rest.trim_start();
    }
    Ok(tokens)
}

/// sum := product (('+' | '-') product)*; product := atom (('*' | '/') atom)*; atom := number | duration |
/// name | name '(' host [',' instance] ')' | '(' sum ')'. Values are seconds; a plain number is a factor.
struct Parser<'a> {
    tokens: Vec<Token>,
    at: usize,
    scope: &'a Scope<'a>,
}

/// A value, and whether it is a duration (a plain number is only a factor).
type Value = (f64, bool);

impl Parser<'_> {
    fn next(&mut self) -> Option<Token> {
        let token = self.tokens.get(self.at).cloned();
        self.at += 1;
        token
    }

    fn peek_symbol(&self, symbols: &str) -> Option<char> {
        match self.tokens.get(self.at) {
            Some(Token::Symbol(c)) if symbols.contains(*c) => Some(*c),
            _ => None,
        }
    }

    fn sum(&mut self) -> Result<f64, String> {
        let (mut total, duration) = self.product()?;
        if !duration {
            return Err("a plain number needs a unit (s, ms) unless it multiplies a duration".into());
        }
        while let Some(op) = self.peek_symbol("+-") {
            self.at += 1;
            let (value, duration) = self.product()?;
            if !duration {
                return Err(format!("`{op} {value}` needs a unit (s, ms)"));
            }
            total += if op == '+' { value } else { -value };
        }
        Ok(total)
    }

    fn product(&mut self) -> Result<Value, String> {
        let (mut value, mut duration) = self.atom()?;
        if let (false, Some(Token::Name(unit))) = (duration, self.tokens.get(self.at)) {
            return Err(format!(
                "unknown unit `{unit}` (s, ms, us or min, right after the number)"
            ));
        }
        while let Some(op) = self.peek_symbol("*/") {
            self.at += 1;
            let (right, right_duration) = self.atom()?;
            match op {
                '*' if duration && right_duration => return Err("a duration times a duration is not a duration".into()),
                '*' => value *= right,
                _ if right_duration => return Err("divide by a plain number".into()),
                _ if right == 0.0 => return Err("division by zero".into()),
                _ => value /= right,
            }
            duration |= right_duration;
        }
        Ok((value, duration))
    }

    fn atom(&mut self) -> Result<Value, String> {
        match self.next() {
            Some(Token::Number(n, duration)) => Ok((n, duration)),
            Some(Token::Symbol('(')) => {
                let value = self.sum()?;
                self.expect(')')?;
                Ok((value, true))
            }
            Some(Token::Name(name)) => self.name(&name).map(|d| (d.as_secs_f64(), true)),
            Some(token) => Err(format!("unexpected `{}`", token.text())),
            None => Err("the expression ends too soon".into()),
        }
    }

    fn expect(&mut self, symbol: char) -> Result<(), String> {
        match self.next() {
            Some(Token::Symbol(c)) if c == symbol => Ok(()),
            Some(token) => Err(format!("expected `{symbol}`, found `{}`", token.text())),
            None => Err(format!("expected `{symbol}`")),
        }
    }

    fn name(&mut self, name: &str) -> Result<Duration, String> {
        let figures = self.scope.figures;
        if name == "slack" {
            return self
                .scope
                .slack
                .ok_or_else(|| "`slack` cannot be used in the slack itself".to_string());
        }
        if !["advert_int", "skew_time", "master_down_interval"].contains(&name) {
            return Err(format!(
                "unknown name `{name}`: advert_int, skew_time(HOST), master_down_interval(HOST), slack"
            ));
        }
        if self.peek_symbol("(").is_none() {
            return match (name, figures.common_advert_int()) {
                ("advert_int", Some(interval)) => Ok(interval),
                ("advert_int", None) => Err("the VRRP instances differ in advert_int: write advert_int(HOST)".into()),
                _ => Err(format!("`{name}` needs a host: {name}(HOST) or {name}(HOST, INSTANCE)")),
            };
        }
        self.at += 1;
        let host = self.argument()?;
        let instance = if self.peek_symbol(",").is_some() {
            self.at += 1;
            Some(self.argument()?)
        } else {
            None
        };
        self.expect(')')?;
        let instance = figures.instance(&host, instance.as_deref())?;
        Ok(match name {
            "advert_int" => instance.advert_int,
            "skew_time" => instance.skew_time(),
            _ => instance.master_down_interval(),
        })
    }

    fn argument(&mut self) -> Result<String, String> {
        match self.next() {
            Some(Token::Name(name)) => Ok(name),
            // Host names may start with a digit.
            Some(Token::Number(n, false)) => Ok(n.to_string()),
            Some(token) => Err(format!("expected a host or instance name, found `{}`", token.text())),
            None => Err("expected a host or instance name".into()),
        }
    }
}

/// A scenario's default slack: half the advertisement interval plus 100 ms for a loaded machine (a regression of
/// one interval is still outside it), or 600 ms without VRRP.
pub fn default_slack(figures: &Figures) -> Duration {
    let interval = figures
        .instances
        .iter()
        .map(|i| i.advert_int)
        .max()
        .unwrap_or(Duration::from_secs(1));
    interval / 2 + Duration::from_millis(100)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seed() -> Figures {
        let instance = |host: &str, priority| VrrpInstance {
            host: host.into(),
            name: "Instance1".into(),
            priority,
            advert_int: Duration::from_secs(1),
            down_adverts: 3,
            addresses: vec![],
        };
        Figures {
            instances: vec![instance("haproxy1", 100), instance("haproxy2", 99)],
        }
    }

    fn value(text: &str) -> Result<Duration, String> {
        let figures = seed();
        let scope = Scope {
            figures: &figures,
            slack: Some(Duration::from_millis(600)),
        };
        Expression::parse(text, &scope).map(|e| e.value)
    }

    #[test]
    fn figures_follow_the_rfc() {
        // 3 x 1 s + (256 - 99) / 256 s = 3.61328125 s.
        assert_eq!(
            value("master_down_interval(haproxy2)"),
            Ok(Duration::from_nanos(3_613_281_250))
        );
        assert_eq!(value("skew_time(haproxy1)"), Ok(Duration::from_nanos(609_375_000)));
        assert_eq!(value("advert_int"), Ok(Duration::from_secs(1)));
        assert_eq!(
            value("master_down_interval(haproxy2, Instance1) + slack"),
            Ok(Duration::from_nanos(4_213_281_250))
        );
        assert_eq!(value("2 * advert_int - 100ms"), Ok(Duration::from_millis(1900)));
        assert_eq!(value("(advert_int + 1s) / 4"), Ok(Duration::from_millis(500)));
        assert_eq!(value("1.5min"), Ok(Duration::from_secs(90)));
    }

    #[test]
    fn mistakes_are_named() {
        assert!(value("master_down_interval(haproxy3)")
            .unwrap_err()
            .contains("haproxy3"));
        assert!(value("master_down_interval").unwrap_err().contains("needs a host"));
        assert!(value("3").unwrap_err().contains("unit"));
        assert!(value("1s - 2s").unwrap_err().contains("negative"));
        assert!(value("1 furlong").unwrap_err().contains("furlong"));
        assert!(value("skew(haproxy1)").unwrap_err().contains("unknown name"));
        assert!(value("advert_int advert_int").unwrap_err().contains("unexpected"));
    }
}
