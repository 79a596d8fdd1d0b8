//! Per-VM findings: clear-text network volumes and stale credentials.

use super::period::format_age;
use serde::{Deserialize, Serialize};
use std::time::Duration;
use yun_fleet::{ChapRecord, VmDesired, VolumeSourceRecord};

/// Which VM, and the host whose desired record lists it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct VmRef {
    /// `namespace/name`.
    pub vm: String,
    pub uid: String,
    pub host: String,
}

impl VmRef {
    pub fn new(vm: &VmDesired, host: &str) -> VmRef {
        VmRef {
            vm: format!("{}/{}", vm.namespace, vm.name),
            uid: vm.uid.clone(),
            host: host.to_owned(),
        }
    }
}

/// A volume whose blocks travel over the network unencrypted.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ClearTextVolume {
    #[serde(flatten)]
    pub at: VmRef,
    /// `namespace/name` of the Volume.
    pub volume: String,
    pub volume_uid: String,
    /// `iscsi` or `nfs`.
    pub driver: String,
    /// Where the traffic goes: iSCSI portals and IQN/LUN, or NFS `server:export`.
    pub target: String,
    /// iSCSI only: whether CHAP authenticates the session (it still does not encrypt).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chap: Option<bool>,
    /// Why this is clear text, in words.
    pub reason: String,
}

/// A credential older than the rotation period, or one whose age cannot be told.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct StaleCredential {
    #[serde(flatten)]
    pub at: VmRef,
    pub credential_id: String,
    pub generation: u64,
    pub issued_at: String,
    /// Seconds since `issued_at`; `None` when `issued_at` is not an RFC 3339 time.
    pub age_secs: Option<i64>,
    /// The age for humans (`40d 2h`), or why it is unknown.
    pub age: String,
}

/// The VM's volumes that cross the network in clear text. Local volumes stay on the host and
/// Fibre Channel runs on its own fabric; iSCSI has no encryption in Yun (no IPsec), and an NFS
/// volume record carries no security flavour: QEMU's NFS client opens the file with AUTH_SYS
/// (krb5p, the one encrypting flavour, cannot be asked for).
pub fn clear_text_volumes(vm: &VmDesired, at: &VmRef) -> Vec<ClearTextVolume> {
    vm.volumes
        .iter()
        .filter_map(|v| {
            let (target, chap, reason) = match &v.source {
                VolumeSourceRecord::Local {} | VolumeSourceRecord::Fc { .. } => return None,
                VolumeSourceRecord::Iscsi {
                    portals,
                    iqn,
                    lun,
                    chap,
                } => (
                    format!("{} {iqn} lun {lun}", portals.join(",")),
                    Some(chap.is_some()),
                    iscsi_reason(chap.as_ref()).to_owned(),
                ),
                VolumeSourceRecord::Nfs { server, export, .. } => (
                    format!("{server}:{export}"),
                    None,
                    "NFS with no security flavour (AUTH_SYS): data crosses the network \
                     unencrypted (only krb5p would encrypt)"
                        .to_owned(),
                ),
            };
            Some(ClearTextVolume {
                at: at.clone(),
                volume: v.id.clone(),
                volume_uid: v.uid.clone(),
                driver: v.source.driver().to_owned(),
                target,
                chap,
                reason,
            })
        })
        .collect()
}

fn iscsi_reason(chap: Option<&ChapRecord>) -> &'static str {
    match chap {
        Some(_) => {
            "iSCSI with CHAP: CHAP authenticates the initiator but does not encrypt; \
             blocks cross the network in clear text"
        }
        None => "iSCSI without CHAP: unauthenticated, and blocks cross the network in clear text",
    }
}

/// The VM's credential if it is strictly older than `period` at `now`, or if its issue time
/// cannot be read (its age cannot be shown to be within the period). A credential issued
/// exactly `period` ago is still compliant; one issued in the future (clock skew) is not stale.
pub fn stale_credential(
    vm: &VmDesired,
    at: &VmRef,
    period: Duration,
    now: jiff::Timestamp,
) -> Option<StaleCredential> {
    let identity = vm.identity.as_ref()?;
    let (age_secs, age) = match identity.issued_at.parse::<jiff::Timestamp>() {
        Ok(issued) => {
            let age = now.duration_since(issued);
            // A period too long for a signed duration is one nothing outlives.
            let limit = jiff::SignedDuration::try_from(period).unwrap_or(jiff::SignedDuration::MAX);
            if age <= limit {
                return None;
            }
            (Some(age.as_secs()), format_age(age.as_secs()))
        }
        Err(_) => (
            None,
            "unknown: issued_at is not an RFC 3339 time".to_owned(),
        ),
    };
    Some(StaleCredential {
        at: at.clone(),
        credential_id: identity.credential_id.clone(),
        generation: identity.generation,
        issued_at: identity.issued_at.clone(),
        age_secs,
        age,
    })
}
