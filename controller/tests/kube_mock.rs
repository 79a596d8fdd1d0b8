//! The Kubernetes source against a scripted API server (kube-rs's tower-test mock) and a real
//! etcd fleet bus: every request the reconciler sends is asserted, every fleet-bus effect is
//! read back from etcd.
// The helpers below are test steps: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

// The crate root resolves `mod x;` next to itself; these live in kube_mock/.
#[path = "kube_mock/run.rs"]
mod run;
#[path = "kube_mock/steps.rs"]
mod steps;
mod support;

use http::{Method, StatusCode};
use kube::runtime::controller::Action;
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;
use steps::{
    STATUS_PATH, UID, VM_PATH, condition, expect_status_apply, finish, setup, spawn_reconcile,
    status_json,
};
use support::apiserver::{MockApiServer, event_reasons};
use support::fleet::start_fleet;
use support::{IMAGE, NAMESPACE, ctx, exposition, host, image, vm, with_finalizer};
use yun_controller::kube_source::{FINALIZER, KubeSourceError, error_policy};
use yun_fleet::VmPhase;

#[tokio::test]
async fn create_places_on_the_fleet_bus_and_reports_status_then_running() {
    let (fleet, mut server, ctx, registry) = setup().await;
    let fresh = vm("web", UID, 2, 512);

    // 1. No finalizer yet: the only effect is adding it; nothing is placed before it is held.
    let task = spawn_reconcile(&fresh, &ctx);
    let req = server.next().await;
    assert_eq!((&req.method, req.path.as_str()), (&Method::PATCH, VM_PATH));
    assert_eq!(req.content_type, "application/json-patch+json");
    assert_eq!(
        req.body,
        json!([
            {"op": "test", "path": "/metadata/finalizers", "value": null},
            {"op": "add", "path": "/metadata/finalizers", "value": [FINALIZER]},
        ])
    );
    let held = with_finalizer(fresh);
    req.respond(StatusCode::OK, &held);
    assert_eq!(
        finish(&mut server, task).await.unwrap(),
        Action::await_change()
    );
    assert!(fleet.keys("/yun/v1/placements/").await.is_empty());

    // 2. With the finalizer: placed on h1 (h2 is cordoned), status written once.
    let task = spawn_reconcile(&held, &ctx);
    let placed = expect_status_apply(server.next().await, held.clone());
    assert_eq!(
        finish(&mut server, task).await.unwrap(),
        Action::requeue(Duration::from_secs(2))
    );
    let st = status_json(&placed);
    assert_eq!(
        (st["phase"].as_str(), st["host"].as_str()),
        (Some("Pending"), Some("h1"))
    );
    assert_eq!(st["observedGeneration"], 1);
    let scheduled = condition(&st, "Scheduled");
    assert_eq!(
        (scheduled["status"].as_str(), scheduled["reason"].as_str()),
        (Some("True"), Some("Placed"))
    );
    assert_eq!(condition(&st, "Running")["reason"], "AwaitingAgent");
    assert_eq!(condition(&st, "Ready")["status"], "False");
    let events = server.take_events();
    assert_eq!(
        event_reasons(&events),
        [("Normal".to_owned(), "Scheduled".to_owned())]
    );
    assert_eq!(events[0]["note"], "placed on host h1");
    assert_eq!(events[0]["reportingController"], "yun-controller");
    assert_eq!(
        (
            events[0]["regarding"]["name"].as_str(),
            events[0]["regarding"]["uid"].as_str()
        ),
        (Some("web"), Some(UID))
    );

    // etcd: the desired record on h1, the placement, and h1's allocation.
    let (h1, _) = fleet.bus.host_view("h1").await.unwrap();
    let desired = &h1
        .desired
        .get(UID)
        .expect("desired record under /yun/v1/hosts/h1/vms/<uid>")
        .value;
    assert_eq!(
        (
            desired.name.as_str(),
            desired.namespace.as_str(),
            desired.generation
        ),
        ("web", NAMESPACE, 1)
    );
    assert_eq!(
        (
            desired.resources.cpus,
            desired.resources.memory_mib,
            desired.hostname.as_str()
        ),
        (2, 512, "web")
    );
    assert_eq!(desired.image.name, "default/tiny");
    assert_eq!(
        fleet.bus.placement(UID).await.unwrap().unwrap().value.host,
        "h1"
    );
    let alloc = fleet.bus.host_alloc("h1").await.unwrap().value;
    assert_eq!((alloc.cpus, alloc.memory_mib, alloc.vms), (2, 512, 1));
    assert!(
        fleet
            .keys("/yun/v1/hosts/h2/")
            .await
            .iter()
            .all(|k| k.ends_with("/info"))
    );

    // 3. Nothing changed: no status write, no Event.
    let task = spawn_reconcile(&placed, &ctx);
    finish(&mut server, task).await.unwrap();
    assert!(server.take_events().is_empty());

    // 4. The agent reports Running for generation 1: Running, Ready=True, one Started Event.
    fleet.report("h1", UID, VmPhase::Running, 1).await;
    let task = spawn_reconcile(&placed, &ctx);
    let running = expect_status_apply(server.next().await, placed.clone());
    assert_eq!(
        finish(&mut server, task).await.unwrap(),
        Action::requeue(Duration::from_secs(60))
    );
    let st = status_json(&running);
    assert_eq!(st["phase"], "Running");
    assert_eq!(st["domainUUID"], "5d1c0000-0000-4000-8000-00000000d0d0");
    assert_eq!(condition(&st, "Ready")["status"], "True");
    assert_eq!(condition(&st, "Running")["status"], "True");
    // The Scheduled condition did not change, so its transition time did not move.
    assert_eq!(
        condition(&st, "Scheduled"),
        condition(&status_json(&placed), "Scheduled")
    );
    let events = server.take_events();
    assert_eq!(
        event_reasons(&events),
        [("Normal".to_owned(), "Started".to_owned())]
    );

    let metrics = exposition(&registry);
    assert!(
        metrics.contains(r#"yun_controller_reconciles_total{kind="VirtualMachine",result="ok"} 4"#),
        "{metrics}"
    );
}

#[tokio::test]
async fn delete_withdraws_then_releases_and_drops_the_finalizer() {
    let (fleet, mut server, ctx, _registry) = setup().await;
    let held = with_finalizer(vm("web", UID, 2, 512));
    let task = spawn_reconcile(&held, &ctx);
    let placed = expect_status_apply(server.next().await, held);
    finish(&mut server, task).await.unwrap();
    fleet.report("h1", UID, VmPhase::Running, 1).await;
    let task = spawn_reconcile(&placed, &ctx);
    let running = expect_status_apply(server.next().await, placed);
    finish(&mut server, task).await.unwrap();
    server.take_events();

    // 1. Deletion requested: the desired record is withdrawn, resources stay held until the
    // agent confirms; status Deleting; the finalizer stays (no request touches it).
    let mut deleting = running;
    deleting.metadata.deletion_timestamp =
        Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
            "2025-01-01T00:10:00Z".parse().unwrap(),
        ));
    deleting.metadata.generation = Some(2);
    let task = spawn_reconcile(&deleting, &ctx);
    let deleting = expect_status_apply(server.next().await, deleting);
    assert_eq!(
        finish(&mut server, task).await.unwrap(),
        Action::requeue(Duration::from_secs(1))
    );
    let st = status_json(&deleting);
    assert_eq!(st["phase"], "Deleting");
    assert!(st["message"].as_str().unwrap().contains("h1"), "{st}");
    assert_eq!(condition(&st, "Ready")["reason"], "Deleting");
    assert_eq!(
        event_reasons(&server.take_events()),
        [("Normal".to_owned(), "Deleting".to_owned())]
    );
    let (h1, _) = fleet.bus.host_view("h1").await.unwrap();
    assert!(h1.desired.is_empty(), "desired record withdrawn");
    assert!(
        fleet.bus.placement(UID).await.unwrap().is_some(),
        "placement kept until the agent confirms"
    );
    assert_eq!(fleet.bus.host_alloc("h1").await.unwrap().value.cpus, 2);

    // 2. The agent has not confirmed yet: still waiting, nothing to write.
    let task = spawn_reconcile(&deleting, &ctx);
    assert_eq!(
        finish(&mut server, task).await.unwrap(),
        Action::requeue(Duration::from_secs(1))
    );

    // 3. The agent removed the domain and deleted its record: resources released, finalizer
    // removed with a guarded JSON patch, one Deleted Event.
    fleet.bus.delete_observed("h1", UID).await.unwrap();
    let task = spawn_reconcile(&deleting, &ctx);
    let req = server.next().await;
    assert_eq!((&req.method, req.path.as_str()), (&Method::PATCH, VM_PATH));
    assert_eq!(req.content_type, "application/json-patch+json");
    assert_eq!(
        req.body,
        json!([
            {"op": "test", "path": "/metadata/finalizers/0", "value": FINALIZER},
            {"op": "remove", "path": "/metadata/finalizers/0"},
        ])
    );
    let mut gone = deleting.clone();
    gone.metadata.finalizers = None;
    req.respond(StatusCode::OK, &gone);
    assert_eq!(
        finish(&mut server, task).await.unwrap(),
        Action::await_change()
    );
    assert_eq!(
        event_reasons(&server.take_events()),
        [("Normal".to_owned(), "Deleted".to_owned())]
    );
    assert!(fleet.bus.placement(UID).await.unwrap().is_none());
    let alloc = fleet.bus.host_alloc("h1").await.unwrap().value;
    assert_eq!((alloc.cpus, alloc.memory_mib, alloc.vms), (0, 0, 0));
    assert_eq!(
        fleet.keys("/yun/v1/hosts/h1/vms/").await,
        Vec::<String>::new()
    );
}

