//! The fleet simulator against a real etcd: registration, VM boots through the agent's reporter,
//! kills (leases expire), partitions and heals (re-register, nothing re-created), restarts.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::time::Duration;
use yun_fleet::*;
use yun_fleet_etcd::{FleetBus, HostView};
use yun_fleetsim::{SIM_LABEL, SimConfig, SimFleet};
use yun_testkit::{EtcdServer, wait_until_async};

const HOSTS: u32 = 20;
const TTL_SECS: i64 = 2;
/// A dead host's info must be gone within its TTL plus etcd's expiry granularity and slack.
const EXPIRY_BOUND: Duration = Duration::from_secs(TTL_SECS as u64 + 3);

fn vm(uid: &str) -> VmDesired {
    VmDesired {
        v: SCHEMA_VERSION,
        uid: uid.into(),
        namespace: "default".into(),
        name: uid.into(),
        generation: 1,
        resources: Resources {
            cpus: 1,
            memory_mib: 512,
            disk_gib: 1,
        },
        image: ImageSpec {
            name: "default/img".into(),
            disk: Artifact {
                source: "file:///x".into(),
                sha256: "0".repeat(64),
            },
            format: DiskFormat::Qcow2,
            kernel: None,
            initrd: None,
            cmdline: None,
        },
        hostname: uid.into(),
        user_data: None,
        run_strategy: RunStrategy::Always,
        nics: Vec::new(),
        security_groups: Vec::new(),
        volumes: Vec::new(),
        hold: None,
        identity: None,
    }
}

fn vm_uid(host: &str) -> String {
    format!("vm-{host}")
}

async fn hosts(bus: &FleetBus) -> BTreeMap<String, HostView> {
    bus.fleet_view().await.unwrap().0
}

fn live(view: &BTreeMap<String, HostView>, host: &str) -> bool {
    view.get(host).is_some_and(|h| h.info.is_some())
}

async fn wait_for(
    bus: &FleetBus,
    what: &str,
    timeout: Duration,
    pred: impl Fn(&BTreeMap<String, HostView>) -> bool,
) {
    let pred = &pred;
    wait_until_async(what, timeout, || async move { pred(&hosts(bus).await) })
        .await
        .unwrap();
}

