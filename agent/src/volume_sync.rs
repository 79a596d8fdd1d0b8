//! A VM's volumes on this host: the agent's half of the single-writer protocol (see
//! `yun_fleet::volume`). Before a disk is connected, its attachment record is written in a
//! transaction on the desired record's revision; the record is deleted only after libvirt
//! confirmed the detach. A volume that fails is reported `Failed` with the driver's or
//! libvirt's error and retried; the VM keeps running either way.

use crate::audit::{self, AgentAudit};
use crate::hypervisor::{Hypervisor, domain_name};
use crate::storage::AttachedDisk;
use crate::storage::disk_xml::{next_target_dev, serial_for};
use crate::storage::driver::{VolumeDriver, chap_secret_usage};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;
use thiserror::Error;
use tokio::sync::watch;
use yun_audit::Outcome;
use yun_fleet::{AttachPhase, AttachmentRecord, SCHEMA_VERSION, VmDesired, VolumeRecord};
use yun_fleet_etcd::{BusError, FleetBus};

/// The targets in use before any volume: the root disk's and the seed's.
fn reserved_targets() -> Vec<String> {
    vec!["vda".to_owned(), "vdb".to_owned()]
}

#[derive(Debug, Error)]
pub enum VolumeSyncError {
    #[error(transparent)]
    Bus(#[from] BusError),
    #[error("not connected to the fleet bus: attachments cannot be recorded, so none is started")]
    Disconnected,
    #[error("blocking task failed: {0}")]
    Join(String),
}

/// Where a host records its attachments: its own prefix on the fleet bus.
#[derive(Clone)]
pub struct Ledger {
    host: String,
    bus: watch::Receiver<Option<FleetBus>>,
}

impl std::fmt::Debug for Ledger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ledger").field("host", &self.host).finish()
    }
}

impl Ledger {
    pub fn new(host: impl Into<String>, bus: watch::Receiver<Option<FleetBus>>) -> Ledger {
        Ledger {
            host: host.into(),
            bus,
        }
    }

    fn bus(&self) -> Result<FleetBus, VolumeSyncError> {
        self.bus
            .borrow()
            .clone()
            .ok_or(VolumeSyncError::Disconnected)
    }
}

/// What the workers share for volumes.
#[derive(Clone)]
pub struct VolumeCtx {
    pub driver: Arc<dyn VolumeDriver>,
    pub ledger: Ledger,
    /// How long a live detach may wait for the guest to let go of the disk.
    pub detach_timeout: Duration,
    /// Where attaches and detaches are recorded.
    pub audit: AgentAudit,
}

impl std::fmt::Debug for VolumeCtx {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VolumeCtx")
            .field("ledger", &self.ledger)
            .field("detach_timeout", &self.detach_timeout)
            .finish_non_exhaustive()
    }
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, String> + Send + 'static,
) -> Result<Result<T, String>, VolumeSyncError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| VolumeSyncError::Join(e.to_string()))
}

fn now() -> String {
    jiff::Timestamp::now().to_string()
}

/// The outcome of one pass over a VM's volumes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SyncReport {
    /// Some volume failed (or could not start): retry with backoff.
    pub failed: bool,
    /// The desired record changed under us: a newer one is on its way, nothing was attached.
    pub superseded: bool,
}

/// One VM's attachments, as this worker last recorded them (volume uid → record).
#[derive(Debug, Default)]
pub struct VmVolumes {
    uid: String,
    records: BTreeMap<String, AttachmentRecord>,
    loaded: bool,
    /// `namespace/name` of the VM, from the last desired record (for audit records).
    vm: String,
}

impl VmVolumes {
    pub fn new(uid: &str) -> VmVolumes {
        VmVolumes {
            uid: uid.to_owned(),
            ..VmVolumes::default()
        }
    }

