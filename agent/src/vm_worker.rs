//! One task per VM: it owns that VM's lifecycle, applies the latest desired record, and sends
//! observations to the reporter. Commands coalesce (only the newest desired record matters), so
//! a burst of spec updates costs one reconcile, and VMs never wait on each other.

use crate::hypervisor::{DomainInfo, DomainSpec, DomainState, Hypervisor, VirtType, domain_name};
use crate::lifecycle::Lifecycle;
use crate::metrics::AgentMetrics;
use crate::prepare::{PrepareError, VmFilePreparer};
use crate::reporter::Report;
use crate::volume_sync::{VmVolumes, VolumeCtx, VolumeSyncError};
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
            identity_generation: None,
        };
        let _ = self.ctx.reports.send(Report::Observed(observed));
    }

    async fn lookup(&self) -> Result<Option<DomainInfo>, WorkerError> {
        let hv = self.ctx.hypervisor.clone();
        let name = domain_name(&self.uid);
        blocking(move || Ok(hv.lookup(&name)?)).await
    }

    async fn apply(&mut self, d: &VmDesired) -> Result<(), WorkerError> {
        let before = (self.life.phase(), self.generation);
        self.generation = d.generation;
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
        if before != (self.life.phase(), self.generation) {
            self.report(d.generation, None);
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

    async fn start(&mut self, d: &VmDesired) -> Result<(), WorkerError> {
        if self.life.phase() == VmPhase::Running {
            // It was running and no longer is (crashed or stopped by hand): start it again.
            tracing::warn!(uid = %self.uid, "domain no longer running; restarting it");
        }
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
        let hv = self.ctx.hypervisor.clone();
        let (disks, cold) = self
            .volumes
            .cold_disks(&self.ctx.volumes, &hv, d, self.revision)
            .await?;
        if cold.superseded {
            // A newer desired record is on its way; it will start the VM.
            return Ok(());
        }
        spec.disks = disks;
        self.set_phase(VmPhase::Starting);
        self.report(d.generation, None);
        let info = match self.define_and_start(spec.clone()).await {
            Ok(info) => {
                self.volumes
                    .confirm_cold(&self.ctx.volumes, d, &spec.disks)
                    .await?;
                info
            }
            Err(e) if !spec.disks.is_empty() => {
                // A volume QEMU cannot open (wrong CHAP, unreachable portal) must not keep the
                // VM down: start without volumes, then attach them one by one, which reports
                // the culprit on its own attachment.
                tracing::warn!(uid = %self.uid, error = %e, "start with volumes failed; starting without them");
                spec.disks.clear();
                self.define_and_start(spec).await?
            }
            Err(e) => return Err(e),
        };
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
            blocking(move || {
                hv.shutdown(&name)?;
                let deadline = Instant::now() + grace;
                while Instant::now() < deadline {
                    if !hv.lookup(&name)?.is_some_and(|i| i.state.is_active()) {
                        return Ok(());
                    }
                    std::thread::sleep(Duration::from_millis(200));
                }
                // The guest ignored ACPI: a bounded time in every state, then force.
                hv.destroy(&name)?;
                Ok(())
            })
            .await?;
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
