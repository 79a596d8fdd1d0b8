//! One fleet-bus session of a host, independent of what runs its VMs.
//!
//! A session grants a lease, registers the host's info under it, lists the host's prefix,
//! watches it from just after the list, brings the runtime in line with what is desired (full
//! sync), then routes every change and keeps the lease alive until something fails. A failure
//! ends the session with the error; the caller reconnects with backoff. Nothing the runtime runs
//! is touched by a session ending (fail-static).
//!
//! The agent's [`crate::host_loop::HostLoop`] drives libvirt through this; the fleet simulator
//! drives a fake hypervisor through the very same code, so a fleet-scale run measures it.

use std::collections::BTreeSet;
use std::convert::Infallible;
use std::future::Future;
use std::net::Ipv4Addr;
use std::time::Duration;
use tokio::time::Instant;
use yun_fleet::{
    HostGroups, HostInfo, HostKey, HostNetworks, MemberShard, VmDesired, VmObserved, decode, keys,
};
use yun_fleet_etcd::{BusError, BusEvent, EventKind, FleetBus, HostNetView};

/// One change of a host's tenant-network records (`None`: the record was deleted).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NetRecord {
    Networks(Option<HostNetworks>),
    Groups(Option<HostGroups>),
    Members {
        group: String,
        shard: u32,
        members: Option<BTreeSet<Ipv4Addr>>,
    },
}

/// A live session, handed to the runtime once the host is registered and watching.
#[derive(Debug, Clone)]
pub struct Registration {
    pub bus: FleetBus,
    /// The lease the host's info is attached to (kept alive by the session).
    pub lease_id: i64,
    /// The etcd revision the host's prefix was listed at.
    pub revision: i64,
}

/// What a host does with the records on its prefix. Methods are called from one task, one at a
/// time; `apply` and `remove` should hand work off rather than wait for it, since the session
/// neither watches nor keeps the lease alive while they run.
pub trait HostRuntime {
    /// The record registered under the lease at the start of every session.
    fn host_info(&self) -> Result<HostInfo, BusError>;

    /// Uids of the VMs this host runs (or is setting up), for the full sync.
    fn known_vms(&self) -> Vec<String>;

    /// `vm` is desired on this host. `observed` is the host's own last observation from the bus,
    /// given on a relist only (watch events carry `None`).
    fn apply(
        &mut self,
        uid: &str,
        vm: VmDesired,
        revision: i64,
        observed: Option<VmObserved>,
    ) -> impl Future<Output = ()> + Send;

    /// The VM is no longer desired here (deleted from the bus, or missing from a relist).
    fn remove(&mut self, uid: &str) -> impl Future<Output = ()> + Send;

    /// `Some` once registered and watching (before the full sync); `None` when the session ends
    /// (not called when the session future is dropped: the caller owns that case).
    fn connected(&mut self, session: Option<&Registration>);

    /// The outcome of each lease keep-alive (for metrics); an `Err` ends the session.
    fn lease_refreshed(&mut self, _result: &Result<i64, BusError>) {}

    /// The host's tenant-network records as listed at the start of a session (before the
    /// desired VMs are applied).
    fn network_view(&mut self, _view: HostNetView) {}

    /// One tenant-network record changed.
    fn network_record(&mut self, _change: NetRecord) {}
}

/// Keep-alive period for a lease TTL: a third of it, so two keep-alives may be lost in a row.
pub fn keepalive_interval(lease_ttl_secs: i64) -> Duration {
    Duration::from_secs(u64::try_from(lease_ttl_secs / 3).unwrap_or(0).max(1))
}

/// Runs one session on `bus` (already connected, possibly shared with other hosts) until it
/// fails, and returns why. `rt.connected(None)` is called before returning.
pub async fn run_session<R: HostRuntime + Send>(
    bus: &FleetBus,
    host: &str,
    lease_ttl_secs: i64,
    rt: &mut R,
) -> BusError {
    let err = match session(bus, host, lease_ttl_secs, rt).await {
        Ok(never) => match never {},
        Err(e) => e,
    };
    rt.connected(None);
    err
}

