//! DeviceIdentity in Kubernetes mode: the DeviceIdentity reconcile against a scripted API
//! server, a real Keystone (PyPI keystone, SQLite, loopback) and a real etcd:
//!
//! - a device in an enabled project gets a Secret `<name>-keystone`, owned by the object, whose
//!   credential logs in to Keystone, and a status (server-side apply) naming the credential
//!   but never its secret; the view's directory lists the device;
//! - a scheduled rotation issues a new credential under a new Keystone user and delivers it
//!   into the Secret, while the old credential keeps working through the overlap (both are in
//!   the directory); once the overlap is over the old one is revoked and no longer logs in;
//! - a Secret of that name the device does not own is never overwritten: `Ready=False
//!   IssueFailed` names it, and the credential issued for it is revoked;
//! - deleting the object revokes its credential (no more login), deletes its Secret and only
//!   then lets the finalizer go.
#![allow(clippy::unwrap_used)]

mod support;

use std::sync::Arc;
use std::time::Duration;

use http::{Method, StatusCode};
use k8s_openapi::api::core::v1::Secret as KubeSecret;
use prometheus_client::registry::Registry;
use serde_json::{Value, json};
use support::apiserver::{Captured, MockApiServer, assert_status_apply};
use support::fleet::start_fleet;
use support::keystone::{controller_identity, start_keystone};
use support::store_of;
use yun_controller::devices::{DeviceConfig, Devices};
use yun_controller::fleet_ops::Fleet;
use yun_controller::kube_source::{
    Ctx, DEVICE_FINALIZER, reconcile_device_object, refresh_device_directory,
};
use yun_controller::metrics::ControllerMetrics;
use yun_crds::{DeviceIdentity, DeviceIdentityStatus};
use yun_identity::{Credentials, Keystone, Secret};

const NS: &str = "team-a";
const DEVICES: &str = "/apis/yun.dev/v1alpha1/namespaces/team-a/deviceidentities";
const SECRETS: &str = "/api/v1/namespaces/team-a/secrets";

fn device(name: &str, uid: &str, status: Option<DeviceIdentityStatus>) -> DeviceIdentity {
    let mut d: DeviceIdentity = serde_json::from_value(json!({
        "apiVersion": "yun.dev/v1alpha1", "kind": "DeviceIdentity",
        "metadata": {"name": name, "namespace": NS, "uid": uid, "generation": 1,
                     "resourceVersion": "7", "finalizers": [DEVICE_FINALIZER]},
        "spec": {"roles": ["reader"], "view": ["SecurityGroups"]},
    }))
    .unwrap();
    d.status = status;
    d
}

/// The credential in a Secret body the controller applied: (auth_url, id, secret).
fn secret_values(body: &Value) -> (String, String, String) {
    let secret: KubeSecret = serde_json::from_value(body.clone()).unwrap();
    let data = secret.data.unwrap();
    let text = |k: &str| String::from_utf8(data[k].0.clone()).unwrap();
    assert!(
        text("credentials.toml").contains(&text("application_credential_secret")),
        "credentials.toml carries the same credential"
    );
    (
        text("auth_url"),
        text("application_credential_id"),
        text("application_credential_secret"),
    )
}

async fn login(values: &(String, String, String)) -> Result<Keystone, yun_identity::IdentityError> {
    Keystone::connect(&Credentials::application_credential(
        values.0.clone(),
        values.1.clone(),
        Secret::new(values.2.clone()),
    ))
    .await
}

/// Answers the read of Secret `name` with `stored` (as the API server holds it), or 404.
fn answer_get(req: Captured, name: &str, stored: Option<&Value>) {
    assert_eq!(
        (&req.method, req.path.as_str()),
        (&Method::GET, format!("{SECRETS}/{name}").as_str())
    );
    match stored {
        Some(body) => req.respond(StatusCode::OK, body),
        None => req.fail(404, "NotFound", "secrets not found"),
    }
}

/// Asserts the Secret apply (owned by `uid`, field manager, force), answers it, returns the
/// body as stored.
fn answer_apply(req: Captured, name: &str, uid: &str) -> Value {
    assert_eq!(
        (&req.method, req.path.as_str()),
        (&Method::PATCH, format!("{SECRETS}/{name}").as_str())
    );
    assert_eq!(req.content_type, "application/apply-patch+yaml");
    assert_eq!(req.query.get("force").map(String::as_str), Some("true"));
    let owner = &req.body["metadata"]["ownerReferences"][0];
    assert_eq!(
        (owner["kind"].as_str(), owner["uid"].as_str()),
        (Some("DeviceIdentity"), Some(uid))
    );
    assert_eq!(owner["controller"], true);
    let body = req.body.clone();
    req.respond(StatusCode::OK, &body);
    body
}

