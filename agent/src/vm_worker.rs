//! One task per VM: it owns that VM's lifecycle, applies the latest desired record, and sends
//! observations to the reporter. Commands coalesce (only the newest desired record matters), so
//! a burst of spec updates costs one reconcile, and VMs never wait on each other.

use crate::audit::{self, AgentAudit, outcome_of};
use crate::hypervisor::{DomainInfo, DomainSpec, DomainState, Hypervisor, VirtType, domain_name};
use crate::lifecycle::Lifecycle;
use crate::metrics::AgentMetrics;
use crate::prepare::{PrepareError, VmFilePreparer};
use crate::reporter::Report;
use crate::storage::AttachedDisk;
use crate::volume_sync::{SyncReport, VmVolumes, VolumeCtx, VolumeSyncError};
use serde_json::Value;
use std::sync::Arc;
use std::time::{Duration, Instant};
use thiserror::Error;
use tokio::sync::mpsc;
use yun_fleet::{RunStrategy, SCHEMA_VERSION, VmDesired, VmObserved, VmPhase};

/// What the host loop tells a VM worker.
#[derive(Debug)]
pub enum Command {
    /// The desired record and its etcd `mod_revision` (attachments are guarded by it).
    Apply(Box<VmDesired>, i64),
    Remove,
    /// The last observation on the fleet bus (sent on every relist): lets a re-adopted VM keep
    /// its original `started_at`, which libvirt does not record.
    Recall(Box<VmObserved>),
}

