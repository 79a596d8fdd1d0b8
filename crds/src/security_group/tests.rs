use super::*;

fn tcp(ports: &[(u16, Option<u16>)]) -> SgRule {
    SgRule {
        protocol: Protocol::Tcp,
        ports: ports
            .iter()
            .map(|&(port, end_port)| PortRange { port, end_port })
            .collect(),
        remote: None,
        description: None,
    }
}

fn cidr(block: &str) -> Option<Remote> {
    Some(Remote {
        cidr: Some(block.into()),
        security_group: None,
    })
}

fn group(name: &str) -> Option<Remote> {
    Some(Remote {
        cidr: None,
        security_group: Some(name.into()),
    })
}

fn ingress(rules: Vec<SgRule>) -> SecurityGroupSpec {
    SecurityGroupSpec {
        ingress: rules,
        egress: vec![],
    }
}

/// The single problem `spec` has, as `path: message`.
fn only_error(spec: &SecurityGroupSpec) -> String {
    let e = spec.validate().unwrap_err();
    assert_eq!(e.errors().len(), 1, "{e}");
    e.to_string()
}

#[test]
fn typical_group_is_valid() {
    let spec = SecurityGroupSpec {
        ingress: vec![
            SgRule {
                remote: cidr("0.0.0.0/0"),
                description: Some("web".into()),
                ..tcp(&[(80, None), (443, None)])
            },
            SgRule {
                remote: group("web"),
                ..tcp(&[(8000, Some(8099))])
            },
            SgRule {
                protocol: Protocol::Icmp,
                remote: cidr("192.0.2.7/32"),
                ..Default::default()
            },
        ],
        egress: vec![SgRule::default()],
    };
    assert_eq!(spec.validate(), Ok(()));
    assert_eq!(SecurityGroup::new("web", spec.clone()).validate(), Ok(()));
    assert_eq!(SecurityGroupSpec::default().validate(), Ok(()));
    assert_eq!(spec.ingress[1].ports[0].end(), 8099);
    assert_eq!(spec.ingress[0].ports[1].end(), 443);
}

#[test]
fn port_bounds_and_order_name_their_field() {
    let cases = [
        (
            tcp(&[(22, None), (0, None)]),
            "spec.ingress[0].ports[1].port: must be between 1 and 65535, got 0",
        ),
        (
            tcp(&[(22, None), (100, Some(0))]),
            "spec.ingress[0].ports[1].endPort: must be between 1 and 65535, got 0",
        ),
        (
            tcp(&[(22, None), (100, Some(99))]),
            "spec.ingress[0].ports[1].endPort: must be at least port (100), got 99",
        ),
    ];
    for (rule, msg) in cases {
        assert_eq!(only_error(&ingress(vec![rule])), msg);
    }
    assert_eq!(
        ingress(vec![tcp(&[(1, Some(65535)), (7, Some(7))])]).validate(),
        Ok(())
    );
    let e = only_error(&ingress(vec![tcp(&[(1, None); PORTS_MAX + 1])]));
    assert_eq!(
        e,
        "spec.ingress[0].ports: must have at most 32 items, got 33"
    );
}

#[test]
fn ports_only_with_tcp_or_udp() {
    for protocol in [Protocol::Icmp, Protocol::Any] {
        let rule = SgRule {
            protocol,
            ..tcp(&[(53, None)])
        };
        let spec = SecurityGroupSpec {
            ingress: vec![],
            egress: vec![SgRule::default(), rule],
        };
        assert_eq!(
            only_error(&spec),
            format!(
                "spec.egress[1].ports: ports are only allowed with protocol tcp or udp, got {}",
                protocol.as_str()
            )
        );
    }
    let udp = SgRule {
        protocol: Protocol::Udp,
        ..tcp(&[(53, None)])
    };
    assert_eq!(ingress(vec![udp]).validate(), Ok(()));
}

