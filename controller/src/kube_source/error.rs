//! Errors of the Kubernetes source.

use crate::fleet_ops::FleetError;
use kube::runtime::finalizer;
use std::time::Duration;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum KubeSourceError {
    /// The API server always sets a uid; without one the object cannot be keyed on the fleet
    /// bus.
    #[error("{kind} {namespace}/{name} has no metadata.uid")]
    MissingUid {
        kind: &'static str,
        namespace: String,
        name: String,
    },
    #[error("VirtualMachine {namespace}/{name}: {source}")]
    Fleet {
        namespace: String,
        name: String,
        #[source]
        source: FleetError,
    },
    /// A fleet-bus read or write of a non-VM object (a Volume's claim) failed.
    #[error("{kind} {namespace}/{name}: fleet bus: {source}")]
    Bus {
        kind: &'static str,
        namespace: String,
        name: String,
        #[source]
        source: Box<yun_fleet_etcd::BusError>,
    },
    /// A device's delivered credential could not be read or written (its Secret).
    #[error("DeviceIdentity {namespace}/{name}: {source}")]
    Delivery {
        namespace: String,
        name: String,
        #[source]
        source: Box<crate::devices::delivery::DeliveryError>,
    },
    #[error("writing the status of {kind} {namespace}/{name}: {source}")]
    StatusWrite {
        kind: &'static str,
        namespace: String,
        name: String,
        #[source]
        source: Box<kube::Error>,
    },
    /// Adding or removing the finalizer failed (e.g. a conflicting write): retried.
    #[error("finalizer {finalizer} of {kind} {namespace}/{name}: {source}")]
    Finalizer {
        kind: &'static str,
        finalizer: &'static str,
        namespace: String,
        name: String,
        #[source]
        source: Box<finalizer::Error<KubeSourceError>>,
    },
    /// Cleanup is under way but not finished. Returned from the finalizer's cleanup branch so
    /// that the finalizer stays; `reconcile` turns it into a plain requeue, never an error.
    #[error("cleanup in progress; looking again in {requeue:?}")]
    CleanupPending { requeue: Duration },
    #[error("the API server does not serve {kind} (is the CRD installed and readable?): {source}")]
    ApiUnavailable {
        kind: String,
        #[source]
        source: kube::Error,
    },
}
