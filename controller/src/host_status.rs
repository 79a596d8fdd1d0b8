//! The status of a `Host` object, computed from what the fleet bus holds about the host (pure).
//!
//! Like a kubelet's Node status: `ready` while the host's agent holds its lease, what the host
//! offers and what placement has committed to it, and a `Ready` condition saying why.

use crate::host_schedulable::schedulable_condition;
use std::time::Duration;
use yun_crds::condition::READY;
use yun_crds::{Condition, ConditionStatus, HostResources, HostSpec, HostStatus, set_condition};
use yun_fleet::{HostAllocation, HostInfo};
use yun_fleet_etcd::HostView;

/// `Ready=True`: the agent holds its lease and has registered.
pub const AGENT_REPORTING: &str = "AgentReporting";
/// `Ready=False`: the host registered once, but its agent's lease has expired.
pub const LEASE_EXPIRED: &str = "LeaseExpired";
/// `Ready=False`: a Host object nothing on the fleet bus has ever been seen for.
pub const NEVER_REGISTERED: &str = "NeverRegistered";

pub const LEASE_EXPIRED_MESSAGE: &str = "host's agent lease expired; its VMs are left as they are";
pub const NEVER_REGISTERED_MESSAGE: &str = "no agent has registered under this host's name";

/// How stale a ready host's `lastSeen` may get. Stamping it with every sync (each 5 s) would
/// make every status different from the last and cost one status write per host per sync; a
/// ready host's `lastSeen` is instead refreshed once it is this old.
pub const LAST_SEEN_REFRESH: Duration = Duration::from_secs(60);

fn capacity(info: &HostInfo) -> HostResources {
    HostResources {
        cpus: info.cpus,
        memory_mib: info.memory_mib,
        disk_gib: info.disk_gib,
    }
}

fn allocated(alloc: &HostAllocation) -> HostResources {
    HostResources {
        cpus: alloc.cpus,
        memory_mib: alloc.memory_mib,
        disk_gib: alloc.disk_gib,
    }
}

/// Whether the bus holds any record of the host besides its (lease-bound) info: its allocation,
/// image inventory or VMs. Those outlive the lease, so they prove the host registered once.
fn left_records(view: &HostView) -> bool {
    view.alloc.mod_revision != 0
        || view.images.is_some()
        || !view.desired.is_empty()
        || !view.observed.is_empty()
}

/// `prior`'s `lastSeen` if it was ready then and that is less than [`LAST_SEEN_REFRESH`] before
/// `now`; otherwise `now`.
fn last_seen_while_ready(prior: Option<&HostStatus>, now: &str) -> String {
    let recent = prior
        .filter(|p| p.ready)
        .and_then(|p| p.last_seen.as_deref())
        .filter(|seen| {
            let (Ok(seen_at), Ok(now_at)) = (
                seen.parse::<jiff::Timestamp>(),
                now.parse::<jiff::Timestamp>(),
            ) else {
                return false;
            };
            let age = now_at.as_second().saturating_sub(seen_at.as_second());
            (0..i64::try_from(LAST_SEEN_REFRESH.as_secs()).unwrap_or(i64::MAX)).contains(&age)
        });
    recent.unwrap_or(now).to_owned()
}

