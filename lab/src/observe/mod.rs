//! Observers: what the kernels, the wire and the clients of a lab see, independent of what its daemons claim. Each
//! runs on plain threads of its own (never an async runtime: they enter namespaces) and writes into the lab's
//! [`EventLog`](crate::EventLog), stamped with CLOCK_MONOTONIC.

pub mod kernel;
pub mod probe;
pub mod wire;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

/// Threads that run until told to stop; stopping joins them, so no observer outlives its lab's namespaces.
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

    pub fn stop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}

impl Drop for Observers {
    fn drop(&mut self) {
        self.stop();
    }
}
