//! The writer task: keeps an [`SdRegistry`] current from the fleet bus (one paged scan of the
//! hosts prefix, then a watch from the next revision; a lost watch rescans) and rewrites the
//! target files, debounced: at most once per `min_interval`, and only files whose content
//! changed. Nothing is written before the first scan is in, so a controller that starts
//! while etcd is down leaves the previous file (and Prometheus' targets) as they were.

use super::output::SdFiles;
use super::registry::{SdCounts, SdRegistry};
use super::render::{render_shard, render_shards, shard_of};
use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::Duration;
use tokio::time::Instant;
use yun_fleet::keys;
use yun_fleet_etcd::{BusError, EventKind, FleetBus, prefix_end};

/// Keys per scan page (the fleet index uses the same).
const SCAN_PAGE: i64 = 1000;
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// What `--prometheus-sd-*` asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileSdConfig {
    /// The file (or the base name of the shards).
    pub path: PathBuf,
    /// 1: one file; more: `<stem>.<i>.<ext>`, hosts spread by a hash of their name.
    pub shards: usize,
    /// Shortest time between two writes.
    pub min_interval: Duration,
}

/// The task's state between scan/watch sessions.
#[derive(Debug)]
struct Writer {
    cfg: FileSdConfig,
    registry: SdRegistry,
    files: Option<SdFiles>,
    /// Shards whose content changed since the last write.
    dirty: BTreeSet<usize>,
    /// Earliest time of the next write.
    next_write: Instant,
    /// At least one full scan has been loaded (writes are allowed).
    synced: bool,
    /// The next write is the first after a scan (logged at info).
    after_scan: bool,
    last_counts: SdCounts,
}

