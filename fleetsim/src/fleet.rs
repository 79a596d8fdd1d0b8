//! The simulated fleet: starts the hosts, and kills, partitions, heals and restarts them.
//!
//! Which hosts a control acts on is deterministic: hosts are taken evenly spaced over those it
//! can apply to, in index order, so a run can be repeated and the chosen hosts are spread over
//! racks and zones rather than bunched in one.

use crate::config::{ConfigError, SimConfig};
use crate::host::{Ctl, Mode, Shared, SimHost, run_host};
use crate::stats::SimStats;
use futures::StreamExt;
use prometheus_client::registry::Registry;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant, SystemTime};
use thiserror::Error;
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinHandle;
use yun_agent::metrics::AgentMetrics;
use yun_agent::reporter::Inventory;
use yun_fleet_etcd::{BusError, FleetBus};

/// etcd requests time out after this (as in the agent), so a silent etcd fails a session.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// Lease revocations in flight at once during shutdown.
const REVOKE_CONCURRENCY: usize = 64;

#[derive(Debug, Error)]
pub enum SimError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("cannot connect to etcd: {0}")]
    Connect(#[source] BusError),
    #[error("fraction {0} is outside 0..=1")]
    Fraction(f64),
}

/// A host a control acted on, and when.
pub type HostEvent = (String, SystemTime);

#[derive(Debug)]
struct Slot {
    ctl: watch::Sender<Ctl>,
    task: JoinHandle<Option<i64>>,
}

/// What `shutdown` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShutdownReport {
    pub leases_revoked: usize,
    pub revoke_failures: usize,
}

#[derive(Debug)]
pub struct SimFleet {
    shared: Arc<Shared>,
    buses: Vec<FleetBus>,
    slots: Vec<Slot>,
}

/// `n` of `candidates`, evenly spaced (each from the middle of its share of the list).
pub fn evenly_spaced<T: Copy>(candidates: &[T], n: usize) -> Vec<T> {
    let (len, n) = (candidates.len(), n.min(candidates.len()));
    (0..n)
        .filter_map(|k| candidates.get((2 * k + 1) * len / (2 * n)))
        .copied()
        .collect()
}

impl SimFleet {
    /// Connects, starts every host and waits (up to `cfg.ready_timeout`) until all have
    /// registered; [`SimFleet::stats`] says how many did.
    pub async fn start(cfg: SimConfig) -> Result<SimFleet, SimError> {
        cfg.validate()?;
        let mut buses = Vec::new();
        for _ in 0..cfg.connection_count() {
            let bus = FleetBus::connect(&cfg.etcd_endpoints, REQUEST_TIMEOUT, None)
                .await
                .map_err(SimError::Connect)?;
            buses.push(bus);
        }
        // The simulated hosts publish no template inventory (they cache no images).
        let inventory: Inventory = Arc::new(|| Ok(BTreeMap::new()));
        let shared = Arc::new(Shared {
            metrics: AgentMetrics::new(&mut Registry::default()),
            counters: Arc::default(),
            inventory,
            register_gate: Arc::new(Semaphore::new(cfg.register_concurrency)),
            cfg,
        });
        let slots = (0..shared.cfg.hosts)
            .zip(buses.iter().cycle())
            .map(|(index, bus)| {
                let (ctl, rx) = watch::channel(Ctl::START);
                let host = SimHost::new(index, shared.clone());
                let task = tokio::spawn(run_host(host, bus.clone(), rx));
                Slot { ctl, task }
            })
            .collect();
        let fleet = SimFleet {
            shared,
            buses,
            slots,
        };
        let all = i64::from(fleet.shared.cfg.hosts);
        fleet
            .wait_registered(all, fleet.shared.cfg.ready_timeout)
            .await;
        Ok(fleet)
    }

    pub fn config(&self) -> &SimConfig {
        &self.shared.cfg
    }

    pub fn host_name(&self, index: u32) -> String {
        self.shared.cfg.host_name(index)
    }

