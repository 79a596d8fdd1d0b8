//! The VM side of attaching: which of a VM's volumes its host may have, which claims to grant
//! with the desired record, and which volumes wait (and why). See `yun_fleet::volume` for the
//! protocol this follows.

use super::claim::{ClaimRefusal, Holder, Verdict, Want, decide};
use super::resolve::WantedVolume;
use super::status::HolderView;
use crate::vm_logic::Unscheduled;
use yun_crds::VolumePhase;
use yun_fleet::{AttachPhase, ClaimHolder, VolumeClaim, VolumeRecord};
use yun_fleet_etcd::{BusError, ClaimGrant, FleetBus, Stored};

/// The outcome of planning one VM's volumes on its host.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct VolumePlan {
    /// Records for the VM's desired record: volumes the host holds, and those granted now.
    pub granted: Vec<VolumeRecord>,
    /// Claims to write in the same transaction as the desired record.
    pub grants: Vec<ClaimGrant>,
    /// One line per volume that waits, naming it and the holder in the way.
    pub waiting: Vec<String>,
}

/// The phase a holder's attachment is in, as its host's records show it.
pub fn holder_phase(listed: bool, attachment: Option<AttachPhase>) -> VolumePhase {
    match attachment {
        Some(AttachPhase::Attached) if listed => VolumePhase::Attached,
        Some(AttachPhase::Failed) => VolumePhase::Failed,
        Some(AttachPhase::Detaching) => VolumePhase::Detaching,
        Some(_) | None if listed => VolumePhase::Attaching,
        Some(_) | None => VolumePhase::Detaching,
    }
}

/// Reads each holder's host records (one etcd read per holder, at one revision).
pub async fn holder_views(
    bus: &FleetBus,
    uid: &str,
    claim: &VolumeClaim,
) -> Result<Vec<HolderView>, BusError> {
    let mut out = Vec::with_capacity(claim.holders.len());
    for h in &claim.holders {
        let view = bus.attachment_view(&h.host, &h.vm_uid, uid).await?;
        out.push(HolderView {
            holder: h.clone(),
            listed: view
                .desired
                .as_ref()
                .is_some_and(|d| d.volumes.iter().any(|v| v.uid == uid)),
            attachment: view.attachment,
            host_alive: view.host_alive,
        });
    }
    Ok(out)
}

fn holder(h: &ClaimHolder, phase: VolumePhase) -> Holder {
    Holder {
        vm_uid: h.vm_uid.clone(),
        vm: h.vm.clone(),
        host: h.host.clone(),
        read_only: h.read_only,
        phase,
    }
}

/// Before placement: the host a VM with local volumes must go to (the host their files live
/// on), or why it cannot be placed at all.
pub async fn local_home(
    bus: &FleetBus,
    wanted: &[WantedVolume],
) -> Result<Result<Option<String>, Unscheduled>, BusError> {
    let mut home: Option<(String, String)> = None;
    for w in wanted.iter().filter(|w| w.is_local()) {
        let Some(claim) = bus.volume_claim(&w.record.uid).await? else {
            continue;
        };
        let Some(h) = claim.value.home else { continue };
        match &home {
            Some((other, id)) if *other != h => {
                return Ok(Err(Unscheduled {
                    reason: "VolumeConflict",
                    message: format!(
                        "spec.volumes[{}]: local Volume {} lives on host {h} but local Volume {id} lives on host {other}; one VM cannot have both",
                        w.index, w.record.id
                    ),
                }));
            }
            _ => home = Some((h, w.record.id.clone())),
        }
    }
    Ok(Ok(home.map(|(h, _)| h)))
}

/// Decides every wanted volume for VM `vm_uid` (`vm`: `namespace/name`) on `host`. A host that
/// is not reporting (`host_alive` false) keeps what it holds but is granted nothing new: after
/// an operator force-detached a volume from a dead host, the VM still placed there must not
/// take it back before the host is seen again.
pub async fn plan(
    bus: &FleetBus,
    vm_uid: &str,
    vm: &str,
    host: &str,
    host_alive: bool,
    wanted: &[WantedVolume],
    now: &str,
) -> Result<VolumePlan, BusError> {
    let mut out = VolumePlan::default();
    for w in wanted {
        let uid = &w.record.uid;
        let stored = bus.volume_claim(uid).await?.unwrap_or_else(|| Stored {
            value: VolumeClaim {
                v: yun_fleet::SCHEMA_VERSION,
                volume: w.record.id.clone(),
                home: None,
                holders: Vec::new(),
            },
            mod_revision: 0,
        });
        let claim = &stored.value;
        let want = Want {
            vm_uid,
            vm,
            host,
            read_only: w.record.read_only,
        };
        let home = if w.is_local() {
            claim.home.as_deref()
        } else {
            None
        };
        // Cheap first pass with the phases unknown; the holders' records are read only when
        // there is someone to name in a refusal.
        let quick: Vec<Holder> = claim
            .holders
            .iter()
            .map(|h| holder(h, VolumePhase::Attached))
            .collect();
        let verdict = match decide(w.mode, home, &quick, &want) {
            Verdict::Refused(ClaimRefusal::HeldElsewhere { .. }) => {
                let known: Vec<Holder> = holder_views(bus, uid, claim)
                    .await?
                    .iter()
                    .map(|v| holder(&v.holder, v.phase()))
                    .collect();
                decide(w.mode, home, &known, &want)
            }
            v => v,
        };
        match verdict {
            Verdict::AlreadyHeld => out.granted.push(w.record.clone()),
            Verdict::Granted if !host_alive => out.waiting.push(format!(
                "spec.volumes[{}] ({}): host {host} is not reporting; the volume is granted once it is back",
                w.index, w.record.id
            )),
            Verdict::Granted => {
                let mut next = claim.clone();
                next.holders.push(ClaimHolder {
                    host: host.to_owned(),
                    vm_uid: vm_uid.to_owned(),
                    vm: vm.to_owned(),
                    read_only: w.record.read_only,
                    granted_at: now.to_owned(),
                });
                if w.is_local() && next.home.is_none() {
                    next.home = Some(host.to_owned());
                }
                out.grants.push(ClaimGrant {
                    volume_uid: uid.clone(),
                    expected_revision: stored.mod_revision,
                    claim: next,
                });
                out.granted.push(w.record.clone());
            }
            Verdict::Refused(why) => out.waiting.push(format!(
                "spec.volumes[{}] ({}): {why}",
                w.index, w.record.id
            )),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_holder_is_attached_only_when_listed_and_confirmed() {
        use AttachPhase as A;
        use VolumePhase as P;
        assert_eq!(holder_phase(true, Some(A::Attached)), P::Attached);
        assert_eq!(holder_phase(true, None), P::Attaching);
        assert_eq!(holder_phase(true, Some(A::Attaching)), P::Attaching);
        assert_eq!(holder_phase(true, Some(A::Failed)), P::Failed);
        // Not listed any more: whatever the host still has is on its way out.
        assert_eq!(holder_phase(false, Some(A::Attached)), P::Detaching);
        assert_eq!(holder_phase(false, Some(A::Attaching)), P::Detaching);
        assert_eq!(holder_phase(false, None), P::Detaching);
        assert_eq!(holder_phase(false, Some(A::Failed)), P::Failed);
    }
}
