//! Polling for a condition the real binary or a fake reaches in its own time:
//! the one loop the end-to-end tests wait with, so each deadline fails the
//! same way, naming what never happened.
use std::time::{Duration, Instant};

/// Poll `cond` every 50 ms until it holds; panic naming `what` after `timeout`.
pub fn wait_for(what: &str, timeout: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}
