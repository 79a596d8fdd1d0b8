//! The generated CRDs: structural schemas, CEL rules, printer columns.

#![allow(clippy::unwrap_used)] // test helpers outside #[test] fns unwrap too

use serde_json::Value;
use yun_crds::all_crds;
use yun_crds::host::HOST_NAME_RULE;
use yun_crds::network::{SEGMENT_RULE, cidr_rule, gateway_rule, reserved_rule};
use yun_crds::scheduling::AFFINITY_GROUPS_DIFFER_RULE;
use yun_crds::security_group::{
    END_PORT_RULE, PORTS_NEED_TCP_OR_UDP_RULE, REMOTE_RULE, remote_cidr_rule,
};
use yun_crds::virtual_machine::{HOSTNAME_DEFAULT_RULE, USER_DATA_BYTES_RULE};
use yun_crds::vm_image::{CMDLINE_NEEDS_KERNEL_RULE, INITRD_NEEDS_KERNEL_RULE};
use yun_crds::vm_network::{UNIQUE_NETWORKS_RULE, UNIQUE_SECURITY_GROUPS_RULE};

mod common;
use common::{crd_json, schema};

/// Kubernetes' structural-schema rules, as far as our schemas could break them.
fn assert_structural(path: &str, node: &Value, problems: &mut Vec<String>) {
    let Some(obj) = node.as_object() else {
        problems.push(format!("{path}: schema node is not an object"));
        return;
    };
    for banned in [
        "$ref",
        "$defs",
        "definitions",
        "$schema",
        "anyOf",
        "oneOf",
        "allOf",
        "not",
    ] {
        if obj.contains_key(banned) {
            problems.push(format!("{path}: has {banned}"));
        }
    }
    let preserves = obj.get("x-kubernetes-preserve-unknown-fields") == Some(&Value::Bool(true))
        || obj.get("x-kubernetes-int-or-string") == Some(&Value::Bool(true));
    match obj.get("type").and_then(Value::as_str) {
        Some("object" | "array" | "string" | "integer" | "number" | "boolean") => {}
        None if preserves => {}
        other => problems.push(format!("{path}: type is {other:?}")),
    }
    if obj.contains_key("properties") && obj.contains_key("additionalProperties") {
        problems.push(format!("{path}: both properties and additionalProperties"));
    }
    if let Some(props) = obj.get("properties").and_then(Value::as_object) {
        for (k, v) in props {
            assert_structural(&format!("{path}.{k}"), v, problems);
        }
    }
    if let Some(items) = obj.get("items") {
        assert_structural(&format!("{path}[]"), items, problems);
    } else if obj.get("type").and_then(Value::as_str) == Some("array") {
        problems.push(format!("{path}: array without items"));
    }
    if let Some(ap) = obj.get("additionalProperties").filter(|v| v.is_object()) {
        assert_structural(&format!("{path}{{}}"), ap, problems);
    }
}

#[test]
fn every_crd_serializes_and_is_structural() {
    let crds = all_crds();
    assert_eq!(crds.len(), 7);
    for crd in &crds {
        let json = serde_json::to_value(crd).unwrap();
        serde_yaml::to_string(crd).unwrap();
        let mut problems = vec![];
        assert_structural("", schema(&json), &mut problems);
        assert!(
            problems.is_empty(),
            "{}: {problems:#?}",
            crd.metadata.name.as_deref().unwrap_or("?")
        );
        assert!(!json.to_string().contains("$ref"));
        assert_eq!(json["spec"]["group"], "yun.dev");
        assert_eq!(json["spec"]["versions"][0]["name"], "v1alpha1");
        assert_eq!(
            json["spec"]["versions"][0]["subresources"]["status"],
            serde_json::json!({})
        );
    }
}

fn rules(node: &Value) -> Vec<&str> {
    node["x-kubernetes-validations"]
        .as_array()
        .map(|a| a.iter().filter_map(|r| r["rule"].as_str()).collect())
        .unwrap_or_default()
}

