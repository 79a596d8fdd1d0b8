//! The compliance report against a real etcd: two tenants, records written through `FleetBus`
//! as the controller and agents write them. The library report is checked finding by finding,
//! then the real binary is run for its JSON (same findings, exit 0 although there are
//! findings), its `--tenant` narrowing, its table and a refused `--rotation-period`.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::time::Duration;
use yun_controller::compliance::{self, ComplianceReport, HostStatus, Policy, TenantReport};
use yun_fleet::fixtures::vm_desired;
use yun_fleet::{
    ChapRecord, HostInfo, NicRecord, VmDesired, VmIdentityRecord, VolumeRecord, VolumeSourceRecord,
};
use yun_fleet_etcd::{FleetBus, HostLease};
use yun_testkit::EtcdServer;

const CONTROLLER_VERSION: &str = env!("CARGO_PKG_VERSION");
const DAY: i64 = 86_400;

struct Fleet {
    bus: FleetBus,
    endpoint: String,
    _leases: Vec<HostLease>,
    _etcd: EtcdServer,
}

/// `secs` before now, in whole seconds (the binary reports at a whole-second time too).
fn ago(secs: i64) -> String {
    jiff::Timestamp::from_second(jiff::Timestamp::now().as_second() - secs)
        .unwrap()
        .to_string()
}

fn host_info(name: &str, agent_version: &str) -> HostInfo {
    HostInfo {
        v: yun_fleet::SCHEMA_VERSION,
        name: name.into(),
        cpus: 8,
        memory_mib: 8192,
        disk_gib: 100,
        labels: BTreeMap::new(),
        agent_version: agent_version.into(),
        virt_type: "qemu".into(),
        started_at: "2025-01-01T00:00:00Z".into(),
        tunnel_ip: None,
        seal_key: None,
        metrics_address: None,
    }
}

fn nic(ip: &str) -> NicRecord {
    NicRecord {
        network: "t/net".into(),
        ifname: "yt0000000000001".into(),
        bridge: "ybr1".into(),
        mac: "52:54:00:00:00:01".into(),
        ip: ip.parse().unwrap(),
        prefix: 24,
        gateway: None,
        mtu: 1450,
    }
}

/// The sealed box is opaque to the report: any value does.
fn identity(credential_id: &str, issued_at: &str) -> VmIdentityRecord {
    serde_json::from_value(serde_json::json!({
        "generation": 1,
        "credential_id": credential_id,
        "project_id": "p",
        "issued_at": issued_at,
        "sealed": {"alg": "test", "enc": "AA==", "ciphertext": "AA=="},
    }))
    .unwrap()
}

/// `h-current` (the controller's version) runs tenant-a; `h-old` (0.0.9) runs tenant-b;
/// `h-odd` reports a version that is not one and runs nothing.
async fn start() -> Fleet {
    let etcd = tokio::task::spawn_blocking(EtcdServer::start)
        .await
        .unwrap()
        .unwrap();
    let endpoint = etcd.endpoint();
    let bus = FleetBus::connect(
        std::slice::from_ref(&endpoint),
        Duration::from_secs(5),
        None,
    )
    .await
    .unwrap();
    let mut leases = Vec::new();
    for (name, version) in [
        ("h-current", CONTROLLER_VERSION),
        ("h-old", "0.0.9"),
        ("h-odd", "dev-build"),
    ] {
        let lease = bus.grant_lease(60).await.unwrap();
        bus.put_host_info(&host_info(name, version), &lease)
            .await
            .unwrap();
        leases.push(lease);
    }
    let web = VmDesired {
        nics: vec![nic("10.0.0.2")],
        ..vm_desired("uid-web", "tenant-a", "web")
    };
    let db = VmDesired {
        nics: vec![nic("10.0.0.3")],
        security_groups: vec!["tenant-a/db".into()],
        volumes: vec![VolumeRecord {
            id: "tenant-a/db-data".into(),
            uid: "uid-vol".into(),
            size_gib: 10,
            read_only: false,
            source: VolumeSourceRecord::Iscsi {
                portals: vec!["10.9.0.5:3260".into()],
                iqn: "iqn.2024-01.dev.yun:db".into(),
                lun: 1,
                chap: Some(ChapRecord::File {
                    path: "/etc/yun/chap/san".into(),
                }),
            },
        }],
        identity: Some(identity("cred-db", &ago(40 * DAY))),
        ..vm_desired("uid-db", "tenant-a", "db")
    };
    let app = VmDesired {
        nics: vec![nic("10.1.0.2")],
        security_groups: vec!["tenant-b/app".into()],
        identity: Some(identity("cred-app", &ago(DAY))),
        ..vm_desired("uid-app", "tenant-b", "app")
    };
    let batch = vm_desired("uid-batch", "tenant-b", "batch");
    for (host, vm) in [
        ("h-current", web),
        ("h-current", db),
        ("h-old", app),
        ("h-old", batch),
    ] {
        bus.put_desired(host, &vm).await.unwrap();
    }
    Fleet {
        bus,
        endpoint,
        _leases: leases,
        _etcd: etcd,
    }
}

fn tenant<'a>(r: &'a ComplianceReport, name: &str) -> &'a TenantReport {
    r.tenants.iter().find(|t| t.tenant == name).unwrap()
}

fn vms(refs: &[compliance::VmRef]) -> Vec<(&str, &str, &str)> {
    refs.iter()
        .map(|v| (v.vm.as_str(), v.uid.as_str(), v.host.as_str()))
        .collect()
}

