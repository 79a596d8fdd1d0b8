//! `yun-agent`: the per-host daemon. See docs/ops/configuration.md for every setting.

use anyhow::Context;
use clap::Parser;
use prometheus_client::registry::Registry;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, watch};
use yun_agent::audit::AgentAudit;
use yun_agent::config::AgentConfig;
use yun_agent::host_loop::HostLoop;
use yun_agent::hypervisor::Hypervisor;
use yun_agent::hypervisor::libvirt::{LibvirtHypervisor, resolve_virt_type};
use yun_agent::images::ImageCache;
use yun_agent::metrics::AgentMetrics;
use yun_agent::network::host_state::LinkSettings;
use yun_agent::network::links::NetlinkLinks;
use yun_agent::network::nft::{NftCommand, NftFirewall};
use yun_agent::network::worker::run_network_worker;
use yun_agent::prepare::VmFilePreparer;
use yun_agent::reporter;
use yun_agent::storage::driver::HostVolumes;
use yun_agent::vm_worker::WorkerCtx;
use yun_agent::volume_sync::{Ledger, VolumeCtx};

/// Flags override the config file.
#[derive(Debug, Parser)]
#[command(name = "yun-agent", version, about = "Yun per-host agent")]
struct Args {
    /// TOML config file (optional; every key has a default).
    #[arg(long, short = 'c', env = "YUN_AGENT_CONFIG")]
    config: Option<PathBuf>,
    #[arg(long)]
    host_name: Option<String>,
    /// Comma-separated etcd client URLs.
    #[arg(long, value_delimiter = ',')]
    etcd_endpoints: Option<Vec<String>>,
    #[arg(long)]
    state_dir: Option<PathBuf>,
    #[arg(long)]
    libvirt_uri: Option<String>,
    /// auto | kvm | qemu
    #[arg(long)]
    virt_type: Option<String>,
    #[arg(long)]
    metrics_listen: Option<SocketAddr>,
}

