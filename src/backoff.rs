//! The one retry schedule: capped exponential backoff with "equal jitter".
//!
//! Used by the relay (per key, after a failed delivery) and by the gateway
//! state machine (after a dropped connection). Each keeps its own base and
//! cap and counts its own attempts; this type only turns an attempt number
//! and a jitter sample into a wait, so it is pure and its tests are exact.
//! The jitter sample comes from [`crate::jitter::Jitter`] (fixed in tests).
//!
//! The wait before retry `n` (1 = after the first failure) is
//! `ceiling = min(cap, base · 2^(n−1))`, then `ceiling/2 + ceiling/2 · jitter`:
//! half fixed, half random, so waits spread clients apart but never collapse
//! to zero.
use std::time::Duration;

/// A capped exponential backoff schedule. See the module docs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ExponentialBackoff {
    base: Duration,
    cap: Duration,
}

impl ExponentialBackoff {
    /// First step `base`, doubling up to `cap`.
    pub const fn new(base: Duration, cap: Duration) -> Self {
        ExponentialBackoff { base, cap }
    }

    /// The wait's upper bound for `attempt` (1-based; 0 counts as 1):
    /// `base · 2^(attempt−1)`, at most the cap. Saturates, never overflows.
    pub fn ceiling(&self, attempt: u32) -> Duration {
        let doublings = attempt.saturating_sub(1);
        let factor = 1u32.checked_shl(doublings).unwrap_or(u32::MAX);
        self.base.saturating_mul(factor).min(self.cap)
    }

    /// The wait before retry `attempt`, with `jitter` in `[0, 1)` (clamped;
    /// NaN counts as 0): half the ceiling fixed, plus up to half at random.
    pub fn delay(&self, attempt: u32, jitter: f64) -> Duration {
        let half = self.ceiling(attempt) / 2;
        let jitter = if jitter.is_finite() {
            jitter.clamp(0.0, 1.0)
        } else {
            0.0
        };
        half.saturating_add(half.mul_f64(jitter))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    #[test]
    fn ceiling_doubles_from_base_to_cap() {
        let b = ExponentialBackoff::new(S, 60 * S);
        let steps: Vec<u64> = (1..=9).map(|n| b.ceiling(n).as_secs()).collect();
        assert_eq!(steps, [1, 2, 4, 8, 16, 32, 60, 60, 60]);
        assert_eq!(b.ceiling(0), b.ceiling(1));
    }

    #[test]
    fn equal_jitter_keeps_half_and_never_exceeds_the_ceiling() {
        let b = ExponentialBackoff::new(Duration::from_millis(500), 60 * S);
        assert_eq!(b.delay(1, 0.0), Duration::from_millis(250));
        assert_eq!(b.delay(1, 0.5), Duration::from_millis(375));
        assert_eq!(b.delay(3, 0.0), S);
        assert_eq!(b.delay(3, 0.5), Duration::from_millis(1500));
        for n in 0..100 {
            for j in [0.0, 0.25, 0.999_999] {
                let d = b.delay(n, j);
                assert!(d >= b.ceiling(n) / 2 && d <= b.ceiling(n), "{n} {j}: {d:?}");
            }
        }
    }

    #[test]
    fn out_of_range_jitter_is_clamped() {
        let b = ExponentialBackoff::new(S, 60 * S);
        assert_eq!(b.delay(1, f64::NAN), S / 2);
        assert_eq!(b.delay(1, -3.0), S / 2);
        assert_eq!(b.delay(1, 7.0), S);
        assert_eq!(b.delay(1, f64::INFINITY), S / 2);
    }

    #[test]
    fn huge_attempts_and_caps_saturate_instead_of_overflowing() {
        let b = ExponentialBackoff::new(S, 60 * S);
        assert_eq!(b.ceiling(u32::MAX), 60 * S);
        assert_eq!(b.delay(u32::MAX, 0.0), 30 * S);
        let unbounded = ExponentialBackoff::new(S, Duration::MAX);
        assert_eq!(unbounded.ceiling(32), S * (1 << 31));
        assert!(unbounded.ceiling(33) >= unbounded.ceiling(32));
        let huge = ExponentialBackoff::new(Duration::MAX, Duration::MAX);
        assert!(huge.delay(u32::MAX, 0.999) > Duration::ZERO);
        assert_eq!(
            ExponentialBackoff::new(Duration::ZERO, S).delay(5, 0.5),
            Duration::ZERO
        );
    }
}
