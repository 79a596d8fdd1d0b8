use super::*;

fn vlan(id: u16) -> NetworkSpec {
    NetworkSpec {
        vlan: Some(Vlan { id }),
        vxlan: None,
        cidr: "10.20.0.0/24".into(),
        gateway: None,
        mtu: None,
        reserved: vec![],
    }
}

fn vxlan(vni: u32) -> NetworkSpec {
    NetworkSpec {
        vlan: None,
        vxlan: Some(Vxlan { vni }),
        ..vlan(1)
    }
}

/// The single problem `spec` has, as `path: message`.
fn only_error(spec: &NetworkSpec) -> String {
    let e = spec.validate().unwrap_err();
    assert_eq!(e.errors().len(), 1, "{e}");
    e.to_string()
}

#[test]
fn minimal_networks_are_valid_with_documented_defaults() {
    let v = vlan(100);
    assert_eq!(v.validate(), Ok(()));
    assert_eq!(v.segment(), Ok(Segment::Vlan(100)));
    assert_eq!(v.parsed_cidr(), Ok((Ipv4Addr::new(10, 20, 0, 0), 24)));
    assert_eq!(v.gateway_addr(), Ok(Ipv4Addr::new(10, 20, 0, 1)));
    assert_eq!(v.effective_mtu(), Ok(1500));
    let x = vxlan(VNI_MAX);
    assert_eq!(x.validate(), Ok(()));
    assert_eq!(x.segment(), Ok(Segment::Vxlan(16_777_215)));
    assert_eq!(x.effective_mtu(), Ok(1450));
    let jumbo = NetworkSpec {
        mtu: Some(9000),
        ..vxlan(7)
    };
    assert_eq!(jumbo.effective_mtu(), Ok(9000));
    let net = Network::new("tenant-a", jumbo);
    assert_eq!(net.validate(), Ok(()));
    assert_eq!(
        (net.segment(), net.effective_mtu()),
        (Ok(Segment::Vxlan(7)), Ok(9000))
    );
}

#[test]
fn exactly_one_segment_kind() {
    let both = NetworkSpec {
        vxlan: Some(Vxlan { vni: 5 }),
        ..vlan(5)
    };
    let neither = NetworkSpec {
        vlan: None,
        ..vlan(5)
    };
    for spec in [&both, &neither] {
        assert_eq!(
            only_error(spec),
            "spec: exactly one of spec.vlan or spec.vxlan must be set"
        );
        assert_eq!(spec.segment(), Err(NetworkError::Segment));
    }
    assert_eq!(neither.effective_mtu(), Err(NetworkError::Segment));
}

#[test]
fn every_bound_names_its_field() {
    let cases = [
        (vlan(0), "spec.vlan.id: must be between 1 and 4094, got 0"),
        (
            vlan(4095),
            "spec.vlan.id: must be between 1 and 4094, got 4095",
        ),
        (
            vxlan(0),
            "spec.vxlan.vni: must be between 1 and 16777215, got 0",
        ),
        (
            vxlan(VNI_MAX + 1),
            "spec.vxlan.vni: must be between 1 and 16777215, got 16777216",
        ),
        (
            NetworkSpec {
                mtu: Some(575),
                ..vlan(1)
            },
            "spec.mtu: must be between 576 and 9000, got 575",
        ),
        (
            NetworkSpec {
                mtu: Some(9001),
                ..vlan(1)
            },
            "spec.mtu: must be between 576 and 9000, got 9001",
        ),
    ];
    for (spec, msg) in cases {
        assert_eq!(only_error(&spec), msg);
    }
    for edge in [vlan(1), vlan(4094), vxlan(1)] {
        assert_eq!(edge.validate(), Ok(()));
    }
}

#[test]
fn cidr_is_an_ipv4_network_address_with_prefix_8_to_30() {
    let with_cidr = |cidr: &str| NetworkSpec {
        cidr: cidr.into(),
        ..vlan(1)
    };
    for ok in ["10.0.0.0/8", "192.168.7.252/30", "172.16.0.0/12"] {
        assert_eq!(with_cidr(ok).validate(), Ok(()), "{ok}");
    }
    for bad in [
        "10.0.0.0",
        "10.0.0.0/7",
        "10.0.0.0/31",
        "10.0.0.0/024",
        "fd00::/64",
        "",
    ] {
        let e = only_error(&with_cidr(bad));
        assert!(
            e.starts_with(
                "spec.cidr: must be an IPv4 CIDR block a.b.c.d/prefix with prefix length 8 to 30"
            ),
            "{bad}: {e}"
        );
    }
    let e = only_error(&with_cidr("10.0.0.1/24"));
    assert!(
        e.starts_with("spec.cidr: must be a network address") && e.contains("10.0.0.0/24"),
        "{e}"
    );
    assert!(matches!(
        with_cidr("10.0.0.1/24").parsed_cidr(),
        Err(NetworkError::Cidr(Ipv4Error::HostBits { .. }))
    ));
    assert!(matches!(
        with_cidr("10.0.0.0/31").parsed_cidr(),
        Err(NetworkError::Cidr(Ipv4Error::PrefixLength {
            prefix: 31,
            ..
        }))
    ));
}

