//! Agreement cases for `DeviceIdentity`.

use serde_json::{Value, json};

use super::with;

fn device() -> Value {
    json!({"apiVersion": "yun.dev/v1alpha1", "kind": "DeviceIdentity",
           "metadata": {"name": "ids-1", "namespace": "tenant-a"},
           "spec": {"description": "the IDS in rack 7", "roles": ["reader"],
                    "view": ["SecurityGroups"]}})
}

/// Each case: (description, object, expected refused paths; empty = accepted).
pub(crate) fn cases() -> Vec<(&'static str, Value, Vec<&'static str>)> {
    let dev = |ptr: &str, v: Option<Value>| with(device(), ptr, v);
    vec![
        ("device ok", device(), vec![]),
        ("device without view", dev("/spec/view", None), vec![]),
        (
            "device four roles",
            dev("/spec/roles", Some(json!(["reader", "member", "a", "b"]))),
            vec![],
        ),
        (
            "device five roles",
            dev(
                "/spec/roles",
                Some(json!(["reader", "member", "a", "b", "c"])),
            ),
            vec!["spec.roles"],
        ),
        (
            "device no roles",
            dev("/spec/roles", Some(json!([]))),
            vec!["spec.roles"],
        ),
        (
            "device admin",
            dev("/spec/roles", Some(json!(["reader", "Admin"]))),
            vec!["spec.roles"],
        ),
        (
            "device malformed role",
            dev("/spec/roles", Some(json!(["reader", "no spaces"]))),
            vec!["spec.roles[1]"],
        ),
        (
            "device long description",
            dev("/spec/description", Some(json!("x".repeat(256)))),
            vec!["spec.description"],
        ),
        (
            "device bad name",
            with(device(), "/metadata/name", Some(json!("IDS_1"))),
            vec!["metadata.name"],
        ),
    ]
}

/// Shapes serde refuses while decoding; both layers must refuse them.
pub(crate) fn malformed_shapes() -> Vec<(&'static str, Value)> {
    vec![
        (
            "device unknown view",
            with(device(), "/spec/view", Some(json!(["Volumes"]))),
        ),
        ("device without roles", with(device(), "/spec/roles", None)),
        (
            "device unknown field",
            with(device(), "/spec/secret", Some(json!("x"))),
        ),
    ]
}
