//! Bootstrap-mode status records of objects that are not VMs (VmImage, Network,
//! SecurityGroup): read what the bus holds for a kind, write the records whose status changed,
//! and remove those of objects whose manifests are gone.

use std::collections::BTreeMap;

use serde::de::DeserializeOwned;
use yun_fleet::{BootstrapStatus, SCHEMA_VERSION};
use yun_fleet_etcd::{BusError, FleetBus};

/// `(namespace, name)`.
pub type ObjectKey = (String, String);

/// The status records the bus holds for `kind`.
pub async fn held_statuses(
    bus: &FleetBus,
    kind: &str,
) -> Result<BTreeMap<ObjectKey, BootstrapStatus>, BusError> {
    Ok(bus
        .list_bootstrap_status(Some(kind))
        .await?
        .into_iter()
        .map(|r| ((r.namespace.clone(), r.name.clone()), r))
        .collect())
}

/// A new record for object `namespace/name` of `kind`, with a fresh uid and nothing observed
/// yet (generation 0, no spec hash): what a first pass writes before it acts on the object,
/// so the uid survives a restart.
pub fn fresh_record(kind: &str, namespace: &str, name: &str) -> BootstrapStatus {
    BootstrapStatus {
        v: SCHEMA_VERSION,
        kind: kind.into(),
        namespace: namespace.into(),
        name: name.into(),
        uid: uuid::Uuid::new_v4().to_string(),
        generation: 0,
        spec_hash: String::new(),
        deleting: false,
        status: serde_json::Value::Null,
    }
}

/// The status last written for `key`, if it still parses.
pub fn previous<T: DeserializeOwned>(
    held: &BTreeMap<ObjectKey, BootstrapStatus>,
    key: &ObjectKey,
) -> Option<T> {
    held.get(key)
        .and_then(|r| serde_json::from_value(r.status.clone()).ok())
}

/// One object's status as it should be written.
#[derive(Debug, Clone, PartialEq)]
pub struct WantedStatus {
    pub spec_hash: String,
    pub status: serde_json::Value,
}

/// Writes each wanted status that differs from what `held` has (keeping the record's uid) and
/// deletes the held records no object wants any more.
pub async fn sync_statuses(
    bus: &FleetBus,
    kind: &str,
    mut held: BTreeMap<ObjectKey, BootstrapStatus>,
    want: BTreeMap<ObjectKey, WantedStatus>,
) -> Result<(), BusError> {
    for ((namespace, name), w) in want {
        let before = held.remove(&(namespace.clone(), name.clone()));
        let rec = BootstrapStatus {
            v: SCHEMA_VERSION,
            kind: kind.into(),
            namespace,
            name,
            uid: before
                .as_ref()
                .map(|r| r.uid.clone())
                .unwrap_or_else(|| uuid::Uuid::new_v4().to_string()),
            generation: 1,
            spec_hash: w.spec_hash,
            deleting: false,
            status: w.status,
        };
        if before.as_ref() != Some(&rec) {
            bus.put_bootstrap_status(&rec).await?;
        }
    }
    for (ns, name) in held.into_keys() {
        bus.delete_bootstrap_status(kind, &ns, &name).await?;
    }
    Ok(())
}
