//! The controller's in-memory picture of the fleet, built from one paged scan of etcd and kept
//! current by one ordered watch. Compact by design: the placement engine interns labels and
//! request shapes; per host this keeps only the allocation record and its revision, per VM the
//! few observed fields that status needs (no JSON documents are kept).

use crate::failure::{FailureConfig, FailureDetector};
use std::collections::HashMap;
use std::time::Instant;
use thiserror::Error;
use yun_fleet::{
    CodecError, HostAllocation, HostImages, HostInfo, HostKey, Placement, Resources, VmObserved,
    VmPhase, decode, keys,
};
use yun_placement::{Engine, EngineConfig, EngineError, HostSpec, HostState, Ratios};

/// The label every host carries with its own name (added by the controller, not the agent).
pub const HOST_NAME_LABEL: &str = "yun.dev/host";

#[derive(Debug, Error)]
pub enum IndexError {
    #[error(transparent)]
    Codec(#[from] CodecError),
    #[error("fleet index: {0}")]
    Engine(#[from] EngineError),
}

/// What a change did, for subscribers (event-driven status, benchmarks).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IndexEvent {
    HostReady(String),
    HostLost(String),
    Observed { uid: String, phase: VmPhase },
    ObservedGone { uid: String },
    Placed { uid: String, host: String },
    Released { uid: String },
}

/// Operator intent for a host, from its `Host` object.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct HostIntent {
    pub cordoned: bool,
    pub maintenance: bool,
    pub ratios: Ratios,
}

#[derive(Debug, Clone, Default)]
struct HostEntry {
    registered: bool,
    capacity: Resources,
    alloc: HostAllocation,
    alloc_rev: i64,
}

/// The observed fields VM status needs, without the record's JSON.
#[derive(Debug, Clone, PartialEq, Eq)]
struct ObservedLite {
    phase: VmPhase,
    generation: u64,
    started_at: Option<Box<str>>,
    domain_uuid: Option<Box<str>>,
    message: Option<Box<str>>,
    identity_generation: Option<u64>,
}

#[derive(Debug)]
pub struct FleetIndex {
    engine: Engine,
    hosts: HashMap<Box<str>, HostEntry>,
    intents: HashMap<Box<str>, HostIntent>,
    observed: HashMap<Box<str>, ObservedLite>,
    detector: FailureDetector,
    revision: i64,
}

impl FleetIndex {
    pub fn new(engine: EngineConfig, failure: FailureConfig) -> FleetIndex {
        FleetIndex {
            engine: Engine::new(engine),
            hosts: HashMap::new(),
            intents: HashMap::new(),
            observed: HashMap::new(),
            detector: FailureDetector::new(failure),
            revision: 0,
        }
    }

    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    pub fn engine_mut(&mut self) -> &mut Engine {
        &mut self.engine
    }

    pub fn detector_mut(&mut self) -> &mut FailureDetector {
        &mut self.detector
    }

    pub fn detector(&self) -> &FailureDetector {
        &self.detector
    }

    /// The etcd revision this index reflects.
    pub fn revision(&self) -> i64 {
        self.revision
    }

    pub fn host_count(&self) -> usize {
        self.hosts.len()
    }

    pub fn ready_hosts(&self) -> usize {
        self.hosts.values().filter(|h| h.registered).count()
    }

    pub fn vm_count(&self) -> usize {
        self.engine.vm_count()
    }

    /// Whether `host` holds its lease.
    pub fn host_alive(&self, host: &str) -> bool {
        self.hosts.get(host).is_some_and(|h| h.registered)
    }

    /// The host's allocation record and the revision that guards it (0 = never written).
    pub fn alloc(&self, host: &str) -> (HostAllocation, i64) {
        self.hosts
            .get(host)
            .map(|h| (h.alloc.clone(), h.alloc_rev))
            .unwrap_or_default()
    }

