//! Host objects kept in step with the fleet bus: one sync (`sync_hosts_once`) against a
//! scripted API server (kube-rs's tower-test mock) and a real etcd where hosts register the way
//! agents do. Every request the sync sends is asserted.
// The helpers below are test steps: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

mod support;

use http::{Method, StatusCode};
use prometheus_client::registry::Registry;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::sync::Arc;
use support::apiserver::{Captured, MockApiServer, assert_status_apply};
use support::exposition;
use support::fleet::{TestFleet, start_fleet};
use yun_controller::fleet_ops::{Fleet, PlaceResult, request_for};
use yun_controller::kube_source::{HostSyncSummary, sync_hosts_once};
use yun_controller::metrics::ControllerMetrics;
use yun_crds::condition::{READY, SCHEDULABLE};
use yun_crds::{
    Condition, ConditionStatus, Host, HostResources, HostSpec, HostStatus, set_condition,
};
use yun_fleet::{
    Artifact, DiskFormat, HostInfo, ImageSpec, Resources, RunStrategy, SCHEMA_VERSION, Scheduling,
    VmDesired,
};
use yun_fleet_etcd::HostLease;

const HOSTS_PATH: &str = "/apis/yun.dev/v1alpha1/hosts";
const H1_STATUS_PATH: &str = "/apis/yun.dev/v1alpha1/hosts/h1/status";
const T0: &str = "2025-01-01T00:00:00Z";
const T10: &str = "2025-01-01T00:00:10Z";
const T30: &str = "2025-01-01T00:00:30Z";

/// Registers `h1` (16 CPUs, 32 GiB, label zone=a) the way its agent does and places one VM of
/// 2 CPUs / 1 GiB / 10 GiB on it.
async fn registered_h1_with_a_vm(fleet: &TestFleet) -> HostLease {
    let lease = fleet.bus.grant_lease(60).await.unwrap();
    let info = HostInfo {
        v: SCHEMA_VERSION,
        name: "h1".into(),
        cpus: 16,
        memory_mib: 32768,
        disk_gib: 500,
        labels: BTreeMap::from([("zone".to_owned(), "a".to_owned())]),
        agent_version: "0.3.0".into(),
        virt_type: "qemu".into(),
        started_at: T0.into(),
        tunnel_ip: None,
        seal_key: None,
        metrics_address: None,
    };
    fleet.bus.put_host_info(&info, &lease).await.unwrap();
    let vm = VmDesired {
        v: SCHEMA_VERSION,
        uid: "6f1c2a3b-0000-4000-8000-000000000001".into(),
        namespace: "default".into(),
        name: "web".into(),
        generation: 1,
        resources: Resources {
            cpus: 2,
            memory_mib: 1024,
            disk_gib: 10,
        },
        image: ImageSpec {
            name: "default/tiny".into(),
            disk: Artifact {
                source: "file:///var/lib/yun/tiny.qcow2".into(),
                sha256: support::SHA256.into(),
            },
            format: DiskFormat::Qcow2,
            kernel: None,
            initrd: None,
            cmdline: None,
        },
        hostname: "web".into(),
        user_data: None,
        run_strategy: RunStrategy::Always,
        nics: Vec::new(),
        security_groups: Vec::new(),
        volumes: Vec::new(),
        hold: None,
        identity: None,
    };
    let request = request_for(&vm, &BTreeMap::new(), Scheduling::default());
    let placed = Fleet::start(fleet.bus.clone(), None)
        .place(&vm, request)
        .await
        .unwrap();
    assert_eq!(placed, PlaceResult::Placed { host: "h1".into() });
    lease
}

/// The status of h1 as the controller wrote it while h1 was ready, last seen at `last_seen`.
fn ready_h1_status(last_seen: &str) -> HostStatus {
    let mut st = HostStatus {
        ready: true,
        capacity: Some(HostResources {
            cpus: 16,
            memory_mib: 32768,
            disk_gib: 500,
        }),
        allocated: Some(HostResources {
            cpus: 2,
            memory_mib: 1024,
            disk_gib: 10,
        }),
        vms: 1,
        agent_version: Some("0.3.0".into()),
        virt_type: Some("qemu".into()),
        last_seen: Some(last_seen.into()),
        conditions: Vec::new(),
    };
    set_condition(
        &mut st.conditions,
        Condition::new(
            READY,
            ConditionStatus::True,
            "AgentReporting",
            "agent 0.3.0 holds its lease (virt type qemu)",
        ),
        last_seen,
    );
    set_condition(
        &mut st.conditions,
        Condition::new(
            SCHEDULABLE,
            ConditionStatus::True,
            "AcceptingVMs",
            "new VMs may be placed here while the host is Ready",
        ),
        last_seen,
    );
    st
}

/// A Host object as the API server stores it.
fn host_object(name: &str, status: Option<HostStatus>) -> Arc<Host> {
    let mut host = Host::new(name, HostSpec::default());
    host.metadata.uid = Some(format!("host-{name}"));
    host.metadata.resource_version = Some("42".into());
    host.status = status;
    Arc::new(host)
}

