//! The agent's Prometheus metrics. Series count is bounded by design: labels are phases and
//! results (small fixed sets), never VM names or uids — a host must stay under ~1,000 series.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use std::sync::atomic::AtomicU64;
use yun_fleet::VmPhase;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PhaseLabel {
    pub phase: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabel {
    pub result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct NetworkApplyLabel {
    /// `links` or `firewall`.
    pub part: String,
    pub result: String,
}

/// The results `network::worker` reports per part (see `AgentMetrics::network_applied`).
const NETWORK_APPLY_RESULTS: [(&str, &[&str]); 2] = [
    ("links", &["unchanged", "changed", "refused", "error"]),
    (
        "firewall",
        &["unchanged", "delta", "replaced", "refused", "error"],
    ),
];

#[derive(Debug, Clone)]
pub struct AgentMetrics {
    pub vms: Family<PhaseLabel, Gauge>,
    pub reconciles: Family<ResultLabel, Counter>,
    pub start_seconds: Histogram,
    pub etcd_connected: Gauge,
    pub lease_refresh_failures: Counter,
    pub status_write_failures: Counter,
    pub adopted_domains: Counter<u64, AtomicU64>,
    pub network_applies: Family<NetworkApplyLabel, Counter>,
    pub firewall_drift_repairs: Counter,
}

impl AgentMetrics {
    pub fn new(registry: &mut Registry) -> AgentMetrics {
        let m = AgentMetrics {
            vms: Family::default(),
            reconciles: Family::default(),
            start_seconds: Histogram::new(exponential_buckets(0.005, 2.0, 14)),
            etcd_connected: Gauge::default(),
            lease_refresh_failures: Counter::default(),
            status_write_failures: Counter::default(),
            adopted_domains: Counter::default(),
            network_applies: Family::default(),
            firewall_drift_repairs: Counter::default(),
        };
        let r = registry.sub_registry_with_prefix("yun_agent");
        r.register("vms", "VMs on this host by lifecycle phase", m.vms.clone());
        r.register(
            "reconciles",
            "VM reconcile steps by result",
            m.reconciles.clone(),
        );
        r.register(
            "vm_start_seconds",
            "Time from the agent seeing a VM assignment to libvirt reporting the domain running",
            m.start_seconds.clone(),
        );
        r.register(
            "etcd_connected",
            "1 while the fleet-bus watch is established",
            m.etcd_connected.clone(),
        );
        r.register(
            "lease_refresh_failures",
            "Failed host lease keep-alives",
            m.lease_refresh_failures.clone(),
        );
        r.register(
            "status_write_failures",
            "Failed VM status writes to the fleet bus",
            m.status_write_failures.clone(),
        );
        r.register(
            "adopted_domains",
            "Running domains re-adopted at agent start",
            m.adopted_domains.clone(),
        );
        r.register(
            "network_applies",
            "Tenant links and firewall applies by part and result (unchanged, changed, delta, replaced, refused, error)",
            m.network_applies.clone(),
        );
        r.register(
            "firewall_drift_repairs",
            "Times the kernel's Yun tables differed from what the agent applied and were repaired",
            m.firewall_drift_repairs.clone(),
        );
        // Every (part, result) the network worker reports starts at 0, so a host without
        // tenant networks still shows the series and the first apply counts in `increase()`.
        for (part, results) in NETWORK_APPLY_RESULTS {
            for result in results {
                let _ = m.network_applies.get_or_create(&NetworkApplyLabel {
                    part: part.into(),
                    result: (*result).into(),
                });
            }
        }
        for phase in VmPhase::ALL {
            m.vms
                .get_or_create(&PhaseLabel {
                    phase: phase.as_str().into(),
                })
                .set(0);
        }
        m
    }

    /// Moves one VM's contribution from phase `from` (if any) to `to` (if any).
    pub fn move_phase(&self, from: Option<VmPhase>, to: Option<VmPhase>) {
        if from == to {
            return;
        }
        if let Some(p) = from {
            self.vms
                .get_or_create(&PhaseLabel {
                    phase: p.as_str().into(),
                })
                .dec();
        }
        if let Some(p) = to {
            self.vms
                .get_or_create(&PhaseLabel {
                    phase: p.as_str().into(),
                })
                .inc();
        }
    }

    pub fn network_applied(&self, part: &str, result: &str) {
        self.network_applies
            .get_or_create(&NetworkApplyLabel {
                part: part.into(),
                result: result.into(),
            })
            .inc();
    }

    pub fn reconciled(&self, ok: bool) {
        let result = if ok { "ok" } else { "error" };
        self.reconciles
            .get_or_create(&ResultLabel {
                result: result.into(),
            })
            .inc();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn network_apply_series_exist_at_zero_before_any_apply() {
        let mut registry = Registry::default();
        let m = AgentMetrics::new(&mut registry);
        m.network_applied("firewall", "delta");
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        for line in [
            "yun_agent_network_applies_total{part=\"links\",result=\"unchanged\"} 0",
            "yun_agent_network_applies_total{part=\"firewall\",result=\"error\"} 0",
            "yun_agent_network_applies_total{part=\"firewall\",result=\"delta\"} 1",
        ] {
            assert!(text.contains(line), "{line} missing from\n{text}");
        }
    }
}
