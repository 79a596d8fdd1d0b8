//! Group commit through AuditSink with concurrent producers.

mod common;

use std::time::{Duration, Instant};

use common::{entry, write_log};
use yun_audit::{Actor, AuditEntry, AuditError, AuditLog, AuditSink, SinkOptions, verify};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_producers_get_unique_consecutive_seqs() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.log");
    let sink = AuditSink::spawn_with(
        write_log(&path, 10),
        SinkOptions {
            max_batch: 64,
            queue: 256,
        },
    )
    .unwrap();
    let mut tasks = Vec::new();
    for producer in 0..8u64 {
        let sink = sink.clone();
        tasks.push(tokio::spawn(async move {
            let mut seqs = Vec::new();
            for i in 0..500 {
                seqs.push(sink.record(entry(producer * 1000 + i)).await.unwrap());
            }
            seqs
        }));
    }
    let mut seqs = Vec::new();
    for task in tasks {
        let mine = task.await.unwrap();
        // Each producer's records are durable in the order it made them.
        assert!(mine.windows(2).all(|w| w[0] < w[1]));
        seqs.extend(mine);
    }
    seqs.sort_unstable();
    assert_eq!(seqs, (11..=4010).collect::<Vec<_>>());
    let stats = sink.stats();
    assert_eq!(stats.records, 4000);
    assert!(stats.largest_batch <= 64, "{stats:?}");
    sink.close().await;

    let report = verify(&path, None).unwrap();
    assert_eq!(report.records, 4010);
}

#[tokio::test]
async fn close_flushes_releases_the_log_and_refuses_more() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.log");
    let sink = AuditSink::spawn(AuditLog::open(&path).unwrap()).unwrap();
    let other = sink.clone();
    assert_eq!(sink.record(entry(1)).await.unwrap(), 1);
    sink.close().await;
    assert!(matches!(
        other.record(entry(2)).await,
        Err(AuditError::Closed)
    ));
    other.close().await;
    // The lock is gone: the log can be reopened at once.
    let log = AuditLog::open(&path).unwrap();
    assert_eq!(log.last_seq(), 1);
}

#[tokio::test]
async fn dropping_every_handle_stops_the_writer() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.log");
    let sink = AuditSink::spawn(AuditLog::open(&path).unwrap()).unwrap();
    sink.record(entry(1)).await.unwrap();
    drop(sink);
    let deadline = Instant::now() + Duration::from_secs(5);
    let log = loop {
        match AuditLog::open(&path) {
            Ok(log) => break log,
            Err(AuditError::Locked { .. }) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            Err(e) => panic!("log not released: {e}"),
        }
    };
    assert_eq!(log.last_seq(), 1);
}

#[tokio::test]
async fn an_invalid_entry_fails_alone() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.log");
    let sink = AuditSink::spawn(AuditLog::open(&path).unwrap()).unwrap();
    let huge = entry(1).with_detail("blob", "x".repeat(yun_audit::MAX_ENTRY_BYTES));
    let (bad, good) = tokio::join!(sink.record(huge), sink.record(entry(2)));
    assert!(
        matches!(bad, Err(AuditError::InvalidEntry { .. })),
        "{bad:?}"
    );
    assert_eq!(good.unwrap(), 1);
    let empty_actor = AuditEntry::new(
        Actor::user(" ", None),
        "credential.issue",
        "ApplicationCredential ci",
    );
    assert!(matches!(
        sink.record(empty_actor).await,
        Err(AuditError::InvalidEntry { .. })
    ));
    sink.close().await;
    assert_eq!(verify(&path, None).unwrap().records, 1);
}
