use thiserror::Error;
use yun_fleet::{CodecError, KeyError};

/// Errors of the fleet-bus adapter. Each names the operation and the key involved.
#[derive(Debug, Error)]
pub enum BusError {
    #[error("etcd {op} on {key} failed: {source}")]
    Etcd {
        op: &'static str,
        key: String,
        source: etcd_client::Error,
    },
    /// etcd refused the operation for this client's user (the CN of its certificate): its role
    /// does not grant the key. Not retried into success: the key or the role is wrong.
    #[error(
        "etcd {op} on {key}: permission denied (the etcd user of this client's certificate has no role granting it; see docs/ops/fleet-bus-security.md)"
    )]
    PermissionDenied { op: &'static str, key: String },
    #[error(transparent)]
    Tls(#[from] crate::tls::TlsError),
    #[error(transparent)]
    Codec(#[from] CodecError),
    #[error(transparent)]
    Key(#[from] KeyError),
    #[error(
        "watch on {prefix} lost history: revision {requested} was compacted (oldest is {compacted}); relist"
    )]
    Compacted {
        prefix: String,
        requested: i64,
        compacted: i64,
    },
    #[error("watch on {prefix} was closed by etcd: {reason}")]
    WatchClosed { prefix: String, reason: String },
    #[error("etcd {op} on {key} got no answer within {ms} ms")]
    Timeout {
        op: &'static str,
        key: String,
        ms: u64,
    },
    #[error("lease {id:x} has expired")]
    LeaseExpired { id: i64 },
    #[error("placement batch refused: {reason}")]
    BatchNotDisjoint { reason: String },
    #[error("key {key} is not valid UTF-8")]
    BadKey { key: String },
}

impl BusError {
    pub(crate) fn etcd(
        op: &'static str,
        key: impl Into<String>,
    ) -> impl FnOnce(etcd_client::Error) -> BusError {
        let key = key.into();
        move |source| match &source {
            etcd_client::Error::GRpcStatus(status)
                if status.code() == tonic::Code::PermissionDenied =>
            {
                BusError::PermissionDenied { op, key }
            }
            _ => BusError::Etcd { op, key, source },
        }
    }

    /// True when etcd refused the operation for this client's user (see [`BusError::PermissionDenied`]).
    pub fn is_permission_denied(&self) -> bool {
        matches!(self, BusError::PermissionDenied { .. })
    }

    /// True when the error means etcd could not be reached (as opposed to bad data): callers
    /// back off and retry, and keep what runs on the host untouched.
    pub fn is_unavailable(&self) -> bool {
        matches!(
            self,
            BusError::Etcd { .. } | BusError::WatchClosed { .. } | BusError::Timeout { .. }
        )
    }
}
