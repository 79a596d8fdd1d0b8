//! Tenant networks in Kubernetes mode, against a scripted API server and a real etcd: the
//! network pass assigns a VM's addresses, the VM reconcile places it with them and reports
//! them in `status.interfaces`, the host gets its network and firewall records, Network and
//! SecurityGroup statuses are written with server-side apply, and a Network's deletion waits
//! for the VMs that use it.
#![allow(clippy::unwrap_used)]

// Shared with kube_mock.rs, which uses all of it.
#[allow(dead_code)]
#[path = "kube_mock/steps.rs"]
mod steps;
mod support;

use http::{Method, StatusCode};
use kube::runtime::controller::Action;
use serde_json::{Value, json};
use std::net::Ipv4Addr;
use std::sync::Arc;
use steps::{UID, condition, expect_status_apply, finish, setup, spawn_reconcile};
use support::apiserver::{MockApiServer, assert_status_apply, event_reasons};
use support::{NAMESPACE, vm, with_finalizer};
use yun_controller::kube_source::{
    Ctx, IN_USE_FINALIZER, KubeSourceError, NET_STATUS_REQUEUE, NetObject, reconcile_net_object,
    refresh_networks,
};
use yun_crds::{Network, SecurityGroup, VirtualMachine};

const NETS: &str = "/apis/yun.dev/v1alpha1/namespaces/default/networks";
const GROUPS: &str = "/apis/yun.dev/v1alpha1/namespaces/default/securitygroups";

fn network(name: &str, cidr: &str, vni: u32, created_minute: u32) -> Network {
    serde_json::from_value(json!({
        "apiVersion": "yun.dev/v1alpha1", "kind": "Network",
        "metadata": {"name": name, "namespace": NAMESPACE, "uid": format!("net-{name}"),
                     "generation": 1, "resourceVersion": "7",
                     "finalizers": [IN_USE_FINALIZER],
                     "creationTimestamp": format!("2025-01-01T00:{created_minute:02}:00Z")},
        "spec": {"vxlan": {"vni": vni}, "cidr": cidr},
    }))
    .unwrap()
}

fn group() -> SecurityGroup {
    serde_json::from_value(json!({
        "apiVersion": "yun.dev/v1alpha1", "kind": "SecurityGroup",
        "metadata": {"name": "web", "namespace": NAMESPACE, "uid": "sg-web",
                     "generation": 2, "resourceVersion": "8",
                     "finalizers": [IN_USE_FINALIZER]},
        "spec": {"ingress": [{"protocol": "tcp", "ports": [{"port": 80}]}], "egress": [{}]},
    }))
    .unwrap()
}

/// The test VM (placed on h1: h2 is cordoned) on network `a` in group `web`.
fn web_vm() -> VirtualMachine {
    let mut v = with_finalizer(vm("web", UID, 1, 256));
    v.spec.networks = serde_json::from_value(json!([{"network": "a"}])).unwrap();
    v.spec.security_groups = vec!["web".into()];
    v
}

fn arc<T: Clone>(v: &[T]) -> Vec<Arc<T>> {
    v.iter().cloned().map(Arc::new).collect()
}

async fn pass(ctx: &Ctx, nets: &[Network], groups: &[SecurityGroup], vms: &[VirtualMachine]) {
    refresh_networks(ctx, &arc(nets), &arc(groups), &arc(vms), true)
        .await
        .unwrap();
}

/// Reconciles `obj`, expects one status apply at `path` (answered with the object) and returns
/// the status written and the action.
async fn status_of<K: NetObject>(
    server: &mut MockApiServer,
    ctx: &Arc<Ctx>,
    obj: &K,
    path: &str,
) -> (Value, Result<Action, KubeSourceError>) {
    let task = tokio::spawn(reconcile_net_object(Arc::new(obj.clone()), ctx.clone()));
    let req = server.next().await;
    assert_status_apply(&req, path, &K::kind(&()));
    let status = req.body["status"].clone();
    let mut answer = serde_json::to_value(obj).unwrap();
    answer["status"] = status.clone();
    req.respond(StatusCode::OK, &answer);
    (status, finish_any(server, task).await)
}

