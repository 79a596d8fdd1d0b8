use super::version::skew;
use super::*;
use std::collections::BTreeMap;
use yun_fleet::fixtures::vm_desired;
use yun_fleet::{
    ChapRecord, HostInfo, NicRecord, VmDesired, VmIdentityRecord, VolumeRecord, VolumeSourceRecord,
};
use yun_fleet_etcd::{HostView, Stored};

const DAY: u64 = 86_400;

fn now() -> jiff::Timestamp {
    "2025-06-01T00:00:00Z".parse().unwrap()
}

fn policy(controller: &str) -> Policy {
    Policy {
        controller_version: controller.parse().unwrap(),
        rotation_period: Duration::from_secs(30 * DAY),
    }
}

fn nic() -> NicRecord {
    NicRecord {
        network: "t/net".into(),
        ifname: "yt0000000000001".into(),
        bridge: "ybr1".into(),
        mac: "52:54:00:00:00:01".into(),
        ip: "10.0.0.5".parse().unwrap(),
        prefix: 24,
        gateway: None,
        mtu: 1450,
    }
}

/// A VM with one NIC in security group `ns/default`, no volume, no identity.
fn vm(uid: &str, ns: &str, name: &str) -> VmDesired {
    VmDesired {
        nics: vec![nic()],
        security_groups: vec![format!("{ns}/default")],
        ..vm_desired(uid, ns, name)
    }
}

fn volume(uid: &str, source: VolumeSourceRecord) -> VolumeRecord {
    VolumeRecord {
        id: format!("t/{uid}"),
        uid: uid.into(),
        size_gib: 1,
        read_only: false,
        source,
    }
}

fn iscsi(chap: Option<ChapRecord>) -> VolumeSourceRecord {
    VolumeSourceRecord::Iscsi {
        portals: vec!["10.0.0.9:3260".into()],
        iqn: "iqn.2024-01.dev.yun:t".into(),
        lun: 1,
        chap,
    }
}

/// Built from JSON so that optional fields added to the record later need no change here.
fn identity(issued_at: &str) -> VmIdentityRecord {
    serde_json::from_value(serde_json::json!({
        "generation": 3,
        "credential_id": "cred-1",
        "project_id": "p",
        "issued_at": issued_at,
        "sealed": {"alg": "x", "enc": "x", "ciphertext": "x"},
    }))
    .unwrap()
}

fn host_info(name: &str, agent_version: &str) -> HostInfo {
    HostInfo {
        v: yun_fleet::SCHEMA_VERSION,
        name: name.into(),
        cpus: 4,
        memory_mib: 4096,
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

fn host(agent_version: Option<&str>, name: &str, vms: Vec<VmDesired>) -> (String, HostView) {
    let view = HostView {
        info: agent_version.map(|v| host_info(name, v)),
        desired: vms
            .into_iter()
            .map(|v| {
                let stored = Stored {
                    value: v.clone(),
                    mod_revision: 1,
                };
                (v.uid, stored)
            })
            .collect(),
        ..HostView::default()
    };
    (name.to_owned(), view)
}

fn run(hosts: Vec<(String, HostView)>) -> ComplianceReport {
    report(&hosts.into_iter().collect(), &policy("0.1.0"), now())
}

fn tenant<'a>(r: &'a ComplianceReport, name: &str) -> &'a TenantReport {
    r.tenants.iter().find(|t| t.tenant == name).unwrap()
}

fn credential_report(issued_at: &str) -> Vec<StaleCredential> {
    let with = VmDesired {
        identity: Some(identity(issued_at)),
        ..vm("u1", "t", "a")
    };
    let r = run(vec![host(Some("0.1.0"), "h1", vec![with])]);
    tenant(&r, "t").stale_credentials.clone()
}

fn ago(secs: u64) -> String {
    now()
        .checked_sub(jiff::SignedDuration::from_secs(secs as i64))
        .unwrap()
        .to_string()
}

#[test]
fn a_vm_with_nics_and_no_security_group_is_a_finding() {
    let open = VmDesired {
        security_groups: Vec::new(),
        ..vm("u1", "t", "open")
    };
    let r = run(vec![host(
        Some("0.1.0"),
        "h1",
        vec![open, vm("u2", "t", "filtered")],
    )]);
    let t = tenant(&r, "t");
    assert_eq!(
        t.no_security_group,
        vec![VmRef {
            vm: "t/open".into(),
            uid: "u1".into(),
            host: "h1".into()
        }]
    );
    assert_eq!(
        (t.vms, t.counts.no_security_group, t.counts.total),
        (2, 1, 1)
    );
    assert!(t.no_network.is_empty());
}

