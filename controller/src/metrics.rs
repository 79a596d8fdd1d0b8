//! The controller's Prometheus metrics: reconciles, durations and errors by kind, VMs and
//! Volumes by phase, and fleet-bus (etcd) latency by operation. Labels are small fixed sets.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use std::collections::BTreeMap;
use std::time::Instant;
use yun_crds::VolumePhase;
use yun_fleet::VmPhase;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindResult {
    pub kind: String,
    pub result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabel {
    pub kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PhaseLabel {
    pub phase: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OpLabel {
    pub op: String,
}

fn latency_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.0005, 2.0, 16))
}

#[derive(Debug, Clone)]
pub struct ControllerMetrics {
    pub reconciles: Family<KindResult, Counter>,
    pub reconcile_seconds: Family<KindLabel, Histogram, fn() -> Histogram>,
    pub invalid_manifests: Counter,
    pub vms: Family<PhaseLabel, Gauge>,
    pub etcd_seconds: Family<OpLabel, Histogram, fn() -> Histogram>,
    pub leader: Gauge,
    /// 1 while many hosts are silent at once (a suspected control-plane partition).
    pub partition_suspected: Gauge,
    /// Hosts on the fleet bus, by `state` (ready, not_ready).
    pub hosts: Family<StateLabel, Gauge>,
    /// Volumes by attachment phase (the `YunVolumeAttachmentStuck` alert's source).
    pub volumes: Family<PhaseLabel, Gauge>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StateLabel {
    pub state: String,
}

impl ControllerMetrics {
    pub fn new(registry: &mut Registry) -> ControllerMetrics {
        let m = ControllerMetrics {
            reconciles: Family::default(),
            reconcile_seconds: Family::new_with_constructor(latency_histogram),
            invalid_manifests: Counter::default(),
            vms: Family::default(),
            etcd_seconds: Family::new_with_constructor(latency_histogram),
            leader: Gauge::default(),
            partition_suspected: Gauge::default(),
            hosts: Family::default(),
            volumes: Family::default(),
        };
        let r = registry.sub_registry_with_prefix("yun_controller");
        r.register(
            "reconciles",
            "Reconcile steps by kind and result (ok, error)",
            m.reconciles.clone(),
        );
        r.register(
            "reconcile_duration_seconds",
            "Duration of reconcile steps by kind",
            m.reconcile_seconds.clone(),
        );
        r.register(
            "invalid_manifests",
            "Manifests refused by validation (nothing reached etcd)",
            m.invalid_manifests.clone(),
        );
        r.register("vms", "VirtualMachines by phase", m.vms.clone());
        r.register(
            "etcd_request_duration_seconds",
            "Fleet-bus operation latency by operation",
            m.etcd_seconds.clone(),
        );
        r.register(
            "leader",
            "1 while this controller holds leadership",
            m.leader.clone(),
        );
        r.register(
            "fleet_partition_suspected",
            "1 while more than the configured fraction of hosts are silent at once: no host is fenced or evacuated while it lasts",
            m.partition_suspected.clone(),
        );
        r.register(
            "fleet_hosts",
            "Hosts known to the fleet index by state (ready, not_ready)",
            m.hosts.clone(),
        );
        r.register(
            "volumes",
            "Volumes by attachment phase (Detached, Attaching, Attached, Detaching, Failed)",
            m.volumes.clone(),
        );
        m
    }

    pub fn set_hosts(&self, ready: usize, known: usize) {
        for (state, n) in [("ready", ready), ("not_ready", known.saturating_sub(ready))] {
            self.hosts
                .get_or_create(&StateLabel {
                    state: state.into(),
                })
                .set(n as i64);
        }
    }

    /// Records one reconcile step of `kind` that started at `started`.
    pub fn reconciled(&self, kind: &str, started: Instant, ok: bool) {
        let result = if ok { "ok" } else { "error" };
        self.reconciles
            .get_or_create(&KindResult {
                kind: kind.into(),
                result: result.into(),
            })
            .inc();
        self.reconcile_seconds
            .get_or_create(&KindLabel { kind: kind.into() })
            .observe(started.elapsed().as_secs_f64());
    }

    pub fn etcd_op(&self, op: &str, started: Instant) {
        self.etcd_seconds
            .get_or_create(&OpLabel { op: op.into() })
            .observe(started.elapsed().as_secs_f64());
    }

    /// Replaces the VMs-by-phase gauge with a fresh count (every phase is always exported).
    pub fn set_vm_phases(&self, counts: &BTreeMap<VmPhase, i64>) {
        for phase in VmPhase::ALL {
            let n = counts.get(&phase).copied().unwrap_or(0);
            self.vms
                .get_or_create(&PhaseLabel {
                    phase: phase.as_str().into(),
                })
                .set(n);
        }
    }

    /// Replaces the Volumes-by-phase gauge with a count of `phases` (one per Volume; `None`,
    /// no status yet, counts as `Detached`). Every phase is always exported.
    pub fn set_volume_phases(&self, phases: impl IntoIterator<Item = Option<VolumePhase>>) {
        let mut counts: BTreeMap<VolumePhase, i64> = BTreeMap::new();
        for phase in phases {
            *counts
                .entry(phase.unwrap_or(VolumePhase::Detached))
                .or_default() += 1;
        }
        for phase in VolumePhase::ALL {
            self.volumes
                .get_or_create(&PhaseLabel {
                    phase: phase.as_str().into(),
                })
                .set(counts.get(&phase).copied().unwrap_or(0));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exposition(registry: &Registry) -> String {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, registry).unwrap();
        text
    }

    #[test]
    fn volumes_are_counted_by_phase_with_every_phase_exported() {
        let mut registry = Registry::default();
        let m = ControllerMetrics::new(&mut registry);
        m.set_volume_phases([
            Some(VolumePhase::Attached),
            Some(VolumePhase::Attaching),
            Some(VolumePhase::Attached),
            None,
        ]);
        let text = exposition(&registry);
        for line in [
            "yun_controller_volumes{phase=\"Attached\"} 2",
            "yun_controller_volumes{phase=\"Attaching\"} 1",
            "yun_controller_volumes{phase=\"Detached\"} 1",
            "yun_controller_volumes{phase=\"Detaching\"} 0",
            "yun_controller_volumes{phase=\"Failed\"} 0",
        ] {
            assert!(text.contains(line), "{line} missing from\n{text}");
        }
        // A recount replaces the old one: a volume that settled leaves its phase.
        m.set_volume_phases([Some(VolumePhase::Attached)]);
        let text = exposition(&registry);
        assert!(
            text.contains("yun_controller_volumes{phase=\"Attaching\"} 0"),
            "{text}"
        );
    }
}
