//! The Kubernetes desired-state source: a kube-rs `Controller<VirtualMachine>` over all
//! namespaces that feeds each object through the source-agnostic [`reconcile_vm`] step and
//! writes the resulting status back with server-side apply.
//!
//! - `VmImage` and `Host` objects come from reflector caches ([`Ctx::new`] takes their stores),
//!   so building the step's `World` costs no API call.
//! - The finalizer `yun.dev/vm-cleanup` holds a deleted VM until its host has removed the
//!   domain and files and the resources are released (see [`vm`]).
//! - Volumes have their own controller ([`volume`]); its cache gives the VM reconciles the
//!   Volumes a VM names, and CHAP credentials come from Secrets read one by one
//!   ([`chap_secrets`]).
//! - Wake-ups: watch events on the VM itself, the step's own requeue interval, and a resync of
//!   every VM each [`RESYNC_INTERVAL`]. The resync is what notices fleet-bus changes (an agent's
//!   report, a host going silent) and image / cordon changes. It is the simple first choice: a
//!   fleet-bus watch that wakes only the VMs concerned needs `Controller::reconcile_on`, which
//!   kube-rs still keeps behind an unstable feature.
//!
//! [`reconcile_vm`]: crate::vm_reconcile::reconcile_vm

mod chap_secrets;
mod context;
mod device;
mod device_directory;
mod error;
mod events;
mod finalized;
mod hosts;
mod image_sync;
mod net_objects;
mod net_task;
mod phases;
mod status_write;
mod vm;
mod volume;
mod volume_events;
mod volume_world;

pub use crate::network::snapshot::{NETWORK_NOT_READY, NetHandle, NetSnapshot};
pub use chap_secrets::{PASSWORD_KEY, USERNAME_KEY, chap_from_secret};
pub use context::{Ctx, FIELD_MANAGER, FINALIZER, IN_USE_FINALIZER, REPORTER};
pub use device::{DEVICE_FINALIZER, device_error_policy, reconcile_device_object};
pub use device_directory::refresh as refresh_device_directory;
pub use error::KubeSourceError;
pub use events::{Transition, transitions};
pub use hosts::{
    HOST_KIND, HOST_SYNC_INTERVAL, HostSyncError, HostSyncSummary, run_host_sync, sync_hosts_once,
};
pub use image_sync::{IMAGE_KIND, sync_images_once};
pub use net_objects::{
    DELETION_BLOCKED, IN_USE, NET_STATUS_REQUEUE, NetObject, net_object_error_policy,
    reconcile_net_object,
};
pub use net_task::{NET_PASS_INTERVAL, NetCaches, refresh as refresh_networks, run_net_pass};
pub use phases::count_phases;
pub use vm::{error_policy, reconcile};
pub use volume::{VOLUME_KIND, blocked_condition, reconcile_volume_object, volume_error_policy};
pub use volume_events::volume_transitions;

use crate::devices::Devices;
use crate::fleet_ops::Fleet;
use crate::metrics::ControllerMetrics;
use futures::{FutureExt, StreamExt};
use kube::api::ListParams;
use kube::runtime::controller::{Config as ControllerConfig, Controller};
use kube::runtime::{WatchStreamExt, reflector, watcher};
use kube::{Api, Client, Resource};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use yun_crds::{DeviceIdentity, Host, Network, SecurityGroup, VirtualMachine, VmImage, Volume};

/// Every VM is reconciled at least this often (see the module docs for why).
pub const RESYNC_INTERVAL: Duration = Duration::from_secs(5);
/// How often the VMs-by-phase gauge is recomputed from the VM cache.
pub const PHASE_GAUGE_INTERVAL: Duration = Duration::from_secs(10);
/// At most this many reconciles run at once (each makes a few fleet-bus round trips).
pub const MAX_CONCURRENT_RECONCILES: u16 = 16;

/// Fails early, with the kind named, when a CRD is not installed or not readable: otherwise the
/// watchers would only retry and log forever.
async fn check_served<K>(client: &Client) -> Result<(), KubeSourceError>
where
    K: Resource<DynamicType = ()> + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    Api::<K>::all(client.clone())
        .list_metadata(&ListParams::default().limit(1))
        .await
        .map(|_| ())
        .map_err(|source| KubeSourceError::ApiUnavailable {
            kind: K::kind(&()).into_owned(),
            source,
        })
}

