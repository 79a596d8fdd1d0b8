//! Writes VM observations to the fleet bus. Coalesces per VM (latest wins) and keeps unsent
//! observations across an etcd outage, so the bus converges as soon as etcd is back.

use crate::metrics::AgentMetrics;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, watch};
use yun_fleet::{HostImages, VmObserved};
use yun_fleet_etcd::FleetBus;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Report {
    Observed(VmObserved),
    /// The VM is fully removed from this host: delete its observed record.
    Gone(String),
    /// The template cache changed (or the host registered): publish its inventory.
    ImagesChanged,
}

/// Lists the template cache (blocking; called on the blocking pool at write time, so the
/// published inventory is never older than the write).
pub type Inventory = Arc<dyn Fn() -> Result<BTreeMap<String, u64>, String> + Send + Sync>;

/// Unsent work, coalesced: the latest report per VM, and whether the inventory is due.
#[derive(Default)]
struct Pending {
    vms: BTreeMap<String, Report>,
    images: bool,
}

impl Pending {
    fn add(&mut self, r: Report) {
        match &r {
            Report::Observed(o) => {
                self.vms.insert(o.uid.clone(), r);
            }
            Report::Gone(uid) => {
                self.vms.insert(uid.clone(), r);
            }
            Report::ImagesChanged => self.images = true,
        }
    }

    fn is_empty(&self) -> bool {
        self.vms.is_empty() && !self.images
    }
}

async fn write_images(client: &FleetBus, host: &str, inventory: &Inventory) -> Result<(), String> {
    let list = inventory.clone();
    let images = tokio::task::spawn_blocking(move || list())
        .await
        .map_err(|e| e.to_string())??;
    client
        .put_host_images(host, &HostImages::new(images))
        .await
        .map_err(|e| e.to_string())
}

/// Runs until `rx` closes. `bus` holds the current connection (None while etcd is unreachable).
pub async fn run(
    host: String,
    mut rx: mpsc::UnboundedReceiver<Report>,
    mut bus: watch::Receiver<Option<FleetBus>>,
    metrics: AgentMetrics,
    inventory: Inventory,
) {
    let mut pending = Pending::default();
    let mut backoff = Duration::from_millis(200);
    loop {
        let retry = !pending.is_empty();
        tokio::select! {
            msg = rx.recv() => match msg {
                Some(r) => pending.add(r),
                None => break,
            },
            changed = bus.changed() => { if changed.is_err() { break; } }
            _ = tokio::time::sleep(backoff), if retry => {}
        }
        while let Ok(r) = rx.try_recv() {
            pending.add(r);
        }
        let Some(client) = bus.borrow().clone() else {
            continue;
        };
        let mut failed = false;
        if pending.images {
            match write_images(&client, &host, &inventory).await {
                Ok(()) => pending.images = false,
                Err(e) => {
                    tracing::warn!(error = %e, "image inventory write failed; will retry");
                    metrics.status_write_failures.inc();
                    failed = true;
                }
            }
        }
        while let Some((uid, report)) = pending.vms.pop_first() {
            let result = match &report {
                Report::Observed(o) => client.put_observed(&host, o).await,
                Report::Gone(uid) => client.delete_observed(&host, uid).await,
                Report::ImagesChanged => Ok(()),
            };
            if let Err(e) = result {
                tracing::warn!(uid = %uid, error = %e, "status write failed; will retry");
                metrics.status_write_failures.inc();
                pending.vms.insert(uid, report);
                failed = true;
                break;
            }
        }
        backoff = if failed {
            (backoff * 2).min(Duration::from_secs(5))
        } else {
            Duration::from_millis(200)
        };
    }
}