#[tokio::test]
async fn invalid_spec_is_reported_and_never_reaches_etcd() {
    let (fleet, mut server, ctx, _registry) = setup().await;
    // cpu 0: the CRD schema refuses it, but a VM stored under an older CRD (or read from a
    // bootstrap file) can carry it.
    let bad = with_finalizer(vm("web", UID, 0, 512));
    let task = spawn_reconcile(&bad, &ctx);
    let refused = expect_status_apply(server.next().await, bad);
    assert_eq!(
        finish(&mut server, task).await.unwrap(),
        Action::await_change()
    );
    let st = status_json(&refused);
    assert_eq!(st["phase"], "Pending");
    assert!(st.get("host").is_none(), "{st}");
    let scheduled = condition(&st, "Scheduled");
    assert_eq!(
        (scheduled["status"].as_str(), scheduled["reason"].as_str()),
        (Some("False"), Some("InvalidSpec"))
    );
    assert!(
        scheduled["message"]
            .as_str()
            .unwrap()
            .starts_with("spec.cpu: must be between 1 and 256, got 0"),
        "{scheduled}"
    );
    let events = server.take_events();
    assert_eq!(
        event_reasons(&events),
        [("Warning".to_owned(), "InvalidSpec".to_owned())]
    );
    assert!(events[0]["note"].as_str().unwrap().contains("spec.cpu"));
    // Only the agents' registrations: no placement, allocation or VM record.
    assert_eq!(
        fleet.keys("/yun/v1/").await,
        ["/yun/v1/hosts/h1/info", "/yun/v1/hosts/h2/info"]
    );

    // Deleting the invalid VM needs no agent: the finalizer goes at once.
    let mut deleting = refused;
    deleting.metadata.deletion_timestamp =
        Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
            "2025-01-01T00:10:00Z".parse().unwrap(),
        ));
    let task = spawn_reconcile(&deleting, &ctx);
    let req = server.next().await;
    assert_eq!(
        (&req.method, req.path.as_str(), req.body[1]["op"].as_str()),
        (&Method::PATCH, VM_PATH, Some("remove"))
    );
    req.respond(StatusCode::OK, &deleting);
    assert_eq!(
        finish(&mut server, task).await.unwrap(),
        Action::await_change()
    );
}

