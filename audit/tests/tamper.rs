//! Verification against the tampering it exists to reveal, on real files.

mod common;

use std::os::unix::fs::PermissionsExt;

use common::{entry, failed_entry, hash_of, read_lines, reseal, write_lines, write_log};
use yun_audit::{Anchor, AuditError, AuditLog, GENESIS_PREV, Problem, verify};

/// The (line, seq, problem) of a Broken error.
fn broken(result: Result<yun_audit::VerifyReport, AuditError>) -> (usize, Option<u64>, Problem) {
    match result {
        Err(AuditError::Broken {
            line, seq, problem, ..
        }) => (line, seq, problem),
        other => panic!("expected Broken, got {other:?}"),
    }
}

#[test]
fn chain_continues_across_reopen_and_verifies() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit/controller.log");
    let mut log = AuditLog::open(&path).unwrap();
    assert_eq!((log.last_seq(), log.last_hash()), (0, GENESIS_PREV));
    assert_eq!(
        log.append_batch(&[entry(1), failed_entry(2), entry(3)])
            .unwrap(),
        1..4
    );
    assert_eq!(log.append(&entry(4)).unwrap(), 4);
    let hash_after_4 = log.last_hash().to_string();
    drop(log);

    let mode = std::fs::metadata(&path).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);

    let mut log = AuditLog::open(&path).unwrap();
    assert_eq!(
        (log.last_seq(), log.last_hash()),
        (4, hash_after_4.as_str())
    );
    assert_eq!(log.append_batch(&[entry(5), entry(6)]).unwrap(), 5..7);
    assert_eq!(log.append_batch(&[]).unwrap(), 7..7);
    let anchor = log.anchor();
    drop(log);

    let report = verify(&path, Some(&anchor)).unwrap();
    assert_eq!(report.records, 6);
    assert_eq!(report.anchor(), anchor);
    assert_eq!(report.unterminated_tail_bytes, 0);
    let lines = read_lines(&path);
    assert_eq!(lines.len(), 6);
    let fifth: serde_json::Value = serde_json::from_str(&lines[4]).unwrap();
    assert_eq!(fifth["seq"], 5);
    assert_eq!(fifth["prev"], hash_after_4.as_str());
    let second: serde_json::Value = serde_json::from_str(&lines[1]).unwrap();
    assert_eq!(
        second["outcome"],
        serde_json::json!({"result": "error", "message": "no host fits"})
    );
}

#[test]
fn a_second_writer_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.log");
    let _log = AuditLog::open(&path).unwrap();
    assert!(matches!(
        AuditLog::open(&path),
        Err(AuditError::Locked { .. })
    ));
}

#[test]
fn edited_field_names_the_edited_record() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.log");
    drop(write_log(&path, 10));
    let mut lines = read_lines(&path);
    lines[4] = lines[4].replace("web-5", "web-X");
    write_lines(&path, &lines);
    let (line, seq, problem) = broken(verify(&path, None));
    assert_eq!((line, seq), (5, Some(5)));
    assert!(matches!(problem, Problem::Edited { .. }), "{problem:?}");

    // The outcome, too.
    drop(write_log(&dir.path().join("b.log"), 10));
    let path = dir.path().join("b.log");
    let mut lines = read_lines(&path);
    lines[6] = lines[6].replace(r#"{"result":"ok"}"#, r#"{"result":"error","message":"x"}"#);
    write_lines(&path, &lines);
    let (line, seq, problem) = broken(verify(&path, None));
    assert_eq!((line, seq), (7, Some(7)));
    assert!(matches!(problem, Problem::Edited { .. }), "{problem:?}");
}

#[test]
fn edited_record_with_recomputed_hash_breaks_the_next_link() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.log");
    drop(write_log(&path, 10));
    let mut lines = read_lines(&path);
    lines[4] = reseal(&lines[4].replace("web-5", "web-X"));
    write_lines(&path, &lines);
    let (line, seq, problem) = broken(verify(&path, None));
    assert_eq!((line, seq), (6, Some(6)));
    assert_eq!(
        problem,
        Problem::PrevMismatch {
            expected: hash_of(&lines[4]),
            found: serde_json::from_str::<serde_json::Value>(&lines[5]).unwrap()["prev"]
                .as_str()
                .unwrap()
                .to_string()
        }
    );
}

#[test]
fn removed_middle_record_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.log");
    drop(write_log(&path, 10));
    let mut lines = read_lines(&path);
    lines.drain(4..6);
    write_lines(&path, &lines);
    let (line, seq, problem) = broken(verify(&path, None));
    assert_eq!((line, seq), (5, Some(7)));
    assert_eq!(
        problem,
        Problem::Removed {
            first_missing: 5,
            last_missing: 6
        }
    );
}

#[test]
fn removed_first_record_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.log");
    drop(write_log(&path, 3));
    let lines = read_lines(&path);
    write_lines(&path, &lines[1..]);
    let (line, seq, problem) = broken(verify(&path, None));
    assert_eq!((line, seq), (1, Some(2)));
    assert_eq!(
        problem,
        Problem::Removed {
            first_missing: 1,
            last_missing: 1
        }
    );
}

#[test]
fn removed_last_record_needs_the_anchor() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.log");
    let log = write_log(&path, 10);
    let anchor = log.anchor();
    drop(log);
    let lines = read_lines(&path);
    write_lines(&path, &lines[..9]);

    // Without an anchor a cut-off tail is indistinguishable from a shorter log.
    assert_eq!(verify(&path, None).unwrap().records, 9);

    let (line, seq, problem) = broken(verify(&path, Some(&anchor)));
    assert_eq!((line, seq), (9, Some(9)));
    assert_eq!(
        problem,
        Problem::EndsBeforeAnchor {
            anchor_seq: 10,
            last_seq: 9
        }
    );

    // An older anchor still holds: records after it may legitimately have been appended.
    let older = Anchor {
        seq: 5,
        hash: hash_of(&lines[4]),
    };
    assert_eq!(verify(&path, Some(&older)).unwrap().records, 9);
}