/// Runs the VirtualMachine controller until `shutdown` resolves (then finishes the reconciles
/// in flight and returns). Returns an error only when the API is unusable at start-up.
pub async fn run(
    client: Client,
    fleet: Fleet,
    metrics: ControllerMetrics,
    devices: Devices,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), KubeSourceError> {
    check_served::<VirtualMachine>(&client).await?;
    check_served::<VmImage>(&client).await?;
    check_served::<Host>(&client).await?;
    check_served::<Network>(&client).await?;
    check_served::<SecurityGroup>(&client).await?;
    check_served::<Volume>(&client).await?;
    check_served::<DeviceIdentity>(&client).await?;
    let shutdown = shutdown.shared();

    let (images, image_writer) = reflector::store::<VmImage>();
    let (hosts, host_writer) = reflector::store::<Host>();
    let image_cache = watcher(
        Api::<VmImage>::all(client.clone()),
        watcher::Config::default().any_semantic(),
    )
    .default_backoff()
    .reflect(image_writer)
    .for_each(|event| async move {
        if let Err(e) = event {
            tracing::warn!(error = %e, "VmImage watch failed; retrying");
        }
    });
    let host_cache = watcher(
        Api::<Host>::all(client.clone()),
        watcher::Config::default().any_semantic(),
    )
    .default_backoff()
    .reflect(host_writer)
    .for_each(|event| async move {
        if let Err(e) = event {
            tracing::warn!(error = %e, "Host watch failed; retrying");
        }
    });

    // Host objects follow the fleet bus on their own timer; the task stops at shutdown.
    let host_sync = tokio::spawn(hosts::run_host_sync(
        client.clone(),
        fleet.bus.clone(),
        hosts.clone(),
        images.clone(),
        metrics.clone(),
        shutdown.clone(),
    ));
    let volume_controller = Controller::new(
        Api::<Volume>::all(client.clone()),
        watcher::Config::default().any_semantic(),
    );
    let volumes = volume_controller.store();
    let ctx = Arc::new(
        Ctx::new(
            client.clone(),
            fleet,
            metrics.clone(),
            images.clone(),
            hosts.clone(),
        )
        .with_volumes(volumes.clone())
        .with_devices(devices),
    );
    // Runs from the start (it needs no other cache): its watch is what fills the Volume cache
    // the VM reconciles wait for.
    let volume_reconciles = volume_controller
        .graceful_shutdown_on(shutdown.clone())
        .run(reconcile_volume_object, volume_error_policy, ctx.clone())
        .for_each(|result| async move {
            if let Err(e) = result {
                tracing::debug!(error = %e, "Volume controller");
            }
        });
    let controller = Controller::new(
        Api::<VirtualMachine>::all(client.clone()),
        watcher::Config::default().any_semantic(),
    )
    .with_config(ControllerConfig::default().concurrency(MAX_CONCURRENT_RECONCILES));
    let vms = controller.store();
    let network_controller = Controller::new(
        Api::<Network>::all(client.clone()),
        watcher::Config::default().any_semantic(),
    );
    let device_controller = Controller::new(
        Api::<DeviceIdentity>::all(client.clone()),
        watcher::Config::default().any_semantic(),
    );
    let device_directory = tokio::spawn(device_directory::run_device_directory(
        ctx.clone(),
        device_controller.store(),
        shutdown.clone(),
    ));
    let device_reconciles = device_controller
        .graceful_shutdown_on(shutdown.clone())
        .run(reconcile_device_object, device_error_policy, ctx.clone())
        .for_each(|result| async move {
            if let Err(e) = result {
                tracing::debug!(error = %e, "DeviceIdentity controller");
            }
        });
    let group_controller = Controller::new(
        Api::<SecurityGroup>::all(client),
        watcher::Config::default().any_semantic(),
    );
    let caches = net_task::NetCaches {
        networks: network_controller.store(),
        groups: group_controller.store(),
        vms: vms.clone(),
    };
    let network_reconciles = network_controller
        .graceful_shutdown_on(shutdown.clone())
        .run(
            reconcile_net_object::<Network>,
            net_object_error_policy::<Network>,
            ctx.clone(),
        )
        .for_each(|result| async move {
            if let Err(e) = result {
                tracing::debug!(error = %e, "Network controller");
            }
        });
    let group_reconciles = group_controller
        .graceful_shutdown_on(shutdown.clone())
        .run(
            reconcile_net_object::<SecurityGroup>,
            net_object_error_policy::<SecurityGroup>,
            ctx.clone(),
        )
        .for_each(|result| async move {
            if let Err(e) = result {
                tracing::debug!(error = %e, "SecurityGroup controller");
            }
        });
    let net_pass = tokio::spawn(net_task::run_net_pass(
        ctx.clone(),
        caches,
        shutdown.clone(),
    ));
    let resync = tokio_stream_interval(RESYNC_INTERVAL);
    let vm_reconciles = controller
        .reconcile_all_on(resync)
        .graceful_shutdown_on(shutdown.clone())
        .run(reconcile, error_policy, ctx)
        .for_each(|result| async move {
            if let Err(e) = result {
                tracing::debug!(error = %e, "VirtualMachine controller");
            }
        });
    // Reconciling before the caches are filled would report existing images (or volumes) as
    // missing.
    let controller_task = async {
        let ready = async {
            let (a, b, c) = futures::join!(
                images.wait_until_ready(),
                hosts.wait_until_ready(),
                volumes.wait_until_ready()
            );
            a.and(b).and(c)
        };
        tokio::select! {
            r = ready => {
                if r.is_err() {
                    return;
                }
            }
            () = shutdown.clone() => return,
        }
        tracing::info!("VmImage, Host and Volume caches ready; reconciling VirtualMachines");
        futures::join!(vm_reconciles, network_reconciles, group_reconciles);
    };
    let gauge_task =
        phases::publish_periodically(vms, volumes.clone(), metrics, PHASE_GAUGE_INTERVAL);

    // Both controllers finish their reconciles in flight at shutdown.
    let controllers = async {
        futures::join!(controller_task, volume_reconciles, device_reconciles);
    };
    tokio::select! {
        () = controllers => {}
        () = image_cache => {}
        () = host_cache => {}
        () = gauge_task => {}
    }
    host_sync.abort();
    net_pass.abort();
    device_directory.abort();
    tracing::info!("VirtualMachine controller stopped");
    Ok(())
}

/// A unit tick every `period`, the first one after `period` (the watch's initial list already
/// triggers every VM once).
fn tokio_stream_interval(period: Duration) -> impl futures::Stream<Item = ()> + Send + 'static {
    futures::stream::unfold(
        tokio::time::interval_at(tokio::time::Instant::now() + period, period),
        |mut interval| async {
            interval.tick().await;
            Some(((), interval))
        },
    )
}