/// Runs forever (abort the task to stop it): the files follow the fleet.
pub async fn run(bus: FleetBus, cfg: FileSdConfig) {
    let files = SdFiles::open(&cfg.path, cfg.shards);
    let mut registry = SdRegistry::new();
    registry.remember(files.previous_targets());
    match files.remove_stale() {
        Ok(removed) if !removed.is_empty() => {
            tracing::info!(
                ?removed,
                "removed prometheus file_sd files of another shard count"
            )
        }
        Ok(_) => {}
        Err(e) => tracing::warn!(error = %e, "cannot remove stale prometheus file_sd shards"),
    }
    tracing::info!(files = ?files.paths(), "writing prometheus file_sd targets");
    let mut writer = Writer {
        cfg,
        registry,
        files: Some(files),
        dirty: BTreeSet::new(),
        next_write: Instant::now(),
        synced: false,
        after_scan: false,
        last_counts: SdCounts::default(),
    };
    let mut backoff = Duration::from_millis(200);
    loop {
        let error = writer.session(&bus).await;
        tracing::warn!(error = %error, retry_in_ms = backoff.as_millis() as u64,
            "prometheus file_sd: fleet watch lost; will rescan");
        // Pending changes are still written while etcd is away.
        let resume = Instant::now() + backoff;
        while !writer.dirty.is_empty() && writer.synced && writer.next_write < resume {
            tokio::time::sleep_until(writer.next_write).await;
            writer.write().await;
        }
        tokio::time::sleep_until(resume).await;
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

impl Writer {
    /// One full scan, then the watch; returns why it ended.
    async fn session(&mut self, bus: &FleetBus) -> BusError {
        let end = prefix_end(keys::HOSTS_PREFIX);
        // A fresh registry, swapped in only once the whole snapshot is read: a scan that
        // fails halfway must not make the next write drop the hosts it did not reach.
        let mut fresh = SdRegistry::new();
        fresh.remember(self.registry.all_targets().cloned().collect::<Vec<_>>());
        let scanned = bus
            .scan_range(keys::HOSTS_PREFIX, &end, SCAN_PAGE, |kv| {
                if let Err(e) = fresh.apply(kv.key, Some(kv.value)) {
                    tracing::error!(key = kv.key, error = %e, "prometheus file_sd: skipping a host record");
                }
                Ok(())
            })
            .await;
        let revision = match scanned {
            Ok(revision) => revision,
            Err(e) => return e,
        };
        fresh.finish_scan();
        self.registry = fresh;
        self.synced = true;
        self.after_scan = true;
        self.dirty = (0..self.cfg.shards.max(1)).collect();
        let mut watch = match bus
            .watch_range(keys::HOSTS_PREFIX, &end, revision + 1)
            .await
        {
            Ok(w) => w,
            Err(e) => return e,
        };
        loop {
            let deadline = self.next_write;
            tokio::select! {
                events = watch.next() => match events {
                    Ok(events) => self.apply(events),
                    Err(e) => return e,
                },
                _ = tokio::time::sleep_until(deadline), if !self.dirty.is_empty() => self.write().await,
            }
        }
    }

    fn apply(&mut self, events: Vec<yun_fleet_etcd::BusEvent>) {
        for ev in events {
            let value = match &ev.kind {
                EventKind::Put(bytes) => Some(bytes.as_slice()),
                EventKind::Delete => None,
            };
            match self.registry.apply(&ev.key, value) {
                Ok(Some(host)) => {
                    self.dirty.insert(shard_of(&host, self.cfg.shards));
                }
                Ok(None) => {}
                Err(e) => {
                    tracing::error!(key = %ev.key, error = %e, "prometheus file_sd: ignoring a host record")
                }
            }
        }
    }

    /// Renders the changed shards and writes those whose content differs (the file I/O off
    /// the async workers).
    async fn write(&mut self) {
        let Some(mut files) = self.files.take() else {
            return;
        };
        let shards = self.cfg.shards.max(1);
        let contents: Vec<(usize, String)> = if self.dirty.len() == shards {
            render_shards(self.registry.targets(), shards)
                .into_iter()
                .enumerate()
                .collect()
        } else {
            self.dirty
                .iter()
                .map(|&i| (i, render_shard(self.registry.targets(), shards, i)))
                .collect()
        };
        let (files, result) = match tokio::task::spawn_blocking(move || {
            let mut written = 0;
            for (index, text) in &contents {
                match files.write_shard(*index, text) {
                    Ok(done) => written += usize::from(done),
                    Err(e) => return (files, Err(e)),
                }
            }
            (files, Ok(written))
        })
        .await
        {
            Ok(done) => done,
            Err(e) => {
                // The blocking task panicked: the files object is gone; start over from disk.
                tracing::error!(error = %e, "prometheus file_sd write task failed");
                (SdFiles::open(&self.cfg.path, self.cfg.shards), Ok(0))
            }
        };
        self.files = Some(files);
        self.next_write = Instant::now() + self.cfg.min_interval;
        match result {
            Ok(written) => {
                self.dirty.clear();
                self.log_counts(written);
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot write the prometheus file_sd targets; retrying")
            }
        }
    }

    fn log_counts(&mut self, written: usize) {
        let c = self.registry.counts();
        let previous = std::mem::replace(&mut self.last_counts, c);
        if c.without_address > previous.without_address {
            tracing::warn!(
                hosts = c.without_address,
                sample = ?self.registry.sample_without_address(5),
                "registered hosts publish no metrics_address and are not listed for Prometheus (agent config metrics_advertise)"
            );
        }
        if c.address_unknown > previous.address_unknown {
            tracing::warn!(
                hosts = c.address_unknown,
                "NotReady hosts whose metrics address this controller never saw are not listed"
            );
        }
        if std::mem::take(&mut self.after_scan) {
            tracing::info!(
                files_written = written,
                listed = c.listed,
                not_ready = c.listed_not_ready,
                without_address = c.without_address,
                "prometheus file_sd targets in step with the fleet bus"
            );
        } else {
            tracing::debug!(
                files_written = written,
                listed = c.listed,
                not_ready = c.listed_not_ready,
                without_address = c.without_address,
                "prometheus file_sd targets written"
            );
        }
    }
}
