//! The two validation layers agree: for each case, what an API server would do with the CRD
//! schema (OpenAPI bounds and patterns, emulated here; CEL rules, evaluated by kube's CEL engine)
//! matches what `parse_manifests` (the pure layer, used in bootstrap mode) does — same verdict,
//! and for schema/CEL violations the same field paths.

#![allow(clippy::unwrap_used)] // test helpers outside #[test] fns unwrap too

use std::collections::BTreeSet;

use kube::core::cel::Validator;
use regex::Regex;
use serde_json::{Value, json};
use yun_crds::{DocumentError, all_crds, parse_manifests};

/// Cases for `DeviceIdentity`.
#[path = "schema_agreement/device_identity.rs"]
mod device_identity;
/// Cases for `Network` and `SecurityGroup`.
#[path = "schema_agreement/network_kinds.rs"]
mod network_kinds;
/// Cases for the VM's `networks` and `securityGroups`.
#[path = "schema_agreement/vm_networks.rs"]
mod vm_networks;
/// Cases for `Volume` and the VM's `volumes`.
#[path = "schema_agreement/volumes.rs"]
mod volumes;

const SUM: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

/// The CRD whose kind is `kind`: (openAPIV3Schema, namespaced).
fn crd_for(kind: &str) -> (Value, bool) {
    let crd = all_crds()
        .into_iter()
        .find(|c| c.spec.names.kind == kind)
        .unwrap();
    let namespaced = crd.spec.scope == "Namespaced";
    let v = serde_json::to_value(crd).unwrap();
    (
        v["spec"]["versions"][0]["schema"]["openAPIV3Schema"].clone(),
        namespaced,
    )
}

fn matches(pattern: &str, s: &str) -> bool {
    Regex::new(pattern).unwrap().is_match(s)
}

/// What the API server checks of metadata for any object (written out independently of the crate).
fn apiserver_metadata(meta: &Value, namespaced: bool, errs: &mut BTreeSet<String>) {
    let subdomain = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$";
    let name = meta["name"].as_str().unwrap_or("");
    if name.is_empty() || name.len() > 253 || !matches(subdomain, name) {
        errs.insert("metadata.name".into());
    }
    if namespaced {
        let ns = meta["namespace"].as_str().unwrap_or("default");
        if ns.len() > 63 || !matches("^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", ns) {
            errs.insert("metadata.namespace".into());
        }
    }
}

/// Removes nulls of non-nullable fields, as the API server does before validating.
fn prune_nulls(schema: &Value, value: &mut Value) {
    let Value::Object(map) = value else { return };
    map.retain(|k, v| !v.is_null() || schema["properties"][k.as_str()]["nullable"] == json!(true));
    for (k, v) in map.iter_mut() {
        if let Some(sub) = schema["properties"]
            .get(k.as_str())
            .or(schema.get("additionalProperties"))
        {
            prune_nulls(sub, v);
        }
    }
}