#[derive(Debug, Error)]
pub enum WorkerError {
    #[error(transparent)]
    Hypervisor(#[from] crate::hypervisor::HypervisorError),
    #[error(transparent)]
    Prepare(#[from] PrepareError),
    #[error(transparent)]
    Lifecycle(#[from] crate::lifecycle::IllegalTransition),
    #[error("blocking task failed: {0}")]
    Join(String),
    #[error("domain {0} did not stop within the shutdown grace period and could not be destroyed")]
    StopTimeout(String),
    #[error(transparent)]
    Volumes(#[from] VolumeSyncError),
}

/// Shared, read-only context of all workers.
#[derive(Clone)]
pub struct WorkerCtx {
    pub hypervisor: Arc<dyn Hypervisor>,
    pub preparer: Arc<VmFilePreparer>,
    pub virt_type: VirtType,
    pub reports: mpsc::UnboundedSender<Report>,
    pub metrics: AgentMetrics,
    pub shutdown_grace: Duration,
    /// How often a settled VM is re-checked against libvirt (catches crashes and manual stops).
    pub resync_every: Duration,
    pub volumes: VolumeCtx,
    /// Where VM starts, stops and removals are recorded.
    pub audit: AgentAudit,
}

impl std::fmt::Debug for WorkerCtx {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WorkerCtx")
            .field("virt_type", &self.virt_type)
            .finish_non_exhaustive()
    }
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, WorkerError> + Send + 'static,
) -> Result<T, WorkerError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| WorkerError::Join(e.to_string()))?
}

fn now_rfc3339() -> String {
    jiff::Timestamp::now().to_string()
}

struct Worker {
    uid: String,
    ctx: WorkerCtx,
    life: Lifecycle,
    domain_uuid: Option<String>,
    started_at: Option<String>,
    generation: u64,
    /// Time the current desired record was first seen (for the start-latency histogram).
    assigned_at: Option<Instant>,
    /// `mod_revision` of the desired record being applied.
    revision: i64,
    volumes: VmVolumes,
    /// Set while a volume failed: the next pass comes after this backoff, not the resync.
    volume_retry: Option<Duration>,
    /// `VirtualMachine namespace/name`, once a desired record or the adopted domain named it.
    audit_object: Option<String>,
    /// The identity generation the seed on disk carries (`Some(None)`: no identity); `None`
    /// until this worker wrote the seed (an adopted domain's seed is rewritten once).
    seed_identity: Option<Option<u64>>,
    /// Why the current identity could not be put into the seed of a defined domain.
    identity_problem: Option<String>,
    /// The identity generation the running guest booted with: QEMU keeps the seed file it
    /// opened, so a seed rewritten since reaches the guest only at its next cold boot. `None`
    /// for an adopted domain (unknown), which keeps the controller from revoking the older
    /// credential until the guest is restarted.
    booted_identity: Option<u64>,
}

/// Runs until the VM is removed (or the command channel closes: agent shutdown, when the VM is
/// deliberately left as it is).
pub async fn run(
    uid: String,
    ctx: WorkerCtx,
    mut rx: mpsc::Receiver<Command>,
    adopted: Option<DomainInfo>,
) {
    let mut w = Worker {
        volumes: VmVolumes::new(&uid),
        revision: 0,
        volume_retry: None,
        uid,
        ctx,
        life: Lifecycle::default(),
        domain_uuid: None,
        started_at: None,
        generation: 0,
        assigned_at: None,
        audit_object: None,
        seed_identity: None,
        identity_problem: None,
        booted_identity: None,
    };
    w.ctx.metrics.move_phase(None, Some(w.life.phase()));
    if let Some(info) = adopted {
        w.adopt(&info);
    }
    let mut desired: Option<Box<VmDesired>> = None;
    let mut retry_in = Duration::from_secs(2);
    loop {
        // Every apply ends in a settled phase (Running, Stopped, Pending) or Failed: wait for
        // the next command, a resync, or the retry of a failure.
        let wait = if w.life.phase() == VmPhase::Failed {
            retry_in
        } else {
            w.volume_retry.unwrap_or(w.ctx.resync_every)
        };
        let cmd = match tokio::time::timeout(wait, rx.recv()).await {
            Ok(Some(cmd)) => Some(cmd),
            Ok(None) => break,
            Err(_) => None,
        };
        // Coalesce: only the newest Apply/Remove matters; Recall is absorbed at once.
        let mut latest = None;
        for c in cmd
            .into_iter()
            .chain(std::iter::from_fn(|| rx.try_recv().ok()))
        {
            match c {
                Command::Recall(o) => w.recall(&o),
                other => latest = Some(other),
            }
        }
        match latest {
            Some(Command::Remove) => {
                w.remove().await;
                return;
            }
            Some(Command::Apply(d, revision)) => {
                w.revision = revision;
                if desired
                    .as_ref()
                    .is_none_or(|cur| cur.generation != d.generation)
                {
                    w.assigned_at = Some(Instant::now());
                }
                desired = Some(d);
            }
            Some(Command::Recall(_)) | None => {}
        }
        let Some(d) = desired.as_deref() else {
            continue;
        };
        match w.apply(d).await {
            Ok(()) => {
                retry_in = Duration::from_secs(2);
                w.ctx.metrics.reconciled(true);
            }
            Err(e) => {
                tracing::warn!(vm = %format!("{}/{}", d.namespace, d.name), uid = %w.uid, error = %e, "reconcile failed; will retry");
                w.ctx.metrics.reconciled(false);
                w.set_phase(VmPhase::Failed);
                w.report(d.generation, Some(e.to_string()));
                retry_in = (retry_in * 2).min(Duration::from_secs(60));
            }
        }
    }
    w.ctx.metrics.move_phase(Some(w.life.phase()), None);
}

impl Worker {
    fn set_phase(&mut self, to: VmPhase) {
        let from = self.life.phase();
        match self.life.go(to) {
            Ok(_) => self.ctx.metrics.move_phase(Some(from), Some(to)),
            // A bug, not an outside condition: log loudly and keep the old phase.
            Err(e) => tracing::error!(uid = %self.uid, error = %e, "lifecycle refused transition"),
        }
    }

    /// Takes the start time of the domain we run from our own earlier observation.
    fn recall(&mut self, observed: &VmObserved) {
        let same_domain =
            observed.domain_uuid.is_some() && observed.domain_uuid == self.domain_uuid;
        if self.started_at.is_none() && same_domain && self.life.phase() == VmPhase::Running {
            self.started_at.clone_from(&observed.started_at);
        }
    }

    fn adopt(&mut self, info: &DomainInfo) {
        self.domain_uuid = Some(info.uuid.clone());
        if let Some(meta) = &info.meta {
            self.audit_object = Some(audit::vm_object(&meta.namespace, &meta.vm_name));
        }
        if info.state == DomainState::Running {
            self.set_phase(VmPhase::Running);
            self.ctx.metrics.adopted_domains.inc();
            tracing::info!(uid = %self.uid, domain = %info.name, "re-adopted running domain");
        }
    }

