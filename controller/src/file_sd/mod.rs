//! Prometheus discovery of the agents: `file_sd` target files written from the host records
//! on the fleet bus (each agent publishes `HostInfo.metrics_address` and its labels), so a
//! Prometheus finds every agent without a hand-kept list (docs/ops/monitoring-discovery.md).
//!
//! `render` (labels, JSON, shards) and `registry` (which hosts are listed) are pure; `output`
//! owns the files (atomic replace, unchanged content not rewritten); `task` ties them to a scan
//! and watch of the fleet bus with a debounce. The task needs only etcd, so it runs the same in
//! bootstrap and Kubernetes mode, and on standby controllers too (their files stay current).

pub mod output;
pub mod registry;
pub mod render;
pub mod task;

pub use output::{SdFiles, shard_paths, write_atomically};
pub use registry::{SdCounts, SdRegistry};
pub use render::{
    Target, parse_targets, render, render_shard, render_shards, sanitize_label_name, shard_of,
    target_labels,
};
pub use task::{FileSdConfig, run};

use std::path::PathBuf;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum FileSdError {
    #[error("prometheus file_sd: {op} {}: {source}", path.display())]
    Io {
        op: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
}

#[cfg(test)]
mod tests;