#[tokio::test]
async fn missing_image_is_reported_without_placing() {
    let (fleet, mut server, ctx, _registry) = setup().await;
    let mut other = with_finalizer(vm("web", UID, 1, 256));
    other.spec.image = "absent".into();
    let task = spawn_reconcile(&other, &ctx);
    let st = status_json(&expect_status_apply(server.next().await, other));
    finish(&mut server, task).await.unwrap();
    let scheduled = condition(&st, "Scheduled");
    assert_eq!(scheduled["reason"], "ImageNotFound");
    assert_eq!(
        scheduled["message"],
        "VmImage default/absent does not exist"
    );
    assert!(fleet.keys("/yun/v1/placements/").await.is_empty());
}

#[tokio::test]
async fn a_vm_naming_a_missing_volume_waits_unplaced_naming_the_entry() {
    let (fleet, mut server, ctx, _registry) = setup().await;
    let mut wants = with_finalizer(vm("web", UID, 1, 256));
    wants.spec.volumes = serde_json::from_value(json!([{"volume": "data"}])).unwrap();
    let task = spawn_reconcile(&wants, &ctx);
    let st = status_json(&expect_status_apply(server.next().await, wants));
    finish(&mut server, task).await.unwrap();
    let scheduled = condition(&st, "Scheduled");
    assert_eq!(scheduled["reason"], "VolumeNotFound");
    assert_eq!(
        scheduled["message"],
        "spec.volumes[0].volume: Volume default/data does not exist"
    );
    assert!(fleet.keys("/yun/v1/placements/").await.is_empty());
}

