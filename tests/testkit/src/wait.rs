//! Polling until a condition holds, with a bound, for sync and async tests.

use std::future::Future;
use std::time::{Duration, Instant};

use crate::TestkitError;

/// How often conditions are re-checked.
const POLL_INTERVAL: Duration = Duration::from_millis(50);

/// Calls `condition` every ~50 ms until it returns true, or fails with an error naming
/// `what` and `timeout`. The condition is always checked at least once, and once more at
/// the deadline, so a slow condition is not cut short by the last sleep.
pub fn wait_until<F: FnMut() -> bool>(
    what: &str,
    timeout: Duration,
    mut condition: F,
) -> Result<(), TestkitError> {
    let deadline = Instant::now() + timeout;
    loop {
        if condition() {
            return Ok(());
        }
        let now = Instant::now();
        if now >= deadline {
            return Err(timed_out(what, timeout));
        }
        std::thread::sleep(POLL_INTERVAL.min(deadline - now));
    }
}

/// Async twin of [`wait_until`]: awaits `condition()` every ~50 ms on the tokio timer.
pub async fn wait_until_async<F, Fut>(
    what: &str,
    timeout: Duration,
    mut condition: F,
) -> Result<(), TestkitError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if condition().await {
            return Ok(());
        }
        let now = tokio::time::Instant::now();
        if now >= deadline {
            return Err(timed_out(what, timeout));
        }
        tokio::time::sleep(POLL_INTERVAL.min(deadline - now)).await;
    }
}

fn timed_out(what: &str, timeout: Duration) -> TestkitError {
    TestkitError::Timeout {
        what: what.to_owned(),
        timeout,
    }
}
