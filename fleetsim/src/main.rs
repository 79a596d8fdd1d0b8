//! `yun-fleetsim`: simulates a fleet of hosts against etcd. Prints `{"event":"ready",...}` once
//! the hosts are registered, then answers one command per stdin line with one JSON line on
//! stdout; logs go to stderr. See docs/ops/fleetsim.md.

use clap::Parser;
use serde_json::json;
use std::io::Write;
use std::time::{Duration, Instant, SystemTime};
use tokio::io::{AsyncBufReadExt, BufReader};
use yun_fleet::Resources;
use yun_fleetsim::protocol::{self, error_event, unix_ms};
use yun_fleetsim::{SimCommand, SimConfig, SimFleet, TopologyConfig};

#[derive(Debug, Parser)]
#[command(
    name = "yun-fleetsim",
    version,
    about = "Simulated Yun hosts on a real etcd"
)]
struct Args {
    /// Comma-separated etcd client URLs.
    #[arg(long, value_delimiter = ',', default_value = "http://127.0.0.1:2379")]
    etcd: Vec<String>,
    #[arg(long, default_value_t = 1000)]
    hosts: u32,
    /// Host names are `<prefix>-<index>` (zero-padded to 5 digits at least).
    #[arg(long, default_value = "sim")]
    prefix: String,
    #[arg(long, default_value_t = 10)]
    lease_ttl_secs: i64,
    /// How long the fake hypervisor takes to start or stop a VM.
    #[arg(long, default_value_t = 2000)]
    boot_delay_ms: u64,
    /// etcd connections shared by the hosts (default: one per 1,000 hosts).
    #[arg(long)]
    connections: Option<u32>,
    /// Sessions registering at once (at start and after a heal).
    #[arg(long, default_value_t = 16)]
    register_concurrency: usize,
    /// How long to wait for every host to register before reporting ready anyway.
    #[arg(long, default_value_t = 600)]
    ready_timeout_secs: u64,
    #[arg(long, default_value_t = 64)]
    cpus: u32,
    #[arg(long, default_value_t = 262_144)]
    memory_mib: u64,
    #[arg(long, default_value_t = 2000)]
    disk_gib: u64,
    #[arg(long, default_value_t = 3)]
    zones: u32,
    /// Consecutive hosts per rack.
    #[arg(long, default_value_t = 40)]
    rack_size: u32,
    #[arg(long, default_value_t = 2)]
    power_domains_per_zone: u32,
    /// Revoke the hosts' leases when quitting, so their info keys vanish at once.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    revoke_on_quit: bool,
    /// Worker threads of the runtime (default: one per core).
    #[arg(long)]
    threads: Option<usize>,
}

impl Args {
    fn config(&self) -> SimConfig {
        SimConfig {
            etcd_endpoints: self.etcd.clone(),
            hosts: self.hosts,
            prefix: self.prefix.clone(),
            lease_ttl_secs: self.lease_ttl_secs,
            boot_delay: Duration::from_millis(self.boot_delay_ms),
            connections: self.connections,
            register_concurrency: self.register_concurrency,
            ready_timeout: Duration::from_secs(self.ready_timeout_secs),
            capacity: Resources {
                cpus: self.cpus,
                memory_mib: self.memory_mib,
                disk_gib: self.disk_gib,
            },
            topology: TopologyConfig {
                zones: self.zones,
                rack_size: self.rack_size,
                power_domains_per_zone: self.power_domains_per_zone,
            },
        }
    }
}

/// One JSON line on stdout, flushed at once (the reader is usually a pipe).
fn emit(value: &serde_json::Value) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{value}")?;
    out.flush()?;
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .init();
    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    if let Some(threads) = args.threads {
        runtime.worker_threads(threads.max(1));
    }
    runtime.enable_all().build()?.block_on(run(args))
}

async fn run(args: Args) -> anyhow::Result<()> {
    let cfg = args.config();
    let began = Instant::now();
    let mut fleet = SimFleet::start(cfg).await?;
    let stats = fleet.stats();
    emit(&json!({
        "event": "ready",
        "hosts": stats.registered,
        "expected": stats.hosts,
        "register_ms": u64::try_from(began.elapsed().as_millis()).unwrap_or(u64::MAX),
        "at_unix_ms": unix_ms(SystemTime::now()),
    }))?;

    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    while let Some(line) = lines.next_line().await? {
        match SimCommand::parse(&line) {
            Ok(None) => {}
            Ok(Some(SimCommand::Quit)) => break,
            Ok(Some(cmd)) => emit(&protocol::execute(&mut fleet, cmd))?,
            Err(e) => emit(&error_event(&e.to_string()))?,
        }
    }
    let done = fleet.shutdown(args.revoke_on_quit).await;
    emit(&json!({
        "event": "quit",
        "leases_revoked": done.leases_revoked,
        "revoke_failures": done.revoke_failures,
        "at_unix_ms": unix_ms(SystemTime::now()),
    }))?;
    Ok(())
}
