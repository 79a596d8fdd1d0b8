//! Events: what happened to an object, for `describe`. As the API server's Events, repeats of
//! the same reason and message are folded into one record with a count, and records expire
//! (here after one to two hours: they share a lease that is renewed every hour).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use etcd_client::{GetOptions, PutOptions};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::StoreError;
use crate::etcd::EtcdStore;
use crate::keys;
use crate::meta;

/// How long an Event lives at least; it lives at most twice this.
pub const EVENT_TTL: Duration = Duration::from_secs(3600);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum EventType {
    Normal,
    Warning,
}

/// The object an Event is about.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InvolvedObject {
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    pub name: String,
    pub uid: String,
}

/// One Event record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Event {
    pub involved: InvolvedObject,
    #[serde(rename = "type")]
    pub type_: EventType,
    /// CamelCase, e.g. `Scheduled`.
    pub reason: String,
    pub message: String,
    /// Who reported it, e.g. `yun-controller`.
    pub source: String,
    pub count: u32,
    pub first_timestamp: String,
    pub last_timestamp: String,
}

/// The lease Events are written with, granted lazily and replaced every [`EVENT_TTL`].
#[derive(Debug, Clone, Default)]
pub(crate) struct EventLease(Arc<Mutex<Option<(i64, Instant)>>>);

impl EventLease {
    fn fresh(&self) -> Option<i64> {
        let held = self.0.lock().ok()?;
        held.filter(|(_, at)| at.elapsed() < EVENT_TTL)
            .map(|(id, _)| id)
    }

    fn set(&self, id: i64) {
        if let Ok(mut held) = self.0.lock() {
            *held = Some((id, Instant::now()));
        }
    }
}

fn event_key(uid: &str, reason: &str, message: &str) -> String {
    let digest = Sha256::digest(message.as_bytes());
    format!(
        "{}{reason}.{}",
        keys::events_prefix(uid),
        hex::encode(&digest[..6])
    )
}

impl EtcdStore {
    async fn event_lease(&self) -> Result<i64, StoreError> {
        if let Some(id) = self.events.fresh() {
            return Ok(id);
        }
        let ttl = i64::try_from(EVENT_TTL.as_secs() * 2).unwrap_or(i64::MAX);
        let resp = self
            .client()
            .lease_grant(ttl, None)
            .await
            .map_err(StoreError::etcd("lease grant", keys::EVENTS_PREFIX))?;
        self.events.set(resp.id());
        Ok(resp.id())
    }

    /// Records that `reason`/`message` happened to `involved`; a repeat bumps the count of the
    /// record it repeats. Best effort by design: a caller logs a failure and goes on.
    pub async fn publish_event(
        &self,
        involved: &InvolvedObject,
        type_: EventType,
        reason: &str,
        message: &str,
        source: &str,
    ) -> Result<(), StoreError> {
        let key = event_key(&involved.uid, reason, message);
        let now = meta::now();
        let prior = self
            .client()
            .get(key.as_str(), None)
            .await
            .map_err(StoreError::etcd("get", &key))?
            .kvs()
            .first()
            .and_then(|kv| serde_json::from_slice::<Event>(kv.value()).ok());
        let event = Event {
            involved: involved.clone(),
            type_,
            reason: reason.to_owned(),
            message: message.to_owned(),
            source: source.to_owned(),
            count: prior.as_ref().map_or(1, |p| p.count.saturating_add(1)),
            first_timestamp: prior.map_or_else(|| now.clone(), |p| p.first_timestamp),
            last_timestamp: now,
        };
        let lease = self.event_lease().await?;
        let value = serde_json::to_vec(&event).unwrap_or_default();
        self.client()
            .put(
                key.as_str(),
                value,
                Some(PutOptions::new().with_lease(lease)),
            )
            .await
            .map_err(StoreError::etcd("put", &key))?;
        Ok(())
    }

    /// The Events about the object with `uid`, oldest last-seen first.
    pub async fn events_for(&self, uid: &str) -> Result<Vec<Event>, StoreError> {
        let prefix = keys::events_prefix(uid);
        let resp = self
            .client()
            .get(prefix.as_str(), Some(GetOptions::new().with_prefix()))
            .await
            .map_err(StoreError::etcd("list", &prefix))?;
        let mut events = Vec::with_capacity(resp.kvs().len());
        for kv in resp.kvs() {
            let event: Event =
                serde_json::from_slice(kv.value()).map_err(|source| StoreError::Decode {
                    key: String::from_utf8_lossy(kv.key()).into_owned(),
                    source,
                })?;
            events.push(event);
        }
        events.sort_by(|a, b| a.last_timestamp.cmp(&b.last_timestamp));
        Ok(events)
    }
}
