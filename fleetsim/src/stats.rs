//! Fleet-wide counters, shared by every simulated host (atomics: no per-host cost).

use serde::Serialize;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

#[derive(Debug, Default)]
pub(crate) struct Counters {
    /// Hosts whose session is registered and watching right now.
    pub registered: AtomicI64,
    pub sessions_started: AtomicU64,
    /// Sessions that ended with an etcd error (not those the simulator ended on purpose).
    pub session_errors: AtomicU64,
    pub keepalives: AtomicU64,
    pub keepalive_failures: AtomicU64,
    /// Observations handed to the hosts' reporters (each becomes at most one etcd write; the
    /// reporter coalesces per VM and retries failed writes).
    pub status_reports: AtomicU64,
    pub vms: AtomicI64,
    pub vms_running: AtomicI64,
}

impl Counters {
    pub(crate) fn inc(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn add(gauge: &AtomicI64, delta: i64) {
        gauge.fetch_add(delta, Ordering::Relaxed);
    }
}

/// A snapshot of the simulated fleet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct SimStats {
    /// Hosts simulated (killed ones included).
    pub hosts: u64,
    pub registered: i64,
    pub killed: u64,
    pub partitioned: u64,
    pub sessions_started: u64,
    pub session_errors: u64,
    pub keepalives: u64,
    pub keepalive_failures: u64,
    pub status_reports: u64,
    pub status_write_failures: u64,
    pub vms: i64,
    pub vms_running: i64,
}

impl Counters {
    pub(crate) fn snapshot(
        &self,
        hosts: u64,
        killed: u64,
        partitioned: u64,
        status_write_failures: u64,
    ) -> SimStats {
        let u = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let i = |c: &AtomicI64| c.load(Ordering::Relaxed);
        SimStats {
            hosts,
            registered: i(&self.registered),
            killed,
            partitioned,
            sessions_started: u(&self.sessions_started),
            session_errors: u(&self.session_errors),
            keepalives: u(&self.keepalives),
            keepalive_failures: u(&self.keepalive_failures),
            status_reports: u(&self.status_reports),
            status_write_failures,
            vms: i(&self.vms),
            vms_running: i(&self.vms_running),
        }
    }
}
