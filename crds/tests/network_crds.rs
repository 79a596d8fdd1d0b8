//! The CRDs of the network kinds and the VM's network fields: bounds, patterns, defaults, columns.

#![allow(clippy::unwrap_used)] // test helpers outside #[test] fns unwrap too

use serde_json::Value;

mod common;
use common::{crd_json, schema};

#[test]
fn network_bounds_patterns_and_columns_are_in_the_schema() {
    let net = crd_json("networks.yun.dev");
    let spec = &schema(&net)["properties"]["spec"];
    let p = &spec["properties"];
    let bounds = |v: &Value| (v["minimum"].as_f64(), v["maximum"].as_f64());
    assert_eq!(
        bounds(&p["vlan"]["properties"]["id"]),
        (Some(1.0), Some(4094.0))
    );
    assert_eq!(
        bounds(&p["vxlan"]["properties"]["vni"]),
        (Some(1.0), Some(16_777_215.0))
    );
    assert_eq!(bounds(&p["mtu"]), (Some(576.0), Some(9000.0)));
    assert!(
        p["cidr"]["pattern"]
            .as_str()
            .unwrap()
            .ends_with("/([89]|[12][0-9]|30)$")
    );
    assert_eq!(p["reserved"]["maxItems"], 256);
    assert_eq!(p["reserved"]["items"]["maxLength"], 15);
    assert_eq!(spec["required"], serde_json::json!(["cidr"]));
    let cols = &net["spec"]["versions"][0]["additionalPrinterColumns"];
    assert_eq!(
        cols[4]["jsonPath"],
        ".status.conditions[?(@.type==\"Ready\")].status"
    );

    let sg = crd_json("securitygroups.yun.dev");
    let p = &schema(&sg)["properties"]["spec"]["properties"];
    assert_eq!(p["ingress"]["maxItems"], 200);
    assert_eq!(p["egress"]["maxItems"], 200);
    let rule = &p["ingress"]["items"]["properties"];
    assert_eq!(rule["protocol"]["default"], "any");
    assert_eq!(
        rule["protocol"]["enum"],
        serde_json::json!(["tcp", "udp", "icmp", "any"])
    );
    assert_eq!(rule["ports"]["maxItems"], 32);
    assert_eq!(rule["description"]["maxLength"], 255);
    let port = &rule["ports"]["items"]["properties"];
    assert_eq!(bounds(&port["port"]), (Some(1.0), Some(65535.0)));
    assert_eq!(bounds(&port["endPort"]), (Some(1.0), Some(65535.0)));

    let vm = crd_json("virtualmachines.yun.dev");
    let p = &schema(&vm)["properties"]["spec"]["properties"];
    assert_eq!(p["networks"]["maxItems"], 8);
    assert_eq!(p["securityGroups"]["maxItems"], 16);
    assert_eq!(
        p["networks"]["items"]["required"],
        serde_json::json!(["network"])
    );
    assert_eq!(
        p["networks"]["items"]["properties"]["mac"]["pattern"],
        "^[0-9a-f][02468ace](:[0-9a-f]{2}){5}$"
    );
}