/// Asserts the status apply of device `name`, answers it (the object with that status, as
/// the API server does), returns the status.
fn answer_status(req: Captured, name: &str) -> DeviceIdentityStatus {
    assert_status_apply(&req, &format!("{DEVICES}/{name}/status"), "DeviceIdentity");
    let status: DeviceIdentityStatus = serde_json::from_value(req.body["status"].clone()).unwrap();
    let mut obj = device(name, "echo", None);
    obj.status = Some(status.clone());
    req.respond(StatusCode::OK, &obj);
    status
}

fn ready(status: &DeviceIdentityStatus) -> (String, String, String) {
    let c = yun_crds::find_condition(&status.conditions, "Ready").unwrap();
    (
        format!("{:?}", c.status),
        c.reason.clone(),
        c.message.clone(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn devices_get_an_owned_secret_rotate_with_overlap_and_are_revoked_on_delete() {
    let (keystone, admin) = start_keystone().await;
    admin.create_project(NS, "default").await.unwrap();
    let work = tempfile::tempdir().unwrap();
    let identity = controller_identity(
        &keystone,
        work.path(),
        Duration::from_secs(86_400),
        &["reader"],
    )
    .await;
    let test_fleet = start_fleet(&[("h1", 8, 8192)]).await;
    let audit_log = work.path().join("audit.log");
    let audit = yun_audit::Trail::open(&audit_log, yun_audit::Actor::component("yun-controller/t"))
        .unwrap();
    let fleet = Fleet::start(test_fleet.bus.clone(), None)
        .with_audit(audit.clone())
        .with_identity(identity);
    let mut config = DeviceConfig::new(work.path().join("unused"));
    config.allowed_roles = vec!["reader".into()];
    config.rotation = Some(Duration::from_secs(3600));
    config.rotation_overlap = Duration::from_secs(3600);
    let devices = Devices::new(config);
    let (client, mut server) = MockApiServer::start();
    let metrics = ControllerMetrics::new(&mut Registry::default());
    let ctx = Arc::new(
        Ctx::new(client, fleet, metrics, store_of(vec![]), store_of(vec![]))
            .with_devices(devices.clone()),
    );
    let uid = "dev-0000-ids";
    let secret_name = "ids-keystone";

    // 1. First issue: no Secret yet, so one is applied; the status names the credential.
    let obj = device("ids", uid, None);
    let task = tokio::spawn(reconcile_device_object(Arc::new(obj.clone()), ctx.clone()));
    answer_get(server.next().await, secret_name, None);
    let stored = answer_apply(server.next().await, secret_name, uid);
    let status = answer_status(server.next().await, "ids");
    server.finish(task).await.unwrap().unwrap();
    let (ok, reason, message) = ready(&status);
    assert_eq!(
        (ok.as_str(), reason.as_str()),
        ("True", "Issued"),
        "{message}"
    );
    assert!(message.contains("Secret team-a/ids-keystone"), "{message}");
    let first = secret_values(&stored);
    assert_eq!(status.credential_id.as_deref(), Some(first.1.as_str()));
    assert_eq!(status.roles, ["reader"]);
    assert!(
        !serde_json::to_string(&status).unwrap().contains(&first.2),
        "the secret is in the status"
    );
    login(&first)
        .await
        .expect("the Secret's credential logs in");
    refresh_device_directory(&ctx, &[Arc::new(device("ids", uid, Some(status.clone())))]);
    let dir = devices.directory.snapshot();
    assert_eq!(
        dir.devices
            .values()
            .map(|e| e.credential_id.as_str())
            .collect::<Vec<_>>(),
        [first.1.as_str()]
    );

    // 2. The credential is older than the rotation period: a new one under a new user goes
    //    into the Secret; the old one stays valid through the overlap.
    let mut aged = status.clone();
    aged.issued_at =
        Some((jiff::Timestamp::now() - jiff::SignedDuration::from_hours(2)).to_string());
    let task = tokio::spawn(reconcile_device_object(
        Arc::new(device("ids", uid, Some(aged))),
        ctx.clone(),
    ));
    answer_get(server.next().await, secret_name, Some(&stored)); // holds?
    answer_get(server.next().await, secret_name, Some(&stored)); // before the apply
    let stored = answer_apply(server.next().await, secret_name, uid);
    let rotated = answer_status(server.next().await, "ids");
    server.finish(task).await.unwrap().unwrap();
    let second = secret_values(&stored);
    assert_ne!(second.1, first.1);
    assert_eq!(rotated.rotation, 1);
    let retiring = rotated
        .retiring
        .clone()
        .expect("the old credential is retiring");
    assert_eq!(retiring.credential_id, first.1);
    let (_, _, message) = ready(&rotated);
    assert!(message.contains("stays valid until"), "{message}");
    login(&second)
        .await
        .expect("the rotated credential logs in");
    login(&first)
        .await
        .expect("the old one still logs in during the overlap");
    refresh_device_directory(&ctx, &[Arc::new(device("ids", uid, Some(rotated.clone())))]);
    let mut listed: Vec<String> = devices
        .directory
        .snapshot()
        .devices
        .values()
        .map(|e| e.credential_id.clone())
        .collect();
    listed.sort();
    let mut both = vec![first.1.clone(), second.1.clone()];
    both.sort();
    assert_eq!(
        listed, both,
        "both credentials may read the view during the overlap"
    );

    // 3. The overlap is over: the old credential is revoked, the new one kept.
    let mut over = rotated.clone();
    over.retiring.as_mut().unwrap().until =
        (jiff::Timestamp::now() - jiff::SignedDuration::from_secs(1)).to_string();
    let task = tokio::spawn(reconcile_device_object(
        Arc::new(device("ids", uid, Some(over))),
        ctx.clone(),
    ));
    answer_get(server.next().await, secret_name, Some(&stored));
    let settled = answer_status(server.next().await, "ids");
    server.finish(task).await.unwrap().unwrap();
    assert!(settled.retiring.is_none());
    assert_eq!(settled.credential_id.as_deref(), Some(second.1.as_str()));
    assert!(
        login(&first).await.is_err(),
        "the retired credential still logs in"
    );
    login(&second)
        .await
        .expect("the current credential logs in");

    // 4. Someone else's Secret of that name is left alone, and the device says so.
    let foreign = json!({"apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": "fw-keystone", "namespace": NS}, "data": {"x": "eQ=="}});
    let task = tokio::spawn(reconcile_device_object(
        Arc::new(device("fw", "dev-0000-fw", None)),
        ctx.clone(),
    ));
    answer_get(server.next().await, "fw-keystone", Some(&foreign));
    let refused = answer_status(server.next().await, "fw");
    server.finish(task).await.unwrap().unwrap();
    let (ok, reason, message) = ready(&refused);
    assert_eq!(
        (ok.as_str(), reason.as_str()),
        ("False", "IssueFailed"),
        "{message}"
    );
    assert!(
        message.contains("team-a/fw-keystone") && message.contains("not this DeviceIdentity's"),
        "{message}"
    );
    assert!(refused.credential_id.is_none());
    assert!(
        admin
            .user("yun-device-dev-0000-fw")
            .await
            .unwrap()
            .is_none(),
        "the undeliverable credential's user was not revoked"
    );

    // 5. Deleting the object revokes the credential, deletes the Secret, then the finalizer goes.
    let mut deleted = device("ids", uid, Some(settled));
    deleted.metadata.deletion_timestamp = Some(
        k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(jiff::Timestamp::now()),
    );
    let task = tokio::spawn(reconcile_device_object(
        Arc::new(deleted.clone()),
        ctx.clone(),
    ));
    answer_get(server.next().await, secret_name, Some(&stored));
    let req = server.next().await;
    assert_eq!(
        (&req.method, req.path.as_str()),
        (&Method::DELETE, format!("{SECRETS}/{secret_name}").as_str())
    );
    req.respond(
        StatusCode::OK,
        &json!({"kind": "Status", "apiVersion": "v1", "status": "Success"}),
    );
    let req = server.next().await;
    assert_eq!(
        (&req.method, req.path.as_str()),
        (&Method::PATCH, format!("{DEVICES}/ids").as_str()),
        "the finalizer is removed last"
    );
    let mut released = deleted.clone();
    released.metadata.finalizers = None;
    req.respond(StatusCode::OK, &released);
    server.finish(task).await.unwrap().unwrap();
    assert!(
        login(&second).await.is_err(),
        "the deleted device's credential still logs in"
    );
    for rotation_user in ["yun-device-dev-0000-ids", "yun-device-dev-0000-ids-r1"] {
        assert!(
            admin.user(rotation_user).await.unwrap().is_none(),
            "{rotation_user} left"
        );
    }

    audit.close().await;
    let trail = std::fs::read_to_string(&audit_log).unwrap();
    for action in ["device.issue", "device.rotate", "device.revoke"] {
        assert!(
            trail.contains(action),
            "{action} not in the audit trail:\n{trail}"
        );
    }
}
