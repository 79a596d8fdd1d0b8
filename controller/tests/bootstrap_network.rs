//! Tenant networks in bootstrap mode against a real etcd: NICs get addresses from the
//! Network's pool, hosts get the records their VMs need, a VM joining a group reaches only the
//! hosts whose rules name that group, and bad input leaves a clear reason.
#![allow(clippy::unwrap_used)]

mod support;

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::Path;
use std::time::Duration;

use prometheus_client::registry::Registry;
use support::fleet::start_fleet;
use yun_controller::bootstrap::BootstrapSource;
use yun_controller::fleet_ops::Fleet;
use yun_controller::metrics::ControllerMetrics;
use yun_fleet::network::SegmentRecord;
use yun_fleet::{HostInfo, SCHEMA_VERSION, VmDesired};
use yun_fleet_etcd::{FleetBus, HostLease, HostView};

const BASE: &str = r#"apiVersion: yun.dev/v1alpha1
kind: VmImage
metadata: {name: img, namespace: t}
spec:
  os: t
  disk: {source: 'file:///x.qcow2', format: qcow2, sha256: '0000000000000000000000000000000000000000000000000000000000000000'}
---
apiVersion: yun.dev/v1alpha1
kind: Network
metadata: {name: a, namespace: t}
spec:
  vxlan: {vni: 100}
  cidr: 10.0.0.0/24
---
apiVersion: yun.dev/v1alpha1
kind: SecurityGroup
metadata: {name: web, namespace: t}
spec:
  egress: [{}]
---
apiVersion: yun.dev/v1alpha1
kind: SecurityGroup
metadata: {name: db, namespace: t}
spec:
  ingress:
  - {protocol: tcp, ports: [{port: 5432}], remote: {securityGroup: web}}
"#;

fn vm(name: &str, network: &str, group: &str, host: &str) -> String {
    format!(
        "apiVersion: yun.dev/v1alpha1\nkind: VirtualMachine\nmetadata: {{name: {name}, namespace: t}}\nspec:\n  image: img\n  cpu: 1\n  memoryMiB: 128\n  nodeSelector: {{yun.dev/host: {host}}}\n  networks: [{{network: {network}}}]\n  securityGroups: [{group}]\n"
    )
}

async fn register(bus: &FleetBus, name: &str, tunnel: [u8; 4]) -> HostLease {
    let lease = bus.grant_lease(60).await.unwrap();
    let mut labels = BTreeMap::new();
    labels.insert("yun.dev/host".to_string(), name.to_string());
    let info = HostInfo {
        v: SCHEMA_VERSION,
        name: name.into(),
        cpus: 8,
        memory_mib: 8192,
        disk_gib: 100,
        labels,
        agent_version: "test".into(),
        virt_type: "qemu".into(),
        started_at: "2025-01-01T00:00:00Z".into(),
        tunnel_ip: Some(Ipv4Addr::from(tunnel)),
        seal_key: None,
        metrics_address: None,
    };
    bus.put_host_info(&info, &lease).await.unwrap();
    lease
}

fn desired<'a>(hosts: &'a BTreeMap<String, HostView>, host: &str, name: &str) -> &'a VmDesired {
    hosts[host]
        .desired
        .values()
        .map(|s| &s.value)
        .find(|v| v.name == name)
        .unwrap_or_else(|| panic!("{name} not placed on {host}"))
}

