//! The etcd-backed store: every write is one transaction guarded by the object key's
//! mod_revision (its resourceVersion), carrying the uid and owner index entries with it, so an
//! object and its indexes never disagree.

use std::collections::BTreeSet;

use etcd_client::{Client, Compare, CompareOp, GetOptions, Txn, TxnOp};
use serde_json::Value;
use yun_fleet_etcd::FleetBus;

use crate::error::StoreError;
use crate::keys;
use crate::kind::KindInfo;
use crate::meta::{self, ObjectName};

/// Keys per page of a list: a page stays well under etcd's message limit.
const LIST_PAGE: i64 = 2_000;

/// Objects of one kind at one revision: watch from `resource_version` to see every later change.
#[derive(Debug, Clone, PartialEq)]
pub struct RawList {
    pub items: Vec<Value>,
    pub resource_version: i64,
}

/// What a delete did.
#[derive(Debug, Clone, PartialEq)]
pub enum Deleted {
    /// The object is gone (its dependents are being deleted with it).
    Gone(Value),
    /// The object has finalizers: it is marked deleting and stays until they are removed.
    Pending(Value),
}

/// An object store in etcd. Cheap to clone.
#[derive(Clone)]
pub struct EtcdStore {
    bus: FleetBus,
    pub(crate) events: crate::events::EventLease,
}

impl std::fmt::Debug for EtcdStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EtcdStore").finish_non_exhaustive()
    }
}

/// A stored object as read: its JSON (with resourceVersion) and key revision.
#[derive(Debug, Clone)]
struct Current {
    key: String,
    object: Value,
    mod_revision: i64,
}

pub(crate) fn decode(key: &str, bytes: &[u8], mod_revision: i64) -> Result<Value, StoreError> {
    let obj: Value = serde_json::from_slice(bytes).map_err(|source| StoreError::Decode {
        key: key.to_owned(),
        source,
    })?;
    Ok(meta::with_resource_version(obj, mod_revision))
}

fn encode(obj: &Value) -> Vec<u8> {
    // A serde_json::Value always serializes.
    serde_json::to_vec(&meta::for_storage(obj)).unwrap_or_default()
}

fn not_found(kind: &str, name: &ObjectName) -> StoreError {
    StoreError::NotFound {
        kind: kind.to_owned(),
        name: name.to_string(),
    }
}

impl EtcdStore {
    /// A store on an etcd connection (the fleet bus's, or a separate etcd's).
    pub fn new(bus: FleetBus) -> EtcdStore {
        EtcdStore {
            bus,
            events: crate::events::EventLease::default(),
        }
    }

    /// Connects like the fleet bus does (TLS with a client certificate when `tls` is given).
    pub async fn connect(
        endpoints: &[String],
        tls: Option<&yun_fleet_etcd::BusTls>,
    ) -> Result<EtcdStore, StoreError> {
        let bus = FleetBus::connect(endpoints, std::time::Duration::from_secs(5), tls).await?;
        Ok(EtcdStore::new(bus))
    }

    pub(crate) fn client(&self) -> Client {
        self.bus.client()
    }

    async fn read(&self, key: &str) -> Result<Option<Current>, StoreError> {
        let resp = self
            .client()
            .get(key, None)
            .await
            .map_err(StoreError::etcd("get", key))?;
        match resp.kvs().first() {
            Some(kv) => Ok(Some(Current {
                key: key.to_owned(),
                object: decode(key, kv.value(), kv.mod_revision())?,
                mod_revision: kv.mod_revision(),
            })),
            None => Ok(None),
        }
    }

    /// The object, if it exists.
    pub async fn get_raw(
        &self,
        kind: &KindInfo,
        name: &ObjectName,
    ) -> Result<Option<Value>, StoreError> {
        Ok(self
            .read(&keys::object_key(kind, name))
            .await?
            .map(|c| c.object))
    }

