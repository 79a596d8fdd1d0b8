//! The engine's public vocabulary: hosts as the controller describes them, requests, decisions.

use std::collections::BTreeMap;
use yun_fleet::{HostAllocation, HostInfo, Resources, SCHEMA_VERSION, Scheduling};

/// Overcommit ratios, as in Nova's `cpu_allocation_ratio` family. They multiply only what
/// `Guaranteed` VMs leave of a host (see the crate docs for the QoS model).
///
/// A ratio that is negative, NaN or infinite is treated as `1.0` (no overcommit): a typo in a
/// host's configuration must not make it accept unbounded load.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Ratios {
    pub cpu: f64,
    pub memory: f64,
    pub disk: f64,
}

impl Default for Ratios {
    fn default() -> Self {
        Ratios {
            cpu: 4.0,
            memory: 1.0,
            disk: 1.0,
        }
    }
}

impl Ratios {
    /// The ratios the engine actually uses (see the type docs).
    pub(crate) fn sanitized(self) -> Ratios {
        fn one(r: f64) -> f64 {
            if r.is_finite() && r >= 0.0 { r } else { 1.0 }
        }
        Ratios {
            cpu: one(self.cpu),
            memory: one(self.memory),
            disk: one(self.disk),
        }
    }
}

/// How to choose among hosts that fit.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum Policy {
    /// Prefer the host that is fullest after placement (keeps whole hosts free).
    BinPack,
    /// Prefer the host that is emptiest after placement (spreads load and blast radius).
    #[default]
    Spread,
}

/// Whether a host takes new placements. Only `Ready` hosts do; VMs already assigned to a host
/// stay accounted for in every state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HostState {
    Ready,
    /// Taken out of placement by an operator.
    Cordoned,
    /// Being drained for maintenance.
    Maintenance,
    /// The agent's lease expired.
    NotReady,
}

/// Engine-wide settings.
#[derive(Debug, Clone, PartialEq)]
pub struct EngineConfig {
    /// Used when a request names no policy.
    pub default_policy: Policy,
    /// How many feasible hosts an indexed decision collects (in capacity order) before it
    /// scores them and stops looking. Larger is closer to the global optimum, and slower.
    pub candidates_per_decision: usize,
    /// Score bonus for a host that already caches the request's image. Policy scores lie in
    /// `[0, 1]` (the dominant share of the host used after placement, or one minus it), so a
    /// weight of `0.1` makes a cached image worth ten points of utilisation; `0` disables it.
    pub image_locality_weight: f64,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            default_policy: Policy::Spread,
            candidates_per_decision: 16,
            image_locality_weight: 0.1,
        }
    }
}

/// One host as placement sees it (from its `HostInfo` record and the `Host` object).
#[derive(Debug, Clone, PartialEq)]
pub struct HostSpec {
    pub name: String,
    pub capacity: Resources,
    /// Host labels; failure domains are read from `Topology::label()` keys.
    pub labels: BTreeMap<String, String>,
    pub ratios: Ratios,
}

impl HostSpec {
    /// The spec of a host from the record its agent publishes.
    pub fn from_info(info: &HostInfo, ratios: Ratios) -> HostSpec {
        HostSpec {
            name: info.name.clone(),
            capacity: Resources {
                cpus: info.cpus,
                memory_mib: info.memory_mib,
                disk_gib: info.disk_gib,
            },
            labels: info.labels.clone(),
            ratios,
        }
    }
}

/// What a VM asks of placement.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Request {
    pub resources: Resources,
    pub scheduling: Scheduling,
    /// Every pair must be among the host's labels.
    pub selector: BTreeMap<String, String>,
    /// sha256 of the VM's disk image, for the image-locality bonus.
    pub image: Option<String>,
    /// Overrides `EngineConfig::default_policy`.
    pub policy: Option<Policy>,
}

/// The chosen host and its score (policy score plus image bonus).
#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    pub host: String,
    pub score: f64,
}

/// What is committed on a host.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Allocation {
    /// All VMs, Guaranteed and Burstable.
    pub total: Resources,
    /// The part of `total` held by Guaranteed VMs.
    pub guaranteed: Resources,
    pub vms: u32,
}

impl Allocation {
    /// What Burstable VMs hold.
    pub fn burstable(&self) -> Resources {
        self.total.minus(self.guaranteed)
    }
}

impl From<Allocation> for HostAllocation {
    /// The fleet-bus record of a host's allocation.
    fn from(a: Allocation) -> HostAllocation {
        HostAllocation {
            v: SCHEMA_VERSION,
            cpus: a.total.cpus,
            memory_mib: a.total.memory_mib,
            disk_gib: a.total.disk_gib,
            vms: a.vms,
            guaranteed: a.guaranteed,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use yun_fleet::Qos;

    #[test]
    fn allocations_and_specs_convert_from_and_to_fleet_records() {
        let r = Resources {
            cpus: 2,
            memory_mib: 512,
            disk_gib: 3,
        };
        let a = Allocation {
            total: r.plus(r),
            guaranteed: r,
            vms: 2,
        };
        let want = HostAllocation::default()
            .with(r, Qos::Guaranteed)
            .with(r, Qos::Burstable);
        assert_eq!(HostAllocation::from(a), want);
        let info = HostInfo {
            v: SCHEMA_VERSION,
            name: "h".into(),
            cpus: 4,
            memory_mib: 1024,
            disk_gib: 10,
            labels: BTreeMap::from([("k".into(), "v".into())]),
            agent_version: "t".into(),
            virt_type: "qemu".into(),
            started_at: "t".into(),
            tunnel_ip: None,
            seal_key: None,
            metrics_address: None,
        };
        let spec = HostSpec::from_info(&info, Ratios::default());
        assert_eq!((spec.capacity.cpus, spec.labels.len()), (4, 1));
    }

    #[test]
    fn nonsense_ratios_mean_no_overcommit() {
        let r = Ratios {
            cpu: f64::NAN,
            memory: -1.0,
            disk: 2.5,
        }
        .sanitized();
        assert_eq!((r.cpu, r.memory, r.disk), (1.0, 1.0, 2.5));
    }
}
