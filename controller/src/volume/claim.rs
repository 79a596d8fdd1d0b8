//! The single-writer rule: whether a volume may be attached to a VM on a host, given who holds
//! it now. Holders are the attachments the fleet bus records, one per (VM, host); a holder
//! leaves only when its host confirms the detach (phase `Detached`) or an operator
//! force-detaches it. So a `ReadWriteOnce` volume is never attached on a second host while the
//! first host has not confirmed — whatever the first host's state, including silent or
//! `Failed`. The controller applies a grant with an etcd transaction that compares the holder
//! keys it read, so two controllers (or two reconciles) cannot both win.

use thiserror::Error;
use yun_crds::{AccessMode, VolumePhase};

/// One attachment of a volume, as the fleet records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holder {
    pub vm_uid: String,
    /// `namespace/name` of the VM, for messages.
    pub vm: String,
    pub host: String,
    pub read_only: bool,
    pub phase: VolumePhase,
}

/// An attachment a VM asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Want<'a> {
    pub vm_uid: &'a str,
    pub vm: &'a str,
    pub host: &'a str,
    pub read_only: bool,
}

/// Why an attachment is refused (the volume's and the VM's condition message).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ClaimRefusal {
    #[error(
        "the volume is ReadWriteOnce and attached to VM {vm} on host {host} ({phase:?}); it is attached here once that host confirms the detach"
    )]
    HeldElsewhere {
        vm: String,
        host: String,
        phase: VolumePhase,
    },
    #[error("the volume is ReadOnlyMany: spec.volumes[].readOnly must be true")]
    WriteOnReadOnly,
    #[error("the volume is local to host {home}; the VM is placed on {host}")]
    LocalElsewhere { home: String, host: String },
}

/// The verdict on a [`Want`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Nobody stands in the way: record the attachment.
    Granted,
    /// This VM on this host already holds it.
    AlreadyHeld,
    Refused(ClaimRefusal),
}

/// Decides `want` for a volume with `mode`, local to `local_home` (a local volume lives on the
/// host that created it; `None` for SAN/NAS volumes or one not created yet), held by `holders`.
pub fn decide(
    mode: AccessMode,
    local_home: Option<&str>,
    holders: &[Holder],
    want: &Want<'_>,
) -> Verdict {
    if let Some(home) = local_home
        && home != want.host
    {
        return Verdict::Refused(ClaimRefusal::LocalElsewhere {
            home: home.to_owned(),
            host: want.host.to_owned(),
        });
    }
    if holders
        .iter()
        .any(|h| h.vm_uid == want.vm_uid && h.host == want.host && h.phase != VolumePhase::Detached)
    {
        return Verdict::AlreadyHeld;
    }
    match mode {
        AccessMode::ReadOnlyMany if !want.read_only => {
            Verdict::Refused(ClaimRefusal::WriteOnReadOnly)
        }
        AccessMode::ReadOnlyMany => Verdict::Granted,
        AccessMode::ReadWriteOnce => {
            match holders.iter().find(|h| h.phase != VolumePhase::Detached) {
                Some(h) => Verdict::Refused(ClaimRefusal::HeldElsewhere {
                    vm: h.vm.clone(),
                    host: h.host.clone(),
                    phase: h.phase,
                }),
                None => Verdict::Granted,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn holder(vm: &str, host: &str, phase: VolumePhase) -> Holder {
        Holder {
            vm_uid: format!("uid-{vm}"),
            vm: format!("t/{vm}"),
            host: host.into(),
            read_only: false,
            phase,
        }
    }

    fn want<'a>(vm_uid: &'a str, host: &'a str, read_only: bool) -> Want<'a> {
        Want {
            vm_uid,
            vm: "t/x",
            host,
            read_only,
        }
    }

    #[test]
    fn a_free_volume_is_granted_and_a_held_one_is_held() {
        let rwo = AccessMode::ReadWriteOnce;
        assert_eq!(
            decide(rwo, None, &[], &want("uid-a", "h1", false)),
            Verdict::Granted
        );
        let held = [holder("a", "h1", VolumePhase::Attached)];
        assert_eq!(
            decide(rwo, None, &held, &want("uid-a", "h1", false)),
            Verdict::AlreadyHeld
        );
    }

    #[test]
    fn read_write_once_waits_for_the_first_host_to_confirm_whatever_its_state() {
        let rwo = AccessMode::ReadWriteOnce;
        for phase in [
            VolumePhase::Attaching,
            VolumePhase::Attached,
            VolumePhase::Detaching,
            VolumePhase::Failed,
        ] {
            // The same VM re-placed on h2 is refused too: h1 has not let go.
            for uid in ["uid-a", "uid-b"] {
                let v = decide(
                    rwo,
                    None,
                    &[holder("a", "h1", phase)],
                    &want(uid, "h2", false),
                );
                assert_eq!(
                    v,
                    Verdict::Refused(ClaimRefusal::HeldElsewhere {
                        vm: "t/a".into(),
                        host: "h1".into(),
                        phase
                    }),
                    "{phase:?} {uid}"
                );
            }
        }
        let confirmed = [holder("a", "h1", VolumePhase::Detached)];
        assert_eq!(
            decide(rwo, None, &confirmed, &want("uid-b", "h2", false)),
            Verdict::Granted
        );
    }

    #[test]
    fn read_only_many_shares_read_only_and_refuses_writers() {
        let rox = AccessMode::ReadOnlyMany;
        let held = [holder("a", "h1", VolumePhase::Attached)];
        assert_eq!(
            decide(rox, None, &held, &want("uid-b", "h2", true)),
            Verdict::Granted
        );
        let v = decide(rox, None, &held, &want("uid-b", "h2", false));
        assert_eq!(v, Verdict::Refused(ClaimRefusal::WriteOnReadOnly));
        assert!(
            ClaimRefusal::WriteOnReadOnly
                .to_string()
                .contains("readOnly must be true")
        );
    }

    #[test]
    fn a_local_volume_stays_on_its_host() {
        let v = decide(
            AccessMode::ReadWriteOnce,
            Some("h1"),
            &[],
            &want("uid-a", "h2", false),
        );
        let Verdict::Refused(why) = v else {
            panic!("{v:?}")
        };
        assert_eq!(
            why.to_string(),
            "the volume is local to host h1; the VM is placed on h2"
        );
        assert_eq!(
            decide(
                AccessMode::ReadWriteOnce,
                Some("h1"),
                &[],
                &want("uid-a", "h1", false)
            ),
            Verdict::Granted
        );
    }
}
