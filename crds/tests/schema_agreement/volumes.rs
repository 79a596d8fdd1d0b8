//! Agreement cases for `Volume` and the VM's `volumes`.

use serde_json::{Value, json};

use super::{vm, with};

fn volume(spec: Value) -> Value {
    json!({"apiVersion": "yun.dev/v1alpha1", "kind": "Volume",
           "metadata": {"name": "data", "namespace": "t"}, "spec": spec})
}

fn iscsi() -> Value {
    volume(json!({"sizeGiB": 10, "iscsi": {
        "portals": ["10.0.0.5", "san-b.example:3261"],
        "iqn": "iqn.2024-01.com.example:storage.lun1", "lun": 1,
        "chap": {"secretRef": {"name": "san-chap"}}}}))
}

fn nfs() -> Value {
    volume(
        json!({"sizeGiB": 1, "nfs": {"server": "nas1", "export": "/srv/vols",
        "path": "tenant-a/db.raw"}}),
    )
}

fn fc() -> Value {
    volume(json!({"sizeGiB": 5, "accessMode": "ReadOnlyMany",
        "fc": {"wwns": ["0x500a098280feeba5", "50:0a:09:82:80:fe:eb:a6"], "lun": 3}}))
}

/// Each case: (description, object, expected refused paths; empty = accepted).
pub(crate) fn cases() -> Vec<(&'static str, Value, Vec<&'static str>)> {
    let s = |x: &str| Some(json!(x));
    let vols = |v: Value| with(vm(), "/spec/volumes", Some(v));
    vec![
        ("iscsi ok", iscsi(), vec![]),
        ("nfs ok", nfs(), vec![]),
        ("fc ok", fc(), vec![]),
        (
            "local ok",
            volume(json!({"sizeGiB": 3, "local": {}})),
            vec![],
        ),
        ("no driver", volume(json!({"sizeGiB": 3})), vec!["spec"]),
        (
            "two drivers",
            with(iscsi(), "/spec/local", Some(json!({}))),
            vec!["spec"],
        ),
        (
            "size 0",
            with(iscsi(), "/spec/sizeGiB", Some(json!(0))),
            vec!["spec.sizeGiB"],
        ),
        (
            "size too big",
            with(iscsi(), "/spec/sizeGiB", Some(json!(65_537))),
            vec!["spec.sizeGiB"],
        ),
        (
            "port 0",
            with(iscsi(), "/spec/iscsi/portals/1", s("san:0")),
            vec!["spec.iscsi.portals[1]"],
        ),
        (
            "port 65536",
            with(iscsi(), "/spec/iscsi/portals/0", s("san:65536")),
            vec!["spec.iscsi.portals[0]"],
        ),
        (
            "port 65535",
            with(iscsi(), "/spec/iscsi/portals/0", s("san:65535")),
            vec![],
        ),
        (
            "no portals",
            with(iscsi(), "/spec/iscsi/portals", Some(json!([]))),
            vec!["spec.iscsi.portals"],
        ),
        (
            "iqn without date",
            with(iscsi(), "/spec/iscsi/iqn", s("iqn.com.example")),
            vec!["spec.iscsi.iqn"],
        ),
        (
            "iqn month 13",
            with(iscsi(), "/spec/iscsi/iqn", s("iqn.2024-13.com.example")),
            vec!["spec.iscsi.iqn"],
        ),
        (
            "lun too big",
            with(iscsi(), "/spec/iscsi/lun", Some(json!(16_384))),
            vec!["spec.iscsi.lun"],
        ),
        (
            "chap file and secret",
            with(iscsi(), "/spec/iscsi/chap/file", s("/etc/yun/chap")),
            vec!["spec.iscsi.chap"],
        ),
        (
            "chap file only",
            with(
                iscsi(),
                "/spec/iscsi/chap",
                Some(json!({"file": "/etc/yun/chap"})),
            ),
            vec![],
        ),
        (
            "chap relative file",
            with(
                iscsi(),
                "/spec/iscsi/chap",
                Some(json!({"file": "etc/chap"})),
            ),
            vec!["spec.iscsi.chap.file"],
        ),
        (
            "chap empty",
            with(iscsi(), "/spec/iscsi/chap", Some(json!({}))),
            vec!["spec.iscsi.chap"],
        ),
        (
            "nfs dotdot",
            with(nfs(), "/spec/nfs/path", s("a/../../etc/shadow")),
            vec!["spec.nfs.path"],
        ),
        (
            "nfs absolute path",
            with(nfs(), "/spec/nfs/path", s("/etc/shadow")),
            vec!["spec.nfs.path"],
        ),
        (
            "nfs relative export",
            with(nfs(), "/spec/nfs/export", s("srv")),
            vec!["spec.nfs.export"],
        ),
        (
            "nfs server space",
            with(nfs(), "/spec/nfs/server", s("nas 1")),
            vec!["spec.nfs.server"],
        ),
        (
            "wwn short",
            with(fc(), "/spec/fc/wwns/0", s("500a0982")),
            vec!["spec.fc.wwns[0]"],
        ),
        (
            "no wwns",
            with(fc(), "/spec/fc/wwns", Some(json!([]))),
            vec!["spec.fc.wwns"],
        ),
        (
            "vm volumes ok",
            vols(json!([{"volume": "data"}, {"volume": "logs", "readOnly": true}])),
            vec![],
        ),
        (
            "vm volume twice",
            vols(json!([{"volume": "data"}, {"volume": "data"}])),
            vec!["spec.volumes"],
        ),
        (
            "vm volume name upper",
            vols(json!([{"volume": "Data"}])),
            vec!["spec.volumes[0].volume"],
        ),
        (
            "17 vm volumes",
            vols(Value::Array(
                (0..17)
                    .map(|i| json!({"volume": format!("v{i}")}))
                    .collect(),
            )),
            vec!["spec.volumes"],
        ),
    ]
}

/// Shapes serde refuses while decoding: both layers must refuse them.
pub(crate) fn malformed_shapes() -> Vec<(&'static str, Value)> {
    vec![
        (
            "bad access mode",
            with(iscsi(), "/spec/accessMode", Some(json!("ReadWriteMany"))),
        ),
        (
            "unknown iscsi field",
            with(iscsi(), "/spec/iscsi/target", Some(json!("x"))),
        ),
        (
            "lun as text",
            with(iscsi(), "/spec/iscsi/lun", Some(json!("1"))),
        ),
        ("missing size", with(iscsi(), "/spec/sizeGiB", None)),
        (
            "vm volume without name",
            with(vm(), "/spec/volumes", Some(json!([{"readOnly": true}]))),
        ),
    ]
}