/// OpenAPI v3 validation as the API server applies it to a structural schema, for the keywords
/// our schemas use.
fn openapi(path: &str, schema: &Value, value: &Value, errs: &mut BTreeSet<String>) {
    let bad = |errs: &mut BTreeSet<String>| {
        errs.insert(path.to_owned());
    };
    match (schema["type"].as_str(), value) {
        (Some("object"), Value::Object(map)) => {
            let props = schema["properties"].as_object();
            for req in schema["required"].as_array().into_iter().flatten() {
                let req = req.as_str().unwrap();
                if map.get(req).is_none_or(Value::is_null) {
                    errs.insert(format!("{path}.{req}"));
                }
            }
            for (k, v) in map {
                let sub = format!("{path}.{k}");
                match (
                    props.and_then(|p| p.get(k)),
                    schema.get("additionalProperties"),
                ) {
                    (Some(s), _) | (None, Some(s)) => openapi(&sub, s, v, errs),
                    (None, None) => {
                        errs.insert(sub); // unknown field: refused under strict field validation
                    }
                }
            }
        }
        (Some("string"), Value::String(s)) => {
            let n = s.chars().count() as u64;
            let too_short = schema["minLength"].as_u64().is_some_and(|m| n < m);
            let too_long = schema["maxLength"].as_u64().is_some_and(|m| n > m);
            let no_match = schema["pattern"].as_str().is_some_and(|p| !matches(p, s));
            let not_enum = schema["enum"]
                .as_array()
                .is_some_and(|e| !e.contains(value));
            if too_short || too_long || no_match || not_enum {
                bad(errs);
            }
        }
        (Some("integer"), Value::Number(n)) if n.is_i64() || n.is_u64() => {
            let x = n.as_f64().unwrap();
            if schema["minimum"].as_f64().is_some_and(|m| x < m)
                || schema["maximum"].as_f64().is_some_and(|m| x > m)
            {
                bad(errs);
            }
        }
        (Some("number"), Value::Number(n)) => {
            let x = n.as_f64().unwrap();
            if schema["minimum"].as_f64().is_some_and(|m| x < m)
                || schema["maximum"].as_f64().is_some_and(|m| x > m)
            {
                bad(errs);
            }
        }
        (Some("boolean"), Value::Bool(_)) => {}
        (Some("array"), Value::Array(items)) => {
            if schema["maxItems"]
                .as_u64()
                .is_some_and(|m| items.len() as u64 > m)
                || schema["minItems"]
                    .as_u64()
                    .is_some_and(|m| (items.len() as u64) < m)
            {
                bad(errs);
            }
            for (i, item) in items.iter().enumerate() {
                openapi(&format!("{path}[{i}]"), &schema["items"], item, errs);
            }
        }
        _ => bad(errs),
    }
}

/// Field paths an API server would refuse `obj` for (empty: accepted).
fn apiserver(obj: &Value) -> BTreeSet<String> {
    let (schema, namespaced) = crd_for(obj["kind"].as_str().unwrap());
    let mut errs = BTreeSet::new();
    apiserver_metadata(&obj["metadata"], namespaced, &mut errs);
    let mut obj = obj.clone();
    prune_nulls(&schema, &mut obj);
    let mut body = obj.clone();
    let map = body.as_object_mut().unwrap();
    for k in ["apiVersion", "kind", "metadata"] {
        map.remove(k);
    }
    openapi("", &schema, &body, &mut errs);
    if errs.is_empty() {
        // CEL runs on objects that passed the schema, as in the API server.
        if let Err(cel) = Validator::new().validate(&schema, &obj, None) {
            errs.extend(
                cel.iter()
                    .map(|e| e.field_path.trim_start_matches('.').to_owned()),
            );
        }
    }
    errs.into_iter()
        .map(|p| p.trim_start_matches('.').to_owned())
        .collect()
}

/// Field paths `parse_manifests` refuses `obj` for, plus whether it refused for a reason other
/// than a schema/CEL rule (a decode error: wrong type, unknown or missing field).
fn pure(obj: &Value) -> (BTreeSet<String>, bool) {
    match parse_manifests(&serde_yaml::to_string(obj).unwrap()) {
        Ok(_) => (BTreeSet::new(), false),
        Err(e) => {
            let mut paths = BTreeSet::new();
            let mut decode = false;
            for p in &e.problems {
                match p {
                    DocumentError::Invalid { error, .. } => {
                        paths.insert(error.path.clone());
                    }
                    _ => decode = true,
                }
            }
            (paths, decode)
        }
    }
}

fn vm() -> Value {
    json!({"apiVersion": "yun.dev/v1alpha1", "kind": "VirtualMachine",
           "metadata": {"name": "web", "namespace": "default"},
           "spec": {"image": "yun-test", "cpu": 1, "memoryMiB": 256}})
}

fn image() -> Value {
    let art = |p: &str| json!({"source": format!("file:///img/{p}"), "sha256": SUM});
    json!({"apiVersion": "yun.dev/v1alpha1", "kind": "VmImage",
           "metadata": {"name": "yun-test"},
           "spec": {"os": "busybox", "disk": {"source": "file:///img/d.qcow2", "format": "qcow2", "sha256": SUM},
                    "kernel": art("vmlinuz"), "initrd": art("initrd"), "cmdline": "console=ttyS0"}})
}

fn host() -> Value {
    json!({"apiVersion": "yun.dev/v1alpha1", "kind": "Host", "metadata": {"name": "rack1-n1"},
           "spec": {"unschedulable": false, "bmc": {"address": "10.0.0.5", "credentialsSecret": "bmc-n1"}}})
}