async fn session<R: HostRuntime + Send>(
    bus: &FleetBus,
    host: &str,
    lease_ttl_secs: i64,
    rt: &mut R,
) -> Result<Infallible, BusError> {
    let mut lease = bus.grant_lease(lease_ttl_secs).await?;
    bus.put_host_info(&rt.host_info()?, &lease).await?;
    let (view, revision) = bus.host_view(host).await?;
    // The whole host prefix: VM records and tenant-network records.
    let prefix = keys::host_prefix(host)?;
    let mut watch = bus.watch_prefix(&prefix, revision + 1).await?;
    rt.connected(Some(&Registration {
        bus: bus.clone(),
        lease_id: lease.id(),
        revision,
    }));
    tracing::info!(host = %host, vms = view.desired.len(), revision, "registered on the fleet bus");

    // Full sync: remove what runs here but is no longer desired; apply everything desired.
    rt.network_view(view.net);
    let known = rt.known_vms();
    for uid in known.iter().filter(|u| !view.desired.contains_key(*u)) {
        rt.remove(uid).await;
    }
    let mut observed = view.observed;
    for (uid, stored) in view.desired {
        let last = observed.remove(&uid);
        rt.apply(&uid, stored.value, stored.mod_revision, last)
            .await;
    }

    let lease_id = lease.id();
    let mut keepalive = KeepAliveSchedule::new(lease_ttl_secs, Instant::now());
    let mut next_keepalive = keepalive.next_after_success();
    loop {
        tokio::select! {
            events = watch.next() => {
                for ev in events? {
                    route(rt, ev).await;
                }
            }
            _ = tokio::time::sleep_until(next_keepalive) => {
                let wait = keepalive.answer_timeout();
                let refreshed = tokio::time::timeout(wait, lease.refresh())
                    .await
                    .unwrap_or_else(|_| Err(lease_timeout(lease_id, wait)));
                rt.lease_refreshed(&refreshed);
                let err = match refreshed {
                    Ok(_) => {
                        keepalive.succeeded(Instant::now());
                        next_keepalive = keepalive.next_after_success();
                        continue;
                    }
                    Err(e) => e,
                };
                let expired = matches!(err, BusError::LeaseExpired { .. });
                let AfterFailure::RetryAt(at) = keepalive.failed(Instant::now(), expired) else {
                    return Err(err);
                };
                tracing::warn!(host = %host, lease = %format!("{lease_id:x}"), error = %err,
                    "keep-alive failed; retrying on the same lease until its TTL runs out");
                next_keepalive = at;
                // The old channel is dead after an error: open a new one on the same lease.
                // Opening it is itself a keep-alive.
                match tokio::time::timeout(wait, bus.keep_alive(lease_id, lease_ttl_secs)).await {
                    Ok(Ok(fresh)) => {
                        lease = fresh;
                        keepalive.succeeded(Instant::now());
                        next_keepalive = keepalive.next_after_success();
                        rt.lease_refreshed(&Ok(lease_ttl_secs));
                    }
                    Ok(Err(e @ BusError::LeaseExpired { .. })) => return Err(e),
                    Ok(Err(e)) => tracing::warn!(host = %host, error = %e, "keep-alive channel not reopened yet"),
                    Err(_) => tracing::warn!(host = %host, "keep-alive channel not reopened yet: etcd did not answer"),
                }
            }
        }
    }
}

fn lease_timeout(id: i64, waited: Duration) -> BusError {
    BusError::Timeout {
        op: "keep-alive",
        key: format!("lease {id:x}"),
        ms: u64::try_from(waited.as_millis()).unwrap_or(u64::MAX),
    }
}

/// When the next keep-alive goes out, and when a failing lease is given up.
///
/// A failed keep-alive does not end the session: etcd refuses keep-alives while its apply loop
/// lags (a busy moment at fleet scale), and re-registering every host under a new lease then
/// would add the very writes that made it lag. The session retries on the same lease every
/// [`KeepAliveSchedule::RETRY`] and gives up only when etcd says the lease expired, or when a
/// full TTL has passed since the last answered keep-alive (the lease is surely gone by then).
#[derive(Debug, Clone, Copy)]
pub struct KeepAliveSchedule {
    ttl: Duration,
    interval: Duration,
    last_ok: Instant,
}

/// What to do after a failed keep-alive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AfterFailure {
    RetryAt(Instant),
    GiveUp,
}

impl KeepAliveSchedule {
    /// Pause between retries of a failed keep-alive.
    pub const RETRY: Duration = Duration::from_secs(1);

    /// A schedule for a lease granted (or last refreshed) at `now`.
    pub fn new(lease_ttl_secs: i64, now: Instant) -> Self {
        let ttl = Duration::from_secs(u64::try_from(lease_ttl_secs).unwrap_or(0).max(1));
        KeepAliveSchedule {
            ttl,
            interval: keepalive_interval(lease_ttl_secs),
            last_ok: now,
        }
    }

