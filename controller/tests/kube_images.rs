//! VmImage status kept in step with the fleet bus (`sync_images_once`) against the scripted
//! API server and a real etcd where an agent has published its template cache.
#![allow(clippy::unwrap_used)]

mod support;

use http::StatusCode;
use prometheus_client::registry::Registry;
use std::collections::BTreeMap;
use std::sync::Arc;
use support::apiserver::{MockApiServer, assert_status_apply};
use support::fleet::start_fleet;
use yun_controller::kube_source::sync_images_once;
use yun_controller::metrics::ControllerMetrics;
use yun_crds::{VmImage, VmImageStatus};
use yun_fleet::HostImages;

const STATUS_PATH: &str = "/apis/yun.dev/v1alpha1/namespaces/default/vmimages/tiny/status";
const NOW: &str = "2025-01-01T00:00:00Z";

fn metrics() -> ControllerMetrics {
    ControllerMetrics::new(&mut Registry::default())
}

fn image_with(status: Option<VmImageStatus>) -> Arc<VmImage> {
    let mut image = support::image(support::IMAGE, support::NAMESPACE);
    image.status = status;
    Arc::new(image)
}

#[tokio::test]
async fn cached_image_reports_its_hosts_and_size_and_is_not_rewritten() {
    let fleet = start_fleet(&[("h1", 8, 8192), ("h2", 8, 8192)]).await;
    let cache = BTreeMap::from([(support::SHA256.to_owned(), 4242u64)]);
    fleet
        .bus
        .put_host_images("h1", &HostImages::new(cache))
        .await
        .unwrap();
    let (client, mut server) = MockApiServer::start();
    let metrics = metrics();

    let (c, b, m) = (client.clone(), fleet.bus.clone(), metrics.clone());
    let objects = vec![image_with(None)];
    let task =
        tokio::spawn(async move { sync_images_once(&c, &b, &objects, &m, NOW).await.unwrap() });
    let req = server.next().await;
    assert_status_apply(&req, STATUS_PATH, "VmImage");
    let status: VmImageStatus = serde_json::from_value(req.body["status"].clone()).unwrap();
    assert_eq!(status.hosts, vec!["h1".to_string()], "h2 has not cached it");
    assert_eq!(status.size_bytes, Some(4242));
    let cached = status
        .conditions
        .iter()
        .find(|c| c.type_ == "Cached")
        .unwrap();
    assert!(cached.is_true(), "{cached:?}");
    req.respond(
        StatusCode::OK,
        &serde_json::to_value(image_with(Some(status.clone())).as_ref()).unwrap(),
    );
    assert_eq!(
        server.finish(task).await.unwrap(),
        vec!["default/tiny".to_string()]
    );

    // The object now carries that status: the next sync sends nothing.
    let (c, b, m) = (client.clone(), fleet.bus.clone(), metrics.clone());
    let objects = vec![image_with(Some(status))];
    let task =
        tokio::spawn(async move { sync_images_once(&c, &b, &objects, &m, NOW).await.unwrap() });
    assert!(server.finish(task).await.unwrap().is_empty());
}
