//! Helpers shared by the lab crate's integration tests.

use std::sync::atomic::{AtomicUsize, Ordering};

/// A lab name no other test (in this or another test process) uses.
pub fn unique(prefix: &str) -> String {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    format!(
        "{prefix}{}n{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}
