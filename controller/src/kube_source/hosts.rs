//! `Host` objects kept in step with the fleet bus, the way a kubelet keeps its Node: every host
//! whose agent registers gets a Host object, and every Host object's `status` says what the bus
//! knows (so `kubectl get yh` lists the fleet with Ready, CPUs, Memory, VMs, Agent).
//!
//! - A registered host without an object is created with the labels its agent reports and an
//!   empty spec. `AlreadyExists` is fine: the object was made since the cache was read.
//! - Every object's status is recomputed ([`host_status`]) and written by server-side apply
//!   only when it differs from what the object carries.
//! - Host objects are never deleted here: an operator's cordon and BMC data live in them, and a
//!   host whose agent went silent is exactly the one an operator needs to see.
//! - Failures are logged and counted (`reconciles_total{kind="Host"}`) and retried at the next
//!   sync; none stops the loop.

use super::context::{FIELD_MANAGER, now_rfc3339};
use super::image_sync::sync_images_once;
use crate::host_status::host_status;
use crate::metrics::ControllerMetrics;
use kube::api::{Patch, PatchParams, PostParams};
use kube::runtime::reflector::Store;
use kube::{Api, Client, Resource, ResourceExt};
use serde::Serialize;
use std::borrow::Cow;
use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};
use thiserror::Error;
use yun_crds::{Host, HostSpec, VmImage};
use yun_fleet::HostInfo;
use yun_fleet_etcd::{BusError, FleetBus, HostView};

/// Label of this kind in the reconcile metrics.
pub const HOST_KIND: &str = "Host";
/// How often Host objects are brought in step with the fleet bus.
pub const HOST_SYNC_INTERVAL: Duration = Duration::from_secs(5);

#[derive(Debug, Error)]
pub enum HostSyncError {
    #[error("reading the fleet bus: {0}")]
    FleetView(#[from] BusError),
    #[error("creating Host {host}: {source}")]
    Create {
        host: String,
        #[source]
        source: kube::Error,
    },
    #[error("writing the status of Host {host}: {source}")]
    StatusWrite {
        host: String,
        #[source]
        source: kube::Error,
    },
}

/// What one sync did, host names sorted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostSyncSummary {
    /// Host objects created for registered hosts.
    pub created: Vec<String>,
    /// Hosts whose status was written.
    pub status_written: Vec<String>,
    /// Hosts whose create or status write failed (logged; retried next sync).
    pub failed: Vec<String>,
}

/// The body of a status apply: the object's type and only the field this manager owns.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct StatusApply<'a, S> {
    pub api_version: Cow<'static, str>,
    pub kind: Cow<'static, str>,
    pub status: &'a S,
}

/// The Host object for a host that registered as `info`: empty spec, the agent's labels.
fn new_host(info: &HostInfo) -> Host {
    let mut host = Host::new(&info.name, HostSpec::default());
    if !info.labels.is_empty() {
        host.metadata.labels = Some(info.labels.clone());
    }
    host
}

/// Creates the Host object of a registered host. `Ok(None)` when it already exists.
async fn create(api: &Api<Host>, info: &HostInfo) -> Result<Option<Host>, HostSyncError> {
    match api.create(&PostParams::default(), &new_host(info)).await {
        Ok(created) => {
            tracing::info!(host = %info.name, "Host object created for a registered host");
            Ok(Some(created))
        }
        Err(kube::Error::Api(status)) if status.is_already_exists() => Ok(None),
        Err(source) => Err(HostSyncError::Create {
            host: info.name.clone(),
            source,
        }),
    }
}

/// Writes the status `view` calls for, unless `host` already carries it. Returns whether it
/// wrote.
async fn sync_status(
    api: &Api<Host>,
    host: &Host,
    view: &HostView,
    now: &str,
) -> Result<bool, HostSyncError> {
    let status = host_status(host.status.as_ref(), &host.spec, view, now);
    if host.status.as_ref() == Some(&status) {
        return Ok(false);
    }
    let body = StatusApply {
        api_version: Host::api_version(&()),
        kind: Host::kind(&()),
        status: &status,
    };
    let params = PatchParams::apply(FIELD_MANAGER).force();
    api.patch_status(&host.name_any(), &params, &Patch::Apply(&body))
        .await
        .map_err(|source| HostSyncError::StatusWrite {
            host: host.name_any(),
            source,
        })?;
    Ok(true)
}

