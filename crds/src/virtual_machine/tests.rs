use super::*;

fn spec() -> VirtualMachineSpec {
    VirtualMachineSpec {
        image: "yun-test".into(),
        cpu: 1,
        memory_mib: 256,
        disk_gib: 1,
        hostname: None,
        user_data: None,
        run_strategy: RunStrategy::Always,
        node_selector: BTreeMap::new(),
        scheduling: None,
        networks: vec![],
        security_groups: vec![],
        volumes: vec![],
        identity: None,
    }
}

#[test]
fn rules_spell_out_the_constants() {
    assert!(USER_DATA_BYTES_RULE.ends_with(&USER_DATA_MAX_BYTES.to_string()));
    assert!(HOSTNAME_DEFAULT_RULE.contains(&format!("size() <= {DNS1123_LABEL_MAX}")));
}

#[test]
fn every_bound_names_its_field() {
    let cases: [(&str, VirtualMachineSpec, &str); 8] = [
        (
            "spec.cpu",
            VirtualMachineSpec { cpu: 0, ..spec() },
            "spec.cpu: must be between 1 and 256, got 0",
        ),
        (
            "spec.cpu",
            VirtualMachineSpec { cpu: 257, ..spec() },
            "spec.cpu: must be between 1 and 256, got 257",
        ),
        (
            "spec.memoryMiB",
            VirtualMachineSpec {
                memory_mib: 63,
                ..spec()
            },
            "spec.memoryMiB: must be between 64 and 4194304, got 63",
        ),
        (
            "spec.memoryMiB",
            VirtualMachineSpec {
                memory_mib: MEMORY_MIB_MAX + 1,
                ..spec()
            },
            "spec.memoryMiB: must be between 64 and 4194304, got 4194305",
        ),
        (
            "spec.diskGiB",
            VirtualMachineSpec {
                disk_gib: 0,
                ..spec()
            },
            "spec.diskGiB: must be between 1 and 65536, got 0",
        ),
        (
            "spec.diskGiB",
            VirtualMachineSpec {
                disk_gib: 65537,
                ..spec()
            },
            "spec.diskGiB: must be between 1 and 65536, got 65537",
        ),
        (
            "spec.image",
            VirtualMachineSpec {
                image: "Bad_Image".into(),
                ..spec()
            },
            "spec.image: must be a DNS-1123",
        ),
        (
            "spec.userData",
            VirtualMachineSpec {
                user_data: Some("é".repeat(USER_DATA_MAX_BYTES / 2 + 1)),
                ..spec()
            },
            "spec.userData: must be at most 32768 bytes, got 32770",
        ),
    ];
    for (path, s, msg) in cases {
        let e = s.validate().unwrap_err();
        assert_eq!(e.errors().len(), 1, "{e}");
        assert!(e.has_path(path), "{e}");
        assert!(e.to_string().starts_with(msg), "{e} !~ {msg}");
    }
    assert_eq!(
        VirtualMachineSpec {
            cpu: 256,
            memory_mib: 64,
            disk_gib: 65536,
            ..spec()
        }
        .validate(),
        Ok(())
    );
}

#[test]
fn all_problems_are_reported_at_once() {
    let e = VirtualMachineSpec {
        cpu: 0,
        memory_mib: 8,
        hostname: Some("a.b".into()),
        ..spec()
    }
    .validate()
    .unwrap_err();
    assert_eq!(e.errors().len(), 3, "{e}");
}

#[test]
fn hostname_defaults_to_a_label_name() {
    assert_eq!(VirtualMachine::new("web-1", spec()).validate(), Ok(()));
    assert_eq!(VirtualMachine::new("web-1", spec()).hostname(), "web-1");
    let e = VirtualMachine::new("web.prod", spec())
        .validate()
        .unwrap_err();
    assert!(e.has_path("spec.hostname"), "{e}");
    let named = VirtualMachine::new(
        "web.prod",
        VirtualMachineSpec {
            hostname: Some("web".into()),
            ..spec()
        },
    );
    assert_eq!(named.validate(), Ok(()));
    assert_eq!(named.hostname(), "web");
}

