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

use std::convert::Infallible;
use std::future::Future;
use std::time::Duration;
use yun_fleet::{HostInfo, HostKey, VmDesired, VmObserved, decode, keys};
use yun_fleet_etcd::{BusError, BusEvent, EventKind, FleetBus};

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
        observed: Option<VmObserved>,
    ) -> impl Future<Output = ()> + Send;

    /// The VM is no longer desired here (deleted from the bus, or missing from a relist).
    fn remove(&mut self, uid: &str) -> impl Future<Output = ()> + Send;

    /// `Some` once registered and watching (before the full sync); `None` when the session ends
    /// (not called when the session future is dropped: the caller owns that case).
    fn connected(&mut self, session: Option<&Registration>);

    /// The outcome of each lease keep-alive (for metrics); an `Err` ends the session.
    fn lease_refreshed(&mut self, _result: &Result<i64, BusError>) {}
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
    let prefix = keys::host_vms_prefix(host)?;
    let mut watch = bus.watch_prefix(&prefix, revision + 1).await?;
    rt.connected(Some(&Registration {
        bus: bus.clone(),
        lease_id: lease.id(),
        revision,
    }));
    tracing::info!(host = %host, vms = view.desired.len(), revision, "registered on the fleet bus");

    // Full sync: remove what runs here but is no longer desired; apply everything desired.
    let known = rt.known_vms();
    for uid in known.iter().filter(|u| !view.desired.contains_key(*u)) {
        rt.remove(uid).await;
    }
    let mut observed = view.observed;
    for (uid, stored) in view.desired {
        let last = observed.remove(&uid);
        rt.apply(&uid, stored.value, last).await;
    }

    let mut ticker = tokio::time::interval(keepalive_interval(lease_ttl_secs));
    loop {
        tokio::select! {
            events = watch.next() => {
                for ev in events? {
                    route(rt, ev).await;
                }
            }
            _ = ticker.tick() => {
                let refreshed = lease.refresh().await;
                rt.lease_refreshed(&refreshed);
                refreshed?;
            }
        }
    }
}

/// Desired put → apply, desired delete → remove; everything else on the prefix is ignored.
async fn route<R: HostRuntime + Send>(rt: &mut R, ev: BusEvent) {
    let Some(HostKey::VmDesired { uid, .. }) = HostKey::parse(&ev.key) else {
        return;
    };
    match ev.kind {
        EventKind::Put(bytes) => match decode::<VmDesired>(&ev.key, &bytes) {
            Ok(vm) => rt.apply(&uid, vm, None).await,
            Err(e) => tracing::error!(error = %e, "ignoring undecodable desired VM record"),
        },
        EventKind::Delete => rt.remove(&uid).await,
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
}
