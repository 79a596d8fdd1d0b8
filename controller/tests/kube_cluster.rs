//! End to end against a real Kubernetes cluster: the CRDs are applied, the whole controller
//! (`kube_source::run`) runs against the cluster and a real etcd, and a VirtualMachine goes
//! from creation to Running to deleted; a VM on a Network gets its address, and the Network's
//! deletion waits for the VM; a VM's iSCSI Volume with CHAP from a Secret is granted, attached,
//! and its deletion waits for the VM.
//!
//! Ignored by default (no API server can run on the development machines):
//! `KUBECONFIG=<file> cargo test -p yun-controller --test kube_cluster -- --ignored`.
//! It creates a VmImage and a VirtualMachine named `yun-e2e-<pid>` in `default` and deletes
//! them; the CRDs stay installed.
#![allow(clippy::unwrap_used)]

mod support;

use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::{Api, Client, ResourceExt};
use prometheus_client::registry::Registry;
use std::future::Future;
use std::time::Duration;
use support::fleet::start_fleet;
use support::{NAMESPACE, image, vm};
use yun_controller::devices::{DeviceConfig, Devices};
use yun_controller::fleet_ops::Fleet;
use yun_controller::kube_source;
use yun_controller::metrics::ControllerMetrics;
use yun_crds::{Network, VirtualMachine, VmImage, VmPhase, Volume, find_condition};

const WAIT: Duration = Duration::from_secs(90);
const HOST: &str = "e2e-h1";

