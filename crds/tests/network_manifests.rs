//! `parse_manifests` with the network kinds: `Network`, `SecurityGroup`, and VMs attached to them.

#![allow(clippy::unwrap_used)] // test helpers outside #[test] fns unwrap too

use std::net::Ipv4Addr;

use yun_crds::{
    Manifest, NetworkAttachment, PortRange, Protocol, Remote, Segment, parse_manifests,
};

/// The lines of the error, for assertions on individual problems.
fn problems(yaml: &str) -> Vec<String> {
    match parse_manifests(yaml) {
        Ok(m) => panic!("expected a refusal, parsed {m:?}"),
        Err(e) => e.to_string().lines().map(str::to_owned).collect(),
    }
}

/// A tenant's network, security group and a VM attached to both (and to a second network).
const NETWORKED: &str = "\
apiVersion: yun.dev/v1alpha1
kind: Network
metadata: {name: frontend, namespace: tenant-a}
spec:
  vxlan: {vni: 4001}
  cidr: 10.10.0.0/24
  reserved: [10.10.0.2]
---
apiVersion: yun.dev/v1alpha1
kind: SecurityGroup
metadata: {name: web, namespace: tenant-a}
spec:
  ingress:
  - {protocol: tcp, ports: [{port: 80}, {port: 8000, endPort: 8099}]}
  - protocol: icmp
    remote: {cidr: 10.0.0.0/8}
  - remote: {securityGroup: web}
    description: members talk to each other
  egress:
  - {}
---
apiVersion: yun.dev/v1alpha1
kind: VirtualMachine
metadata: {name: web-1, namespace: tenant-a}
spec:
  image: yun-test
  cpu: 1
  memoryMiB: 256
  networks:
  - network: frontend
  - {network: backend, ip: 10.20.0.5, mac: '02:00:00:14:00:05'}
  securityGroups: [web]
";

#[test]
fn networks_security_groups_and_attachments_parse() {
    let parsed = parse_manifests(NETWORKED).unwrap();
    let kinds: Vec<_> = parsed
        .iter()
        .map(|m| (m.kind(), m.namespace(), m.name()))
        .collect();
    assert_eq!(
        kinds,
        [
            ("Network", Some("tenant-a"), "frontend"),
            ("SecurityGroup", Some("tenant-a"), "web"),
            ("VirtualMachine", Some("tenant-a"), "web-1")
        ]
    );
    let [
        Manifest::Network(net),
        Manifest::SecurityGroup(sg),
        Manifest::VirtualMachine(vm),
    ] = parsed.as_slice()
    else {
        panic!("{parsed:?}")
    };
    assert_eq!(net.segment(), Ok(Segment::Vxlan(4001)));
    assert_eq!(net.parsed_cidr(), Ok((Ipv4Addr::new(10, 10, 0, 0), 24)));
    assert_eq!(net.gateway_addr(), Ok(Ipv4Addr::new(10, 10, 0, 1)));
    assert_eq!(net.effective_mtu(), Ok(1450));
    assert_eq!(net.spec.reserved, ["10.10.0.2"]);

    assert_eq!(sg.spec.ingress.len(), 3);
    assert_eq!(
        sg.spec.ingress[0].ports,
        [
            PortRange {
                port: 80,
                end_port: None
            },
            PortRange {
                port: 8000,
                end_port: Some(8099)
            }
        ]
    );
    assert_eq!(sg.spec.ingress[1].protocol, Protocol::Icmp);
    assert_eq!(
        sg.spec.ingress[2].remote,
        Some(Remote {
            cidr: None,
            security_group: Some("web".into())
        })
    );
    assert_eq!(sg.spec.ingress[2].protocol, Protocol::Any);
    assert_eq!(sg.spec.egress.len(), 1);

    assert_eq!(
        vm.spec.networks,
        [
            NetworkAttachment {
                network: "frontend".into(),
                ip: None,
                mac: None
            },
            NetworkAttachment {
                network: "backend".into(),
                ip: Some("10.20.0.5".into()),
                mac: Some("02:00:00:14:00:05".into())
            }
        ]
    );
    assert_eq!(vm.spec.security_groups, ["web"]);
}

#[test]
fn network_kinds_errors_name_document_object_and_field() {
    let broken = NETWORKED
        .replace("vxlan: {vni: 4001}", "vlan: {id: 0}")
        .replace("endPort: 8099", "endPort: 79")
        .replace("network: backend", "network: Backend");
    assert_eq!(
        problems(&broken),
        [
            "document 1 (Network tenant-a/frontend): spec.vlan.id: must be between 1 and 4094, got 0",
            "document 2 (SecurityGroup tenant-a/web): spec.ingress[0].ports[1].endPort: must be at least port (8000), got 79",
            "document 3 (VirtualMachine tenant-a/web-1): spec.networks[1].network: must be a DNS-1123 subdomain (pattern ^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$), got \"Backend\"",
        ]
    );
    let twice = NETWORKED
        .replace("network: backend", "network: frontend")
        .replace("cidr: 10.10.0.0/24", "cidr: 10.10.0.0/24\n  vlan: {id: 7}");
    assert_eq!(
        problems(&twice),
        [
            "document 1 (Network tenant-a/frontend): spec: exactly one of spec.vlan or spec.vxlan must be set",
            "document 3 (VirtualMachine tenant-a/web-1): spec.networks: must not name a network twice: \"frontend\" at [0, 1]",
        ]
    );
    let lines = problems(&NETWORKED.replace("protocol: icmp", "protocol: sctp"));
    assert!(
        lines[0].starts_with("document 2 (SecurityGroup tenant-a/web): spec.ingress[1].protocol: unknown variant `sctp`"),
        "{lines:?}"
    );
}