    /// Every object of `kind` (in `namespace`, when given), in key order, at one revision
    /// (the fleet bus's paged scan: no response holds more than a page).
    pub async fn list_raw(
        &self,
        kind: &KindInfo,
        namespace: Option<&str>,
    ) -> Result<RawList, StoreError> {
        let prefix = keys::objects_prefix(kind, namespace);
        let end = yun_fleet_etcd::prefix_end(&prefix);
        let mut items = Vec::new();
        let mut bad = None;
        let revision = self
            .bus
            .scan_range(&prefix, &end, LIST_PAGE, |kv| {
                match decode(kv.key, kv.value, kv.mod_revision) {
                    Ok(obj) => items.push(obj),
                    Err(e) => bad = bad.take().or(Some(e)),
                }
                Ok(())
            })
            .await?;
        match bad {
            Some(e) => Err(e),
            None => Ok(RawList {
                items,
                resource_version: revision,
            }),
        }
    }

    /// Stores a new object: uid, creation time and generation 1 are minted here, status is
    /// dropped. Every owner it names must exist.
    pub async fn create_raw(&self, kind: &KindInfo, obj: &Value) -> Result<Value, StoreError> {
        let name = meta::object_name(kind, obj)?;
        let key = keys::object_key(kind, &name);
        let uid = uuid::Uuid::new_v4().to_string();
        let obj = meta::for_create(obj, &uid, &meta::now())?;
        self.check_owners(&obj, &[]).await?;
        let mut ops = vec![
            TxnOp::put(key.as_str(), encode(&obj), None),
            TxnOp::put(keys::uid_key(&uid), key.as_bytes(), None),
        ];
        ops.extend(owner_ops(&key, &[], &meta::owner_uids(&obj)));
        let txn = Txn::new()
            .when(vec![Compare::create_revision(
                key.as_str(),
                CompareOp::Equal,
                0,
            )])
            .and_then(ops);
        let resp = self
            .client()
            .txn(txn)
            .await
            .map_err(StoreError::etcd("create", &key))?;
        if !resp.succeeded() {
            return Err(StoreError::AlreadyExists {
                kind: kind.kind.clone(),
                name: name.to_string(),
            });
        }
        let revision = resp.header().map(|h| h.revision()).unwrap_or_default();
        Ok(meta::with_resource_version(obj, revision))
    }

    /// Replaces spec and metadata (labels, annotations, finalizers, owner references), guarded
    /// by `metadata.resourceVersion` when the object carries one. Status is kept; a spec change
    /// bumps the generation; an unchanged object is not written. Removing the last finalizer of
    /// an object being deleted removes it.
    pub async fn replace_raw(&self, kind: &KindInfo, obj: &Value) -> Result<Value, StoreError> {
        self.update(kind, obj, meta::for_replace).await
    }

    /// Replaces the status and nothing else (the status subresource), guarded like `replace`.
    pub async fn replace_status_raw(
        &self,
        kind: &KindInfo,
        obj: &Value,
    ) -> Result<Value, StoreError> {
        self.update(kind, obj, meta::for_status).await
    }

    async fn update(
        &self,
        kind: &KindInfo,
        obj: &Value,
        next_of: fn(&Value, &Value) -> Result<Option<Value>, StoreError>,
    ) -> Result<Value, StoreError> {
        let name = meta::object_name(kind, obj)?;
        let current = self.current(kind, &name).await?;
        if let Some(expected) = meta::resource_version(obj)
            && expected != current.mod_revision.to_string()
        {
            return Err(conflict(kind, &name, expected, current.mod_revision));
        }
        let Some(next) = next_of(&current.object, obj)? else {
            return Ok(current.object);
        };
        if meta::is_finalized(&next) {
            self.remove(&current).await?;
            self.cascade(&current.object).await?;
            return Ok(next);
        }
        let before = meta::owner_uids(&current.object);
        self.check_owners(&next, &before).await?;
        let mut ops = vec![TxnOp::put(current.key.as_str(), encode(&next), None)];
        ops.extend(owner_ops(&current.key, &before, &meta::owner_uids(&next)));
        let revision = self.guarded(&current, ops, kind, &name).await?;
        Ok(meta::with_resource_version(next, revision))
    }