#[test]
fn cel_rules_are_where_they_belong() {
    let img = crd_json("vmimages.yun.dev");
    assert_eq!(
        rules(&schema(&img)["properties"]["spec"]),
        [INITRD_NEEDS_KERNEL_RULE, CMDLINE_NEEDS_KERNEL_RULE]
    );
    let vm = crd_json("virtualmachines.yun.dev");
    assert_eq!(rules(schema(&vm)), [HOSTNAME_DEFAULT_RULE]);
    assert_eq!(
        rules(&schema(&vm)["properties"]["spec"]["properties"]["userData"]),
        [USER_DATA_BYTES_RULE]
    );
    let scheduling = &schema(&vm)["properties"]["spec"]["properties"]["scheduling"];
    assert_eq!(rules(scheduling), [AFFINITY_GROUPS_DIFFER_RULE]);
    assert_eq!(
        scheduling["x-kubernetes-validations"][0]["fieldPath"],
        ".antiAffinityGroup"
    );
    let host = crd_json("hosts.yun.dev");
    assert_eq!(rules(schema(&host)), [HOST_NAME_RULE]);
    let vm_spec = &schema(&vm)["properties"]["spec"]["properties"];
    assert_eq!(rules(&vm_spec["networks"]), [UNIQUE_NETWORKS_RULE]);
    assert_eq!(
        rules(&vm_spec["securityGroups"]),
        [UNIQUE_SECURITY_GROUPS_RULE]
    );

    let net = crd_json("networks.yun.dev");
    let spec = &schema(&net)["properties"]["spec"];
    assert_eq!(
        rules(spec),
        [SEGMENT_RULE, &*gateway_rule(), &*reserved_rule()]
    );
    let paths: Vec<&Value> = (0..3)
        .map(|i| &spec["x-kubernetes-validations"][i]["fieldPath"])
        .collect();
    assert_eq!(
        paths,
        [
            &Value::Null,
            &Value::from(".gateway"),
            &Value::from(".reserved")
        ]
    );
    assert_eq!(rules(&spec["properties"]["cidr"]), [cidr_rule()]);

    let sg = crd_json("securitygroups.yun.dev");
    for list in ["ingress", "egress"] {
        let rule = &schema(&sg)["properties"]["spec"]["properties"][list]["items"];
        assert_eq!(rules(rule), [PORTS_NEED_TCP_OR_UDP_RULE], "{list}");
        let p = &rule["properties"];
        assert_eq!(rules(&p["ports"]["items"]), [END_PORT_RULE], "{list}");
        assert_eq!(rules(&p["remote"]), [REMOTE_RULE], "{list}");
        assert_eq!(
            rules(&p["remote"]["properties"]["cidr"]),
            [remote_cidr_rule()],
            "{list}"
        );
    }
}

#[test]
fn optional_spec_fields_are_not_nullable() {
    // A null for a non-nullable field is pruned by the API server, exactly as serde reads it as
    // `None`; with `nullable: true` CEL's `has()` would see a null that the pure check cannot.
    let img = crd_json("vmimages.yun.dev");
    let vm = crd_json("virtualmachines.yun.dev");
    let host = crd_json("hosts.yun.dev");
    let spec = |crd: &Value| schema(crd)["properties"]["spec"]["properties"].clone();
    for (field, crd) in [
        ("kernel", &img),
        ("initrd", &img),
        ("cmdline", &img),
        ("hostname", &vm),
        ("userData", &vm),
        ("bmc", &host),
        ("scheduling", &vm),
        ("overcommit", &host),
    ] {
        assert_eq!(spec(crd)[field]["nullable"], Value::Null, "{field}");
    }
    let net = crd_json("networks.yun.dev");
    for field in ["vlan", "vxlan", "gateway", "mtu"] {
        assert_eq!(spec(&net)[field]["nullable"], Value::Null, "{field}");
    }
    let attachment = &spec(&vm)["networks"]["items"]["properties"];
    for field in ["ip", "mac"] {
        assert_eq!(attachment[field]["nullable"], Value::Null, "{field}");
    }
    let sg = crd_json("securitygroups.yun.dev");
    let rule = &spec(&sg)["ingress"]["items"]["properties"];
    for field in ["remote", "description"] {
        assert_eq!(rule[field]["nullable"], Value::Null, "{field}");
    }
    for field in ["cidr", "securityGroup"] {
        assert_eq!(
            rule["remote"]["properties"][field]["nullable"],
            Value::Null,
            "{field}"
        );
    }
    assert_eq!(
        rule["ports"]["items"]["properties"]["endPort"]["nullable"],
        Value::Null
    );
    assert_eq!(
        spec(&host)["bmc"]["properties"]["credentialsSecret"]["nullable"],
        Value::Null
    );
    let scheduling = &spec(&vm)["scheduling"]["properties"];
    for field in ["affinityGroup", "antiAffinityGroup", "spread", "policy"] {
        assert_eq!(scheduling[field]["nullable"], Value::Null, "{field}");
    }
    for field in ["cpu", "memory", "disk"] {
        assert_eq!(
            spec(&host)["overcommit"]["properties"][field]["nullable"],
            Value::Null,
            "{field}"
        );
    }
}