#[test]
fn rewritten_chain_is_caught_by_the_anchor() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.log");
    let anchor = write_log(&path, 5).anchor();
    // An attacker with file access rebuilds a whole consistent chain without record 3.
    std::fs::remove_file(&path).unwrap();
    let mut log = AuditLog::open(&path).unwrap();
    log.append_batch(&[entry(1), entry(2), entry(4), entry(5), entry(6)])
        .unwrap();
    drop(log);
    assert_eq!(verify(&path, None).unwrap().records, 5);
    let (line, seq, problem) = broken(verify(&path, Some(&anchor)));
    assert_eq!((line, seq), (5, Some(5)));
    assert!(
        matches!(problem, Problem::AnchorMismatch { .. }),
        "{problem:?}"
    );
}

#[test]
fn swapped_records_are_reported_as_reordered() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.log");
    drop(write_log(&path, 10));
    let original = read_lines(&path);

    let mut lines = original.clone();
    lines.swap(3, 4);
    write_lines(&path, &lines);
    let (line, seq, problem) = broken(verify(&path, None));
    assert_eq!((line, seq), (4, Some(5)));
    assert_eq!(
        problem,
        Problem::Reordered {
            expected: 4,
            found: 5,
            expected_at_line: Some(5)
        }
    );

    let mut lines = original.clone();
    lines.swap(2, 7);
    write_lines(&path, &lines);
    let (line, seq, problem) = broken(verify(&path, None));
    assert_eq!((line, seq), (3, Some(8)));
    assert_eq!(
        problem,
        Problem::Reordered {
            expected: 3,
            found: 8,
            expected_at_line: Some(8)
        }
    );

    // A record copied back in later: seq goes backwards.
    let mut lines = original;
    lines.insert(6, lines[1].clone());
    write_lines(&path, &lines);
    let (line, seq, problem) = broken(verify(&path, None));
    assert_eq!((line, seq), (7, Some(2)));
    assert_eq!(
        problem,
        Problem::Reordered {
            expected: 7,
            found: 2,
            expected_at_line: None
        }
    );
}

#[test]
fn garbage_line_is_malformed() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.log");
    drop(write_log(&path, 4));
    let mut lines = read_lines(&path);
    lines[1] = "{\"seq\":2,".to_string();
    write_lines(&path, &lines);
    let (line, _, problem) = broken(verify(&path, None));
    assert_eq!(line, 2);
    assert!(matches!(problem, Problem::Malformed { .. }), "{problem:?}");
}

#[test]
fn torn_final_line_is_truncated_on_open_and_the_chain_continues() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.log");
    drop(write_log(&path, 3));
    let before = read_lines(&path);
    // A crash in the middle of writing record 4: half a line, no newline.
    let mut staged = AuditLog::open(dir.path().join("other.log")).unwrap();
    staged
        .append_batch(&[entry(1), entry(2), entry(3), entry(4)])
        .unwrap();
    let fourth = read_lines(&dir.path().join("other.log"))[3].clone();
    let torn = &fourth[..fourth.len() / 2];
    let mut bytes = std::fs::read(&path).unwrap();
    bytes.extend_from_slice(torn.as_bytes());
    std::fs::write(&path, &bytes).unwrap();

    let report = verify(&path, None).unwrap();
    assert_eq!(
        (report.records, report.unterminated_tail_bytes),
        (3, torn.len() as u64)
    );

    let mut log = AuditLog::open(&path).unwrap();
    assert_eq!(log.last_seq(), 3);
    assert_eq!(read_lines(&path), before);
    assert_eq!(log.append(&entry(4)).unwrap(), 4);
    drop(log);
    let report = verify(&path, None).unwrap();
    assert_eq!((report.records, report.unterminated_tail_bytes), (4, 0));
}

#[test]
fn unterminated_garbage_refuses_to_open() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.log");
    drop(write_log(&path, 3));
    let mut bytes = std::fs::read(&path).unwrap();
    bytes.extend_from_slice(b"not a record");
    std::fs::write(&path, &bytes).unwrap();
    match AuditLog::open(&path) {
        Err(AuditError::Broken {
            line: 4,
            problem: Problem::Malformed { .. },
            ..
        }) => {}
        other => panic!("expected Broken at line 4, got {other:?}"),
    }
    // Nothing was truncated.
    assert_eq!(std::fs::read(&path).unwrap(), bytes);
}

#[test]
fn edited_last_record_refuses_to_open() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.log");
    drop(write_log(&path, 3));
    let mut lines = read_lines(&path);
    lines[2] = lines[2].replace("web-3", "web-9");
    write_lines(&path, &lines);
    match AuditLog::open(&path) {
        Err(AuditError::Broken {
            line: 3,
            seq: Some(3),
            problem: Problem::Edited { .. },
            ..
        }) => {}
        other => panic!("expected Broken at line 3, got {other:?}"),
    }
}

#[test]
fn invalid_entry_fails_the_batch_before_writing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.log");
    let mut log = write_log(&path, 2);
    let bad =
        yun_audit::AuditEntry::new(yun_audit::Actor::component("yun-agent"), "", "Host node-1");
    assert!(matches!(
        log.append_batch(&[entry(3), bad]),
        Err(AuditError::InvalidEntry { .. })
    ));
    assert_eq!(log.append(&entry(3)).unwrap(), 3);
    drop(log);
    assert_eq!(verify(&path, None).unwrap().records, 3);
}