#[test]
fn a_vm_without_nics_is_listed_apart_and_not_counted() {
    let r = run(vec![host(
        Some("0.1.0"),
        "h1",
        vec![vm_desired("u1", "t", "isolated")],
    )]);
    let t = tenant(&r, "t");
    assert!(t.no_security_group.is_empty());
    assert_eq!(t.no_network.len(), 1);
    assert_eq!(t.no_network[0].vm, "t/isolated");
    assert_eq!(t.counts.total, 0);
}

#[test]
fn iscsi_and_nfs_volumes_are_clear_text_local_and_fc_are_not() {
    let with_volumes = VmDesired {
        volumes: vec![
            volume("local", VolumeSourceRecord::Local {}),
            volume(
                "fc",
                VolumeSourceRecord::Fc {
                    wwns: vec!["0x5".into()],
                    lun: 0,
                },
            ),
            volume(
                "chap",
                iscsi(Some(ChapRecord::File {
                    path: "/etc/yun/chap".into(),
                })),
            ),
            volume("plain", iscsi(None)),
            volume(
                "nfs",
                VolumeSourceRecord::Nfs {
                    server: "nas1".into(),
                    export: "/srv".into(),
                    path: "a.raw".into(),
                },
            ),
        ],
        ..vm("u1", "t", "db")
    };
    let r = run(vec![host(Some("0.1.0"), "h1", vec![with_volumes])]);
    let found = &tenant(&r, "t").clear_text_volumes;
    let by_uid: BTreeMap<&str, &ClearTextVolume> =
        found.iter().map(|v| (v.volume_uid.as_str(), v)).collect();
    assert_eq!(
        by_uid.keys().copied().collect::<Vec<_>>(),
        ["chap", "nfs", "plain"]
    );
    let chap = by_uid["chap"];
    assert_eq!((chap.driver.as_str(), chap.chap), ("iscsi", Some(true)));
    assert!(
        chap.reason.contains("CHAP authenticates") && chap.reason.contains("does not encrypt"),
        "{}",
        chap.reason
    );
    assert_eq!(chap.target, "10.0.0.9:3260 iqn.2024-01.dev.yun:t lun 1");
    assert_eq!(chap.at.vm, "t/db");
    assert_eq!(chap.volume, "t/chap");
    assert_eq!(by_uid["plain"].chap, Some(false));
    assert!(by_uid["plain"].reason.contains("without CHAP"));
    let nfs = by_uid["nfs"];
    assert_eq!((nfs.driver.as_str(), nfs.chap), ("nfs", None));
    assert_eq!(nfs.target, "nas1:/srv");
    assert!(nfs.reason.contains("krb5p"), "{}", nfs.reason);
    assert_eq!(tenant(&r, "t").counts.clear_text_volumes, 3);
}

#[test]
fn a_credential_exactly_at_the_period_is_compliant_one_second_more_is_stale() {
    assert!(credential_report(&ago(30 * DAY)).is_empty());
    let stale = credential_report(&ago(30 * DAY + 1));
    assert_eq!(stale.len(), 1);
    assert_eq!(stale[0].age_secs, Some((30 * DAY + 1) as i64));
    assert_eq!(stale[0].credential_id, "cred-1");
    assert_eq!(stale[0].generation, 3);
    assert_eq!(stale[0].at.vm, "t/a");
}

#[test]
fn an_old_credential_shows_its_age() {
    let stale = credential_report(&ago(40 * DAY + 2 * 3600));
    assert_eq!(stale[0].age, "40d 2h");
}

#[test]
fn a_fresh_or_future_credential_is_compliant() {
    assert!(credential_report(&ago(DAY)).is_empty());
    assert!(credential_report("2025-06-02T00:00:00Z").is_empty());
}

#[test]
fn a_credential_with_an_unreadable_issue_time_is_reported_without_an_age() {
    let stale = credential_report("last tuesday");
    assert_eq!(stale.len(), 1);
    assert_eq!(stale[0].age_secs, None);
    assert!(stale[0].age.contains("RFC 3339"), "{}", stale[0].age);
}

