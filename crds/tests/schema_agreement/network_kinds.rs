//! Agreement cases for `Network` and `SecurityGroup`.

use kube::core::cel::Validator;
use serde_json::{Value, json};

use super::{crd_for, with};

fn network() -> Value {
    json!({"apiVersion": "yun.dev/v1alpha1", "kind": "Network",
           "metadata": {"name": "frontend", "namespace": "tenant-a"},
           "spec": {"vlan": {"id": 100}, "cidr": "10.20.0.0/24", "gateway": "10.20.0.254",
                    "mtu": 1500, "reserved": ["10.20.0.2", "10.20.0.3"]}})
}

fn security_group() -> Value {
    json!({"apiVersion": "yun.dev/v1alpha1", "kind": "SecurityGroup",
           "metadata": {"name": "web", "namespace": "tenant-a"},
           "spec": {"ingress": [
                {"protocol": "tcp", "ports": [{"port": 22}, {"port": 8000, "endPort": 8099}],
                 "remote": {"cidr": "10.0.0.0/8"}, "description": "ssh and app"},
                {"protocol": "icmp", "remote": {"securityGroup": "web"}}],
            "egress": [{}]}})
}

/// `n` copies of `item`.
fn many(item: Value, n: usize) -> Option<Value> {
    Some(Value::Array(vec![item; n]))
}