    fn report(&self, generation: u64, message: Option<String>) {
        let observed = VmObserved {
            v: SCHEMA_VERSION,
            uid: self.uid.clone(),
            phase: self.life.phase(),
            observed_generation: generation,
            domain_uuid: self.domain_uuid.clone(),
            started_at: self.started_at.clone(),
            message,
            updated_at: now_rfc3339(),
            // What the guest holds: the controller revokes an older credential on this.
            identity_generation: match self.life.phase() {
                VmPhase::Running | VmPhase::Stopping => self.booted_identity,
                _ => self.seed_identity.flatten(),
            },
        };
        let _ = self.ctx.reports.send(Report::Observed(observed));
    }

    async fn lookup(&self) -> Result<Option<DomainInfo>, WorkerError> {
        let hv = self.ctx.hypervisor.clone();
        let name = domain_name(&self.uid);
        blocking(move || Ok(hv.lookup(&name)?)).await
    }

    /// Records `action` on this VM (its uid first in the details); durable on return.
    async fn audit(&self, action: &str, outcome: yun_audit::Outcome, details: &[(&str, Value)]) {
        let object = self
            .audit_object
            .clone()
            .unwrap_or_else(|| format!("VirtualMachine {}", self.uid));
        let mut all = vec![("uid", Value::from(self.uid.as_str()))];
        all.extend_from_slice(details);
        self.ctx.audit.record(action, object, outcome, &all).await;
    }

    async fn apply(&mut self, d: &VmDesired) -> Result<(), WorkerError> {
        let before = (self.life.phase(), self.generation);
        self.generation = d.generation;
        self.audit_object = Some(audit::vm_object(&d.namespace, &d.name));
        let domain = self.lookup().await?;
        if let Some(info) = &domain {
            self.domain_uuid = Some(info.uuid.clone());
        }
        let running = domain
            .as_ref()
            .is_some_and(|i| i.state == DomainState::Running);
        if d.hold.is_some() && !running && d.run_strategy == RunStrategy::Always {
            // The controller has not granted the volumes yet: start nothing.
            if before.1 != d.generation || self.life.phase() != VmPhase::Pending {
                self.report(d.generation, d.hold.clone());
            }
            return Ok(());
        }
        match d.run_strategy {
            RunStrategy::Always if running => {
                if self.life.phase() != VmPhase::Running {
                    self.set_phase(VmPhase::Running);
                }
                if self.started_at.is_none() {
                    self.started_at = Some(now_rfc3339());
                }
            }
            RunStrategy::Always => self.start(d).await?,
            RunStrategy::Halted => self.stop(domain.as_ref()).await?,
        }
        let defined = matches!(self.life.phase(), VmPhase::Running | VmPhase::Stopped);
        let identity_news = domain.is_some() && defined && self.refresh_identity(d).await;
        if before != (self.life.phase(), self.generation) || identity_news {
            self.report(d.generation, self.identity_problem.clone());
        }
        if domain.is_some() || self.life.phase() == VmPhase::Running {
            self.sync_volumes(d).await?;
        }
        Ok(())
    }

    /// Brings the domain's volumes in line with `d`; a failed volume is retried with backoff
    /// and never fails the VM.
    async fn sync_volumes(&mut self, d: &VmDesired) -> Result<(), WorkerError> {
        let hv = self.ctx.hypervisor.clone();
        let failed = match self
            .volumes
            .sync(&self.ctx.volumes, &hv, d, self.revision)
            .await
        {
            Ok(report) => report.failed,
            Err(e) => {
                // The VM itself is fine: only its volumes wait (e.g. for the fleet bus).
                tracing::warn!(uid = %self.uid, error = %e, "volume sync failed; will retry");
                true
            }
        };
        self.volume_retry = failed.then(|| {
            self.volume_retry.map_or(Duration::from_secs(2), |r| {
                (r * 2).min(Duration::from_secs(60))
            })
        });
        Ok(())
    }

