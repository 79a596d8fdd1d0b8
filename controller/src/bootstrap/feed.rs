//! The manifests directory as one input to the object store, as kubelet reads static pods: a
//! file present is an object a user applied, a file removed deletes what it declared. Objects
//! that did not come from the directory (`yunctl apply`, the controller's own children) are
//! never deleted here, and neither are those of a file that is refused now (an invalid edit
//! must not delete what the file declared before).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use serde_json::Value;
use yun_crds::{DeviceIdentity, Host, Network, SecurityGroup, VirtualMachine, VmImage, Volume};
use yun_store::typed::to_value;
use yun_store::{EtcdStore, KindInfo, ObjectName, StoreError, StoredKind, meta};

use super::manifests::DirContents;
use crate::object::MANIFEST_ANNOTATION;

/// What one sync changed, per kind.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct FeedReport {
    pub created: usize,
    pub configured: usize,
    pub deleted: usize,
}

/// One kind's declared objects: (namespace, name) → the object, annotated with its file.
type Declared = BTreeMap<ObjectName, Value>;

fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

fn declare<K: StoredKind>(
    contents: &DirContents,
    objects: &[K],
) -> Result<(KindInfo, Declared), StoreError> {
    let info = KindInfo::of::<K>();
    let mut out = Declared::new();
    for obj in objects {
        let name = ObjectName::of(obj);
        let key = (
            info.kind.clone(),
            name.namespace.clone().unwrap_or_default(),
            name.name.clone(),
        );
        let mut value = to_value(obj)?;
        let file = contents.sources.get(&key).map(|p| file_name(p));
        if let Some(Value::Object(meta)) = value.get_mut("metadata") {
            let annotations = meta
                .entry("annotations")
                .or_insert_with(|| Value::Object(Default::default()));
            if let Value::Object(a) = annotations {
                a.insert(
                    MANIFEST_ANNOTATION.into(),
                    Value::String(file.unwrap_or_default()),
                );
            }
        }
        out.insert(name, value);
    }
    Ok((info, out))
}

/// Brings the store in line with the directory's contents.
pub async fn sync(store: &EtcdStore, contents: &DirContents) -> Result<FeedReport, StoreError> {
    let refused: BTreeSet<String> = contents.errors.keys().map(|p| file_name(p)).collect();
    let kinds = [
        declare::<Host>(contents, &contents.objects.hosts)?,
        declare::<VmImage>(contents, &contents.objects.images)?,
        declare::<Network>(contents, &contents.objects.networks)?,
        declare::<SecurityGroup>(contents, &contents.objects.security_groups)?,
        declare::<Volume>(contents, &contents.objects.volumes)?,
        declare::<VirtualMachine>(contents, &contents.objects.vms)?,
        declare::<DeviceIdentity>(contents, &contents.objects.devices)?,
    ];
    let mut report = FeedReport::default();
    for (kind, declared) in &kinds {
        sync_kind(store, kind, declared, &refused, &mut report).await?;
    }
    Ok(report)
}

async fn sync_kind(
    store: &EtcdStore,
    kind: &KindInfo,
    declared: &Declared,
    refused: &BTreeSet<String>,
    report: &mut FeedReport,
) -> Result<(), StoreError> {
    let mut stored: BTreeMap<ObjectName, Value> = BTreeMap::new();
    for obj in store.list_raw(kind, None).await?.items {
        stored.insert(meta::object_name(kind, &obj)?, obj);
    }
    for (name, want) in declared {
        let outcome = match stored.get(name) {
            None => store
                .create_raw(kind, want)
                .await
                .map(|_| &mut report.created),
            Some(have) => {
                let next = yun_store::apply::merge_declared(have, want);
                if meta::for_replace(have, &next)?.is_none() {
                    continue;
                }
                store
                    .replace_raw(kind, &next)
                    .await
                    .map(|_| &mut report.configured)
            }
        };
        match outcome {
            Ok(count) => *count += 1,
            // Someone else wrote it meanwhile: the next pass looks again.
            Err(e) if e.is_conflict() || matches!(e, StoreError::AlreadyExists { .. }) => {}
            Err(e) => return Err(e),
        }
    }
    for (name, have) in &stored {
        let from_file = have
            .pointer(&format!(
                "/metadata/annotations/{}",
                MANIFEST_ANNOTATION.replace('/', "~1")
            ))
            .and_then(Value::as_str);
        let Some(file) = from_file else { continue };
        if declared.contains_key(name) || refused.contains(file) || meta::is_deleting(have) {
            continue;
        }
        match store.delete_raw(kind, name).await {
            Ok(_) => report.deleted += 1,
            Err(e) if e.is_not_found() || e.is_conflict() => {}
            Err(e) => return Err(e),
        }
        tracing::info!(kind = %kind.kind, object = %name, file, "manifest removed: deleting");
    }
    Ok(())
}