/// Each case: (description, object, expected refused paths; empty = accepted).
pub(crate) fn cases() -> Vec<(&'static str, Value, Vec<&'static str>)> {
    let s = |x: &str| Some(json!(x));
    let n = |x: u64| Some(json!(x));
    let net = |ptr: &str, v: Option<Value>| with(network(), ptr, v);
    let sg = |ptr: &str, v: Option<Value>| with(security_group(), ptr, v);
    vec![
        ("network ok", network(), vec![]),
        (
            "vxlan network",
            with(
                net("/spec/vlan", None),
                "/spec/vxlan",
                Some(json!({"vni": 16777215})),
            ),
            vec![],
        ),
        ("vlan 1", net("/spec/vlan/id", n(1)), vec![]),
        ("vlan 4094", net("/spec/vlan/id", n(4094)), vec![]),
        ("vlan 0", net("/spec/vlan/id", n(0)), vec!["spec.vlan.id"]),
        (
            "vlan 4095",
            net("/spec/vlan/id", n(4095)),
            vec!["spec.vlan.id"],
        ),
        (
            "vni 0",
            with(
                net("/spec/vlan", None),
                "/spec/vxlan",
                Some(json!({"vni": 0})),
            ),
            vec!["spec.vxlan.vni"],
        ),
        (
            "vni 2^24",
            with(
                net("/spec/vlan", None),
                "/spec/vxlan",
                Some(json!({"vni": 16777216})),
            ),
            vec!["spec.vxlan.vni"],
        ),
        (
            "vlan and vxlan",
            net("/spec/vxlan", Some(json!({"vni": 7}))),
            vec!["spec"],
        ),
        (
            "neither vlan nor vxlan",
            net("/spec/vlan", None),
            vec!["spec"],
        ),
        (
            "vlan null is absent",
            net("/spec/vlan", Some(Value::Null)),
            vec!["spec"],
        ),
        ("mtu 576", net("/spec/mtu", n(576)), vec![]),
        ("mtu 9000", net("/spec/mtu", n(9000)), vec![]),
        ("mtu 575", net("/spec/mtu", n(575)), vec!["spec.mtu"]),
        ("mtu 9001", net("/spec/mtu", n(9001)), vec!["spec.mtu"]),
        (
            "no gateway, mtu or reserved",
            {
                let bare = net("/spec/gateway", None);
                with(with(bare, "/spec/mtu", None), "/spec/reserved", None)
            },
            vec![],
        ),
        ("cidr /8", net("/spec/cidr", s("10.0.0.0/8")), vec![]),
        (
            "cidr /30",
            with(
                net("/spec/cidr", s("10.20.0.252/30")),
                "/spec/reserved",
                None,
            ),
            vec![],
        ),
        (
            "cidr /7",
            net("/spec/cidr", s("10.0.0.0/7")),
            vec!["spec.cidr"],
        ),
        (
            "cidr /31",
            net("/spec/cidr", s("10.20.0.254/31")),
            vec!["spec.cidr"],
        ),
        (
            "cidr without prefix",
            net("/spec/cidr", s("10.20.0.0")),
            vec!["spec.cidr"],
        ),
        (
            "cidr leading zero",
            net("/spec/cidr", s("010.20.0.0/24")),
            vec!["spec.cidr"],
        ),
        (
            "cidr prefix 024",
            net("/spec/cidr", s("10.20.0.0/024")),
            vec!["spec.cidr"],
        ),
        (
            "cidr octet 256",
            net("/spec/cidr", s("10.256.0.0/16")),
            vec!["spec.cidr"],
        ),
        (
            "cidr IPv6",
            net("/spec/cidr", s("fd00::/64")),
            vec!["spec.cidr"],
        ),
        (
            "cidr host bits",
            net("/spec/cidr", s("10.20.0.1/24")),
            vec!["spec.cidr"],
        ),
        (
            "cidr host bits, gateway outside",
            with(
                net("/spec/cidr", s("10.20.0.128/16")),
                "/spec/gateway",
                s("10.21.0.1"),
            ),
            vec!["spec.cidr", "spec.gateway"],
        ),
        (
            "gateway first host",
            net("/spec/gateway", s("10.20.0.1")),
            vec![],
        ),
        (
            "gateway network address",
            net("/spec/gateway", s("10.20.0.0")),
            vec!["spec.gateway"],
        ),
        (
            "gateway broadcast",
            net("/spec/gateway", s("10.20.0.255")),
            vec!["spec.gateway"],
        ),
        (
            "gateway outside",
            net("/spec/gateway", s("10.21.0.1")),
            vec!["spec.gateway"],
        ),
        (
            "gateway malformed",
            net("/spec/gateway", s("10.20.0")),
            vec!["spec.gateway"],
        ),
        (
            "reserved network and broadcast",
            net("/spec/reserved", Some(json!(["10.20.0.0", "10.20.0.255"]))),
            vec![],
        ),
        (
            "reserved outside",
            net("/spec/reserved", Some(json!(["10.20.0.2", "10.21.0.2"]))),
            vec!["spec.reserved"],
        ),
        (
            "reserved malformed",
            net("/spec/reserved", Some(json!(["10.20.0.2", "10.20.0.256"]))),
            vec!["spec.reserved[1]"],
        ),
        (
            "reserved 256",
            net("/spec/reserved", many(json!("10.20.0.9"), 256)),
            vec![],
        ),
        (
            "reserved 257",
            net("/spec/reserved", many(json!("10.20.0.9"), 257)),
            vec!["spec.reserved"],
        ),
        (
            "reserved null is absent",
            net("/spec/reserved", Some(Value::Null)),
            vec![],
        ),
        (
            "network name upper",
            net("/metadata/name", s("Frontend")),
            vec!["metadata.name"],
        ),
        ("security group ok", security_group(), vec![]),
        ("empty security group", sg("/spec", Some(json!({}))), vec![]),
        (
            "ingress null is absent",
            sg("/spec/ingress", Some(Value::Null)),
            vec![],
        ),
        (
            "200 rules",
            sg("/spec/egress", many(json!({}), 200)),
            vec![],
        ),
        (
            "201 rules",
            sg("/spec/egress", many(json!({}), 201)),
            vec!["spec.egress"],
        ),
        (
            "udp, one port range edge to edge",
            sg(
                "/spec/ingress/0",
                Some(json!({"protocol": "udp", "ports": [{"port": 1, "endPort": 65535}]})),
            ),
            vec![],
        ),
        (
            "endPort equals port",
            sg("/spec/ingress/0/ports/1/endPort", n(8000)),
            vec![],
        ),
        (
            "endPort below port",
            sg("/spec/ingress/0/ports/1/endPort", n(7999)),
            vec!["spec.ingress[0].ports[1].endPort"],
        ),
        (
            "endPort 0",
            sg("/spec/ingress/0/ports/1/endPort", n(0)),
            vec!["spec.ingress[0].ports[1].endPort"],
        ),
        (
            "port 0",
            sg("/spec/ingress/0/ports/0/port", n(0)),
            vec!["spec.ingress[0].ports[0].port"],
        ),
        (
            "33 ports",
            sg("/spec/ingress/0/ports", many(json!({"port": 1}), 33)),
            vec!["spec.ingress[0].ports"],
        ),
        (
            "ports with icmp",
            sg("/spec/ingress/1/ports", Some(json!([{"port": 8}]))),
            vec!["spec.ingress[1].ports"],
        ),
        (
            "ports with the default protocol",
            sg("/spec/egress/0", Some(json!({"ports": [{"port": 53}]}))),
            vec!["spec.egress[0].ports"],
        ),
        (
            "empty ports with icmp",
            sg("/spec/ingress/1/ports", Some(json!([]))),
            vec![],
        ),
        (
            "remote anywhere",
            sg("/spec/ingress/0/remote/cidr", s("0.0.0.0/0")),
            vec![],
        ),
        (
            "remote one address",
            sg("/spec/ingress/0/remote/cidr", s("192.0.2.7/32")),
            vec![],
        ),
        (
            "remote cidr host bits",
            sg("/spec/ingress/0/remote/cidr", s("10.0.0.1/8")),
            vec!["spec.ingress[0].remote.cidr"],
        ),
        (
            "remote cidr /33",
            sg("/spec/ingress/0/remote/cidr", s("10.0.0.0/33")),
            vec!["spec.ingress[0].remote.cidr"],
        ),
        (
            "remote cidr and group",
            sg("/spec/ingress/0/remote/securityGroup", s("web")),
            vec!["spec.ingress[0].remote"],
        ),
        (
            "remote empty",
            sg("/spec/ingress/0/remote", Some(json!({}))),
            vec!["spec.ingress[0].remote"],
        ),
        (
            "remote group upper",
            sg("/spec/ingress/1/remote/securityGroup", s("Web")),
            vec!["spec.ingress[1].remote.securityGroup"],
        ),
        (
            "description 255",
            sg("/spec/ingress/0/description", Some(json!("d".repeat(255)))),
            vec![],
        ),
        (
            "description 256",
            sg("/spec/ingress/0/description", Some(json!("d".repeat(256)))),
            vec!["spec.ingress[0].description"],
        ),
    ]
}

