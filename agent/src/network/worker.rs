//! The network worker: keeps this host's links and firewall in line with its records.
//!
//! The host loop publishes every change of [`HostNetState`] on a watch channel; the worker
//! applies the latest (changes that arrive while it applies are coalesced), then, on a
//! timer, repairs firewall drift and re-applies links (a tap libvirt created since is
//! enslaved then). Fail-static: when the bus is gone nothing is published, so nothing
//! changes; an invalid state is refused whole and the kernel keeps what it had.

use std::time::{Duration, Instant};

use tokio::sync::watch;

use super::host_state::{HostNetState, LinkSettings};
use super::links::HostLinks;
use super::nft::{Applied, HostFirewallDriver};
use crate::audit::{AgentAudit, HostChange};
use crate::metrics::AgentMetrics;

/// Runs until `shutdown` turns true. `fw` runs `nft` (a process): it is driven on the
/// blocking pool so the runtime's workers keep serving the bus. Firewall changes and repairs
/// are recorded in `audit` once the blocking step returns.
#[allow(clippy::too_many_arguments)]
pub async fn run_network_worker<L, F>(
    mut state: watch::Receiver<HostNetState>,
    settings: LinkSettings,
    mut links: L,
    fw: F,
    drift_every: Duration,
    metrics: AgentMetrics,
    audit: AgentAudit,
    mut shutdown: watch::Receiver<bool>,
) where
    L: HostLinks + Send,
    F: HostFirewallDriver + Send + 'static,
{
    let mut fw = Some(fw);
    let mut applied_once = false;
    let mut tick = tokio::time::interval(drift_every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let periodic = tokio::select! {
            changed = state.changed() => {
                if changed.is_err() {
                    return;
                }
                false
            }
            _ = tick.tick() => true,
            _ = shutdown.changed() => {
                if *shutdown.borrow() {
                    return;
                }
                continue;
            }
        };
        let snapshot = state.borrow_and_update().clone();
        // A host without tenant networking is left alone: no Yun tables, no devices.
        if snapshot.is_empty() && !applied_once {
            continue;
        }
        applied_once = true;
        apply_links(&snapshot, &settings, &mut links, &metrics).await;
        let Some(driver) = fw.take() else { return };
        let (driver, changes) = blocking(driver, {
            let metrics = metrics.clone();
            move |d| firewall_step(d, &snapshot, periodic, &metrics)
        })
        .await;
        fw = Some(driver);
        for change in changes {
            audit.record_host(change).await;
        }
    }
}

async fn blocking<F, R>(driver: F, f: impl FnOnce(&mut F) -> R + Send + 'static) -> (F, R)
where
    F: Send + 'static,
    R: Send + 'static,
{
    let mut driver = driver;
    match tokio::task::spawn_blocking(move || {
        let r = f(&mut driver);
        (driver, r)
    })
    .await
    {
        Ok(done) => done,
        // spawn_blocking only fails when the closure panicked: there is nothing to recover.
        Err(e) => std::panic::resume_unwind(e.into_panic()),
    }
}

async fn apply_links<L: HostLinks>(
    snapshot: &HostNetState,
    settings: &LinkSettings,
    links: &mut L,
    metrics: &AgentMetrics,
) {
    let want = match snapshot.links(settings) {
        Ok(w) => w,
        Err(e) => {
            metrics.network_applied("links", "refused");
            tracing::error!(error = %e, "tenant links not applied; the host keeps what it has");
            return;
        }
    };
    match links.apply(&want).await {
        Ok(ch) => {
            if !ch.missing_ports.is_empty() {
                tracing::debug!(ports = ?ch.missing_ports, "VM ports not created yet");
            }
            if ch.is_unchanged() {
                metrics.network_applied("links", "unchanged");
            } else {
                metrics.network_applied("links", "changed");
                tracing::info!(ops = ch.applied.len(), "tenant links updated");
            }
        }
        Err(e) => {
            metrics.network_applied("links", "error");
            tracing::error!(error = %e, "tenant links failed");
        }
    }
}

/// One pass over the firewall; returns what changed (or failed to), for the audit trail.
fn firewall_step<F: HostFirewallDriver>(
    fw: &mut F,
    snapshot: &HostNetState,
    periodic: bool,
    metrics: &AgentMetrics,
) -> Vec<HostChange> {
    let mut changes = Vec::new();
    if periodic {
        match fw.repair_drift() {
            Ok(Some(what)) => {
                metrics.firewall_drift_repairs.inc();
                tracing::warn!(drift = %what, "firewall drift repaired");
                changes.push(HostChange::firewall_repair(Ok(Some(&what))));
            }
            Ok(None) => changes.push(HostChange::firewall_repair(Ok(None))),
            Err(e) => {
                tracing::error!(error = %e, "firewall drift check failed");
                changes.push(HostChange::firewall_repair(Err(e.to_string())));
            }
        }
    }
    let input = match snapshot.firewall() {
        Ok(i) => i,
        Err(e) => {
            metrics.network_applied("firewall", "refused");
            tracing::error!(error = %e, "firewall not changed; the host keeps its rules");
            changes.push(HostChange::firewall_failed(format!("refused: {e}")));
            return changes;
        }
    };
    let t = Instant::now();
    match fw.apply(&input) {
        Ok(applied) => {
            let result = match applied {
                Applied::Unchanged => "unchanged",
                Applied::Delta { .. } => "delta",
                Applied::Replaced => "replaced",
            };
            metrics.network_applied("firewall", result);
            changes.push(HostChange::firewall_applied(&applied, &input));
            if applied != Applied::Unchanged {
                tracing::info!(
                    ?applied,
                    ports = input.ports.len(),
                    ms = t.elapsed().as_millis() as u64,
                    "firewall applied"
                );
            }
        }
        Err(e) => {
            metrics.network_applied("firewall", "error");
            tracing::error!(error = %e, "firewall not applied; the host keeps its rules");
            changes.push(HostChange::firewall_failed(e));
        }
    }
    changes
}