#[test]
fn gateway_is_a_host_address_of_the_block() {
    let with_gateway = |gw: &str| NetworkSpec {
        gateway: Some(gw.into()),
        ..vlan(1)
    };
    let ok = with_gateway("10.20.0.254");
    assert_eq!(ok.validate(), Ok(()));
    assert_eq!(ok.gateway_addr(), Ok(Ipv4Addr::new(10, 20, 0, 254)));
    for bad in ["10.20.0.0", "10.20.0.255", "10.20.1.1", "192.168.0.1"] {
        let e = only_error(&with_gateway(bad));
        assert_eq!(
            e,
            format!("spec.gateway: {GATEWAY_MESSAGE} 10.20.0.0/24, got {bad}"),
            "{bad}"
        );
        assert!(matches!(
            with_gateway(bad).gateway_addr(),
            Err(NetworkError::GatewayOutside { .. })
        ));
    }
    let e = only_error(&with_gateway("10.20.0.1.1"));
    assert!(
        e.starts_with("spec.gateway: must be an IPv4 address"),
        "{e}"
    );
    // A block written with host bits set still bounds the gateway, as the CEL rule does.
    let e = NetworkSpec {
        cidr: "10.20.0.9/24".into(),
        gateway: Some("10.20.1.1".into()),
        ..vlan(1)
    }
    .validate()
    .unwrap_err();
    assert!(e.has_path("spec.cidr") && e.has_path("spec.gateway"), "{e}");
}

#[test]
fn reserved_addresses_are_well_formed_and_inside_the_block() {
    let with_reserved = |r: &[&str]| NetworkSpec {
        reserved: r.iter().map(|s| s.to_string()).collect(),
        ..vlan(1)
    };
    assert_eq!(
        with_reserved(&["10.20.0.2", "10.20.0.255"]).validate(),
        Ok(())
    );
    let e = with_reserved(&[
        "10.20.0.2",
        "10.20.0.300",
        "10.21.0.1",
        "10.20.0.3",
        "1.1.1.1",
    ])
    .validate()
    .unwrap_err();
    assert_eq!(e.errors().len(), 2, "{e}");
    assert!(e.has_path("spec.reserved[1]"), "{e}");
    assert_eq!(
        e.errors()[1].to_string(),
        "spec.reserved: every address must be inside spec.cidr 10.20.0.0/24; outside it: [2] 10.21.0.1, [4] 1.1.1.1"
    );
    let many: Vec<String> = (0..=RESERVED_MAX)
        .map(|i| format!("10.20.{}.{}", i / 256, i % 256))
        .collect();
    let e = NetworkSpec {
        cidr: "10.20.0.0/16".into(),
        reserved: many,
        ..vlan(1)
    }
    .validate()
    .unwrap_err();
    assert_eq!(
        e.to_string(),
        "spec.reserved: must have at most 256 items, got 257"
    );
}

#[test]
fn wire_names_and_omitted_fields() {
    let spec: NetworkSpec = serde_yaml::from_str(
        "vxlan: {vni: 4242}\ncidr: 10.0.0.0/16\ngateway: 10.0.255.254\nmtu: 1400\nreserved: [10.0.0.2]\n",
    )
    .unwrap();
    assert_eq!(spec.validate(), Ok(()));
    assert_eq!(
        (spec.segment(), spec.effective_mtu()),
        (Ok(Segment::Vxlan(4242)), Ok(1400))
    );
    let back: NetworkSpec = serde_json::from_value(serde_json::to_value(&spec).unwrap()).unwrap();
    assert_eq!(back, spec);
    assert_eq!(
        serde_json::to_value(vlan(3)).unwrap(),
        serde_json::json!({"vlan": {"id": 3}, "cidr": "10.20.0.0/24"})
    );
    let status = NetworkStatus {
        allocated: Some(3),
        available: Some(250),
        observed_generation: Some(2),
        ..Default::default()
    };
    assert_eq!(
        serde_json::to_value(status).unwrap(),
        serde_json::json!({"conditions": [], "allocated": 3, "available": 250, "observedGeneration": 2})
    );
    for bad in [
        "vlan: {id: 1, pcp: 3}\ncidr: 10.0.0.0/8\n",
        "vlan: {id: 1}\ncidr: 10.0.0.0/8\nreserved: [1]\n",
    ] {
        assert!(serde_yaml::from_str::<NetworkSpec>(bad).is_err(), "{bad}");
    }
}

#[test]
fn rules_spell_out_the_patterns() {
    assert!(cidr_rule().contains(NETWORK_CIDR_PATTERN));
    assert!(gateway_rule().contains(NETWORK_CIDR_PATTERN) && gateway_rule().contains(IPV4_PATTERN));
    assert!(reserved_rule().contains(IPV4_PATTERN));
    assert!(!NETWORK_CIDR_PATTERN.contains('\''));
}