    /// How long to wait for etcd's answer to one keep-alive (half the interval, at least a
    /// second): a hung answer must not use up the lease's remaining time.
    pub fn answer_timeout(&self) -> Duration {
        (self.interval / 2).max(Duration::from_secs(1))
    }

    pub fn succeeded(&mut self, now: Instant) {
        self.last_ok = now;
    }

    pub fn next_after_success(&self) -> Instant {
        self.last_ok + self.interval
    }

    pub fn failed(&self, now: Instant, lease_expired: bool) -> AfterFailure {
        let deadline = self.last_ok + self.ttl;
        if lease_expired || now >= deadline {
            return AfterFailure::GiveUp;
        }
        AfterFailure::RetryAt((now + Self::RETRY).min(deadline))
    }
}

/// Desired put → apply, desired delete → remove, network records to the runtime; everything
/// else on the prefix (the host's own info and images) is ignored.
async fn route<R: HostRuntime + Send>(rt: &mut R, ev: BusEvent) {
    let Some(parsed) = HostKey::parse(&ev.key) else {
        return;
    };
    let bytes = match &ev.kind {
        EventKind::Put(b) => Some(b.as_slice()),
        EventKind::Delete => None,
    };
    let change = match parsed {
        HostKey::VmDesired { uid, .. } => {
            match bytes.map(|b| decode::<VmDesired>(&ev.key, b)) {
                Some(Ok(vm)) => rt.apply(&uid, vm, ev.mod_revision, None).await,
                Some(Err(e)) => {
                    tracing::error!(error = %e, "ignoring undecodable desired VM record")
                }
                None => rt.remove(&uid).await,
            }
            return;
        }
        HostKey::Networks { .. } => bytes
            .map(|b| decode::<HostNetworks>(&ev.key, b))
            .transpose()
            .map(NetRecord::Networks),
        HostKey::FwGroups { .. } => bytes
            .map(|b| decode::<HostGroups>(&ev.key, b))
            .transpose()
            .map(NetRecord::Groups),
        HostKey::FwMembers { group, shard, .. } => bytes
            .map(|b| decode::<MemberShard>(&ev.key, b))
            .transpose()
            .map(|m| NetRecord::Members {
                group,
                shard,
                members: m.map(|m| m.members),
            }),
        HostKey::Info { .. }
        | HostKey::Alloc { .. }
        | HostKey::Images { .. }
        | HostKey::VmObserved { .. }
        | HostKey::VmVolume { .. } => return,
    };
    match change {
        Ok(c) => rt.network_record(c),
        // The last good record stays in force (fail-static).
        Err(e) => tracing::error!(error = %e, "ignoring undecodable network record"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keepalive_is_a_third_of_the_ttl_and_at_least_a_second() {
        assert_eq!(keepalive_interval(10), Duration::from_secs(3));
        assert_eq!(keepalive_interval(30), Duration::from_secs(10));
        assert_eq!(keepalive_interval(2), Duration::from_secs(1));
        assert_eq!(keepalive_interval(-5), Duration::from_secs(1));
    }

    #[test]
    fn a_failed_keepalive_is_retried_on_the_same_lease_until_the_ttl_runs_out() {
        let t0 = Instant::now();
        let secs = Duration::from_secs;
        let mut s = KeepAliveSchedule::new(10, t0);
        assert_eq!(s.next_after_success(), t0 + secs(3));
        assert_eq!(s.answer_timeout(), Duration::from_millis(1500));
        // Failures within the TTL retry a second later, never past the lease's end.
        assert_eq!(
            s.failed(t0 + secs(3), false),
            AfterFailure::RetryAt(t0 + secs(4))
        );
        assert_eq!(
            s.failed(t0 + Duration::from_millis(9_500), false),
            AfterFailure::RetryAt(t0 + secs(10))
        );
        assert_eq!(s.failed(t0 + secs(10), false), AfterFailure::GiveUp);
        // An answered keep-alive restarts the clock.
        s.succeeded(t0 + secs(8));
        assert_eq!(s.next_after_success(), t0 + secs(11));
        assert_eq!(
            s.failed(t0 + secs(12), false),
            AfterFailure::RetryAt(t0 + secs(13))
        );
        // etcd saying the lease is gone ends the session at once: register again.
        assert_eq!(s.failed(t0 + secs(9), true), AfterFailure::GiveUp);
    }
}
