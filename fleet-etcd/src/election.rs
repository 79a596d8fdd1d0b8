//! Leader election: the leader holds `/yun/v1/election/controller`, created only if absent and
//! attached to its lease. When the leader dies its lease expires, the key goes, and a standby wins.

use crate::bus::FleetBus;
use crate::error::BusError;
use crate::lease::HostLease;
use etcd_client::{Compare, CompareOp, PutOptions, Txn, TxnOp};
use yun_fleet::keys::ELECTION_CONTROLLER;

/// Held by the current leader; keep it refreshed or lose leadership.
#[derive(Debug)]
pub struct Leadership {
    pub lease: HostLease,
    pub identity: String,
}

impl FleetBus {
    /// Tries once to become leader. `Ok(None)` means someone else leads: their identity is
    /// returned by [`FleetBus::current_leader`].
    pub async fn try_lead(
        &self,
        identity: &str,
        ttl_secs: i64,
    ) -> Result<Option<Leadership>, BusError> {
        let lease = self.grant_lease(ttl_secs).await?;
        let txn = Txn::new()
            .when([Compare::create_revision(
                ELECTION_CONTROLLER,
                CompareOp::Equal,
                0,
            )])
            .and_then([TxnOp::put(
                ELECTION_CONTROLLER,
                identity,
                Some(PutOptions::new().with_lease(lease.id)),
            )]);
        let won = self
            .client()
            .txn(txn)
            .await
            .map_err(BusError::etcd("campaign", ELECTION_CONTROLLER))?
            .succeeded();
        if won {
            Ok(Some(Leadership {
                lease,
                identity: identity.to_owned(),
            }))
        } else {
            self.revoke_lease(lease.id).await?;
            Ok(None)
        }
    }

    /// The identity of the current leader, if any.
    pub async fn current_leader(&self) -> Result<Option<String>, BusError> {
        let resp = self
            .client()
            .get(ELECTION_CONTROLLER, None)
            .await
            .map_err(BusError::etcd("get", ELECTION_CONTROLLER))?;
        Ok(resp
            .kvs()
            .first()
            .map(|kv| String::from_utf8_lossy(kv.value()).into_owned()))
    }

    /// Steps down at once (clean shutdown), so a standby need not wait for the lease to expire.
    pub async fn resign(&self, leadership: Leadership) -> Result<(), BusError> {
        self.revoke_lease(leadership.lease.id).await
    }
}
