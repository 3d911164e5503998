//! Placeholders: `{name}` or `{name:argument}` in services' arguments and environment and in the files a topology
//! places into a host, filled in with the lab's and the host's facts.
//!
//! | placeholder        | stands for                                                     |
//! |--------------------|----------------------------------------------------------------|
//! | `{dir}`            | the topology file's directory                                  |
//! | `{run}`            | the lab's run directory, `/run/lab/<lab>`                      |
//! | `{tls}`            | the lab's TLS material, `{run}/tls`                            |
//! | `{host}`           | the host's name in the topology                                |
//! | `{hostname}`       | the host's hostname                                            |
//! | `{address}`        | the address of the host's first interface                      |
//! | `{address:IFACE}`  | the address of the host's interface IFACE                      |
//! | `{prefix:IFACE}`   | the prefix length of that interface (`{prefix}`: the first's)  |
//! | `{ip:NAME}`        | the address /etc/hosts gives NAME in the lab (a host, a VIP...) |
//!
//! Only these names are placeholders: any other text in braces (nginx's and keepalived's blocks, `${VAR}`) is left
//! as it is, so configuration files need no escaping.

use std::path::Path;

use crate::names::LabPaths;
use crate::topology::{Host, Topology};

const NAMES: [&str; 8] = ["dir", "run", "tls", "host", "hostname", "address", "prefix", "ip"];

/// One placeholder found in a text: its byte range and what it says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placeholder<'t> {
    pub start: usize,
    pub end: usize,
    pub name: &'t str,
    pub argument: Option<&'t str>,
}

/// Every placeholder of `text`, in order.
pub fn find(text: &str) -> Vec<Placeholder<'_>> {
    let mut found = Vec::new();
    let mut from = 0;
    while let Some(open) = text[from..].find('{').map(|i| from + i) {
        from = open + 1;
        let Some(close) = text[open..].find('}').map(|i| open + i) else {
            break;
        };
        let inside = &text[open + 1..close];
        let (name, argument) = match inside.split_once(':') {
            Some((name, argument)) => (name, Some(argument)),
            None => (inside, None),
        };
        let plain = |s: &str| {
            !s.is_empty()
                && s.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
        };
        if NAMES.contains(&name) && argument.is_none_or(plain) {
            found.push(Placeholder {
                start: open,
                end: close + 1,
                name,
                argument,
            });
            from = close + 1;
        }
    }
    found
}

/// What the placeholders of one host stand for.
pub struct Facts<'a> {
    pub topology: &'a Topology,
    pub host: &'a Host,
    /// The topology's directory.
    pub dir: &'a Path,
    /// `None` while the topology is being checked (the lab's name may still change): `{run}` and `{tls}` are then
    /// known to be valid, but not filled in.
    pub paths: Option<&'a LabPaths>,
}

impl Facts<'_> {
    /// The value of one placeholder, or why it has none.
    pub fn value(&self, placeholder: &Placeholder) -> Result<String, String> {
        let no_argument = |value: String| match placeholder.argument {
            None => Ok(value),
            Some(argument) => Err(format!("`{{{}}}` takes no argument (`:{argument}`)", placeholder.name)),
        };
        let run_dir = |paths: Option<&LabPaths>, tls: bool| match (paths, tls) {
            (None, _) => String::new(),
            (Some(paths), false) => paths.run_dir().display().to_string(),
            (Some(paths), true) => paths.tls_dir().display().to_string(),
        };
        match placeholder.name {
            "dir" => no_argument(self.dir.display().to_string()),
            "run" => no_argument(run_dir(self.paths, false)),
            "tls" => no_argument(run_dir(self.paths, true)),
            "host" => no_argument(self.host.name.clone()),
            "hostname" => no_argument(self.host.hostname.clone()),
            "address" | "prefix" => {
                let interface = match placeholder.argument {
                    None => self.host.interfaces.first(),
                    Some(name) => self.host.interfaces.iter().find(|i| i.name == name),
                };
                let interface = interface.ok_or_else(|| match placeholder.argument {
                    None => format!("host {} has no interface", self.host.name),
                    Some(name) => format!("host {} has no interface `{name}`", self.host.name),
                })?;
                Ok(match placeholder.name {
                    "address" => interface.address.to_string(),
                    _ => interface.prefix.to_string(),
                })
            }
            "ip" => {
                let name = placeholder
                    .argument
                    .ok_or("`{ip}` needs a name: `{ip:NAME}`, NAME a host or an entry of [names]")?;
                self.topology
                    .resolve(name)
                    .map(|address| address.to_string())
                    .ok_or_else(|| {
                        format!(
                            "`{name}` is not a name of this lab (a host, a hostname, an alias or an entry of [names])"
                        )
                    })
            }
            other => unreachable!("`{other}` is not a placeholder name"),
        }
    }

    /// `text` with every placeholder filled in, or the first one that has no value: its byte offset and why.
    pub fn expand(&self, text: &str) -> Result<String, (usize, String)> {
        let mut out = String::with_capacity(text.len());
        let mut copied = 0;
        for placeholder in find(text) {
            let value = self.value(&placeholder).map_err(|why| (placeholder.start, why))?;
            out.push_str(&text[copied..placeholder.start]);
            out.push_str(&value);
            copied = placeholder.end;
        }
        out.push_str(&text[copied..]);
        Ok(out)
    }

    /// Every placeholder of `text` that has no value: its byte offset and why.
    pub fn problems(&self, text: &str) -> Vec<(usize, String)> {
        find(text)
            .iter()
            .filter_map(|p| self.value(p).err().map(|why| (p.start, why)))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOPOLOGY: &str = r#"
name = "t"
[[segments]]
name = "lan"
subnet = "10.0.0.0/24"
[names]
www = "10.0.0.100"
[[hosts]]
name = "web1"
hostname = "www1"
interfaces = [{ segment = "lan", address = "10.0.0.11" }, { name = "eth1", segment = "lan", address = "10.0.0.12/24" }]
[[hosts]]
name = "web2"
interfaces = [{ segment = "lan", address = "10.0.0.21" }]
"#;

    #[test]
    fn only_known_names_are_placeholders_and_each_is_filled_in() {
        let topology = Topology::parse(TOPOLOGY, "t.toml").unwrap();
        let paths = LabPaths::new("t").unwrap();
        let facts = Facts {
            topology: &topology,
            host: &topology.hosts[0],
            dir: Path::new("/srv/lab"),
            paths: Some(&paths),
        };
        let text = "server { listen {address}:80; } # {host} {hostname} {address:eth1}/{prefix:eth1} {ip:web2} \
                    {ip:www} {dir} {run} {tls} ${VAR} {unknown} {address:bad name} {";
        assert_eq!(
            facts.expand(text).unwrap(),
            "server { listen 10.0.0.11:80; } # web1 www1 10.0.0.12/24 10.0.0.21 10.0.0.100 /srv/lab /run/lab/t \
             /run/lab/t/tls ${VAR} {unknown} {address:bad name} {"
        );
        assert_eq!(
            facts.problems("a {ip:nowhere} b {address:eth7} {host:x} {ip}"),
            vec![
                (
                    2,
                    "`nowhere` is not a name of this lab (a host, a hostname, an alias or an entry of [names])".into()
                ),
                (17, "host web1 has no interface `eth7`".into()),
                (32, "`{host}` takes no argument (`:x`)".into()),
                (
                    41,
                    "`{ip}` needs a name: `{ip:NAME}`, NAME a host or an entry of [names]".into()
                ),
            ]
        );
    }
}
