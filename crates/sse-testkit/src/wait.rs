//! Waiting for a condition that becomes true eventually, in tests that must not assert on
//! timing: [`wait_until`] for a blocking check, [`eventually`] for an async one.
//!
//! Both follow one deadline rule: the condition is checked at least once, and once more after
//! the deadline has passed, so a condition that holds by then passes even on a slow machine;
//! only a condition still false after the deadline fails the test. The timeout bounds a hang,
//! it measures nothing.

use std::future::Future;
use std::time::{Duration, Instant};

/// How long both waits sleep between two checks of their condition.
const POLL_INTERVAL: Duration = Duration::from_millis(10);

/// Calls `cond` every ~10 ms until it returns `true`, following the module's deadline rule.
/// The deadline is on the wall clock; the thread sleeps between checks.
///
/// # Panics
/// If `cond` is still `false` after `timeout`; the message names `what`.
pub fn wait_until(what: &str, timeout: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    loop {
        // Read the clock before `cond`, so the last call of `cond` happens after the deadline.
        let expired = Instant::now() >= deadline;
        if cond() {
            return;
        }
        assert!(!expired, "timed out after {timeout:?} waiting until {what}");
        std::thread::sleep(POLL_INTERVAL);
    }
}

/// Awaits `attempt` every ~10 ms until it returns `Some`, and returns that value, following the
/// module's deadline rule. The deadline is on tokio's clock, so under paused time it is the
/// test's virtual time.
///
/// # Panics
/// If `attempt` still returns `None` after `timeout`; the message names `what`.
pub async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut attempt: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        // Read the clock first, so the last attempt happens after the deadline.
        let expired = tokio::time::Instant::now() >= deadline;
        if let Some(value) = attempt().await {
            return value;
        }
        assert!(!expired, "timed out after {timeout:?} waiting until {what}");
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}