#[tokio::test]
async fn invalid_image_is_reported_without_placing() {
    let fleet = start_fleet(&[("h1", 8, 4096)]).await;
    let (client, mut server) = MockApiServer::start();
    let mut broken = image(IMAGE, NAMESPACE);
    broken.spec.disk.sha256 = "not-a-checksum".into();
    let (ctx, _registry) = ctx(
        client,
        fleet.bus.clone(),
        vec![broken],
        vec![host("h1", false)],
    );
    let held = with_finalizer(vm("web", UID, 1, 256));
    let task = spawn_reconcile(&held, &ctx);
    let st = status_json(&expect_status_apply(server.next().await, held));
    finish(&mut server, task).await.unwrap();
    let scheduled = condition(&st, "Scheduled");
    assert_eq!(
        (scheduled["status"].as_str(), scheduled["reason"].as_str()),
        (Some("False"), Some("InvalidImage"))
    );
    assert!(
        scheduled["message"]
            .as_str()
            .unwrap()
            .contains("spec.disk.sha256"),
        "{scheduled}"
    );
    assert_eq!(
        event_reasons(&server.take_events()),
        [("Warning".to_owned(), "InvalidImage".to_owned())]
    );
    assert_eq!(fleet.keys("/yun/v1/").await, ["/yun/v1/hosts/h1/info"]);
}

#[tokio::test]
async fn failed_status_write_is_an_error_retried_with_backoff() {
    let (fleet, mut server, ctx, registry) = setup().await;
    let held = with_finalizer(vm("web", UID, 2, 512));
    for attempt in 0..2 {
        let task = spawn_reconcile(&held, &ctx);
        let req = server.next().await;
        assert_eq!(req.path, STATUS_PATH);
        req.fail(500, "InternalError", "etcd of the API server is down");
        let err = finish(&mut server, task).await.unwrap_err();
        assert!(matches!(err, KubeSourceError::StatusWrite { .. }), "{err}");
        let expected = Duration::from_secs(5 << attempt);
        assert_eq!(
            error_policy(Arc::new(held.clone()), &err, ctx.clone()),
            Action::requeue(expected)
        );
    }
    // The placement itself was made (idempotently, once) and is kept for the retry.
    assert_eq!(fleet.bus.host_alloc("h1").await.unwrap().value.vms, 1);
    assert!(
        server.take_events().is_empty(),
        "no Event for a status that was not written"
    );
    let metrics = exposition(&registry);
    assert!(
        metrics
            .contains(r#"yun_controller_reconciles_total{kind="VirtualMachine",result="error"} 2"#),
        "{metrics}"
    );

    // A success resets the backoff.
    let task = spawn_reconcile(&held, &ctx);
    expect_status_apply(server.next().await, held.clone());
    finish(&mut server, task).await.unwrap();
    let err = KubeSourceError::CleanupPending {
        requeue: Duration::ZERO,
    };
    assert_eq!(
        error_policy(Arc::new(held), &err, ctx),
        Action::requeue(Duration::from_secs(5))
    );
}

#[tokio::test]
async fn vm_without_uid_is_refused_before_touching_etcd() {
    let (fleet, mut server, ctx, _registry) = setup().await;
    let mut anonymous = with_finalizer(vm("web", UID, 1, 256));
    anonymous.metadata.uid = None;
    let task = spawn_reconcile(&anonymous, &ctx);
    let err = finish(&mut server, task).await.unwrap_err();
    assert!(matches!(err, KubeSourceError::MissingUid { .. }), "{err}");
    assert!(fleet.keys("/yun/v1/placements/").await.is_empty());
}
