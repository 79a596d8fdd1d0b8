//! The controller's operations on the fleet bus: place, keep the desired record current,
//! read what the agent observed, and remove + release.

use crate::metrics::ControllerMetrics;
use crate::placement::{Candidate, NoFit, Ratios, choose};
use std::collections::{BTreeMap, BTreeSet};
use std::time::Instant;
use thiserror::Error;
use yun_fleet::{Placement, SCHEMA_VERSION, VmDesired, VmObserved};
use yun_fleet_etcd::{BusError, FleetBus, PlacementOutcome};

/// Placement gives up after this many lost races in a row (each re-reads and re-scores).
const MAX_PLACEMENT_ATTEMPTS: usize = 16;

#[derive(Debug, Error)]
pub enum FleetError {
    #[error(transparent)]
    Bus(#[from] BusError),
    #[error("placement of {uid} lost {attempts} races in a row; will retry")]
    Contended { uid: String, attempts: usize },
}

#[derive(Debug, Clone, PartialEq, Eq)]
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

#[derive(Debug, Clone)]
pub struct Fleet {
    pub bus: FleetBus,
    pub ratios: Ratios,
    pub metrics: Option<ControllerMetrics>,
}

impl Fleet {
    pub fn new(bus: FleetBus, metrics: Option<ControllerMetrics>) -> Fleet {
        Fleet {
            bus,
            ratios: Ratios::default(),
            metrics,
        }
    }

    fn timed(&self, op: &str, started: Instant) {
        if let Some(m) = &self.metrics {
            m.etcd_op(op, started);
        }
    }

    /// Places `vm` (idempotent: an already placed VM returns its host). Commits with a
    /// transaction guarded by the chosen host's allocation revision: a lost race re-scores.
    pub async fn place(
        &self,
        vm: &VmDesired,
        selector: &BTreeMap<String, String>,
        cordoned: &BTreeSet<String>,
    ) -> Result<PlaceResult, FleetError> {
        let started = Instant::now();
        let result = self.place_inner(vm, selector, cordoned).await;
        self.timed("place", started);
        result
    }

    async fn place_inner(
        &self,
        vm: &VmDesired,
        selector: &BTreeMap<String, String>,
        cordoned: &BTreeSet<String>,
    ) -> Result<PlaceResult, FleetError> {
        if let Some(p) = self.bus.placement(&vm.uid).await? {
            return Ok(PlaceResult::Placed { host: p.value.host });
        }
        for _ in 0..MAX_PLACEMENT_ATTEMPTS {
            let (hosts, _rev) = self.bus.fleet_view().await?;
            let candidates: Vec<Candidate<'_>> = hosts
                .values()
                .filter_map(|h| {
                    h.info.as_ref().map(|info| Candidate {
                        info,
                        alloc: &h.alloc.value,
                        cordoned: cordoned.contains(&info.name),
                    })
                })
                .collect();
            let host = match choose(&candidates, &vm.resources, selector, &self.ratios) {
                Ok(h) => h.to_owned(),
                Err(nofit) => return Ok(PlaceResult::NoFit(nofit)),
            };
            let alloc = &hosts[&host].alloc;
            let placement = Placement {
                v: SCHEMA_VERSION,
                host: host.clone(),
                resources: vm.resources,
            };
            match self
                .bus
                .commit_placement(
                    alloc.mod_revision,
                    &alloc.value.with(vm.resources),
                    vm,
                    &placement,
                )
                .await?
            {
                PlacementOutcome::Committed => {
                    tracing::info!(vm = %format!("{}/{}", vm.namespace, vm.name), host = %host, "placed");
                    return Ok(PlaceResult::Placed { host });
                }
                PlacementOutcome::AlreadyPlaced(p) => {
                    return Ok(PlaceResult::Placed { host: p.host });
                }
                PlacementOutcome::AllocationChanged => continue,
            }
        }
        Err(FleetError::Contended {
            uid: vm.uid.clone(),
            attempts: MAX_PLACEMENT_ATTEMPTS,
        })
    }

    /// Rewrites the desired record on `host` if it differs from `vm` (a spec change).
    pub async fn sync_desired(&self, host: &str, vm: &VmDesired) -> Result<(), FleetError> {
        let started = Instant::now();
        if self.bus.desired(host, &vm.uid).await?.as_ref() != Some(vm) {
            self.bus.put_desired(host, vm).await?;
        }
        self.timed("sync_desired", started);
        Ok(())
    }

    /// Whether `host` holds its lease, and the agent's latest observation of VM `uid` there.
    pub async fn state_on(&self, host: &str, uid: &str) -> Result<VmFleetState, FleetError> {
        let started = Instant::now();
        let host_alive = self.bus.host_info(host).await?.is_some();
        let observed = self.bus.observed(host, uid).await?;
        self.timed("read_state", started);
        Ok(VmFleetState {
            host: host.to_owned(),
            host_alive,
            observed,
        })
    }

    /// Drives removal of a VM: withdraw the desired record, wait for the agent to report the
    /// domain and files gone (it deletes its observed record), then release the resources.
    /// A host whose lease has expired cannot confirm; its resources are released at once and
    /// its agent removes the domain when it comes back and relists.
    pub async fn remove(&self, uid: &str) -> Result<RemoveProgress, FleetError> {
        let Some(p) = self.bus.placement(uid).await? else {
            return Ok(RemoveProgress::Done);
        };
        let host = p.value.host.clone();
        self.bus.delete_desired(&host, uid).await?;
        let alive = self.bus.host_info(&host).await?.is_some();
        if alive && self.bus.observed(&host, uid).await?.is_some() {
            return Ok(RemoveProgress::Waiting { host });
        }
        for _ in 0..MAX_PLACEMENT_ATTEMPTS {
            let alloc = self.bus.host_alloc(&host).await?;
            if self
                .bus
                .release(
                    alloc.mod_revision,
                    &alloc.value.without(p.value.resources),
                    &host,
                    uid,
                )
                .await?
            {
                tracing::info!(uid, host = %host, "resources released");
                return Ok(RemoveProgress::Done);
            }
        }
        Err(FleetError::Contended {
            uid: uid.to_owned(),
            attempts: MAX_PLACEMENT_ATTEMPTS,
        })
    }
}