#[test]
fn spec_defaults_and_wire_names() {
    let s: VirtualMachineSpec =
        serde_json::from_value(serde_json::json!({"image": "i", "cpu": 1, "memoryMiB": 64}))
            .unwrap();
    assert_eq!(s.disk_gib, DISK_GIB_DEFAULT);
    assert_eq!(s.run_strategy, RunStrategy::Always);
    assert!(s.node_selector.is_empty() && s.hostname.is_none());
    assert_eq!(
        (s.scheduling.as_ref(), s.qos_class()),
        (None, QosClass::Burstable)
    );
    assert!(
        !serde_json::to_value(&s)
            .unwrap()
            .as_object()
            .unwrap()
            .contains_key("scheduling")
    );
    let v = serde_json::to_value(VirtualMachineStatus {
        phase: Some(VmPhase::Running),
        domain_uuid: Some("u".into()),
        ..Default::default()
    })
    .unwrap();
    assert_eq!(v["phase"], "Running");
    assert_eq!(v["domainUUID"], "u");
}

#[test]
fn scheduling_is_checked_under_spec_scheduling() {
    use crate::scheduling::{SpreadConstraint, Topology};
    let s = VirtualMachineSpec {
        scheduling: Some(VmScheduling {
            qos_class: QosClass::Guaranteed,
            affinity_group: Some("web".into()),
            anti_affinity_group: Some("web".into()),
            spread: Some(SpreadConstraint {
                group: "web".into(),
                topology: Topology::Zone,
                max_skew: 0,
            }),
            policy: None,
        }),
        ..spec()
    };
    assert_eq!(s.qos_class(), QosClass::Guaranteed);
    let e = s.validate().unwrap_err();
    assert_eq!(e.errors().len(), 2, "{e}");
    assert!(
        e.has_path("spec.scheduling.antiAffinityGroup")
            && e.has_path("spec.scheduling.spread.maxSkew"),
        "{e}"
    );
}

#[test]
fn networks_and_security_groups_default_empty_and_are_left_out() {
    let s: VirtualMachineSpec =
        serde_json::from_value(serde_json::json!({"image": "i", "cpu": 1, "memoryMiB": 64}))
            .unwrap();
    assert!(s.networks.is_empty() && s.security_groups.is_empty());
    // Left out when empty, so the serialized form (and a hash of it) of older specs is unchanged.
    let v = serde_json::to_value(&s).unwrap();
    assert!(
        v.get("networks").is_none() && v.get("securityGroups").is_none(),
        "{v}"
    );
    let st = serde_json::to_value(VirtualMachineStatus::default()).unwrap();
    assert!(st.get("interfaces").is_none(), "{st}");
}

#[test]
fn attachments_round_trip_and_are_checked_under_spec() {
    use crate::vm_network::{NetworkAttachment, VmInterfaceStatus};
    let s: VirtualMachineSpec = serde_yaml::from_str(
        "image: i\ncpu: 1\nmemoryMiB: 64\nnetworks:\n- network: front\n- {network: back, ip: 10.1.0.9, mac: '02:00:00:00:00:09'}\nsecurityGroups: [web, ssh]\n",
    )
    .unwrap();
    assert_eq!(s.validate(), Ok(()));
    assert_eq!(
        s.networks[1],
        NetworkAttachment {
            network: "back".into(),
            ip: Some("10.1.0.9".into()),
            mac: Some("02:00:00:00:00:09".into()),
        }
    );
    assert_eq!(s.security_groups, ["web", "ssh"]);
    let v = serde_json::to_value(&s).unwrap();
    assert_eq!(v["networks"][0], serde_json::json!({"network": "front"}));
    assert_eq!(v["securityGroups"], serde_json::json!(["web", "ssh"]));
    let e = VirtualMachineSpec {
        networks: vec![s.networks[0].clone(), s.networks[0].clone()],
        security_groups: vec!["Web".into()],
        ..spec()
    }
    .validate()
    .unwrap_err();
    assert_eq!(e.errors().len(), 2, "{e}");
    assert!(
        e.has_path("spec.networks") && e.has_path("spec.securityGroups[0]"),
        "{e}"
    );
    let st = VirtualMachineStatus {
        interfaces: vec![VmInterfaceStatus {
            network: "front".into(),
            ip: "10.0.0.2".into(),
            mac: "02:00:00:00:00:02".into(),
        }],
        ..Default::default()
    };
    assert_eq!(
        serde_json::to_value(st).unwrap()["interfaces"],
        serde_json::json!([{"network": "front", "ip": "10.0.0.2", "mac": "02:00:00:00:00:02"}])
    );
}
