//! Shared pieces of the Kubernetes-source tests: the scripted API server, a real fleet bus, and
//! the objects the tests reconcile.
// Test helpers: a failed step is a failed test, so they unwrap (the workspace allows that in
// `#[test]` functions, not in helpers outside them).
#![allow(dead_code, clippy::unwrap_used)]

pub mod apiserver;
pub mod fleet;
pub mod keystone;
pub mod rbac;

use kube::runtime::reflector::{self, Store};
use kube::runtime::watcher;
use prometheus_client::registry::Registry;
use std::sync::Arc;
use yun_controller::fleet_ops::Fleet;
use yun_controller::kube_source::Ctx;
use yun_controller::metrics::ControllerMetrics;
use yun_crds::{
    DiskArtifact, DiskFormat, Host, HostSpec, VirtualMachine, VirtualMachineSpec, VmImage,
    VmImageSpec, Volume,
};
use yun_fleet_etcd::FleetBus;

pub const NAMESPACE: &str = "default";
pub const IMAGE: &str = "tiny";
pub const SHA256: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

pub fn image(name: &str, namespace: &str) -> VmImage {
    let mut image = VmImage::new(
        name,
        VmImageSpec {
            os: "test".into(),
            disk: DiskArtifact {
                source: "file:///var/lib/yun/tiny.qcow2".into(),
                format: DiskFormat::Qcow2,
                sha256: SHA256.into(),
            },
            kernel: None,
            initrd: None,
            cmdline: None,
        },
    );
    image.metadata.namespace = Some(namespace.into());
    image.metadata.uid = Some(format!("img-{name}"));
    image
}

pub fn host(name: &str, unschedulable: bool) -> Host {
    let mut host = Host::new(
        name,
        HostSpec {
            unschedulable,
            ..HostSpec::default()
        },
    );
    host.metadata.uid = Some(format!("host-{name}"));
    host
}

/// A VirtualMachine as the API server stores it: uid, generation, resourceVersion set.
pub fn vm(name: &str, uid: &str, cpu: u32, memory_mib: u64) -> VirtualMachine {
    let spec: VirtualMachineSpec = serde_json::from_value(
        serde_json::json!({"image": IMAGE, "cpu": cpu, "memoryMiB": memory_mib, "diskGiB": 2}),
    )
    .unwrap();
    let mut vm = VirtualMachine::new(name, spec);
    vm.metadata.namespace = Some(NAMESPACE.into());
    vm.metadata.uid = Some(uid.into());
    vm.metadata.generation = Some(1);
    vm.metadata.resource_version = Some("100".into());
    vm
}

pub fn with_finalizer(mut vm: VirtualMachine) -> VirtualMachine {
    vm.metadata.finalizers = Some(vec![yun_controller::kube_source::FINALIZER.into()]);
    vm
}

pub fn store_of<K>(objects: Vec<K>) -> Store<K>
where
    K: kube::Resource<DynamicType = ()> + Clone + 'static,
{
    let (store, mut writer) = reflector::store::<K>();
    writer.apply_watcher_event(&watcher::Event::Init);
    for o in objects {
        writer.apply_watcher_event(&watcher::Event::InitApply(o));
    }
    writer.apply_watcher_event(&watcher::Event::InitDone);
    store
}

/// The reconcile context with its caches filled as the watchers would fill them.
pub fn ctx(
    client: kube::Client,
    bus: FleetBus,
    images: Vec<VmImage>,
    hosts: Vec<Host>,
) -> (Arc<Ctx>, Registry) {
    ctx_with_volumes(client, bus, images, hosts, store_of(Vec::new()))
}

/// [`ctx`] with a Volume cache the test keeps writing to.
pub fn ctx_with_volumes(
    client: kube::Client,
    bus: FleetBus,
    images: Vec<VmImage>,
    hosts: Vec<Host>,
    volumes: Store<Volume>,
) -> (Arc<Ctx>, Registry) {
    let mut registry = Registry::default();
    let metrics = ControllerMetrics::new(&mut registry);
    let fleet = Fleet::start(bus, Some(metrics.clone()));
    (
        Arc::new(
            Ctx::new(client, fleet, metrics, store_of(images), store_of(hosts))
                .with_volumes(volumes),
        ),
        registry,
    )
}

/// The text exposition of `registry`.
pub fn exposition(registry: &Registry) -> String {
    let mut out = String::new();
    prometheus_client::encoding::text::encode(&mut out, registry).unwrap();
    out
}

/// The store's view of a kind named as in a manifest (`VirtualMachine`).
pub fn store_kind(kind: &str) -> yun_store::KindInfo {
    yun_crds::all_crds()
        .iter()
        .filter_map(yun_store::KindInfo::from_crd)
        .find(|k| k.kind == kind)
        .unwrap()
}

/// Bootstrap mode's object `kind` `ns`/`name` from the object store (`metadata`, `status`).
pub async fn stored(bus: &FleetBus, kind: &str, ns: &str, name: &str) -> Option<serde_json::Value> {
    yun_store::EtcdStore::new(bus.clone())
        .get_raw(
            &store_kind(kind),
            &yun_store::ObjectName::namespaced(ns, name),
        )
        .await
        .unwrap()
}

/// Every stored object of `kind`.
pub async fn stored_all(bus: &FleetBus, kind: &str) -> Vec<serde_json::Value> {
    yun_store::EtcdStore::new(bus.clone())
        .list_raw(&store_kind(kind), None)
        .await
        .unwrap()
        .items
}