fn load_config(args: Args) -> anyhow::Result<AgentConfig> {
    let mut cfg = match &args.config {
        Some(path) => AgentConfig::load(path)?,
        None => AgentConfig::default(),
    };
    if let Some(v) = args.host_name {
        cfg.host_name = v;
    }
    if let Some(v) = args.etcd_endpoints {
        cfg.etcd_endpoints = v;
    }
    if let Some(v) = args.state_dir {
        cfg.state_dir = v;
    }
    if let Some(v) = args.libvirt_uri {
        cfg.libvirt_uri = v;
    }
    if let Some(v) = args.virt_type {
        cfg.virt_type = v;
    }
    if let Some(v) = args.metrics_listen {
        cfg.metrics_listen = v;
    }
    cfg.validate()?;
    Ok(cfg)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    yun_telemetry::init_logging();
    let cfg = load_config(Args::parse())?;
    let virt_type = resolve_virt_type(&cfg.virt_type)?;
    std::fs::create_dir_all(cfg.state_dir.join("vms"))
        .with_context(|| format!("creating state_dir {}", cfg.state_dir.display()))?;
    let audit_log = cfg.audit_log_path();
    let audit = AgentAudit::open(&audit_log, &cfg.host_name).with_context(|| {
        format!(
            "opening the audit log {} (config key audit_log)",
            audit_log.display()
        )
    })?;
    let uri = cfg.libvirt_uri.clone();
    let hypervisor: Arc<dyn Hypervisor> = Arc::new(
        tokio::task::spawn_blocking(move || LibvirtHypervisor::connect(&uri))
            .await?
            .with_context(|| format!("connecting to libvirt at {}", cfg.libvirt_uri))?,
    );
    let images = ImageCache::open(cfg.images_dir())?;
    // VM credentials are sealed to this key's public half (published as HostInfo.seal_key).
    let seal_key = yun_agent::seal_key::load_or_create(&cfg.state_dir)
        .context("loading the host's seal key")?;
    let preparer = Arc::new(
        VmFilePreparer::new(images, cfg.state_dir.join("vms"))
            .with_identity(cfg.host_name.clone(), Arc::new(seal_key)),
    );

    let mut registry = Registry::default();
    let metrics = AgentMetrics::new(&mut registry);
    let (bus_tx, bus_rx) = watch::channel(None);
    let health_bus = bus_rx.clone();
    let ledger_bus = bus_rx.clone();
    let health = Arc::new(move || match health_bus.borrow().is_some() {
        true => Ok(()),
        false => Err("fleet bus (etcd) not connected; guests are left as they are".to_string()),
    });
    let bound = yun_telemetry::serve(cfg.metrics_listen, Arc::new(registry), health).await?;

    let (reports_tx, reports_rx) = mpsc::unbounded_channel();
    let cache = preparer.clone();
    let inventory: reporter::Inventory =
        Arc::new(move || cache.inventory().map_err(|e| e.to_string()));
    tokio::spawn(reporter::run(
        cfg.host_name.clone(),
        reports_rx,
        bus_rx,
        metrics.clone(),
        inventory,
    ));
    let ctx = WorkerCtx {
        metrics: metrics.clone(),
        hypervisor: hypervisor.clone(),
        preparer,
        virt_type,
        reports: reports_tx,
        shutdown_grace: Duration::from_secs(cfg.shutdown_grace_secs),
        resync_every: Duration::from_secs(30),
        volumes: VolumeCtx {
            driver: Arc::new(HostVolumes {
                volumes_dir: cfg.volumes_dir(),
                fc_disk_dir: cfg.storage.fc_disk_dir.clone(),
                fc_mapper_dir: cfg.storage.fc_mapper_dir.clone(),
                sys_block_dir: PathBuf::from("/sys/block"),
            }),
            ledger: Ledger::new(cfg.host_name.clone(), ledger_bus),
            detach_timeout: Duration::from_secs(cfg.storage.detach_timeout_secs),
            audit: audit.clone(),
        },
        audit: audit.clone(),
    };
    tracing::info!(host = %cfg.host_name, virt_type = virt_type.as_str(), metrics = %bound,
        libvirt = %cfg.libvirt_uri, "yun-agent starting");

    let (stop_tx, stop_rx) = watch::channel(false);
    let net_cfg = cfg.network.clone();
    let mut host_loop = HostLoop::new(cfg, ctx, bus_tx);
    let network = if net_cfg.enabled {
        let links = NetlinkLinks::new().context("opening netlink for tenant links")?;
        let settings = LinkSettings {
            tunnel_ip: net_cfg.tunnel_address,
            tunnel_dev: net_cfg.tunnel_device.clone(),
            vlan_uplink: net_cfg.vlan_uplink.clone(),
        };
        Some(tokio::spawn(run_network_worker(
            host_loop.network_updates(),
            settings,
            links,
            NftFirewall::new(NftCommand::default()),
            Duration::from_secs(net_cfg.drift_check_secs),
            metrics,
            audit.clone(),
            stop_rx.clone(),
        )))
    } else {
        tracing::warn!("[network] enabled = false: tenant links and the firewall are not managed");
        None
    };
    let domains = tokio::task::spawn_blocking(move || hypervisor.list_managed()).await??;
    host_loop.adopt(domains);

    let runner = tokio::spawn(host_loop.run(stop_rx));
    shutdown_signal().await;
    tracing::info!("shutting down; running guests are left as they are");
    let _ = stop_tx.send(true);
    let _ = runner.await;
    if let Some(n) = network {
        let _ = n.await;
    }
    audit.close().await;
    Ok(())
}

async fn shutdown_signal() {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "cannot install SIGTERM handler; waiting for Ctrl-C only");
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = term.recv() => {},
        _ = tokio::signal::ctrl_c() => {},
    }
}