    /// Waits until at least `count` hosts are registered; false on timeout.
    pub async fn wait_registered(&self, count: i64, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            if self.shared.counters.registered.load(Ordering::Relaxed) >= count {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn indexes_in(&self, mode: Mode) -> Vec<usize> {
        (0..self.slots.len())
            .filter(|&i| self.slots[i].ctl.borrow().mode == mode)
            .collect()
    }

    fn apply(&self, chosen: Vec<usize>, change: impl Fn(&mut Ctl)) -> Vec<HostEvent> {
        chosen
            .into_iter()
            .map(|i| {
                self.slots[i].ctl.send_modify(&change);
                let name = u32::try_from(i).map(|i| self.host_name(i));
                (name.unwrap_or_default(), SystemTime::now())
            })
            .collect()
    }

    /// Kills `n` running hosts: they stop their keep-alives and never talk to etcd again, so
    /// their leases expire; their VMs vanish with them (their observations stay, as a dead
    /// host's would).
    pub fn kill(&mut self, n: usize) -> Vec<HostEvent> {
        let up = self.indexes_in(Mode::Run);
        self.apply(evenly_spaced(&up, n), |c| c.mode = Mode::Killed)
    }

    /// Cuts `fraction` of the running hosts off etcd until [`SimFleet::heal`]. Their VMs keep
    /// running; observations made meanwhile are written once they are back.
    pub fn partition(&mut self, fraction: f64) -> Result<Vec<HostEvent>, SimError> {
        if !(0.0..=1.0).contains(&fraction) {
            return Err(SimError::Fraction(fraction));
        }
        let up = self.indexes_in(Mode::Run);
        // Rounded to the nearest host; `up.len()` is far below 2^52, so the casts are exact.
        let n = (up.len() as f64 * fraction).round() as usize;
        Ok(self.apply(evenly_spaced(&up, n), |c| c.mode = Mode::Partitioned))
    }

    /// Reconnects every partitioned host: new lease, relist, resync.
    pub fn heal(&mut self) -> Vec<HostEvent> {
        let cut = self.indexes_in(Mode::Partitioned);
        self.apply(cut, |c| c.mode = Mode::Run)
    }

    /// Restarts the agent of `n` running hosts: the session ends and a new one starts at once
    /// (new lease, new `started_at`); their VMs are relisted, not re-created.
    pub fn restart(&mut self, n: usize) -> Vec<HostEvent> {
        let up = self.indexes_in(Mode::Run);
        self.apply(evenly_spaced(&up, n), |c| {
            c.restarts = c.restarts.wrapping_add(1);
        })
    }

    pub fn stats(&self) -> SimStats {
        let count = |mode: Mode| self.indexes_in(mode).len() as u64;
        self.shared.counters.snapshot(
            self.slots.len() as u64,
            count(Mode::Killed),
            count(Mode::Partitioned),
            self.shared.metrics.status_write_failures.get(),
        )
    }

    /// Stops every host. With `revoke_leases`, revokes the leases of the hosts' last sessions
    /// (killed hosts' included), so their info keys go at once and a next run starts clean;
    /// otherwise they expire after their TTL.
    pub async fn shutdown(self, revoke_leases: bool) -> ShutdownReport {
        self.shared.register_gate.close();
        for slot in &self.slots {
            slot.ctl.send_modify(|c| c.mode = Mode::Shutdown);
        }
        let mut leases = Vec::new();
        for slot in self.slots {
            if let Ok(Some(lease)) = slot.task.await {
                leases.push(lease);
            }
        }
        let mut report = ShutdownReport {
            leases_revoked: 0,
            revoke_failures: 0,
        };
        if !revoke_leases || self.buses.is_empty() {
            return report;
        }
        let buses = &self.buses;
        let mut revokes = futures::stream::iter(leases.into_iter().enumerate())
            .map(|(i, id)| async move { buses[i % buses.len()].revoke_lease(id).await })
            .buffer_unordered(REVOKE_CONCURRENCY);
        while let Some(result) = revokes.next().await {
            match result {
                Ok(()) => report.leases_revoked += 1,
                // Mostly leases that already expired (killed or partitioned hosts).
                Err(_) => report.revoke_failures += 1,
            }
        }
        report
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn picks_are_evenly_spaced_and_bounded() {
        let all: Vec<usize> = (0..20).collect();
        assert_eq!(evenly_spaced(&all, 2), vec![5, 15]);
        assert_eq!(evenly_spaced(&all, 4), vec![2, 7, 12, 17]);
        assert_eq!(evenly_spaced(&all, 25).len(), 20);
        assert!(evenly_spaced(&all, 0).is_empty());
        assert!(evenly_spaced::<usize>(&[], 3).is_empty());
    }
}
