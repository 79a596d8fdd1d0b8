//! The network pass in Kubernetes mode: every [`NET_PASS_INTERVAL`] it computes a
//! [`NetSnapshot`] from the caches and the fleet, shares it with the reconcilers, and brings
//! every host's network records (networks, VXLAN peers, group rules, group members) in line
//! with what is placed on it. A cluster without tenant networking never pays for it: the pass
//! reads the fleet only while Networks, SecurityGroups or VMs with networks exist (and once
//! more after the last one goes, so hosts drop their records).

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use kube::runtime::reflector::Store;
use yun_crds::{Network, SecurityGroup, VirtualMachine};
use yun_fleet_etcd::BusError;

use super::context::Ctx;
use crate::net_pass::execute;
use crate::network::publish::plan;
use crate::network::snapshot::NetSnapshot;

/// How often the network pass runs.
pub const NET_PASS_INTERVAL: Duration = Duration::from_secs(2);

/// The caches a pass reads.
#[derive(Clone)]
pub struct NetCaches {
    pub networks: Store<Network>,
    pub groups: Store<SecurityGroup>,
    pub vms: Store<VirtualMachine>,
}

impl std::fmt::Debug for NetCaches {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NetCaches")
            .field("networks", &self.networks.len())
            .field("groups", &self.groups.len())
            .field("vms", &self.vms.len())
            .finish()
    }
}

/// One pass. `active` says whether the previous pass had anything to publish; returns the same
/// for this one.
pub async fn refresh(
    ctx: &Ctx,
    networks: &[Arc<Network>],
    groups: &[Arc<SecurityGroup>],
    vms: &[Arc<VirtualMachine>],
    active: bool,
) -> Result<bool, BusError> {
    let needed = !networks.is_empty()
        || !groups.is_empty()
        || vms.iter().any(|v| !v.spec.networks.is_empty());
    if !needed && !active {
        ctx.nets.set(NetSnapshot::default());
        return Ok(false);
    }
    let (hosts, _) = ctx.fleet.bus.fleet_view().await?;
    let last = ctx.nets.current();
    let mut snap = NetSnapshot::compute(networks, groups, vms, &hosts, last.as_deref());
    let writes = plan(&hosts, &snap.pass.catalog);
    snap.hosts = hosts;
    ctx.nets.set(snap);
    if !writes.is_empty() {
        let n = execute(&ctx.fleet.bus, &writes).await?;
        tracing::info!(hosts = n, "tenant network records updated");
    }
    Ok(needed)
}

/// Runs passes until `shutdown` resolves. A failed pass keeps the last snapshot (running VMs
/// and host records stay as they are) and is retried on the next tick.
pub async fn run_net_pass(
    ctx: Arc<Ctx>,
    caches: NetCaches,
    shutdown: impl Future<Output = ()> + Send,
) {
    let mut ticker = tokio::time::interval(NET_PASS_INTERVAL);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut shutdown = std::pin::pin!(shutdown);
    // No address is handed out before the pass knows every VM that holds one.
    let ready = async {
        let (a, b, c) = futures::join!(
            caches.vms.wait_until_ready(),
            caches.networks.wait_until_ready(),
            caches.groups.wait_until_ready()
        );
        a.and(b).and(c)
    };
    tokio::select! {
        r = ready => if r.is_err() { return },
        () = &mut shutdown => return,
    }
    // The first pass reads the fleet even with nothing to publish, so records a previous run
    // left for deleted networks are dropped.
    let mut active = true;
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            () = &mut shutdown => return,
        }
        let result = refresh(
            &ctx,
            &caches.networks.state(),
            &caches.groups.state(),
            &caches.vms.state(),
            active,
        )
        .await;
        match result {
            Ok(now_active) => active = now_active,
            Err(e) => tracing::warn!(error = %e, "network pass failed; keeping the last one"),
        }
    }
}
