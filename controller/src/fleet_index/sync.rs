//! Keeps a [`FleetIndex`] current: one paged scan of the hosts and placements prefixes at a
//! single revision, then one watch from the next revision. A lost watch (etcd restart,
//! compaction) rebuilds a fresh index from a new scan while the old one keeps serving (stale
//! but safe: placement commits are guarded by revision, so a stale view can only lose races).

use super::state::{FleetIndex, IndexError, IndexEvent};
use crate::failure::{FailureAction, FailureConfig};
use crate::fencing::{EvacuationHook, FenceHook};
use crate::metrics::ControllerMetrics;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use tokio::sync::{broadcast, watch};
use yun_fleet::keys;
use yun_fleet_etcd::{BusError, EventKind, FleetBus, prefix_end};
use yun_placement::EngineConfig;

/// Keys per scan page: well under gRPC's message cap even for VM records with user data.
const SCAN_PAGE: i64 = 1000;

/// What a full scan cost.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScanStats {
    pub keys: usize,
    pub undecodable: usize,
    pub revision: i64,
    pub elapsed: Duration,
}

/// The shared, synchronised index and its change feed. Cheap to clone.
#[derive(Debug, Clone)]
pub struct FleetIndexHandle {
    inner: Arc<Mutex<FleetIndex>>,
    events: broadcast::Sender<IndexEvent>,
    synced: watch::Sender<bool>,
    engine_cfg: EngineConfig,
    failure_cfg: FailureConfig,
}

impl FleetIndexHandle {
    pub fn new(engine_cfg: EngineConfig, failure_cfg: FailureConfig) -> FleetIndexHandle {
        FleetIndexHandle {
            inner: Arc::new(Mutex::new(FleetIndex::new(
                engine_cfg.clone(),
                failure_cfg.clone(),
            ))),
            events: broadcast::channel(65_536).0,
            synced: watch::channel(false).0,
            engine_cfg,
            failure_cfg,
        }
    }

    /// Locks the index. Hold it briefly: never across an `.await`.
    pub fn lock(&self) -> MutexGuard<'_, FleetIndex> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn subscribe(&self) -> broadcast::Receiver<IndexEvent> {
        self.events.subscribe()
    }

    pub fn is_synced(&self) -> bool {
        *self.synced.borrow()
    }

    /// Resolves once the first full scan has been loaded.
    pub async fn wait_synced(&self) {
        let mut rx = self.synced.subscribe();
        let _ = rx.wait_for(|s| *s).await;
    }

    fn publish(&self, ev: IndexEvent) {
        let _ = self.events.send(ev);
    }

    /// Builds a fresh index from one scan of etcd (the controller's full resync).
    pub async fn scan(&self, bus: &FleetBus) -> Result<(FleetIndex, ScanStats), BusError> {
        let started = Instant::now();
        let mut index = FleetIndex::new(self.engine_cfg.clone(), self.failure_cfg.clone());
        let (mut n, mut bad) = (0usize, 0usize);
        let end = prefix_end(keys::PLACEMENTS_PREFIX);
        let revision = bus
            .scan_range(keys::HOSTS_PREFIX, &end, SCAN_PAGE, |kv| {
                n += 1;
                if let Err(e) = index.apply(kv.key, Some(kv.value), kv.mod_revision, started) {
                    bad += 1;
                    tracing::error!(key = kv.key, error = %e, "skipping a fleet record during resync");
                }
                Ok(())
            })
            .await?;
        index.finish_scan(revision, Instant::now());
        Ok((
            index,
            ScanStats {
                keys: n,
                undecodable: bad,
                revision,
                elapsed: started.elapsed(),
            },
        ))
    }

    /// Swaps in a freshly scanned index, keeping operator intent.
    pub fn install(&self, mut fresh: FleetIndex) {
        let mut guard = self.lock();
        fresh.adopt_intents(&guard);
        *guard = fresh;
        drop(guard);
        self.synced.send_replace(true);
    }

    fn apply_events(&self, events: Vec<yun_fleet_etcd::BusEvent>) {
        let now = Instant::now();
        let mut out = Vec::new();
        {
            let mut index = self.lock();
            for ev in events {
                let value = match &ev.kind {
                    EventKind::Put(bytes) => Some(bytes.as_slice()),
                    EventKind::Delete => None,
                };
                match index.apply(&ev.key, value, ev.mod_revision, now) {
                    Ok(Some(e)) => out.push(e),
                    Ok(None) => {}
                    Err(IndexError::Codec(e)) => {
                        tracing::error!(error = %e, "ignoring an undecodable fleet record")
                    }
                    Err(e) => {
                        tracing::error!(key = %ev.key, error = %e, "fleet index refused a change")
                    }
                }
            }
        }
        for e in out {
            match &e {
                IndexEvent::HostLost(h) => {
                    tracing::warn!(host = %h, "host lease expired: NotReady")
                }
                IndexEvent::HostReady(h) => tracing::info!(host = %h, "host registered: Ready"),
                _ => {}
            }
            self.publish(e);
        }
    }
}

