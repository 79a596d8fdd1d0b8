//! The one error type of the test harness.

use std::path::PathBuf;
use std::time::Duration;

/// Why a test helper could not do its job. Messages are written for a person reading a
/// failed test: they say what was tried and what to do about it.
#[derive(Debug, thiserror::Error)]
pub enum TestkitError {
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },

    #[error("etcd did not come up: {reason}\n--- etcd log tail ---\n{log_tail}")]
    EtcdStart { reason: String, log_tail: String },

    #[error("timed out after {timeout:?} waiting for {what}")]
    Timeout { what: String, timeout: Duration },

    #[error(
        "libvirt qemu:///system is not reachable ({detail}); \
         start it as root with `scripts/libvirt.sh up <STATE_DIR>`"
    )]
    LibvirtUnavailable { detail: String },

    #[error(
        "binary `{name}` not found (looked in: {}); run `cargo build --workspace --bins` first",
        .searched.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ")
    )]
    BinaryMissing {
        name: String,
        searched: Vec<PathBuf>,
    },

    /// A daemon (tgtd, rpcbind, ganesha) exited or did not answer while starting.
    #[error("{server} did not come up: {reason}\n--- {server} log tail ---\n{log_tail}")]
    ServerStart {
        server: &'static str,
        reason: String,
        log_tail: String,
    },

    /// A tool run on the daemon's behalf (e.g. tgtadm) exited with an error.
    #[error("`{command}` failed: {detail}")]
    CommandFailed { command: String, detail: String },

    /// A program a test or helper runs is not installed.
    #[error("not installed: {tools}; run scripts/install-deps.sh")]
    ToolMissing { tools: String },

    /// A helper was asked for something it cannot do, e.g. an iSCSI LUN 0.
    #[error("{0}")]
    BadRequest(String),

    #[error("could not send {signal} to pid {pid}: {detail}")]
    Signal {
        pid: u32,
        signal: &'static str,
        detail: String,
    },
}

impl TestkitError {
    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Self::Io {
            context: context.into(),
            source,
        }
    }
}
