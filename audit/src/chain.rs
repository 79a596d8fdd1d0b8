//! The hash chain: how a record's line is built and sealed, and how a stored line is checked.
//!
//! A record's line is the compact `serde_json` serialization of its fields in this fixed
//! order, with no whitespace:
//!
//! `seq, time, actor{kind, id, project?}, action, object, outcome{result, message?}, details?, prev`
//!
//! `project` is omitted when absent, `message` exists only for `error`/`denied` outcomes,
//! `details` is omitted when empty and its object keys are sorted (recursively) so the same
//! entry always gives the same bytes whatever `serde_json` feature set is compiled in.
//! Those bytes (the *unsigned line*, ending in `}`) are hashed with SHA-256; the stored line
//! is the unsigned line with its final `}` replaced by `,"hash":"<64 lowercase hex>"}`.
//!
//! Verification therefore needs no re-serialization: strip the fixed 75-byte
//! `,"hash":"…"}` suffix, put back `}`, hash, compare. Hashing the stored bytes (rather than a
//! re-serialization of the parsed record) keeps verification exact even for values `serde_json`
//! does not round-trip bit-for-bit (floats in `details`), and any byte changed anywhere in the
//! line, including whitespace or key order, changes the hash.

use serde::Serialize;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use crate::problem::Problem;
use crate::record::{Actor, AuditEntry, AuditRecord, Outcome};

/// `prev` of the first record.
pub const GENESIS_PREV: &str = "0000000000000000000000000000000000000000000000000000000000000000";

const HASH_KEY: &[u8] = b",\"hash\":\"";
/// `,"hash":"` + 64 hex digits + `"}`.
const SEAL_LEN: usize = HASH_KEY.len() + 64 + 2;

/// The hashed part of a record, in the canonical field order.
#[derive(Serialize)]
struct UnsignedRecord<'a> {
    seq: u64,
    time: &'a jiff::Timestamp,
    actor: &'a Actor,
    action: &'a str,
    object: &'a str,
    outcome: &'a Outcome,
    #[serde(skip_serializing_if = "is_empty")]
    details: &'a Map<String, Value>,
    prev: &'a str,
}

fn is_empty(details: &&Map<String, Value>) -> bool {
    details.is_empty()
}

/// Appends the sealed line (with its trailing `\n`) for `entry` to `out` and returns its hash.
pub(crate) fn seal_entry(
    seq: u64,
    time: &jiff::Timestamp,
    entry: &AuditEntry,
    prev: &str,
    out: &mut Vec<u8>,
) -> Result<String, serde_json::Error> {
    let sorted;
    let details = if is_sorted_deep_map(&entry.details) {
        &entry.details
    } else {
        sorted = sorted_map(&entry.details);
        &sorted
    };
    let unsigned = UnsignedRecord {
        seq,
        time,
        actor: &entry.actor,
        action: &entry.action,
        object: &entry.object,
        outcome: &entry.outcome,
        details,
        prev,
    };
    let start = out.len();
    serde_json::to_writer(&mut *out, &unsigned)?;
    let hash = hex::encode(Sha256::digest(&out[start..]));
    // The serialization of a struct always ends in '}'.
    out.pop();
    out.extend_from_slice(HASH_KEY);
    out.extend_from_slice(hash.as_bytes());
    out.extend_from_slice(b"\"}\n");
    Ok(hash)
}

/// The canonical unsigned bytes of a record (what its `hash` is the SHA-256 of, for a record
/// written by this crate).
pub fn canonical_bytes(record: &AuditRecord) -> Result<Vec<u8>, serde_json::Error> {
    let entry = AuditEntry {
        actor: record.actor.clone(),
        action: record.action.clone(),
        object: record.object.clone(),
        outcome: record.outcome.clone(),
        details: record.details.clone(),
    };
    let mut out = Vec::new();
    seal_entry(record.seq, &record.time, &entry, &record.prev, &mut out)?;
    out.truncate(out.len() - SEAL_LEN - 1);
    out.push(b'}');
    Ok(out)
}

/// Hex SHA-256 of [`canonical_bytes`].
pub fn record_hash(record: &AuditRecord) -> Result<String, serde_json::Error> {
    Ok(hex::encode(Sha256::digest(canonical_bytes(record)?)))
}

/// Checks the seal of a stored line (without its `\n`) and returns the hash its unsigned
/// bytes actually have, together with the hash the line claims.
pub(crate) fn line_hashes(line: &[u8]) -> Result<(String, &str), Problem> {
    let malformed = |reason: &str| Problem::Malformed {
        reason: reason.to_string(),
    };
    let Some(body_len) = line.len().checked_sub(SEAL_LEN) else {
        return Err(malformed("line too short to hold a record"));
    };
    let (body, seal) = line.split_at(body_len);
    if !seal.starts_with(HASH_KEY) || !seal.ends_with(b"\"}") {
        return Err(malformed("line does not end with the \"hash\" member"));
    }
    let claimed = &seal[HASH_KEY.len()..HASH_KEY.len() + 64];
    if !claimed
        .iter()
        .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    {
        return Err(malformed("\"hash\" is not 64 lowercase hex digits"));
    }
    let claimed = std::str::from_utf8(claimed).map_err(|_| malformed("\"hash\" is not UTF-8"))?;
    let mut hasher = Sha256::new();
    hasher.update(body);
    hasher.update(b"}");
    Ok((hex::encode(hasher.finalize()), claimed))
}

