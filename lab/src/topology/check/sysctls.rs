//! A host's `sysctls`, written under /proc/sys/net inside its namespace.

use std::collections::BTreeMap;

use toml::Spanned;

use crate::topology::diagnostics::Checker;

impl Checker<'_> {
    /// Each value as the text /proc/sys takes (a boolean as 0 or 1).
    pub(super) fn check_sysctls(
        &mut self,
        h: usize,
        raw: &BTreeMap<String, Spanned<toml::Value>>,
    ) -> BTreeMap<String, String> {
        let mut sysctls = BTreeMap::new();
        for (key, value) in raw {
            let field = format!("hosts[{h}].sysctls.{key}");
            // Only net.* is per network namespace: anything else would change the machine running the lab.
            if !key.starts_with("net.") || key.contains("..") || key.contains('/') {
                self.report(
                    value.span(),
                    &field,
                    format!("`{key}` is not a per-namespace sysctl: only net.* keys are allowed"),
                );
            }
            let text = match value.get_ref() {
                toml::Value::String(s) => s.clone(),
                toml::Value::Integer(i) => i.to_string(),
                toml::Value::Boolean(b) => u8::from(*b).to_string(),
                other => {
                    self.report(
                        value.span(),
                        &field,
                        format!("expected a string, integer or boolean, found {}", other.type_str()),
                    );
                    String::new()
                }
            };
            sysctls.insert(key.clone(), text);
        }
        sysctls
    }
}

#[cfg(test)]
mod tests {
    use crate::topology::tests::MINIMAL;
    use crate::topology::Topology;

    #[test]
    fn only_net_sysctls_are_allowed() {
        let text = format!("{MINIMAL}sysctls = {{ \"kernel.hostname\" = \"x\" }}\n");
        let err = Topology::parse(&text, "t.toml").unwrap_err().to_string();
        assert!(err.contains("only net.* keys"), "{err}");
    }
}
