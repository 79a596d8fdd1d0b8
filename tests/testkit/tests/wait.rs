//! wait_until and wait_until_async return as soon as the condition holds, and otherwise fail
//! after the bound with a message naming what was awaited.

use std::time::{Duration, Instant};

use yun_testkit::{TestkitError, wait_until, wait_until_async};

#[test]
fn returns_once_condition_holds() {
    let mut calls = 0;
    wait_until("third call", Duration::from_secs(5), || {
        calls += 1;
        calls == 3
    })
    .expect("condition becomes true");
    assert_eq!(calls, 3);
}

#[test]
fn times_out_naming_what_and_bound() {
    let started = Instant::now();
    let err =
        wait_until("the impossible", Duration::from_millis(300), || false).expect_err("never true");
    let elapsed = started.elapsed();
    assert!(
        elapsed >= Duration::from_millis(300),
        "gave up early: {elapsed:?}"
    );
    assert!(
        elapsed < Duration::from_secs(3),
        "overran the bound: {elapsed:?}"
    );
    assert!(matches!(err, TestkitError::Timeout { .. }));
    let message = err.to_string();
    assert!(message.contains("the impossible"), "{message}");
    assert!(message.contains("300ms"), "{message}");
}

#[tokio::test]
async fn async_returns_once_condition_holds() {
    let started = Instant::now();
    wait_until_async("200ms to pass", Duration::from_secs(5), || async {
        started.elapsed() >= Duration::from_millis(200)
    })
    .await
    .expect("condition becomes true");
    assert!(started.elapsed() < Duration::from_secs(2));
}

#[tokio::test]
async fn async_times_out_naming_what() {
    let err = wait_until_async(
        "the async impossible",
        Duration::from_millis(200),
        || async { false },
    )
    .await
    .expect_err("never true");
    assert!(err.to_string().contains("the async impossible"));
}
