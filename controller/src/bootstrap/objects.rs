//! Bootstrap mode's objects, read from the object store each pass, and the three writes a
//! reconciler makes to one: hold a finalizer, release it, write the status. The store does
//! the bookkeeping (uid minted once, generation from spec changes, no-op writes skipped), so
//! nothing here keeps records of its own.

use crate::vm_events::Transition;
use yun_crds::{DeviceIdentity, Host, Network, SecurityGroup, VirtualMachine, VmImage, Volume};
use yun_store::{EtcdStore, EventType, ObjectStore, StoreError, StoredKind};

/// Every object of every kind the bootstrap source reconciles, at one moment.
#[derive(Debug, Default, Clone)]
pub struct Objects {
    pub vms: Vec<VirtualMachine>,
    pub images: Vec<VmImage>,
    pub hosts: Vec<Host>,
    pub networks: Vec<Network>,
    pub security_groups: Vec<SecurityGroup>,
    pub volumes: Vec<Volume>,
    pub devices: Vec<DeviceIdentity>,
}

impl Objects {
    pub async fn load(store: &EtcdStore) -> Result<Objects, StoreError> {
        Ok(Objects {
            vms: store.list(None).await?.items,
            images: store.list(None).await?.items,
            hosts: store.list(None).await?.items,
            networks: store.list(None).await?.items,
            security_groups: store.list(None).await?.items,
            volumes: store.list(None).await?.items,
            devices: store.list(None).await?.items,
        })
    }
}

/// `(namespace, name)` of an object; `""` for a cluster-scoped one's namespace.
pub fn ns_name<K: StoredKind>(obj: &K) -> (String, String) {
    let meta = obj.meta();
    (
        meta.namespace.clone().unwrap_or_default(),
        meta.name.clone().unwrap_or_default(),
    )
}

pub fn uid_of<K: StoredKind>(obj: &K) -> String {
    obj.meta().uid.clone().unwrap_or_default()
}

/// `metadata.generation` (1 from the first write on).
pub fn generation_of<K: StoredKind>(obj: &K) -> i64 {
    obj.meta().generation.unwrap_or(1)
}

pub fn is_deleting<K: StoredKind>(obj: &K) -> bool {
    obj.meta().deletion_timestamp.is_some()
}

fn holds<K: StoredKind>(obj: &K, finalizer: &str) -> bool {
    obj.meta()
        .finalizers
        .as_ref()
        .is_some_and(|f| f.iter().any(|x| x == finalizer))
}

/// Adds `finalizer` before anything is done for the object, so that deleting it waits for the
/// cleanup. Returns the object as stored. An object already being deleted is left as it is.
pub async fn hold<K: StoredKind>(
    store: &EtcdStore,
    obj: &K,
    finalizer: &str,
) -> Result<K, StoreError> {
    if holds(obj, finalizer) || is_deleting(obj) {
        return Ok(obj.clone());
    }
    let mut next = obj.clone();
    next.meta_mut()
        .finalizers
        .get_or_insert_with(Vec::new)
        .push(finalizer.to_owned());
    store.replace(&next).await
}

/// Drops `finalizer`: the cleanup it guarded is done (the store removes a deleting object
/// whose last finalizer goes).
pub async fn release<K: StoredKind>(
    store: &EtcdStore,
    obj: &K,
    finalizer: &str,
) -> Result<(), StoreError> {
    if !holds(obj, finalizer) {
        return Ok(());
    }
    let mut next = obj.clone();
    if let Some(f) = next.meta_mut().finalizers.as_mut() {
        f.retain(|x| x != finalizer);
    }
    match store.replace(&next).await {
        Ok(_) => Ok(()),
        Err(e) if e.is_not_found() => Ok(()),
        Err(e) => Err(e),
    }
}

/// Writes `obj`'s status (the store skips the write when it is unchanged). Unguarded, as the
/// Kubernetes source's server-side apply of status: the status is computed from the object, and
/// a spec change meanwhile is seen (and its status written) on the next pass.
pub async fn write_status<K: StoredKind>(store: &EtcdStore, obj: &K) -> Result<K, StoreError> {
    let mut next = obj.clone();
    next.meta_mut().resource_version = None;
    store.replace_status(&next).await
}

/// Publishes `events` about `obj` (what `yunctl describe` lists); best effort, as in
/// Kubernetes mode: a failure is logged and never fails the pass.
pub async fn publish<K: StoredKind>(store: &EtcdStore, obj: &K, events: &[Transition]) {
    for t in events {
        let type_ = match t.type_ {
            kube::runtime::events::EventType::Normal => EventType::Normal,
            kube::runtime::events::EventType::Warning => EventType::Warning,
        };
        if let Err(e) = store.publish(obj, type_, &t.reason, &t.note).await {
            let (ns, name) = ns_name(obj);
            tracing::warn!(object = %format!("{ns}/{name}"), reason = %t.reason, error = %e, "event not recorded");
        }
    }
}
