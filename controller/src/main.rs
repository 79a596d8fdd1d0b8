//! `yun-controller`: run the controller (bootstrap mode from a manifests directory, or against
//! Kubernetes), show status, or validate-and-apply a manifest into the manifests directory.

mod audit_cmd;
mod bus_auth_cmd;
mod compliance_cmd;
mod device_args;
mod file_sd_args;
mod force_detach_cmd;
mod keystone_args;

use anyhow::{Context, bail};
use clap::{Args as ClapArgs, Parser, Subcommand};
use prometheus_client::registry::Registry;
use std::net::SocketAddr;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio::sync::watch;
use yun_controller::audit::Audit;
use yun_controller::bootstrap::{BootstrapSource, manifests::parse_file};
use yun_controller::failure::FailureConfig;
use yun_controller::fleet_ops::Fleet;
use yun_controller::metrics::ControllerMetrics;
use yun_controller::status_table;
use yun_fleet_etcd::FleetBus;
use yun_placement::{EngineConfig, Policy};

#[derive(Debug, Parser)]
#[command(name = "yun-controller", version, about = "Yun controller")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, ClapArgs)]
struct BusArgs {
    /// Comma-separated etcd client URLs of the fleet bus.
    #[arg(
        long,
        env = "YUN_ETCD_ENDPOINTS",
        value_delimiter = ',',
        default_value = "http://127.0.0.1:2379"
    )]
    etcd_endpoints: Vec<String>,
    /// CA bundle etcd's certificate must chain to. With --etcd-cert and --etcd-key: TLS with
    /// a client certificate (endpoints then https://); docs/ops/fleet-bus-security.md.
    #[arg(long, env = "YUN_ETCD_CA")]
    etcd_ca: Option<PathBuf>,
    /// Client certificate; its CN is the etcd user (`yun-controller`; `root` for bus-auth).
    #[arg(long, env = "YUN_ETCD_CERT")]
    etcd_cert: Option<PathBuf>,
    /// The client certificate's key (mode 0600).
    #[arg(long, env = "YUN_ETCD_KEY")]
    etcd_key: Option<PathBuf>,
}

impl BusArgs {
    async fn connect(&self) -> anyhow::Result<FleetBus> {
        let tls = yun_fleet_etcd::BusTls::from_parts(
            self.etcd_ca.clone(),
            self.etcd_cert.clone(),
            self.etcd_key.clone(),
        )?;
        Ok(FleetBus::connect(&self.etcd_endpoints, Duration::from_secs(5), tls.as_ref()).await?)
    }
}

/// Placement and failure-detection settings.
#[derive(Debug, Clone, ClapArgs)]
struct PlacementArgs {
    /// Default placement policy for VMs that name none: `spread` (emptiest host) or
    /// `binpack` (fullest host that fits).
    #[arg(long, default_value = "spread", value_parser = ["spread", "binpack"])]
    placement_policy: String,
    /// Feasible hosts scored per decision (more is closer to the global best, and slower).
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u16).range(1..=1024))]
    placement_candidates: u16,
    /// More than this fraction of hosts silent at once is treated as a control-plane
    /// partition: nothing is fenced or evacuated, and `yun_controller_fleet_partition_suspected`
    /// is raised.
    #[arg(long, default_value_t = 0.10)]
    partition_fraction: f64,
    /// Seconds a host must stay silent before it may be fenced.
    #[arg(long, default_value_t = 60)]
    fence_grace_secs: u64,
    /// Fleet-wide cap on fences per minute.
    #[arg(long, default_value_t = 10)]
    max_fences_per_minute: usize,
}

impl PlacementArgs {
    fn configs(&self) -> anyhow::Result<(EngineConfig, FailureConfig)> {
        if !(self.partition_fraction > 0.0 && self.partition_fraction <= 1.0) {
            bail!(
                "--partition-fraction must be in (0, 1], got {}",
                self.partition_fraction
            );
        }
        let engine = EngineConfig {
            default_policy: match self.placement_policy.as_str() {
                "binpack" => Policy::BinPack,
                _ => Policy::Spread,
            },
            candidates_per_decision: usize::from(self.placement_candidates),
            ..EngineConfig::default()
        };
        let failure = FailureConfig {
            partition_fraction: self.partition_fraction,
            partition_clear_fraction: self.partition_fraction / 2.0,
            fence_grace: Duration::from_secs(self.fence_grace_secs),
            max_fences_per_minute: self.max_fences_per_minute,
        };
        Ok((engine, failure))
    }
}