fn is_sorted_deep(value: &Value) -> bool {
    match value {
        Value::Object(map) => is_sorted_deep_map(map),
        Value::Array(items) => items.iter().all(is_sorted_deep),
        _ => true,
    }
}

fn is_sorted_deep_map(map: &Map<String, Value>) -> bool {
    let mut keys = map.keys();
    let mut last = keys.next();
    for key in keys {
        if last.is_some_and(|l| l > key) {
            return false;
        }
        last = Some(key);
    }
    map.values().all(is_sorted_deep)
}

fn sorted_map(map: &Map<String, Value>) -> Map<String, Value> {
    let mut pairs: Vec<_> = map.iter().collect();
    pairs.sort_by(|a, b| a.0.cmp(b.0));
    pairs
        .into_iter()
        .map(|(k, v)| (k.clone(), sorted_value(v)))
        .collect()
}

fn sorted_value(value: &Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(sorted_map(map)),
        Value::Array(items) => Value::Array(items.iter().map(sorted_value).collect()),
        other => other.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::ActorKind;

    fn record() -> AuditRecord {
        let time: jiff::Timestamp = "2025-03-01T12:00:00.5Z".parse().unwrap();
        let mut details = Map::new();
        details.insert("host".into(), Value::from("node-2"));
        details.insert("cpus".into(), Value::from(4));
        AuditRecord {
            seq: 7,
            time,
            actor: Actor::user("u-1", Some("p-1".into())),
            action: "vm.place".into(),
            object: "VirtualMachine default/web".into(),
            outcome: Outcome::Ok,
            details,
            prev: GENESIS_PREV.into(),
            hash: String::new(),
        }
    }

    #[test]
    fn same_record_same_hash() {
        assert_eq!(
            record_hash(&record()).unwrap(),
            record_hash(&record()).unwrap()
        );
    }

    #[test]
    fn canonical_bytes_have_fixed_field_order_and_sorted_details() {
        let bytes = String::from_utf8(canonical_bytes(&record()).unwrap()).unwrap();
        assert_eq!(
            bytes,
            "{\"seq\":7,\"time\":\"2025-03-01T12:00:00.5Z\",\
             \"actor\":{\"kind\":\"user\",\"id\":\"u-1\",\"project\":\"p-1\"},\
             \"action\":\"vm.place\",\"object\":\"VirtualMachine default/web\",\
             \"outcome\":{\"result\":\"ok\"},\"details\":{\"cpus\":4,\"host\":\"node-2\"},\
             \"prev\":\"0000000000000000000000000000000000000000000000000000000000000000\"}"
        );
    }

    #[test]
    fn any_field_change_changes_the_hash() {
        let base = record_hash(&record()).unwrap();
        type Edit = Box<dyn Fn(&mut AuditRecord)>;
        let edits: Vec<Edit> = vec![
            Box::new(|r| r.seq += 1),
            Box::new(|r| {
                r.time = r
                    .time
                    .checked_add(jiff::SignedDuration::from_nanos(1))
                    .unwrap()
            }),
            Box::new(|r| r.actor.kind = ActorKind::ApplicationCredential),
            Box::new(|r| r.actor.id.push('x')),
            Box::new(|r| r.actor.project = None),
            Box::new(|r| r.action = "vm.start".into()),
            Box::new(|r| r.object.push('2')),
            Box::new(|r| {
                r.outcome = Outcome::Error {
                    message: "x".into(),
                }
            }),
            Box::new(|r| {
                r.details.insert("host".into(), Value::from("node-3"));
            }),
            Box::new(|r| r.details.clear()),
            Box::new(|r| r.prev = "1".repeat(64)),
        ];
        for (i, edit) in edits.iter().enumerate() {
            let mut changed = record();
            edit(&mut changed);
            assert_ne!(
                record_hash(&changed).unwrap(),
                base,
                "edit #{i} kept the hash"
            );
        }
    }

    #[test]
    fn sealed_line_verifies_and_detects_a_flipped_byte() {
        let r = record();
        let entry = AuditEntry {
            actor: r.actor.clone(),
            action: r.action.clone(),
            object: r.object.clone(),
            outcome: r.outcome.clone(),
            details: r.details.clone(),
        };
        let mut line = Vec::new();
        let hash = seal_entry(r.seq, &r.time, &entry, &r.prev, &mut line).unwrap();
        assert_eq!(hash, record_hash(&r).unwrap());
        assert_eq!(line.pop(), Some(b'\n'));
        let (computed, claimed) = line_hashes(&line).unwrap();
        assert_eq!((computed.as_str(), claimed), (hash.as_str(), hash.as_str()));

        let pos = line.iter().position(|&b| b == b'w').unwrap();
        line[pos] = b'W';
        let (computed, claimed) = line_hashes(&line).unwrap();
        assert_ne!(computed, claimed);
    }

    #[test]
    fn unsorted_details_are_sorted_before_hashing() {
        let mut inner = Map::new();
        inner.insert("b".into(), Value::from(1));
        inner.insert("a".into(), Value::from(2));
        let mut details = Map::new();
        details.insert("z".into(), Value::Object(inner));
        details.insert("y".into(), Value::Array(vec![Value::from("q")]));
        let sorted = sorted_map(&details);
        assert!(is_sorted_deep_map(&sorted));
        assert_eq!(
            serde_json::to_string(&sorted).unwrap(),
            r#"{"y":["q"],"z":{"a":2,"b":1}}"#
        );
    }
}
