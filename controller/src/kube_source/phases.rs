//! The VMs-by-phase and Volumes-by-phase gauges, recomputed periodically from the caches.

use crate::metrics::ControllerMetrics;
use kube::runtime::reflector::Store;
use std::collections::BTreeMap;
use std::time::Duration;
use yun_crds::{VirtualMachine, VmPhase as CrdPhase, Volume};
use yun_fleet::VmPhase;

fn fleet_phase(p: CrdPhase) -> VmPhase {
    match p {
        CrdPhase::Pending => VmPhase::Pending,
        CrdPhase::Preparing => VmPhase::Preparing,
        CrdPhase::Starting => VmPhase::Starting,
        CrdPhase::Running => VmPhase::Running,
        CrdPhase::Stopping => VmPhase::Stopping,
        CrdPhase::Stopped => VmPhase::Stopped,
        CrdPhase::Deleting => VmPhase::Deleting,
        CrdPhase::Failed => VmPhase::Failed,
    }
}

/// VMs by the phase in their status; a VM with no status yet is `Pending` (accepted, not
/// placed).
pub fn count_phases<'a>(
    vms: impl IntoIterator<Item = &'a VirtualMachine>,
) -> BTreeMap<VmPhase, i64> {
    let mut counts = BTreeMap::new();
    for vm in vms {
        let phase = vm
            .status
            .as_ref()
            .and_then(|s| s.phase)
            .map(fleet_phase)
            .unwrap_or(VmPhase::Pending);
        *counts.entry(phase).or_insert(0) += 1;
    }
    counts
}

/// Sets the gauges from `vms` and `volumes` every `period`, forever.
pub(crate) async fn publish_periodically(
    vms: Store<VirtualMachine>,
    volumes: Store<Volume>,
    metrics: ControllerMetrics,
    period: Duration,
) {
    let mut ticker = tokio::time::interval(period);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        let state = vms.state();
        metrics.set_vm_phases(&count_phases(state.iter().map(|vm| &**vm)));
        metrics.set_volume_phases(
            volumes
                .state()
                .iter()
                .map(|v| v.status.as_ref().and_then(|s| s.phase)),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use yun_crds::{VirtualMachineSpec, VirtualMachineStatus};

    fn vm(name: &str, phase: Option<CrdPhase>) -> VirtualMachine {
        let spec: VirtualMachineSpec =
            serde_json::from_value(serde_json::json!({"image": "i", "cpu": 1, "memoryMiB": 64}))
                .unwrap();
        let mut vm = VirtualMachine::new(name, spec);
        vm.status = phase.map(|p| VirtualMachineStatus {
            phase: Some(p),
            ..Default::default()
        });
        vm
    }

    #[test]
    fn counts_by_status_phase_with_unreported_as_pending() {
        let vms = [
            vm("a", Some(CrdPhase::Running)),
            vm("b", Some(CrdPhase::Running)),
            vm("c", None),
            vm("d", Some(CrdPhase::Failed)),
        ];
        let counts = count_phases(&vms);
        assert_eq!(counts.get(&VmPhase::Running), Some(&2));
        assert_eq!(counts.get(&VmPhase::Pending), Some(&1));
        assert_eq!(counts.get(&VmPhase::Failed), Some(&1));
        assert_eq!(counts.values().sum::<i64>(), 4);
    }
}