/// `vm()` with `spec.scheduling` set to `scheduling`.
fn vm_scheduling(scheduling: Value) -> Value {
    with(vm(), "/spec/scheduling", Some(scheduling))
}

/// `vm()` with a spread constraint: `{group: db, topology: rack}` plus `extra` fields.
fn vm_spread(extra: Value) -> Value {
    let mut spread = json!({"group": "db", "topology": "rack"});
    for (k, v) in extra.as_object().unwrap() {
        spread[k] = v.clone();
    }
    vm_scheduling(json!({ "spread": spread }))
}

/// `host()` with `spec.overcommit` set to `overcommit`.
fn host_overcommit(overcommit: Value) -> Value {
    with(host(), "/spec/overcommit", Some(overcommit))
}

/// `base` with the value at JSON pointer `ptr` replaced (`None` removes it); the last segment
/// may be an object key or an array index.
fn with(mut base: Value, ptr: &str, v: Option<Value>) -> Value {
    let (parent, key) = ptr.rsplit_once('/').unwrap();
    match base.pointer_mut(parent).unwrap() {
        Value::Array(items) => {
            let i: usize = key.parse().unwrap();
            match v {
                Some(v) => items[i] = v,
                None => drop(items.remove(i)),
            }
        }
        parent => {
            let obj = parent.as_object_mut().unwrap();
            match v {
                Some(v) => obj.insert(key.to_owned(), v),
                None => obj.remove(key),
            };
        }
    }
    base
}

