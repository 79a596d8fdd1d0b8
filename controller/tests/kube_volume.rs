//! Volumes in Kubernetes mode, against a scripted API server and a real etcd: a VM's iSCSI
//! volume with CHAP from a Secret is granted to its host with the credentials on the host's
//! record; the Volume's status follows the host's attachment record; a second VM asking for
//! the same ReadWriteOnce volume waits naming the holder; deleting the Volume waits for its
//! holder (the VM keeps running with `VolumesReady=False`), and the finalizer goes once the
//! host confirmed the detach.
#![allow(clippy::unwrap_used)]

// Shared with kube_mock.rs, which uses all of it.
#[allow(dead_code)]
#[path = "kube_mock/steps.rs"]
mod steps;
mod support;

use http::{Method, StatusCode};
use kube::runtime::controller::Action;
use kube::runtime::reflector::{self, store::Writer};
use kube::runtime::watcher;
use serde_json::{Value, json};
use std::sync::Arc;
use steps::{UID, condition, expect_status_apply, finish};
use support::apiserver::{MockApiServer, assert_status_apply, event_reasons};
use support::fleet::{TestFleet, start_fleet};
use support::{IMAGE, NAMESPACE, ctx_with_volumes, host, image, vm, with_finalizer};
use yun_controller::kube_source::{
    Ctx, IN_USE_FINALIZER, KubeSourceError, reconcile, reconcile_volume_object,
};
use yun_crds::{VirtualMachine, Volume, VolumeStatus};
use yun_fleet::{AttachPhase, AttachmentRecord, ChapRecord, VmPhase, VolumeSourceRecord};

const VOLUMES: &str = "/apis/yun.dev/v1alpha1/namespaces/default/volumes";
const SECRETS: &str = "/api/v1/namespaces/default/secrets";
const VOLUME_UID: &str = "vol-0000-data";
const OTHER_UID: &str = "6f1c2a3b-0000-4000-8000-000000000002";

fn volume(name: &str, uid: &str, secret: &str) -> Volume {
    serde_json::from_value(json!({
        "apiVersion": "yun.dev/v1alpha1", "kind": "Volume",
        "metadata": {"name": name, "namespace": NAMESPACE, "uid": uid,
                     "generation": 1, "resourceVersion": "9",
                     "finalizers": [IN_USE_FINALIZER],
                     "creationTimestamp": "2025-01-01T00:00:00Z"},
        "spec": {"sizeGiB": 1, "iscsi": {"portals": ["127.0.0.1"],
                 "iqn": "iqn.2025-01.dev.yun:data", "lun": 1,
                 "chap": {"secretRef": {"name": secret}}}},
    }))
    .unwrap()
}

fn vm_with_volume(name: &str, uid: &str, volume: &str) -> VirtualMachine {
    let mut v = with_finalizer(vm(name, uid, 1, 256));
    v.spec.volumes = serde_json::from_value(json!([{"volume": volume}])).unwrap();
    v
}

struct Setup {
    fleet: TestFleet,
    server: MockApiServer,
    ctx: Arc<Ctx>,
    volumes: Writer<Volume>,
}

async fn setup(volumes: Vec<Volume>) -> Setup {
    let fleet = start_fleet(&[("h1", 8, 4096), ("h2", 32, 65536)]).await;
    let (client, server) = MockApiServer::start();
    let (store, mut writer) = reflector::store::<Volume>();
    writer.apply_watcher_event(&watcher::Event::Init);
    for v in volumes {
        writer.apply_watcher_event(&watcher::Event::InitApply(v));
    }
    writer.apply_watcher_event(&watcher::Event::InitDone);
    let (ctx, _registry) = ctx_with_volumes(
        client,
        fleet.bus.clone(),
        vec![image(IMAGE, NAMESPACE)],
        vec![host("h1", false), host("h2", true)],
        store,
    );
    Setup {
        fleet,
        server,
        ctx,
        volumes: writer,
    }
}

/// Answers the controller's read of the Secret `name` (with the CHAP keys).
fn answer_secret(req: support::apiserver::Captured, name: &str) {
    assert_eq!(
        (&req.method, req.path.as_str()),
        (&Method::GET, format!("{SECRETS}/{name}").as_str())
    );
    req.respond(
        StatusCode::OK,
        &json!({"apiVersion": "v1", "kind": "Secret",
                "metadata": {"name": name, "namespace": NAMESPACE},
                "data": {"username": "YWxpY2U=", "password": "czNjcmV0LXB3"}}),
    );
}

/// Reconciles the VM and answers its status apply; returns the object with the new status.
async fn vm_step(s: &mut Setup, vm: &VirtualMachine, secret: Option<&str>) -> VirtualMachine {
    let task = tokio::spawn(reconcile(Arc::new(vm.clone()), s.ctx.clone()));
    if let Some(name) = secret {
        answer_secret(s.server.next().await, name);
    }
    let out = expect_status_apply_at(s.server.next().await, vm.clone());
    finish(&mut s.server, task).await.unwrap();
    out
}

