//! A host's lease: the heartbeat is the lease keep-alive, not an object write (design §1).

use crate::error::BusError;
use etcd_client::{LeaseKeepAliveStream, LeaseKeeper};

/// A granted lease plus its keep-alive channel.
#[derive(Debug)]
pub struct HostLease {
    pub(crate) id: i64,
    pub(crate) ttl_secs: i64,
    pub(crate) keeper: LeaseKeeper,
    pub(crate) stream: LeaseKeepAliveStream,
}

impl HostLease {
    pub fn id(&self) -> i64 {
        self.id
    }

    pub fn ttl_secs(&self) -> i64 {
        self.ttl_secs
    }

    /// Sends one keep-alive and waits for etcd's answer. `LeaseExpired` means the lease is gone
    /// (keys attached to it were deleted): the caller must register again with a new lease.
    pub async fn refresh(&mut self) -> Result<i64, BusError> {
        let key = format!("lease {:x}", self.id);
        self.keeper
            .keep_alive()
            .await
            .map_err(BusError::etcd("keep-alive", key.clone()))?;
        let resp = self
            .stream
            .message()
            .await
            .map_err(BusError::etcd("keep-alive", key.clone()))?;
        match resp {
            Some(r) if r.ttl() > 0 => Ok(r.ttl()),
            Some(_) => Err(BusError::LeaseExpired { id: self.id }),
            None => Err(BusError::WatchClosed {
                prefix: key,
                reason: "keep-alive stream ended".into(),
            }),
        }
    }
}
