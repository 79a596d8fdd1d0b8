//! The controller's operations on the fleet bus: place, keep the desired record current,
//! read what the agent observed, and remove + release.
//!
//! Placement and reads go through the fleet index (kept current by one watch), never through a
//! scan of etcd: a decision costs the same at 50 hosts and at 50,000.

use crate::audit::{Audit, vm_object};
use crate::failure::FailureConfig;
use crate::fencing::NoFencing;
use crate::fleet_index::{
    FailureHooks, FleetIndexHandle, HostIntent, Placed, ScheduleError, Scheduler,
};
use crate::identity::Identity;
use crate::metrics::ControllerMetrics;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use thiserror::Error;
use tokio::sync::watch;
use yun_audit::Outcome;
use yun_fleet::{Scheduling, VmDesired, VmObserved};
use yun_fleet_etcd::{BusError, FleetBus};
use yun_placement::{EngineConfig, NoFit, Request};

/// Release gives up after this many lost races in a row (each re-reads the allocation).
const MAX_RELEASE_ATTEMPTS: usize = 16;

/// How long a reconcile waits for the fleet index's first load before giving up (and retrying).
const SYNC_WAIT: Duration = Duration::from_secs(10);

#[derive(Debug, Error)]
pub enum FleetError {
    #[error(transparent)]
    Bus(#[from] BusError),
    #[error("{uid}: {why}; will retry")]
    Contended { uid: String, why: String },
    #[error("the fleet index has not loaded from etcd yet; will retry")]
    NotSynced,
    #[error("{uid}: revoking its Keystone identity: {why}; will retry")]
    Identity { uid: String, why: String },
}

impl From<ScheduleError> for FleetError {
    fn from(e: ScheduleError) -> Self {
        match e {
            ScheduleError::Bus(b) => FleetError::Bus(b),
            other => FleetError::Contended {
                uid: String::new(),
                why: other.to_string(),
            },
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum PlaceResult {
    Placed { host: String },
    NoFit(NoFit),
}

/// Where a removal stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RemoveProgress {
    /// The agent is still tearing the VM down.
    Waiting { host: String },
    /// Domain and files gone (or the VM was never placed); resources released.
    Done,
}

/// What the fleet knows about one VM.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VmFleetState {
    pub host: String,
    pub host_alive: bool,
    pub observed: Option<VmObserved>,
}

/// The placement request for a VM record.
pub fn request_for(
    vm: &VmDesired,
    selector: &BTreeMap<String, String>,
    scheduling: Scheduling,
) -> Request {
    Request {
        resources: vm.resources,
        scheduling,
        selector: selector.clone(),
        image: Some(vm.image.disk.sha256.clone()),
        policy: None,
    }
}

#[derive(Debug, Clone)]
pub struct Fleet {
    pub bus: FleetBus,
    pub index: FleetIndexHandle,
    scheduler: Scheduler,
    pub metrics: Option<ControllerMetrics>,
    /// Where committed placements and releases are recorded.
    pub audit: Audit,
    /// Keystone: tenant checks and VM identities (disabled without credentials).
    pub identity: Identity,
    /// Dropping the last clone stops the index sync task.
    _stop: Arc<watch::Sender<bool>>,
}

impl Fleet {
    /// Starts the fleet index (scan + watch) and the placement pipeline on `bus`.
    pub fn start(bus: FleetBus, metrics: Option<ControllerMetrics>) -> Fleet {
        Fleet::start_with(
            bus,
            metrics,
            EngineConfig::default(),
            FailureConfig::default(),
        )
    }

    pub fn start_with(
        bus: FleetBus,
        metrics: Option<ControllerMetrics>,
        engine: EngineConfig,
        failure: FailureConfig,
    ) -> Fleet {
        let index = FleetIndexHandle::new(engine, failure);
        let (stop_tx, stop_rx) = watch::channel(false);
        let hooks = FailureHooks {
            fence: Arc::new(NoFencing),
            evacuate: Arc::new(NoFencing),
            metrics: metrics.clone(),
        };
        tokio::spawn(crate::fleet_index::sync::run(
            bus.clone(),
            index.clone(),
            hooks,
            stop_rx,
        ));
        let scheduler = Scheduler::start(bus.clone(), index.clone());
        Fleet {
            bus,
            index,
            scheduler,
            metrics,
            audit: Audit::disabled(),
            identity: Identity::disabled(),
            _stop: Arc::new(stop_tx),
        }
    }

    /// Records committed placements and releases in `audit`.
    pub fn with_audit(mut self, audit: Audit) -> Fleet {
        self.audit = audit;
        self
    }

    /// Checks tenants and issues VM identities with `identity`.
    pub fn with_identity(mut self, identity: Identity) -> Fleet {
        self.identity = identity;
        self
    }

    /// The host VM `uid` is placed on, from the index (`None`: not placed yet).
    pub async fn placed_host(&self, uid: &str) -> Result<Option<String>, FleetError> {
        self.synced().await?;
        Ok(self.index.lock().engine().host_of(uid).map(str::to_owned))
    }