    async fn current(&self, kind: &KindInfo, name: &ObjectName) -> Result<Current, StoreError> {
        self.read(&keys::object_key(kind, name))
            .await?
            .ok_or_else(|| not_found(&kind.kind, name))
    }

    /// Commits `ops` if the object is still at the revision it was read at.
    async fn guarded(
        &self,
        current: &Current,
        ops: Vec<TxnOp>,
        kind: &KindInfo,
        name: &ObjectName,
    ) -> Result<i64, StoreError> {
        let txn = Txn::new()
            .when(vec![Compare::mod_revision(
                current.key.as_str(),
                CompareOp::Equal,
                current.mod_revision,
            )])
            .and_then(ops);
        let resp = self
            .client()
            .txn(txn)
            .await
            .map_err(StoreError::etcd("update", &current.key))?;
        if !resp.succeeded() {
            let now = self.read(&current.key).await?.map_or(0, |c| c.mod_revision);
            return Err(conflict(kind, name, &current.mod_revision.to_string(), now));
        }
        Ok(resp.header().map(|h| h.revision()).unwrap_or_default())
    }

    /// Deletes the object: at once when it has no finalizers (then its dependents too), else it
    /// is marked deleting and stays until the finalizers are removed.
    pub async fn delete_raw(
        &self,
        kind: &KindInfo,
        name: &ObjectName,
    ) -> Result<Deleted, StoreError> {
        let current = self.current(kind, name).await?;
        if meta::is_deleting(&current.object) {
            return Ok(Deleted::Pending(current.object));
        }
        if !meta::finalizers(&current.object).is_empty() {
            let next = meta::mark_deleting(&current.object, &meta::now())?;
            let ops = vec![TxnOp::put(current.key.as_str(), encode(&next), None)];
            let revision = self.guarded(&current, ops, kind, name).await?;
            return Ok(Deleted::Pending(meta::with_resource_version(
                next, revision,
            )));
        }
        self.remove(&current).await?;
        self.cascade(&current.object).await?;
        Ok(Deleted::Gone(current.object))
    }

    /// Removes the object and its index entries, if it is still as read.
    async fn remove(&self, current: &Current) -> Result<(), StoreError> {
        let mut ops = vec![TxnOp::delete(current.key.as_str(), None)];
        if let Some(uid) = meta::uid(&current.object) {
            ops.push(TxnOp::delete(keys::uid_key(uid), None));
        }
        ops.extend(owner_ops(
            &current.key,
            &meta::owner_uids(&current.object),
            &[],
        ));
        let (kind, name) = key_kind(current)?;
        self.guarded(current, ops, &kind, &name).await.map(drop)
    }

    /// Background cascading deletion: every dependent of `owner` whose other owners are gone
    /// too is deleted (through its own finalizers), and so on down.
    async fn cascade(&self, owner: &Value) -> Result<(), StoreError> {
        let mut gone: Vec<String> = meta::uid(owner).map(str::to_owned).into_iter().collect();
        while let Some(uid) = gone.pop() {
            for dependent_key in self.dependents(&uid).await? {
                let Some(dependent) = self.read(&dependent_key).await? else {
                    self.drop_owner_entry(&uid, &dependent_key).await?;
                    continue;
                };
                if self.has_live_owner(&dependent.object, &uid).await? {
                    self.drop_owner_entry(&uid, &dependent_key).await?;
                    continue;
                }
                if !meta::finalizers(&dependent.object).is_empty() {
                    if !meta::is_deleting(&dependent.object) {
                        let next = meta::mark_deleting(&dependent.object, &meta::now())?;
                        self.put_if_unchanged(&dependent, &next).await?;
                    }
                    continue;
                }
                match self.remove(&dependent).await {
                    Ok(()) => gone.extend(meta::uid(&dependent.object).map(str::to_owned)),
                    // Changed meanwhile: its next writer or the next cascade handles it.
                    Err(e) if e.is_conflict() => {}
                    Err(e) => return Err(e),
                }
            }
        }
        Ok(())
    }