/// The status of the Host object with `spec` for `view` (pass `HostView::default()` for a host
/// the bus knows nothing about), given the object's current status `prior`, at RFC 3339 time
/// `now`.
///
/// - Ready (info present, so the lease is alive): capacity, agent version and virt type from the
///   registration, `lastSeen` about now, `Ready=True/AgentReporting`.
/// - Not ready: what the host last reported (capacity, agent, `lastSeen`) is kept from `prior`,
///   `Ready=False` with `LeaseExpired` if the host was ever seen (by an earlier status or by
///   records it left on the bus), else `NeverRegistered`.
/// - `allocated` and `vms` always come from the allocation record: they are the controller's
///   own bookkeeping and stay true whether the agent is alive or not.
///
/// - `Schedulable` says whether new VMs may land here and how a drain is going
///   ([`schedulable_condition`]).
///
/// Condition transition times are kept while the condition's status does not change.
pub fn host_status(
    prior: Option<&HostStatus>,
    spec: &HostSpec,
    view: &HostView,
    now: &str,
) -> HostStatus {
    let mut st = prior.cloned().unwrap_or_default();
    st.allocated =
        (view.info.is_some() || view.alloc.mod_revision != 0).then(|| allocated(&view.alloc.value));
    st.vms = view.alloc.value.vms;
    let ready = match &view.info {
        Some(info) => {
            st.ready = true;
            st.capacity = Some(capacity(info));
            st.agent_version = Some(info.agent_version.clone());
            st.virt_type = Some(info.virt_type.clone());
            st.last_seen = Some(last_seen_while_ready(prior, now));
            Condition::new(
                READY,
                ConditionStatus::True,
                AGENT_REPORTING,
                format!(
                    "agent {} holds its lease (virt type {})",
                    info.agent_version, info.virt_type
                ),
            )
        }
        None => {
            st.ready = false;
            if st.last_seen.is_some() || left_records(view) {
                Condition::new(
                    READY,
                    ConditionStatus::False,
                    LEASE_EXPIRED,
                    LEASE_EXPIRED_MESSAGE,
                )
            } else {
                Condition::new(
                    READY,
                    ConditionStatus::False,
                    NEVER_REGISTERED,
                    NEVER_REGISTERED_MESSAGE,
                )
            }
        }
    };
    set_condition(&mut st.conditions, ready, now);
    set_condition(&mut st.conditions, schedulable_condition(spec, st.vms), now);
    st
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;
    use yun_crds::find_condition;
    use yun_fleet::SCHEMA_VERSION;
    use yun_fleet_etcd::Stored;

    const T0: &str = "2025-01-01T00:00:00Z";
    const T1: &str = "2025-01-01T00:00:05Z";
    const T2: &str = "2025-01-01T00:02:00Z";

    fn info() -> HostInfo {
        HostInfo {
            v: SCHEMA_VERSION,
            name: "h1".into(),
            cpus: 16,
            memory_mib: 65536,
            disk_gib: 500,
            labels: BTreeMap::new(),
            agent_version: "0.3.0".into(),
            virt_type: "kvm".into(),
            started_at: T0.into(),
            tunnel_ip: None,
            seal_key: None,
            metrics_address: None,
        }
    }

    fn alloc(cpus: u32, memory_mib: u64, vms: u32) -> Stored<HostAllocation> {
        Stored {
            value: HostAllocation {
                cpus,
                memory_mib,
                disk_gib: 20,
                vms,
                ..HostAllocation::default()
            },
            mod_revision: 7,
        }
    }

    fn alive(alloc: Stored<HostAllocation>) -> HostView {
        HostView {
            info: Some(info()),
            alloc,
            ..HostView::default()
        }
    }

    fn ready_condition(st: &HostStatus) -> (ConditionStatus, &str, &str, &str) {
        let c = find_condition(&st.conditions, READY).unwrap();
        (
            c.status,
            c.reason.as_str(),
            c.message.as_str(),
            c.last_transition_time.as_str(),
        )
    }

    #[test]
    fn registered_host_is_ready_with_capacity_and_allocation() {
        let st = host_status(None, &HostSpec::default(), &alive(alloc(4, 2048, 2)), T0);
        assert!(st.ready);
        assert_eq!(
            st.capacity,
            Some(HostResources {
                cpus: 16,
                memory_mib: 65536,
                disk_gib: 500
            })
        );
        assert_eq!(
            st.allocated,
            Some(HostResources {
                cpus: 4,
                memory_mib: 2048,
                disk_gib: 20
            })
        );
        assert_eq!(st.vms, 2);
        assert_eq!(
            (st.agent_version.as_deref(), st.virt_type.as_deref()),
            (Some("0.3.0"), Some("kvm"))
        );
        assert_eq!(st.last_seen.as_deref(), Some(T0));
        let (status, reason, _, since) = ready_condition(&st);
        assert_eq!(
            (status, reason, since),
            (ConditionStatus::True, AGENT_REPORTING, T0)
        );
    }

    #[test]
    fn registered_host_without_allocation_record_has_nothing_allocated() {
        let st = host_status(None, &HostSpec::default(), &alive(Stored::default()), T0);
        assert_eq!(st.allocated, Some(HostResources::default()));
        assert_eq!(st.vms, 0);
    }

    #[test]
    fn unchanged_ready_host_keeps_its_status_until_last_seen_is_due() {
        let first = host_status(None, &HostSpec::default(), &alive(alloc(4, 2048, 2)), T0);
        assert_eq!(
            host_status(
                Some(&first),
                &HostSpec::default(),
                &alive(alloc(4, 2048, 2)),
                T1
            ),
            first
        );
        let later = host_status(
            Some(&first),
            &HostSpec::default(),
            &alive(alloc(4, 2048, 2)),
            T2,
        );
        assert_eq!(later.last_seen.as_deref(), Some(T2));
        // The condition did not change status: its transition time stays.
        assert_eq!(ready_condition(&later).3, T0);
    }

    #[test]
    fn unparsable_or_future_last_seen_is_replaced() {
        let mut prior = host_status(None, &HostSpec::default(), &alive(alloc(0, 0, 0)), T0);
        prior.last_seen = Some("yesterday".into());
        let st = host_status(
            Some(&prior),
            &HostSpec::default(),
            &alive(alloc(0, 0, 0)),
            T1,
        );
        assert_eq!(st.last_seen.as_deref(), Some(T1));
        prior.last_seen = Some(T2.into());
        let st = host_status(
            Some(&prior),
            &HostSpec::default(),
            &alive(alloc(0, 0, 0)),
            T1,
        );
        assert_eq!(st.last_seen.as_deref(), Some(T1));
    }

    #[test]
    fn allocation_changes_are_reported_at_once() {
        let first = host_status(None, &HostSpec::default(), &alive(alloc(4, 2048, 2)), T0);
        let st = host_status(
            Some(&first),
            &HostSpec::default(),
            &alive(alloc(6, 3072, 3)),
            T1,
        );
        assert_eq!((st.allocated.map(|a| a.cpus), st.vms), (Some(6), 3));
        assert_eq!(st.last_seen.as_deref(), Some(T0));
    }

    #[test]
    fn expired_lease_keeps_what_the_host_last_reported() {
        let ready = host_status(None, &HostSpec::default(), &alive(alloc(4, 2048, 2)), T0);
        let gone = HostView {
            info: None,
            ..alive(alloc(4, 2048, 2))
        };
        let st = host_status(Some(&ready), &HostSpec::default(), &gone, T2);
        assert!(!st.ready);
        assert_eq!(st.last_seen.as_deref(), Some(T0));
        assert_eq!(st.capacity, ready.capacity);
        assert_eq!(st.agent_version.as_deref(), Some("0.3.0"));
        assert_eq!((st.vms, st.allocated), (2, ready.allocated));
        assert_eq!(
            ready_condition(&st),
            (
                ConditionStatus::False,
                LEASE_EXPIRED,
                LEASE_EXPIRED_MESSAGE,
                T2
            )
        );
        // Still expired later: nothing changes, the transition time stays.
        assert_eq!(
            host_status(
                Some(&st),
                &HostSpec::default(),
                &gone,
                "2025-01-01T01:00:00Z"
            ),
            st
        );
    }

    #[test]
    fn host_the_controller_never_saw_but_that_left_records_expired() {
        let view = HostView {
            info: None,
            ..alive(alloc(2, 1024, 1))
        };
        let st = host_status(None, &HostSpec::default(), &view, T0);
        assert_eq!(ready_condition(&st).1, LEASE_EXPIRED);
        assert_eq!(st.last_seen, None);
        assert_eq!(st.vms, 1);
    }

    #[test]
    fn host_object_without_any_registration_never_registered() {
        let st = host_status(None, &HostSpec::default(), &HostView::default(), T0);
        assert!(!st.ready);
        assert_eq!((st.capacity, st.allocated, st.vms), (None, None, 0));
        assert_eq!(
            ready_condition(&st),
            (
                ConditionStatus::False,
                NEVER_REGISTERED,
                NEVER_REGISTERED_MESSAGE,
                T0
            )
        );
    }

    #[test]
    fn host_that_comes_back_is_ready_again_with_a_new_transition() {
        let ready = host_status(None, &HostSpec::default(), &alive(alloc(0, 0, 0)), T0);
        let expired = host_status(Some(&ready), &HostSpec::default(), &HostView::default(), T1);
        assert_eq!(ready_condition(&expired).1, LEASE_EXPIRED);
        let back = host_status(
            Some(&expired),
            &HostSpec::default(),
            &alive(alloc(0, 0, 0)),
            T2,
        );
        assert!(back.ready);
        assert_eq!(back.last_seen.as_deref(), Some(T2));
        let (status, reason, _, since) = ready_condition(&back);
        assert_eq!(
            (status, reason, since),
            (ConditionStatus::True, AGENT_REPORTING, T2)
        );
    }
}
