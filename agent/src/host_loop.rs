//! The host loop: registers the host under a lease, lists and watches only this host's prefix,
//! and routes desired-VM changes to per-VM workers.
//!
//! Fail-static: any etcd failure ends the session, never the workers. Running domains, disks and
//! files stay exactly as they are while the loop reconnects with backoff, relists, and resumes.

use crate::config::AgentConfig;
use crate::host_facts::read_capacity;
use crate::hypervisor::DomainInfo;
use crate::vm_worker::{self, Command, WorkerCtx};
use std::collections::HashMap;
use std::time::Duration;
use tokio::sync::{mpsc, watch};
use yun_fleet::{HostInfo, HostKey, SCHEMA_VERSION, VmDesired, decode};
use yun_fleet_etcd::{BusError, EventKind, FleetBus};

#[derive(Debug)]
struct WorkerHandle {
    tx: mpsc::Sender<Command>,
}

/// Per-VM workers, keyed by uid.
#[derive(Debug)]
pub struct HostLoop {
    cfg: AgentConfig,
    ctx: WorkerCtx,
    workers: HashMap<String, WorkerHandle>,
    bus_tx: watch::Sender<Option<FleetBus>>,
    started_at: String,
}

impl HostLoop {
    pub fn new(
        cfg: AgentConfig,
        ctx: WorkerCtx,
        bus_tx: watch::Sender<Option<FleetBus>>,
    ) -> HostLoop {
        HostLoop {
            cfg,
            ctx,
            workers: HashMap::new(),
            bus_tx,
            started_at: jiff::Timestamp::now().to_string(),
        }
    }

    /// Starts a worker for every Yun domain libvirt already has, before etcd is even reached:
    /// an agent restart re-adopts running guests and never restarts them.
    ///
    /// Only domains whose files live in this agent's `state_dir` are adopted: another agent
    /// sharing the libvirt daemon (a test or bench harness, a second state dir) owns its own
    /// domains, and adopting them would lead this agent to delete them as "not desired here".
    pub fn adopt(&mut self, domains: Vec<DomainInfo>) {
        for (uid, d) in adoptable(domains, |uid| self.cfg.vm_dir(uid).is_dir()) {
            self.spawn_worker(uid, Some(d));
        }
    }

    fn spawn_worker(&mut self, uid: String, adopted: Option<DomainInfo>) -> &WorkerHandle {
        self.workers.retain(|_, w| !w.tx.is_closed());
        self.workers.entry(uid.clone()).or_insert_with(|| {
            let (tx, rx) = mpsc::channel(8);
            tokio::spawn(vm_worker::run(uid, self.ctx.clone(), rx, adopted));
            WorkerHandle { tx }
        })
    }

    async fn send(&mut self, uid: &str, cmd: Command) {
        let removing = matches!(cmd, Command::Remove);
        if removing && !self.workers.contains_key(uid) {
            return;
        }
        let tx = self.spawn_worker(uid.to_owned(), None).tx.clone();
        if tx.send(cmd).await.is_err() {
            tracing::warn!(uid, "VM worker has exited; command dropped");
        }
    }