// Parsed once at start-up: the size of the largest variant (`run`'s flags) costs nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
enum Command {
    /// Run the controller (leader-elected through etcd).
    Run {
        #[command(flatten)]
        bus: BusArgs,
        /// Bootstrap mode: read manifests from this directory, keep status in etcd.
        #[arg(
            long,
            required_unless_present = "kubernetes",
            conflicts_with = "kubernetes"
        )]
        manifests: Option<PathBuf>,
        /// Kubernetes mode: watch yun.dev objects through the API server (in-cluster config or
        /// KUBECONFIG), write status by server-side apply.
        #[arg(long)]
        kubernetes: bool,
        #[arg(long, default_value = "127.0.0.1:9465")]
        metrics_listen: SocketAddr,
        /// Identity in leader election (default: hostname and pid).
        #[arg(long)]
        identity: Option<String>,
        /// Seconds between bootstrap passes.
        #[arg(long, default_value_t = 0.5)]
        interval_secs: f64,
        #[command(flatten)]
        placement: PlacementArgs,
        /// The controller's audit trail: every placement, release and volume grant it commits
        /// is appended here (hash-chained; see `yun-controller audit verify`).
        #[arg(long, env = "YUN_AUDIT_LOG", default_value = audit_cmd::DEFAULT_AUDIT_LOG)]
        audit_log: PathBuf,
        #[command(flatten)]
        keystone: Box<keystone_args::KeystoneArgs>,
        #[command(flatten)]
        devices: device_args::DeviceArgs,
        #[command(flatten)]
        prometheus_sd: file_sd_args::FileSdArgs,
    },
    /// Provision the fleet bus's etcd users and roles (with the certificate of etcd's root user).
    BusAuth {
        #[command(flatten)]
        bus: BusArgs,
        #[command(subcommand)]
        command: bus_auth_cmd::BusAuthCommand,
    },
    /// Verify or export the audit trail.
    Audit {
        #[command(subcommand)]
        command: audit_cmd::AuditCommand,
    },
    /// Compliance reports (`compliance report`): findings per tenant; see docs/ops/compliance.md.
    Compliance {
        #[command(subcommand)]
        command: compliance_cmd::ComplianceCommand,
    },
    /// Show hosts and bootstrap-mode VMs, like `kubectl get`.
    Status {
        #[command(flatten)]
        bus: BusArgs,
        /// Output format: table or json.
        #[arg(long, short = 'o', default_value = "table")]
        output: String,
    },
    /// DANGEROUS: release a volume without its host's confirmation of the detach. Only for a
    /// host that is powered off or fenced: a host that is merely cut off may still write, and
    /// a second writer corrupts the volume. See docs/ops/storage.md.
    ForceDetach {
        #[command(flatten)]
        bus: BusArgs,
        /// The Volume, `namespace/name`.
        volume: String,
        /// Release only the holders on this host (default: every holder).
        #[arg(long)]
        host: Option<String>,
        /// Confirms that the host is powered off or fenced.
        #[arg(long)]
        i_know_the_host_is_down: bool,
        #[command(flatten)]
        audit: force_detach_cmd::OperatorAudit,
    },
    /// Validate a manifest file and copy it into the manifests directory (atomically). An
    /// invalid file is refused with the offending field named, and nothing is written.
    Apply {
        #[arg(long, short = 'f')]
        file: PathBuf,
        #[arg(long)]
        manifests: PathBuf,
    },
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_else(|_| "controller".into())
}

fn apply(file: &Path, dir: &Path) -> anyhow::Result<()> {
    let text =
        std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
    let docs = parse_file(file, &text).map_err(anyhow::Error::msg)?;
    let name = file.file_name().context("the file has no name")?;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let tmp = dir.join(format!(".{}.tmp", name.to_string_lossy()));
    std::fs::write(&tmp, &text).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, dir.join(name))
        .with_context(|| format!("moving {} into place", tmp.display()))?;
    for d in docs {
        println!("{}/{} applied", d.kind(), d.name());
    }
    Ok(())
}

/// The stored objects of `kind` as the status tables show them.
async fn stored(
    store: &yun_store::EtcdStore,
    kind: yun_store::KindInfo,
) -> anyhow::Result<Vec<status_table::StoredStatus>> {
    Ok(store
        .list_raw(&kind, None)
        .await?
        .items
        .iter()
        .map(status_table::StoredStatus::of)
        .collect())
}

