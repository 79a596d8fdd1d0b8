//! Bootstrap mode's Volumes: uids are the store's (minted once at create, so the claim on the
//! fleet bus, keyed by uid, never changes), CHAP from a host file, and statuses computed by the
//! shared Volume step after the VMs of the pass. A Volume holds the in-use finalizer: deleting
//! it waits until no VM holds it, then its claim goes and the store removes it.

use super::BootstrapError;
use super::objects::{self, generation_of, is_deleting, ns_name, uid_of};
use crate::object::IN_USE_FINALIZER;
use crate::volume::lifecycle::Deadlines;
use crate::volume::reconcile::{forget_volume, reconcile_volume};
use crate::volume::resolve::VolumeObject;
use std::collections::BTreeMap;
use yun_crds::Volume;
use yun_fleet::ChapRecord;
use yun_fleet_etcd::FleetBus;
use yun_store::EtcdStore;

pub const VOLUME_KIND: &str = "Volume";

/// The pass's Volumes, each holding its finalizer.
#[derive(Debug, Default)]
pub struct VolumeRecords {
    pub volumes: Vec<Volume>,
}

impl VolumeRecords {
    pub async fn load(store: &EtcdStore, volumes: &[Volume]) -> Result<Self, BootstrapError> {
        let mut held = Vec::with_capacity(volumes.len());
        for v in volumes {
            held.push(objects::hold(store, v, IN_USE_FINALIZER).await?);
        }
        Ok(VolumeRecords { volumes: held })
    }

    /// The namespace's Volumes as VM reconciles see them (a deleting one is granted to none).
    pub fn objects(&self) -> BTreeMap<String, BTreeMap<String, VolumeObject<'_>>> {
        let mut out: BTreeMap<String, BTreeMap<String, VolumeObject<'_>>> = BTreeMap::new();
        for v in self.volumes.iter().filter(|v| !is_deleting(*v)) {
            let (ns, name) = ns_name(v);
            let chap = v.spec.iscsi.as_ref().and_then(|i| i.chap.as_ref()).map(|c| {
                match &c.file {
                    Some(path) => Ok(ChapRecord::File { path: path.clone() }),
                    None => Err("secretRef needs Kubernetes mode; bootstrap mode reads chap.file on the host".to_owned()),
                }
            });
            out.entry(ns).or_default().insert(
                name,
                VolumeObject {
                    uid: uid_of(v),
                    spec: &v.spec,
                    chap,
                    deleting: false,
                    invalid: None,
                },
            );
        }
        out
    }

    /// The attachment phase each Volume's status had after the last pass (for the gauge).
    pub fn phases(&self) -> impl Iterator<Item = Option<yun_crds::VolumePhase>> + '_ {
        self.volumes
            .iter()
            .map(|v| v.status.as_ref().and_then(|s| s.phase))
    }

    /// Status step of every Volume; a deleting one keeps its finalizer until no VM holds the
    /// volume, then its claim goes and the finalizer is released.
    pub async fn statuses(
        self,
        bus: &FleetBus,
        store: &EtcdStore,
        deadlines: &Deadlines,
    ) -> Result<(), BootstrapError> {
        for v in self.volumes {
            let (ns, name) = ns_name(&v);
            let deleting = is_deleting(&v);
            let uid = uid_of(&v);
            // The step releases the holders whose hosts confirmed; a deleting volume nobody
            // holds any more loses its claim, then the object.
            let step = reconcile_volume(
                bus,
                &uid,
                v.status.as_ref(),
                Some(generation_of(&v)),
                deadlines,
            )
            .await?;
            if deleting && step.holders.is_empty() && forget_volume(bus, &uid).await? {
                objects::release(store, &v, IN_USE_FINALIZER).await?;
                tracing::info!(volume = %format!("{ns}/{name}"), "volume removed");
                continue;
            }
            let mut status = step.status;
            if deleting && !step.holders.is_empty() {
                status.message = Some(format!(
                    "deletion waits until no VM holds it: {}",
                    status.message.unwrap_or_default()
                ));
            }
            let mut next = v;
            next.status = Some(status);
            objects::write_status(store, &next).await?;
        }
        Ok(())
    }
}