/// Each case: (description, object, expected refused paths; empty = accepted).
fn cases() -> Vec<(&'static str, Value, Vec<&'static str>)> {
    let s = |x: &str| Some(json!(x));
    let n = |x: u64| Some(json!(x));
    vec![
        ("vm ok", vm(), vec![]),
        (
            "vm bounds low ok",
            with(
                with(with(vm(), "/spec/cpu", n(1)), "/spec/memoryMiB", n(64)),
                "/spec/diskGiB",
                n(1),
            ),
            vec![],
        ),
        (
            "vm bounds high ok",
            with(
                with(
                    with(vm(), "/spec/cpu", n(256)),
                    "/spec/memoryMiB",
                    n(4194304),
                ),
                "/spec/diskGiB",
                n(65536),
            ),
            vec![],
        ),
        ("cpu 0", with(vm(), "/spec/cpu", n(0)), vec!["spec.cpu"]),
        ("cpu 257", with(vm(), "/spec/cpu", n(257)), vec!["spec.cpu"]),
        (
            "memory 63",
            with(vm(), "/spec/memoryMiB", n(63)),
            vec!["spec.memoryMiB"],
        ),
        (
            "memory too big",
            with(vm(), "/spec/memoryMiB", n(4194305)),
            vec!["spec.memoryMiB"],
        ),
        (
            "disk 0",
            with(vm(), "/spec/diskGiB", n(0)),
            vec!["spec.diskGiB"],
        ),
        (
            "disk 65537",
            with(vm(), "/spec/diskGiB", n(65537)),
            vec!["spec.diskGiB"],
        ),
        (
            "image empty",
            with(vm(), "/spec/image", s("")),
            vec!["spec.image"],
        ),
        (
            "image upper",
            with(vm(), "/spec/image", s("Yun")),
            vec!["spec.image"],
        ),
        (
            "image 254",
            with(vm(), "/spec/image", Some(json!("a".repeat(254)))),
            vec!["spec.image"],
        ),
        (
            "hostname ok",
            with(vm(), "/spec/hostname", s("web-1")),
            vec![],
        ),
        (
            "hostname dot",
            with(vm(), "/spec/hostname", s("a.b")),
            vec!["spec.hostname"],
        ),
        (
            "hostname empty",
            with(vm(), "/spec/hostname", s("")),
            vec!["spec.hostname"],
        ),
        (
            "hostname 64",
            with(vm(), "/spec/hostname", Some(json!("a".repeat(64)))),
            vec!["spec.hostname"],
        ),
        (
            "hostname null is absent",
            with(vm(), "/spec/hostname", Some(Value::Null)),
            vec![],
        ),
        (
            "userData 32768 ascii",
            with(vm(), "/spec/userData", Some(json!("x".repeat(32768)))),
            vec![],
        ),
        (
            "userData 32769 ascii",
            with(vm(), "/spec/userData", Some(json!("x".repeat(32769)))),
            vec!["spec.userData"],
        ),
        (
            "userData bytes > chars",
            with(vm(), "/spec/userData", Some(json!("é".repeat(16385)))),
            vec!["spec.userData"],
        ),
        (
            "name is a subdomain, no hostname",
            with(vm(), "/metadata/name", s("web.prod")),
            vec!["spec.hostname"],
        ),
        (
            "name is a subdomain, hostname",
            with(
                with(vm(), "/metadata/name", s("web.prod")),
                "/spec/hostname",
                s("web"),
            ),
            vec![],
        ),
        (
            "name 254",
            with(vm(), "/metadata/name", Some(json!("a".repeat(254)))),
            vec!["metadata.name"],
        ),
        (
            "namespace upper",
            with(vm(), "/metadata/namespace", s("Prod")),
            vec!["metadata.namespace"],
        ),
        (
            "namespace defaulted",
            with(vm(), "/metadata/namespace", None),
            vec![],
        ),
        (
            "runStrategy Halted",
            with(vm(), "/spec/runStrategy", s("Halted")),
            vec![],
        ),
        (
            "nodeSelector",
            with(vm(), "/spec/nodeSelector", Some(json!({"zone": "a"}))),
            vec![],
        ),
        ("scheduling empty", vm_scheduling(json!({})), vec![]),
        (
            "scheduling null is absent",
            vm_scheduling(Value::Null),
            vec![],
        ),
        (
            "scheduling full",
            vm_scheduling(json!({"qosClass": "Guaranteed", "affinityGroup": "web",
                "antiAffinityGroup": "db", "policy": "BinPack",
                "spread": {"group": "db", "topology": "zone", "maxSkew": 2}})),
            vec![],
        ),
        (
            "qosClass Burstable, policy Spread",
            vm_scheduling(json!({"qosClass": "Burstable", "policy": "Spread"})),
            vec![],
        ),
        (
            "same group for affinity and anti-affinity",
            vm_scheduling(json!({"affinityGroup": "db", "antiAffinityGroup": "db"})),
            vec!["spec.scheduling.antiAffinityGroup"],
        ),
        (
            "same invalid group: schema errors only",
            vm_scheduling(json!({"affinityGroup": "DB", "antiAffinityGroup": "DB"})),
            vec![
                "spec.scheduling.affinityGroup",
                "spec.scheduling.antiAffinityGroup",
            ],
        ),
        (
            "affinityGroup with a dot",
            vm_scheduling(json!({"affinityGroup": "a.b"})),
            vec!["spec.scheduling.affinityGroup"],
        ),
        (
            "affinityGroup empty",
            vm_scheduling(json!({"affinityGroup": ""})),
            vec!["spec.scheduling.affinityGroup"],
        ),
        (
            "antiAffinityGroup 64",
            vm_scheduling(json!({"antiAffinityGroup": "a".repeat(64)})),
            vec!["spec.scheduling.antiAffinityGroup"],
        ),
        (
            "antiAffinityGroup 63",
            vm_scheduling(json!({"antiAffinityGroup": "a".repeat(63)})),
            vec![],
        ),
        ("spread maxSkew defaulted", vm_spread(json!({})), vec![]),
        (
            "spread maxSkew 1 and power",
            vm_spread(json!({"maxSkew": 1, "topology": "power"})),
            vec![],
        ),
        (
            "spread maxSkew 100",
            vm_spread(json!({"maxSkew": 100})),
            vec![],
        ),
        (
            "spread maxSkew 0",
            vm_spread(json!({"maxSkew": 0})),
            vec!["spec.scheduling.spread.maxSkew"],
        ),
        (
            "spread maxSkew 101",
            vm_spread(json!({"maxSkew": 101})),
            vec!["spec.scheduling.spread.maxSkew"],
        ),
        (
            "spread group upper",
            vm_spread(json!({"group": "Db"})),
            vec!["spec.scheduling.spread.group"],
        ),
        (
            "spread and cpu both wrong",
            with(vm_spread(json!({"maxSkew": 0})), "/spec/cpu", n(0)),
            vec!["spec.cpu", "spec.scheduling.spread.maxSkew"],
        ),
        ("image ok", image(), vec![]),
        (
            "image without boot",
            with(
                with(with(image(), "/spec/kernel", None), "/spec/initrd", None),
                "/spec/cmdline",
                None,
            ),
            vec![],
        ),
        (
            "initrd without kernel",
            with(with(image(), "/spec/kernel", None), "/spec/cmdline", None),
            vec!["spec.initrd"],
        ),
        (
            "cmdline without kernel",
            with(with(image(), "/spec/kernel", None), "/spec/initrd", None),
            vec!["spec.cmdline"],
        ),
        (
            "kernel null",
            with(image(), "/spec/kernel", Some(Value::Null)),
            vec!["spec.cmdline", "spec.initrd"],
        ),
        (
            "sha upper",
            with(
                image(),
                "/spec/disk/sha256",
                Some(json!(SUM.to_uppercase())),
            ),
            vec!["spec.disk.sha256"],
        ),
        (
            "sha short",
            with(image(), "/spec/kernel/sha256", Some(json!(&SUM[1..]))),
            vec!["spec.kernel.sha256"],
        ),
        (
            "http source",
            with(image(), "/spec/initrd/source", s("http://x/initrd")),
            vec!["spec.initrd.source"],
        ),
        (
            "relative file source",
            with(image(), "/spec/disk/source", s("file://img/d")),
            vec!["spec.disk.source"],
        ),
        (
            "source too long",
            with(
                image(),
                "/spec/disk/source",
                Some(json!(format!("file:///{}", "a".repeat(4090)))),
            ),
            vec!["spec.disk.source"],
        ),
        (
            "os empty",
            with(image(), "/spec/os", s("")),
            vec!["spec.os"],
        ),
        (
            "os 64",
            with(image(), "/spec/os", Some(json!("o".repeat(64)))),
            vec!["spec.os"],
        ),
        (
            "cmdline 2049",
            with(image(), "/spec/cmdline", Some(json!("c".repeat(2049)))),
            vec!["spec.cmdline"],
        ),
        ("host ok", host(), vec![]),
        ("host no bmc", with(host(), "/spec/bmc", None), vec![]),
        (
            "host name with dot",
            with(host(), "/metadata/name", s("n1.example.com")),
            vec!["metadata.name"],
        ),
        (
            "host name 64",
            with(host(), "/metadata/name", Some(json!("h".repeat(64)))),
            vec!["metadata.name"],
        ),
        (
            "host namespace dropped",
            with(host(), "/metadata/namespace", s("default")),
            vec![],
        ),
        (
            "bmc address empty",
            with(host(), "/spec/bmc/address", s("")),
            vec!["spec.bmc.address"],
        ),
        (
            "bmc secret bad",
            with(host(), "/spec/bmc/credentialsSecret", s("Bad_Secret")),
            vec!["spec.bmc.credentialsSecret"],
        ),
        (
            "host in maintenance",
            with(host(), "/spec/maintenance", Some(json!(true))),
            vec![],
        ),
        ("overcommit empty", host_overcommit(json!({})), vec![]),
        (
            "overcommit low edges",
            host_overcommit(json!({"cpu": 1.0, "memory": 1.0, "disk": 1.0})),
            vec![],
        ),
        (
            "overcommit high edges",
            host_overcommit(json!({"cpu": 16.0, "memory": 4.0, "disk": 4.0})),
            vec![],
        ),
        (
            "overcommit integers",
            host_overcommit(json!({"cpu": 8, "memory": 2})),
            vec![],
        ),
        (
            "overcommit cpu 0.5",
            host_overcommit(json!({"cpu": 0.5})),
            vec!["spec.overcommit.cpu"],
        ),
        (
            "overcommit cpu 17",
            host_overcommit(json!({"cpu": 17})),
            vec!["spec.overcommit.cpu"],
        ),
        (
            "overcommit cpu 16.01",
            host_overcommit(json!({"cpu": 16.01})),
            vec!["spec.overcommit.cpu"],
        ),
        (
            "overcommit memory 4.5",
            host_overcommit(json!({"memory": 4.5})),
            vec!["spec.overcommit.memory"],
        ),
        (
            "overcommit disk 0.99 and memory 0",
            host_overcommit(json!({"disk": 0.99, "memory": 0})),
            vec!["spec.overcommit.disk", "spec.overcommit.memory"],
        ),
    ]
}

