//! The operator's force-detach: releases a volume's holders without their hosts' confirmation.
//! Dangerous — a host that is only cut off may still be writing — and meant for a host that is
//! powered off or fenced. The host's desired record loses the volume in the same transaction,
//! so a host that comes back detaches it instead of carrying on.

use super::reconcile::VolumeReconcileError;
use yun_fleet_etcd::{ClaimWrite, FleetBus};

/// What a force-detach did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForceDetached {
    pub volume: String,
    pub uid: String,
    /// `VM on host` of every released holder.
    pub released: Vec<String>,
}

/// Releases the holders of the Volume `namespace/name` on `host` (every holder when `None`).
pub async fn force_detach(
    bus: &FleetBus,
    volume: &str,
    host: Option<&str>,
) -> Result<ForceDetached, VolumeReconcileError> {
    for _ in 0..8 {
        let claims = bus.list_volume_claims().await?;
        let Some((uid, stored)) = claims.into_iter().find(|(_, c)| c.value.volume == volume) else {
            return Err(VolumeReconcileError::NotClaimed {
                volume: volume.to_owned(),
            });
        };
        let (gone, kept): (Vec<_>, Vec<_>) = stored
            .value
            .holders
            .iter()
            .cloned()
            .partition(|h| host.is_none_or(|want| h.host == want));
        if gone.is_empty() {
            return Err(VolumeReconcileError::NoSuchHolder {
                volume: volume.to_owned(),
                host: host.map(str::to_owned),
                holders: stored
                    .value
                    .holders
                    .iter()
                    .map(|h| format!("{} on {}", h.vm, h.host))
                    .collect::<Vec<_>>()
                    .join(", "),
            });
        }
        let mut rewrites = Vec::new();
        for h in &gone {
            if let Some(mut d) = bus.desired_stored(&h.host, &h.vm_uid).await?
                && d.value.volumes.iter().any(|v| v.uid == uid)
            {
                d.value.volumes.retain(|v| v.uid != uid);
                rewrites.push((h.host.clone(), d));
            }
        }
        let mut next = stored.value.clone();
        next.holders = kept;
        let write = (!next.is_vacant()).then_some(&next);
        if bus
            .force_detach(&uid, stored.mod_revision, write, &rewrites)
            .await?
            == ClaimWrite::Written
        {
            let released: Vec<String> = gone
                .iter()
                .map(|h| format!("VM {} on host {}", h.vm, h.host))
                .collect();
            tracing::warn!(volume, released = ?released, "volume FORCE-DETACHED by an operator");
            return Ok(ForceDetached {
                volume: volume.to_owned(),
                uid,
                released,
            });
        }
    }
    Err(VolumeReconcileError::Contended {
        volume: volume.to_owned(),
    })
}
