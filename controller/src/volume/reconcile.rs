//! One reconcile step for a Volume, shared by both sources: release the holders whose hosts
//! confirmed the detach, then compute the status from the holders that remain.

use super::attach::holder_views;
use super::lifecycle::Deadlines;
use super::status::{HolderView, volume_status};
use std::time::Duration;
use thiserror::Error;
use yun_crds::{VolumePhase, VolumeStatus};
use yun_fleet::VolumeClaim;
use yun_fleet_etcd::{BusError, ClaimWrite, FleetBus, Stored};

#[derive(Debug, Error)]
pub enum VolumeReconcileError {
    #[error(transparent)]
    Bus(#[from] BusError),
    #[error("volume {volume}: no holder {host:?} to force-detach (holders: {holders})")]
    NoSuchHolder {
        volume: String,
        host: Option<String>,
        holders: String,
    },
    #[error("volume {volume}: no claim on the fleet bus (it is not attached anywhere)")]
    NotClaimed { volume: String },
    #[error("volume {volume}: the claim kept changing; try again")]
    Contended { volume: String },
}

/// What a step decided.
#[derive(Debug, Clone, PartialEq)]
pub struct VolumeStep {
    pub status: VolumeStatus,
    pub requeue: Duration,
    /// `VM x on host h` of every remaining holder (a deletion waits while there is one).
    pub holders: Vec<String>,
    /// `vm on host` of the holders released in this step (for Events and logs).
    pub released: Vec<String>,
}

fn requeue_for(phase: Option<VolumePhase>) -> Duration {
    match phase {
        Some(VolumePhase::Attaching | VolumePhase::Detaching | VolumePhase::Failed) => {
            Duration::from_secs(2)
        }
        Some(VolumePhase::Attached) => Duration::from_secs(30),
        _ => Duration::from_secs(60),
    }
}

/// One step for the Volume with `uid`.
pub async fn reconcile_volume(
    bus: &FleetBus,
    uid: &str,
    prior: Option<&VolumeStatus>,
    generation: Option<i64>,
    deadlines: &Deadlines,
) -> Result<VolumeStep, BusError> {
    let claim = bus.volume_claim(uid).await?;
    let (views, released) = match &claim {
        None => (Vec::new(), Vec::new()),
        Some(stored) => release_confirmed(bus, uid, stored).await?,
    };
    let status = volume_status(prior, generation, &views, jiff::Timestamp::now(), deadlines);
    let requeue = if released.is_empty() {
        requeue_for(status.phase)
    } else {
        Duration::from_millis(200)
    };
    Ok(VolumeStep {
        holders: views
            .iter()
            .map(|v| format!("VM {} on host {}", v.holder.vm, v.holder.host))
            .collect(),
        requeue,
        status,
        released,
    })
}

/// Drops the holders whose host confirmed the detach; returns the holders that remain and who
/// was released. On a lost race nothing is released this step (the next one sees the winner).
async fn release_confirmed(
    bus: &FleetBus,
    uid: &str,
    stored: &Stored<VolumeClaim>,
) -> Result<(Vec<HolderView>, Vec<String>), BusError> {
    let views = holder_views(bus, uid, &stored.value).await?;
    let (gone, kept): (Vec<HolderView>, Vec<HolderView>) =
        views.into_iter().partition(HolderView::released);
    if gone.is_empty() {
        return Ok((kept, Vec::new()));
    }
    let mut next = stored.value.clone();
    next.holders = kept.iter().map(|v| v.holder.clone()).collect();
    let write = (!next.is_vacant()).then_some(&next);
    match bus
        .write_volume_claim(uid, stored.mod_revision, write)
        .await?
    {
        ClaimWrite::Written => {
            let names: Vec<String> = gone
                .iter()
                .map(|v| format!("VM {} on host {}", v.holder.vm, v.holder.host))
                .collect();
            tracing::info!(volume = %stored.value.volume, released = ?names, "detach confirmed; claim released");
            Ok((kept, names))
        }
        ClaimWrite::Conflict => {
            let mut all = gone;
            all.extend(kept);
            Ok((all, Vec::new()))
        }
    }
}

/// A deleted Volume: removes its claim once nobody holds it. `false` while someone does.
pub async fn forget_volume(bus: &FleetBus, uid: &str) -> Result<bool, BusError> {
    let Some(stored) = bus.volume_claim(uid).await? else {
        return Ok(true);
    };
    let (kept, _) = release_confirmed(bus, uid, &stored).await?;
    if !kept.is_empty() {
        return Ok(false);
    }
    let Some(stored) = bus.volume_claim(uid).await? else {
        return Ok(true);
    };
    if !stored.value.holders.is_empty() {
        return Ok(false);
    }
    Ok(bus
        .write_volume_claim(uid, stored.mod_revision, None)
        .await?
        == ClaimWrite::Written)
}