/// Runs passes until `done` holds for the fleet view (placement needs the index to have seen
/// the hosts first).
async fn converge(
    src: &mut BootstrapSource,
    bus: &FleetBus,
    done: impl Fn(&BTreeMap<String, HostView>) -> bool,
) -> BTreeMap<String, HostView> {
    for _ in 0..100 {
        src.pass().await.unwrap();
        let (hosts, _) = bus.fleet_view().await.unwrap();
        if done(&hosts) {
            return hosts;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("bootstrap passes did not converge");
}

fn placed(hosts: &BTreeMap<String, HostView>, name: &str) -> bool {
    hosts
        .values()
        .any(|h| h.desired.values().any(|s| s.value.name == name))
}

fn write(dir: &Path, file: &str, text: &str) {
    std::fs::write(dir.join(file), text).unwrap();
}

async fn vm_condition_reason(bus: &FleetBus, name: &str) -> Option<String> {
    let rec = support::stored(bus, "VirtualMachine", "t", name).await?;
    rec["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == "Scheduled")
        .and_then(|c| c["reason"].as_str().map(str::to_owned))
}

#[tokio::test(flavor = "multi_thread")]
async fn vms_get_addresses_and_hosts_get_only_the_records_their_rules_need() {
    let fleet = start_fleet(&[]).await;
    let _h1 = register(&fleet.bus, "h1", [192, 0, 2, 1]).await;
    let _h2 = register(&fleet.bus, "h2", [192, 0, 2, 2]).await;
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "base.yaml", BASE);
    write(dir.path(), "web1.yaml", &vm("web1", "a", "web", "h1"));
    write(dir.path(), "db1.yaml", &vm("db1", "a", "db", "h2"));
    let metrics = ControllerMetrics::new(&mut Registry::default());
    let mut src = BootstrapSource::new(
        dir.path().into(),
        Fleet::start(fleet.bus.clone(), None),
        metrics,
    );
    let hosts = converge(&mut src, &fleet.bus, |h| {
        placed(h, "web1") && placed(h, "db1") && h["h2"].net.groups.is_some()
    })
    .await;

    let web1 = desired(&hosts, "h1", "web1");
    let db1 = desired(&hosts, "h2", "db1");
    let web_ip = web1.nics[0].ip;
    assert_ne!(web_ip, db1.nics[0].ip);
    for ip in [web_ip, db1.nics[0].ip] {
        assert_eq!(ip.octets()[..3], [10, 0, 0], "{ip} is in 10.0.0.0/24");
        assert!(
            ip != Ipv4Addr::new(10, 0, 0, 0) && ip != Ipv4Addr::new(10, 0, 0, 1),
            "{ip} is not the network or gateway address"
        );
    }
    assert_eq!(web1.security_groups, ["t/web"]);
    assert_eq!(web1.nics[0].network, "t/a");

    // h2 runs db, whose rules name web: it holds web's members. h1's web rules name no group.
    assert_eq!(hosts["h2"].net.group_members("t/web"), [web_ip].into());
    assert!(hosts["h1"].net.members.is_empty());
    let h1_nets = &hosts["h1"].net.networks.as_ref().unwrap().networks;
    assert_eq!(
        h1_nets[0].segment,
        SegmentRecord::Vxlan {
            vni: 100,
            peers: [Ipv4Addr::new(192, 0, 2, 2)].into()
        }
    );
    assert_eq!(
        hosts["h1"]
            .net
            .groups
            .as_ref()
            .unwrap()
            .groups
            .keys()
            .collect::<Vec<_>>(),
        ["t/web"]
    );

    // Addresses are sticky: more passes change nothing.
    src.pass().await.unwrap();
    let (again, _) = fleet.bus.fleet_view().await.unwrap();
    assert_eq!(desired(&again, "h1", "web1").nics, web1.nics);

    // web2 joins group web on h1: h2 (whose rules name web) gets the new member.
    let (_, rev) = fleet.bus.fleet_view().await.unwrap();
    write(dir.path(), "web2.yaml", &vm("web2", "a", "web", "h1"));
    let hosts = converge(&mut src, &fleet.bus, |h| {
        h["h2"].net.group_members("t/web").len() == 2
    })
    .await;
    let web2_ip = desired(&hosts, "h1", "web2").nics[0].ip;
    assert_eq!(
        hosts["h2"].net.group_members("t/web"),
        [web_ip, web2_ip].into()
    );
    // h1's records did not change: no rule there names web, and the network's peers are the same.
    let mut watch_from = fleet
        .bus
        .watch_prefix("/yun/v1/hosts/h1/fw/", rev + 1)
        .await
        .unwrap();
    let quiet = tokio::time::timeout(Duration::from_millis(300), watch_from.next()).await;
    assert!(
        quiet.is_err(),
        "h1's firewall records were rewritten: {quiet:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_networks_leave_a_reason_and_place_nothing() {
    let fleet = start_fleet(&[]).await;
    let _h1 = register(&fleet.bus, "h1", [192, 0, 2, 1]).await;
    let dir = tempfile::tempdir().unwrap();
    // A /30 has two usable addresses; the gateway takes one.
    let tiny = "apiVersion: yun.dev/v1alpha1\nkind: Network\nmetadata: {name: tiny, namespace: t}\nspec:\n  vxlan: {vni: 300}\n  cidr: 10.9.0.0/30\n";
    // Overlaps network a (10.0.0.0/24) in the same tenant. Manifests carry no creation time,
    // so the name decides which one is kept: a.
    let overlap = "apiVersion: yun.dev/v1alpha1\nkind: Network\nmetadata: {name: overlap, namespace: t}\nspec:\n  vxlan: {vni: 301}\n  cidr: 10.0.0.128/25\n";
    write(dir.path(), "base.yaml", BASE);
    write(dir.path(), "nets.yaml", &format!("{tiny}---\n{overlap}"));
    write(dir.path(), "t1.yaml", &vm("t1", "tiny", "web", "h1"));
    write(dir.path(), "t2.yaml", &vm("t2", "tiny", "web", "h1"));
    write(dir.path(), "o1.yaml", &vm("o1", "overlap", "web", "h1"));
    write(dir.path(), "m1.yaml", &vm("m1", "missing", "web", "h1"));
    let metrics = ControllerMetrics::new(&mut Registry::default());
    let mut src = BootstrapSource::new(
        dir.path().into(),
        Fleet::start(fleet.bus.clone(), None),
        metrics,
    );
    let hosts = converge(&mut src, &fleet.bus, |h| placed(h, "t1")).await;
    src.pass().await.unwrap();
    for name in ["t2", "o1", "m1"] {
        assert!(!placed(&hosts, name), "{name} was placed");
    }
    assert_eq!(
        vm_condition_reason(&fleet.bus, "t2").await.as_deref(),
        Some("PoolExhausted")
    );
    assert_eq!(
        vm_condition_reason(&fleet.bus, "o1").await.as_deref(),
        Some("NetworkNotReady")
    );
    assert_eq!(
        vm_condition_reason(&fleet.bus, "m1").await.as_deref(),
        Some("NetworkNotReady")
    );
    // The Networks say why, on their own status.
    let cond = |kind: &'static str, name: &'static str, type_: &'static str| {
        let bus = fleet.bus.clone();
        async move {
            let rec = support::stored(&bus, kind, "t", name).await.unwrap();
            let c = rec["status"]["conditions"]
                .as_array()
                .unwrap()
                .iter()
                .find(|c| c["type"] == type_)
                .cloned()
                .unwrap();
            (
                c["status"].as_str().unwrap().to_owned(),
                c["reason"].as_str().unwrap().to_owned(),
                c["message"].as_str().unwrap().to_owned(),
            )
        }
    };
    let (status, reason, _) = cond("Network", "tiny", "AddressesAvailable").await;
    assert_eq!(
        (status.as_str(), reason.as_str()),
        ("False", "PoolExhausted")
    );
    let (status, reason, message) = cond("Network", "overlap", "Ready").await;
    assert_eq!((status.as_str(), reason.as_str()), ("False", "CidrOverlap"));
    assert!(
        message.contains("t/a") || message.contains(" a "),
        "{message}"
    );
    let (status, _, _) = cond("Network", "a", "Ready").await;
    assert_eq!(status, "True");
    let (status, _, _) = cond("SecurityGroup", "db", "RulesResolved").await;
    assert_eq!(status, "True");
}

/// Both modes run one network pass in one order: VMs that held addresses first, then the
/// oldest. Here two new VMs want the only free address of a /30; the older one gets it although
/// its name sorts last (the store lists by name, so a pass in listing order would give the
/// address to the younger one).
#[tokio::test(flavor = "multi_thread")]
async fn the_oldest_vm_gets_a_scarce_address_as_in_kubernetes_mode() {
    use yun_store::ObjectStore;
    let fleet = start_fleet(&[]).await;
    let _h1 = register(&fleet.bus, "h1", [192, 0, 2, 1]).await;
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "base.yaml", BASE);
    write(
        dir.path(),
        "tiny.yaml",
        "apiVersion: yun.dev/v1alpha1\nkind: Network\nmetadata: {name: tiny, namespace: t}\nspec:\n  vxlan: {vni: 101}\n  cidr: 10.1.0.0/30\n",
    );
    let store = yun_store::EtcdStore::new(fleet.bus.clone());
    for name in ["zz-old", "aa-new"] {
        let parsed = yun_crds::parse_manifests(&vm(name, "tiny", "web", "h1")).unwrap();
        let Some(yun_crds::Manifest::VirtualMachine(obj)) = parsed.into_iter().next() else {
            panic!("one VirtualMachine");
        };
        store.create(&obj).await.unwrap();
        // Creation times are whole seconds: the second VM is a second younger.
        tokio::time::sleep(Duration::from_millis(1100)).await;
    }
    let metrics = ControllerMetrics::new(&mut Registry::default());
    let mut src = BootstrapSource::new(
        dir.path().into(),
        Fleet::start(fleet.bus.clone(), None),
        metrics,
    );
    let hosts = converge(&mut src, &fleet.bus, |h| placed(h, "zz-old")).await;
    let old = desired(&hosts, "h1", "zz-old");
    assert_eq!(old.nics[0].ip, Ipv4Addr::new(10, 1, 0, 2), "{:?}", old.nics);
    // A few more passes: the younger VM never takes the address, and says why.
    for _ in 0..5 {
        src.pass().await.unwrap();
    }
    let (hosts, _) = fleet.bus.fleet_view().await.unwrap();
    assert!(
        !placed(&hosts, "aa-new"),
        "the younger VM waits for an address"
    );
    let reason = vm_condition_reason(&fleet.bus, "aa-new").await;
    assert!(
        reason.as_deref().is_some_and(|r| r != "Scheduled"),
        "aa-new: {reason:?}"
    );
    // Both say so in their Events, as `yunctl describe` lists them.
    let events_of = async |name: &str| {
        let vm = support::stored(&fleet.bus, "VirtualMachine", "t", name)
            .await
            .unwrap();
        let uid = vm["metadata"]["uid"].as_str().unwrap().to_owned();
        store.events_for(&uid).await.unwrap()
    };
    let old_events = events_of("zz-old").await;
    assert!(
        old_events
            .iter()
            .any(|e| e.reason == "Scheduled" && e.message.contains("h1")),
        "{old_events:?}"
    );
    let new_events = events_of("aa-new").await;
    assert!(
        new_events
            .iter()
            .any(|e| e.type_ == yun_store::EventType::Warning
                && Some(e.reason.as_str()) == reason.as_deref()
                && e.count == 1),
        "one Warning, not one per pass: {new_events:?}"
    );
}
