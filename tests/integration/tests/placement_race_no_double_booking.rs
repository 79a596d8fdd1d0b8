//! Two controllers (two independent etcd connections) racing to place more VMs than fit on one
//! host commit exactly as many as fit; the allocation and placement records agree.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;
use yun_controller::fleet_ops::{Fleet, PlaceResult, request_for};
use yun_fleet::{
    Artifact, DiskFormat, HostInfo, ImageSpec, Resources, RunStrategy, SCHEMA_VERSION, Scheduling,
    VmDesired,
};
use yun_fleet_etcd::FleetBus;
use yun_integration::{etcd_get_json, etcd_keys};
use yun_testkit::EtcdServer;

const HOST: &str = "race-host";
const VMS_PER_PLACER: usize = 20;

fn vm(uid: String) -> VmDesired {
    VmDesired {
        v: SCHEMA_VERSION,
        name: uid.clone(),
        hostname: uid.clone(),
        uid,
        namespace: "default".into(),
        generation: 1,
        resources: Resources {
            cpus: 1,
            memory_mib: 1024,
            disk_gib: 1,
        },
        image: ImageSpec {
            name: "img".into(),
            disk: Artifact {
                source: "file:///nonexistent/disk.qcow2".into(),
                sha256: "0".repeat(64),
            },
            format: DiskFormat::Qcow2,
            kernel: None,
            initrd: None,
            cmdline: None,
        },
        user_data: None,
        run_strategy: RunStrategy::Always,
        nics: Vec::new(),
        security_groups: Vec::new(),
        volumes: Vec::new(),
        hold: None,
        identity: None,
    }
}

async fn placer(endpoint: String, prefix: &'static str) -> Vec<(String, PlaceResult)> {
    let bus = FleetBus::connect(&[endpoint], Duration::from_secs(10), None)
        .await
        .expect("connect");
    let fleet = Fleet::start(bus, None);
    let tasks: Vec<_> = (0..VMS_PER_PLACER)
        .map(|i| {
            let fleet = fleet.clone();
            tokio::spawn(async move {
                let desired = vm(format!("{prefix}-{i}"));
                let request = request_for(&desired, &BTreeMap::new(), Scheduling::default());
                let result = fleet.place(&desired, request).await;
                (
                    desired.uid,
                    result.expect("placement must not fail or give up"),
                )
            })
        })
        .collect();
    let mut results = Vec::new();
    for task in tasks {
        results.push(task.await.expect("placement task"));
    }
    results
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn placement_race_no_double_booking() {
    let etcd = tokio::task::spawn_blocking(EtcdServer::start)
        .await
        .unwrap()
        .expect("etcd");
    let endpoint = etcd.endpoint();
    let registrar = FleetBus::connect(
        std::slice::from_ref(&endpoint),
        Duration::from_secs(10),
        None,
    )
    .await
    .expect("connect");
    let lease = registrar.grant_lease(60).await.expect("lease");
    let info = HostInfo {
        v: SCHEMA_VERSION,
        name: HOST.into(),
        cpus: 4,
        memory_mib: 4096,
        disk_gib: 100,
        labels: BTreeMap::new(),
        agent_version: "integration-test".into(),
        virt_type: "qemu".into(),
        started_at: "2026-01-01T00:00:00Z".into(),
        tunnel_ip: None,
        seal_key: None,
        metrics_address: None,
    };
    registrar
        .put_host_info(&info, &lease)
        .await
        .expect("register host");

    let (a, b) = tokio::join!(
        tokio::spawn(placer(endpoint.clone(), "race-a")),
        tokio::spawn(placer(endpoint.clone(), "race-b"))
    );
    let results: Vec<_> = a
        .expect("placer a")
        .into_iter()
        .chain(b.expect("placer b"))
        .collect();
    assert_eq!(results.len(), 2 * VMS_PER_PLACER);

    let placed: BTreeSet<String> = results
        .iter()
        .filter_map(|(uid, r)| match r {
            PlaceResult::Placed { host } => {
                assert_eq!(host, HOST);
                Some(uid.clone())
            }
            PlaceResult::NoFit(_) => None,
        })
        .collect();
    let no_fit = results
        .iter()
        .filter(|(_, r)| matches!(r, PlaceResult::NoFit(_)))
        .count();
    assert_eq!(
        placed.len(),
        4,
        "4 GiB host takes exactly four 1 GiB VMs: {results:?}"
    );
    assert_eq!(no_fit, 2 * VMS_PER_PLACER - 4, "all others do not fit");

    let (alloc, placement_keys, desired_keys) = {
        let endpoint = endpoint.clone();
        tokio::task::spawn_blocking(move || {
            (
                etcd_get_json(&endpoint, &format!("/yun/v1/hosts/{HOST}/alloc")).expect("alloc"),
                etcd_keys(&endpoint, "/yun/v1/placements/"),
                etcd_keys(&endpoint, &format!("/yun/v1/hosts/{HOST}/vms/")),
            )
        })
        .await
        .expect("read etcd")
    };
    assert_eq!(alloc["memory_mib"], 4096, "{alloc}");
    assert_eq!(alloc["vms"], 4, "{alloc}");
    assert_eq!(alloc["cpus"], 4, "{alloc}");
    let committed: BTreeSet<String> = placement_keys
        .into_iter()
        .map(|k| k.trim_start_matches("/yun/v1/placements/").to_owned())
        .collect();
    assert_eq!(
        committed, placed,
        "placement records are exactly the VMs told Placed"
    );
    let desired: BTreeSet<String> = desired_keys
        .into_iter()
        .map(|k| k.rsplit('/').next().unwrap_or_default().to_owned())
        .collect();
    assert_eq!(desired, placed, "desired records only for placed VMs");
    drop(etcd);
}
