//! The rules for names: the lab's and hosts' (they become namespace and interface names, with the kernel's length
//! limits), identifiers (segments, interfaces, services, probes) and hostnames (/etc/hosts entries).

use std::ops::Range;

use crate::topology::diagnostics::Checker;
use crate::topology::{switch_port_name, IFNAME_MAX, NETNS_NAME_MAX, SWITCH_HOST};

impl Checker<'_> {
    pub(in crate::topology) fn check_lab_name(&mut self, name: &str, span: Range<usize>) {
        if let Err(why) = check_identifier(name) {
            self.report(span, "name", format!("lab name `{name}` {why}"));
        }
    }

    /// A host's name is part of its namespace name and of its switch-side port names.
    pub(in crate::topology) fn check_host_names(&mut self, lab: &str, host: &str, span: Range<usize>, field: &str) {
        if let Err(why) = check_identifier(host) {
            self.report(span.clone(), field, format!("host name `{host}` {why}"));
            return;
        }
        if host == SWITCH_HOST {
            self.report(
                span.clone(),
                field,
                format!("`{SWITCH_HOST}` is reserved for the lab's bridge namespace"),
            );
        }
        let netns = format!("{lab}-{host}");
        if netns.len() > NETNS_NAME_MAX {
            self.report(
                span.clone(),
                field,
                format!(
                    "namespace name `{netns}` is {} bytes, over the limit of {NETNS_NAME_MAX}",
                    netns.len()
                ),
            );
        }
        let port = switch_port_name(host, 0);
        if port.len() > IFNAME_MAX {
            self.report(
                span,
                field,
                format!(
                    "host name `{host}` makes the switch-side interface name `{port}` {} bytes long, over the \
                     kernel's limit of {IFNAME_MAX}; use a host name of at most {} bytes",
                    port.len(),
                    IFNAME_MAX - 2
                ),
            );
        }
    }
}

pub(super) fn check_identifier(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("is empty".into());
    }
    if !name.chars().next().is_some_and(|c| c.is_ascii_alphanumeric()) {
        return Err("must start with a letter or digit".into());
    }
    if let Some(bad) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || *c == '-' || *c == '_' || *c == '.'))
    {
        return Err(format!("contains `{bad}`: use letters, digits, `-`, `_` and `.`"));
    }
    Ok(())
}

pub(super) fn check_hostname(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > 63 {
        return Err("must be 1-63 characters".into());
    }
    if let Some(bad) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || *c == '-' || *c == '.'))
    {
        return Err(format!("contains `{bad}`: use letters, digits, `-` and `.`"));
    }
    if name.starts_with('-') || name.ends_with('-') {
        return Err("must not start or end with `-`".into());
    }
    Ok(())
}
