//! A latency histogram with a fixed set of buckets, made of atomics so that
//! recording a duration never takes a lock and never allocates.
//!
//! Durations are kept in whole microseconds: the bucket bounds, each
//! observation and the sum are integers, so the exposition prints them
//! exactly (see `exposition::write_seconds`) and no float arithmetic is
//! needed on the way. Each bucket counts the observations of its own range;
//! [`Histogram::snapshot`] adds them up into Prometheus's cumulative buckets,
//! and the total of all buckets (the overflow one included) is both the
//! `+Inf` bucket and `_count`, so the two always agree.
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

/// Most finite buckets a histogram may have.
pub const MAX_BUCKETS: usize = 16;

/// Microseconds in one second.
pub const MICROS: u64 = 1_000_000;

/// Fixed buckets (upper bounds, inclusive, in microseconds, increasing)
/// plus one overflow bucket, and the sum of every observation.
#[derive(Debug)]
pub struct Histogram {
    bounds_us: &'static [u64],
    counts: [AtomicU64; MAX_BUCKETS + 1],
    sum_us: AtomicU64,
}

/// A histogram as read at one moment, cumulative like the exposition.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Snapshot {
    /// (upper bound in µs, observations ≤ that bound), for each finite bucket.
    pub buckets: Vec<(u64, u64)>,
    /// Every observation: the `+Inf` bucket and `_count`.
    pub count: u64,
    /// The sum of every observation, in µs.
    pub sum_us: u64,
}

impl Histogram {
    /// A histogram with these bounds (µs, increasing, at most [`MAX_BUCKETS`]).
    pub const fn new(bounds_us: &'static [u64]) -> Histogram {
        assert!(bounds_us.len() <= MAX_BUCKETS, "too many buckets");
        Histogram {
            bounds_us,
            counts: [const { AtomicU64::new(0) }; MAX_BUCKETS + 1],
            sum_us: AtomicU64::new(0),
        }
    }

    /// Record one duration.
    pub fn observe(&self, d: Duration) {
        let us = u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        // The first bucket whose bound is at least `us` (bounds are inclusive);
        // past the last bound, the overflow bucket at index `len`.
        let slot = self.bounds_us.partition_point(|&bound| bound < us);
        self.counts[slot].fetch_add(1, Relaxed);
        self.sum_us.fetch_add(us, Relaxed);
    }

    /// The cumulative buckets, count and sum as of now.
    pub fn snapshot(&self) -> Snapshot {
        let mut running = 0u64;
        let mut buckets = Vec::with_capacity(self.bounds_us.len());
        for (i, &bound) in self.bounds_us.iter().enumerate() {
            running = running.saturating_add(self.counts[i].load(Relaxed));
            buckets.push((bound, running));
        }
        let overflow = self.counts[self.bounds_us.len()].load(Relaxed);
        Snapshot {
            buckets,
            count: running.saturating_add(overflow),
            sum_us: self.sum_us.load(Relaxed),
        }
    }

    /// The bucket bounds (µs).
    pub fn bounds_us(&self) -> &'static [u64] {
        self.bounds_us
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BOUNDS: &[u64] = &[1_000, 10_000, MICROS];

    #[test]
    fn buckets_are_cumulative_with_inclusive_bounds() {
        let h = Histogram::new(BOUNDS);
        assert_eq!(
            h.snapshot(),
            Snapshot {
                buckets: vec![(1_000, 0), (10_000, 0), (MICROS, 0)],
                count: 0,
                sum_us: 0
            }
        );
        for us in [
            0, 1_000, 1_001, 9_999, 10_000, 500_000, 1_000_001, 90_000_000,
        ] {
            h.observe(Duration::from_micros(us));
        }
        let s = h.snapshot();
        assert_eq!(s.buckets, vec![(1_000, 2), (10_000, 5), (MICROS, 6)]);
        assert_eq!(s.count, 8, "the +Inf bucket holds everything");
        assert_eq!(
            s.sum_us,
            1_000 + 1_001 + 9_999 + 10_000 + 500_000 + 1_000_001 + 90_000_000
        );
    }

    #[test]
    fn an_absurd_duration_lands_in_the_overflow_bucket() {
        let h = Histogram::new(BOUNDS);
        h.observe(Duration::MAX);
        let s = h.snapshot();
        assert_eq!(s.buckets.last(), Some(&(MICROS, 0)));
        assert_eq!((s.count, s.sum_us), (1, u64::MAX));
    }

    #[test]
    fn no_buckets_is_just_a_count_and_a_sum() {
        let h = Histogram::new(&[]);
        h.observe(Duration::from_millis(3));
        assert_eq!(
            h.snapshot(),
            Snapshot {
                buckets: vec![],
                count: 1,
                sum_us: 3_000
            }
        );
    }
}
