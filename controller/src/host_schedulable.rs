//! The `Schedulable` condition of a `Host` (pure): whether new VMs may be placed on it, and for a
//! host in maintenance how far its drain has got.
//!
//! Draining moves what can move. In this version no VM can move (there is no live migration,
//! and cold moves lose a VM's local disk), so a drain waits for the VMs on the host to be
//! stopped or deleted and the condition counts what remains. The count is the controller's own
//! allocation record, which stays true whether the host's agent is alive or not.

use yun_crds::condition::SCHEDULABLE;
use yun_crds::{Condition, ConditionStatus, HostSpec};

/// `Schedulable=True`: neither cordoned nor in maintenance.
pub const ACCEPTING_VMS: &str = "AcceptingVMs";
/// `Schedulable=False`: `spec.unschedulable` (running VMs stay).
pub const CORDONED: &str = "Cordoned";
/// `Schedulable=False`: `spec.maintenance` with VMs still on the host.
pub const DRAINING: &str = "Draining";
/// `Schedulable=False`: `spec.maintenance` and no VM left: safe to take the host down.
pub const DRAINED: &str = "Drained";

/// The `Schedulable` condition for a host with `spec` and `vms` VMs placed on it.
pub fn schedulable_condition(spec: &HostSpec, vms: u32) -> Condition {
    let (status, reason, message) = if spec.maintenance && vms == 0 {
        (
            ConditionStatus::False,
            DRAINED,
            "in maintenance and drained: no VM remains; the host can be taken down".to_owned(),
        )
    } else if spec.maintenance {
        (
            ConditionStatus::False,
            DRAINING,
            format!(
                "in maintenance: no new VMs; {vms} VM{} remain{} (none can move in this version: stop or delete {} to finish the drain)",
                if vms == 1 { "" } else { "s" },
                if vms == 1 { "s" } else { "" },
                if vms == 1 { "it" } else { "them" },
            ),
        )
    } else if spec.unschedulable {
        (
            ConditionStatus::False,
            CORDONED,
            format!("cordoned: no new VMs; the {vms} running here stay"),
        )
    } else {
        (
            ConditionStatus::True,
            ACCEPTING_VMS,
            "new VMs may be placed here while the host is Ready".to_owned(),
        )
    };
    Condition::new(SCHEDULABLE, status, reason, message)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(unschedulable: bool, maintenance: bool) -> HostSpec {
        HostSpec {
            unschedulable,
            maintenance,
            ..HostSpec::default()
        }
    }

    fn reason(spec: &HostSpec, vms: u32) -> (ConditionStatus, String) {
        let c = schedulable_condition(spec, vms);
        assert_eq!(c.type_, SCHEDULABLE);
        (c.status, c.reason)
    }

    #[test]
    fn a_plain_host_accepts_vms() {
        assert_eq!(
            reason(&spec(false, false), 3),
            (ConditionStatus::True, ACCEPTING_VMS.into())
        );
    }

    #[test]
    fn a_cordoned_host_refuses_new_vms_and_keeps_its_own() {
        let c = schedulable_condition(&spec(true, false), 3);
        assert_eq!(
            (c.status, c.reason.as_str()),
            (ConditionStatus::False, CORDONED)
        );
        assert!(
            c.message.contains("the 3 running here stay"),
            "{}",
            c.message
        );
    }

    #[test]
    fn maintenance_counts_what_remains_until_drained() {
        let c = schedulable_condition(&spec(false, true), 2);
        assert_eq!(
            (c.status, c.reason.as_str()),
            (ConditionStatus::False, DRAINING)
        );
        assert!(c.message.contains("2 VMs remain "), "{}", c.message);
        let one = schedulable_condition(&spec(false, true), 1);
        assert!(one.message.contains("1 VM remains "), "{}", one.message);
        // Maintenance wins over a cordon; at zero the drain is done.
        assert_eq!(
            reason(&spec(true, true), 0),
            (ConditionStatus::False, DRAINED.into())
        );
    }
}