/// Asserts `req` is the status apply of `vm` (any name), answers it and returns the object.
fn expect_status_apply_at(
    req: support::apiserver::Captured,
    mut vm: VirtualMachine,
) -> VirtualMachine {
    let path = format!(
        "/apis/yun.dev/v1alpha1/namespaces/default/virtualmachines/{}/status",
        vm.metadata.name.as_deref().unwrap()
    );
    assert_status_apply(&req, &path, "VirtualMachine");
    vm.status = Some(serde_json::from_value(req.body["status"].clone()).unwrap());
    req.respond(StatusCode::OK, &vm);
    vm
}

/// Reconciles the Volume; answers its status apply and returns the status and the result.
async fn volume_step(s: &mut Setup, v: &Volume) -> (VolumeStatus, Result<Action, KubeSourceError>) {
    let task = tokio::spawn(reconcile_volume_object(Arc::new(v.clone()), s.ctx.clone()));
    let req = s.server.next().await;
    let name = v.metadata.name.as_deref().unwrap();
    assert_status_apply(&req, &format!("{VOLUMES}/{name}/status"), "Volume");
    let status: VolumeStatus = serde_json::from_value(req.body["status"].clone()).unwrap();
    let mut answer = serde_json::to_value(v).unwrap();
    answer["status"] = serde_json::to_value(&status).unwrap();
    req.respond(StatusCode::OK, &answer);
    let result = s.server.finish(task).await.unwrap();
    (status, result)
}

/// The VM's condition `type_`, as JSON.
fn cond(vm: &VirtualMachine, type_: &str) -> Value {
    let status = serde_json::to_value(vm.status.as_ref().unwrap()).unwrap();
    condition(&status, type_).clone()
}