/// The findings every check below expects, whichever way the report was produced.
fn assert_findings(r: &ComplianceReport) {
    let names: Vec<&str> = r.tenants.iter().map(|t| t.tenant.as_str()).collect();
    assert_eq!(names, ["tenant-a", "tenant-b"]);

    let a = tenant(r, "tenant-a");
    assert_eq!(a.vms, 2);
    assert_eq!(
        vms(&a.no_security_group),
        [("tenant-a/web", "uid-web", "h-current")]
    );
    assert_eq!(a.clear_text_volumes.len(), 1);
    let vol = &a.clear_text_volumes[0];
    assert_eq!(
        (vol.at.vm.as_str(), vol.at.host.as_str()),
        ("tenant-a/db", "h-current")
    );
    assert_eq!(
        (
            vol.volume.as_str(),
            vol.volume_uid.as_str(),
            vol.driver.as_str()
        ),
        ("tenant-a/db-data", "uid-vol", "iscsi")
    );
    assert_eq!(vol.chap, Some(true));
    assert!(vol.reason.contains("does not encrypt"), "{}", vol.reason);
    assert_eq!(a.stale_credentials.len(), 1);
    let cred = &a.stale_credentials[0];
    assert_eq!(
        (cred.at.vm.as_str(), cred.credential_id.as_str()),
        ("tenant-a/db", "cred-db")
    );
    let age = cred.age_secs.unwrap();
    assert!((40 * DAY..40 * DAY + 120).contains(&age), "{age}");
    assert!(a.hosts_behind.is_empty(), "{:?}", a.hosts_behind);
    assert_eq!(a.counts.total, 3);

    let b = tenant(r, "tenant-b");
    assert_eq!(b.vms, 2);
    assert!(b.no_security_group.is_empty());
    assert!(b.clear_text_volumes.is_empty());
    assert!(b.stale_credentials.is_empty(), "a 1-day-old credential");
    assert_eq!(
        vms(&b.no_network),
        [("tenant-b/batch", "uid-batch", "h-old")]
    );
    let behind: Vec<_> = b
        .hosts_behind
        .iter()
        .map(|h| (h.host.as_str(), h.agent_version.as_deref(), h.status))
        .collect();
    assert_eq!(behind, [("h-old", Some("0.0.9"), HostStatus::Behind)]);
    assert_eq!(b.counts.total, 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn findings_per_tenant_from_a_real_fleet_bus() {
    let fleet = start().await;
    let (hosts, _) = fleet.bus.fleet_view().await.unwrap();
    let policy = Policy {
        controller_version: CONTROLLER_VERSION.parse().unwrap(),
        rotation_period: compliance::parse_period("30d").unwrap(),
    };
    let r = compliance::report(&hosts, &policy, jiff::Timestamp::now());
    assert_findings(&r);
    let fleet_hosts: Vec<_> = r
        .fleet
        .as_ref()
        .unwrap()
        .hosts_behind
        .iter()
        .map(|h| (h.host.as_str(), h.status))
        .collect();
    assert_eq!(
        fleet_hosts,
        [
            ("h-odd", HostStatus::Unparseable),
            ("h-old", HostStatus::Behind)
        ]
    );
}

async fn run_binary(endpoint: &str, args: &[&str]) -> std::process::Output {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_yun-controller"))
        .args(["compliance", "report", "--etcd-endpoints", endpoint])
        .args(args)
        .env_remove("YUN_ETCD_ENDPOINTS")
        .output()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_binary_reports_json_table_and_one_tenant_and_exits_zero() {
    let fleet = start().await;

    let out = run_binary(&fleet.endpoint, &["-o", "json"]).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "findings do not fail the command: {stderr}"
    );
    let r: ComplianceReport = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(r.schema, compliance::SCHEMA);
    assert_eq!(r.controller_version, CONTROLLER_VERSION);
    assert_eq!(r.rotation_period_secs, 30 * DAY as u64);
    assert_findings(&r);
    assert_eq!(r.fleet.as_ref().unwrap().hosts, 3);

    let out = run_binary(&fleet.endpoint, &["-o", "json", "--tenant", "tenant-b"]).await;
    assert!(out.status.success());
    let only: ComplianceReport = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(only.tenants, vec![tenant(&r, "tenant-b").clone()]);
    assert!(only.fleet.is_none(), "no fleet-wide section for one tenant");

    // A longer rotation period clears the 40-day-old credential.
    let out = run_binary(&fleet.endpoint, &["-o", "json", "--rotation-period", "41d"]).await;
    let longer: ComplianceReport = serde_json::from_slice(&out.stdout).unwrap();
    assert!(tenant(&longer, "tenant-a").stale_credentials.is_empty());

    let out = run_binary(&fleet.endpoint, &[]).await;
    assert!(out.status.success());
    let table = String::from_utf8(out.stdout).unwrap();
    for line in [
        "Tenant tenant-a: 2 VMs, 3 findings",
        "    tenant-a/web (uid uid-web) on h-current\n",
        "credential cred-db (generation 1)",
        "Tenant tenant-b: 2 VMs, 1 findings",
        "    h-old: agent 0.0.9 behind: one minor version behind",
        "    h-odd: agent dev-build unparseable:",
    ] {
        assert!(table.contains(line), "{line:?} missing from:\n{table}");
    }

    let out = run_binary(&fleet.endpoint, &["--rotation-period", "30x"]).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("--rotation-period") && stderr.contains("like 30d"),
        "{stderr}"
    );
}
