//! `VmImage` status kept in step with the fleet bus: which live hosts hold the whole template
//! in their cache (agents publish `/yun/v1/hosts/<host>/images`) and the disk's size. Runs on
//! the same timer as the Host sync; a status is written (server-side apply) only when it
//! changed.

use super::context::FIELD_MANAGER;
use super::hosts::StatusApply;
use crate::image_status::image_status;
use crate::metrics::ControllerMetrics;
use kube::api::{Patch, PatchParams};
use kube::{Api, Client, Resource, ResourceExt};
use std::sync::Arc;
use std::time::Instant;
use yun_crds::VmImage;
use yun_fleet_etcd::{BusError, FleetBus};

pub const IMAGE_KIND: &str = "VmImage";

/// One sync of every VmImage's status at RFC 3339 time `now`. Returns the `namespace/name` of
/// the images whose status was written. Fails only when the fleet bus cannot be read; a failed
/// write is logged, counted and retried at the next sync.
pub async fn sync_images_once(
    client: &Client,
    bus: &FleetBus,
    objects: &[Arc<VmImage>],
    metrics: &ControllerMetrics,
    now: &str,
) -> Result<Vec<String>, BusError> {
    let (fleet, _) = bus.fleet_view().await?;
    let mut written = Vec::new();
    for image in objects {
        let started = Instant::now();
        let status = image_status(image.status.as_ref(), &image.spec, &fleet, now);
        if image.status.as_ref() == Some(&status) {
            continue;
        }
        let (ns, name) = (image.namespace().unwrap_or_default(), image.name_any());
        let api: Api<VmImage> = Api::namespaced(client.clone(), &ns);
        let body = StatusApply {
            api_version: VmImage::api_version(&()),
            kind: VmImage::kind(&()),
            status: &status,
        };
        let params = PatchParams::apply(FIELD_MANAGER).force();
        let result = api.patch_status(&name, &params, &Patch::Apply(&body)).await;
        metrics.reconciled(IMAGE_KIND, started, result.is_ok());
        match result {
            Ok(_) => written.push(format!("{ns}/{name}")),
            Err(e) => tracing::warn!(image = %format!("{ns}/{name}"), error = %e,
                "VmImage status write failed; retrying at the next sync"),
        }
    }
    Ok(written)
}