fn attached(phase: AttachPhase) -> AttachmentRecord {
    AttachmentRecord {
        v: yun_fleet::SCHEMA_VERSION,
        volume: "default/data".into(),
        phase,
        target_dev: Some("vdb".into()),
        message: None,
        attempts: 0,
        updated_at: "2025-01-01T00:02:00Z".into(),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_volume_is_granted_attached_held_and_released_in_kubernetes_mode() {
    let data = volume("data", VOLUME_UID, "chap");
    let mut s = setup(vec![data.clone()]).await;

    // 1. The VM is placed on h1 with the volume granted; CHAP comes from the Secret.
    let web = vm_with_volume("web", UID, "data");
    let web = vm_step(&mut s, &web, Some("chap")).await;
    let ready = cond(&web, "VolumesReady");
    assert_eq!(
        (&ready["status"], &ready["reason"]),
        (&json!("True"), &json!("Granted"))
    );
    assert_eq!(web.status.as_ref().unwrap().host.as_deref(), Some("h1"));
    let desired = s.fleet.bus.desired("h1", UID).await.unwrap().unwrap();
    assert_eq!(desired.volumes.len(), 1);
    assert_eq!(desired.hold, None);
    match &desired.volumes[0].source {
        VolumeSourceRecord::Iscsi {
            portals,
            chap: Some(ChapRecord::Inline { username, password }),
            ..
        } => {
            assert_eq!(portals, &["127.0.0.1:3260".to_owned()]);
            assert_eq!(
                (username.as_str(), password.0.as_str()),
                ("alice", "s3cret-pw")
            );
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        event_reasons(&s.server.take_events()),
        [("Normal".to_owned(), "Scheduled".to_owned())]
    );
    let claim = s.fleet.bus.volume_claim(VOLUME_UID).await.unwrap().unwrap();
    assert_eq!(
        claim
            .value
            .holders
            .iter()
            .map(|h| h.host.as_str())
            .collect::<Vec<_>>(),
        ["h1"]
    );

    // 2. The Volume follows the host: Attaching until the host records Attached.
    let (status, action) = volume_step(&mut s, &data).await;
    assert_eq!(status.phase, Some(yun_crds::VolumePhase::Attaching));
    assert!(matches!(action, Ok(a) if a != Action::await_change()));
    let data = Volume {
        status: Some(status),
        ..data
    };
    s.fleet
        .bus
        .put_attachment("h1", UID, VOLUME_UID, &attached(AttachPhase::Attached))
        .await
        .unwrap();
    s.fleet.report("h1", UID, VmPhase::Running, 1).await;
    let (status, _) = volume_step(&mut s, &data).await;
    assert_eq!(status.phase, Some(yun_crds::VolumePhase::Attached));
    assert_eq!(
        (status.vm.as_deref(), status.host.as_deref()),
        (Some("web"), Some("h1"))
    );
    assert_eq!(
        event_reasons(&s.server.take_events()),
        [("Normal".to_owned(), "Attached".to_owned())]
    );
    let data = Volume {
        status: Some(status),
        ..data
    };

    // 3. A second VM wants the same ReadWriteOnce volume: it waits naming the holder (the
    //    Secret is not read again: it is cached).
    let api = vm_with_volume("api", OTHER_UID, "data");
    let api = vm_step(&mut s, &api, None).await;
    let waiting = cond(&api, "VolumesReady");
    assert_eq!(waiting["reason"], "VolumeInUse");
    assert!(
        waiting["message"].as_str().unwrap().contains("default/web"),
        "{waiting}"
    );
    let claim = s.fleet.bus.volume_claim(VOLUME_UID).await.unwrap().unwrap();
    assert_eq!(claim.value.holders.len(), 1);

    // 4. The Volume is deleted while web holds it: the finalizer stays and says who holds it;
    //    web keeps running with its disk, and says why its volumes are not ready.
    let mut deleting = data.clone();
    deleting.metadata.deletion_timestamp = deleting.metadata.creation_timestamp.clone();
    s.volumes
        .apply_watcher_event(&watcher::Event::Apply(deleting.clone()));
    s.server.take_events();
    let (status, action) = volume_step(&mut s, &deleting).await;
    assert!(matches!(action, Ok(a) if a != Action::await_change()));
    let blocked = status
        .conditions
        .iter()
        .find(|c| c.type_ == "DeletionBlocked")
        .unwrap();
    assert_eq!(blocked.reason, "InUse");
    assert!(
        blocked
            .message
            .ends_with("held by VM default/web on host h1"),
        "{}",
        blocked.message
    );
    assert_eq!(
        event_reasons(&s.server.take_events()),
        [("Warning".to_owned(), "DeletionBlocked".to_owned())]
    );
    let deleting = Volume {
        status: Some(status),
        ..deleting
    };
    let web = vm_step(&mut s, &web, None).await;
    let web_st = web.status.as_ref().unwrap();
    assert_eq!(
        (web_st.phase, web_st.host.as_deref()),
        (Some(yun_crds::VmPhase::Running), Some("h1"))
    );
    let ready = cond(&web, "VolumesReady");
    assert_eq!(
        (&ready["status"], &ready["reason"]),
        (&json!("False"), &json!("VolumeDeleting"))
    );
    assert_eq!(
        s.fleet
            .bus
            .desired("h1", UID)
            .await
            .unwrap()
            .unwrap()
            .volumes
            .len(),
        1,
        "a volume being deleted is not pulled from a running VM"
    );

    // 5. web drops the volume; the host confirms the detach; the finalizer goes.
    let mut web = web;
    web.spec.volumes.clear();
    web.metadata.generation = Some(2);
    let web = vm_step(&mut s, &web, None).await;
    assert!(
        web.status
            .as_ref()
            .unwrap()
            .conditions
            .iter()
            .all(|c| c.type_ != "VolumesReady"),
        "{:?}",
        web.status
    );
    assert!(
        s.fleet
            .bus
            .desired("h1", UID)
            .await
            .unwrap()
            .unwrap()
            .volumes
            .is_empty()
    );
    s.fleet
        .bus
        .delete_attachment("h1", UID, VOLUME_UID)
        .await
        .unwrap();
    let task = tokio::spawn(reconcile_volume_object(
        Arc::new(deleting.clone()),
        s.ctx.clone(),
    ));
    let req = s.server.next().await;
    assert_eq!(
        (&req.method, req.path.as_str()),
        (&Method::PATCH, format!("{VOLUMES}/data").as_str())
    );
    assert_eq!(
        req.body[1],
        json!({"op": "remove", "path": "/metadata/finalizers/0"})
    );
    let mut released = deleting.clone();
    released.metadata.finalizers = None;
    req.respond(StatusCode::OK, &released);
    assert_eq!(
        s.server.finish(task).await.unwrap().unwrap(),
        Action::await_change()
    );
    assert!(
        s.fleet
            .bus
            .volume_claim(VOLUME_UID)
            .await
            .unwrap()
            .is_none()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_missing_chap_secret_keeps_the_vm_unplaced_and_names_the_secret() {
    let mut s = setup(vec![volume("locked", VOLUME_UID, "nope")]).await;
    let vm = vm_with_volume("web", UID, "locked");
    let task = tokio::spawn(reconcile(Arc::new(vm.clone()), s.ctx.clone()));
    let req = s.server.next().await;
    assert_eq!(req.path, format!("{SECRETS}/nope"));
    req.fail(404, "NotFound", "secrets \"nope\" not found");
    let out = expect_status_apply(s.server.next().await, vm.clone());
    finish(&mut s.server, task).await.unwrap();
    let scheduled = cond(&out, "Scheduled");
    assert_eq!(scheduled["reason"], "VolumeNotReady");
    assert!(
        scheduled["message"]
            .as_str()
            .unwrap()
            .contains("spec.iscsi.chap: Secret default/nope does not exist"),
        "{scheduled}"
    );
    assert!(s.fleet.keys("/yun/v1/placements/").await.is_empty());
    assert!(s.fleet.keys("/yun/v1/volumes/").await.is_empty());
}
