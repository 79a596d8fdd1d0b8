//! The crate's error type.

use std::io;
use std::path::PathBuf;

use crate::problem::Problem;

#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error("audit log {}: {op}: {source}", .path.display())]
    Io {
        path: PathBuf,
        op: &'static str,
        #[source]
        source: io::Error,
    },

    #[error("audit log {}: locked by another writer", .path.display())]
    Locked { path: PathBuf },

    /// The log is damaged or was tampered with; `line` (1-based) and `seq` name the first bad
    /// record.
    #[error("audit log {}, line {line}{}: {problem}", .path.display(), seq_suffix(*.seq))]
    Broken {
        path: PathBuf,
        line: usize,
        seq: Option<u64>,
        problem: Problem,
    },

    #[error("invalid audit entry: {reason}")]
    InvalidEntry { reason: String },

    /// An earlier write or fsync failed; the file may hold a partial record, so the writer
    /// refuses to append until the log is reopened (which truncates that partial record).
    #[error("audit log {}: a previous write failed; reopen the log to recover", .path.display())]
    Poisoned { path: PathBuf },

    /// The group-commit batch holding this entry could not be made durable.
    #[error("audit log {}: batch not recorded: {reason}", .path.display())]
    BatchFailed { path: PathBuf, reason: String },

    #[error("audit sink is closed")]
    Closed,

    #[error("encoding audit record: {0}")]
    Encode(#[from] serde_json::Error),

    #[error("writing audit export: {0}")]
    Export(#[source] io::Error),

    #[error("invalid audit anchor {text:?}: expected <seq>:<64 lowercase hex digits>")]
    BadAnchor { text: String },
}

impl AuditError {
    pub(crate) fn io(path: &std::path::Path, op: &'static str) -> impl FnOnce(io::Error) -> Self {
        let path = path.to_path_buf();
        move |source| Self::Io { path, op, source }
    }
}

fn seq_suffix(seq: Option<u64>) -> String {
    seq.map(|s| format!(" (seq {s})")).unwrap_or_default()
}