async fn eventually<T, F: Future<Output = Option<T>>>(
    what: &str,
    mut probe: impl FnMut() -> F,
) -> T {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        if let Some(v) = probe().await {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// The whole controller running against the cluster until [`Running::stop`].
struct Running {
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<Result<(), kube_source::KubeSourceError>>,
}

impl Running {
    fn start(client: &Client, bus: &yun_fleet_etcd::FleetBus) -> Running {
        let mut registry = Registry::default();
        let metrics = ControllerMetrics::new(&mut registry);
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(kube_source::run(
            client.clone(),
            Fleet::start(bus.clone(), Some(metrics.clone())),
            metrics,
            Devices::new(DeviceConfig::new("/nonexistent".into())),
            async move {
                let _ = stopped.await;
            },
        ));
        Running { stop, task }
    }

    async fn stop(self) {
        self.stop.send(()).unwrap();
        tokio::time::timeout(Duration::from_secs(30), self.task)
            .await
            .unwrap()
            .unwrap()
            .unwrap();
    }
}

/// Clears what the API server sets, so the object can be created.
fn unstored(meta: &mut kube::api::ObjectMeta) {
    meta.uid = None;
    meta.generation = None;
    meta.resource_version = None;
}

async fn install_crds(client: &Client) {
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    for crd in yun_crds::all_crds() {
        let name = crd.name_any();
        crds.patch(
            &name,
            &PatchParams::apply("yun-e2e").force(),
            &Patch::Apply(&crd),
        )
        .await
        .unwrap();
        eventually(&format!("CRD {name} established"), || async {
            let crd = crds.get(&name).await.ok()?;
            let conditions = crd.status?.conditions?;
            conditions
                .iter()
                .any(|c| c.type_ == "Established" && c.status == "True")
                .then_some(())
        })
        .await;
    }
}

#[tokio::test]
#[ignore = "needs a Kubernetes cluster: KUBECONFIG=<file> cargo test -p yun-controller --test kube_cluster -- --ignored"]
async fn vm_lifecycle_on_a_real_cluster() {
    assert!(
        std::env::var_os("KUBECONFIG").is_some(),
        "set KUBECONFIG to the cluster to test against"
    );
    let client = Client::try_default().await.unwrap();
    install_crds(&client).await;
    let fleet = start_fleet(&[(HOST, 8, 8192)]).await;
    let name = format!("yun-e2e-{}", std::process::id());

    let images: Api<VmImage> = Api::namespaced(client.clone(), NAMESPACE);
    let vms: Api<VirtualMachine> = Api::namespaced(client.clone(), NAMESPACE);
    let mut img = image(&name, NAMESPACE);
    img.metadata.uid = None;
    images.create(&PostParams::default(), &img).await.unwrap();
    let mut wanted = vm(&name, "unused", 1, 256);
    wanted.spec.image = name.clone();
    unstored(&mut wanted.metadata);
    let created = vms.create(&PostParams::default(), &wanted).await.unwrap();
    let uid = created.uid().unwrap();

    let controller = Running::start(&client, &fleet.bus);

    // Placed on the only host, with the finalizer held and the desired record in etcd.
    let placed = eventually("the VM to be scheduled", || async {
        let vm = vms.get(&name).await.ok()?;
        let st = vm.status.clone()?;
        let scheduled = find_condition(&st.conditions, "Scheduled")?;
        (scheduled.is_true() && st.host.as_deref() == Some(HOST)).then_some(vm)
    })
    .await;
    assert!(
        placed
            .finalizers()
            .iter()
            .any(|f| f == kube_source::FINALIZER)
    );
    let (view, _) = fleet.bus.host_view(HOST).await.unwrap();
    assert!(view.desired.contains_key(&uid));

    // The agent reports Running.
    fleet
        .report(HOST, &uid, yun_fleet::VmPhase::Running, 1)
        .await;
    eventually("phase Running", || async {
        let st = vms.get(&name).await.ok()?.status?;
        (st.phase == Some(VmPhase::Running) && find_condition(&st.conditions, "Ready")?.is_true())
            .then_some(())
    })
    .await;

    // Deletion waits for the agent, then the object goes away and the resources are released.
    vms.delete(&name, &DeleteParams::default()).await.unwrap();
    eventually("phase Deleting", || async {
        (vms.get(&name).await.ok()?.status?.phase == Some(VmPhase::Deleting)).then_some(())
    })
    .await;
    assert!(fleet.bus.placement(&uid).await.unwrap().is_some());
    fleet.bus.delete_observed(HOST, &uid).await.unwrap();
    eventually("the VM to be gone", || async {
        vms.get_opt(&name).await.ok()?.is_none().then_some(())
    })
    .await;
    assert!(fleet.bus.placement(&uid).await.unwrap().is_none());
    assert_eq!(fleet.bus.host_alloc(HOST).await.unwrap().value.vms, 0);

    images
        .delete(&name, &DeleteParams::default())
        .await
        .unwrap();
    controller.stop().await;
}

#[tokio::test]
#[ignore = "needs a Kubernetes cluster: KUBECONFIG=<file> cargo test -p yun-controller --test kube_cluster -- --ignored"]
async fn network_on_a_real_cluster() {
    assert!(
        std::env::var_os("KUBECONFIG").is_some(),
        "set KUBECONFIG to the cluster to test against"
    );
    let client = Client::try_default().await.unwrap();
    install_crds(&client).await;
    let fleet = start_fleet(&[(HOST, 8, 8192)]).await;
    let name = format!("yun-e2e-net-{}", std::process::id());
    // A VNI no other test network is likely to hold.
    let vni = 0x00e2_0000 + (std::process::id() % 0xffff);

    let images: Api<VmImage> = Api::namespaced(client.clone(), NAMESPACE);
    let networks: Api<Network> = Api::namespaced(client.clone(), NAMESPACE);
    let vms: Api<VirtualMachine> = Api::namespaced(client.clone(), NAMESPACE);
    let mut img = image(&name, NAMESPACE);
    img.metadata.uid = None;
    images.create(&PostParams::default(), &img).await.unwrap();
    let net: Network = serde_json::from_value(serde_json::json!({
        "apiVersion": "yun.dev/v1alpha1", "kind": "Network",
        "metadata": {"name": name, "namespace": NAMESPACE},
        "spec": {"vxlan": {"vni": vni}, "cidr": "10.250.0.0/24"},
    }))
    .unwrap();
    networks.create(&PostParams::default(), &net).await.unwrap();
    let mut wanted = vm(&name, "unused", 1, 256);
    wanted.spec.image = name.clone();
    wanted.spec.networks = serde_json::from_value(serde_json::json!([{"network": name}])).unwrap();
    unstored(&mut wanted.metadata);
    let created = vms.create(&PostParams::default(), &wanted).await.unwrap();
    let uid = created.uid().unwrap();

    let controller = Running::start(&client, &fleet.bus);

    // Placed with the first free address, reported in status.interfaces.
    let ip = eventually("the VM to be placed with an address", || async {
        let st = vms.get(&name).await.ok()?.status?;
        st.host.as_ref()?;
        st.interfaces.first().map(|i| i.ip.clone())
    })
    .await;
    assert_eq!(ip, "10.250.0.2");
    eventually("the Network's status", || async {
        let st = networks.get(&name).await.ok()?.status?;
        (find_condition(&st.conditions, "Ready")?.is_true() && st.allocated == Some(1))
            .then_some(())
    })
    .await;

    // Deleting the Network waits for the VM.
    networks
        .delete(&name, &DeleteParams::default())
        .await
        .unwrap();
    eventually("DeletionBlocked on the Network", || async {
        let st = networks.get(&name).await.ok()?.status?;
        find_condition(&st.conditions, kube_source::DELETION_BLOCKED)?
            .is_true()
            .then_some(())
    })
    .await;
    vms.delete(&name, &DeleteParams::default()).await.unwrap();
    eventually("the VM to be withdrawn", || async {
        (vms.get(&name).await.ok()?.status?.phase == Some(VmPhase::Deleting)).then_some(())
    })
    .await;
    fleet.bus.delete_observed(HOST, &uid).await.unwrap();
    eventually("the Network to be gone", || async {
        networks.get_opt(&name).await.ok()?.is_none().then_some(())
    })
    .await;

    images
        .delete(&name, &DeleteParams::default())
        .await
        .unwrap();
    controller.stop().await;
}

#[tokio::test]
#[ignore = "needs a Kubernetes cluster: KUBECONFIG=<file> cargo test -p yun-controller --test kube_cluster -- --ignored"]
async fn volume_on_a_real_cluster() {
    assert!(
        std::env::var_os("KUBECONFIG").is_some(),
        "set KUBECONFIG to the cluster to test against"
    );
    let client = Client::try_default().await.unwrap();
    install_crds(&client).await;
    let fleet = start_fleet(&[(HOST, 8, 8192)]).await;
    let name = format!("yun-e2e-vol-{}", std::process::id());

    let images: Api<VmImage> = Api::namespaced(client.clone(), NAMESPACE);
    let volumes: Api<Volume> = Api::namespaced(client.clone(), NAMESPACE);
    let secrets: Api<Secret> = Api::namespaced(client.clone(), NAMESPACE);
    let vms: Api<VirtualMachine> = Api::namespaced(client.clone(), NAMESPACE);
    let mut img = image(&name, NAMESPACE);
    img.metadata.uid = None;
    images.create(&PostParams::default(), &img).await.unwrap();
    let secret: Secret = serde_json::from_value(serde_json::json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": name, "namespace": NAMESPACE},
        "stringData": {"username": "e2e", "password": "e2e-password"},
    }))
    .unwrap();
    secrets
        .create(&PostParams::default(), &secret)
        .await
        .unwrap();
    let volume: Volume = serde_json::from_value(serde_json::json!({
        "apiVersion": "yun.dev/v1alpha1", "kind": "Volume",
        "metadata": {"name": name, "namespace": NAMESPACE},
        "spec": {"sizeGiB": 1, "iscsi": {"portals": ["192.0.2.10"],
                 "iqn": "iqn.2025-01.dev.yun:e2e", "lun": 1,
                 "chap": {"secretRef": {"name": name}}}},
    }))
    .unwrap();
    let volume_uid = volumes
        .create(&PostParams::default(), &volume)
        .await
        .unwrap()
        .uid()
        .unwrap();
    let mut wanted = vm(&name, "unused", 1, 256);
    wanted.spec.image = name.clone();
    wanted.spec.volumes = serde_json::from_value(serde_json::json!([{"volume": name}])).unwrap();
    unstored(&mut wanted.metadata);
    let uid = vms
        .create(&PostParams::default(), &wanted)
        .await
        .unwrap()
        .uid()
        .unwrap();

    let controller = Running::start(&client, &fleet.bus);

    // Granted: the host's desired record carries the volume with the Secret's credentials.
    eventually("VolumesReady on the VM", || async {
        let st = vms.get(&name).await.ok()?.status?;
        find_condition(&st.conditions, "VolumesReady")?
            .is_true()
            .then_some(())
    })
    .await;
    let desired = fleet.bus.desired(HOST, &uid).await.unwrap().unwrap();
    assert!(matches!(
        &desired.volumes[0].source,
        yun_fleet::VolumeSourceRecord::Iscsi { chap: Some(yun_fleet::ChapRecord::Inline { username, .. }), .. } if username == "e2e"
    ));

    // The host attaches it.
    let attached = yun_fleet::AttachmentRecord {
        v: yun_fleet::SCHEMA_VERSION,
        volume: format!("{NAMESPACE}/{name}"),
        phase: yun_fleet::AttachPhase::Attached,
        target_dev: Some("vdb".into()),
        message: None,
        attempts: 0,
        updated_at: "2025-01-01T00:00:00Z".into(),
    };
    fleet
        .bus
        .put_attachment(HOST, &uid, &volume_uid, &attached)
        .await
        .unwrap();
    eventually("the Volume Attached", || async {
        let st = volumes.get(&name).await.ok()?.status?;
        (st.phase == Some(yun_crds::VolumePhase::Attached)).then_some(())
    })
    .await;

    // Deleting the Volume waits for its holder; deleting the VM and the host's detach free it.
    volumes
        .delete(&name, &DeleteParams::default())
        .await
        .unwrap();
    eventually("DeletionBlocked on the Volume", || async {
        let st = volumes.get(&name).await.ok()?.status?;
        find_condition(&st.conditions, kube_source::DELETION_BLOCKED)?
            .is_true()
            .then_some(())
    })
    .await;
    vms.delete(&name, &DeleteParams::default()).await.unwrap();
    eventually("the VM to be withdrawn", || async {
        (vms.get(&name).await.ok()?.status?.phase == Some(VmPhase::Deleting)).then_some(())
    })
    .await;
    fleet
        .bus
        .delete_attachment(HOST, &uid, &volume_uid)
        .await
        .unwrap();
    fleet.bus.delete_observed(HOST, &uid).await.unwrap();
    eventually("the Volume to be gone", || async {
        volumes.get_opt(&name).await.ok()?.is_none().then_some(())
    })
    .await;
    assert!(fleet.bus.volume_claim(&volume_uid).await.unwrap().is_none());

    secrets
        .delete(&name, &DeleteParams::default())
        .await
        .unwrap();
    images
        .delete(&name, &DeleteParams::default())
        .await
        .unwrap();
    controller.stop().await;
}
