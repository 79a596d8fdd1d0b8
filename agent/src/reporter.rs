//! Writes VM observations to the fleet bus. Coalesces per VM (latest wins) and keeps unsent
//! observations across an etcd outage, so the bus converges as soon as etcd is back.

use crate::metrics::AgentMetrics;
use std::collections::BTreeMap;
use std::time::Duration;
use tokio::sync::{mpsc, watch};
use yun_fleet::VmObserved;
use yun_fleet_etcd::FleetBus;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Report {
    Observed(VmObserved),
    /// The VM is fully removed from this host: delete its observed record.
    Gone(String),
}

impl Report {
    fn uid(&self) -> &str {
        match self {
            Report::Observed(o) => &o.uid,
            Report::Gone(uid) => uid,
        }
    }
}

/// Runs until `rx` closes. `bus` holds the current connection (None while etcd is unreachable).
pub async fn run(
    host: String,
    mut rx: mpsc::UnboundedReceiver<Report>,
    mut bus: watch::Receiver<Option<FleetBus>>,
    metrics: AgentMetrics,
) {
    let mut pending: BTreeMap<String, Report> = BTreeMap::new();
    let mut backoff = Duration::from_millis(200);
    loop {
        let retry = !pending.is_empty();
        tokio::select! {
            msg = rx.recv() => match msg {
                Some(r) => { pending.insert(r.uid().to_owned(), r); }
                None => break,
            },
            changed = bus.changed() => { if changed.is_err() { break; } }
            _ = tokio::time::sleep(backoff), if retry => {}
        }
        while let Ok(r) = rx.try_recv() {
            pending.insert(r.uid().to_owned(), r);
        }
        let Some(client) = bus.borrow().clone() else {
            continue;
        };
        let mut failed = false;
        while let Some((uid, report)) = pending.pop_first() {
            let result = match &report {
                Report::Observed(o) => client.put_observed(&host, o).await,
                Report::Gone(uid) => client.delete_observed(&host, uid).await,
            };
            if let Err(e) = result {
                tracing::warn!(uid = %uid, error = %e, "status write failed; will retry");
                metrics.status_write_failures.inc();
                pending.insert(uid, report);
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
