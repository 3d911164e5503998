//! A line sink that never makes the protocol loop wait: lines go into a bounded queue that a thread of its own
//! writes out. When the reader behind it stalls (a pipe nobody reads, a hung log shipper, a full FIFO), the queue
//! fills and further lines are dropped and counted; once the queue has room again, a line saying how many were lost
//! goes in where they were lost. The daemon never changes namespace, so a plain thread is safe here.

use std::io::{self, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::Arc;
use std::time::Duration;

/// Lines waiting to be written per destination: about a minute of a busy instance's events.
pub const QUEUE_LINES: usize = 4096;

/// Where a queue's lines end up. Called only from the queue's own thread, so it may block.
pub trait Destination: Send + 'static {
    fn write_line(&mut self, line: &str) -> io::Result<()>;
}

/// A file descriptor (stdout, stderr, a file, a FIFO), written one whole line at a time.
pub struct Descriptor(pub std::fs::File);

impl Destination for Descriptor {
    fn write_line(&mut self, line: &str) -> io::Result<()> {
        let mut bytes = Vec::with_capacity(line.len() + 1);
        bytes.extend_from_slice(line.as_bytes());
        bytes.push(b'\n');
        self.0.write_all(&bytes)
    }
}

impl Descriptor {
    /// A duplicate of stdout or stderr, so the queue's writes never take std's stdout lock.
    pub fn duplicate(fd: impl AsFd) -> io::Result<Descriptor> {
        let owned: OwnedFd = fd.as_fd().try_clone_to_owned()?;
        Ok(Descriptor(std::fs::File::from(owned)))
    }
}

/// Counts lines that were lost; shared with whoever reports metrics.
#[derive(Debug, Default, Clone)]
pub struct Dropped {
    total: Arc<AtomicU64>,
    /// Lost since the last report line went into the queue.
    unreported: Arc<AtomicU64>,
}

impl Dropped {
    pub fn total(&self) -> u64 {
        self.total.load(Ordering::Relaxed)
    }

    fn add(&self) {
        self.total.fetch_add(1, Ordering::Relaxed);
        self.unreported.fetch_add(1, Ordering::Relaxed);
    }
}

pub struct LineQueue {
    sender: Option<SyncSender<String>>,
    dropped: Dropped,
    /// Renders the line that reports `n` lost lines; none for a destination whose readers parse every line.
    lost: Option<fn(u64) -> String>,
    /// Tells [`LineQueue::finish`] that the writer has written everything it was given.
    done: Receiver<()>,
}

impl LineQueue {
    /// Starts the writer thread.
    pub fn start(
        name: &str,
        mut destination: impl Destination,
        lost: Option<fn(u64) -> String>,
    ) -> io::Result<LineQueue> {
        let (sender, receiver) = mpsc::sync_channel::<String>(QUEUE_LINES);
        let (done_sender, done) = mpsc::channel();
        let dropped = Dropped::default();
        let counter = dropped.clone();
        std::thread::Builder::new().name(name.to_string()).spawn(move || {
            for line in receiver {
                // A destination that fails (closed pipe, full disk) loses the line, like one that stalls.
                if destination.write_line(&line).is_err() {
                    counter.add();
                }
            }
            let _ = done_sender.send(());
        })?;
        Ok(LineQueue {
            sender: Some(sender),
            dropped,
            lost,
            done,
        })
    }

    /// Queues a line, or drops and counts it when the queue is full. Never blocks.
    pub fn push(&self, line: String) {
        let Some(sender) = &self.sender else { return };
        let unreported = self.dropped.unreported.load(Ordering::Relaxed);
        if let (Some(lost), true) = (self.lost, unreported > 0) {
            if sender.try_send(lost(unreported)).is_err() {
                self.dropped.add();
                return;
            }
            self.dropped.unreported.fetch_sub(unreported, Ordering::Relaxed);
        }
        if let Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) = sender.try_send(line) {
            self.dropped.add();
        }
    }

    pub fn dropped(&self) -> Dropped {
        self.dropped.clone()
    }

    /// Lets the writer drain what is queued for at most `patience`; a writer still stuck after that is abandoned
    /// (the process is exiting; its thread goes with it).
    pub fn finish(&mut self, patience: Duration) -> bool {
        self.sender = None;
        !matches!(self.done.recv_timeout(patience), Err(RecvTimeoutError::Timeout))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    /// Blocks every write until the gate opens, then records the lines.
    struct Gated {
        gate: Arc<Mutex<()>>,
        lines: Arc<Mutex<Vec<String>>>,
    }

    impl Destination for Gated {
        fn write_line(&mut self, line: &str) -> io::Result<()> {
            let _open = self.gate.lock().unwrap();
            self.lines.lock().unwrap().push(line.to_string());
            Ok(())
        }
    }

    #[test]
    fn a_stalled_destination_drops_and_counts_then_reports_once_it_recovers() {
        let gate = Arc::new(Mutex::new(()));
        let lines = Arc::new(Mutex::new(Vec::new()));
        let closed = gate.lock().unwrap();
        let destination = Gated {
            gate: gate.clone(),
            lines: lines.clone(),
        };
        let mut queue = LineQueue::start("test", destination, Some(|n| format!("lost {n}"))).unwrap();
        let pushed = QUEUE_LINES + 100;
        let start = std::time::Instant::now();
        for index in 0..pushed {
            queue.push(format!("line {index}"));
        }
        // Never waited for the writer: the pushes are done while it is still stuck.
        assert!(start.elapsed() < Duration::from_secs(1));
        // The writer holds one line while it waits; the queue holds QUEUE_LINES; the rest is dropped.
        let dropped = queue.dropped().total();
        assert!((99..=100).contains(&dropped), "{dropped}");
        drop(closed);
        let kept = pushed as u64 - dropped;
        while (lines.lock().unwrap().len() as u64) < kept {
            std::thread::sleep(Duration::from_millis(1));
        }
        queue.push("after".to_string());
        assert!(queue.finish(Duration::from_secs(5)));
        let lines = lines.lock().unwrap();
        // Every line that got in, in order, then the report where the gap is, then the next line.
        assert_eq!(lines.len() as u64, kept + 2);
        assert_eq!(lines[kept as usize], format!("lost {dropped}"));
        assert_eq!(lines[kept as usize - 1], format!("line {}", kept - 1));
        assert_eq!(lines.last().unwrap(), "after");
    }
}
