//! The measured rounds. `AgentVolumes` drives the agent's own code path for one VM
//! (`VmVolumes::sync` with the real driver, the fleet-bus ledger on a real etcd and libvirt):
//! an attach is timed from the sync call that first sees the volume listed until it returns
//! with the attachment recorded `Attached`, which it does only after libvirt accepted the hot
//! plug into the live description. `virsh_attach` is the naive baseline: the same disk XML
//! handed to `virsh attach-device --live --config`, with no ledger and no checks.

use anyhow::{Context, bail};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::watch;
use yun_agent::audit::AgentAudit;
use yun_agent::hypervisor::{Hypervisor, domain_name};
use yun_agent::storage::disk_xml::{next_target_dev, render_disk};
use yun_agent::storage::driver::{HostVolumes, VolumeDriver};
use yun_agent::storage::{AttachedDisk, ImageFormat, VolumeSource};
use yun_agent::volume_sync::{Ledger, SyncReport, VmVolumes, VolumeCtx};
use yun_fleet::{AttachPhase, AttachmentRecord, VmDesired, VolumeRecord};
use yun_fleet_etcd::FleetBus;

/// The root disk and the seed take the first two targets (as in the agent).
const RESERVED_TARGETS: [&str; 2] = ["vda", "vdb"];
/// Sync passes a detach may take; a pass fails when the guest did not release the disk within
/// the detach timeout, and the agent's next pass retries it.
const DETACH_PASSES: u32 = 3;

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> anyhow::Result<T> + Send + 'static,
) -> anyhow::Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .context("blocking task")?
}

/// One VM's volumes as its agent worker handles them.
pub struct AgentVolumes {
    host: String,
    bus: FleetBus,
    hv: Arc<dyn Hypervisor>,
    ctx: VolumeCtx,
    volumes: VmVolumes,
    vm: VmDesired,
    /// Keeps the ledger's view of the bus connected.
    _bus_tx: watch::Sender<Option<FleetBus>>,
}

impl std::fmt::Debug for AgentVolumes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AgentVolumes")
            .field("host", &self.host)
            .field("vm", &self.vm.uid)
            .finish_non_exhaustive()
    }
}

/// The time of one detach, and how many sync passes it took.
#[derive(Debug, Clone, Copy)]
pub struct Detach {
    pub took: Duration,
    pub passes: u32,
}

impl AgentVolumes {
    pub fn new(
        host: &str,
        bus: FleetBus,
        hv: Arc<dyn Hypervisor>,
        driver: Arc<HostVolumes>,
        vm: VmDesired,
        detach_timeout: Duration,
    ) -> AgentVolumes {
        let (bus_tx, bus_rx) = watch::channel(Some(bus.clone()));
        AgentVolumes {
            host: host.to_owned(),
            volumes: VmVolumes::new(&vm.uid),
            ctx: VolumeCtx {
                driver,
                ledger: Ledger::new(host, bus_rx),
                detach_timeout,
                audit: AgentAudit::disabled(),
            },
            bus,
            hv,
            vm,
            _bus_tx: bus_tx,
        }
    }

    /// Publishes the VM's desired record as the controller would; returns its mod_revision,
    /// which the ledger's guarded transaction compares.
    async fn publish(&mut self, volumes: Vec<VolumeRecord>) -> anyhow::Result<i64> {
        self.vm.volumes = volumes;
        self.vm.generation += 1;
        self.bus.put_desired(&self.host, &self.vm).await?;
        match self.bus.desired_stored(&self.host, &self.vm.uid).await? {
            Some(stored) if stored.value == self.vm => Ok(stored.mod_revision),
            other => bail!("desired record not as written: {other:?}"),
        }
    }

    async fn sync(&mut self, revision: i64) -> anyhow::Result<SyncReport> {
        Ok(self
            .volumes
            .sync(&self.ctx, &self.hv, &self.vm, revision)
            .await?)
    }

    async fn record(&self, volume_uid: &str) -> anyhow::Result<Option<AttachmentRecord>> {
        Ok(self
            .bus
            .vm_attachments(&self.host, &self.vm.uid)
            .await?
            .remove(volume_uid))
    }

    /// The serials and targets of the volume disks in the domain's live description.
    async fn live_disks(&self) -> anyhow::Result<Vec<(String, String)>> {
        let (hv, name) = (self.hv.clone(), domain_name(&self.vm.uid));
        blocking(move || {
            Ok(hv
                .disks(&name)?
                .into_iter()
                .map(|d| (d.serial, d.target_dev))
                .collect())
        })
        .await
    }