#[test]
fn a_vm_without_an_identity_has_no_credential_finding() {
    let r = run(vec![host(Some("0.1.0"), "h1", vec![vm("u1", "t", "a")])]);
    assert!(tenant(&r, "t").stale_credentials.is_empty());
}

#[test]
fn versions_parse_strictly() {
    let v: AgentVersion = "1.22.3-rc.1+abc".parse().unwrap();
    assert_eq!((v.major, v.minor, v.patch), (1, 22, 3));
    assert_eq!(v.pre.as_deref(), Some("rc.1"));
    assert_eq!(v.to_string(), "1.22.3-rc.1");
    for bad in [
        "test", "", "1.2", "1.2.3.4", "1.x.3", "1..3", "1.2.3-", "v1.2.3",
    ] {
        assert!(bad.parse::<AgentVersion>().is_err(), "{bad:?}");
    }
}

#[test]
fn one_minor_behind_is_behind_two_minors_is_unsupported() {
    let controller: AgentVersion = "0.3.2".parse().unwrap();
    let at = |v: &str| skew(&v.parse().unwrap(), &controller);
    assert_eq!(at("0.3.2"), None);
    assert_eq!(at("0.3.3"), Some(HostStatus::Ahead), "a patch ahead");
    assert_eq!(at("0.4.0"), Some(HostStatus::Ahead), "a minor ahead");
    assert_eq!(at("1.0.0"), Some(HostStatus::Ahead), "a major ahead");
    assert_eq!(at("0.3.1"), Some(HostStatus::Behind), "a patch behind");
    assert_eq!(at("0.3.2-rc.1"), Some(HostStatus::Behind), "a pre-release");
    assert_eq!(at("0.2.9"), Some(HostStatus::Behind), "one minor behind");
    assert_eq!(at("0.1.9"), Some(HostStatus::Unsupported), "two minors");
    let major: AgentVersion = "1.0.0".parse().unwrap();
    assert_eq!(
        skew(&"0.9.0".parse().unwrap(), &major),
        Some(HostStatus::Unsupported)
    );
}

#[test]
fn hosts_behind_are_reported_per_tenant_and_fleet_wide() {
    let r = report(
        &[
            host(Some("0.3.0"), "current", vec![vm("a1", "a", "x")]),
            host(Some("0.2.0"), "behind", vec![vm("a2", "a", "y")]),
            host(Some("0.1.0"), "old", vec![vm("b1", "b", "z")]),
            host(Some("test"), "odd", vec![]),
            host(None, "silent", vec![vm("b2", "b", "w")]),
            host(None, "gone", vec![]),
        ]
        .into_iter()
        .collect(),
        &policy("0.3.0"),
        now(),
    );
    let statuses = |hosts: &[HostVersionFinding]| -> Vec<(String, HostStatus)> {
        hosts.iter().map(|h| (h.host.clone(), h.status)).collect()
    };
    assert_eq!(
        statuses(&tenant(&r, "a").hosts_behind),
        [("behind".to_owned(), HostStatus::Behind)]
    );
    assert_eq!(
        statuses(&tenant(&r, "b").hosts_behind),
        [
            ("old".to_owned(), HostStatus::Unsupported),
            ("silent".to_owned(), HostStatus::Unregistered)
        ]
    );
    let fleet = r.fleet.as_ref().unwrap();
    assert_eq!(fleet.hosts, 4);
    assert_eq!(
        statuses(&fleet.hosts_behind),
        [
            ("behind".to_owned(), HostStatus::Behind),
            ("odd".to_owned(), HostStatus::Unparseable),
            ("old".to_owned(), HostStatus::Unsupported),
            ("silent".to_owned(), HostStatus::Unregistered),
        ]
    );
    let old = &fleet.hosts_behind[2];
    assert_eq!(old.agent_version.as_deref(), Some("0.1.0"));
    assert!(
        old.detail.contains("2 minor versions behind"),
        "{}",
        old.detail
    );
}

