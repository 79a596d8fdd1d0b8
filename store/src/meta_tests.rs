use super::*;
use serde_json::json;

fn vm_kind() -> KindInfo {
    KindInfo {
        kind: "VirtualMachine".into(),
        api_version: "yun.dev/v1alpha1".into(),
        plural: "virtualmachines".into(),
        namespaced: true,
    }
}

fn vm(cpu: u32) -> Value {
    json!({
        "apiVersion": "yun.dev/v1alpha1",
        "kind": "VirtualMachine",
        "metadata": {"name": "web-1", "namespace": "default", "labels": {"app": "web"}},
        "spec": {"image": "img", "cpu": cpu, "memoryMiB": 128},
        "status": {"phase": "Running"}
    })
}

fn stored(cpu: u32) -> Value {
    for_create(&vm(cpu), "uid-1", "2026-12-08T00:00:00Z").unwrap()
}

#[test]
fn create_mints_identity_and_drops_status() {
    let obj = stored(1);
    assert_eq!(uid(&obj), Some("uid-1"));
    assert_eq!(
        meta_str(&obj, "creationTimestamp"),
        Some("2026-12-08T00:00:00Z")
    );
    assert_eq!(obj["metadata"]["generation"], 1);
    assert!(obj.get("status").is_none(), "status starts empty");
    let with_rv = with_resource_version(vm(1), 7);
    let err = for_create(&with_rv, "u", "t").unwrap_err();
    assert!(
        err.to_string().contains("metadata.resourceVersion"),
        "{err}"
    );
}

#[test]
fn replace_bumps_generation_only_for_spec_changes_and_keeps_status() {
    let mut current = stored(1);
    current["status"] = json!({"phase": "Running"});
    // Labels change: no new generation.
    let mut relabelled = current.clone();
    relabelled["metadata"]["labels"]["tier"] = json!("front");
    let next = for_replace(&current, &relabelled).unwrap().unwrap();
    assert_eq!(next["metadata"]["generation"], 1);
    // Spec change: generation 2; the status sent is ignored, the stored one kept.
    let mut resized = current.clone();
    resized["spec"]["cpu"] = json!(4);
    resized["status"] = json!({"phase": "Failed"});
    let next = for_replace(&current, &resized).unwrap().unwrap();
    assert_eq!(next["metadata"]["generation"], 2);
    assert_eq!(next["status"]["phase"], "Running");
    // The server's fields cannot be rewritten.
    let mut forged = current.clone();
    forged["metadata"]["uid"] = json!("other");
    forged["metadata"]["labels"]["x"] = json!("y");
    let next = for_replace(&current, &forged).unwrap().unwrap();
    assert_eq!(uid(&next), Some("uid-1"));
    // Nothing changed: no write.
    assert_eq!(
        for_replace(&current, &with_resource_version(current.clone(), 9)).unwrap(),
        None
    );
}

#[test]
fn status_writes_touch_status_only() {
    let current = stored(1);
    let mut new = vm(8);
    new["status"] = json!({"phase": "Scheduled"});
    let next = for_status(&current, &new).unwrap().unwrap();
    assert_eq!(next["spec"]["cpu"], 1);
    assert_eq!(next["status"]["phase"], "Scheduled");
    assert_eq!(
        for_status(&next, &new).unwrap(),
        None,
        "same status: no write"
    );
}

#[test]
fn a_deleting_object_cannot_gain_finalizers_and_goes_when_they_are_gone() {
    let mut current = stored(1);
    current["metadata"]["finalizers"] = json!(["yun.dev/a"]);
    let deleting = mark_deleting(&current, "2026-12-08T01:00:00Z").unwrap();
    assert!(is_deleting(&deleting) && !is_finalized(&deleting));
    let mut more = deleting.clone();
    more["metadata"]["finalizers"] = json!(["yun.dev/a", "yun.dev/b"]);
    let err = for_replace(&deleting, &more).unwrap_err();
    assert!(err.to_string().contains("metadata.finalizers"), "{err}");
    let mut released = deleting.clone();
    released["metadata"]["finalizers"] = json!([]);
    let next = for_replace(&deleting, &released).unwrap().unwrap();
    assert!(is_finalized(&next));
    assert_eq!(
        meta_str(&next, "deletionTimestamp"),
        Some("2026-12-08T01:00:00Z"),
        "a replace cannot undo a deletion"
    );
}

#[test]
fn names_and_scope_are_checked_with_the_field_named() {
    let kind = vm_kind();
    assert_eq!(
        object_name(&kind, &vm(1)).unwrap(),
        ObjectName {
            namespace: Some("default".into()),
            name: "web-1".into()
        }
    );
    let cases = [
        ("/metadata/name", json!("Web_1"), "metadata.name"),
        ("/metadata/namespace", json!(null), "metadata.namespace"),
        ("/kind", json!("Volume"), "kind"),
        ("/apiVersion", json!("v1"), "apiVersion"),
    ];
    for (pointer, value, field) in cases {
        let mut obj = vm(1);
        *obj.pointer_mut(pointer).unwrap() = value;
        if obj["metadata"]["namespace"].is_null() {
            obj["metadata"].as_object_mut().unwrap().remove("namespace");
        }
        let err = object_name(&kind, &obj).unwrap_err().to_string();
        assert!(err.starts_with(field), "{pointer}: {err}");
    }
    let cluster = KindInfo {
        namespaced: false,
        ..kind
    };
    let err = object_name(&cluster, &vm(1)).unwrap_err().to_string();
    assert!(err.contains("cluster-scoped"), "{err}");
}

#[test]
fn owners_are_read_from_owner_references() {
    let mut obj = stored(1);
    obj["metadata"]["ownerReferences"] = json!([
        {"apiVersion": "yun.dev/v1alpha1", "kind": "AppServerPool", "name": "p", "uid": "o-1"},
        {"apiVersion": "yun.dev/v1alpha1", "kind": "DataEngine", "name": "d", "uid": "o-2"}
    ]);
    assert_eq!(owner_uids(&obj), ["o-1", "o-2"]);
}

#[test]
fn now_is_whole_seconds_utc() {
    let now = now();
    assert!(now.ends_with('Z') && !now.contains('.'), "{now}");
}
