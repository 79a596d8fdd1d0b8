//! Which of a VirtualMachine's transitions deserve an Event (what `kubectl describe` and
//! `yunctl describe` show), in both modes. Pure: the sources publish them, best effort.

use crate::vm_logic::SCHEDULED;
use kube::runtime::events::EventType;
use yun_crds::{ConditionStatus, VirtualMachineStatus, VmPhase, find_condition};

/// One Event to publish about a VM.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transition {
    pub type_: EventType,
    /// PascalCase, e.g. `Scheduled`, `Started`, `Failed`, `InvalidSpec`.
    pub reason: String,
    /// What the controller was doing, e.g. `Schedule`, `Reconcile`, `Delete`.
    pub action: &'static str,
    pub note: String,
}

pub fn transition(
    type_: EventType,
    reason: &str,
    action: &'static str,
    note: String,
) -> Transition {
    Transition {
        type_,
        reason: reason.to_owned(),
        action,
        note,
    }
}

/// The Events that moving from `prior` to `next` deserves: a placement (or a new host), a
/// change of why the VM cannot be placed, and entering Running, Stopped, Failed or Deleting.
pub fn transitions(
    prior: Option<&VirtualMachineStatus>,
    next: &VirtualMachineStatus,
) -> Vec<Transition> {
    let mut out = Vec::new();
    let scheduled = |s: Option<&VirtualMachineStatus>| {
        s.and_then(|s| find_condition(&s.conditions, SCHEDULED))
            .map(|c| (c.status, c.reason.clone(), c.message.clone()))
    };
    let host = next.host.as_deref().unwrap_or("?");
    match (scheduled(prior), scheduled(Some(next))) {
        (_, Some((ConditionStatus::True, _, _)))
            if prior.and_then(|p| p.host.as_deref()) != next.host.as_deref() =>
        {
            out.push(transition(
                EventType::Normal,
                "Scheduled",
                "Schedule",
                format!("placed on host {host}"),
            ));
        }
        (before, Some((ConditionStatus::False, reason, message)))
            if before.as_ref().map(|(s, r, _)| (*s, r.as_str()))
                != Some((ConditionStatus::False, reason.as_str())) =>
        {
            out.push(transition(EventType::Warning, &reason, "Schedule", message));
        }
        _ => {}
    }
    let prior_phase = prior.and_then(|p| p.phase);
    if next.phase != prior_phase {
        let message = next.message.clone().unwrap_or_default();
        match next.phase {
            Some(VmPhase::Running) => out.push(transition(
                EventType::Normal,
                "Started",
                "Reconcile",
                format!("running on host {host}"),
            )),
            Some(VmPhase::Stopped) => out.push(transition(
                EventType::Normal,
                "Stopped",
                "Reconcile",
                format!("stopped on host {host}"),
            )),
            Some(VmPhase::Failed) => out.push(transition(
                EventType::Warning,
                "Failed",
                "Reconcile",
                message,
            )),
            Some(VmPhase::Deleting) => {
                out.push(transition(EventType::Normal, "Deleting", "Delete", message))
            }
            _ => {}
        }
    }
    out
}

/// The Event for a VM whose cleanup finished (its finalizer is about to be removed).
pub fn deleted() -> Transition {
    transition(
        EventType::Normal,
        "Deleted",
        "Delete",
        "domain, disk overlay and seed removed; host resources released".to_owned(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use yun_crds::{Condition, set_condition};

    fn status(
        phase: VmPhase,
        host: Option<&str>,
        scheduled: Option<(ConditionStatus, &str)>,
    ) -> VirtualMachineStatus {
        let mut st = VirtualMachineStatus {
            phase: Some(phase),
            host: host.map(Into::into),
            ..Default::default()
        };
        if let Some((s, reason)) = scheduled {
            set_condition(
                &mut st.conditions,
                Condition::new(SCHEDULED, s, reason, format!("msg {reason}")),
                "t",
            );
        }
        st
    }

    fn reasons(ts: &[Transition]) -> Vec<&str> {
        ts.iter().map(|t| t.reason.as_str()).collect()
    }

    #[test]
    fn placement_then_running() {
        let placed = status(
            VmPhase::Pending,
            Some("h1"),
            Some((ConditionStatus::True, "Placed")),
        );
        let t = transitions(None, &placed);
        assert_eq!(reasons(&t), ["Scheduled"]);
        assert_eq!(t[0].note, "placed on host h1");
        assert_eq!(t[0].type_, EventType::Normal);
        let running = status(
            VmPhase::Running,
            Some("h1"),
            Some((ConditionStatus::True, "Placed")),
        );
        assert_eq!(reasons(&transitions(Some(&placed), &running)), ["Started"]);
        assert!(transitions(Some(&running), &running).is_empty());
    }

    #[test]
    fn unschedulable_reason_is_reported_once_per_reason() {
        let bad = status(
            VmPhase::Pending,
            None,
            Some((ConditionStatus::False, "InvalidSpec")),
        );
        let t = transitions(None, &bad);
        assert_eq!(reasons(&t), ["InvalidSpec"]);
        assert_eq!(t[0].type_, EventType::Warning);
        assert_eq!(t[0].note, "msg InvalidSpec");
        assert!(transitions(Some(&bad), &bad).is_empty());
        let nofit = status(
            VmPhase::Pending,
            None,
            Some((ConditionStatus::False, "Unschedulable")),
        );
        assert_eq!(reasons(&transitions(Some(&bad), &nofit)), ["Unschedulable"]);
    }

    #[test]
    fn failure_and_deletion() {
        let running = status(
            VmPhase::Running,
            Some("h1"),
            Some((ConditionStatus::True, "Placed")),
        );
        let failed = VirtualMachineStatus {
            message: Some("qemu exited".into()),
            ..status(
                VmPhase::Failed,
                Some("h1"),
                Some((ConditionStatus::True, "Placed")),
            )
        };
        let t = transitions(Some(&running), &failed);
        assert_eq!(reasons(&t), ["Failed"]);
        assert_eq!(
            (t[0].type_, t[0].note.as_str()),
            (EventType::Warning, "qemu exited")
        );
        let deleting = status(
            VmPhase::Deleting,
            Some("h1"),
            Some((ConditionStatus::True, "Placed")),
        );
        assert_eq!(
            reasons(&transitions(Some(&running), &deleting)),
            ["Deleting"]
        );
    }

    #[test]
    fn moving_to_another_host_is_a_new_placement() {
        let on_h1 = status(
            VmPhase::Running,
            Some("h1"),
            Some((ConditionStatus::True, "Placed")),
        );
        let on_h2 = status(
            VmPhase::Running,
            Some("h2"),
            Some((ConditionStatus::True, "Placed")),
        );
        assert_eq!(reasons(&transitions(Some(&on_h1), &on_h2)), ["Scheduled"]);
    }
}
