//! Bootstrap mode: desired state from the object store (`yun-store` on the fleet etcd), into
//! which the manifests directory is one input (as kubelet reads static pods) and `yunctl`
//! another; status is written back to the store's status subresource. Lets a first rack be
//! provisioned before any Kubernetes exists. Reconciles through the same `reconcile_vm` as the
//! kube source.

pub mod devices;
pub mod feed;
pub mod manifests;
pub mod net_status;
pub mod objects;
pub mod volumes;

use crate::fleet_index::HostIntent;
use crate::fleet_ops::{Fleet, FleetError};
use crate::image_status::image_status;
use crate::metrics::ControllerMetrics;
use crate::net_pass::{self, NetPass};
use crate::network::snapshot::NetSnapshot;
use crate::object::VM_FINALIZER;
use crate::sched_map::intent_of;
use crate::vm_logic::VmIdentity;
use crate::vm_reconcile::{VmInput, VmOutcome, World, reconcile_vm};
use manifests::{DirContents, read_dir};
use objects::{Objects, generation_of, is_deleting, ns_name, uid_of};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};
use thiserror::Error;
use yun_crds::{VirtualMachine, VmImage, VmImageSpec};
use yun_fleet::VmPhase;
use yun_fleet_etcd::BusError;
use yun_store::{EtcdStore, StoreError};

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
    #[error(transparent)]
    Store(#[from] StoreError),
}

#[derive(Debug)]
pub struct BootstrapSource {
    pub dir: PathBuf,
    pub fleet: Fleet,
    pub store: EtcdStore,
    pub metrics: ControllerMetrics,
    /// Last error reported per file, so each refusal is logged once, not every pass.
    reported: BTreeMap<PathBuf, String>,
    /// When VmImage statuses were last computed: they need a scan of every host's image
    /// inventory, so they are refreshed at most every [`IMAGE_STATUS_EVERY`], not every pass.
    images_done: Option<(Instant, Vec<VmImage>)>,
    /// Whether the last pass had tenant networking to publish (so its removal is published too).
    net_active: bool,
    /// The last network pass: a VM assigned but not yet placed keeps its addresses.
    last_net: Option<NetSnapshot>,
    /// Bounds of the volumes' transitional phases.
    pub volume_deadlines: crate::volume::lifecycle::Deadlines,
    /// DeviceIdentity credentials files and the device view's directory.
    devices: crate::devices::Devices,
}

/// How often bootstrap mode refreshes VmImage statuses when the image objects are unchanged.
pub const IMAGE_STATUS_EVERY: Duration = Duration::from_secs(10);

