//! Prefix watches that resume from a revision and surface compaction as an error, so callers
//! relist instead of silently missing events.

use crate::error::BusError;
use etcd_client::{EventType, WatchStream};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventKind {
    Put(Vec<u8>),
    Delete,
}

/// One change under a watched prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BusEvent {
    pub key: String,
    pub kind: EventKind,
    pub mod_revision: i64,
}

/// A watch on a prefix, started at a known revision.
#[derive(Debug)]
pub struct BusWatch {
    pub(crate) prefix: String,
    pub(crate) stream: WatchStream,
    pub(crate) last_revision: i64,
}

impl BusWatch {
    /// The revision of the last event delivered (or the start revision - 1).
    pub fn last_revision(&self) -> i64 {
        self.last_revision
    }

    /// Waits for the next batch of events. Progress notifications yield an empty batch.
    pub async fn next(&mut self) -> Result<Vec<BusEvent>, BusError> {
        loop {
            let msg = self
                .stream
                .message()
                .await
                .map_err(BusError::etcd("watch", self.prefix.clone()))?;
            let Some(resp) = msg else {
                return Err(BusError::WatchClosed {
                    prefix: self.prefix.clone(),
                    reason: "stream ended".into(),
                });
            };
            if resp.compact_revision() > 0 {
                return Err(BusError::Compacted {
                    prefix: self.prefix.clone(),
                    requested: self.last_revision + 1,
                    compacted: resp.compact_revision(),
                });
            }
            // etcd checks a watch's range when it creates it and cancels it (with this reason,
            // the gRPC status as text) when the user may not read the range.
            if resp.canceled() && resp.cancel_reason().contains("PermissionDenied") {
                return Err(BusError::PermissionDenied {
                    op: "watch",
                    key: self.prefix.clone(),
                });
            }
            if resp.canceled() {
                return Err(BusError::WatchClosed {
                    prefix: self.prefix.clone(),
                    reason: resp.cancel_reason().to_owned(),
                });
            }
            if resp.created() && resp.events().is_empty() {
                continue;
            }
            let mut out = Vec::with_capacity(resp.events().len());
            for ev in resp.events() {
                let Some(kv) = ev.kv() else { continue };
                let key = kv
                    .key_str()
                    .map_err(|_| BusError::BadKey {
                        key: String::from_utf8_lossy(kv.key()).into_owned(),
                    })?
                    .to_owned();
                let kind = match ev.event_type() {
                    EventType::Put => EventKind::Put(kv.value().to_vec()),
                    EventType::Delete => EventKind::Delete,
                };
                self.last_revision = self.last_revision.max(kv.mod_revision());
                out.push(BusEvent {
                    key,
                    kind,
                    mod_revision: kv.mod_revision(),
                });
            }
            return Ok(out);
        }
    }
}