/// Shapes serde refuses while decoding; both layers must refuse them.
pub(crate) fn malformed_shapes() -> Vec<(&'static str, Value)> {
    let net = |ptr: &str, v: Value| with(network(), ptr, Some(v));
    let sg = |ptr: &str, v: Value| with(security_group(), ptr, Some(v));
    vec![
        ("vlan id as text", net("/spec/vlan/id", json!("100"))),
        ("unknown field in vlan", net("/spec/vlan/pcp", json!(3))),
        ("missing cidr", with(network(), "/spec/cidr", None)),
        ("cidr as number", net("/spec/cidr", json!(10))),
        ("mtu as text", net("/spec/mtu", json!("1500"))),
        ("reserved number", net("/spec/reserved", json!([7]))),
        (
            "reserved as text",
            net("/spec/reserved", json!("10.20.0.2")),
        ),
        (
            "port 65536",
            sg("/spec/ingress/0/ports/0/port", json!(65536)),
        ),
        (
            "port missing",
            sg("/spec/ingress/0/ports/0", json!({"endPort": 9})),
        ),
        (
            "protocol upper",
            sg("/spec/ingress/0/protocol", json!("TCP")),
        ),
        (
            "protocol sctp",
            sg("/spec/ingress/0/protocol", json!("sctp")),
        ),
        (
            "unknown rule field",
            sg("/spec/ingress/0/action", json!("deny")),
        ),
        (
            "unknown remote field",
            sg("/spec/ingress/0/remote/group", json!("web")),
        ),
        (
            "ingress as object",
            sg("/spec/ingress", json!({"protocol": "tcp"})),
        ),
    ]
}

/// The API server runs CEL rules even after non-blocking schema errors such as a pattern
/// mismatch: the rules must then judge nothing rather than fail to evaluate.
#[test]
fn cel_rules_skip_values_the_schema_refuses() {
    let objects = [
        with(
            with(
                with(network(), "/spec/cidr", Some(json!("garbage"))),
                "/spec/gateway",
                Some(json!("10.20.0")),
            ),
            "/spec/reserved",
            Some(json!(["x", "10.20.0.2"])),
        ),
        with(network(), "/spec/cidr", Some(json!("10.20.0.0/31"))),
        with(network(), "/spec/gateway", Some(json!("300.1.1.1"))),
        with(
            network(),
            "/spec/reserved",
            Some(json!(["10.20.0.2", "10.20.0"])),
        ),
        with(
            security_group(),
            "/spec/ingress/0/remote/cidr",
            Some(json!("10.0.0.0/40")),
        ),
    ];
    for obj in objects {
        let (schema, _) = crd_for(obj["kind"].as_str().unwrap());
        let result = Validator::new().validate(&schema, &obj, None);
        assert!(result.is_ok(), "{obj}: {result:?}");
    }
}