async fn status(bus: &FleetBus, output: &str) -> anyhow::Result<()> {
    use yun_store::KindInfo;
    let store = yun_store::EtcdStore::new(bus.clone());
    let vms = stored(&store, KindInfo::of::<yun_crds::VirtualMachine>()).await?;
    match output {
        "table" => {
            let (hosts, _) = bus.fleet_view().await?;
            print!("{}", status_table::hosts_table(&hosts));
            println!();
            print!("{}", status_table::vms_table(&vms));
            let images = stored(&store, KindInfo::of::<yun_crds::VmImage>()).await?;
            if !images.is_empty() {
                println!();
                print!("{}", status_table::images_table(&images));
            }
            let volumes = stored(&store, KindInfo::of::<yun_crds::Volume>()).await?;
            if !volumes.is_empty() {
                println!();
                print!("{}", status_table::volumes_table(&volumes));
            }
        }
        "json" => {
            let v: Vec<_> = vms
                .iter()
                .map(|r| serde_json::json!({"namespace": r.namespace, "name": r.name, "uid": r.uid, "status": r.status}))
                .collect();
            println!("{}", serde_json::to_string_pretty(&v)?);
        }
        other => bail!("--output {other:?} is not one of table, json"),
    }
    Ok(())
}

/// Where desired state comes from.
#[derive(Clone)]
enum Source {
    Manifests(PathBuf),
    Kubernetes(kube::Client),
}

impl Source {
    fn describe(&self) -> String {
        match self {
            Source::Manifests(dir) => format!("bootstrap mode, manifests {}", dir.display()),
            Source::Kubernetes(_) => "kubernetes mode".to_owned(),
        }
    }

    /// Reconciles until `stop` flips to true.
    fn spawn(
        &self,
        fleet: Fleet,
        metrics: ControllerMetrics,
        interval: Duration,
        mut stop: watch::Receiver<bool>,
        devices: yun_controller::devices::Devices,
    ) -> tokio::task::JoinHandle<()> {
        match self.clone() {
            Source::Manifests(dir) => {
                let source = BootstrapSource::new(dir, fleet, metrics).with_devices(devices);
                tokio::spawn(source.run(interval, stop))
            }
            Source::Kubernetes(client) => tokio::spawn(async move {
                let shutdown = async move {
                    let _ = stop.wait_for(|s| *s).await;
                };
                if let Err(e) =
                    yun_controller::kube_source::run(client, fleet, metrics, devices, shutdown)
                        .await
                {
                    tracing::error!(error = %e, "kubernetes source stopped");
                }
            }),
        }
    }
}

/// Opens the audit log (its directory created private), recording as this controller.
fn open_audit(path: &Path, identity: &str) -> anyhow::Result<Audit> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .with_context(|| format!("creating the audit log directory {}", dir.display()))?;
    }
    let actor = yun_audit::Actor::component(format!("yun-controller/{identity}"));
    Audit::open(path, actor).with_context(|| {
        format!(
            "opening the audit log {} (another controller on this machine needs its own --audit-log)",
            path.display()
        )
    })
}

