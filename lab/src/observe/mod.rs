//! Observers: what the kernels, the wire and the clients of a lab see, independent of what its daemons claim. Each
//! runs on plain threads of its own (never an async runtime: they enter namespaces) and writes into the lab's
//! [`EventLog`](crate::EventLog), stamped with CLOCK_MONOTONIC.

pub mod kernel;
pub mod probe;
pub mod wire;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

/// The observer threads of one lab, and the flag that stops them.
#[derive(Default)]
pub struct Observers {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

impl Observers {
    pub fn stop_flag(&self) -> Arc<AtomicBool> {
        self.stop.clone()
    }

    pub fn adopt(&mut self, thread: JoinHandle<()>) {
        self.threads.push(thread);
    }

    /// Asks every observer to stop. Each one looks at the flag at least every 20 ms (a probe after its attempt in
    /// flight), closes its sockets and ends.
    pub fn signal_stop(&self) {
        self.stop.store(true, Ordering::Relaxed);
    }

    /// Lets the observers end on their own: a lab going down does not wait the tens of milliseconds they take to
    /// notice. Their sockets hold only the kernel's namespace objects (already nameless) until then; they touch
    /// nothing else.
    pub fn detach(&mut self) {
        self.signal_stop();
        self.threads.clear();
    }
}

impl Drop for Observers {
    fn drop(&mut self) {
        self.detach();
    }
}
