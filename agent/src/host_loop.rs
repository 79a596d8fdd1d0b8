//! The host loop: runs fleet-bus sessions ([`crate::bus_session`]) with a fresh connection each,
//! and routes desired-VM changes to per-VM workers.
//!
//! Fail-static: any etcd failure ends the session, never the workers. Running domains, disks and
//! files stay exactly as they are while the loop reconnects with backoff, relists, and resumes.

use crate::bus_session::{HostRuntime, NetRecord, Registration, run_session};
use crate::config::{AgentConfig, MetricsAdvertise};
use crate::host_facts::read_capacity;
use crate::hypervisor::DomainInfo;
use crate::network::host_state::HostNetState;
use crate::vm_worker::{self, Command, WorkerCtx};
use std::collections::HashMap;
use std::time::Duration;
use tokio::sync::{mpsc, watch};
use yun_fleet::{HostInfo, SCHEMA_VERSION, VmDesired, VmObserved};
use yun_fleet_etcd::{BusError, BusTls, FleetBus};

const INITIAL_BACKOFF: Duration = Duration::from_millis(250);
const MAX_BACKOFF: Duration = Duration::from_secs(10);
/// etcd requests time out after this, so a silent etcd ends the session instead of hanging it.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

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
    /// The host's tenant networking as its records say, held in the channel the network
    /// worker reads: a change is made in place and wakes the worker only if it changed.
    net_tx: watch::Sender<HostNetState>,
}

impl HostLoop {
    pub fn new(
        cfg: AgentConfig,
        ctx: WorkerCtx,
        bus_tx: watch::Sender<Option<FleetBus>>,
    ) -> HostLoop {
        match cfg.metrics_advertise() {
            MetricsAdvertise::At(addr) => {
                tracing::info!(metrics_address = %addr, "published for Prometheus discovery")
            }
            MetricsAdvertise::Disabled => {
                tracing::info!("metrics_advertise = \"none\": not listed for Prometheus discovery")
            }
            MetricsAdvertise::Unknown(why) => tracing::warn!(
                "this host will not be discoverable by Prometheus: {why}; set metrics_advertise"
            ),
        }
        HostLoop {
            cfg,
            ctx,
            workers: HashMap::new(),
            bus_tx,
            started_at: jiff::Timestamp::now().to_string(),
            net_tx: watch::Sender::new(HostNetState::default()),
        }
    }

    /// Every change of the host's tenant networking (the network worker's input).
    pub fn network_updates(&self) -> watch::Receiver<HostNetState> {
        self.net_tx.subscribe()
    }

    /// Applies `change` to the host's network state; the worker wakes only if it changed.
    fn update_net(&self, change: impl FnOnce(&mut HostNetState) -> bool) {
        self.net_tx.send_if_modified(change);
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

    /// Runs sessions forever, reconnecting with capped exponential backoff. Sessions only ever
    /// end in an error, so the backoff never starts over: after a few failures an agent retries
    /// every [`MAX_BACKOFF`], which also spreads a whole fleet's reconnects.
    pub async fn run(mut self, mut shutdown: watch::Receiver<bool>) {
        let mut backoff = INITIAL_BACKOFF;
        loop {
            let error = tokio::select! {
                e = self.session() => e,
                _ = shutdown.changed() => return,
            };
            tracing::warn!(error = %error, retry_in_ms = backoff.as_millis() as u64,
                "fleet bus session ended; guests are left running");
            tokio::select! {
                _ = tokio::time::sleep(backoff) => {},
                _ = shutdown.changed() => return,
            }
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }

    /// One session on a fresh connection; returns why it ended. The TLS files are read again
    /// for every connection, so a renewed certificate is used from the next reconnect on.
    async fn session(&mut self) -> BusError {
        let connected = match BusTls::from_parts(
            self.cfg.etcd_ca.clone(),
            self.cfg.etcd_cert.clone(),
            self.cfg.etcd_key.clone(),
        ) {
            Ok(tls) => {
                FleetBus::connect(&self.cfg.etcd_endpoints, REQUEST_TIMEOUT, tls.as_ref()).await
            }
            Err(e) => Err(e.into()),
        };
        let bus = match connected {
            Ok(bus) => bus,
            Err(e) => {
                self.connected(None);
                return e;
            }
        };
        let host = self.cfg.host_name.clone();
        let ttl = self.cfg.lease_ttl_secs;
        run_session(&bus, &host, ttl, self).await
    }
}

impl HostRuntime for HostLoop {
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
            tunnel_ip: self.cfg.network.tunnel_address,
            seal_key: self.ctx.preparer.seal_public_key(),
            metrics_address: match self.cfg.metrics_advertise() {
                MetricsAdvertise::At(addr) => Some(addr),
                MetricsAdvertise::Disabled | MetricsAdvertise::Unknown(_) => None,
            },
        })
    }

    fn known_vms(&self) -> Vec<String> {
        self.workers.keys().cloned().collect()
    }

    /// The last observation goes first: a re-adopted VM keeps its original `started_at`.
    async fn apply(
        &mut self,
        uid: &str,
        vm: VmDesired,
        revision: i64,
        observed: Option<VmObserved>,
    ) {
        if let Some(observed) = observed {
            self.send(uid, Command::Recall(Box::new(observed))).await;
        }
        self.update_net(|net| net.set_vm(&vm));
        self.send(uid, Command::Apply(Box::new(vm), revision)).await;
    }

    async fn remove(&mut self, uid: &str) {
        self.update_net(|net| net.remove_vm(uid));
        self.send(uid, Command::Remove).await;
    }

    fn network_view(&mut self, view: yun_fleet_etcd::HostNetView) {
        self.update_net(|net| net.reset_records(view));
    }

    fn network_record(&mut self, change: NetRecord) {
        self.update_net(|net| match change {
            NetRecord::Networks(n) => net.set_networks(n),
            NetRecord::Groups(g) => net.set_groups(g),
            NetRecord::Members {
                group,
                shard,
                members,
            } => net.set_member_shard(&group, shard, members),
        });
    }

    fn connected(&mut self, session: Option<&Registration>) {
        match session {
            Some(s) => {
                let _ = self.bus_tx.send(Some(s.bus.clone()));
                self.ctx.metrics.etcd_connected.set(1);
                // Every registration republishes the template cache inventory.
                let _ = self
                    .ctx
                    .reports
                    .send(crate::reporter::Report::ImagesChanged);
            }
            None => {
                self.ctx.metrics.etcd_connected.set(0);
                let _ = self.bus_tx.send(None);
            }
        }
    }

    fn lease_refreshed(&mut self, result: &Result<i64, BusError>) {
        if result.is_err() {
            self.ctx.metrics.lease_refresh_failures.inc();
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
