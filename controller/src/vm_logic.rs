//! Pure VirtualMachine logic shared by both desired-state sources: the desired record a VM
//! becomes on the fleet bus, and the status computed from what the fleet reports.

use crate::fleet_ops::VmFleetState;
use yun_crds::{
    Condition, ConditionStatus, DiskFormat as CrdDiskFormat, RunStrategy as CrdRunStrategy,
    VirtualMachineSpec, VirtualMachineStatus, VmImageSpec, VmPhase as CrdPhase, set_condition,
};
use yun_fleet::{
    Artifact, DiskFormat, ImageSpec, Resources, RunStrategy, SCHEMA_VERSION, VmDesired, VmObserved,
    VmPhase,
};

pub const SCHEDULED: &str = "Scheduled";
pub const RUNNING: &str = "Running";
pub const READY: &str = "Ready";

/// Identity of a VM object, whichever source it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VmIdentity {
    pub namespace: String,
    pub name: String,
    pub uid: String,
    pub generation: u64,
}

fn artifact(a: &yun_crds::Artifact) -> Artifact {
    Artifact {
        source: a.source.clone(),
        sha256: a.sha256.clone(),
    }
}

/// The desired record for a validated VM and its image.
pub fn desired_record(
    id: &VmIdentity,
    spec: &VirtualMachineSpec,
    image_name: &str,
    image: &VmImageSpec,
) -> VmDesired {
    VmDesired {
        v: SCHEMA_VERSION,
        uid: id.uid.clone(),
        namespace: id.namespace.clone(),
        name: id.name.clone(),
        generation: id.generation,
        resources: Resources {
            cpus: spec.cpu,
            memory_mib: spec.memory_mib,
            disk_gib: u64::from(spec.disk_gib),
        },
        image: ImageSpec {
            name: format!("{}/{}", id.namespace, image_name),
            disk: Artifact {
                source: image.disk.source.clone(),
                sha256: image.disk.sha256.clone(),
            },
            format: match image.disk.format {
                CrdDiskFormat::Qcow2 => DiskFormat::Qcow2,
                CrdDiskFormat::Raw => DiskFormat::Raw,
            },
            kernel: image.kernel.as_ref().map(artifact),
            initrd: image.initrd.as_ref().map(artifact),
            cmdline: image.cmdline.clone(),
        },
        hostname: spec.hostname.clone().unwrap_or_else(|| id.name.clone()),
        user_data: spec.user_data.clone(),
        run_strategy: match spec.run_strategy {
            CrdRunStrategy::Always => RunStrategy::Always,
            CrdRunStrategy::Halted => RunStrategy::Halted,
        },
        nics: Vec::new(),
        security_groups: Vec::new(),
        volumes: Vec::new(),
        hold: None,
        identity: None,
    }
}

fn crd_phase(p: VmPhase) -> CrdPhase {
    match p {
        VmPhase::Pending => CrdPhase::Pending,
        VmPhase::Preparing => CrdPhase::Preparing,
        VmPhase::Starting => CrdPhase::Starting,
        VmPhase::Running => CrdPhase::Running,
        VmPhase::Stopping => CrdPhase::Stopping,
        VmPhase::Stopped => CrdPhase::Stopped,
        VmPhase::Deleting => CrdPhase::Deleting,
        VmPhase::Failed => CrdPhase::Failed,
    }
}

/// Why a VM has no host (yet): becomes the `Scheduled=False` condition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unscheduled {
    pub reason: &'static str,
    pub message: String,
}

fn cond(
    type_: &str,
    ok: bool,
    reason: &str,
    message: impl Into<String>,
    generation: u64,
) -> Condition {
    let status = if ok {
        ConditionStatus::True
    } else {
        ConditionStatus::False
    };
    Condition::new(type_, status, reason, message)
        .with_observed_generation(i64::try_from(generation).ok())
}

/// Status of an unplaced VM.
pub fn unscheduled_status(
    prior: Option<&VirtualMachineStatus>,
    id: &VmIdentity,
    why: &Unscheduled,
    now: &str,
) -> VirtualMachineStatus {
    let mut st = prior.cloned().unwrap_or_default();
    st.phase = Some(CrdPhase::Pending);
    st.host = None;
    st.domain_uuid = None;
    st.started_at = None;
    st.message = Some(why.message.clone());
    st.observed_generation = i64::try_from(id.generation).ok();
    set_condition(
        &mut st.conditions,
        cond(
            SCHEDULED,
            false,
            why.reason,
            why.message.clone(),
            id.generation,
        ),
        now,
    );
    set_condition(
        &mut st.conditions,
        cond(RUNNING, false, "NotScheduled", "", id.generation),
        now,
    );
    set_condition(
        &mut st.conditions,
        cond(READY, false, "NotScheduled", "", id.generation),
        now,
    );
    st
}

