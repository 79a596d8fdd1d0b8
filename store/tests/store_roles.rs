//! Against a real etcd with TLS, client certificates and auth on: `yunctl`'s user reads and
//! writes the object store and nothing of the fleet; the controller's user reaches both; a
//! host's user cannot read the store.

use serde_json::json;
use yun_fleet_etcd::roles::{self, CONTROLLER_USER, STORE_CLIENT_USER};
use yun_fleet_etcd::{BusTls, FleetBus};
use yun_store::{EtcdStore, KindInfo, ObjectName};
use yun_testkit::EtcdServer;

fn images() -> KindInfo {
    KindInfo {
        kind: "VmImage".into(),
        api_version: "yun.dev/v1alpha1".into(),
        plural: "vmimages".into(),
        namespaced: true,
    }
}

async fn bus(etcd: &EtcdServer, tls: &BusTls) -> FleetBus {
    FleetBus::connect(
        &[etcd.endpoint()],
        std::time::Duration::from_secs(5),
        Some(tls),
    )
    .await
    .expect("connects")
}

fn denied(err: &dyn std::fmt::Display) -> bool {
    err.to_string().to_lowercase().contains("permission denied")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_store_client_reaches_the_store_and_nothing_of_the_fleet() {
    let etcd = tokio::task::spawn_blocking(EtcdServer::start_secure)
        .await
        .expect("joins")
        .expect("secure etcd starts");
    let root = bus(&etcd, &etcd.root_tls().expect("root cert")).await;
    roles::ensure_controller_user(&root, CONTROLLER_USER)
        .await
        .expect("controller user");
    roles::ensure_store_client_user(&root, STORE_CLIENT_USER)
        .await
        .expect("yunctl user");
    roles::ensure_store_client_user(&root, STORE_CLIENT_USER)
        .await
        .expect("provisioning is idempotent");
    roles::ensure_host_user(&root, "h1")
        .await
        .expect("host user");
    assert!(
        roles::ensure_store_client_user(&root, "host:h1")
            .await
            .is_err()
    );

    let yunctl_tls = etcd.tls_for(STORE_CLIENT_USER).expect("yunctl cert");
    let yunctl = EtcdStore::connect(&[etcd.endpoint()], Some(&yunctl_tls))
        .await
        .expect("connects");
    let image = json!({"apiVersion": "yun.dev/v1alpha1", "kind": "VmImage",
                       "metadata": {"name": "img", "namespace": "default"}, "spec": {}});
    yunctl
        .create_raw(&images(), &image)
        .await
        .expect("yunctl writes the store");

    let controller_tls = etcd.controller_tls().expect("controller cert");
    let controller = EtcdStore::connect(&[etcd.endpoint()], Some(&controller_tls))
        .await
        .expect("connects");
    let seen = controller
        .get_raw(&images(), &ObjectName::namespaced("default", "img"))
        .await
        .expect("the controller reads the store");
    assert!(seen.is_some());

    // yunctl's certificate gets nothing of the fleet bus.
    let as_yunctl = bus(&etcd, &yunctl_tls).await;
    let err = as_yunctl
        .fleet_view()
        .await
        .expect_err("fleet is not readable");
    assert!(denied(&err), "{err}");
    let err = as_yunctl
        .client()
        .put("/yun/v1/hosts/h1/info", "x", None)
        .await
        .expect_err("fleet is not writable");
    assert!(denied(&err), "{err}");

    // A host's certificate cannot read the store.
    let host = EtcdStore::connect(
        &[etcd.endpoint()],
        Some(&etcd.tls_for("host:h1").expect("cert")),
    )
    .await
    .expect("connects");
    let err = host
        .list_raw(&images(), None)
        .await
        .expect_err("store is not readable");
    assert!(denied(&err), "{err}");
}