/// One sync of Host objects with the fleet bus at RFC 3339 time `now`. `objects` are the Host
/// objects that exist (the reflector cache). Creates the objects of registered hosts that
/// have none and writes every changed status. Fails only when the fleet bus cannot be read;
/// a failure on one host is logged, counted and listed in the summary.
pub async fn sync_hosts_once(
    client: &Client,
    bus: &FleetBus,
    objects: &[Arc<Host>],
    metrics: &ControllerMetrics,
    now: &str,
) -> Result<HostSyncSummary, HostSyncError> {
    let started = Instant::now();
    let fleet = match bus.fleet_view().await {
        Ok((fleet, _revision)) => fleet,
        Err(e) => {
            metrics.reconciled(HOST_KIND, started, false);
            return Err(e.into());
        }
    };
    let api: Api<Host> = Api::all(client.clone());
    let existing: BTreeMap<String, &Host> = objects.iter().map(|h| (h.name_any(), &**h)).collect();
    let unknown = HostView::default();
    let mut summary = HostSyncSummary::default();

    let registered_without_object = fleet
        .iter()
        .filter(|(name, _)| !existing.contains_key(*name))
        .filter_map(|(name, view)| view.info.as_ref().map(|info| (name, info, view)));
    for (name, info, view) in registered_without_object {
        let started = Instant::now();
        let result = async {
            let Some(created) = create(&api, info).await? else {
                // Made since the cache was read; its status is written once the cache has it.
                return Ok((false, false));
            };
            Ok::<_, HostSyncError>((true, sync_status(&api, &created, view, now).await?))
        }
        .await;
        record(&mut summary, metrics, name, started, result);
    }

    for (name, host) in &existing {
        let started = Instant::now();
        let view = fleet.get(name).unwrap_or(&unknown);
        let result = sync_status(&api, host, view, now)
            .await
            .map(|wrote| (false, wrote));
        record(&mut summary, metrics, name, started, result);
    }
    Ok(summary)
}

/// Counts and logs one host's outcome: `(created, status written)` or the failure.
fn record(
    summary: &mut HostSyncSummary,
    metrics: &ControllerMetrics,
    name: &str,
    started: Instant,
    result: Result<(bool, bool), HostSyncError>,
) {
    metrics.reconciled(HOST_KIND, started, result.is_ok());
    match result {
        Ok((created, wrote)) => {
            if created {
                summary.created.push(name.to_owned());
            }
            if wrote {
                summary.status_written.push(name.to_owned());
            }
        }
        Err(e) => {
            tracing::warn!(host = %name, error = %e, "Host sync failed; retrying at the next sync");
            summary.failed.push(name.to_owned());
        }
    }
}

/// Syncs Host objects every [`HOST_SYNC_INTERVAL`] until `shutdown` resolves. Starts once
/// `hosts` (the Host reflector cache) has its first full list, so that existing objects are not
/// taken for missing ones.
pub async fn run_host_sync(
    client: Client,
    bus: FleetBus,
    hosts: Store<Host>,
    images: Store<VmImage>,
    metrics: ControllerMetrics,
    shutdown: impl Future<Output = ()>,
) {
    let mut shutdown = std::pin::pin!(shutdown);
    tokio::select! {
        ready = hosts.wait_until_ready() => {
            if ready.is_err() {
                return;
            }
        }
        () = &mut shutdown => return,
    }
    let mut interval = tokio::time::interval_at(
        tokio::time::Instant::now() + HOST_SYNC_INTERVAL,
        HOST_SYNC_INTERVAL,
    );
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = interval.tick() => {}
            () = &mut shutdown => break,
        }
        let (objects, now) = (hosts.state(), now_rfc3339());
        let sync = async {
            if let Err(e) = sync_hosts_once(&client, &bus, &objects, &metrics, &now).await {
                tracing::warn!(error = %e, "Host sync failed; retrying");
            }
            let image_objects = images.state();
            if let Err(e) = sync_images_once(&client, &bus, &image_objects, &metrics, &now).await {
                tracing::warn!(error = %e, "VmImage status sync failed; retrying");
            }
        };
        tokio::select! {
            () = sync => {}
            () = &mut shutdown => break,
        }
    }
    tracing::info!("Host sync stopped");
}
