//! Helpers shared by the integration tests: entries, and raw line surgery on a log file the
//! way an attacker with file access would do it.
#![allow(dead_code, clippy::unwrap_used)]

use std::path::Path;

use sha2::{Digest, Sha256};
use yun_audit::{Actor, AuditEntry, AuditLog, Outcome};

pub fn entry(n: u64) -> AuditEntry {
    AuditEntry::new(
        Actor::component("yun-controller"),
        "vm.place",
        format!("VirtualMachine default/web-{n}"),
    )
    .with_detail("host", format!("node-{}", n % 3))
}

/// A log with records seq 1..=count.
pub fn write_log(path: &Path, count: u64) -> AuditLog {
    let mut log = AuditLog::open(path).unwrap();
    let entries: Vec<_> = (1..=count).map(entry).collect();
    assert_eq!(log.append_batch(&entries).unwrap(), 1..count + 1);
    log
}

pub fn read_lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect()
}

pub fn write_lines(path: &Path, lines: &[String]) {
    let mut text = lines.join("\n");
    text.push('\n');
    std::fs::write(path, text).unwrap();
}

/// Recomputes a line's hash as the README documents it: SHA-256 of the line with the final
/// `,"hash":"…"` member removed.
pub fn reseal(line: &str) -> String {
    let body = &line[..line.len() - 75];
    assert!(
        line[body.len()..].starts_with(",\"hash\":\""),
        "unexpected layout: {line}"
    );
    let unsigned = format!("{body}}}");
    let hash = hex::encode(Sha256::digest(unsigned.as_bytes()));
    format!("{body},\"hash\":\"{hash}\"}}")
}

pub fn hash_of(line: &str) -> String {
    let value: serde_json::Value = serde_json::from_str(line).unwrap();
    value["hash"].as_str().unwrap().to_string()
}

pub fn failed_entry(n: u64) -> AuditEntry {
    entry(n).with_outcome(Outcome::Error {
        message: "no host fits".into(),
    })
}