    fn timed(&self, op: &str, started: Instant) {
        if let Some(m) = &self.metrics {
            m.etcd_op(op, started);
        }
    }

    async fn synced(&self) -> Result<(), FleetError> {
        if self.index.is_synced() {
            return Ok(());
        }
        tokio::time::timeout(SYNC_WAIT, self.index.wait_synced())
            .await
            .map_err(|_| FleetError::NotSynced)
    }

    /// Replaces the operator intent of every host (hosts not listed get the defaults).
    pub fn set_intents(&self, intents: &BTreeMap<String, HostIntent>) {
        let mut index = self.index.lock();
        let stale: Vec<String> = index
            .intents()
            .filter(|(h, _)| !intents.contains_key(*h))
            .map(|(h, _)| h.to_owned())
            .collect();
        for host in stale {
            index.set_intent(&host, HostIntent::default());
        }
        for (host, intent) in intents {
            index.set_intent(host, *intent);
        }
    }

    /// Places `vm` (idempotent: an already placed VM returns its host).
    pub async fn place(&self, vm: &VmDesired, request: Request) -> Result<PlaceResult, FleetError> {
        self.synced().await?;
        // Placing is idempotent: only a VM the index did not place yet is a new placement
        // (looked up only when there is a trail to record it in).
        let fresh =
            self.audit.is_enabled() && self.index.lock().engine().host_of(&vm.uid).is_none();
        let started = Instant::now();
        let result = self.scheduler.place(vm.clone(), request).await;
        self.timed("place", started);
        match result {
            Ok(Placed::Placed { host }) => {
                if fresh {
                    let details = [
                        ("host", host.as_str().into()),
                        ("uid", vm.uid.as_str().into()),
                    ];
                    self.audit
                        .record(
                            "vm.place",
                            vm_object(&vm.namespace, &vm.name),
                            Outcome::Ok,
                            &details,
                        )
                        .await;
                }
                Ok(PlaceResult::Placed { host })
            }
            Ok(Placed::NoFit(n)) => Ok(PlaceResult::NoFit(n)),
            Err(ScheduleError::Contended { uid, attempts }) => Err(FleetError::Contended {
                uid,
                why: format!("placement lost {attempts} races in a row"),
            }),
            Err(e) => Err(e.into()),
        }
    }

    /// The desired record of VM `uid` on `host`, as etcd holds it now.
    pub async fn desired_on(&self, host: &str, uid: &str) -> Result<Option<VmDesired>, FleetError> {
        let started = Instant::now();
        let current = self.bus.desired(host, uid).await?;
        self.timed("read_desired", started);
        Ok(current)
    }

    /// Rewrites the desired record on `host` if it differs from `vm` (a spec change);
    /// `current` is what [`Fleet::desired_on`] returned in this pass.
    pub async fn sync_desired(
        &self,
        host: &str,
        vm: &VmDesired,
        current: Option<&VmDesired>,
    ) -> Result<(), FleetError> {
        let started = Instant::now();
        if current != Some(vm) {
            self.bus.put_desired(host, vm).await?;
        }
        self.timed("sync_desired", started);
        Ok(())
    }

    /// Whether `host` holds its lease, and the agent's latest observation of VM `uid` there,
    /// from the index.
    pub async fn state_on(&self, host: &str, uid: &str) -> Result<VmFleetState, FleetError> {
        self.synced().await?;
        let index = self.index.lock();
        Ok(VmFleetState {
            host: host.to_owned(),
            host_alive: index.host_alive(host),
            observed: index.observed(uid),
        })
    }

    /// Drives removal of a VM: withdraw the desired record, wait for the agent to report the
    /// domain and files gone (it deletes its observed record), then release the resources.
    /// A host whose lease has expired cannot confirm; its resources are released at once and
    /// its agent removes the domain when it comes back and relists.
    /// `object` names the VM in the audit record of the release.
    pub async fn remove(&self, uid: &str, object: &str) -> Result<RemoveProgress, FleetError> {
        let Some(p) = self.bus.placement(uid).await? else {
            return Ok(RemoveProgress::Done);
        };
        let host = p.value.host.clone();
        self.bus.delete_desired(&host, uid).await?;
        let alive = self.bus.host_info(&host).await?.is_some();
        if alive && self.bus.observed(&host, uid).await?.is_some() {
            return Ok(RemoveProgress::Waiting { host });
        }
        let qos = p.value.scheduling.qos;
        for _ in 0..MAX_RELEASE_ATTEMPTS {
            let alloc = self.bus.host_alloc(&host).await?;
            let released = alloc.value.without(p.value.resources, qos);
            if self
                .bus
                .release(alloc.mod_revision, &released, &host, uid)
                .await?
            {
                tracing::info!(uid, host = %host, "resources released");
                let details = [("host", host.as_str().into()), ("uid", uid.into())];
                self.audit
                    .record("vm.release", object.to_owned(), Outcome::Ok, &details)
                    .await;
                return Ok(RemoveProgress::Done);
            }
        }
        Err(FleetError::Contended {
            uid: uid.to_owned(),
            why: format!("release lost {MAX_RELEASE_ATTEMPTS} races in a row"),
        })
    }
}
