//! Start overhead: a VM assignment seen by the agent → libvirt reports the domain running (guest
//! boot excluded). `concurrent` drives the agent's real per-VM workers; `serial` is the naive
//! baseline of one loop doing prepare + define + start for each VM in turn.

use crate::fixture::Template;
use anyhow::{Context, bail};
use prometheus_client::registry::Registry;
use std::collections::HashMap;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::runtime::Runtime;
use tokio::sync::mpsc;
use yun_agent::audit::AgentAudit;
use yun_agent::hypervisor::libvirt::LibvirtHypervisor;
use yun_agent::hypervisor::{DomainState, Hypervisor, VirtType, domain_name};
use yun_agent::images::ImageCache;
use yun_agent::metrics::AgentMetrics;
use yun_agent::prepare::VmFilePreparer;
use yun_agent::reporter::Report;
use yun_agent::storage::driver::HostVolumes;
use yun_agent::vm_worker::{self, Command, WorkerCtx};
use yun_agent::volume_sync::{Ledger, VolumeCtx};
use yun_fleet::VmPhase;

/// Uids of benchmark VMs start with this, so a sweep can find leftovers of a crashed run.
pub const UID_PREFIX: &str = "bench-";

/// One host setup to measure on.
pub struct Host {
    pub hv: Arc<LibvirtHypervisor>,
    pub virt_type: VirtType,
    pub memory_mib: u64,
    /// Holds `images/` (the template cache) and `vms/`; must be traversable by QEMU's user.
    pub state_dir: PathBuf,
    pub timeout: Duration,
}

impl Host {
    fn preparer(&self) -> anyhow::Result<VmFilePreparer> {
        let cache = ImageCache::open(self.state_dir.join("images"))?;
        let vms = self.state_dir.join("vms");
        std::fs::create_dir_all(&vms).with_context(|| format!("create {}", vms.display()))?;
        std::fs::set_permissions(&vms, std::fs::Permissions::from_mode(0o755))
            .with_context(|| format!("chmod {}", vms.display()))?;
        Ok(VmFilePreparer::new(cache, vms))
    }

    /// Fills the template cache (copy + sha256 verify), so runs measure a host that already
    /// has the template, as every VM after a host's first does. Returns how long it took.
    pub fn warm_cache(&self, template: &Template) -> anyhow::Result<Duration> {
        let cache = ImageCache::open(self.state_dir.join("images"))?;
        let t0 = Instant::now();
        cache.ensure(&template.image.disk, template.image.format.as_str())?;
        // The same extensions `VmFilePreparer::prepare` asks for, so it finds them cached.
        if let Some(kernel) = &template.image.kernel {
            cache.ensure(kernel, "kernel")?;
        }
        if let Some(initrd) = &template.image.initrd {
            cache.ensure(initrd, "initrd")?;
        }
        Ok(t0.elapsed())
    }

    fn uids(&self, tag: &str, n: usize) -> Vec<String> {
        (0..n)
            .map(|i| format!("{UID_PREFIX}{}-{tag}-{i:02}", std::process::id()))
            .collect()
    }
}

/// Destroys and undefines the domains and removes the VM files when dropped: on success, on
/// error and on panic alike.
pub struct Sweep {
    hv: Arc<LibvirtHypervisor>,
    names: Vec<String>,
    dirs: Vec<PathBuf>,
}

impl Sweep {
    /// Every managed domain whose uid marks it as a benchmark VM (leftovers of a crashed run).
    pub fn leftovers(hv: &Arc<LibvirtHypervisor>) -> anyhow::Result<Sweep> {
        let names = hv
            .list_managed()?
            .into_iter()
            .filter(|d| d.uid().is_some_and(|u| u.starts_with(UID_PREFIX)))
            .map(|d| d.name)
            .collect();
        Ok(Sweep {
            hv: hv.clone(),
            names,
            dirs: Vec::new(),
        })
    }
}