#[test]
fn schema_cel_and_pure_validation_agree() {
    let mut disagreements = vec![];
    for (what, obj, expected) in cases()
        .into_iter()
        .chain(network_kinds::cases())
        .chain(vm_networks::cases())
        .chain(volumes::cases())
        .chain(device_identity::cases())
    {
        let expected: BTreeSet<String> = expected.into_iter().map(str::to_owned).collect();
        let server = apiserver(&obj);
        let (pure_paths, decode) = pure(&obj);
        if server != expected || pure_paths != expected || decode {
            disagreements.push(format!("{what}: expected {expected:?}, api server {server:?}, pure {pure_paths:?} (decode error: {decode})"));
        }
    }
    assert!(disagreements.is_empty(), "{disagreements:#?}");
}

/// Shapes serde refuses while decoding (so there is no field-level `Invalid` path to compare):
/// both layers must still refuse them.
#[test]
fn both_layers_refuse_malformed_shapes() {
    let shapes = [
        (
            "unknown spec field",
            with(vm(), "/spec/cpus", Some(json!(1))),
        ),
        (
            "unknown nested field",
            with(image(), "/spec/disk/compression", Some(json!("zstd"))),
        ),
        ("missing required", with(vm(), "/spec/image", None)),
        ("wrong type", with(vm(), "/spec/cpu", Some(json!("1")))),
        (
            "number for string",
            with(vm(), "/spec/hostname", Some(json!(1234))),
        ),
        (
            "bad enum",
            with(image(), "/spec/disk/format", Some(json!("vmdk"))),
        ),
        (
            "bad runStrategy",
            with(vm(), "/spec/runStrategy", Some(json!("Sometimes"))),
        ),
        (
            "nodeSelector number",
            with(vm(), "/spec/nodeSelector", Some(json!({"rack": 7}))),
        ),
        (
            "unknown field inside scheduling",
            vm_scheduling(json!({"priority": 5})),
        ),
        (
            "unknown field inside spread",
            vm_spread(json!({"whenUnsatisfiable": "ScheduleAnyway"})),
        ),
        ("bad topology", vm_spread(json!({"topology": "region"}))),
        (
            "topology not lowercase",
            vm_spread(json!({"topology": "Zone"})),
        ),
        (
            "bad qosClass",
            vm_scheduling(json!({"qosClass": "BestEffort"})),
        ),
        ("bad policy", vm_scheduling(json!({"policy": "Random"}))),
        (
            "spread without group",
            vm_scheduling(json!({"spread": {"topology": "zone"}})),
        ),
        (
            "spread without topology",
            vm_scheduling(json!({"spread": {"group": "db"}})),
        ),
        ("maxSkew fractional", vm_spread(json!({"maxSkew": 1.5}))),
        ("maxSkew as text", vm_spread(json!({"maxSkew": "1"}))),
        (
            "affinityGroup number",
            vm_scheduling(json!({"affinityGroup": 7})),
        ),
        ("scheduling as a list", vm_scheduling(json!(["Guaranteed"]))),
        (
            "overcommit ratio as text",
            host_overcommit(json!({"cpu": "4"})),
        ),
        (
            "unknown field inside overcommit",
            host_overcommit(json!({"network": 2.0})),
        ),
        (
            "maintenance as text",
            with(host(), "/spec/maintenance", Some(json!("yes"))),
        ),
    ];
    for (what, obj) in shapes
        .into_iter()
        .chain(network_kinds::malformed_shapes())
        .chain(vm_networks::malformed_shapes())
        .chain(volumes::malformed_shapes())
        .chain(device_identity::malformed_shapes())
    {
        assert!(
            !apiserver(&obj).is_empty(),
            "{what}: API server would accept"
        );
        let (paths, decode) = pure(&obj);
        assert!(
            decode || !paths.is_empty(),
            "{what}: parse_manifests accepted"
        );
    }
}
