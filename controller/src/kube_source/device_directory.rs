//! The device view's directory in Kubernetes mode: every [`DIRECTORY_INTERVAL`] it is rebuilt
//! from the DeviceIdentity cache (the credentials their statuses name) and the latest network
//! pass: the security groups as resolved for the hosts, and their members from the fleet as
//! that pass read it (so the view costs no fleet read of its own).

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use kube::runtime::reflector::Store;
use yun_crds::DeviceIdentity;

use super::context::Ctx;
use crate::devices::delivery::DeviceRef;
use crate::devices::reconcile::entries_of;
use crate::devices::snapshot::directory;

/// How often the directory is rebuilt.
pub const DIRECTORY_INTERVAL: Duration = Duration::from_secs(2);

/// Rebuilds the directory once.
pub fn refresh(ctx: &Ctx, devices: &[Arc<DeviceIdentity>]) {
    let entries: Vec<_> = devices
        .iter()
        .filter(|d| d.metadata.deletion_timestamp.is_none())
        .filter_map(|d| {
            let status = d.status.as_ref()?;
            let target = DeviceRef {
                namespace: d.metadata.namespace.clone()?,
                name: d.metadata.name.clone()?,
                uid: d.metadata.uid.clone()?,
            };
            Some(entries_of(&target, &d.spec.view, status))
        })
        .flatten()
        .collect();
    let nets = ctx.nets.current();
    let groups = nets.as_ref().map(|n| &n.pass.resolved);
    let hosts = nets.as_ref().map(|n| &n.hosts);
    ctx.devices
        .directory
        .replace(directory(entries, groups, hosts));
}

/// Rebuilds the directory until `shutdown` resolves, once the cache is filled.
pub async fn run_device_directory(
    ctx: Arc<Ctx>,
    devices: Store<DeviceIdentity>,
    shutdown: impl Future<Output = ()> + Send,
) {
    let mut shutdown = std::pin::pin!(shutdown);
    tokio::select! {
        r = devices.wait_until_ready() => if r.is_err() { return },
        () = &mut shutdown => return,
    }
    let mut ticker = tokio::time::interval(DIRECTORY_INTERVAL);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            () = &mut shutdown => return,
        }
        refresh(&ctx, &devices.state());
    }
}