async fn finish_any(
    server: &mut MockApiServer,
    task: tokio::task::JoinHandle<Result<Action, KubeSourceError>>,
) -> Result<Action, KubeSourceError> {
    server.finish(task).await.unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_vm_on_a_network_gets_its_address_and_its_host_its_records() {
    let (fleet, mut server, ctx, _registry) = setup().await;
    let net_a = network("a", "10.0.0.0/24", 100, 0);
    // Newer and overlapping a: refused, a keeps working.
    let net_b = network("b", "10.0.0.128/25", 101, 5);
    let sg = group();
    let vm = web_vm();

    // 1. Before any pass: Pending, NetworkNotReady, nothing placed.
    let task = spawn_reconcile(&vm, &ctx);
    let waiting = expect_status_apply(server.next().await, vm.clone());
    finish(&mut server, task).await.unwrap();
    let st = serde_json::to_value(waiting.status.as_ref().unwrap()).unwrap();
    assert_eq!(condition(&st, "Scheduled")["reason"], "NetworkNotReady");
    assert!(fleet.keys("/yun/v1/placements/").await.is_empty());
    assert_eq!(
        event_reasons(&server.take_events()),
        [("Warning".to_owned(), "NetworkNotReady".to_owned())]
    );

    // 2. A pass assigns .2; the VM is placed on h1 with it and reports it.
    let nets = [net_a.clone(), net_b.clone()];
    pass(
        &ctx,
        &nets,
        std::slice::from_ref(&sg),
        std::slice::from_ref(&waiting),
    )
    .await;
    let task = spawn_reconcile(&waiting, &ctx);
    let placed = expect_status_apply(server.next().await, waiting.clone());
    finish(&mut server, task).await.unwrap();
    let st = placed.status.as_ref().unwrap();
    assert_eq!(st.host.as_deref(), Some("h1"));
    assert_eq!(st.interfaces.len(), 1);
    assert_eq!(
        (
            st.interfaces[0].network.as_str(),
            st.interfaces[0].ip.as_str()
        ),
        ("a", "10.0.0.2")
    );
    let (h1, _) = fleet.bus.host_view("h1").await.unwrap();
    let desired = &h1.desired[UID].value;
    assert_eq!(desired.nics[0].ip, Ipv4Addr::new(10, 0, 0, 2));
    assert_eq!(desired.nics[0].mac, st.interfaces[0].mac);
    assert_eq!(desired.security_groups, ["default/web"]);
    assert_eq!(
        event_reasons(&server.take_events()),
        [("Normal".to_owned(), "Scheduled".to_owned())]
    );

    // 3. The next pass publishes h1's records: network a only (b is refused), the group's
    // rules, and nothing for h2.
    pass(
        &ctx,
        &nets,
        std::slice::from_ref(&sg),
        std::slice::from_ref(&placed),
    )
    .await;
    let (h1, _) = fleet.bus.host_view("h1").await.unwrap();
    let networks = h1.net.networks.expect("h1's network record");
    let ids: Vec<&str> = networks.networks.iter().map(|n| n.id.as_str()).collect();
    assert_eq!(ids, ["default/a"]);
    let groups = h1.net.groups.expect("h1's group rules");
    assert!(groups.groups.contains_key("default/web"), "{groups:?}");
    assert!(
        fleet
            .keys("/yun/v1/hosts/h2/")
            .await
            .iter()
            .all(|k| k.ends_with("/info")),
        "h2 got records"
    );

    // 4. Statuses: a is Ready with one address allocated; b names a; the group resolved with
    // one member. A second reconcile with nothing changed writes nothing.
    let (st, action) = status_of(&mut server, &ctx, &net_a, &format!("{NETS}/a/status")).await;
    assert_eq!(action.unwrap(), Action::requeue(NET_STATUS_REQUEUE));
    assert_eq!(condition(&st, "Ready")["status"], "True");
    assert_eq!(condition(&st, "AddressesAvailable")["status"], "True");
    assert_eq!(
        (st["allocated"].as_u64(), st["observedGeneration"].as_i64()),
        (Some(1), Some(1))
    );
    let mut net_a_now = net_a.clone();
    net_a_now.status = serde_json::from_value(st).unwrap();
    let task = tokio::spawn(reconcile_net_object(
        Arc::new(net_a_now.clone()),
        ctx.clone(),
    ));
    finish_any(&mut server, task).await.unwrap();

    let (st, _) = status_of(&mut server, &ctx, &net_b, &format!("{NETS}/b/status")).await;
    let ready = condition(&st, "Ready");
    assert_eq!(
        (ready["status"].as_str(), ready["reason"].as_str()),
        (Some("False"), Some("CidrOverlap"))
    );
    assert!(
        ready["message"].as_str().unwrap().contains("default/a"),
        "{ready}"
    );

    let (st, _) = status_of(&mut server, &ctx, &sg, &format!("{GROUPS}/web/status")).await;
    assert_eq!(condition(&st, "RulesResolved")["status"], "True");
    assert_eq!(
        (st["members"].as_u64(), st["observedGeneration"].as_i64()),
        (Some(1), Some(2))
    );
    assert!(server.take_events().is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn deleting_a_network_waits_for_the_vms_on_it() {
    let (_fleet, mut server, ctx, _registry) = setup().await;
    let mut net_a = network("a", "10.0.0.0/24", 100, 0);
    net_a.metadata.deletion_timestamp = net_a.metadata.creation_timestamp.clone();
    let vm = web_vm();
    pass(&ctx, &[net_a.clone()], &[], &[vm]).await;

    // In use: the finalizer stays, the status says who holds it, one Warning Event.
    let (st, action) = status_of(&mut server, &ctx, &net_a, &format!("{NETS}/a/status")).await;
    assert!(matches!(action, Ok(a) if a != Action::await_change()));
    let blocked = condition(&st, "DeletionBlocked");
    assert_eq!(
        (blocked["status"].as_str(), blocked["reason"].as_str()),
        (Some("True"), Some("InUse"))
    );
    assert!(
        blocked["message"]
            .as_str()
            .unwrap()
            .ends_with("1 still do: web"),
        "{blocked}"
    );
    assert_eq!(
        event_reasons(&server.take_events()),
        [("Warning".to_owned(), "DeletionBlocked".to_owned())]
    );

    // The VM is gone: the finalizer is removed with a guarded JSON patch.
    pass(&ctx, &[net_a.clone()], &[], &[]).await;
    let task = tokio::spawn(reconcile_net_object(Arc::new(net_a.clone()), ctx.clone()));
    let req = server.next().await;
    assert_eq!(
        (&req.method, req.path.as_str()),
        (&Method::PATCH, format!("{NETS}/a").as_str())
    );
    assert_eq!(req.content_type, "application/json-patch+json");
    assert_eq!(
        req.body[1],
        json!({"op": "remove", "path": "/metadata/finalizers/0"})
    );
    let mut released = net_a.clone();
    released.metadata.finalizers = None;
    req.respond(StatusCode::OK, &released);
    assert_eq!(
        finish_any(&mut server, task).await.unwrap(),
        Action::await_change()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_vm_on_a_missing_network_says_so_and_is_not_placed() {
    let (fleet, mut server, ctx, _registry) = setup().await;
    let vm = web_vm();
    pass(&ctx, &[], &[group()], std::slice::from_ref(&vm)).await;
    let task = spawn_reconcile(&vm, &ctx);
    let out = expect_status_apply(server.next().await, vm.clone());
    finish(&mut server, task).await.unwrap();
    let st = serde_json::to_value(out.status.as_ref().unwrap()).unwrap();
    let scheduled = condition(&st, "Scheduled");
    assert_eq!(scheduled["reason"], "NetworkNotReady");
    assert!(
        scheduled["message"]
            .as_str()
            .unwrap()
            .contains("spec.networks[0]: Network default/a does not exist"),
        "{scheduled}"
    );
    assert!(fleet.keys("/yun/v1/placements/").await.is_empty());
}
