//! One simulated host: the agent's real fleet-bus session ([`run_session`]) and reporter
//! ([`reporter::run`]) over a fake hypervisor, in a reconnect loop the simulator can kill,
//! partition and restart.
//!
//! Per host this costs one task, the session's lease keep-alive and watch streams, and — only
//! once the host has had a VM — one reporter task. Idle hosts wake only for keep-alives.

use crate::config::SimConfig;
use crate::hypervisor::FakeHypervisor;
use crate::stats::Counters;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, watch};
use yun_agent::bus_session::{HostRuntime, Registration, run_session};
use yun_agent::metrics::AgentMetrics;
use yun_agent::reporter::{self, Inventory, Report};
use yun_fleet::{HostInfo, SCHEMA_VERSION, VmDesired, VmObserved};
use yun_fleet_etcd::{BusError, FleetBus};

const INITIAL_BACKOFF: Duration = Duration::from_millis(250);
const MAX_BACKOFF: Duration = Duration::from_secs(10);

/// What the simulator wants a host to do; each host watches its own value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Ctl {
    pub mode: Mode,
    /// Bumping it restarts the "agent process": the session ends and a new one starts with a
    /// new `started_at`; the VMs stay.
    pub restarts: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    /// Stay registered.
    Run,
    /// Cannot reach etcd: the session is dropped and nothing is sent until `Run` again.
    Partitioned,
    /// Dead for good: the lease is left to expire, the VMs vanish with the host.
    Killed,
    /// The simulator is quitting.
    Shutdown,
}

impl Ctl {
    pub(crate) const START: Ctl = Ctl {
        mode: Mode::Run,
        restarts: 0,
    };
}

/// What all hosts share.
pub(crate) struct Shared {
    pub cfg: SimConfig,
    pub counters: Arc<Counters>,
    pub metrics: AgentMetrics,
    pub inventory: Inventory,
    /// Bounds the sessions registering at once.
    pub register_gate: Arc<Semaphore>,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("cfg", &self.cfg)
            .finish_non_exhaustive()
    }
}

/// The reporter task's inputs, created when the host first gets a VM.
#[derive(Debug)]
struct ReporterLink {
    reports: mpsc::UnboundedSender<Report>,
    bus: watch::Sender<Option<FleetBus>>,
}

#[derive(Debug)]
pub(crate) struct SimHost {
    index: u32,
    name: String,
    shared: Arc<Shared>,
    started_at: String,
    hv: FakeHypervisor,
    reporter: Option<ReporterLink>,
    /// The session's connection while registered.
    bus: Option<FleetBus>,
    /// The lease of the latest session (revoked at shutdown when asked).
    lease_id: Option<i64>,
    registered: bool,
    permit: Option<OwnedSemaphorePermit>,
}

impl SimHost {
    pub(crate) fn new(index: u32, shared: Arc<Shared>) -> SimHost {
        SimHost {
            index,
            name: shared.cfg.host_name(index),
            hv: FakeHypervisor::new(shared.counters.clone(), shared.cfg.boot_delay),
            shared,
            started_at: jiff::Timestamp::now().to_string(),
            reporter: None,
            bus: None,
            lease_id: None,
            registered: false,
            permit: None,
        }
    }

    fn reports(&mut self) -> mpsc::UnboundedSender<Report> {
        let link = self.reporter.get_or_insert_with(|| {
            let (reports, rx) = mpsc::unbounded_channel();
            let (bus, bus_rx) = watch::channel(self.bus.clone());
            tokio::spawn(reporter::run(
                self.name.clone(),
                rx,
                bus_rx,
                self.shared.metrics.clone(),
                self.shared.inventory.clone(),
            ));
            ReporterLink { reports, bus }
        });
        link.reports.clone()
    }

    /// One session, after waiting for a registration slot.
    async fn session(&mut self, bus: &FleetBus) -> BusError {
        match self.shared.register_gate.clone().acquire_owned().await {
            Ok(permit) => self.permit = Some(permit),
            Err(_) => {
                return BusError::WatchClosed {
                    prefix: self.name.clone(),
                    reason: "simulator is shutting down".into(),
                };
            }
        }
        let (name, ttl) = (self.name.clone(), self.shared.cfg.lease_ttl_secs);
        run_session(bus, &name, ttl, self).await
    }

