//! The object-store interface the reconcilers use: typed by kind, Kubernetes semantics. The
//! etcd store implements it here; the Kubernetes API implements the same calls through kube-rs.

use std::future::Future;

use serde_json::Value;

use crate::error::StoreError;
use crate::etcd::{Deleted, EtcdStore};
use crate::events::{EventType, InvolvedObject};
use crate::kind::{KindInfo, StoredKind};
use crate::meta::ObjectName;
use crate::watch::{RawWatch, WatchEventType};

/// Objects of one kind at one resourceVersion.
#[derive(Debug, Clone)]
pub struct Listed<K> {
    pub items: Vec<K>,
    pub resource_version: i64,
}

/// What a delete did, typed.
#[derive(Debug, Clone)]
pub enum Deletion<K> {
    Gone(K),
    /// Finalizers remain: the object is marked deleting.
    Pending(K),
}

/// A typed change seen by a watch.
#[derive(Debug, Clone)]
pub struct Change<K> {
    pub kind: WatchEventType,
    pub object: K,
}

/// Get, list, watch, create, replace (guarded by resourceVersion), replace the status, delete
/// (finalizers, cascading to owned objects), and publish Events.
pub trait ObjectStore: Clone + Send + Sync + 'static {
    fn get<K: StoredKind>(
        &self,
        name: &ObjectName,
    ) -> impl Future<Output = Result<Option<K>, StoreError>> + Send;
    fn list<K: StoredKind>(
        &self,
        namespace: Option<&str>,
    ) -> impl Future<Output = Result<Listed<K>, StoreError>> + Send;
    fn create<K: StoredKind>(&self, obj: &K) -> impl Future<Output = Result<K, StoreError>> + Send;
    fn replace<K: StoredKind>(&self, obj: &K)
    -> impl Future<Output = Result<K, StoreError>> + Send;
    fn replace_status<K: StoredKind>(
        &self,
        obj: &K,
    ) -> impl Future<Output = Result<K, StoreError>> + Send;
    fn delete<K: StoredKind>(
        &self,
        name: &ObjectName,
    ) -> impl Future<Output = Result<Deletion<K>, StoreError>> + Send;
    fn publish<K: StoredKind>(
        &self,
        obj: &K,
        type_: EventType,
        reason: &str,
        message: &str,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
}

/// The object as JSON with apiVersion and kind set (typed kinds may leave them out).
pub fn to_value<K: StoredKind>(obj: &K) -> Result<Value, StoreError> {
    let mut value =
        serde_json::to_value(obj).map_err(|e| StoreError::invalid("", e.to_string()))?;
    if let Some(o) = value.as_object_mut() {
        o.insert(
            "apiVersion".into(),
            Value::String(K::api_version(&()).into_owned()),
        );
        o.insert("kind".into(), Value::String(K::kind(&()).into_owned()));
    }
    Ok(value)
}

/// A stored object as `K`; the key names it in the error.
pub fn from_value<K: StoredKind>(value: Value) -> Result<K, StoreError> {
    let key = format!(
        "{} {}",
        K::kind(&()),
        crate::meta::meta_str(&value, "name").unwrap_or("?")
    );
    serde_json::from_value(value).map_err(|source| StoreError::Decode { key, source })
}

/// Who an Event is about.
pub fn involved<K: StoredKind>(obj: &K) -> InvolvedObject {
    let meta = obj.meta();
    InvolvedObject {
        kind: K::kind(&()).into_owned(),
        namespace: meta.namespace.clone(),
        name: meta.name.clone().unwrap_or_default(),
        uid: meta.uid.clone().unwrap_or_default(),
    }
}

/// Who reports Events through this store.
pub const EVENT_SOURCE: &str = "yun-controller";

impl ObjectStore for EtcdStore {
    async fn get<K: StoredKind>(&self, name: &ObjectName) -> Result<Option<K>, StoreError> {
        EtcdStore::get_raw(self, &KindInfo::of::<K>(), name)
            .await?
            .map(from_value)
            .transpose()
    }

    async fn list<K: StoredKind>(&self, namespace: Option<&str>) -> Result<Listed<K>, StoreError> {
        let raw = EtcdStore::list_raw(self, &KindInfo::of::<K>(), namespace).await?;
        Ok(Listed {
            items: raw
                .items
                .into_iter()
                .map(from_value)
                .collect::<Result<_, _>>()?,
            resource_version: raw.resource_version,
        })
    }

    async fn create<K: StoredKind>(&self, obj: &K) -> Result<K, StoreError> {
        from_value(EtcdStore::create_raw(self, &KindInfo::of::<K>(), &to_value(obj)?).await?)
    }

    async fn replace<K: StoredKind>(&self, obj: &K) -> Result<K, StoreError> {
        from_value(EtcdStore::replace_raw(self, &KindInfo::of::<K>(), &to_value(obj)?).await?)
    }

    async fn replace_status<K: StoredKind>(&self, obj: &K) -> Result<K, StoreError> {
        from_value(
            EtcdStore::replace_status_raw(self, &KindInfo::of::<K>(), &to_value(obj)?).await?,
        )
    }

    async fn delete<K: StoredKind>(&self, name: &ObjectName) -> Result<Deletion<K>, StoreError> {
        Ok(
            match EtcdStore::delete_raw(self, &KindInfo::of::<K>(), name).await? {
                Deleted::Gone(v) => Deletion::Gone(from_value(v)?),
                Deleted::Pending(v) => Deletion::Pending(from_value(v)?),
            },
        )
    }

    async fn publish<K: StoredKind>(
        &self,
        obj: &K,
        type_: EventType,
        reason: &str,
        message: &str,
    ) -> Result<(), StoreError> {
        self.publish_event(&involved(obj), type_, reason, message, EVENT_SOURCE)
            .await
    }
}

/// A typed watch over a raw one.
#[derive(Debug)]
pub struct Watch<K> {
    raw: RawWatch,
    _kind: std::marker::PhantomData<fn() -> K>,
}

impl<K: StoredKind> Watch<K> {
    pub fn resource_version(&self) -> i64 {
        self.raw.resource_version()
    }

    pub async fn next(&mut self) -> Result<Vec<Change<K>>, StoreError> {
        self.raw
            .next()
            .await?
            .into_iter()
            .map(|e| {
                Ok(Change {
                    kind: e.kind,
                    object: from_value(e.object)?,
                })
            })
            .collect()
    }
}

impl EtcdStore {
    /// A typed watch of `K` from `resource_version`.
    pub async fn watch_kind<K: StoredKind>(
        &self,
        namespace: Option<&str>,
        resource_version: i64,
    ) -> Result<Watch<K>, StoreError> {
        Ok(Watch {
            raw: self
                .watch_raw(&KindInfo::of::<K>(), namespace, resource_version)
                .await?,
            _kind: std::marker::PhantomData,
        })
    }
}