impl BootstrapSource {
    /// A source over the object store on the fleet bus's etcd.
    pub fn new(dir: PathBuf, fleet: Fleet, metrics: ControllerMetrics) -> BootstrapSource {
        let store = EtcdStore::new(fleet.bus.clone());
        BootstrapSource {
            dir,
            fleet,
            store,
            metrics,
            reported: BTreeMap::new(),
            images_done: None,
            net_active: false,
            last_net: None,
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

    /// Feeds the manifests directory into the store.
    async fn feed(&mut self) -> Result<(), BootstrapError> {
        let contents = read_dir(&self.dir).map_err(|source| BootstrapError::Dir {
            dir: self.dir.clone(),
            source,
        })?;
        self.report_errors(&contents);
        let report = feed::sync(&self.store, &contents).await?;
        if report != feed::FeedReport::default() {
            tracing::info!(
                created = report.created,
                configured = report.configured,
                deleted = report.deleted,
                "manifests directory applied to the store"
            );
        }
        Ok(())
    }

    /// One pass: the directory into the store, then every object in the store against the fleet.
    pub async fn pass(&mut self) -> Result<(), BootstrapError> {
        self.feed().await?;
        let objects = Objects::load(&self.store).await?;
        let now = jiff::Timestamp::now().to_string();
        let intents: BTreeMap<String, HostIntent> = objects
            .hosts
            .iter()
            .filter_map(|h| Some((h.metadata.name.clone()?, intent_of(&h.spec))))
            .collect();
        self.fleet.set_intents(&intents);
        let netpass = self.net_pass(&objects).await?;
        let volume_records = volumes::VolumeRecords::load(&self.store, &objects.volumes).await?;
        let volume_objects = volume_records.objects();
        let images = images_by_namespace(&objects.images);
        let mut phases: BTreeMap<VmPhase, i64> = BTreeMap::new();
        for vm in &objects.vms {
            let ns = vm.metadata.namespace.clone().unwrap_or_default();
            let world = World {
                images: images.get(&ns).cloned().unwrap_or_default(),
                network: None,
                volumes: volume_objects.get(&ns).cloned().unwrap_or_default(),
            };
            let phase = self.reconcile_one(vm, &world, netpass.as_ref(), &now).await;
            *phases.entry(phase).or_default() += 1;
        }
        self.metrics.set_vm_phases(&phases);
        self.metrics.set_volume_phases(volume_records.phases());
        volume_records
            .statuses(&self.fleet.bus, &self.store, &self.volume_deadlines)
            .await?;
        if let Some(snap) = &netpass {
            self.publish_networks(&snap.pass, &objects, &now).await?;
        }
        self.image_pass(&objects.images, &now).await?;
        let groups = netpass.as_ref().map(|snap| &snap.pass.resolved);
        devices::pass(
            &self.fleet,
            &self.store,
            &self.devices,
            &objects.devices,
            groups,
            &now,
        )
        .await?;
        self.last_net = netpass;
        Ok(())
    }

    /// The pass's network state, when there is tenant networking to assign or to remove: the
    /// same pass, in the same order, as Kubernetes mode's network task.
    async fn net_pass(&mut self, objects: &Objects) -> Result<Option<NetSnapshot>, BootstrapError> {
        let needs_net = !objects.networks.is_empty()
            || !objects.security_groups.is_empty()
            || objects.vms.iter().any(|v| !v.spec.networks.is_empty());
        let active = needs_net || self.net_active;
        self.net_active = needs_net;
        if !active {
            return Ok(None);
        }
        let (hosts, _) = self.fleet.bus.fleet_view().await?;
        Ok(Some(NetSnapshot::compute(
            &objects.networks,
            &objects.security_groups,
            &objects.vms,
            &hosts,
            self.last_net.as_ref(),
        )))
    }

    /// Publishes the per-host network records (against the fleet as it is after this pass's
    /// placements) and the Networks' and SecurityGroups' statuses.
    async fn publish_networks(
        &self,
        np: &NetPass,
        objects: &Objects,
        now: &str,
    ) -> Result<(), BootstrapError> {
        let (hosts, _) = self.fleet.bus.fleet_view().await?;
        let writes = crate::network::publish::plan(&hosts, &np.catalog);
        if !writes.is_empty() {
            let n = net_pass::execute(&self.fleet.bus, &writes).await?;
            tracing::info!(hosts = n, "tenant network records updated");
        }
        net_status::write_statuses(
            &self.store,
            &objects.networks,
            &objects.security_groups,
            np,
            now,
        )
        .await?;
        Ok(())
    }

    /// Refreshes VmImage statuses when the images changed or [`IMAGE_STATUS_EVERY`] passed.
    async fn image_pass(&mut self, images: &[VmImage], now: &str) -> Result<(), BootstrapError> {
        let due = match &self.images_done {
            Some((at, seen)) => specs(seen) != specs(images) || at.elapsed() >= IMAGE_STATUS_EVERY,
            None => true,
        };
        if due {
            self.image_statuses(images, now).await?;
            self.images_done = Some((Instant::now(), images.to_vec()));
        }
        Ok(())
    }

    /// Writes each VmImage's status (hosts that cached it, size).
    async fn image_statuses(&self, images: &[VmImage], now: &str) -> Result<(), BootstrapError> {
        let started = Instant::now();
        let (hosts, _) = self.fleet.bus.fleet_view().await?;
        for img in images {
            let mut next = img.clone();
            next.status = Some(image_status(img.status.as_ref(), &img.spec, &hosts, now));
            objects::write_status(&self.store, &next).await?;
        }
        self.metrics.reconciled(IMAGE_KIND, started, true);
        Ok(())
    }

    /// Reconciles one VM and writes its status if it changed. Errors are logged and counted;
    /// one bad VM must not stall the others.
    async fn reconcile_one(
        &self,
        vm: &VirtualMachine,
        world: &World<'_>,
        nets: Option<&NetSnapshot>,
        now: &str,
    ) -> VmPhase {
        let started = Instant::now();
        let result = self.reconcile_inner(vm, world, nets, now).await;
        self.metrics.reconciled(VM_KIND, started, result.is_ok());
        match result {
            Ok(phase) => phase,
            Err(e) => {
                let (ns, name) = ns_name(vm);
                tracing::warn!(vm = %format!("{ns}/{name}"), error = %e, "reconcile failed; will retry");
                VmPhase::Failed
            }
        }
    }

    async fn reconcile_inner(
        &self,
        vm: &VirtualMachine,
        world: &World<'_>,
        nets: Option<&NetSnapshot>,
        now: &str,
    ) -> Result<VmPhase, BootstrapError> {
        // The finalizer first: from here on, a delete waits for the cleanup below.
        let vm = objects::hold(&self.store, vm, VM_FINALIZER).await?;
        let (ns, name) = ns_name(&vm);
        let deleting = is_deleting(&vm);
        let spec = (!deleting).then_some(&vm.spec);
        let prior = vm.status.as_ref();
        let mut world = world.clone();
        if let (Some(spec), Some(nets)) = (spec, nets)
            && !spec.networks.is_empty()
        {
            world.network = Some(nets.assignment(&uid_of(&vm), vm.metadata.generation));
        }
        let input = VmInput {
            id: VmIdentity {
                namespace: ns.clone(),
                name: name.clone(),
                uid: uid_of(&vm),
                generation: u64::try_from(generation_of(&vm)).unwrap_or(1),
            },
            spec,
            deleting,
            prior,
        };
        match reconcile_vm(&self.fleet, input, &world, now).await? {
            VmOutcome::Removed => {
                objects::publish(&self.store, &vm, &[crate::vm_events::deleted()]).await;
                objects::release(&self.store, &vm, VM_FINALIZER).await?;
                tracing::info!(vm = %format!("{ns}/{name}"), "removed");
                Ok(VmPhase::Deleting)
            }
            VmOutcome::Status { status, .. } => {
                let phase = status.phase.map(|p| p.as_str()).unwrap_or("Pending");
                let phase = VmPhase::ALL
                    .into_iter()
                    .find(|p| p.as_str() == phase)
                    .unwrap_or(VmPhase::Pending);
                let events = crate::vm_events::transitions(prior, &status);
                let mut next = vm.clone();
                next.status = Some(status);
                objects::write_status(&self.store, &next).await?;
                objects::publish(&self.store, &vm, &events).await;
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

/// Every image's spec, to tell whether the images changed since the last status refresh.
fn specs(images: &[VmImage]) -> Vec<(&Option<String>, &Option<String>, &VmImageSpec)> {
    images
        .iter()
        .map(|i| (&i.metadata.namespace, &i.metadata.name, &i.spec))
        .collect()
}

/// The VmImages' specs by namespace, then name.
fn images_by_namespace(images: &[VmImage]) -> BTreeMap<String, BTreeMap<String, &VmImageSpec>> {
    let mut out: BTreeMap<String, BTreeMap<String, &VmImageSpec>> = BTreeMap::new();
    for img in images {
        let ns = img.metadata.namespace.clone().unwrap_or_default();
        out.entry(ns)
            .or_default()
            .insert(img.metadata.name.clone().unwrap_or_default(), &img.spec);
    }
    out
}