    /// Starts the domain and records the start (or why it failed) before anything reports it.
    async fn start(&mut self, d: &VmDesired) -> Result<(), WorkerError> {
        let restart = self.life.phase() == VmPhase::Running;
        if restart {
            // It was running and no longer is (crashed or stopped by hand): start it again.
            tracing::warn!(uid = %self.uid, "domain no longer running; restarting it");
        }
        let launched = self.launch(d).await;
        let generation = ("generation", Value::from(d.generation));
        match &launched {
            Ok(Some((info, _, _))) => {
                let domain = ("domainUuid", Value::from(info.uuid.as_str()));
                let mut details = vec![generation, domain];
                if restart {
                    details.push(("restart", Value::from(true)));
                }
                self.audit(audit::VM_START, outcome_of(&launched), &details)
                    .await;
            }
            // Superseded by a newer desired record: nothing was started.
            Ok(None) => {}
            Err(_) => {
                self.audit(audit::VM_START, outcome_of(&launched), &[generation])
                    .await;
            }
        }
        let Some((info, disks, cold)) = launched? else {
            return Ok(());
        };
        if !disks.is_empty() {
            self.volumes
                .confirm_cold(&self.ctx.volumes, d, &disks)
                .await?;
        }
        if cold.failed {
            self.volume_retry = Some(Duration::from_secs(2));
        }
        self.domain_uuid = Some(info.uuid);
        self.started_at = Some(now_rfc3339());
        self.set_phase(VmPhase::Running);
        if let Some(t) = self.assigned_at.take() {
            self.ctx
                .metrics
                .start_seconds
                .observe(t.elapsed().as_secs_f64());
        }
        tracing::info!(vm = %format!("{}/{}", d.namespace, d.name), uid = %self.uid, "domain started");
        Ok(())
    }

    /// Prepares the VM's files and volumes, defines and starts the domain; returns it, the
    /// volume disks it was defined with, and the cold volumes' report. `None`: a newer desired
    /// record is on its way (it will start the VM).
    async fn launch(
        &mut self,
        d: &VmDesired,
    ) -> Result<Option<(DomainInfo, Vec<AttachedDisk>, SyncReport)>, WorkerError> {
        self.set_phase(VmPhase::Preparing);
        self.report(d.generation, None);
        let preparer = self.ctx.preparer.clone();
        let (virt_type, desired) = (self.ctx.virt_type, d.clone());
        let fills_before = preparer.cache_fills();
        let prepared = blocking(move || Ok(preparer.prepare(&desired, virt_type)?)).await;
        // Publish the cache even when a later step of prepare failed: the fill happened.
        if self.ctx.preparer.cache_fills() != fills_before {
            let _ = self.ctx.reports.send(Report::ImagesChanged);
        }
        let mut spec = prepared?;
        // The seed now carries the desired identity (the next report says which generation).
        self.seed_identity = Some(d.identity.as_ref().map(|i| i.generation));
        self.booted_identity = self.seed_identity.flatten();
        self.identity_problem = None;
        let hv = self.ctx.hypervisor.clone();
        let (disks, cold) = self
            .volumes
            .cold_disks(&self.ctx.volumes, &hv, d, self.revision)
            .await?;
        if cold.superseded {
            return Ok(None);
        }
        spec.disks = disks;
        self.set_phase(VmPhase::Starting);
        self.report(d.generation, None);
        match self.define_and_start(spec.clone()).await {
            Ok(info) => Ok(Some((info, spec.disks, cold))),
            Err(e) if !spec.disks.is_empty() => {
                // A volume QEMU cannot open (wrong CHAP, unreachable portal) must not keep the
                // VM down: start without volumes, then attach them one by one, which reports
                // the culprit on its own attachment.
                tracing::warn!(uid = %self.uid, error = %e, "start with volumes failed; starting without them");
                spec.disks.clear();
                let info = self.define_and_start(spec).await?;
                Ok(Some((info, Vec::new(), cold)))
            }
            Err(e) => Err(e),
        }
    }