#[test]
fn remote_is_a_network_block_or_a_group() {
    let with_remote = |remote| {
        ingress(vec![SgRule {
            remote,
            ..Default::default()
        }])
    };
    let cases = [
        (
            Some(Remote {
                cidr: Some("10.0.0.0/8".into()),
                security_group: Some("web".into()),
            }),
            "spec.ingress[0].remote: exactly one of cidr or securityGroup must be set",
        ),
        (
            Some(Remote {
                cidr: None,
                security_group: None,
            }),
            "spec.ingress[0].remote: exactly one of cidr or securityGroup must be set",
        ),
        (
            cidr("10.0.0.1/8"),
            "spec.ingress[0].remote.cidr: must be a network address",
        ),
        (
            cidr("10.0.0.0/33"),
            "spec.ingress[0].remote.cidr: must be an IPv4 CIDR block",
        ),
        (
            cidr("10.0.0.0"),
            "spec.ingress[0].remote.cidr: must be an IPv4 CIDR block",
        ),
        (
            group("Web_Servers"),
            "spec.ingress[0].remote.securityGroup: must be a DNS-1123 subdomain",
        ),
    ];
    for (remote, msg) in cases {
        let e = only_error(&with_remote(remote));
        assert!(e.starts_with(msg), "{e} !~ {msg}");
    }
    assert_eq!(with_remote(cidr("0.0.0.0/0")).validate(), Ok(()));
}

#[test]
fn list_and_description_limits() {
    let e = only_error(&SecurityGroupSpec {
        ingress: vec![],
        egress: vec![SgRule::default(); RULES_MAX + 1],
    });
    assert_eq!(e, "spec.egress: must have at most 200 items, got 201");
    assert_eq!(
        SecurityGroupSpec {
            ingress: vec![SgRule::default(); RULES_MAX],
            egress: vec![SgRule::default(); RULES_MAX],
        }
        .validate(),
        Ok(())
    );
    let described = |n: usize| {
        ingress(vec![SgRule {
            description: Some("é".repeat(n)),
            ..Default::default()
        }])
    };
    assert_eq!(described(DESCRIPTION_MAX).validate(), Ok(()));
    assert_eq!(
        only_error(&described(DESCRIPTION_MAX + 1)),
        "spec.ingress[0].description: must be at most 255 characters long, got 256"
    );
}

#[test]
fn wire_names_and_defaults() {
    let spec: SecurityGroupSpec = serde_yaml::from_str(
        "ingress:\n- protocol: tcp\n  ports: [{port: 8000, endPort: 8080}]\n  remote: {securityGroup: lb}\negress:\n- {}\n",
    )
    .unwrap();
    assert_eq!(spec.validate(), Ok(()));
    assert_eq!(spec.egress, [SgRule::default()]);
    assert_eq!(spec.egress[0].protocol, Protocol::Any);
    assert_eq!(
        serde_json::to_value(&spec).unwrap(),
        serde_json::json!({
            "ingress": [{"protocol": "tcp", "ports": [{"port": 8000, "endPort": 8080}],
                         "remote": {"securityGroup": "lb"}}],
            "egress": [{"protocol": "any"}]
        })
    );
    let empty: SecurityGroupSpec = serde_yaml::from_str("ingress:\negress: []\n").unwrap();
    assert_eq!(empty, SecurityGroupSpec::default());
    for bad in [
        "ingress: [{protocol: TCP}]\n",
        "ingress: [{protocol: sctp}]\n",
        "ingress: [{ports: [{port: 70000}]}]\n",
        "ingress: [{remote: {cidr: 10}}]\n",
        "ingress: [{action: deny}]\n",
    ] {
        assert!(
            serde_yaml::from_str::<SecurityGroupSpec>(bad).is_err(),
            "{bad}"
        );
    }
    let status = SecurityGroupStatus {
        members: Some(4),
        ..Default::default()
    };
    assert_eq!(
        serde_json::to_value(status).unwrap(),
        serde_json::json!({"conditions": [], "members": 4})
    );
}
