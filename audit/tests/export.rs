//! SIEM export of a verified log.

mod common;

use common::{read_lines, write_lines};
use yun_audit::{
    Actor, Anchor, AuditEntry, AuditError, AuditLog, EXPORT_SCHEMA, ExportOptions, Outcome, export,
    export_with,
};

#[allow(clippy::unwrap_used)]
fn sample_log(path: &std::path::Path) -> AuditLog {
    let mut log = AuditLog::open(path).unwrap();
    log.append_batch(&[
        AuditEntry::new(
            Actor::component("yun-controller"),
            "vm.place",
            "VirtualMachine default/web",
        )
        .with_detail("host", "node-2"),
        AuditEntry::new(
            Actor::user("alice", Some("proj-a".into())),
            "credential.issue",
            "ApplicationCredential ci",
        )
        .with_outcome(Outcome::Denied {
            message: "role member may not issue".into(),
        }),
        AuditEntry::new(
            Actor::component("yun-agent/node-2"),
            "vm.start",
            "VirtualMachine default/web",
        )
        .with_outcome(Outcome::Error {
            message: "qemu exited".into(),
        }),
    ])
    .unwrap();
    log
}

#[test]
fn export_writes_flat_json_lines() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.log");
    drop(sample_log(&path));
    let mut out = Vec::new();
    assert_eq!(export(&path, &mut out).unwrap(), 3);
    let text = String::from_utf8(out).unwrap();
    let rows: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(rows.len(), 3);
    let stored = read_lines(&path);
    for (i, row) in rows.iter().enumerate() {
        assert_eq!(row["schema"], EXPORT_SCHEMA);
        assert_eq!(row["seq"], i as u64 + 1);
        let time: jiff::Timestamp = row["time"].as_str().unwrap().parse().unwrap();
        let record: serde_json::Value = serde_json::from_str(&stored[i]).unwrap();
        assert_eq!(row["hash"], record["hash"]);
        assert_eq!(row["prev"], record["prev"]);
        assert_eq!(row["time"], record["time"]);
        assert!(time > "2020-01-01T00:00:00Z".parse().unwrap());
    }
    assert_eq!(rows[0]["actorKind"], "component");
    assert_eq!(rows[0]["actorId"], "yun-controller");
    assert!(rows[0].get("actorProject").is_none());
    assert_eq!(rows[0]["action"], "vm.place");
    assert_eq!(rows[0]["object"], "VirtualMachine default/web");
    assert_eq!(rows[0]["result"], "ok");
    assert!(rows[0].get("message").is_none());
    assert_eq!(rows[0]["details"], serde_json::json!({"host": "node-2"}));

    assert_eq!(rows[1]["actorKind"], "user");
    assert_eq!(rows[1]["actorProject"], "proj-a");
    assert_eq!(rows[1]["result"], "denied");
    assert_eq!(rows[1]["message"], "role member may not issue");
    assert!(rows[1].get("details").is_none());

    assert_eq!(rows[2]["result"], "error");
    assert_eq!(rows[2]["message"], "qemu exited");
}

#[test]
fn export_after_seq_and_anchor() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.log");
    let anchor = sample_log(&path).anchor();
    let mut out = Vec::new();
    let options = ExportOptions {
        anchor: Some(anchor.clone()),
        after_seq: 2,
    };
    assert_eq!(export_with(&path, &options, &mut out).unwrap(), 1);
    let row: serde_json::Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(row["seq"], 3);

    let ahead = Anchor {
        seq: 4,
        hash: anchor.hash,
    };
    let mut out = Vec::new();
    let options = ExportOptions {
        anchor: Some(ahead),
        after_seq: 0,
    };
    assert!(matches!(
        export_with(&path, &options, &mut out),
        Err(AuditError::Broken { .. })
    ));
    assert!(out.is_empty());
}

#[test]
fn tampered_log_is_not_exported() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.log");
    drop(common::write_log(&path, 5));
    let mut lines = read_lines(&path);
    lines[3] = lines[3].replace("web-4", "web-0");
    write_lines(&path, &lines);
    let mut out = Vec::new();
    match export(&path, &mut out) {
        Err(AuditError::Broken {
            line: 4,
            seq: Some(4),
            ..
        }) => {}
        other => panic!("expected Broken at line 4, got {other:?}"),
    }
    assert!(out.is_empty(), "a tampered log leaked {} bytes", out.len());
}