fn metrics() -> (ControllerMetrics, Registry) {
    let mut registry = Registry::default();
    (ControllerMetrics::new(&mut registry), registry)
}

fn spawn_sync(
    fleet: &TestFleet,
    client: &kube::Client,
    objects: Vec<Arc<Host>>,
    metrics: &ControllerMetrics,
    now: &'static str,
) -> tokio::task::JoinHandle<HostSyncSummary> {
    let (client, bus, metrics) = (client.clone(), fleet.bus.clone(), metrics.clone());
    tokio::spawn(async move {
        sync_hosts_once(&client, &bus, &objects, &metrics, now)
            .await
            .unwrap()
    })
}

/// Asserts `req` is this controller's server-side apply of h1's status; answers it and returns
/// the status sent.
fn expect_h1_status_apply(req: Captured) -> Value {
    assert_status_apply(&req, H1_STATUS_PATH, "Host");
    let status = req.body["status"].clone();
    let mut answer = serde_json::to_value(host_object("h1", None).as_ref()).unwrap();
    answer["status"] = status.clone();
    req.respond(StatusCode::OK, &answer);
    status
}

fn ready_condition(status: &Value) -> &Value {
    status["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == READY)
        .unwrap()
}

fn summary(created: &[&str], written: &[&str], failed: &[&str]) -> HostSyncSummary {
    let names = |n: &[&str]| n.iter().map(|s| (*s).to_owned()).collect();
    HostSyncSummary {
        created: names(created),
        status_written: names(written),
        failed: names(failed),
    }
}

#[tokio::test]
async fn registered_host_without_object_is_created_with_its_labels_then_given_status() {
    let fleet = start_fleet(&[]).await;
    let _lease = registered_h1_with_a_vm(&fleet).await;
    let (client, mut server) = MockApiServer::start();
    let (metrics, registry) = metrics();

    let task = spawn_sync(&fleet, &client, Vec::new(), &metrics, T0);
    let req = server.next().await;
    assert_eq!(
        (&req.method, req.path.as_str()),
        (&Method::POST, HOSTS_PATH)
    );
    assert_eq!(req.body["kind"], "Host");
    assert_eq!(req.body["metadata"]["name"], "h1");
    assert_eq!(req.body["metadata"]["labels"], json!({"zone": "a"}));
    assert_eq!(req.body["spec"]["unschedulable"], false);
    assert!(req.body["spec"].get("bmc").is_none(), "{}", req.body);
    assert!(req.body.get("status").is_none(), "{}", req.body);
    let mut created = req.body.clone();
    created["metadata"]["uid"] = json!("host-h1");
    created["metadata"]["resourceVersion"] = json!("1");
    req.respond(StatusCode::CREATED, &created);

    let st = expect_h1_status_apply(server.next().await);
    assert_eq!(
        server.finish(task).await.unwrap(),
        summary(&["h1"], &["h1"], &[])
    );
    assert_eq!(st["ready"], true);
    assert_eq!(
        st["capacity"],
        json!({"cpus": 16, "memoryMiB": 32768, "diskGiB": 500})
    );
    assert_eq!(
        st["allocated"],
        json!({"cpus": 2, "memoryMiB": 1024, "diskGiB": 10})
    );
    assert_eq!(st["vms"], 1);
    assert_eq!(
        (st["agentVersion"].as_str(), st["virtType"].as_str()),
        (Some("0.3.0"), Some("qemu"))
    );
    assert_eq!(st["lastSeen"], T0);
    let ready = ready_condition(&st);
    assert_eq!(
        (
            ready["status"].as_str(),
            ready["reason"].as_str(),
            ready["lastTransitionTime"].as_str()
        ),
        (Some("True"), Some("AgentReporting"), Some(T0))
    );
    // What was sent is exactly what a status that is already current looks like.
    assert_eq!(st, serde_json::to_value(ready_h1_status(T0)).unwrap());
    assert!(
        exposition(&registry)
            .contains(r#"yun_controller_reconciles_total{kind="Host",result="ok"} 1"#),
        "{}",
        exposition(&registry)
    );
}

#[tokio::test]
async fn host_whose_status_is_current_is_not_written() {
    let fleet = start_fleet(&[]).await;
    let _lease = registered_h1_with_a_vm(&fleet).await;
    let (client, mut server) = MockApiServer::start();
    let (metrics, registry) = metrics();

    // Written 10 s ago: lastSeen is not due yet and nothing else changed.
    let objects = vec![host_object("h1", Some(ready_h1_status(T0)))];
    let task = spawn_sync(&fleet, &client, objects, &metrics, T10);
    // `finish` fails the test on any request.
    assert_eq!(server.finish(task).await.unwrap(), summary(&[], &[], &[]));
    assert!(
        exposition(&registry)
            .contains(r#"yun_controller_reconciles_total{kind="Host",result="ok"} 1"#)
    );
}

#[tokio::test]
async fn expired_lease_marks_the_host_not_ready_keeping_last_seen() {
    let fleet = start_fleet(&[]).await;
    let lease = registered_h1_with_a_vm(&fleet).await;
    fleet.bus.revoke_lease(lease.id()).await.unwrap();
    assert!(fleet.bus.host_info("h1").await.unwrap().is_none());
    let (client, mut server) = MockApiServer::start();
    let (metrics, _registry) = metrics();

    let objects = vec![host_object("h1", Some(ready_h1_status(T0)))];
    let task = spawn_sync(&fleet, &client, objects, &metrics, T30);
    let st = expect_h1_status_apply(server.next().await);
    assert_eq!(
        server.finish(task).await.unwrap(),
        summary(&[], &["h1"], &[])
    );
    assert_eq!(st["ready"], false);
    assert_eq!(st["lastSeen"], T0);
    // What the host last reported stays; its VM is still allocated there.
    assert_eq!(st["capacity"]["cpus"], 16);
    assert_eq!(st["agentVersion"], "0.3.0");
    assert_eq!(
        (st["vms"].as_u64(), st["allocated"]["cpus"].as_u64()),
        (Some(1), Some(2))
    );
    let ready = ready_condition(&st);
    assert_eq!(
        (
            ready["status"].as_str(),
            ready["reason"].as_str(),
            ready["message"].as_str(),
            ready["lastTransitionTime"].as_str()
        ),
        (
            Some("False"),
            Some("LeaseExpired"),
            Some("host's agent lease expired; its VMs are left as they are"),
            Some(T30)
        )
    );
}

#[tokio::test]
async fn host_in_maintenance_reports_the_drain_with_the_vms_that_remain() {
    let fleet = start_fleet(&[]).await;
    let _lease = registered_h1_with_a_vm(&fleet).await;
    let (client, mut server) = MockApiServer::start();
    let (metrics, _registry) = metrics();

    let mut host = (*host_object("h1", Some(ready_h1_status(T0)))).clone();
    host.spec.maintenance = true;
    let task = spawn_sync(&fleet, &client, vec![Arc::new(host)], &metrics, T10);
    let st = expect_h1_status_apply(server.next().await);
    assert_eq!(
        server.finish(task).await.unwrap(),
        summary(&[], &["h1"], &[])
    );
    // Still Ready (the agent is fine); not schedulable, with the one VM that has yet to go.
    assert_eq!(ready_condition(&st)["status"], "True");
    let schedulable = st["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == SCHEDULABLE)
        .unwrap();
    assert_eq!(
        (
            schedulable["status"].as_str(),
            schedulable["reason"].as_str(),
            schedulable["lastTransitionTime"].as_str()
        ),
        (Some("False"), Some("Draining"), Some(T10))
    );
    let message = schedulable["message"].as_str().unwrap();
    assert!(message.contains("1 VM remains"), "{message}");
}

#[tokio::test]
async fn host_object_nothing_registered_for_is_never_registered_and_kept() {
    let fleet = start_fleet(&[]).await;
    let (client, mut server) = MockApiServer::start();
    let (metrics, _registry) = metrics();

    let task = spawn_sync(&fleet, &client, vec![host_object("h1", None)], &metrics, T0);
    let st = expect_h1_status_apply(server.next().await);
    // No DELETE: `finish` fails the test on any further request.
    assert_eq!(
        server.finish(task).await.unwrap(),
        summary(&[], &["h1"], &[])
    );
    assert_eq!(st["ready"], false);
    assert!(
        st.get("lastSeen").is_none() && st.get("capacity").is_none(),
        "{st}"
    );
    let ready = ready_condition(&st);
    assert_eq!(
        (ready["status"].as_str(), ready["reason"].as_str()),
        (Some("False"), Some("NeverRegistered"))
    );
}

#[tokio::test]
async fn object_created_meanwhile_is_fine_and_a_failed_create_is_counted() {
    let fleet = start_fleet(&[]).await;
    let _lease = registered_h1_with_a_vm(&fleet).await;
    let (client, mut server) = MockApiServer::start();
    let (metrics, registry) = metrics();

    // Created since the cache was read: no error, and no status write without the object.
    let task = spawn_sync(&fleet, &client, Vec::new(), &metrics, T0);
    let req = server.next().await;
    assert_eq!(
        (&req.method, req.path.as_str()),
        (&Method::POST, HOSTS_PATH)
    );
    req.fail(409, "AlreadyExists", r#"hosts.yun.dev "h1" already exists"#);
    assert_eq!(server.finish(task).await.unwrap(), summary(&[], &[], &[]));

    // Any other failure: listed, counted, and the sync still returns.
    let task = spawn_sync(&fleet, &client, Vec::new(), &metrics, T0);
    let req = server.next().await;
    assert_eq!(
        (&req.method, req.path.as_str()),
        (&Method::POST, HOSTS_PATH)
    );
    req.fail(403, "Forbidden", "hosts.yun.dev is forbidden");
    assert_eq!(
        server.finish(task).await.unwrap(),
        summary(&[], &[], &["h1"])
    );
    let text = exposition(&registry);
    assert!(
        text.contains(r#"yun_controller_reconciles_total{kind="Host",result="ok"} 1"#)
            && text.contains(r#"yun_controller_reconciles_total{kind="Host",result="error"} 1"#),
        "{text}"
    );
}
