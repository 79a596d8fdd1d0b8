//! Failure detection and partition handling, driven by the fleet simulator (the real agent
//! fleet-bus code, fake hypervisor) against a real etcd and the controller's fleet index.
//!
//! - A killed host becomes NotReady within a bound after its lease TTL; its VMs are reported
//!   as not reporting; nothing is evicted or re-placed; new placements avoid it.
//! - A partition of half the fleet is a suspected control-plane partition: the alert gauge is
//!   raised, nothing is fenced or evicted; after the heal every host is Ready again and every VM
//!   still runs where it ran, not re-created.

use std::collections::BTreeMap;
use std::time::Duration;
use yun_controller::failure::{FailureConfig, Liveness};
use yun_controller::fleet_ops::{Fleet, PlaceResult, request_for};
use yun_controller::metrics::ControllerMetrics;
use yun_controller::vm_logic::{VmIdentity, placed_status};
use yun_fleet::*;
use yun_fleet_etcd::FleetBus;
use yun_fleetsim::{SimConfig, SimFleet};
use yun_placement::EngineConfig;
use yun_testkit::EtcdServer;

const TTL: i64 = 2;
const HOSTS: u32 = 20;

fn vm(i: usize) -> VmDesired {
    VmDesired {
        v: SCHEMA_VERSION,
        uid: format!("00000000-0000-4000-8000-{i:012}"),
        namespace: "ft".into(),
        name: format!("vm-{i}"),
        generation: 1,
        resources: Resources {
            cpus: 1,
            memory_mib: 512,
            disk_gib: 1,
        },
        image: ImageSpec {
            name: "ft/tiny".into(),
            disk: Artifact {
                source: "file:///nonexistent/disk.qcow2".into(),
                sha256: "b".repeat(64),
            },
            format: DiskFormat::Qcow2,
            kernel: None,
            initrd: None,
            cmdline: None,
        },
        hostname: format!("vm-{i}"),
        user_data: None,
        run_strategy: RunStrategy::Always,
        nics: Vec::new(),
        security_groups: Vec::new(),
        volumes: Vec::new(),
        hold: None,
        identity: None,
    }
}