/// Status of a placed VM from the agent's observation (none yet: the agent has not reported).
pub fn placed_status(
    prior: Option<&VirtualMachineStatus>,
    id: &VmIdentity,
    fleet: &VmFleetState,
    now: &str,
) -> VirtualMachineStatus {
    let mut st = prior.cloned().unwrap_or_default();
    let observed: Option<&VmObserved> = fleet.observed.as_ref();
    let phase = observed.map(|o| o.phase).unwrap_or(VmPhase::Pending);
    st.phase = Some(crd_phase(phase));
    st.host = Some(fleet.host.clone());
    st.domain_uuid = observed.and_then(|o| o.domain_uuid.clone());
    st.started_at = observed.and_then(|o| o.started_at.clone());
    st.observed_generation = i64::try_from(id.generation).ok();
    st.message = match (fleet.host_alive, observed.and_then(|o| o.message.clone())) {
        (false, _) => Some(format!(
            "host {} is not reporting (lease expired); last known state kept",
            fleet.host
        )),
        (true, m) => m,
    };
    let g = id.generation;
    set_condition(
        &mut st.conditions,
        cond(
            SCHEDULED,
            true,
            "Placed",
            format!("placed on host {}", fleet.host),
            g,
        ),
        now,
    );
    let running = phase == VmPhase::Running;
    let reason = if observed.is_none() {
        "AwaitingAgent"
    } else {
        phase.as_str()
    };
    set_condition(
        &mut st.conditions,
        cond(
            RUNNING,
            running,
            reason,
            st.message.clone().unwrap_or_default(),
            g,
        ),
        now,
    );
    let current = observed.is_some_and(|o| o.observed_generation == id.generation);
    let ready = running && current && fleet.host_alive;
    let ready_reason = match (running, current, fleet.host_alive) {
        (_, _, false) => "HostNotReporting",
        (false, _, _) => "NotRunning",
        (true, false, _) => "SpecNotApplied",
        (true, true, true) => "Running",
    };
    set_condition(
        &mut st.conditions,
        cond(READY, ready, ready_reason, "", g),
        now,
    );
    st
}

/// Status while a VM is being removed.
pub fn deleting_status(
    prior: Option<&VirtualMachineStatus>,
    host: &str,
    now: &str,
    generation: u64,
) -> VirtualMachineStatus {
    let mut st = prior.cloned().unwrap_or_default();
    st.phase = Some(CrdPhase::Deleting);
    st.message = Some(format!(
        "waiting for host {host} to remove the domain, overlay and seed"
    ));
    set_condition(
        &mut st.conditions,
        cond(READY, false, "Deleting", "", generation),
        now,
    );
    st
}

#[cfg(test)]
mod tests {
    use super::*;
    use yun_crds::find_condition;

    fn id() -> VmIdentity {
        VmIdentity {
            namespace: "default".into(),
            name: "web".into(),
            uid: "u-1".into(),
            generation: 2,
        }
    }

    fn observed(phase: VmPhase, generation: u64) -> VmObserved {
        VmObserved {
            v: 1,
            uid: "u-1".into(),
            phase,
            observed_generation: generation,
            domain_uuid: Some("d-1".into()),
            started_at: Some("t0".into()),
            message: None,
            updated_at: "t".into(),
            identity_generation: None,
        }
    }

    fn state(obs: Option<VmObserved>, alive: bool) -> VmFleetState {
        VmFleetState {
            host: "n1".into(),
            host_alive: alive,
            observed: obs,
        }
    }

    #[test]
    fn running_and_current_is_ready() {
        let st = placed_status(
            None,
            &id(),
            &state(Some(observed(VmPhase::Running, 2)), true),
            "now",
        );
        assert_eq!(st.phase, Some(CrdPhase::Running));
        assert_eq!(st.host.as_deref(), Some("n1"));
        assert_eq!(st.domain_uuid.as_deref(), Some("d-1"));
        for t in [SCHEDULED, RUNNING, READY] {
            assert!(
                find_condition(&st.conditions, t).is_some_and(|c| c.is_true()),
                "{t}"
            );
        }
    }

    #[test]
    fn running_an_old_generation_is_not_ready() {
        let st = placed_status(
            None,
            &id(),
            &state(Some(observed(VmPhase::Running, 1)), true),
            "now",
        );
        let ready = find_condition(&st.conditions, READY).unwrap();
        assert!(!ready.is_true());
        assert_eq!(ready.reason, "SpecNotApplied");
    }

    #[test]
    fn silent_host_is_explained() {
        let st = placed_status(
            None,
            &id(),
            &state(Some(observed(VmPhase::Running, 2)), false),
            "now",
        );
        assert_eq!(
            find_condition(&st.conditions, READY).unwrap().reason,
            "HostNotReporting"
        );
        assert!(st.message.unwrap().contains("n1"));
    }

    #[test]
    fn placed_but_unreported_is_pending_awaiting_agent() {
        let st = placed_status(None, &id(), &state(None, true), "now");
        assert_eq!(st.phase, Some(CrdPhase::Pending));
        assert_eq!(
            find_condition(&st.conditions, RUNNING).unwrap().reason,
            "AwaitingAgent"
        );
        assert!(find_condition(&st.conditions, SCHEDULED).unwrap().is_true());
    }

    #[test]
    fn transition_time_moves_only_when_status_changes() {
        let s1 = placed_status(None, &id(), &state(None, true), "t1");
        let s2 = placed_status(
            Some(&s1),
            &id(),
            &state(Some(observed(VmPhase::Running, 2)), true),
            "t2",
        );
        assert_eq!(
            find_condition(&s2.conditions, SCHEDULED)
                .unwrap()
                .last_transition_time,
            "t1"
        );
        assert_eq!(
            find_condition(&s2.conditions, RUNNING)
                .unwrap()
                .last_transition_time,
            "t2"
        );
    }

    #[test]
    fn unscheduled_names_the_reason() {
        let why = Unscheduled {
            reason: "Unschedulable",
            message: "0/3 hosts fit, 3 insufficient memory".into(),
        };
        let st = unscheduled_status(None, &id(), &why, "now");
        let c = find_condition(&st.conditions, SCHEDULED).unwrap();
        assert!(!c.is_true());
        assert_eq!(c.reason, "Unschedulable");
        assert!(c.message.contains("insufficient memory"));
    }
}