    /// Rewrites the seed of a defined domain when it carries another identity generation than
    /// `d` asks for (a rotation, an identity added or removed, or an adopted domain's seed).
    /// QEMU keeps the seed file it opened, so the guest sees the new one at its next cold boot
    /// (see docs/ops/identity.md). A credential that does not open leaves the VM as it is, with
    /// the reason in its status. Returns whether there is news to report.
    async fn refresh_identity(&mut self, d: &VmDesired) -> bool {
        let want = d.identity.as_ref().map(|i| i.generation);
        if self.seed_identity == Some(want) {
            return false;
        }
        let preparer = self.ctx.preparer.clone();
        let desired = d.clone();
        let problem = match blocking(move || Ok(preparer.write_seed(&desired)?)).await {
            Ok(_) => {
                tracing::info!(uid = %self.uid, identity_generation = ?want, "seed rewritten for the VM's identity");
                self.seed_identity = Some(want);
                None
            }
            Err(e) => {
                tracing::warn!(uid = %self.uid, error = %e, "cannot rewrite the seed for the VM's identity; will retry");
                Some(e.to_string())
            }
        };
        let news = problem.is_none() || problem != self.identity_problem;
        self.identity_problem = problem;
        news
    }

    async fn define_and_start(&self, spec: DomainSpec) -> Result<DomainInfo, WorkerError> {
        let hv = self.ctx.hypervisor.clone();
        blocking(move || {
            hv.define(&spec)?;
            Ok(hv.start(&spec.name)?)
        })
        .await
    }

    async fn stop(&mut self, domain: Option<&DomainInfo>) -> Result<(), WorkerError> {
        let active = domain.is_some_and(|i| i.state.is_active());
        if active {
            self.set_phase(VmPhase::Stopping);
            self.report(self.generation, None);
            let hv = self.ctx.hypervisor.clone();
            let name = domain_name(&self.uid);
            let grace = self.ctx.shutdown_grace;
            // Whether the domain had to be destroyed.
            let stopped = blocking(move || {
                hv.shutdown(&name)?;
                let deadline = Instant::now() + grace;
                while Instant::now() < deadline {
                    if !hv.lookup(&name)?.is_some_and(|i| i.state.is_active()) {
                        return Ok(false);
                    }
                    std::thread::sleep(Duration::from_millis(200));
                }
                // The guest ignored ACPI: a bounded time in every state, then force.
                hv.destroy(&name)?;
                Ok(true)
            })
            .await;
            let forced = stopped.as_ref().is_ok_and(|f| *f);
            let details = [("forced", Value::from(forced))];
            self.audit(audit::VM_STOP, outcome_of(&stopped), &details)
                .await;
            stopped?;
        }
        if self.life.phase() == VmPhase::Running {
            self.set_phase(VmPhase::Stopping);
        }
        self.set_phase(VmPhase::Stopped);
        self.started_at = None;
        Ok(())
    }

    async fn remove(&mut self) {
        self.set_phase(VmPhase::Deleting);
        self.report(self.generation, None);
        let hv = self.ctx.hypervisor.clone();
        let preparer = self.ctx.preparer.clone();
        let uid = self.uid.clone();
        let hv2 = hv.clone();
        let mut result = blocking(move || {
            let name = domain_name(&uid);
            hv.destroy(&name)?;
            hv.undefine(&name)?;
            preparer.remove(&uid)?;
            Ok(())
        })
        .await;
        let details: Vec<_> = (self.domain_uuid.clone())
            .map(|u| ("domainUuid", Value::from(u)))
            .into_iter()
            .collect();
        self.audit(audit::VM_DESTROY, outcome_of(&result), &details)
            .await;
        if result.is_ok() {
            // The domain is gone, so are its disks: the attachments end here (before the
            // observed record goes, which lets the controller release the VM).
            result = self
                .volumes
                .forget_all(&self.ctx.volumes, &hv2)
                .await
                .map_err(WorkerError::from);
        }
        match result {
            Ok(()) => {
                tracing::info!(uid = %self.uid, "VM removed: domain, overlay and seed gone");
                let _ = self.ctx.reports.send(Report::Gone(self.uid.clone()));
                self.ctx.metrics.move_phase(Some(self.life.phase()), None);
            }
            Err(e) => {
                // Leave the observed record in Deleting with the reason; the host loop will send
                // Remove again on its next resync.
                tracing::error!(uid = %self.uid, error = %e, "VM removal failed");
                self.report(self.generation, Some(e.to_string()));
                self.ctx.metrics.move_phase(Some(self.life.phase()), None);
            }
        }
    }
}