/// Polls `cond` every 50 ms until it holds or `timeout` passes.
async fn eventually(timeout: Duration, cond: impl Fn() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if cond() {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

struct World {
    _etcd: EtcdServer,
    sim: SimFleet,
    fleet: Fleet,
    metrics: ControllerMetrics,
    bus: FleetBus,
}

async fn world() -> World {
    let etcd = tokio::task::spawn_blocking(EtcdServer::start)
        .await
        .expect("etcd start task")
        .expect("etcd");
    let sim = SimFleet::start(SimConfig {
        etcd_endpoints: vec![etcd.endpoint()],
        hosts: HOSTS,
        prefix: "ft".into(),
        lease_ttl_secs: TTL,
        boot_delay: Duration::ZERO,
        ready_timeout: Duration::from_secs(30),
        ..SimConfig::default()
    })
    .await
    .expect("fleet simulator");
    let bus = FleetBus::connect(&[etcd.endpoint()], Duration::from_secs(5), None)
        .await
        .expect("connect");
    let metrics = ControllerMetrics::new(&mut Default::default());
    let fleet = Fleet::start_with(
        bus.clone(),
        Some(metrics.clone()),
        EngineConfig::default(),
        FailureConfig::default(),
    );
    assert!(
        eventually(Duration::from_secs(20), || fleet.index.lock().ready_hosts()
            == HOSTS as usize)
        .await,
        "the controller never saw every simulated host"
    );
    World {
        _etcd: etcd,
        sim,
        fleet,
        metrics,
        bus,
    }
}

/// Places `n` VMs, one per host (anti-affinity), and waits until each is Running.
async fn place_running(w: &World, n: usize) -> BTreeMap<String, String> {
    let mut placed = BTreeMap::new();
    for i in 0..n {
        let desired = vm(i);
        let sched = Scheduling {
            anti_affinity_group: Some("ft/one-per-host".into()),
            ..Scheduling::default()
        };
        let req = request_for(&desired, &BTreeMap::new(), sched);
        match w.fleet.place(&desired, req).await.expect("place") {
            PlaceResult::Placed { host } => placed.insert(desired.uid.clone(), host),
            PlaceResult::NoFit(n) => panic!("no fit: {n}"),
        };
    }
    assert!(
        eventually(Duration::from_secs(20), || {
            let idx = w.fleet.index.lock();
            placed
                .keys()
                .all(|u| idx.observed(u).is_some_and(|o| o.phase == VmPhase::Running))
        })
        .await,
        "VMs never reported Running"
    );
    placed
}

/// Every VM is still placed where it was, its desired record still on that host.
async fn nothing_moved(w: &World, placed: &BTreeMap<String, String>) {
    for (uid, host) in placed {
        assert_eq!(
            w.fleet.index.lock().engine().host_of(uid),
            Some(host.as_str()),
            "VM {uid} was moved or dropped"
        );
        assert!(
            w.bus.desired(host, uid).await.expect("read").is_some(),
            "VM {uid}'s desired record was withdrawn from {host}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_host_is_not_ready_within_bound_and_nothing_is_evicted() {
    let mut w = world().await;
    let placed = place_running(&w, HOSTS as usize).await;
    let killed = w.sim.kill(1);
    let (host, _) = killed.first().cloned().expect("one host killed");
    let started = std::time::Instant::now();
    assert!(
        eventually(Duration::from_secs(TTL as u64 + 8), || !w
            .fleet
            .index
            .lock()
            .host_alive(&host))
        .await,
        "killed host {host} still Ready after {TTL} s TTL + 8 s"
    );
    let took = started.elapsed();
    assert!(
        took <= Duration::from_secs(TTL as u64 + 6),
        "detection took {took:?}"
    );
    {
        let idx = w.fleet.index.lock();
        assert_eq!(idx.detector().liveness(&host), Liveness::Silent);
        assert!(!idx.detector().partition_suspected());
        assert_eq!(idx.ready_hosts(), HOSTS as usize - 1);
    }
    // Its VM is reported as not reporting, with its last known state kept.
    let (uid, _) = placed
        .iter()
        .find(|(_, h)| **h == host)
        .expect("a VM on the killed host");
    let state = w.fleet.state_on(&host, uid).await.expect("state");
    assert!(!state.host_alive);
    let id = VmIdentity {
        namespace: "ft".into(),
        name: "vm".into(),
        uid: uid.clone(),
        generation: 1,
    };
    let status = placed_status(None, &id, &state, "2026-01-01T00:00:00Z");
    let ready = yun_crds::find_condition(&status.conditions, yun_crds::condition::READY)
        .expect("Ready condition");
    assert_eq!(ready.reason, "HostNotReporting");
    assert_eq!(status.phase.map(|p| p.as_str()), Some("Running"));
    nothing_moved(&w, &placed).await;
    // A new VM never goes to the dead host.
    for i in 100..110 {
        let desired = vm(i);
        let req = request_for(&desired, &BTreeMap::new(), Scheduling::default());
        match w.fleet.place(&desired, req).await.expect("place") {
            PlaceResult::Placed { host: h } => assert_ne!(h, host, "placed on a dead host"),
            PlaceResult::NoFit(n) => panic!("no fit: {n}"),
        }
    }
    w.sim.shutdown(true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mass_silence_is_a_partition_nothing_is_evicted_and_heal_restores() {
    let mut w = world().await;
    let placed = place_running(&w, HOSTS as usize).await;
    let started_at: BTreeMap<String, Option<String>> = placed
        .keys()
        .map(|u| {
            (
                u.clone(),
                w.fleet.index.lock().observed(u).and_then(|o| o.started_at),
            )
        })
        .collect();
    let cut = w.sim.partition(0.5).expect("partition");
    assert_eq!(cut.len(), HOSTS as usize / 2);
    assert!(
        eventually(Duration::from_secs(TTL as u64 + 10), || w
            .fleet
            .index
            .lock()
            .detector()
            .partition_suspected())
        .await,
        "half the fleet went silent but no partition was suspected"
    );
    assert_eq!(
        w.metrics.partition_suspected.get(),
        1,
        "alert gauge not raised"
    );
    {
        let idx = w.fleet.index.lock();
        for (h, _) in &cut {
            assert_eq!(
                idx.detector().liveness(h),
                Liveness::Silent,
                "{h} fenced during a partition"
            );
        }
    }
    nothing_moved(&w, &placed).await;

    w.sim.heal();
    assert!(
        eventually(Duration::from_secs(20), || {
            let idx = w.fleet.index.lock();
            idx.ready_hosts() == HOSTS as usize && !idx.detector().partition_suspected()
        })
        .await,
        "hosts did not come back Ready after the heal"
    );
    assert!(
        eventually(Duration::from_secs(5), || w
            .metrics
            .partition_suspected
            .get()
            == 0)
        .await,
        "alert gauge not cleared"
    );
    nothing_moved(&w, &placed).await;
    for (uid, at) in &started_at {
        let o = w.fleet.index.lock().observed(uid).expect("observed");
        assert_eq!(o.phase, VmPhase::Running, "{uid} not running after heal");
        assert_eq!(&o.started_at, at, "{uid} was re-created by the heal");
    }
    w.sim.shutdown(true).await;
}
