//! Waiting for a condition, with a deadline.

use std::time::{Duration, Instant};

/// Polls `check` every 5 ms until it holds or `timeout` passes; returns the time taken.
pub fn wait_until(timeout: Duration, what: &str, mut check: impl FnMut() -> bool) -> Duration {
    let start = Instant::now();
    while !check() {
        assert!(
            start.elapsed() < timeout,
            "timed out after {timeout:?} waiting for: {what}"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    start.elapsed()
}
