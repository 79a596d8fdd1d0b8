//! Status conditions, Kubernetes style, shared by every kind.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// `VirtualMachine`: a host has been chosen (placement committed).
pub const SCHEDULED: &str = "Scheduled";
/// `VirtualMachine`: the domain is running on its host.
pub const RUNNING: &str = "Running";
/// `VirtualMachine`: running as desired; `Host`: the agent holds its lease and reports in;
/// `Network`: realised on every host that runs a VM attached to it; `SecurityGroup`: programmed
/// on every host that runs a member.
pub const READY: &str = "Ready";
/// `Host`: new VMs may be placed on it (not cordoned, not in maintenance).
pub const SCHEDULABLE: &str = "Schedulable";
/// `Network`: the CIDR still has addresses to hand out (not counting the network, broadcast,
/// gateway and reserved addresses). `False` means a new attachment without a fixed `ip` waits.
pub const ADDRESSES_AVAILABLE: &str = "AddressesAvailable";
/// `SecurityGroup`: every `remote.securityGroup` its rules name exists in the same namespace;
/// a rule naming a missing group matches no one until it appears.
pub const RULES_RESOLVED: &str = "RulesResolved";

/// Whether a condition holds.
#[derive(Serialize, Deserialize, JsonSchema, Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ConditionStatus {
    True,
    False,
    Unknown,
}

impl ConditionStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ConditionStatus::True => "True",
            ConditionStatus::False => "False",
            ConditionStatus::Unknown => "Unknown",
        }
    }
}

impl From<bool> for ConditionStatus {
    fn from(value: bool) -> Self {
        if value {
            ConditionStatus::True
        } else {
            ConditionStatus::False
        }
    }
}

/// One observation about an object (same shape as `metav1.Condition`).
#[derive(Serialize, Deserialize, JsonSchema, Debug, Clone, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    /// Condition type, e.g. `Scheduled`, `Running`, `Ready`.
    #[serde(rename = "type")]
    pub type_: String,
    pub status: ConditionStatus,
    /// CamelCase machine-readable reason for the last change.
    pub reason: String,
    /// Human-readable detail.
    pub message: String,
    /// RFC 3339 time the status last changed (not the time of the last update).
    pub last_transition_time: String,
    /// The `metadata.generation` this condition was computed from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}

impl Condition {
    /// A condition with no transition time yet; [`set_condition`] stamps it.
    pub fn new(
        type_: impl Into<String>,
        status: ConditionStatus,
        reason: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        Condition {
            type_: type_.into(),
            status,
            reason: reason.into(),
            message: message.into(),
            last_transition_time: String::new(),
            observed_generation: None,
        }
    }

    pub fn with_observed_generation(mut self, generation: Option<i64>) -> Self {
        self.observed_generation = generation;
        self
    }

    pub fn is_true(&self) -> bool {
        self.status == ConditionStatus::True
    }
}

/// The condition of this type, if present.
pub fn find_condition<'a>(conditions: &'a [Condition], type_: &str) -> Option<&'a Condition> {
    conditions.iter().find(|c| c.type_ == type_)
}

/// Sets `condition` in `conditions`, replacing any condition of the same type.
///
/// `lastTransitionTime` is `now` when the condition is new or its status changed, and is kept
/// from the existing condition when the status is unchanged (whatever `condition` carries is
/// ignored). Returns whether `conditions` changed, so callers can skip a no-op status write.
pub fn set_condition(conditions: &mut Vec<Condition>, mut condition: Condition, now: &str) -> bool {
    match conditions.iter_mut().find(|c| c.type_ == condition.type_) {
        Some(existing) => {
            condition.last_transition_time = if existing.status == condition.status {
                existing.last_transition_time.clone()
            } else {
                now.to_owned()
            };
            if *existing == condition {
                return false;
            }
            *existing = condition;
            true
        }
        None => {
            condition.last_transition_time = now.to_owned();
            conditions.push(condition);
            true
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T1: &str = "2025-01-01T00:00:00Z";
    const T2: &str = "2025-01-01T00:05:00Z";

    fn ready(status: ConditionStatus, reason: &str) -> Condition {
        Condition::new(READY, status, reason, "msg")
    }

    #[test]
    fn new_condition_is_added_with_now() {
        let mut cs = vec![];
        assert!(set_condition(
            &mut cs,
            ready(ConditionStatus::False, "Booting"),
            T1
        ));
        assert_eq!(cs.len(), 1);
        assert_eq!(cs[0].last_transition_time, T1);
    }

    #[test]
    fn same_status_keeps_transition_time_but_updates_reason() {
        let mut cs = vec![];
        set_condition(&mut cs, ready(ConditionStatus::False, "Booting"), T1);
        assert!(set_condition(
            &mut cs,
            ready(ConditionStatus::False, "Waiting"),
            T2
        ));
        assert_eq!(cs.len(), 1);
        assert_eq!(cs[0].reason, "Waiting");
        assert_eq!(cs[0].last_transition_time, T1);
    }

    #[test]
    fn status_change_stamps_now() {
        let mut cs = vec![];
        set_condition(&mut cs, ready(ConditionStatus::False, "Booting"), T1);
        set_condition(&mut cs, ready(ConditionStatus::True, "Running"), T2);
        assert_eq!(cs[0].last_transition_time, T2);
        assert!(cs[0].is_true());
    }

    #[test]
    fn identical_update_reports_no_change() {
        let mut cs = vec![];
        set_condition(&mut cs, ready(ConditionStatus::True, "Running"), T1);
        let before = cs.clone();
        assert!(!set_condition(
            &mut cs,
            ready(ConditionStatus::True, "Running"),
            T2
        ));
        assert_eq!(cs, before);
    }

    #[test]
    fn other_types_are_untouched() {
        let mut cs = vec![];
        set_condition(
            &mut cs,
            Condition::new(SCHEDULED, ConditionStatus::True, "Placed", "on h1"),
            T1,
        );
        set_condition(&mut cs, ready(ConditionStatus::False, "Booting"), T2);
        assert_eq!(cs.len(), 2);
        assert_eq!(
            find_condition(&cs, SCHEDULED).map(|c| c.last_transition_time.as_str()),
            Some(T1)
        );
        assert!(find_condition(&cs, RUNNING).is_none());
    }

    #[test]
    fn wire_form_is_kubernetes_style() {
        let c = Condition {
            last_transition_time: T1.into(),
            ..ready(ConditionStatus::Unknown, "HostLost").with_observed_generation(Some(3))
        };
        let v = serde_json::to_value(&c).unwrap();
        assert_eq!(v["type"], "Ready");
        assert_eq!(v["status"], "Unknown");
        assert_eq!(v["lastTransitionTime"], T1);
        assert_eq!(v["observedGeneration"], 3);
    }
}
