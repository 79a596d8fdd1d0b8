//! The benchmark's objects: VirtualMachines shaped like a tenant's (networks, security groups,
//! a volume, scheduling, a few labels) with a status as the controller writes it, so list and
//! watch move realistic bytes (about 1.5 KiB each as stored), and loading them through the
//! store's own calls.

use std::future::Future;
use std::time::Instant;

use anyhow::Context;
use futures::{StreamExt, TryStreamExt};
use serde_json::{Value, json};
use yun_crds::VirtualMachine;
use yun_store::{EtcdStore, KindInfo, StoreError};

/// Objects are spread over this many namespaces (tenants): the list is of the whole kind.
const NAMESPACES: usize = 50;

pub fn kind() -> KindInfo {
    KindInfo::of::<VirtualMachine>()
}

/// Object `i`'s name; unique across namespaces, so the name alone identifies it in the watch.
pub fn name(i: usize) -> String {
    format!("vm-{i:06}")
}

fn namespace(i: usize) -> String {
    format!("tenant-{:02}", i % NAMESPACES)
}

/// Object `i` as a tenant declares it (no status, no server fields).
pub fn vm(i: usize) -> Value {
    let ns = namespace(i);
    let app = format!("app-{}", i % 97);
    let tier = ["web", "db", "cache"][i % 3];
    json!({
        "apiVersion": "yun.dev/v1alpha1",
        "kind": "VirtualMachine",
        "metadata": {
            "name": name(i),
            "namespace": ns,
            "labels": {"app": app, "tier": tier, "env": "prod"},
            "annotations": {"yun.dev/owner": format!("team-{}@example.com", i % 13)},
        },
        "spec": {
            "image": "ubuntu-24-04-server",
            "cpu": 1 << (i % 4),
            "memoryMiB": 1024 << (i % 4),
            "diskGiB": 40,
            "runStrategy": "Always",
            "nodeSelector": {"hw-class": "gen3"},
            "scheduling": {"qosClass": "Burstable", "antiAffinityGroup": app},
            "networks": [{"network": format!("{ns}-private")}, {"network": "storage"}],
            "securityGroups": ["default", format!("{app}-ingress")],
            "volumes": [{"volume": format!("data-{i:06}")}],
            "userData": "#cloud-config\npackage_update: true\npackages: [nginx]\n",
        },
    })
}

/// Object `i` with a spec change the original never has (memory above its largest size), so
/// every call with a new `change` makes one real write.
pub fn resized(i: usize, change: u64) -> Value {
    let mut obj = vm(i);
    obj["spec"]["memoryMiB"] = json!(8192 + 64 * (change + 1));
    obj
}

fn condition(type_: &str, reason: &str, message: &str) -> Value {
    json!({
        "type": type_, "status": "True", "reason": reason, "message": message,
        "lastTransitionTime": "2026-11-24T06:00:00Z", "observedGeneration": 1,
    })
}

/// The status the controller writes for a running VM (about 800 bytes).
fn status(i: usize) -> Value {
    let host = format!("node-{:05}", i % 2_000);
    let mac = |n: usize| format!("52:54:00:{:02x}:{:02x}:{n:02x}", (i >> 8) & 0xff, i & 0xff);
    json!({
        "phase": "Running",
        "host": host,
        "domainUUID": format!("6f1c2a4e-0000-4000-8000-{i:012}"),
        "startedAt": "2026-11-24T06:00:05Z",
        "observedGeneration": 1,
        "conditions": [
            condition("Scheduled", "Placed", &format!("placed on {host}")),
            condition("Running", "DomainRunning", "the domain is running"),
            condition("Ready", "Running", "running as desired"),
        ],
        "interfaces": [
            {"network": format!("{}-private", namespace(i)), "ip": format!("10.{}.{}.{}", i >> 16, (i >> 8) & 0xff, i & 0xff), "mac": mac(1)},
            {"network": "storage", "ip": format!("172.16.{}.{}", (i >> 8) & 0xff, i & 0xff), "mac": mac(2)},
        ],
    })
}

/// Object `i` carrying its status, for `replace_status_raw`.
fn with_status(i: usize) -> Value {
    let mut obj = vm(i);
    obj["status"] = status(i);
    obj
}

/// The generated object must be a valid typed VirtualMachine, or the typed list would measure
/// a decode error (and the bench would not be of objects the controller accepts).
pub fn check_shape() -> anyhow::Result<()> {
    let typed: VirtualMachine =
        serde_json::from_value(with_status(12_345)).context("the bench's VirtualMachine")?;
    typed
        .validate()
        .context("the bench's VirtualMachine is invalid")?;
    Ok(())
}

/// Rates of the load: creates and status writes per second.
#[derive(Debug)]
pub struct Loaded {
    pub create_per_s: f64,
    pub status_per_s: f64,
}

/// Stores `n` objects as a controller would: `create_raw`, then the status subresource, each
/// `concurrency` calls at a time (one call per object, nothing batched behind the store's back).
pub async fn load(store: &EtcdStore, n: usize, concurrency: usize) -> anyhow::Result<Loaded> {
    let kind = kind();
    let create_per_s = run_all(n, concurrency, |i| {
        let (store, kind) = (store, &kind);
        async move { store.create_raw(kind, &vm(i)).await.map(drop) }
    })
    .await
    .context("creating the objects")?;
    let status_per_s = run_all(n, concurrency, |i| {
        let (store, kind) = (store, &kind);
        async move {
            store
                .replace_status_raw(kind, &with_status(i))
                .await
                .map(drop)
        }
    })
    .await
    .context("writing their status")?;
    Ok(Loaded {
        create_per_s,
        status_per_s,
    })
}

/// Runs `call(0..n)` with at most `concurrency` in flight; calls per second.
async fn run_all<F, Fut>(n: usize, concurrency: usize, call: F) -> Result<f64, StoreError>
where
    F: Fn(usize) -> Fut,
    Fut: Future<Output = Result<(), StoreError>>,
{
    let started = Instant::now();
    futures::stream::iter(0..n)
        .map(call)
        .buffer_unordered(concurrency)
        .try_collect::<()>()
        .await?;
    Ok(n as f64 / started.elapsed().as_secs_f64())
}