    /// Runs sessions forever, reconnecting with capped exponential backoff.
    pub async fn run(mut self, mut shutdown: watch::Receiver<bool>) {
        let mut backoff = Duration::from_millis(250);
        loop {
            let result = tokio::select! {
                r = self.session() => r,
                _ = shutdown.changed() => return,
            };
            self.ctx.metrics.etcd_connected.set(0);
            let _ = self.bus_tx.send(None);
            match result {
                Ok(()) => backoff = Duration::from_millis(250),
                Err(e) => {
                    tracing::warn!(error = %e, retry_in_ms = backoff.as_millis() as u64,
                        "fleet bus session ended; guests are left running");
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(backoff) => {},
                _ = shutdown.changed() => return,
            }
            backoff = (backoff * 2).min(Duration::from_secs(10));
        }
    }

    fn host_info(&self) -> Result<HostInfo, BusError> {
        let cap = read_capacity(&self.cfg.state_dir).map_err(|e| BusError::WatchClosed {
            prefix: "host facts".into(),
            reason: e.to_string(),
        })?;
        Ok(HostInfo {
            v: SCHEMA_VERSION,
            name: self.cfg.host_name.clone(),
            cpus: cap.cpus,
            memory_mib: cap.memory_mib,
            disk_gib: cap.disk_gib,
            labels: self.cfg.labels.clone(),
            agent_version: env!("CARGO_PKG_VERSION").into(),
            virt_type: self.ctx.virt_type.as_str().into(),
            started_at: self.started_at.clone(),
        })
    }

    async fn session(&mut self) -> Result<(), BusError> {
        let host = self.cfg.host_name.clone();
        let bus = FleetBus::connect(&self.cfg.etcd_endpoints, Duration::from_secs(5)).await?;
        let mut lease = bus.grant_lease(self.cfg.lease_ttl_secs).await?;
        bus.put_host_info(&self.host_info()?, &lease).await?;
        let (view, revision) = bus.host_view(&host).await?;
        let prefix = yun_fleet::keys::host_vms_prefix(&host)?;
        let mut watch = bus.watch_prefix(&prefix, revision + 1).await?;
        let _ = self.bus_tx.send(Some(bus.clone()));
        self.ctx.metrics.etcd_connected.set(1);
        tracing::info!(host = %host, vms = view.desired.len(), revision, "registered on the fleet bus");

        let _ = self
            .ctx
            .reports
            .send(crate::reporter::Report::ImagesChanged);
        // Full sync: apply everything desired; remove what runs here but is no longer desired.
        let known: Vec<String> = self.workers.keys().cloned().collect();
        for uid in known.iter().filter(|u| !view.desired.contains_key(*u)) {
            self.send(uid, Command::Remove).await;
        }
        for (uid, stored) in view.desired {
            if let Some(observed) = view.observed.get(&uid) {
                self.send(&uid, Command::Recall(Box::new(observed.clone())))
                    .await;
            }
            self.send(&uid, Command::Apply(Box::new(stored.value)))
                .await;
        }

        let heartbeat = Duration::from_secs((self.cfg.lease_ttl_secs / 3).max(1) as u64);
        let mut ticker = tokio::time::interval(heartbeat);
        loop {
            tokio::select! {
                events = watch.next() => {
                    for ev in events? {
                        match (HostKey::parse(&ev.key), ev.kind) {
                            (Some(HostKey::VmDesired { uid, .. }), EventKind::Put(bytes)) => {
                                match decode::<VmDesired>(&ev.key, &bytes) {
                                    Ok(vm) => self.send(&uid, Command::Apply(Box::new(vm))).await,
                                    Err(e) => tracing::error!(error = %e, "ignoring undecodable desired VM record"),
                                }
                            }
                            (Some(HostKey::VmDesired { uid, .. }), EventKind::Delete) => {
                                self.send(&uid, Command::Remove).await;
                            }
                            _ => {}
                        }
                    }
                }
                _ = ticker.tick() => {
                    if let Err(e) = lease.refresh().await {
                        self.ctx.metrics.lease_refresh_failures.inc();
                        return Err(e);
                    }
                }
            }
        }
    }
}

/// The Yun domains among `domains` that this agent owns, by uid.
fn adoptable(domains: Vec<DomainInfo>, owns: impl Fn(&str) -> bool) -> Vec<(String, DomainInfo)> {
    domains
        .into_iter()
        .filter_map(|d| {
            let uid = d.uid()?.to_owned();
            if owns(&uid) {
                Some((uid, d))
            } else {
                tracing::debug!(domain = %d.name, "not adopting a Yun domain whose files are outside our state_dir");
                None
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hypervisor::{DomainState, YunMetadata};

    fn domain(uid: Option<&str>) -> DomainInfo {
        DomainInfo {
            name: format!("yun-{}", uid.unwrap_or("x")),
            uuid: "u".into(),
            state: DomainState::Running,
            meta: uid.map(|u| YunMetadata {
                uid: u.into(),
                namespace: "default".into(),
                vm_name: "vm".into(),
                generation: 1,
            }),
        }
    }

    #[test]
    fn adopts_only_own_yun_domains() {
        let got = adoptable(
            vec![domain(Some("mine")), domain(Some("theirs")), domain(None)],
            |uid| uid == "mine",
        );
        let uids: Vec<&str> = got.iter().map(|(u, _)| u.as_str()).collect();
        assert_eq!(uids, vec!["mine"]);
    }
}