    /// The agent's latest observation of VM `uid`, rebuilt as a record.
    pub fn observed(&self, uid: &str) -> Option<VmObserved> {
        self.observed.get(uid).map(|o| VmObserved {
            v: yun_fleet::SCHEMA_VERSION,
            uid: uid.to_owned(),
            phase: o.phase,
            observed_generation: o.generation,
            domain_uuid: o.domain_uuid.as_deref().map(str::to_owned),
            started_at: o.started_at.as_deref().map(str::to_owned),
            message: o.message.as_deref().map(str::to_owned),
            updated_at: String::new(),
            identity_generation: o.identity_generation,
        })
    }

    /// Sets what the operator wants of a host (cordon, maintenance, ratios).
    pub fn set_intent(&mut self, host: &str, intent: HostIntent) {
        let before = self.intents.get(host).copied().unwrap_or_default();
        if before == intent {
            return;
        }
        if intent == HostIntent::default() {
            self.intents.remove(host);
        } else {
            self.intents.insert(host.into(), intent);
        }
        if let Some(entry) = self.hosts.get(host) {
            if before.ratios != intent.ratios {
                let spec = self.spec_of(host, entry.capacity);
                self.engine.upsert_host(spec);
            }
            self.refresh_state(host);
        }
    }

    pub fn intents(&self) -> impl Iterator<Item = (&str, &HostIntent)> {
        self.intents.iter().map(|(h, i)| (&**h, i))
    }

    fn spec_of(&self, host: &str, capacity: Resources) -> HostSpec {
        HostSpec {
            name: host.to_owned(),
            capacity,
            labels: Default::default(),
            ratios: self.intents.get(host).map(|i| i.ratios).unwrap_or_default(),
        }
    }

    fn wanted_state(&self, host: &str) -> HostState {
        let intent = self.intents.get(host).copied().unwrap_or_default();
        if !self.host_alive(host) {
            HostState::NotReady
        } else if intent.maintenance {
            HostState::Maintenance
        } else if intent.cordoned {
            HostState::Cordoned
        } else {
            HostState::Ready
        }
    }

    fn refresh_state(&mut self, host: &str) {
        let state = self.wanted_state(host);
        if self.engine.state(host).is_some_and(|s| s != state) {
            let _ = self.engine.set_state(host, state);
        }
    }

    /// Makes sure the engine knows `host` (a host with placements but no lease is kept as a
    /// zero-capacity NotReady host so its VMs are still counted).
    fn ensure_host(&mut self, host: &str) {
        if self.engine.state(host).is_none() {
            let spec = self.spec_of(host, Resources::default());
            self.engine.upsert_host(spec);
            let _ = self.engine.set_state(host, HostState::NotReady);
        }
        self.hosts.entry(host.into()).or_default();
    }