/// Failure handling wired to the index: hooks and what to do on mass silence.
#[derive(Debug, Clone)]
pub struct FailureHooks {
    pub fence: Arc<dyn FenceHook>,
    pub evacuate: Arc<dyn EvacuationHook>,
    /// Partition gauge (the alert's source) and host counts.
    pub metrics: Option<ControllerMetrics>,
}

fn run_failure_actions(handle: &FleetIndexHandle, hooks: &FailureHooks) {
    let actions = {
        let mut index = handle.lock();
        if let Some(m) = &hooks.metrics {
            m.set_hosts(index.ready_hosts(), index.host_count());
        }
        index.detector_mut().tick(Instant::now())
    };
    for action in actions {
        match action {
            FailureAction::PartitionSuspected { silent, known } => {
                tracing::error!(
                    silent,
                    known,
                    "many hosts went silent at once: suspecting a control-plane partition; no host will be fenced or evacuated while it lasts"
                );
                if let Some(m) = &hooks.metrics {
                    m.partition_suspected.set(1);
                }
            }
            FailureAction::PartitionCleared { silent, known } => {
                tracing::warn!(silent, known, "partition cleared");
                if let Some(m) = &hooks.metrics {
                    m.partition_suspected.set(0);
                }
            }
            FailureAction::Fence(host) => {
                let (handle, hooks) = (handle.clone(), hooks.clone());
                tokio::spawn(async move {
                    let result = hooks.fence.fence(&host).await;
                    if let Err(e) = &result {
                        tracing::warn!(host = %host, error = %e, "fence not done");
                    }
                    let vms = {
                        let mut index = handle.lock();
                        let _ = index.detector_mut().fence_result(&host, result.is_ok());
                        index.engine().vms_on(&host)
                    };
                    if result.is_ok() {
                        hooks.evacuate.evacuate(&host, vms).await;
                    }
                });
            }
        }
    }
}

/// Runs scan + watch until `shutdown`, rescanning after any watch failure.
pub async fn run(
    bus: FleetBus,
    handle: FleetIndexHandle,
    hooks: FailureHooks,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut backoff = Duration::from_millis(200);
    loop {
        let result = tokio::select! {
            r = scan_and_watch(&bus, &handle, &hooks) => r,
            _ = shutdown.changed() => return,
        };
        if let Err(e) = result {
            tracing::warn!(error = %e, retry_in_ms = backoff.as_millis() as u64, "fleet watch lost; will rescan");
        }
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = shutdown.changed() => return,
        }
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}

/// One session: a full paged scan at one revision, then the ordered watch from the next revision.
/// Returns only on a watch or bus failure.
async fn scan_and_watch(
    bus: &FleetBus,
    handle: &FleetIndexHandle,
    hooks: &FailureHooks,
) -> Result<(), BusError> {
    let (fresh, stats) = handle.scan(bus).await?;
    tracing::info!(
        hosts = fresh.host_count(),
        vms = fresh.vm_count(),
        keys = stats.keys,
        undecodable = stats.undecodable,
        revision = stats.revision,
        ms = stats.elapsed.as_millis() as u64,
        "fleet index loaded"
    );
    handle.install(fresh);
    let end = prefix_end(keys::PLACEMENTS_PREFIX);
    let mut watch = bus
        .watch_range(keys::HOSTS_PREFIX, &end, stats.revision + 1)
        .await?;
    let mut ticker = tokio::time::interval(Duration::from_secs(1));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            events = watch.next() => handle.apply_events(events?),
            _ = ticker.tick() => run_failure_actions(handle, hooks),
        }
    }
}
