//! Watches of one kind from a resourceVersion, as the API server's `?watch=true`: Added,
//! Modified and Deleted (with the last state), in revision order; compaction is [`StoreError::Gone`].

use etcd_client::{EventType, WatchOptions, WatchStream};
use serde_json::Value;

use crate::error::StoreError;
use crate::etcd::{EtcdStore, decode};
use crate::keys;
use crate::kind::KindInfo;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WatchEventType {
    Added,
    Modified,
    Deleted,
}

impl WatchEventType {
    pub fn as_str(self) -> &'static str {
        match self {
            WatchEventType::Added => "ADDED",
            WatchEventType::Modified => "MODIFIED",
            WatchEventType::Deleted => "DELETED",
        }
    }
}

/// One change: the object after it (for Deleted, as it was last, at the deletion's revision).
#[derive(Debug, Clone, PartialEq)]
pub struct RawEvent {
    pub kind: WatchEventType,
    pub object: Value,
}

/// A watch on one kind's objects.
#[derive(Debug)]
pub struct RawWatch {
    prefix: String,
    stream: WatchStream,
    /// The last revision delivered: resume from here after a reconnect.
    resource_version: i64,
}

impl RawWatch {
    pub fn resource_version(&self) -> i64 {
        self.resource_version
    }

    /// The next batch of changes (never empty).
    pub async fn next(&mut self) -> Result<Vec<RawEvent>, StoreError> {
        loop {
            let resp = self
                .stream
                .message()
                .await
                .map_err(StoreError::etcd("watch", &self.prefix))?
                .ok_or_else(|| closed(&self.prefix, "stream ended"))?;
            if resp.compact_revision() > 0 {
                return Err(StoreError::Gone {
                    resource_version: self.resource_version,
                    compacted: resp.compact_revision(),
                });
            }
            if resp.canceled() {
                return Err(closed(&self.prefix, resp.cancel_reason()));
            }
            let mut out = Vec::with_capacity(resp.events().len());
            for ev in resp.events() {
                let Some(kv) = ev.kv() else { continue };
                let key = String::from_utf8_lossy(kv.key()).into_owned();
                let event = match ev.event_type() {
                    EventType::Put => RawEvent {
                        kind: if kv.create_revision() == kv.mod_revision() {
                            WatchEventType::Added
                        } else {
                            WatchEventType::Modified
                        },
                        object: decode(&key, kv.value(), kv.mod_revision())?,
                    },
                    EventType::Delete => {
                        let Some(prev) = ev.prev_kv() else { continue };
                        RawEvent {
                            kind: WatchEventType::Deleted,
                            object: decode(&key, prev.value(), kv.mod_revision())?,
                        }
                    }
                };
                self.resource_version = self.resource_version.max(kv.mod_revision());
                out.push(event);
            }
            if !out.is_empty() {
                return Ok(out);
            }
        }
    }
}

fn closed(prefix: &str, reason: &str) -> StoreError {
    StoreError::invalid("", format!("watch of {prefix} closed: {reason}"))
}

impl EtcdStore {
    /// Every change to `kind`'s objects (in `namespace`, when given) after `resource_version`
    /// (a list's, or an object's).
    pub async fn watch_raw(
        &self,
        kind: &KindInfo,
        namespace: Option<&str>,
        resource_version: i64,
    ) -> Result<RawWatch, StoreError> {
        let prefix = keys::objects_prefix(kind, namespace);
        let opts = WatchOptions::new()
            .with_prefix()
            .with_prev_key()
            .with_start_revision(resource_version + 1);
        let stream = self
            .client()
            .watch(prefix.as_str(), Some(opts))
            .await
            .map_err(StoreError::etcd("watch", &prefix))?;
        Ok(RawWatch {
            prefix,
            stream,
            resource_version,
        })
    }
}
