//! Bootstrap mode's Volumes: uids minted once and kept in the status record (the claim on the
//! fleet bus is keyed by uid, so it must never change), CHAP from a host file, and statuses
//! computed by the shared Volume step after the VMs of the pass.

use super::BootstrapError;
use super::status_records::fresh_record;
use crate::volume::lifecycle::Deadlines;
use crate::volume::reconcile::{forget_volume, reconcile_volume};
use crate::volume::resolve::VolumeObject;
use std::collections::BTreeMap;
use yun_crds::{Volume, VolumeStatus};
use yun_fleet::{BootstrapStatus, ChapRecord};
use yun_fleet_etcd::FleetBus;

pub const VOLUME_KIND: &str = "Volume";

type Key = (String, String);

/// The Volume status records, with a uid for every manifest (new ones are written at once).
#[derive(Debug, Default)]
pub struct VolumeRecords {
    pub records: BTreeMap<Key, BootstrapStatus>,
}

fn key_of(v: &Volume) -> Key {
    (
        v.metadata.namespace.clone().unwrap_or_default(),
        v.metadata.name.clone().unwrap_or_default(),
    )
}

impl VolumeRecords {
    pub async fn load(bus: &FleetBus, volumes: &[Volume]) -> Result<Self, BootstrapError> {
        let mut records: BTreeMap<Key, BootstrapStatus> = bus
            .list_bootstrap_status(Some(VOLUME_KIND))
            .await?
            .into_iter()
            .map(|r| ((r.namespace.clone(), r.name.clone()), r))
            .collect();
        for v in volumes {
            let key = key_of(v);
            let spec_hash = super::spec_hash(&v.spec);
            let rec = records
                .entry(key.clone())
                .or_insert_with(|| fresh_record(VOLUME_KIND, &key.0, &key.1));
            if rec.spec_hash != spec_hash || rec.deleting {
                rec.generation += 1;
                rec.spec_hash = spec_hash;
                rec.deleting = false;
                // Persist before any VM can be granted the volume under this uid.
                bus.put_bootstrap_status(rec).await?;
            }
        }
        Ok(VolumeRecords { records })
    }

    /// The namespace's Volumes as VM reconciles see them.
    pub fn objects<'a>(
        &self,
        volumes: &'a [Volume],
    ) -> BTreeMap<String, BTreeMap<String, VolumeObject<'a>>> {
        let mut out: BTreeMap<String, BTreeMap<String, VolumeObject<'a>>> = BTreeMap::new();
        for v in volumes {
            let key = key_of(v);
            let Some(rec) = self.records.get(&key) else {
                continue;
            };
            let chap = v.spec.iscsi.as_ref().and_then(|i| i.chap.as_ref()).map(|c| {
                match &c.file {
                    Some(path) => Ok(ChapRecord::File { path: path.clone() }),
                    None => Err("secretRef needs Kubernetes mode; bootstrap mode reads chap.file on the host".to_owned()),
                }
            });
            out.entry(key.0).or_default().insert(
                key.1,
                VolumeObject {
                    uid: rec.uid.clone(),
                    spec: &v.spec,
                    chap,
                    deleting: false,
                    invalid: None,
                },
            );
        }
        out
    }

    /// The attachment phase each record's status had after the last pass (for the gauge).
    pub fn phases(&self) -> impl Iterator<Item = Option<yun_crds::VolumePhase>> + '_ {
        self.records.values().map(|r| {
            serde_json::from_value::<VolumeStatus>(r.status.clone())
                .ok()
                .and_then(|s| s.phase)
        })
    }

    /// Status step of every Volume; a removed manifest keeps its record (as a tombstone) until
    /// no VM holds the volume, then its claim and record go.
    pub async fn statuses(
        self,
        bus: &FleetBus,
        volumes: &[Volume],
        deadlines: &Deadlines,
    ) -> Result<(), BootstrapError> {
        let present: Vec<Key> = volumes.iter().map(key_of).collect();
        for (key, mut rec) in self.records {
            let (ns, name) = &key;
            if !present.contains(&key) {
                rec.deleting = true;
            }
            let before = rec.clone();
            let prior: Option<VolumeStatus> = serde_json::from_value(rec.status.clone()).ok();
            let generation = i64::try_from(rec.generation).ok();
            // The step releases the holders whose hosts confirmed; a removed volume nobody
            // holds any more loses its claim and record.
            let step =
                reconcile_volume(bus, &rec.uid, prior.as_ref(), generation, deadlines).await?;
            if rec.deleting && step.holders.is_empty() && forget_volume(bus, &rec.uid).await? {
                bus.delete_bootstrap_status(VOLUME_KIND, ns, name).await?;
                tracing::info!(volume = %format!("{ns}/{name}"), "volume removed");
                continue;
            }
            let mut status = step.status;
            if rec.deleting && !step.holders.is_empty() {
                status.message = Some(format!(
                    "deletion waits until no VM holds it: {}",
                    status.message.unwrap_or_default()
                ));
            }
            rec.status = serde_json::to_value(&status).unwrap_or(serde_json::Value::Null);
            if rec != before {
                bus.put_bootstrap_status(&rec).await?;
            }
        }
        Ok(())
    }
}