    /// The attachment of volume `id` (`uid`) to this VM, for audit records.
    fn attachment<'a>(&'a self, id: &'a str, uid: &'a str) -> audit::Attachment<'a> {
        audit::Attachment {
            volume_id: id,
            volume_uid: uid,
            vm_uid: &self.uid,
            vm: &self.vm,
        }
    }

    /// Records an attach of `vol`: at `Ok(target)`, or why it failed.
    async fn audit_attach(
        &self,
        ctx: &VolumeCtx,
        vol: &VolumeRecord,
        result: Result<&str, &str>,
        cold: bool,
    ) {
        let at = self.attachment(&vol.id, &vol.uid);
        let driver = vol.source.driver();
        ctx.audit.record_attach(at, driver, result, cold).await;
    }

    /// Reads the VM's records once per worker (after an agent restart they name the volumes of
    /// the disks already in the domain).
    async fn load(&mut self, ctx: &VolumeCtx) -> Result<(), VolumeSyncError> {
        if !self.loaded {
            let bus = ctx.ledger.bus()?;
            self.records = bus.vm_attachments(&ctx.ledger.host, &self.uid).await?;
            self.loaded = true;
        }
        Ok(())
    }

    async fn put(
        &mut self,
        ctx: &VolumeCtx,
        vol: &VolumeRecord,
        phase: AttachPhase,
        target_dev: Option<String>,
        message: Option<String>,
    ) -> Result<(), VolumeSyncError> {
        let attempts = match (phase, self.records.get(&vol.uid)) {
            (AttachPhase::Failed, Some(r)) => r.attempts + 1,
            (AttachPhase::Failed, None) => 1,
            (AttachPhase::Attached, _) => 0,
            (_, Some(r)) => r.attempts,
            (_, None) => 0,
        };
        let rec = AttachmentRecord {
            v: SCHEMA_VERSION,
            volume: vol.id.clone(),
            phase,
            target_dev,
            message,
            attempts,
            updated_at: now(),
        };
        let bus = ctx.ledger.bus()?;
        bus.put_attachment(&ctx.ledger.host, &self.uid, &vol.uid, &rec)
            .await?;
        self.records.insert(vol.uid.clone(), rec);
        Ok(())
    }

    /// Records the intent to attach, guarded by the desired record's revision. `false`: the
    /// desired record changed, so this attach must not happen.
    async fn begin(
        &mut self,
        ctx: &VolumeCtx,
        vol: &VolumeRecord,
        revision: i64,
    ) -> Result<bool, VolumeSyncError> {
        let attempts = self.records.get(&vol.uid).map_or(0, |r| r.attempts);
        let rec = AttachmentRecord {
            v: SCHEMA_VERSION,
            volume: vol.id.clone(),
            phase: AttachPhase::Attaching,
            target_dev: None,
            message: None,
            attempts,
            updated_at: now(),
        };
        let bus = ctx.ledger.bus()?;
        let ok = bus
            .begin_attachment(&ctx.ledger.host, &self.uid, &vol.uid, revision, &rec)
            .await?;
        if ok {
            self.records.insert(vol.uid.clone(), rec);
        }
        Ok(ok)
    }

    async fn end(&mut self, ctx: &VolumeCtx, volume_uid: &str) -> Result<(), VolumeSyncError> {
        let bus = ctx.ledger.bus()?;
        bus.delete_attachment(&ctx.ledger.host, &self.uid, volume_uid)
            .await?;
        self.records.remove(volume_uid);
        Ok(())
    }

    /// The next free target after `used`; when none is left, records the volume `Failed`.
    async fn pick_target(
        &mut self,
        ctx: &VolumeCtx,
        vol: &VolumeRecord,
        used: &[String],
    ) -> Result<Option<String>, VolumeSyncError> {
        let target = next_target_dev(used);
        if target.is_none() {
            let why = "no free disk target (vdc..vdz)".to_owned();
            self.audit_attach(ctx, vol, Err(&why), false).await;
            self.put(ctx, vol, AttachPhase::Failed, None, Some(why))
                .await?;
        }
        Ok(target)
    }

    /// Prepares one volume and defines its CHAP secret; the disk to attach, or the error.
    async fn prepare(
        ctx: &VolumeCtx,
        hv: &Arc<dyn Hypervisor>,
        vol: &VolumeRecord,
        target_dev: String,
    ) -> Result<Result<AttachedDisk, String>, VolumeSyncError> {
        let (driver, hv, vol) = (ctx.driver.clone(), hv.clone(), vol.clone());
        blocking(move || {
            let prepared = driver.prepare(&vol).map_err(|e| e.to_string())?;
            if let Some(secret) = &prepared.chap {
                hv.set_chap_secret(secret).map_err(|e| e.to_string())?;
            }
            Ok(AttachedDisk {
                source: prepared.source,
                target_dev,
                serial: serial_for(&vol.uid),
                read_only: vol.read_only,
            })
        })
        .await
    }

    /// Cold attach: the disks to define the domain with. Each volume is recorded `Attaching`
    /// first; one that cannot be prepared is recorded `Failed` and left out (the VM starts
    /// without it and the next pass retries it as a hot attach).
    pub async fn cold_disks(
        &mut self,
        ctx: &VolumeCtx,
        hv: &Arc<dyn Hypervisor>,
        vm: &VmDesired,
        revision: i64,
    ) -> Result<(Vec<AttachedDisk>, SyncReport), VolumeSyncError> {
        let mut report = SyncReport::default();
        let mut disks = Vec::new();
        if vm.volumes.is_empty() {
            return Ok((disks, report));
        }
        self.vm = format!("{}/{}", vm.namespace, vm.name);
        self.load(ctx).await?;
        let mut used = reserved_targets();
        for vol in &vm.volumes {
            if !self.begin(ctx, vol, revision).await? {
                report.superseded = true;
                return Ok((Vec::new(), report));
            }
            let Some(target) = self.pick_target(ctx, vol, &used).await? else {
                report.failed = true;
                continue;
            };
            match Self::prepare(ctx, hv, vol, target.clone()).await? {
                Ok(disk) => {
                    used.push(target);
                    disks.push(disk);
                }
                Err(e) => {
                    tracing::warn!(vm = %format!("{}/{}", vm.namespace, vm.name), volume = %vol.id, error = %e, "volume not ready; starting without it");
                    self.audit_attach(ctx, vol, Err(&e), true).await;
                    self.put(ctx, vol, AttachPhase::Failed, None, Some(e))
                        .await?;
                    report.failed = true;
                }
            }
        }
        Ok((disks, report))
    }

    /// After a cold start: the defined disks are attached.
    pub async fn confirm_cold(
        &mut self,
        ctx: &VolumeCtx,
        vm: &VmDesired,
        disks: &[AttachedDisk],
    ) -> Result<(), VolumeSyncError> {
        for vol in &vm.volumes {
            let serial = serial_for(&vol.uid);
            if let Some(d) = disks.iter().find(|d| d.serial == serial) {
                self.audit_attach(ctx, vol, Ok(&d.target_dev), true).await;
                self.put(
                    ctx,
                    vol,
                    AttachPhase::Attached,
                    Some(d.target_dev.clone()),
                    None,
                )
                .await?;
                tracing::info!(vm = %format!("{}/{}", vm.namespace, vm.name), volume = %vol.id, driver = vol.source.driver(), target = %d.target_dev, "volume attached at start");
            }
        }
        Ok(())
    }

    /// Hot sync of a defined domain (running: live + config; stopped: config): attaches what
    /// the desired record lists and the domain lacks, detaches Yun volumes it no longer lists.
    pub async fn sync(
        &mut self,
        ctx: &VolumeCtx,
        hv: &Arc<dyn Hypervisor>,
        vm: &VmDesired,
        revision: i64,
    ) -> Result<SyncReport, VolumeSyncError> {
        let mut report = SyncReport::default();
        if vm.volumes.is_empty() && self.loaded && self.records.is_empty() {
            return Ok(report);
        }
        self.vm = format!("{}/{}", vm.namespace, vm.name);
        match self.load(ctx).await {
            // Nothing to attach, and what is attached stays as it is while the bus is away.
            Err(VolumeSyncError::Disconnected) if vm.volumes.is_empty() => return Ok(report),
            other => other?,
        }
        let name = domain_name(&self.uid);
        let present = {
            let (hv, name) = (hv.clone(), name.clone());
            match blocking(move || hv.disks(&name).map_err(|e| e.to_string())).await? {
                Ok(d) => d,
                Err(e) => {
                    tracing::warn!(uid = %self.uid, error = %e, "cannot list the domain's disks");
                    report.failed = true;
                    return Ok(report);
                }
            }
        };
        let wanted: BTreeSet<String> = vm.volumes.iter().map(|v| serial_for(&v.uid)).collect();
        // Detach first: frees targets, and a volume moving between VMs leaves before it arrives.
        let strays: Vec<(String, String)> = self
            .records
            .keys()
            .filter(|uid| !wanted.contains(&serial_for(uid)))
            .map(|uid| (uid.clone(), serial_for(uid)))
            .collect();
        let mut freed = BTreeSet::new();
        for (uid, serial) in strays {
            let in_domain = present.iter().any(|d| d.serial == serial);
            if self
                .detach(ctx, hv, &name, &uid, &serial, in_domain)
                .await?
            {
                freed.insert(serial);
            } else {
                report.failed = true;
            }
        }
        let present: Vec<_> = present
            .into_iter()
            .filter(|d| !freed.contains(&d.serial))
            .collect();
        let mut used = reserved_targets();
        used.extend(present.iter().map(|d| d.target_dev.clone()));
        for vol in &vm.volumes {
            let serial = serial_for(&vol.uid);
            if let Some(d) = present.iter().find(|d| d.serial == serial) {
                let recorded = self.records.get(&vol.uid);
                if recorded.is_none_or(|r| r.phase != AttachPhase::Attached) {
                    if recorded.is_none() && !self.begin(ctx, vol, revision).await? {
                        report.superseded = true;
                        return Ok(report);
                    }
                    self.put(
                        ctx,
                        vol,
                        AttachPhase::Attached,
                        Some(d.target_dev.clone()),
                        None,
                    )
                    .await?;
                }
                continue;
            }
            if !self.begin(ctx, vol, revision).await? {
                report.superseded = true;
                return Ok(report);
            }
            let Some(target) = self.pick_target(ctx, vol, &used).await? else {
                report.failed = true;
                continue;
            };
            let outcome = match Self::prepare(ctx, hv, vol, target.clone()).await? {
                Ok(disk) => {
                    let (hv, name) = (hv.clone(), name.clone());
                    blocking(move || hv.attach_disk(&name, &disk).map_err(|e| e.to_string()))
                        .await?
                }
                Err(e) => Err(e),
            };
            match outcome {
                Ok(()) => {
                    used.push(target.clone());
                    self.audit_attach(ctx, vol, Ok(&target), false).await;
                    self.put(ctx, vol, AttachPhase::Attached, Some(target.clone()), None)
                        .await?;
                    tracing::info!(vm = %format!("{}/{}", vm.namespace, vm.name), volume = %vol.id, driver = vol.source.driver(), target = %target, "volume attached");
                }
                Err(e) => {
                    tracing::warn!(vm = %format!("{}/{}", vm.namespace, vm.name), volume = %vol.id, error = %e, "volume attach failed; will retry");
                    self.audit_attach(ctx, vol, Err(&e), false).await;
                    self.put(ctx, vol, AttachPhase::Failed, None, Some(e))
                        .await?;
                    report.failed = true;
                }
            }
        }
        Ok(report)
    }

    /// Detaches one volume's disk; deletes its record once libvirt confirmed. `false`: failed
    /// (recorded, retried later). Audited only when the disk was `in_domain`: otherwise only
    /// the record of an attach that never happened is cleared.
    async fn detach(
        &mut self,
        ctx: &VolumeCtx,
        hv: &Arc<dyn Hypervisor>,
        name: &str,
        uid: &str,
        serial: &str,
        in_domain: bool,
    ) -> Result<bool, VolumeSyncError> {
        let vol = VolumeRecord {
            id: self
                .records
                .get(uid)
                .map(|r| r.volume.clone())
                .unwrap_or_default(),
            uid: uid.to_owned(),
            size_gib: 0,
            read_only: false,
            source: yun_fleet::VolumeSourceRecord::Local {},
        };
        self.put(ctx, &vol, AttachPhase::Detaching, None, None)
            .await?;
        let (hv2, name2, serial2, timeout) = (
            hv.clone(),
            name.to_owned(),
            serial.to_owned(),
            ctx.detach_timeout,
        );
        let usage = chap_secret_usage(uid);
        let result = blocking(move || {
            hv2.detach_disk(&name2, &serial2, timeout)
                .map_err(|e| e.to_string())?;
            hv2.remove_chap_secret(&usage).map_err(|e| e.to_string())
        })
        .await?;
        if in_domain {
            let outcome = audit::outcome_of(&result);
            let at = self.attachment(&vol.id, uid);
            ctx.audit
                .record_volume(audit::VOLUME_DETACH, at, outcome, &[])
                .await;
        }
        match result {
            Ok(()) => {
                self.end(ctx, uid).await?;
                tracing::info!(uid = %self.uid, volume = %vol.id, "volume detached");
                Ok(true)
            }
            Err(e) => {
                tracing::warn!(uid = %self.uid, volume = %vol.id, error = %e, "volume detach failed; will retry");
                self.put(ctx, &vol, AttachPhase::Failed, None, Some(e))
                    .await?;
                Ok(false)
            }
        }
    }

    /// The domain is gone (VM removed): drop secrets and records.
    pub async fn forget_all(
        &mut self,
        ctx: &VolumeCtx,
        hv: &Arc<dyn Hypervisor>,
    ) -> Result<(), VolumeSyncError> {
        if self.loaded && self.records.is_empty() {
            return Ok(());
        }
        self.load(ctx).await?;
        let uids: Vec<String> = self.records.keys().cloned().collect();
        for uid in uids {
            let (hv, usage) = (hv.clone(), chap_secret_usage(&uid));
            if let Err(e) =
                blocking(move || hv.remove_chap_secret(&usage).map_err(|e| e.to_string())).await?
            {
                tracing::warn!(uid = %self.uid, volume = %uid, error = %e, "cannot remove the CHAP secret");
            }
            // The disk left with the domain; records of attaches that never happened just go.
            if let Some(r) = self
                .records
                .get(&uid)
                .filter(|r| matches!(r.phase, AttachPhase::Attached | AttachPhase::Detaching))
            {
                let details = [("domainRemoved", Value::from(true))];
                let at = self.attachment(&r.volume, &uid);
                ctx.audit
                    .record_volume(audit::VOLUME_DETACH, at, Outcome::Ok, &details)
                    .await;
            }
            self.end(ctx, &uid).await?;
        }
        Ok(())
    }
}