fn started_at(view: &BTreeMap<String, HostView>, host: &str) -> Option<String> {
    let observed = view.get(host)?.observed.get(&vm_uid(host))?;
    assert_eq!(observed.phase, VmPhase::Running, "{host}: {observed:?}");
    observed.started_at.clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simulated_fleet_registers_boots_dies_partitions_heals_and_restarts() {
    let etcd = tokio::task::spawn_blocking(EtcdServer::start)
        .await
        .unwrap()
        .unwrap();
    let cfg = SimConfig {
        etcd_endpoints: vec![etcd.endpoint()],
        hosts: HOSTS,
        lease_ttl_secs: TTL_SECS,
        boot_delay: Duration::from_millis(200),
        ready_timeout: Duration::from_secs(15),
        ..SimConfig::default()
    };
    let mut fleet = SimFleet::start(cfg.clone()).await.unwrap();
    let bus = FleetBus::connect(&[etcd.endpoint()], Duration::from_secs(5), None)
        .await
        .unwrap();
    let names: Vec<String> = (0..HOSTS).map(|i| cfg.host_name(i)).collect();

    // Every host registered, with its capacity and topology labels.
    assert_eq!(fleet.stats().registered, i64::from(HOSTS));
    let view = hosts(&bus).await;
    for (i, name) in names.iter().enumerate() {
        let info = view[name].info.as_ref().unwrap();
        assert_eq!(info.labels, cfg.labels(u32::try_from(i).unwrap()));
        assert_eq!(info.labels[SIM_LABEL], "true");
        assert_eq!(info.cpus, cfg.capacity.cpus);
    }

    // One VM per host boots through the agent's reporter.
    for name in &names {
        bus.put_desired(name, &vm(&vm_uid(name))).await.unwrap();
    }
    wait_for(
        &bus,
        "every VM observed Running",
        Duration::from_secs(10),
        |v| {
            names.iter().all(|n| {
                v[n].observed
                    .get(&vm_uid(n))
                    .is_some_and(|o| o.phase == VmPhase::Running && o.observed_generation == 1)
            })
        },
    )
    .await;
    let booted = hosts(&bus).await;
    let boots = fleet.stats().status_reports;
    assert_eq!(boots, u64::from(HOSTS));
    assert_eq!(fleet.stats().vms_running, i64::from(HOSTS));

    // Killed hosts' info expires with their leases; the others stay.
    let killed: Vec<String> = fleet.kill(2).into_iter().map(|(h, _)| h).collect();
    assert_eq!(killed.len(), 2);
    wait_for(&bus, "killed hosts' info expired", EXPIRY_BOUND, |v| {
        killed.iter().all(|h| !live(v, h))
    })
    .await;
    let view = hosts(&bus).await;
    let alive: Vec<&String> = names.iter().filter(|n| !killed.contains(n)).collect();
    assert!(alive.iter().all(|h| live(&view, h)));

    // A partition: the cut hosts' info expires; after heal they re-register, and their VMs are
    // relisted, not re-created.
    let sessions_before = fleet.stats().sessions_started;
    let cut: Vec<String> = fleet
        .partition(5.0 / 18.0)
        .unwrap()
        .into_iter()
        .map(|(h, _)| h)
        .collect();
    assert_eq!(cut.len(), 5);
    assert!(cut.iter().all(|h| !killed.contains(h)));
    wait_for(&bus, "partitioned hosts' info expired", EXPIRY_BOUND, |v| {
        cut.iter().all(|h| !live(v, h))
    })
    .await;
    assert_eq!(fleet.stats().partitioned, 5);
    assert_eq!(fleet.heal().len(), 5);
    assert!(fleet.wait_registered(18, Duration::from_secs(10)).await);
    wait_for(
        &bus,
        "healed hosts registered",
        Duration::from_secs(5),
        |v| cut.iter().all(|h| live(v, h)),
    )
    .await;
    let stats = fleet.stats();
    assert_eq!(stats.sessions_started, sessions_before + 5);
    assert_eq!(stats.status_reports, boots, "nothing re-created after heal");
    let healed = hosts(&bus).await;
    for h in &cut {
        assert_eq!(started_at(&healed, h), started_at(&booted, h));
    }

    // An agent restart: new registration, same VM.
    let host = fleet.restart(1).remove(0).0;
    let old_start = healed[&host].info.as_ref().unwrap().started_at.clone();
    wait_for(
        &bus,
        "restarted host re-registered",
        Duration::from_secs(5),
        |v| {
            v[&host]
                .info
                .as_ref()
                .is_some_and(|i| i.started_at != old_start)
        },
    )
    .await;
    assert!(fleet.wait_registered(18, Duration::from_secs(5)).await);
    assert_eq!(fleet.stats().sessions_started, sessions_before + 6);
    assert_eq!(fleet.stats().status_reports, boots);
    assert_eq!(
        started_at(&hosts(&bus).await, &host),
        started_at(&booted, &host)
    );

    // A VM deleted from the bus is removed and its observation deleted.
    bus.delete_desired(&host, &vm_uid(&host)).await.unwrap();
    wait_for(
        &bus,
        "removed VM's observation deleted",
        Duration::from_secs(5),
        |v| v[&host].observed.is_empty(),
    )
    .await;

    // Quitting with revocation takes every live host's info away at once.
    let done = fleet.shutdown(true).await;
    assert!(done.leases_revoked >= 18, "{done:?}");
    let view = hosts(&bus).await;
    assert!(names.iter().all(|h| !live(&view, h)));
}
