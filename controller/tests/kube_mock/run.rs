//! `run`: the whole controller against a scripted cluster.

use crate::steps::{UID, condition, expect_status_apply, status_json};
use crate::support::apiserver::MockApiServer;
use crate::support::fleet::start_fleet;
use crate::support::{IMAGE, NAMESPACE, host, image, vm, with_finalizer};
use http::{Method, StatusCode};
use serde_json::{Value, json};
use std::time::Duration;
use yun_controller::devices::{DeviceConfig, Devices};
use yun_controller::fleet_ops::Fleet;
use yun_controller::kube_source::{self, KubeSourceError};
use yun_controller::metrics::ControllerMetrics;

fn list(kind: &str, items: Vec<Value>) -> Value {
    json!({"apiVersion": "yun.dev/v1alpha1", "kind": kind, "metadata": {"resourceVersion": "10"}, "items": items})
}

#[tokio::test]
async fn run_reconciles_from_the_caches_and_stops_on_shutdown() {
    let fleet = start_fleet(&[("h1", 8, 4096), ("h2", 32, 65536)]).await;
    let (client, mut server) = MockApiServer::start();
    let mut registry = prometheus_client::registry::Registry::default();
    let metrics = ControllerMetrics::new(&mut registry);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let run = tokio::spawn(kube_source::run(
        client,
        Fleet::start(fleet.bus.clone(), Some(metrics.clone())),
        metrics,
        Devices::new(DeviceConfig::new("/nonexistent".into())),
        async move {
            let _ = stopped.await;
        },
    ));
    let held = with_finalizer(vm("web", UID, 2, 512));
    let objects = |resource: &str| -> Value {
        match resource {
            "virtualmachines" => list(
                "VirtualMachineList",
                vec![serde_json::to_value(&held).unwrap()],
            ),
            "vmimages" => list(
                "VmImageList",
                vec![serde_json::to_value(image(IMAGE, NAMESPACE)).unwrap()],
            ),
            "hosts" => list(
                "HostList",
                vec![
                    serde_json::to_value(host("h1", false)).unwrap(),
                    serde_json::to_value(host("h2", true)).unwrap(),
                ],
            ),
            "networks" => list("NetworkList", vec![]),
            "securitygroups" => list("SecurityGroupList", vec![]),
            "volumes" => list("VolumeList", vec![]),
            "deviceidentities" => list("DeviceIdentityList", vec![]),
            other => panic!("unexpected resource {other}"),
        }
    };
    // The cluster: lists answered from the objects above, watches held open and silent.
    let mut watches = Vec::new();
    let mut listed = Vec::new();
    let placed = loop {
        let req = tokio::time::timeout(Duration::from_secs(15), server.receive())
            .await
            .unwrap()
            .unwrap();
        if req.is_event_write() {
            server.record_event(req);
        } else if req.is_watch() {
            watches.push(req);
        } else if req.method == Method::GET {
            let resource = req.path.rsplit('/').next().unwrap().to_owned();
            listed.push(resource.clone());
            req.respond(StatusCode::OK, &objects(&resource));
        } else {
            break expect_status_apply(req, held.clone());
        }
    };
    // The image came from the VmImage cache and the cordon of h2 from the Host cache.
    let st = status_json(&placed);
    assert_eq!(
        (st["phase"].as_str(), st["host"].as_str()),
        (Some("Pending"), Some("h1"))
    );
    assert_eq!(condition(&st, "Scheduled")["status"], "True");
    for resource in [
        "virtualmachines",
        "vmimages",
        "hosts",
        "networks",
        "securitygroups",
        "volumes",
        "deviceidentities",
    ] {
        assert!(
            listed.iter().any(|r| r == resource),
            "{resource} not listed: {listed:?}"
        );
    }
    assert_eq!(watches.len(), 7, "one watch per kind");

    stop.send(()).unwrap();
    server.finish(run).await.unwrap().unwrap();
    assert_eq!(
        fleet.bus.placement(UID).await.unwrap().unwrap().value.host,
        "h1"
    );
}

#[tokio::test]
async fn run_fails_fast_when_the_crds_are_not_installed() {
    let fleet = start_fleet(&[]).await;
    let (client, mut server) = MockApiServer::start();
    let mut registry = prometheus_client::registry::Registry::default();
    let metrics = ControllerMetrics::new(&mut registry);
    let run = tokio::spawn(kube_source::run(
        client,
        Fleet::start(fleet.bus.clone(), None),
        metrics,
        Devices::new(DeviceConfig::new("/nonexistent".into())),
        std::future::pending::<()>(),
    ));
    let req = server.next().await;
    assert_eq!(
        (&req.method, req.path.as_str()),
        (&Method::GET, "/apis/yun.dev/v1alpha1/virtualmachines")
    );
    req.fail(
        404,
        "NotFound",
        "the server could not find the requested resource",
    );
    let err = server.finish(run).await.unwrap().unwrap_err();
    assert!(
        matches!(&err, KubeSourceError::ApiUnavailable { kind, .. } if kind == "VirtualMachine"),
        "{err}"
    );
    assert!(err.to_string().contains("is the CRD installed"), "{err}");
}
