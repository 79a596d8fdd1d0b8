//! `yun-controller run` flags for Prometheus discovery of the agents (file_sd target files;
//! docs/ops/monitoring-discovery.md).

use std::path::PathBuf;
use std::time::Duration;

use anyhow::bail;
use clap::Args as ClapArgs;
use yun_controller::file_sd::{self, FileSdConfig};
use yun_fleet_etcd::FleetBus;

#[derive(Debug, ClapArgs)]
pub struct FileSdArgs {
    /// Write a Prometheus file_sd target file here listing every agent (its published
    /// metrics_address, with host/zone/rack/power_domain labels). Off when unset. The
    /// directory must exist.
    #[arg(long, env = "YUN_PROMETHEUS_SD_FILE")]
    pub prometheus_sd_file: Option<PathBuf>,
    /// Split the targets over this many files, `<stem>.<i>.<ext>` (hosts by a hash of their
    /// name): a change rewrites one shard, and one Prometheus can scrape each shard.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub prometheus_sd_shards: u16,
    /// Shortest time between two rewrites of the files (changes in between are batched).
    #[arg(long, default_value_t = 1.0)]
    pub prometheus_sd_interval_secs: f64,
}

impl FileSdArgs {
    /// Starts the writer task when `--prometheus-sd-file` is set; refuses bad flags at start-up.
    pub fn start(&self, bus: &FleetBus) -> anyhow::Result<()> {
        let Some(path) = &self.prometheus_sd_file else {
            return Ok(());
        };
        if path.file_name().is_none() {
            bail!("--prometheus-sd-file {} names no file", path.display());
        }
        let dir = path
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(std::path::Path::new("."));
        if !dir.is_dir() {
            bail!(
                "--prometheus-sd-file {}: the directory {} does not exist",
                path.display(),
                dir.display()
            );
        }
        let secs = self.prometheus_sd_interval_secs;
        if !(0.05..=3600.0).contains(&secs) {
            bail!("--prometheus-sd-interval-secs must be between 0.05 and 3600, got {secs}");
        }
        let cfg = FileSdConfig {
            path: path.clone(),
            shards: usize::from(self.prometheus_sd_shards),
            min_interval: Duration::from_secs_f64(secs),
        };
        tokio::spawn(file_sd::run(bus.clone(), cfg));
        Ok(())
    }
}
