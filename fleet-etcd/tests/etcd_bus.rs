//! The fleet-bus adapter against a real etcd.
#![allow(clippy::unwrap_used)]

use std::time::Duration;
use yun_fleet::fixtures::host_info;
use yun_fleet::*;
use yun_fleet_etcd::{BusError, EventKind, FleetBus, PlacementOutcome};
use yun_testkit::EtcdServer;

fn vm(uid: &str, mem: u64) -> VmDesired {
    VmDesired {
        v: SCHEMA_VERSION,
        uid: uid.into(),
        namespace: "default".into(),
        name: uid.into(),
        generation: 1,
        resources: Resources {
            cpus: 1,
            memory_mib: mem,
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

fn placement(host: &str, vm: &VmDesired) -> Placement {
    Placement {
        v: SCHEMA_VERSION,
        host: host.into(),
        resources: vm.resources,
        scheduling: Scheduling::default(),
    }
}

async fn bus(etcd: &EtcdServer) -> FleetBus {
    FleetBus::connect(&[etcd.endpoint()], Duration::from_secs(5), None)
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn stale_allocation_revision_never_commits() {
    let etcd = EtcdServer::start().unwrap();
    let bus = bus(&etcd).await;
    let (a, b) = (vm("vm-a", 512), vm("vm-b", 512));
    let seen = bus.host_alloc("n1").await.unwrap();
    assert_eq!(seen.mod_revision, 0);
    let first = bus
        .commit_placement(
            seen.mod_revision,
            &seen.value.with(a.resources, Qos::Burstable),
            &a,
            &placement("n1", &a),
        )
        .await;
    assert_eq!(first.unwrap(), PlacementOutcome::Committed);
    // A second placer that read the allocation before the first commit loses.
    let second = bus
        .commit_placement(
            seen.mod_revision,
            &seen.value.with(b.resources, Qos::Burstable),
            &b,
            &placement("n1", &b),
        )
        .await;
    assert_eq!(second.unwrap(), PlacementOutcome::AllocationChanged);
    let alloc = bus.host_alloc("n1").await.unwrap();
    assert_eq!((alloc.value.memory_mib, alloc.value.vms), (512, 1));
    let (view, _) = bus.host_view("n1").await.unwrap();
    assert!(view.desired.contains_key("vm-a") && !view.desired.contains_key("vm-b"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_vm_is_never_placed_twice() {
    let etcd = EtcdServer::start().unwrap();
    let bus = bus(&etcd).await;
    let a = vm("vm-a", 512);
    let n1 = bus.host_alloc("n1").await.unwrap();
    bus.commit_placement(
        n1.mod_revision,
        &n1.value.with(a.resources, Qos::Burstable),
        &a,
        &placement("n1", &a),
    )
    .await
    .unwrap();
    let n2 = bus.host_alloc("n2").await.unwrap();
    let again = bus
        .commit_placement(
            n2.mod_revision,
            &n2.value.with(a.resources, Qos::Burstable),
            &a,
            &placement("n2", &a),
        )
        .await;
    assert_eq!(
        again.unwrap(),
        PlacementOutcome::AlreadyPlaced(placement("n1", &a))
    );
    assert_eq!(
        bus.host_alloc("n2").await.unwrap().value.vms,
        0,
        "n2 must not be charged"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn release_returns_resources_and_clears_records() {
    let etcd = EtcdServer::start().unwrap();
    let bus = bus(&etcd).await;
    let a = vm("vm-a", 512);
    let alloc = bus.host_alloc("n1").await.unwrap();
    bus.commit_placement(
        alloc.mod_revision,
        &alloc.value.with(a.resources, Qos::Burstable),
        &a,
        &placement("n1", &a),
    )
    .await
    .unwrap();
    let alloc = bus.host_alloc("n1").await.unwrap();
    assert!(
        !bus.release(
            alloc.mod_revision - 1,
            &alloc.value.without(a.resources, Qos::Burstable),
            "n1",
            "vm-a"
        )
        .await
        .unwrap()
    );
    assert!(
        bus.release(
            alloc.mod_revision,
            &alloc.value.without(a.resources, Qos::Burstable),
            "n1",
            "vm-a"
        )
        .await
        .unwrap()
    );
    assert_eq!(
        bus.host_alloc("n1").await.unwrap().value,
        HostAllocation::default()
    );
    assert!(bus.placement("vm-a").await.unwrap().is_none());
    assert!(bus.host_view("n1").await.unwrap().0.desired.is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn host_info_disappears_with_its_lease() {
    let etcd = EtcdServer::start().unwrap();
    let bus = bus(&etcd).await;
    let lease = bus.grant_lease(3).await.unwrap();
    let info = host_info("n1");
    bus.put_host_info(&info, &lease).await.unwrap();
    assert_eq!(bus.host_info("n1").await.unwrap(), Some(info));
    bus.revoke_lease(lease.id()).await.unwrap();
    assert_eq!(bus.host_info("n1").await.unwrap(), None);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_reopened_keep_alive_keeps_the_same_lease_and_its_keys() {
    let etcd = EtcdServer::start().unwrap();
    let bus = bus(&etcd).await;
    let first = bus.grant_lease(2).await.unwrap();
    let info = host_info("n1");
    bus.put_host_info(&info, &first).await.unwrap();
    let id = first.id();
    // The first channel is dropped, as after a failed keep-alive; the lease lives on through a
    // new channel well past its TTL, and the host's key with it.
    drop(first);
    let mut reopened = bus.keep_alive(id, 2).await.unwrap();
    assert_eq!(reopened.id(), id);
    for _ in 0..4 {
        assert!(reopened.refresh().await.unwrap() > 0);
        tokio::time::sleep(Duration::from_millis(1000)).await;
    }
    assert_eq!(bus.host_info("n1").await.unwrap(), Some(info));
    // A lease that is gone says so, so the caller registers again instead of retrying.
    bus.revoke_lease(id).await.unwrap();
    assert!(matches!(
        reopened.refresh().await,
        Err(BusError::LeaseExpired { id: i }) if i == id
    ));
    assert!(matches!(
        bus.keep_alive(id, 2).await,
        Err(BusError::LeaseExpired { id: i }) if i == id
    ));
}

#[tokio::test(flavor = "multi_thread")]
async fn watch_resumes_from_revision_and_reports_compaction() {
    let etcd = EtcdServer::start().unwrap();
    let bus = bus(&etcd).await;
    let a = vm("vm-a", 512);
    bus.put_desired("n1", &a).await.unwrap();
    let (_, rev) = bus.host_view("n1").await.unwrap();
    bus.delete_desired("n1", "vm-a").await.unwrap();
    let mut watch = bus
        .watch_prefix("/yun/v1/hosts/n1/", rev + 1)
        .await
        .unwrap();
    let events = watch.next().await.unwrap();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].kind, EventKind::Delete);
    // Compact past the revision and watch from before it: the caller must be told to relist.
    let mut client = bus.client();
    bus.put_desired("n1", &a).await.unwrap();
    let (_, now) = bus.host_view("n1").await.unwrap();
    client.compact(now, None).await.unwrap();
    let mut stale = bus.watch_prefix("/yun/v1/hosts/n1/", rev).await.unwrap();
    let err = stale.next().await.unwrap_err();
    assert!(matches!(err, BusError::Compacted { .. }), "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn only_one_controller_leads() {
    let etcd = EtcdServer::start().unwrap();
    let (b1, b2) = (bus(&etcd).await, bus(&etcd).await);
    let lead = b1
        .try_lead("c1", 5)
        .await
        .unwrap()
        .expect("first campaigner wins");
    assert!(b2.try_lead("c2", 5).await.unwrap().is_none());
    assert_eq!(b2.current_leader().await.unwrap().as_deref(), Some("c1"));
    b1.resign(lead).await.unwrap();
    assert!(b2.try_lead("c2", 5).await.unwrap().is_some());
}

#[tokio::test(flavor = "multi_thread")]
async fn undecodable_record_names_its_key() {
    let etcd = EtcdServer::start().unwrap();
    let bus = bus(&etcd).await;
    bus.client()
        .put("/yun/v1/hosts/n1/alloc", "{broken", None)
        .await
        .unwrap();
    let err = bus.host_alloc("n1").await.unwrap_err();
    assert!(err.to_string().contains("/yun/v1/hosts/n1/alloc"), "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn group_members_sync_rewrites_only_touched_shards_of_that_host() {
    use std::collections::BTreeSet;
    use std::net::Ipv4Addr;
    use yun_fleet::network::{MEMBER_SHARDS, member_shard};

    let etcd = EtcdServer::start().unwrap();
    let bus = bus(&etcd).await;
    let old: BTreeSet<Ipv4Addr> = (0..5000u32)
        .map(|i| Ipv4Addr::from(0x0a00_0000 + i))
        .collect();
    let written = bus
        .sync_group_members("n1", "t/web", &BTreeSet::new(), &old)
        .await
        .unwrap();
    assert_eq!(written, MEMBER_SHARDS as usize);
    let (view, rev) = bus.host_view("n1").await.unwrap();
    assert_eq!(view.net.group_members("t/web"), old);

    // One VM joins: one shard key changes, on this host only.
    let mut watch = bus.watch_prefix(keys::HOSTS_PREFIX, rev + 1).await.unwrap();
    let joined = Ipv4Addr::new(10, 200, 0, 1);
    let mut new = old.clone();
    new.insert(joined);
    assert_eq!(
        bus.sync_group_members("n1", "t/web", &old, &new)
            .await
            .unwrap(),
        1
    );
    let events = watch.next().await.unwrap();
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(
        HostKey::parse(&events[0].key),
        Some(HostKey::FwMembers {
            host: "n1".into(),
            group: "t/web".into(),
            shard: member_shard(joined)
        })
    );
    assert_eq!(
        bus.host_view("n1")
            .await
            .unwrap()
            .0
            .net
            .group_members("t/web"),
        new
    );
    // Nothing changed: nothing written.
    assert_eq!(
        bus.sync_group_members("n1", "t/web", &new, &new)
            .await
            .unwrap(),
        0
    );
    bus.delete_group_members("n1", "t/web").await.unwrap();
    assert!(bus.host_view("n1").await.unwrap().0.net.members.is_empty());
}
