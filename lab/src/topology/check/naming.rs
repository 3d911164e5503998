//! The rules for names: the lab's and hosts' (they become paths, namespace and interface names: the one check in
//! [`crate::names`]), identifiers (segments, interfaces, services, probes) and hostnames (/etc/hosts entries).

use std::ops::Range;

use crate::names;
use crate::topology::diagnostics::Checker;

impl Checker<'_> {
    pub(in crate::topology) fn check_lab_name(&mut self, name: &str, span: Range<usize>) {
        if let Err(error) = names::check_lab(name) {
            self.report(span, "name", error.to_string());
        }
    }

    /// A host's name is part of its namespace name and of its switch-side port names: [`names::check_host`].
    pub(in crate::topology) fn check_host_names(&mut self, host: &str, span: Range<usize>, field: &str) {
        if let Err(error) = names::check_host(host) {
            self.report(span, field, error.to_string());
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
