//! The object store: one interface with Kubernetes semantics for every reconciler, and its
//! etcd-backed implementation for bootstrap mode, where no API server exists yet.
//!
//! # Semantics (as the API server's)
//! - `create` mints the uid, creation time and `generation: 1`, drops any status, and refuses a
//!   taken name (`AlreadyExists`) or an owner reference to a uid that does not exist.
//! - `replace` takes spec and metadata; a spec change bumps `generation`; status and the
//!   server's fields are kept; when the object carries a `resourceVersion` that is not the
//!   current one it is refused with `Conflict` (re-read and retry). A write that changes nothing
//!   is not made, so watchers see no change and `resourceVersion` stays.
//! - `replace_status` is the status subresource: only `status` changes, same guard.
//! - `delete` removes an object without finalizers at once and then, in the background of the
//!   same call, every object it owns (`metadata.ownerReferences`) whose other owners are gone
//!   too; an object with finalizers is marked (`deletionTimestamp`) and removed by the `replace`
//!   that drops its last finalizer. A marked object cannot gain finalizers.
//! - `watch` from a list's resourceVersion sees every later change once, in order; a watch
//!   from before etcd's compaction is `Gone` (list again).
//! - `apply_raw` is `kubectl apply` for a whole declaration: create when absent, else the
//!   declared spec, labels and annotations replace the stored ones, everything else is kept.
//! - Events fold repeats into a count and expire after one to two hours.
//!
//! # Where it lives
//! On the fleet etcd, under `/yun/store/v1/` ([`keys`]): a first rack runs one etcd cluster, not
//! two, and the store is small next to the fleet's records (a few KiB per object, written on
//! spec and status changes, not on heartbeats). It sits outside `/yun/v1/`, so no agent's role
//! reaches it, and its own etcd role (`yun-store`, for `yunctl`) can read and write it and
//! nothing else. A separate etcd is only an endpoint away: [`EtcdStore::connect`] takes any.
//!
//! # Layers
//! [`meta`] is the bookkeeping as pure functions on JSON (tested without etcd); [`etcd`] commits
//! each write in one guarded transaction with its index entries; [`typed`] is the
//! [`ObjectStore`] trait the reconcilers are written against, over `kube::Resource` kinds;
//! [`KindInfo`] lets `yunctl` use the same store untyped, from the CRDs.

pub mod apply;
pub mod error;
pub mod etcd;
pub mod events;
pub mod keys;
pub mod kind;
pub mod meta;
pub mod typed;
pub mod watch;

pub use apply::Applied;
pub use error::StoreError;
pub use etcd::{Deleted, EtcdStore, RawList};
pub use events::{Event, EventType, InvolvedObject};
pub use kind::{KindInfo, StoredKind};
pub use meta::ObjectName;
pub use typed::{Change, Deletion, Listed, ObjectStore, Watch};
pub use watch::{RawEvent, RawWatch, WatchEventType};

impl ObjectName {
    /// Where a typed object lives.
    pub fn of<K: StoredKind>(obj: &K) -> ObjectName {
        let meta = obj.meta();
        ObjectName {
            namespace: meta.namespace.clone().filter(|_| K::NAMESPACED),
            name: meta.name.clone().unwrap_or_default(),
        }
    }

    pub fn namespaced(namespace: &str, name: &str) -> ObjectName {
        ObjectName {
            namespace: Some(namespace.to_owned()),
            name: name.to_owned(),
        }
    }

    pub fn cluster(name: &str) -> ObjectName {
        ObjectName {
            namespace: None,
            name: name.to_owned(),
        }
    }
}