    /// The host's VMs and reporter end with it.
    fn stop(&mut self) {
        self.connected(None);
        self.hv.clear();
        self.reporter = None;
    }
}

impl HostRuntime for SimHost {
    fn host_info(&self) -> Result<HostInfo, BusError> {
        let cap = self.shared.cfg.capacity;
        Ok(HostInfo {
            v: SCHEMA_VERSION,
            name: self.name.clone(),
            cpus: cap.cpus,
            memory_mib: cap.memory_mib,
            disk_gib: cap.disk_gib,
            labels: self.shared.cfg.labels(self.index),
            agent_version: concat!(env!("CARGO_PKG_VERSION"), "-fleetsim").into(),
            virt_type: "sim".into(),
            started_at: self.started_at.clone(),
            tunnel_ip: None,
            seal_key: None,
            metrics_address: None,
        })
    }

    fn known_vms(&self) -> Vec<String> {
        self.hv.uids()
    }

    async fn apply(
        &mut self,
        _uid: &str,
        vm: VmDesired,
        _revision: i64,
        observed: Option<VmObserved>,
    ) {
        let reports = self.reports();
        self.hv.apply(&vm, observed.as_ref(), &reports);
    }

    async fn remove(&mut self, uid: &str) {
        let reports = self.reports();
        self.hv.remove(uid, &reports);
    }

    fn connected(&mut self, session: Option<&Registration>) {
        self.permit = None;
        let counters = &self.shared.counters;
        match session {
            Some(s) => {
                if !self.registered {
                    Counters::add(&counters.registered, 1);
                }
                Counters::inc(&counters.sessions_started);
                self.registered = true;
                self.lease_id = Some(s.lease_id);
                self.bus = Some(s.bus.clone());
            }
            None => {
                if self.registered {
                    Counters::add(&counters.registered, -1);
                }
                self.registered = false;
                self.bus = None;
            }
        }
        if let Some(link) = &self.reporter {
            let _ = link.bus.send(self.bus.clone());
        }
    }

    fn lease_refreshed(&mut self, result: &Result<i64, BusError>) {
        let counters = &self.shared.counters;
        match result {
            Ok(_) => Counters::inc(&counters.keepalives),
            Err(_) => Counters::inc(&counters.keepalive_failures),
        }
    }
}

/// Runs the host until it is killed or the simulator shuts down; returns its last lease.
///
/// Reconnects like the agent's `HostLoop`: the backoff doubles from 250 ms to 10 s and never
/// starts over (sessions only end in errors), except when the "agent process" restarts.
pub(crate) async fn run_host(
    mut host: SimHost,
    bus: FleetBus,
    mut ctl: watch::Receiver<Ctl>,
) -> Option<i64> {
    let mut backoff = INITIAL_BACKOFF;
    let mut restarts = 0;
    loop {
        let now = *ctl.borrow_and_update();
        if now.restarts != restarts {
            // A new agent process: new start time, fresh backoff.
            restarts = now.restarts;
            host.started_at = jiff::Timestamp::now().to_string();
            backoff = INITIAL_BACKOFF;
        }
        match now.mode {
            Mode::Killed | Mode::Shutdown => break,
            Mode::Partitioned => {
                if ctl.changed().await.is_err() {
                    break;
                }
                continue;
            }
            Mode::Run => {}
        }
        let ended = tokio::select! {
            err = host.session(&bus) => Some(err),
            changed = ctl.changed() => {
                if changed.is_err() {
                    break;
                }
                None
            }
        };
        // A dropped session never got to say so.
        host.connected(None);
        let Some(err) = ended else {
            continue;
        };
        Counters::inc(&host.shared.counters.session_errors);
        tracing::warn!(host = %host.name, error = %err, retry_in_ms = backoff.as_millis() as u64,
            "simulated host's fleet bus session ended");
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            changed = ctl.changed() => if changed.is_err() { break },
        }
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
    host.stop();
    host.lease_id
}
