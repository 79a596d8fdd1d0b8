//! The one error type of the object store. Each variant says what a caller does about it,
//! as the API server's status codes do.

use thiserror::Error;

#[derive(Debug, Error)]
pub enum StoreError {
    /// 404: no such object.
    #[error("{kind} {name} not found")]
    NotFound { kind: String, name: String },
    /// 409 on create: the name is taken.
    #[error("{kind} {name} already exists")]
    AlreadyExists { kind: String, name: String },
    /// 409 on update: the object changed since it was read; read it again and retry.
    #[error(
        "{kind} {name} was modified (resourceVersion {expected} is not the current {current}); \
         read it again and retry"
    )]
    Conflict {
        kind: String,
        name: String,
        expected: String,
        current: String,
    },
    /// 422: the object is not acceptable; `field` names the part (empty: the whole object).
    #[error("{}{message}", if field.is_empty() { String::new() } else { format!("{field}: ") })]
    Invalid { field: String, message: String },
    /// 410: a watch started before the oldest revision etcd keeps; list again, then watch.
    #[error("resourceVersion {resource_version} is too old (compacted at {compacted}); list again")]
    Gone {
        resource_version: i64,
        compacted: i64,
    },
    /// A stored value is not an object of the expected shape.
    #[error("cannot decode {key}: {source}")]
    Decode {
        key: String,
        #[source]
        source: serde_json::Error,
    },
    /// etcd refused (no permission for the store's prefix) or did not answer.
    #[error("etcd {op} {key}: {source}")]
    Etcd {
        op: &'static str,
        key: String,
        #[source]
        source: etcd_client::Error,
    },
    /// Connecting, or a paged read, failed on the bus connection.
    #[error(transparent)]
    Bus(#[from] yun_fleet_etcd::BusError),
}

impl StoreError {
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> StoreError {
        StoreError::Invalid {
            field: field.into(),
            message: message.into(),
        }
    }

    pub(crate) fn etcd(
        op: &'static str,
        key: impl Into<String>,
    ) -> impl FnOnce(etcd_client::Error) -> StoreError {
        let key = key.into();
        move |source| StoreError::Etcd { op, key, source }
    }

    /// Whether re-reading and retrying can succeed (a conflict), as opposed to a refusal.
    pub fn is_conflict(&self) -> bool {
        matches!(self, StoreError::Conflict { .. })
    }

    pub fn is_not_found(&self) -> bool {
        matches!(self, StoreError::NotFound { .. })
    }
}