    /// Applies one key change at `mod_rev` (`value` None = deleted). Unknown keys are ignored.
    pub fn apply(
        &mut self,
        key: &str,
        value: Option<&[u8]>,
        mod_rev: i64,
        now: Instant,
    ) -> Result<Option<IndexEvent>, IndexError> {
        self.revision = self.revision.max(mod_rev);
        if let Some(uid) = key.strip_prefix(keys::PLACEMENTS_PREFIX) {
            return self.apply_placement(key, uid, value);
        }
        let Some(parsed) = HostKey::parse(key) else {
            return Ok(None);
        };
        Ok(match (parsed, value) {
            (HostKey::Info { host }, Some(bytes)) => {
                let info: HostInfo = decode(key, bytes)?;
                let capacity = Resources {
                    cpus: info.cpus,
                    memory_mib: info.memory_mib,
                    disk_gib: info.disk_gib,
                };
                let mut spec = self.spec_of(&host, capacity);
                spec.labels = info.labels;
                // Every host answers to its own name, so a VM can be pinned to the host that
                // holds its local volume with an ordinary selector.
                spec.labels.insert(HOST_NAME_LABEL.into(), host.clone());
                self.engine.upsert_host(spec);
                let entry = self.hosts.entry(host.as_str().into()).or_default();
                let was = std::mem::replace(&mut entry.registered, true);
                entry.capacity = capacity;
                self.refresh_state(&host);
                self.detector.set_known_hosts(self.hosts.len());
                self.detector.lease_back(&host, now);
                (!was).then_some(IndexEvent::HostReady(host))
            }
            (HostKey::Info { host }, None) => {
                let entry = self.hosts.entry(host.as_str().into()).or_default();
                let was = std::mem::replace(&mut entry.registered, false);
                self.refresh_state(&host);
                self.detector.lease_lost(&host, now);
                was.then_some(IndexEvent::HostLost(host))
            }
            (HostKey::Alloc { host }, value) => {
                let alloc = match value {
                    Some(bytes) => decode(key, bytes)?,
                    None => HostAllocation::default(),
                };
                let entry = self.hosts.entry(host.as_str().into()).or_default();
                if mod_rev >= entry.alloc_rev {
                    entry.alloc = alloc;
                    entry.alloc_rev = if value.is_some() { mod_rev } else { 0 };
                }
                self.detector.set_known_hosts(self.hosts.len());
                None
            }
            (HostKey::Images { host }, value) => {
                self.ensure_host(&host);
                let images = match value {
                    Some(bytes) => decode::<HostImages>(key, bytes)?.images,
                    None => Default::default(),
                };
                self.engine
                    .set_images(&host, images.keys().map(String::as_str))?;
                None
            }
            (HostKey::VmObserved { uid, .. }, Some(bytes)) => {
                let o: VmObserved = decode(key, bytes)?;
                let lite = ObservedLite {
                    phase: o.phase,
                    generation: o.observed_generation,
                    started_at: o.started_at.map(String::into_boxed_str),
                    domain_uuid: o.domain_uuid.map(String::into_boxed_str),
                    message: o.message.map(String::into_boxed_str),
                    identity_generation: o.identity_generation,
                };
                let phase = lite.phase;
                self.observed.insert(uid.as_str().into(), lite);
                Some(IndexEvent::Observed { uid, phase })
            }
            (HostKey::VmObserved { uid, .. }, None) => self
                .observed
                .remove(uid.as_str())
                .map(|_| IndexEvent::ObservedGone { uid }),
            // Desired records and network records are the controller's own writes.
            (
                HostKey::VmDesired { .. }
                | HostKey::Networks { .. }
                | HostKey::FwGroups { .. }
                | HostKey::FwMembers { .. },
                _,
            ) => None,
            // Volume reconciles read attachment records from etcd at one revision.
            (HostKey::VmVolume { .. }, _) => None,
        })
    }

    fn apply_placement(
        &mut self,
        key: &str,
        uid: &str,
        value: Option<&[u8]>,
    ) -> Result<Option<IndexEvent>, IndexError> {
        match value {
            Some(bytes) => {
                let p: Placement = decode(key, bytes)?;
                self.ensure_host(&p.host);
                self.engine
                    .assign(uid, &p.host, p.resources, &p.scheduling)?;
                Ok(Some(IndexEvent::Placed {
                    uid: uid.to_owned(),
                    host: p.host,
                }))
            }
            None => Ok(self.engine.unassign(uid).map(|_| IndexEvent::Released {
                uid: uid.to_owned(),
            })),
        }
    }

    /// Records a placement this controller just committed (before its watch event arrives).
    pub fn committed(&mut self, host: &str, new_alloc: HostAllocation, revision: i64) {
        let entry = self.hosts.entry(host.into()).or_default();
        if revision >= entry.alloc_rev {
            entry.alloc = new_alloc;
            entry.alloc_rev = revision;
        }
        self.revision = self.revision.max(revision);
    }

    /// After a full scan: hosts with records but no lease are silent as of now.
    pub fn finish_scan(&mut self, revision: i64, now: Instant) {
        self.revision = revision;
        self.detector.set_known_hosts(self.hosts.len());
        let silent: Vec<Box<str>> = self
            .hosts
            .iter()
            .filter(|(_, h)| !h.registered)
            .map(|(n, _)| n.clone())
            .collect();
        for host in silent {
            self.detector.lease_lost(&host, now);
        }
    }

    /// Carries operator intent over to a freshly scanned index.
    pub fn adopt_intents(&mut self, from: &FleetIndex) {
        for (host, intent) in from.intents() {
            self.set_intent(host, *intent);
        }
    }
}
