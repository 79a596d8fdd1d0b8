//! Bootstrap mode: desired state from a manifests directory (as kubelet reads static pods),
//! status kept on the fleet bus under `/yun/v1/status/…`. Lets a first rack be provisioned
//! before any Kubernetes exists. Reconciles through the same `reconcile_vm` as the kube source.

pub mod devices;
pub mod manifests;
pub mod net_status;
mod status_records;
pub mod volumes;

use crate::fleet_index::HostIntent;
use crate::fleet_ops::{Fleet, FleetError};
use crate::image_status::image_status;
use crate::metrics::ControllerMetrics;
use crate::net_pass::{self, NetPass};
use crate::sched_map::intent_of;
use crate::vm_logic::VmIdentity;
use crate::vm_reconcile::{VmInput, VmOutcome, World, reconcile_vm};
use manifests::{DirContents, read_dir};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};
use thiserror::Error;
use yun_crds::{VirtualMachine, VirtualMachineStatus, VmImage, VmImageSpec, VmImageStatus};
use yun_fleet::{BootstrapStatus, VmPhase};
use yun_fleet_etcd::BusError;

pub const VM_KIND: &str = "VirtualMachine";
pub const IMAGE_KIND: &str = "VmImage";

#[derive(Debug, Error)]
pub enum BootstrapError {
    #[error("cannot read manifests directory {dir}: {source}")]
    Dir {
        dir: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Fleet(#[from] FleetError),
    #[error(transparent)]
    Bus(#[from] BusError),
}

/// Stable hash of a manifest spec: a change bumps the object's generation.
pub fn spec_hash<S: serde::Serialize>(spec: &S) -> String {
    let json = serde_json::to_vec(spec).unwrap_or_default();
    hex::encode(Sha256::digest(&json))
}

#[derive(Debug)]
pub struct BootstrapSource {
    pub dir: PathBuf,
    pub fleet: Fleet,
    pub metrics: ControllerMetrics,
    /// Last error reported per file, so each refusal is logged once, not every pass.
    reported: BTreeMap<PathBuf, String>,
    /// When VmImage statuses were last computed: they need a scan of every host's image
    /// inventory, so they are refreshed at most every [`IMAGE_STATUS_EVERY`], not every pass.
    images_done: Option<(Instant, Vec<VmImage>)>,
    /// Whether the last pass had tenant networking to publish (so its removal is published too).
    net_active: bool,
    /// Bounds of the volumes' transitional phases.
    pub volume_deadlines: crate::volume::lifecycle::Deadlines,
    /// DeviceIdentity credentials files and the device view's directory.
    devices: crate::devices::Devices,
}

/// How often bootstrap mode refreshes VmImage statuses when the image manifests are unchanged.
pub const IMAGE_STATUS_EVERY: Duration = Duration::from_secs(10);

fn prior_status(rec: &BootstrapStatus) -> Option<VirtualMachineStatus> {
    serde_json::from_value(rec.status.clone()).ok()
}

impl BootstrapSource {
    pub fn new(dir: PathBuf, fleet: Fleet, metrics: ControllerMetrics) -> BootstrapSource {
        BootstrapSource {
            dir,
            fleet,
            metrics,
            reported: BTreeMap::new(),
            images_done: None,
            net_active: false,
            volume_deadlines: Default::default(),
            devices: crate::devices::Devices::new(crate::devices::DeviceConfig::new(
                crate::devices::DEFAULT_DEVICES_DIR.into(),
            )),
        }
    }

    /// Where device credentials go and which directory the device view reads.
    pub fn with_devices(mut self, devices: crate::devices::Devices) -> BootstrapSource {
        self.devices = devices;
        self
    }

    fn report_errors(&mut self, contents: &DirContents) {
        for (path, err) in &contents.errors {
            if self.reported.get(path) != Some(err) {
                tracing::error!(file = %path.display(), "manifest refused: {err}");
                self.metrics.invalid_manifests.inc();
            }
        }
        self.reported = contents.errors.clone();
    }

    /// One pass over the directory and the fleet.
    pub async fn pass(&mut self) -> Result<(), BootstrapError> {
        let contents = read_dir(&self.dir).map_err(|source| BootstrapError::Dir {
            dir: self.dir.clone(),
            source,
        })?;
        self.report_errors(&contents);
        let now = jiff::Timestamp::now().to_string();
        let mut images: BTreeMap<String, BTreeMap<String, &VmImageSpec>> = BTreeMap::new();
        for img in &contents.images {
            let ns = img.metadata.namespace.clone().unwrap_or_default();
            images
                .entry(ns)
                .or_default()
                .insert(img.metadata.name.clone().unwrap_or_default(), &img.spec);
        }
        let intents: BTreeMap<String, HostIntent> = contents
            .hosts
            .iter()
            .filter_map(|h| Some((h.metadata.name.clone()?, intent_of(&h.spec))))
            .collect();
        self.fleet.set_intents(&intents);
        let mut records: BTreeMap<(String, String), BootstrapStatus> = self
            .fleet
            .bus
            .list_bootstrap_status(Some(VM_KIND))
            .await?
            .into_iter()
            .map(|r| ((r.namespace.clone(), r.name.clone()), r))
            .collect();
        let needs_net = !contents.networks.is_empty()
            || !contents.security_groups.is_empty()
            || contents.vms.iter().any(|v| !v.spec.networks.is_empty());
        let mut netpass = if needs_net || self.net_active {
            let (hosts, _) = self.fleet.bus.fleet_view().await?;
            Some(NetPass::new(
                &contents.networks,
                &contents.security_groups,
                &hosts,
            ))
        } else {
            None
        };
        let volume_records =
            volumes::VolumeRecords::load(&self.fleet.bus, &contents.volumes).await?;
        let volume_objects = volume_records.objects(&contents.volumes);
        let mut phases: BTreeMap<VmPhase, i64> = BTreeMap::new();
        for vm in &contents.vms {
            let ns = vm.metadata.namespace.clone().unwrap_or_default();
            let name = vm.metadata.name.clone().unwrap_or_default();
            let existing = records.remove(&(ns.clone(), name.clone()));
            let world = World {
                images: images.get(&ns).cloned().unwrap_or_default(),
                network: None,
                volumes: volume_objects.get(&ns).cloned().unwrap_or_default(),
            };
            let phase = self
                .reconcile_one(
                    &ns,
                    &name,
                    Some(vm),
                    existing,
                    &world,
                    netpass.as_mut(),
                    &now,
                )
                .await;
            *phases.entry(phase).or_default() += 1;
        }
        // Records without a manifest: the file was removed → tombstone until cleanup completes.
        for ((ns, name), rec) in records {
            let phase = self
                .reconcile_one(&ns, &name, None, Some(rec), &World::default(), None, &now)
                .await;
            *phases.entry(phase).or_default() += 1;
        }
        self.metrics.set_vm_phases(&phases);
        self.metrics.set_volume_phases(volume_records.phases());
        volume_records
            .statuses(&self.fleet.bus, &contents.volumes, &self.volume_deadlines)
            .await?;
        if let Some(np) = &netpass {
            // Publish against the fleet as it is after this pass's placements.
            let (hosts, _) = self.fleet.bus.fleet_view().await?;
            let writes = crate::network::publish::plan(&hosts, &np.catalog);
            if !writes.is_empty() {
                let n = net_pass::execute(&self.fleet.bus, &writes).await?;
                tracing::info!(hosts = n, "tenant network records updated");
            }
            net_status::write_statuses(
                &self.fleet.bus,
                &contents.networks,
                &contents.security_groups,
                np,
                &now,
            )
            .await?;
        }
        self.net_active = needs_net;
        let due = match &self.images_done {
            Some((at, seen)) => *seen != contents.images || at.elapsed() >= IMAGE_STATUS_EVERY,
            None => true,
        };
        if due {
            self.image_statuses(&contents.images, &now).await?;
            self.images_done = Some((Instant::now(), contents.images));
        }
        let groups = netpass.as_ref().map(|np| &np.resolved);
        devices::pass(&self.fleet, &self.devices, &contents.devices, groups, &now).await?;
        Ok(())
    }

    /// Writes each VmImage's status (hosts that cached it, size) and drops records of images
    /// whose manifests are gone.
    async fn image_statuses(&self, images: &[VmImage], now: &str) -> Result<(), BootstrapError> {
        let started = Instant::now();
        let (hosts, _) = self.fleet.bus.fleet_view().await?;
        let held = status_records::held_statuses(&self.fleet.bus, IMAGE_KIND).await?;
        let mut want = BTreeMap::new();
        for img in images {
            let key = (
                img.metadata.namespace.clone().unwrap_or_default(),
                img.metadata.name.clone().unwrap_or_default(),
            );
            let prior: Option<VmImageStatus> = status_records::previous(&held, &key);
            let status = image_status(prior.as_ref(), &img.spec, &hosts, now);
            let wanted = status_records::WantedStatus {
                spec_hash: spec_hash(&img.spec),
                status: serde_json::to_value(&status).unwrap_or(serde_json::Value::Null),
            };
            want.insert(key, wanted);
        }
        status_records::sync_statuses(&self.fleet.bus, IMAGE_KIND, held, want).await?;
        self.metrics.reconciled(IMAGE_KIND, started, true);
        Ok(())
    }

    /// Reconciles one VM and writes its status record if it changed. Errors are logged and
    /// counted; one bad VM must not stall the others.
    #[allow(clippy::too_many_arguments)]
    async fn reconcile_one(
        &self,
        ns: &str,
        name: &str,
        vm: Option<&VirtualMachine>,
        existing: Option<BootstrapStatus>,
        world: &World<'_>,
        nets: Option<&mut NetPass>,
        now: &str,
    ) -> VmPhase {
        let started = Instant::now();
        let result = self
            .reconcile_inner(ns, name, vm, existing, world, nets, now)
            .await;
        self.metrics.reconciled(VM_KIND, started, result.is_ok());
        match result {
            Ok(phase) => phase,
            Err(e) => {
                tracing::warn!(vm = %format!("{ns}/{name}"), error = %e, "reconcile failed; will retry");
                VmPhase::Failed
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    async fn reconcile_inner(
        &self,
        ns: &str,
        name: &str,
        vm: Option<&VirtualMachine>,
        existing: Option<BootstrapStatus>,
        world: &World<'_>,
        nets: Option<&mut NetPass>,
        now: &str,
    ) -> Result<VmPhase, BootstrapError> {
        let before = existing.clone();
        let mut rec = existing.unwrap_or_else(|| status_records::fresh_record(VM_KIND, ns, name));
        let spec = match vm {
            Some(vm) if !rec.deleting => {
                let hash = spec_hash(&vm.spec);
                if hash != rec.spec_hash {
                    rec.generation += 1;
                    rec.spec_hash = hash;
                }
                Some(&vm.spec)
            }
            // Deleting: the spec no longer matters (the manifest may be gone).
            _ => {
                rec.deleting = true;
                None
            }
        };
        let prior = prior_status(&rec);
        let mut world = world.clone();
        if let (Some(spec), Some(nets)) = (spec, nets)
            && !spec.networks.is_empty()
        {
            // The addresses the VM was last reported with, so an unplaced VM keeps them too.
            let previous: Vec<(String, std::net::Ipv4Addr)> = prior
                .iter()
                .flat_map(|p| &p.interfaces)
                .filter_map(|i| Some((format!("{ns}/{}", i.network), i.ip.parse().ok()?)))
                .collect();
            world.network = Some(nets.assign(ns, &rec.uid, spec, &previous));
        }
        let world = &world;
        let input = VmInput {
            id: VmIdentity {
                namespace: ns.into(),
                name: name.into(),
                uid: rec.uid.clone(),
                generation: rec.generation,
            },
            spec,
            deleting: rec.deleting,
            prior: prior.as_ref(),
        };
        match reconcile_vm(&self.fleet, input, world, now).await? {
            VmOutcome::Removed => {
                self.fleet
                    .bus
                    .delete_bootstrap_status(VM_KIND, ns, name)
                    .await?;
                tracing::info!(vm = %format!("{ns}/{name}"), "removed");
                Ok(VmPhase::Deleting)
            }
            VmOutcome::Status { status, .. } => {
                let phase = status.phase.map(|p| p.as_str()).unwrap_or("Pending");
                let phase = VmPhase::ALL
                    .into_iter()
                    .find(|p| p.as_str() == phase)
                    .unwrap_or(VmPhase::Pending);
                rec.status = serde_json::to_value(&status).unwrap_or(serde_json::Value::Null);
                if before.as_ref() != Some(&rec) {
                    self.fleet.bus.put_bootstrap_status(&rec).await?;
                }
                Ok(phase)
            }
        }
    }

    /// Runs passes every `interval` until `shutdown` resolves.
    pub async fn run(
        mut self,
        interval: Duration,
        mut shutdown: tokio::sync::watch::Receiver<bool>,
    ) {
        let mut ticker = tokio::time::interval(interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = ticker.tick() => {}
                _ = shutdown.changed() => return,
            }
            if let Err(e) = self.pass().await {
                tracing::warn!(error = %e, "bootstrap pass failed; will retry");
            }
        }
    }
}