#[test]
fn names_scope_and_printer_columns() {
    let expect = [
        (
            "hosts.yun.dev",
            "Host",
            "Cluster",
            vec!["yh"],
            vec![
                "Ready",
                "CPUs",
                "Memory",
                "VMs",
                "Agent",
                "Maintenance",
                "Age",
            ],
        ),
        (
            "vmimages.yun.dev",
            "VmImage",
            "Namespaced",
            vec!["vmi"],
            vec!["OS", "Format", "Kernel", "Age"],
        ),
        (
            "networks.yun.dev",
            "Network",
            "Namespaced",
            vec!["ynet"],
            vec!["VLAN", "VNI", "CIDR", "Allocated", "Ready", "Age"],
        ),
        (
            "securitygroups.yun.dev",
            "SecurityGroup",
            "Namespaced",
            vec!["ysg"],
            vec!["Members", "Age"],
        ),
        (
            "virtualmachines.yun.dev",
            "VirtualMachine",
            "Namespaced",
            vec!["vm", "yvm"],
            vec!["Phase", "Host", "CPU", "Memory", "Image", "QoS", "Age"],
        ),
    ];
    for (name, kind, scope, short, columns) in expect {
        let crd = crd_json(name);
        assert_eq!(crd["spec"]["names"]["kind"], kind);
        assert_eq!(crd["spec"]["scope"], scope);
        assert_eq!(crd["spec"]["names"]["shortNames"], serde_json::json!(short));
        let cols: Vec<&str> = crd["spec"]["versions"][0]["additionalPrinterColumns"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["name"].as_str().unwrap())
            .collect();
        assert_eq!(cols, columns, "{name}");
    }
}

#[test]
fn spec_bounds_and_defaults_are_in_the_schema() {
    let vm = crd_json("virtualmachines.yun.dev");
    let spec = &schema(&vm)["properties"]["spec"];
    let p = &spec["properties"];
    assert_eq!(
        (p["cpu"]["minimum"].as_f64(), p["cpu"]["maximum"].as_f64()),
        (Some(1.0), Some(256.0))
    );
    assert_eq!(p["memoryMiB"]["maximum"].as_f64(), Some(4_194_304.0));
    assert_eq!(p["diskGiB"]["default"], 2);
    assert_eq!(p["runStrategy"]["default"], "Always");
    assert_eq!(
        p["runStrategy"]["enum"],
        serde_json::json!(["Always", "Halted"])
    );
    assert_eq!(p["userData"]["maxLength"], 32768);
    assert_eq!(
        spec["required"],
        serde_json::json!(["cpu", "image", "memoryMiB"])
    );
    let img = crd_json("vmimages.yun.dev");
    let disk = &schema(&img)["properties"]["spec"]["properties"]["disk"]["properties"];
    assert_eq!(disk["sha256"]["pattern"], "^[0-9a-f]{64}$");
    assert_eq!(disk["source"]["pattern"], "^file:///");
    assert_eq!(disk["format"]["enum"], serde_json::json!(["qcow2", "raw"]));
}

#[test]
fn new_columns_are_wide_only() {
    for (crd, column, path) in [
        (
            "virtualmachines.yun.dev",
            "QoS",
            ".spec.scheduling.qosClass",
        ),
        ("hosts.yun.dev", "Maintenance", ".spec.maintenance"),
    ] {
        let crd = crd_json(crd);
        let cols = crd["spec"]["versions"][0]["additionalPrinterColumns"]
            .as_array()
            .unwrap();
        let col = cols.iter().find(|c| c["name"] == column).unwrap();
        assert_eq!(
            (col["jsonPath"].as_str(), col["priority"].as_i64()),
            (Some(path), Some(1))
        );
    }
}

#[test]
fn scheduling_and_overcommit_bounds_and_defaults_are_in_the_schema() {
    let vm = crd_json("virtualmachines.yun.dev");
    let s = &schema(&vm)["properties"]["spec"]["properties"]["scheduling"]["properties"];
    assert_eq!(s["qosClass"]["default"], "Burstable");
    assert_eq!(
        s["qosClass"]["enum"],
        serde_json::json!(["Guaranteed", "Burstable"])
    );
    assert_eq!(
        s["policy"]["enum"],
        serde_json::json!(["BinPack", "Spread"])
    );
    assert_eq!(s["affinityGroup"]["maxLength"], 63);
    let spread = &s["spread"];
    assert_eq!(spread["required"], serde_json::json!(["group", "topology"]));
    let sp = &spread["properties"];
    assert_eq!(
        sp["topology"]["enum"],
        serde_json::json!(["zone", "rack", "power"])
    );
    assert_eq!(sp["maxSkew"]["default"], 1);
    assert_eq!(
        (
            sp["maxSkew"]["minimum"].as_f64(),
            sp["maxSkew"]["maximum"].as_f64()
        ),
        (Some(1.0), Some(100.0))
    );
    let host = crd_json("hosts.yun.dev");
    let spec = &schema(&host)["properties"]["spec"]["properties"];
    assert_eq!(spec["maintenance"]["default"], false);
    let o = &spec["overcommit"]["properties"];
    for (ratio, max) in [("cpu", 16.0), ("memory", 4.0), ("disk", 4.0)] {
        assert_eq!(o[ratio]["type"], "number", "{ratio}");
        assert_eq!(
            (o[ratio]["minimum"].as_f64(), o[ratio]["maximum"].as_f64()),
            (Some(1.0), Some(max)),
            "{ratio}"
        );
    }
}
