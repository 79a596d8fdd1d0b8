//! Which agents the file lists, kept from the host records on the fleet bus. Pure: fed keys
//! and values (from a scan or a watch), read as targets.
//!
//! A host is listed while the fleet knows it (its `info`, `images` or `alloc` record exists)
//! and an address is known for it. When its lease expires (`info` deleted: NotReady) it stays
//! listed at its last address, so Prometheus scrapes it, sees it down, and the agent-down alert
//! fires; it leaves the file only when all of its records are gone (decommissioned). The last
//! address survives a controller restart through the file itself ([`SdRegistry::remember`]).

use super::render::Target;
use std::collections::HashMap;
use yun_fleet::{CodecError, HostInfo, HostKey, decode, keys};

/// Counts behind one rendering, for the log.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SdCounts {
    /// Targets in the file.
    pub listed: usize,
    /// Of those, hosts whose lease has expired (NotReady), listed at their last address.
    pub listed_not_ready: usize,
    /// Registered hosts that publish no `metrics_address` (left out).
    pub without_address: usize,
    /// NotReady hosts whose address this controller never saw (left out).
    pub address_unknown: usize,
}

#[derive(Debug, Default)]
struct HostEntry {
    /// The `info` record exists (the host holds its lease).
    ready: bool,
    images: bool,
    alloc: bool,
    /// The address and labels last published (or remembered from the file).
    target: Option<Target>,
}

impl HostEntry {
    fn known(&self) -> bool {
        self.ready || self.images || self.alloc
    }

    /// What this entry puts in the file.
    fn listed(&self) -> Option<&Target> {
        self.target.as_ref().filter(|_| self.known())
    }

    /// Registered, but publishing no address (left out, counted and warned about).
    fn without_address(&self) -> bool {
        self.ready && self.target.is_none()
    }
}

/// The record kinds the registry reads; every other key under a host is skipped without
/// being parsed (most watch events are VM reports).
fn host_record(key: &str) -> Option<HostKey> {
    let rest = key.strip_prefix(keys::HOSTS_PREFIX)?;
    let (_, record) = rest.split_once('/')?;
    matches!(record, "info" | "images" | "alloc")
        .then(|| HostKey::parse(key))
        .flatten()
}

/// What one record change does to a host's entry.
enum Change {
    /// `info` written: the host holds its lease, at this address (None: it publishes none).
    Registered(Option<Target>),
    /// `info` deleted: the lease expired (NotReady) or the agent stopped.
    LeaseGone,
    Images(bool),
    Alloc(bool),
}

/// Build one from a scan: [`SdRegistry::remember`] what was known before, apply every key of
/// the snapshot, [`SdRegistry::finish_scan`]; then apply watch events.
#[derive(Debug, Default)]
pub struct SdRegistry {
    hosts: HashMap<String, HostEntry>,
}

impl SdRegistry {
    pub fn new() -> SdRegistry {
        SdRegistry::default()
    }

    /// Remembers addresses from before this scan (the file as last written, or the previous
    /// registry). They are used only for hosts the scan shows known but silent (a registered
    /// host's `info` replaces them), and forgotten by [`SdRegistry::finish_scan`] otherwise.
    pub fn remember(&mut self, targets: impl IntoIterator<Item = Target>) {
        for t in targets {
            let entry = self.hosts.entry(t.host.clone()).or_default();
            if entry.target.is_none() {
                entry.target = Some(t);
            }
        }
    }

    /// Ends a scan: remembered hosts without any record (decommissioned) are dropped.
    pub fn finish_scan(&mut self) {
        self.hosts.retain(|_, e| e.known());
    }

    /// Applies one key change (`value` None = deleted). Returns the host if its target
    /// changed (the file's content with it) or it started or stopped publishing no address
    /// (the counts the writer logs). Keys other than a host's `info`, `images` and
    /// `alloc` are ignored.
    pub fn apply(&mut self, key: &str, value: Option<&[u8]>) -> Result<Option<String>, CodecError> {
        let Some(record) = host_record(key) else {
            return Ok(None);
        };
        let (host, change) = match (record, value) {
            (HostKey::Info { host }, Some(bytes)) => {
                let info: HostInfo = decode(key, bytes)?;
                // An agent that stops publishing an address is taken out on purpose.
                let target = info
                    .metrics_address
                    .map(|addr| Target::new(&host, addr, &info.labels));
                (host, Change::Registered(target))
            }
            (HostKey::Info { host }, None) => (host, Change::LeaseGone),
            (HostKey::Images { host }, v) => (host, Change::Images(v.is_some())),
            (HostKey::Alloc { host }, v) => (host, Change::Alloc(v.is_some())),
            _ => return Ok(None),
        };
        let entry = self.hosts.entry(host.clone()).or_default();
        let before = (entry.listed().cloned(), entry.without_address());
        match change {
            Change::Registered(target) => {
                entry.ready = true;
                entry.target = target;
            }
            Change::LeaseGone => entry.ready = false,
            Change::Images(present) => entry.images = present,
            Change::Alloc(present) => entry.alloc = present,
        }
        let changed = before.0.as_ref() != entry.listed() || before.1 != entry.without_address();
        // A scan only adds records, so this never drops a remembered host mid-scan.
        if !entry.known() {
            self.hosts.remove(&host);
        }
        Ok(changed.then_some(host))
    }

    /// Every address this registry holds, listed or only remembered (to seed a rescan).
    pub fn all_targets(&self) -> impl Iterator<Item = &Target> {
        self.hosts.values().filter_map(|e| e.target.as_ref())
    }

    /// The targets to write, unordered.
    pub fn targets(&self) -> impl Iterator<Item = &Target> {
        self.hosts.values().filter_map(HostEntry::listed)
    }

    pub fn counts(&self) -> SdCounts {
        let mut c = SdCounts::default();
        for e in self.hosts.values().filter(|e| e.known()) {
            match (e.target.is_some(), e.ready) {
                (true, true) => c.listed += 1,
                (true, false) => {
                    c.listed += 1;
                    c.listed_not_ready += 1;
                }
                (false, true) => c.without_address += 1,
                (false, false) => c.address_unknown += 1,
            }
        }
        c
    }

    /// Up to `n` registered hosts that publish no address, by name (for the warning).
    pub fn sample_without_address(&self, n: usize) -> Vec<&str> {
        let mut names: Vec<&str> = self
            .hosts
            .iter()
            .filter(|(_, e)| e.without_address())
            .map(|(h, _)| h.as_str())
            .collect();
        names.sort_unstable();
        names.truncate(n);
        names
    }
}