async fn run(
    bus: FleetBus,
    source: Source,
    metrics_listen: SocketAddr,
    identity: String,
    interval: Duration,
    placement: (EngineConfig, FailureConfig),
    (audit, keystone, devices): (
        Audit,
        yun_controller::identity::Identity,
        yun_controller::devices::Devices,
    ),
) -> anyhow::Result<()> {
    let mut registry = Registry::default();
    let metrics = ControllerMetrics::new(&mut registry);
    // Healthy while the last fleet-bus exchange (campaign or leadership refresh) succeeded.
    let bus_ok = Arc::new(AtomicBool::new(false));
    let probe = bus_ok.clone();
    let health = Arc::new(move || match probe.load(Ordering::Relaxed) {
        true => Ok(()),
        false => Err("fleet bus (etcd) unreachable; running VMs are left as they are".to_string()),
    });
    let bound = yun_telemetry::serve(metrics_listen, Arc::new(registry), health).await?;
    let mode = source.describe();
    tracing::info!(identity = %identity, metrics = %bound, "yun-controller starting ({mode})");
    let (stop_tx, mut stop_rx) = watch::channel(false);
    tokio::spawn(async move {
        shutdown_signal().await;
        let _ = stop_tx.send(true);
    });
    loop {
        // Campaign until elected (or asked to stop).
        let leadership = loop {
            let campaign = bus.try_lead(&identity, 10).await;
            bus_ok.store(campaign.is_ok(), Ordering::Relaxed);
            match campaign {
                Ok(Some(l)) => break l,
                Ok(None) => tracing::info!("another controller leads; standing by"),
                Err(e) => tracing::warn!(error = %e, "leader election failed; retrying"),
            }
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(2)) => {},
                _ = stop_rx.changed() => return Ok(()),
            }
        };
        tracing::info!("elected leader");
        metrics.leader.set(1);
        let (pass_stop_tx, pass_stop_rx) = watch::channel(false);
        let fleet = Fleet::start_with(
            bus.clone(),
            Some(metrics.clone()),
            placement.0.clone(),
            placement.1.clone(),
        )
        .with_audit(audit.clone())
        .with_identity(keystone.clone());
        let passes = source.spawn(
            fleet,
            metrics.clone(),
            interval,
            pass_stop_rx,
            devices.clone(),
        );
        let mut lease = leadership.lease;
        let mut ticker = tokio::time::interval(Duration::from_secs(3));
        let stopping = loop {
            tokio::select! {
                _ = ticker.tick() => {
                    let refresh = lease.refresh().await;
                    bus_ok.store(refresh.is_ok(), Ordering::Relaxed);
                    if let Err(e) = refresh {
                        tracing::error!(error = %e, "lost leadership; stopping reconciles");
                        break false;
                    }
                }
                _ = stop_rx.changed() => break true,
            }
        };
        let _ = pass_stop_tx.send(true);
        let _ = passes.await;
        metrics.leader.set(0);
        if stopping {
            let _ = bus.revoke_lease(lease.id()).await;
            tracing::info!("resigned leadership; shutting down");
            return Ok(());
        }
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    yun_telemetry::init_logging();
    // kube, etcd-client (tonic) and the OpenStack SDK all link rustls, with ring and aws-lc-rs
    // both compiled in: rustls cannot pick, so ring is made the process default first.
    yun_identity::install_crypto_provider();
    match Cli::parse().command {
        Command::Apply { file, manifests } => apply(&file, &manifests),
        Command::Audit { command } => audit_cmd::run(command),
        Command::BusAuth { bus, command } => {
            bus_auth_cmd::run(&bus.connect().await?, command).await
        }
        Command::Compliance { command } => compliance_cmd::run(command).await,
        Command::Status { bus, output } => {
            let bus = bus.connect().await?;
            status(&bus, &output).await
        }
        Command::ForceDetach {
            bus,
            volume,
            host,
            i_know_the_host_is_down,
            audit,
        } => {
            if !i_know_the_host_is_down {
                bail!(
                    "force-detach releases {volume} without its host's confirmation; if that host is still running its VM, a second writer corrupts the volume. Re-run with --i-know-the-host-is-down once the host is powered off or fenced"
                );
            }
            let trail = force_detach_cmd::open_trail(&audit).await?;
            let bus = bus.connect().await?;
            let done = force_detach_cmd::run(&bus, trail, &volume, host.as_deref()).await?;
            for r in &done.released {
                println!("force-detached {} (uid {}) from {r}", done.volume, done.uid);
            }
            Ok(())
        }
        Command::Run {
            bus,
            manifests,
            kubernetes,
            metrics_listen,
            identity,
            interval_secs,
            placement,
            audit_log,
            keystone,
            devices,
            prometheus_sd,
        } => {
            let placement = placement.configs()?;
            let source = match (manifests, kubernetes) {
                (Some(dir), false) if dir.is_dir() => Source::Manifests(dir),
                (Some(dir), false) => bail!("--manifests {} is not a directory", dir.display()),
                _ => {
                    // kube (rustls) and etcd-client (tonic) both link rustls: pick ring explicitly.
                    let _ = rustls::crypto::ring::default_provider().install_default();
                    let client = kube::Client::try_default()
                        .await
                        .context("connecting to Kubernetes")?;
                    Source::Kubernetes(client)
                }
            };
            let bus = bus.connect().await?;
            // Follows the fleet bus on every replica, leader or not (docs/ops/monitoring-discovery.md).
            prometheus_sd.start(&bus)?;
            let identity =
                identity.unwrap_or_else(|| format!("{}-{}", hostname(), std::process::id()));
            let audit = open_audit(&audit_log, &identity)?;
            let keystone = keystone.connect().await?;
            let devices = devices.start(&keystone).await?;
            let result = run(
                bus,
                source,
                metrics_listen,
                identity,
                Duration::from_secs_f64(interval_secs.max(0.05)),
                placement,
                (audit.clone(), keystone, devices),
            )
            .await;
            audit.close().await;
            result
        }
    }
}

async fn shutdown_signal() {
    match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = term.recv() => {},
                _ = tokio::signal::ctrl_c() => {},
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
