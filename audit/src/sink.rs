//! Group commit for many concurrent producers: a writer thread drains a queue into batches,
//! so each `fdatasync` covers every entry that arrived while the previous one ran.
//!
//! The writer is a dedicated OS thread rather than a tokio task because `write` and
//! `fdatasync` block for milliseconds; on a runtime worker they would stall unrelated tasks.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::{mpsc, oneshot};

use crate::error::AuditError;
use crate::log::AuditLog;
use crate::record::AuditEntry;

/// Tuning for [`AuditSink::spawn_with`].
#[derive(Debug, Clone, Copy)]
pub struct SinkOptions {
    /// Most entries per write+fsync.
    pub max_batch: usize,
    /// Entries that may wait in the queue before `record` applies backpressure.
    pub queue: usize,
}

impl Default for SinkOptions {
    fn default() -> Self {
        Self {
            max_batch: 1024,
            queue: 8192,
        }
    }
}

/// Counters of the work done so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SinkStats {
    pub batches: u64,
    pub records: u64,
    pub largest_batch: u64,
}

#[derive(Debug, Default)]
struct Counters {
    batches: AtomicU64,
    records: AtomicU64,
    largest_batch: AtomicU64,
}

enum Command {
    Append {
        entry: AuditEntry,
        done: oneshot::Sender<Result<u64, AuditError>>,
    },
    Close {
        done: oneshot::Sender<()>,
    },
}

/// A cloneable handle to a log owned by a writer thread. The thread stops (closing the log
/// and releasing its lock) after [`AuditSink::close`] or when every handle is dropped.
#[derive(Debug, Clone)]
pub struct AuditSink {
    tx: mpsc::Sender<Command>,
    path: Arc<PathBuf>,
    counters: Arc<Counters>,
}

impl AuditSink {
    /// Moves `log` to a new writer thread with [`SinkOptions::default`].
    pub fn spawn(log: AuditLog) -> Result<Self, AuditError> {
        Self::spawn_with(log, SinkOptions::default())
    }

    pub fn spawn_with(log: AuditLog, options: SinkOptions) -> Result<Self, AuditError> {
        let (tx, rx) = mpsc::channel(options.queue.max(1));
        let path = Arc::new(log.path().to_path_buf());
        let counters = Arc::new(Counters::default());
        let thread_counters = Arc::clone(&counters);
        let max_batch = options.max_batch.max(1);
        std::thread::Builder::new()
            .name("yun-audit-writer".to_string())
            .spawn(move || run_writer(log, rx, max_batch, &thread_counters))
            .map_err(AuditError::io(&path, "spawn writer thread"))?;
        Ok(Self { tx, path, counters })
    }

    /// Appends `entry`; returns its seq once the batch holding it is durable. The entry is
    /// validated here, so a bad entry fails alone. If the batch fails, every entry in it gets
    /// [`AuditError::BatchFailed`]: it may or may not be in the log.
    pub async fn record(&self, entry: AuditEntry) -> Result<u64, AuditError> {
        entry
            .validate()
            .map_err(|reason| AuditError::InvalidEntry { reason })?;
        let (done, result) = oneshot::channel();
        self.tx
            .send(Command::Append { entry, done })
            .await
            .map_err(|_| AuditError::Closed)?;
        result.await.map_err(|_| AuditError::Closed)?
    }

    /// Writes everything queued before this call, then stops the writer and closes the log
    /// (for every clone of this handle). Returns once the file is closed and unlocked.
    /// Closing an already closed sink is a no-op.
    pub async fn close(&self) {
        let (done, closed) = oneshot::channel();
        if self.tx.send(Command::Close { done }).await.is_ok() {
            // An Err means the writer exited anyway (its log is dropped either way).
            let _ = closed.await;
        }
    }

    pub fn path(&self) -> &std::path::Path {
        &self.path
    }

    pub fn stats(&self) -> SinkStats {
        SinkStats {
            batches: self.counters.batches.load(Ordering::Relaxed),
            records: self.counters.records.load(Ordering::Relaxed),
            largest_batch: self.counters.largest_batch.load(Ordering::Relaxed),
        }
    }
}

fn run_writer(
    mut log: AuditLog,
    mut rx: mpsc::Receiver<Command>,
    max_batch: usize,
    counters: &Counters,
) {
    let mut entries = Vec::with_capacity(max_batch);
    let mut waiters = Vec::with_capacity(max_batch);
    while let Some(first) = rx.blocking_recv() {
        let mut close = None;
        let mut next = Some(first);
        while let Some(command) = next.take() {
            match command {
                Command::Append { entry, done } => {
                    entries.push(entry);
                    waiters.push(done);
                }
                Command::Close { done } => {
                    close = Some(done);
                    break;
                }
            }
            if entries.len() < max_batch {
                next = rx.try_recv().ok();
            }
        }
        if !entries.is_empty() {
            write_batch(&mut log, &mut entries, &mut waiters, counters);
        }
        if let Some(done) = close {
            drop(log);
            // Commands queued behind the close fail with Closed when `rx` is dropped.
            drop(rx);
            let _ = done.send(());
            return;
        }
    }
}

fn write_batch(
    log: &mut AuditLog,
    entries: &mut Vec<AuditEntry>,
    waiters: &mut Vec<oneshot::Sender<Result<u64, AuditError>>>,
    counters: &Counters,
) {
    let result = log.append_batch(entries);
    let n = entries.len() as u64;
    entries.clear();
    match result {
        Ok(seqs) => {
            counters.batches.fetch_add(1, Ordering::Relaxed);
            counters.records.fetch_add(n, Ordering::Relaxed);
            counters.largest_batch.fetch_max(n, Ordering::Relaxed);
            for (seq, done) in seqs.zip(waiters.drain(..)) {
                // The producer may have given up waiting; its record is written regardless.
                let _ = done.send(Ok(seq));
            }
        }
        Err(e) => {
            tracing::error!(error = %e, records = n, "audit batch failed");
            let reason = e.to_string();
            for done in waiters.drain(..) {
                let _ = done.send(Err(AuditError::BatchFailed {
                    path: log.path().to_path_buf(),
                    reason: reason.clone(),
                }));
            }
        }
    }
}
