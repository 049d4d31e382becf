//! The wall clock, read in one place for the store's timestamps, so that a
//! test can step it under a running binary.
//!
//! Nothing that decides *when* to act reads this clock: leases, backoff,
//! pauses, the nonce window and rate limits all run on the monotonic clock
//! (`Instant`). The wall clock only stamps records (when an event was
//! received, when it was set aside) and drives the day-long retentions.
//! `tests/exactly_once_e2e.rs` steps it by ±1 h while deliveries are in
//! flight to prove that.
//!
//! **Test knob.** In builds with the `test-support` feature only (the
//! binary `cargo test` builds; never a release build, see `Cargo.toml`),
//! `DRONE_DISCORD_TEST_CLOCK_OFFSET_FILE` names a file holding a signed
//! number of seconds that is added to the system clock; it is read on every
//! call, so rewriting it steps the clock. A missing or unreadable file is
//! an offset of 0.
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The environment variable of the test knob (see the module docs).
pub const TEST_OFFSET_FILE_ENV: &str = "DRONE_DISCORD_TEST_CLOCK_OFFSET_FILE";

/// The wall clock (stepped by the test knob in test builds).
pub fn now() -> SystemTime {
    let now = SystemTime::now();
    match test_offset_s() {
        0 => now,
        s if s > 0 => now + Duration::from_secs(s.unsigned_abs()),
        s => now
            .checked_sub(Duration::from_secs(s.unsigned_abs()))
            .unwrap_or(UNIX_EPOCH),
    }
}

/// [`now`] in ms since the Unix epoch (0 before it).
pub fn now_ms() -> u64 {
    now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

#[cfg(feature = "test-support")]
fn test_offset_s() -> i64 {
    std::env::var_os(TEST_OFFSET_FILE_ENV)
        .and_then(|p| std::fs::read_to_string(p).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0)
}

#[cfg(not(feature = "test-support"))]
fn test_offset_s() -> i64 {
    0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn now_ms_follows_the_system_clock_without_the_knob() {
        // The knob is unset in unit tests.
        let before = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        let t = now_ms();
        assert!(t >= before, "{t} < {before}");
    }
}