#[test]
fn tenants_are_sorted_and_a_report_narrows_to_one_tenant() {
    let r = run(vec![
        host(Some("0.1.0"), "h1", vec![vm("z1", "zeta", "a")]),
        host(Some("0.1.0"), "h2", vec![vm("a1", "alpha", "a")]),
    ]);
    let names: Vec<&str> = r.tenants.iter().map(|t| t.tenant.as_str()).collect();
    assert_eq!(names, ["alpha", "zeta"]);
    let only = r.clone().for_tenant("zeta");
    assert_eq!(only.tenants.len(), 1);
    assert_eq!(only.tenants[0].tenant, "zeta");
    assert!(only.fleet.is_none());
    let nobody = r.for_tenant("nobody");
    assert_eq!(
        (nobody.tenants[0].tenant.as_str(), nobody.tenants[0].vms),
        ("nobody", 0)
    );
}

#[test]
fn the_json_report_round_trips_with_its_schema() {
    let open = VmDesired {
        security_groups: Vec::new(),
        volumes: vec![volume("plain", iscsi(None))],
        identity: Some(identity(&ago(40 * DAY))),
        ..vm("u1", "t", "open")
    };
    let r = run(vec![host(Some("0.0.1"), "h1", vec![open])]);
    let json = serde_json::to_value(&r).unwrap();
    assert_eq!(json["schema"], SCHEMA);
    assert_eq!(json["rotation_period_secs"], 30 * DAY);
    assert_eq!(json["generated_at"], "2025-06-01T00:00:00Z");
    let t = &json["tenants"][0];
    assert_eq!(t["counts"]["total"], 4);
    assert_eq!(t["clear_text_volumes"][0]["vm"], "t/open");
    assert_eq!(t["clear_text_volumes"][0]["host"], "h1");
    assert_eq!(t["stale_credentials"][0]["age_secs"], 40 * DAY);
    assert_eq!(
        t["hosts_behind"][0]["status"], "behind",
        "0.0.1 is one minor behind 0.1.0"
    );
    let back: ComplianceReport = serde_json::from_value(json).unwrap();
    assert_eq!(back, r);
}

#[test]
fn the_table_has_one_section_per_tenant_with_counts_and_lines() {
    let open = VmDesired {
        security_groups: Vec::new(),
        identity: Some(identity(&ago(40 * DAY))),
        ..vm("u1", "t", "open")
    };
    let r = run(vec![
        host(Some("0.1.0"), "h1", vec![open]),
        host(Some("0.1.0"), "h2", vec![vm("c1", "clean", "ok")]),
    ]);
    let text = render_table(&r);
    assert!(text.contains("rotation period 30d"), "{text}");
    assert!(text.contains("Tenant clean: 1 VMs, 0 findings"), "{text}");
    assert!(text.contains("Tenant t: 1 VMs, 2 findings"), "{text}");
    assert!(text.contains("    t/open (uid u1) on h1\n"), "{text}");
    assert!(
        text.contains("credential cred-1 (generation 3) issued 2025-04-22T00:00:00Z, age 40d 0h"),
        "{text}"
    );
    assert!(
        text.contains("Fleet: 2 registered hosts, 0 not at"),
        "{text}"
    );
}

#[test]
fn rotation_periods_parse_in_friendly_units() {
    assert_eq!(parse_period("30d").unwrap(), Duration::from_secs(30 * DAY));
    assert_eq!(parse_period("12h").unwrap(), Duration::from_secs(12 * 3600));
    assert_eq!(parse_period("90m").unwrap(), Duration::from_secs(90 * 60));
    assert_eq!(
        parse_period("1d12h").unwrap(),
        Duration::from_secs(DAY + 12 * 3600)
    );
    assert_eq!(parse_period("45s").unwrap(), Duration::from_secs(45));
    for bad in [
        "",
        "30",
        "d",
        "30x",
        "0d",
        "1.5d",
        "30 d",
        "99999999999999999999d",
    ] {
        let err = parse_period(bad).unwrap_err().to_string();
        assert!(err.contains("like 30d"), "{bad:?}: {err}");
    }
    assert_eq!(format_period(30 * DAY), "30d");
    assert_eq!(format_period(DAY + 12 * 3600), "1d12h");
}

#[test]
fn ages_read_in_their_two_largest_units() {
    assert_eq!(format_age(30), "30s");
    assert_eq!(format_age(12 * 60 + 5), "12m");
    assert_eq!(format_age(3 * 3600 + 5 * 60), "3h 5m");
    assert_eq!(format_age((40 * DAY + 2 * 3600 + 59) as i64), "40d 2h");
}