impl Drop for Sweep {
    fn drop(&mut self) {
        for name in &self.names {
            if let Err(e) = self.hv.destroy(name).and_then(|()| self.hv.undefine(name)) {
                eprintln!("bench: cleanup of domain {name} failed: {e}");
            }
        }
        for dir in &self.dirs {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

async fn assign(tx: &mpsc::Sender<Command>, d: yun_fleet::VmDesired) -> anyhow::Result<()> {
    tx.send(Command::Apply(Box::new(d), 0))
        .await
        .context("worker exited early")
}

/// How assignments reach the agent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arrival {
    /// All `n` assigned at t0: per VM, the time from t0 until it runs (queueing included).
    Burst,
    /// One after another, each once the previous runs: per VM, the time from its own
    /// assignment until it runs (the design target's "assignment → domain started").
    OneAtATime,
}

/// `n` VMs through their own `vm_worker` tasks; per VM, the time until its
/// `Observed { phase: Running }` report arrives, measured as `arrival` says.
pub fn concurrent(
    rt: &Runtime,
    host: &Host,
    template: &Template,
    tag: &str,
    n: usize,
    arrival: Arrival,
) -> anyhow::Result<Vec<Duration>> {
    let preparer = Arc::new(host.preparer()?);
    let uids = host.uids(tag, n);
    let _sweep = Sweep {
        hv: host.hv.clone(),
        names: uids.iter().map(|u| domain_name(u)).collect(),
        dirs: uids.iter().map(|u| preparer.vm_dir(u)).collect(),
    };
    let (reports_tx, mut reports) = mpsc::unbounded_channel();
    let ctx = WorkerCtx {
        hypervisor: host.hv.clone(),
        preparer,
        virt_type: host.virt_type,
        reports: reports_tx,
        metrics: AgentMetrics::new(&mut Registry::default()),
        shutdown_grace: Duration::from_secs(5),
        // No periodic re-checks during the measurement.
        resync_every: Duration::from_secs(3600),
        // No volumes here, and no fleet bus: attachments are never recorded.
        volumes: VolumeCtx {
            driver: Arc::new(HostVolumes::new(
                std::env::temp_dir().join("yun-bench-volumes"),
            )),
            ledger: Ledger::new("bench", tokio::sync::watch::channel(None).1),
            detach_timeout: Duration::from_secs(5),
            audit: AgentAudit::disabled(),
        },
        audit: AgentAudit::disabled(),
    };
    let desired: Vec<_> = uids
        .iter()
        .map(|u| template.vm(u, host.memory_mib))
        .collect();
    rt.block_on(async move {
        let mut senders = Vec::with_capacity(n);
        let mut workers = Vec::with_capacity(n);
        for uid in &uids {
            let (tx, rx) = mpsc::channel(4);
            workers.push(tokio::spawn(vm_worker::run(
                uid.clone(),
                ctx.clone(),
                rx,
                None,
            )));
            senders.push(tx);
        }
        drop(ctx);
        let mut queue = senders.iter().zip(desired);
        let mut t0 = Instant::now();
        match arrival {
            Arrival::Burst => {
                for (tx, d) in queue.by_ref() {
                    assign(tx, d).await?;
                }
            }
            Arrival::OneAtATime => {
                if let Some((tx, d)) = queue.next() {
                    assign(tx, d).await?;
                }
            }
        }
        let deadline = tokio::time::Instant::now() + host.timeout;
        let mut running: HashMap<String, Duration> = HashMap::with_capacity(n);
        let outcome = loop {
            if running.len() == n {
                break Ok(());
            }
            match tokio::time::timeout_at(deadline, reports.recv()).await {
                Err(_) => {
                    break Err(anyhow::anyhow!(
                        "only {}/{n} VMs running after {:?}",
                        running.len(),
                        host.timeout
                    ));
                }
                Ok(None) => break Err(anyhow::anyhow!("reports channel closed")),
                Ok(Some(Report::Observed(o))) if o.phase == VmPhase::Running => {
                    if running.contains_key(&o.uid) {
                        continue;
                    }
                    running.insert(o.uid, t0.elapsed());
                    if arrival == Arrival::OneAtATime
                        && let Some((tx, d)) = queue.next()
                    {
                        t0 = Instant::now();
                        assign(tx, d).await?;
                    }
                }
                Ok(Some(Report::Observed(o))) if o.phase == VmPhase::Failed => {
                    break Err(anyhow::anyhow!(
                        "VM {} failed: {}",
                        o.uid,
                        o.message.unwrap_or_default()
                    ));
                }
                Ok(Some(_)) => {}
            }
        };
        // Closing the command channels ends the workers (leaving their domains to the sweep).
        drop(senders);
        for w in workers {
            let _ = tokio::time::timeout(Duration::from_secs(60), w).await;
        }
        outcome.map(|()| running.into_values().collect())
    })
}

/// The naive baseline: one loop, VM after VM, prepare + define + start; VM i is running at the
/// sum of the times of VMs 0..=i since all were assigned at t0.
pub fn serial(
    host: &Host,
    template: &Template,
    tag: &str,
    n: usize,
) -> anyhow::Result<Vec<Duration>> {
    let preparer = host.preparer()?;
    let uids = host.uids(tag, n);
    let _sweep = Sweep {
        hv: host.hv.clone(),
        names: uids.iter().map(|u| domain_name(u)).collect(),
        dirs: uids.iter().map(|u| preparer.vm_dir(u)).collect(),
    };
    let desired: Vec<_> = uids
        .iter()
        .map(|u| template.vm(u, host.memory_mib))
        .collect();
    let mut times = Vec::with_capacity(n);
    let t0 = Instant::now();
    for d in &desired {
        let spec = preparer.prepare(d, host.virt_type)?;
        host.hv.define(&spec)?;
        let info = host.hv.start(&spec.name)?;
        if info.state != DomainState::Running {
            bail!("{} is {:?} after start", spec.name, info.state);
        }
        times.push(t0.elapsed());
    }
    Ok(times)
}