    async fn put_if_unchanged(&self, current: &Current, next: &Value) -> Result<(), StoreError> {
        let (kind, name) = key_kind(current)?;
        let ops = vec![TxnOp::put(current.key.as_str(), encode(next), None)];
        match self.guarded(current, ops, &kind, &name).await {
            Ok(_) => Ok(()),
            Err(e) if e.is_conflict() => Ok(()),
            Err(e) => Err(e),
        }
    }

    async fn dependents(&self, owner_uid: &str) -> Result<Vec<String>, StoreError> {
        let prefix = keys::owner_prefix(owner_uid);
        let resp = self
            .client()
            .get(prefix.as_str(), Some(GetOptions::new().with_prefix()))
            .await
            .map_err(StoreError::etcd("list dependents", &prefix))?;
        Ok(resp
            .kvs()
            .iter()
            .map(|kv| String::from_utf8_lossy(kv.value()).into_owned())
            .collect())
    }

    async fn drop_owner_entry(&self, owner_uid: &str, object_key: &str) -> Result<(), StoreError> {
        let key = keys::owner_key(owner_uid, object_key);
        self.client()
            .delete(key.as_str(), None)
            .await
            .map_err(StoreError::etcd("delete", &key))?;
        Ok(())
    }

    async fn uid_exists(&self, uid: &str) -> Result<bool, StoreError> {
        let key = keys::uid_key(uid);
        let resp = self
            .client()
            .get(key.as_str(), Some(GetOptions::new().with_count_only()))
            .await
            .map_err(StoreError::etcd("get", &key))?;
        Ok(resp.count() > 0)
    }

    async fn has_live_owner(&self, obj: &Value, except: &str) -> Result<bool, StoreError> {
        for uid in meta::owner_uids(obj) {
            if uid != except && self.uid_exists(&uid).await? {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Every owner the object names that it did not name before must exist.
    async fn check_owners(&self, obj: &Value, before: &[String]) -> Result<(), StoreError> {
        for (i, uid) in meta::owner_uids(obj).iter().enumerate() {
            if !before.contains(uid) && !self.uid_exists(uid).await? {
                return Err(StoreError::invalid(
                    format!("metadata.ownerReferences[{i}].uid"),
                    format!("no object has uid {uid:?}"),
                ));
            }
        }
        Ok(())
    }
}

/// The kind and name of an object read by key (a cascade reaches objects of any kind), for the
/// guard's errors: the kind from the object itself, else its plural.
fn key_kind(current: &Current) -> Result<(KindInfo, ObjectName), StoreError> {
    let (plural, name) = keys::parse_object_key(&current.key)?;
    let kind = current
        .object
        .get("kind")
        .and_then(Value::as_str)
        .unwrap_or(&plural)
        .to_owned();
    let namespaced = name.namespace.is_some();
    Ok((
        KindInfo {
            kind,
            api_version: String::new(),
            plural,
            namespaced,
        },
        name,
    ))
}

fn conflict(kind: &KindInfo, name: &ObjectName, expected: &str, current: i64) -> StoreError {
    StoreError::Conflict {
        kind: kind.kind.clone(),
        name: name.to_string(),
        expected: expected.to_owned(),
        current: current.to_string(),
    }
}

/// The owner index writes for an object whose owners go from `before` to `after`.
fn owner_ops(object_key: &str, before: &[String], after: &[String]) -> Vec<TxnOp> {
    let before: BTreeSet<&String> = before.iter().collect();
    let after: BTreeSet<&String> = after.iter().collect();
    let added = after.difference(&before).map(|uid| {
        TxnOp::put(
            keys::owner_key(uid, object_key),
            object_key.as_bytes(),
            None,
        )
    });
    let removed = before
        .difference(&after)
        .map(|uid| TxnOp::delete(keys::owner_key(uid, object_key), None));
    added.chain(removed).collect()
}