    /// Lists `vol` in the desired record and runs the agent's sync: the attach time.
    pub async fn attach(&mut self, vol: &VolumeRecord) -> anyhow::Result<Duration> {
        let revision = self.publish(vec![vol.clone()]).await?;
        let t0 = Instant::now();
        let report = self.sync(revision).await?;
        let took = t0.elapsed();
        let record = self.record(&vol.uid).await?;
        let target = match &record {
            Some(r) if r.phase == AttachPhase::Attached && report == SyncReport::default() => {
                r.target_dev.clone().unwrap_or_default()
            }
            _ => bail!("attach of {} failed: {report:?}, record {record:?}", vol.id),
        };
        let serial = yun_agent::storage::disk_xml::serial_for(&vol.uid);
        if !self.live_disks().await?.contains(&(serial.clone(), target)) {
            bail!("{} recorded Attached but disk {serial} is not live", vol.id);
        }
        Ok(took)
    }

    /// Removes every volume from the desired record and runs the agent's sync until it
    /// detached `vol` (libvirt no longer lists it live and its record is gone).
    pub async fn detach(&mut self, vol: &VolumeRecord) -> anyhow::Result<Detach> {
        let revision = self.publish(Vec::new()).await?;
        let t0 = Instant::now();
        let mut passes = 0;
        loop {
            passes += 1;
            let report = self.sync(revision).await?;
            if report == SyncReport::default() {
                break;
            }
            let record = self.record(&vol.uid).await?;
            if passes == DETACH_PASSES {
                bail!(
                    "detach of {} failed {passes} times: {report:?}, record {record:?}",
                    vol.id
                );
            }
            eprintln!("bench: detach of {} not done yet: {record:?}", vol.id);
        }
        let took = t0.elapsed();
        if let Some(r) = self.record(&vol.uid).await? {
            bail!("{} detached but its record is still there: {r:?}", vol.id);
        }
        let serial = yun_agent::storage::disk_xml::serial_for(&vol.uid);
        if self.live_disks().await?.iter().any(|(s, _)| *s == serial) {
            bail!("{} detached but disk {serial} is still live", vol.id);
        }
        Ok(Detach { took, passes })
    }
}

/// How the naive baseline gets the volume's bytes ready.
#[derive(Debug)]
pub enum NaiveSource {
    /// Creates a qcow2 at this path with `qemu-img`, then attaches it.
    CreateLocal(std::path::PathBuf),
    /// Attaches the volume as the agent's driver describes it (nothing to create on the host).
    Described(VolumeRecord),
}

/// The naive baseline for one volume: `virsh attach-device --live --config` of the disk XML the
/// agent renders, timed from the start (qcow2 creation for a local volume) until virsh returns
/// (libvirt answers once the device is in the live description). The target is picked before
/// the clock starts; the disk is detached afterwards with the agent's hypervisor (not timed).
pub fn virsh_attach(
    hv: &Arc<dyn Hypervisor>,
    domain: &str,
    xml_dir: &Path,
    serial: String,
    source: NaiveSource,
    detach_timeout: Duration,
) -> anyhow::Result<Duration> {
    let mut used: Vec<String> = RESERVED_TARGETS.iter().map(|s| (*s).to_owned()).collect();
    used.extend(hv.disks(domain)?.into_iter().map(|d| d.target_dev));
    let target_dev = next_target_dev(&used).context("no free disk target")?;
    let xml_file = xml_dir.join(format!("disk-{serial}.xml"));
    let t0 = Instant::now();
    let source = match source {
        NaiveSource::CreateLocal(path) => {
            crate::backends::qemu_img_create(&path, "1G")?;
            VolumeSource::Local {
                path,
                format: ImageFormat::Qcow2,
            }
        }
        NaiveSource::Described(record) => {
            HostVolumes::new(xml_dir.join("unused-volumes"))
                .prepare(&record)?
                .source
        }
    };
    let disk = AttachedDisk {
        source,
        target_dev,
        serial: serial.clone(),
        read_only: false,
    };
    std::fs::write(&xml_file, render_disk(&disk)?)
        .with_context(|| format!("write {}", xml_file.display()))?;
    let out = Command::new("virsh")
        .args(["-q", "-c", "qemu:///system", "attach-device", domain])
        .arg(&xml_file)
        .args(["--live", "--config"])
        .stdin(Stdio::null())
        .output()
        .context("run virsh")?;
    let took = t0.elapsed();
    if !out.status.success() {
        bail!(
            "virsh attach-device {domain} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    if !hv.disks(domain)?.iter().any(|d| d.serial == serial) {
        bail!("virsh attached disk {serial} but libvirt does not list it live");
    }
    hv.detach_disk(domain, &serial, detach_timeout)?;
    let _ = std::fs::remove_file(&xml_file);
    if let VolumeSource::Local { path, .. } = &disk.source {
        let _ = std::fs::remove_file(path);
    }
    Ok(took)
}
