//! Agreement cases for the VM's `networks` and `securityGroups`.

use serde_json::{Value, json};

use super::{vm, with};

fn vm_net() -> Value {
    let networks = json!([{"network": "frontend"},
        {"network": "backend", "ip": "10.20.0.5", "mac": "02:00:00:14:00:05"}]);
    with(
        with(vm(), "/spec/networks", Some(networks)),
        "/spec/securityGroups",
        Some(json!(["web", "ssh"])),
    )
}

/// `n` distinct names `prefix0`, `prefix1`, ...
fn names(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{prefix}{i}")).collect()
}

/// Each case: (description, object, expected refused paths; empty = accepted).
pub(crate) fn cases() -> Vec<(&'static str, Value, Vec<&'static str>)> {
    let s = |x: &str| Some(json!(x));
    let vmn = |ptr: &str, v: Option<Value>| with(vm_net(), ptr, v);
    let attachments = |n: usize| {
        let list: Vec<Value> = names("n", n)
            .into_iter()
            .map(|name| json!({ "network": name }))
            .collect();
        Some(Value::Array(list))
    };
    vec![
        ("vm with networks ok", vm_net(), vec![]),
        ("8 networks", vmn("/spec/networks", attachments(8)), vec![]),
        (
            "9 networks",
            vmn("/spec/networks", attachments(9)),
            vec!["spec.networks"],
        ),
        (
            "networks null is absent",
            vmn("/spec/networks", Some(Value::Null)),
            vec![],
        ),
        (
            "network twice",
            vmn("/spec/networks/1/network", s("frontend")),
            vec!["spec.networks"],
        ),
        (
            "network name upper",
            vmn("/spec/networks/1/network", s("Backend")),
            vec!["spec.networks[1].network"],
        ),
        (
            "network name empty",
            vmn("/spec/networks/1/network", s("")),
            vec!["spec.networks[1].network"],
        ),
        (
            "fixed ip malformed",
            vmn("/spec/networks/1/ip", s("10.20.0.256")),
            vec!["spec.networks[1].ip"],
        ),
        (
            "mac globally administered",
            vmn("/spec/networks/1/mac", s("52:54:00:12:34:56")),
            vec![],
        ),
        (
            "mac multicast",
            vmn("/spec/networks/1/mac", s("01:00:5e:00:00:01")),
            vec!["spec.networks[1].mac"],
        ),
        (
            "mac upper case",
            vmn("/spec/networks/1/mac", s("02:00:00:14:00:0A")),
            vec!["spec.networks[1].mac"],
        ),
        (
            "16 security groups",
            vmn("/spec/securityGroups", Some(json!(names("g", 16)))),
            vec![],
        ),
        (
            "17 security groups",
            vmn("/spec/securityGroups", Some(json!(names("g", 17)))),
            vec!["spec.securityGroups"],
        ),
        (
            "security group twice",
            vmn("/spec/securityGroups", Some(json!(["web", "ssh", "web"]))),
            vec!["spec.securityGroups"],
        ),
        (
            "security group empty",
            vmn("/spec/securityGroups/1", s("")),
            vec!["spec.securityGroups[1]"],
        ),
        (
            "security group with underscore",
            vmn("/spec/securityGroups/0", s("web_1")),
            vec!["spec.securityGroups[0]"],
        ),
    ]
}

/// Shapes serde refuses while decoding; both layers must refuse them.
pub(crate) fn malformed_shapes() -> Vec<(&'static str, Value)> {
    let vmn = |ptr: &str, v: Value| with(vm_net(), ptr, Some(v));
    vec![
        (
            "attachment without network",
            vmn("/spec/networks/0", json!({"ip": "10.0.0.1"})),
        ),
        (
            "unknown attachment field",
            vmn("/spec/networks/0/vlan", json!(5)),
        ),
        (
            "security group number",
            vmn("/spec/securityGroups", json!([7])),
        ),
        (
            "networks as map",
            vmn("/spec/networks", json!({"frontend": {}})),
        ),
    ]
}
