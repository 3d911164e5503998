//! Arbitrary text as keepalived.conf: a configuration or a list of located diagnostics, never a panic.
#![no_main]

use std::path::Path;

use agent::config::{self, Options};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    // Includes would read the file system; the syntax is what is under test here.
    if text.contains("include") {
        return;
    }
    match config::parse(text, Path::new("fuzz.conf"), Options::default()) {
        Ok(loaded) => {
            for instance in &loaded.config.instances {
                let _ = instance.settings(Some(std::net::Ipv4Addr::new(10, 0, 0, 1)));
            }
        }
        Err(error) => assert!(!error.diagnostics.is_empty()),
    }
});
