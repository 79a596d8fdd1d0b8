//! What every reconcile shares: the API client, the fleet bus, the caches of images and hosts,
//! the latest network pass, the Volume cache and CHAP Secrets, the event recorder and
//! per-object error backoff.

use super::chap_secrets::ChapSecrets;
use crate::devices::{DEFAULT_DEVICES_DIR, DeviceConfig, Devices};
use crate::fleet_index::HostIntent;
use crate::fleet_ops::Fleet;
use crate::metrics::ControllerMetrics;
use crate::network::snapshot::NetHandle;
use crate::sched_map::intent_of;
use kube::api::DynamicObject;
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::{Client, Resource, ResourceExt};
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;
use yun_crds::{Host, VmImage, Volume};

/// Field manager of every status the controller writes (server-side apply).
pub const FIELD_MANAGER: &str = "yun-controller";
pub use crate::object::{IN_USE_FINALIZER, VM_FINALIZER as FINALIZER};
/// `reportingController` of the controller's Events.
pub const REPORTER: &str = "yun-controller";

/// First retry after a failed reconcile; doubles per consecutive failure of the same object.
const ERROR_BACKOFF_BASE: Duration = Duration::from_secs(5);
const ERROR_BACKOFF_MAX: Duration = Duration::from_secs(300);

pub struct Ctx {
    pub(crate) client: Client,
    pub(crate) fleet: Fleet,
    pub(crate) metrics: ControllerMetrics,
    images: Store<VmImage>,
    hosts: Store<Host>,
    volumes: Store<Volume>,
    /// CHAP credentials read from Secrets (see [`super::chap_secrets`]).
    pub(crate) chap: ChapSecrets,
    pub(crate) recorder: Recorder,
    /// The latest network pass (see [`super::net_task`]).
    pub(crate) nets: NetHandle,
    /// DeviceIdentity configuration and the device view's directory.
    pub(crate) devices: Devices,
    /// Consecutive failures per object (of any kind), for the error backoff; cleared by a
    /// success.
    failures: Mutex<HashMap<ObjectRef<DynamicObject>, u32>>,
}

impl std::fmt::Debug for Ctx {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ctx")
            .field("fleet", &self.fleet)
            .field("images", &self.images.len())
            .field("hosts", &self.hosts.len())
            .field("volumes", &self.volumes.len())
            .finish_non_exhaustive()
    }
}

impl Ctx {
    /// `images` and `hosts` are reflector stores (filled by watchers in [`super::run`]; tests
    /// fill them by hand).
    pub fn new(
        client: Client,
        fleet: Fleet,
        metrics: ControllerMetrics,
        images: Store<VmImage>,
        hosts: Store<Host>,
    ) -> Ctx {
        let reporter = Reporter {
            controller: REPORTER.into(),
            instance: std::env::var("POD_NAME").ok(),
        };
        Ctx {
            recorder: Recorder::new(client.clone(), reporter),
            client,
            fleet,
            metrics,
            images,
            hosts,
            volumes: reflector::store::<Volume>().0,
            chap: ChapSecrets::default(),
            nets: NetHandle::default(),
            devices: Devices::new(DeviceConfig::new(DEFAULT_DEVICES_DIR.into())),
            failures: Mutex::new(HashMap::new()),
        }
    }

    /// Sets the Volume cache (filled by the Volume controller's watch; tests fill it by hand).
    /// Without it every Volume a VM names is reported missing.
    pub fn with_volumes(mut self, volumes: Store<Volume>) -> Ctx {
        self.volumes = volumes;
        self
    }

    /// Sets the DeviceIdentity configuration and the directory the device view serves
    /// (without it devices get the defaults and nobody reads the directory).
    pub fn with_devices(mut self, devices: Devices) -> Ctx {
        self.devices = devices;
        self
    }

    /// The Volume `namespace/name`, from the cache.
    pub(crate) fn volume(&self, namespace: &str, name: &str) -> Option<Arc<Volume>> {
        self.volumes.get(&ObjectRef::new(name).within(namespace))
    }

    /// The VmImages of `namespace`, from the cache.
    pub(crate) fn images_in(&self, namespace: &str) -> Vec<Arc<VmImage>> {
        self.images
            .state_filter(|i| i.metadata.namespace.as_deref() == Some(namespace))
    }

    /// Operator intent (cordon, maintenance, overcommit) of every Host that sets any, from the
    /// cache.
    pub(crate) fn host_intents(&self) -> BTreeMap<String, HostIntent> {
        self.hosts
            .state()
            .iter()
            .map(|h| (h.name_any(), intent_of(&h.spec)))
            .filter(|(_, i)| *i != HostIntent::default())
            .collect()
    }

    /// Records one more failure of `obj` and returns how long to wait before retrying.
    pub(crate) fn next_backoff<K: Resource<DynamicType = ()>>(
        &self,
        obj: ObjectRef<K>,
    ) -> Duration {
        let mut failures = self.failures.lock().unwrap_or_else(PoisonError::into_inner);
        let n = failures.entry(obj.erase()).or_insert(0);
        let delay = error_backoff(*n);
        *n = n.saturating_add(1);
        delay
    }

    pub(crate) fn clear_backoff<K: Resource<DynamicType = ()>>(&self, obj: &ObjectRef<K>) {
        self.failures
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&obj.clone().erase());
    }
}

/// Wait after `previous` consecutive failures: 5 s, 10 s, 20 s … capped at 5 min.
fn error_backoff(previous: u32) -> Duration {
    ERROR_BACKOFF_BASE
        .saturating_mul(1u32 << previous.min(16))
        .min(ERROR_BACKOFF_MAX)
}

/// Now, RFC 3339 to the second (as Kubernetes writes times).
pub(crate) fn now_rfc3339() -> String {
    let now = jiff::Timestamp::now();
    jiff::Timestamp::from_second(now.as_second())
        .unwrap_or(now)
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_backoff_doubles_up_to_a_cap() {
        let secs: Vec<u64> = (0..8).map(|n| error_backoff(n).as_secs()).collect();
        assert_eq!(secs, [5, 10, 20, 40, 80, 160, 300, 300]);
        assert_eq!(error_backoff(u32::MAX), ERROR_BACKOFF_MAX);
    }

    #[test]
    fn now_has_no_fraction() {
        let t = now_rfc3339();
        assert!(t.ends_with('Z') && !t.contains('.'), "{t}");
        assert!(t.parse::<jiff::Timestamp>().is_ok(), "{t}");
    }
}
